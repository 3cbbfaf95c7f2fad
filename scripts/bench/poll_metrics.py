#!/usr/bin/env python3
"""Polls a certvigil daemon's /metrics for scripts/bench-daemon, from one process.

The benchmark used to poll with a curl | gzip | awk pipeline every 20 ms: four or five
processes started per poll, which on the 2-core benchmark machine took CPU from the daemon it
was timing (its first scan from an empty cache: 4.2 s alone, 5.3 s while polled that way).
This poller costs a fraction of a millisecond per request, like a scraper's keep-alive
connection.

    poll_metrics.py first URL PID T0 EXPECTED OUT
        GET URL (Accept-Encoding: gzip) every 20 ms until it answers 200 with the line
        `certvigil_scan_certificates EXPECTED`; print the seconds from T0 (a Unix time, as
        bash's EPOCHREALTIME) to the moment that body was received and decompressed, then
        write the text to OUT (not timed).
    poll_metrics.py change URL PID T0 PREFIX NEEDLE
        GET URL every 20 ms until the first line starting with PREFIX contains NEEDLE;
        print the seconds from T0. The body is decompressed as it arrives and the request
        dropped once that line is read.

Exit status 2, with the reason on stderr, when the daemon (PID) is gone or 120 s pass.
"""

import http.client
import sys
import time
import urllib.parse
import zlib

POLL_S = 0.02
TIMEOUT_S = 120


def daemon_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def fail(message):
    print(f"poll_metrics: {message}", file=sys.stderr)
    sys.exit(2)


class Client:
    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path or "/"
        self.conn = None

    def open(self):
        """The response to one GET, or None while nothing listens yet."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            self.conn.request("GET", self.path, headers={"Accept-Encoding": "gzip"})
            return self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException, OSError):
            self.drop()
            return None

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def chunks(response):
    """The decompressed body as it arrives; every gzip member, as gzip -d and Go read them."""
    gzipped = response.getheader("Content-Encoding") == "gzip"
    decoder = zlib.decompressobj(wbits=31) if gzipped else None
    while True:
        data = response.read(256 * 1024)
        if not data:
            break
        if decoder is None:
            yield data
            continue
        while data:
            yield decoder.decompress(data)
            if not decoder.eof:
                break
            data = decoder.unused_data
            decoder = zlib.decompressobj(wbits=31)


def poll(url, pid, attempt):
    """Calls attempt(response) every POLL_S until it returns a result."""
    client = Client(url)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        response = client.open()
        if response is not None:
            result, keep = attempt(response)
            if not keep:
                client.drop()
            if result is not None:
                return result
        if not daemon_alive(pid):
            fail("the daemon exited")
        if time.monotonic() > deadline:
            fail(f"no answer within {TIMEOUT_S} s")
        time.sleep(POLL_S)


def first(url, pid, t0, expected, out):
    want = f"\ncertvigil_scan_certificates {expected}\n".encode()

    def attempt(response):
        if response.status != 200:
            response.read()
            return None, True
        text = b"".join(chunks(response))
        received = time.time()
        return ((received, text) if want in text else None), True

    received, text = poll(url, pid, attempt)
    with open(out, "wb") as f:
        f.write(text)
    print(f"{received - t0:.3f}")


def change(url, pid, t0, prefix, needle):
    prefix, needle = b"\n" + prefix.encode(), needle.encode()

    def attempt(response):
        if response.status != 200:
            response.read()
            return None, True
        seen = b""
        for chunk in chunks(response):
            seen += chunk
            start = seen.find(prefix)
            if start < 0:
                # Keep only what may hold the start of the line.
                seen = seen[-len(prefix) :]
                continue
            end = seen.find(b"\n", start + 1)
            if end < 0:
                continue
            found = needle in seen[start:end]
            # The rest of the body is not read: the connection cannot be reused.
            return (time.time() if found else None), False
        return None, True

    print(f"{poll(url, pid, attempt) - t0:.3f}")


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in ("first", "change"):
        fail(__doc__.strip().splitlines()[0] + "; see its header for the usage")
    mode, url, pid, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if mode == "first":
        first(url, pid, t0, sys.argv[5], sys.argv[6])
    else:
        change(url, pid, t0, sys.argv[5], sys.argv[6])


if __name__ == "__main__":
    main()
