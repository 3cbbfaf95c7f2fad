#!/usr/bin/env python3
"""The certificate inventory a Python user would write with `cryptography`: the baseline
`scripts/bench-scan` compares `certvigil scan` with.

One process, one thread. It walks every PATH and, for every file:

* reads it; PEM (anything containing "-----BEGIN") goes through
  `load_pem_x509_certificates`, anything else through `load_der_x509_certificate`; files that
  fail to load are counted as parse errors;
* for every certificate block: reads notBefore, notAfter, subject, issuer, serial, SHA-256
  fingerprint, DNS SANs, public key type and size, signature hash; checks expired, expiring
  (warning when at most min(30 days, 1/3 of the lifetime) is left, critical at min(7 days,
  1/10)), not yet valid (beyond 300 s of clock skew), weak key (RSA < 2048, EC < 256, DSA) and
  weak signature hash (MD5/SHA-1 on a certificate that is not self-issued) — certvigil's
  default policy;
* key/cert match: when a `<stem>.key` sits next to `<stem>.crt|.pem`, or a `privkey.pem` next
  to certbot's `cert.pem`/`fullchain.pem`, loads the key (once per key file) and compares its
  public key with the first certificate's.

Then, over everything seen: finds each unique non-self-issued certificate's issuer by subject
name among all certificates read and checks the signature once with
`verify_directly_issued_by` (signature_invalid, or chain_incomplete when no issuer was found),
and reports leaves found in more than one directory (duplicate).

Prints a JSON summary (counts per check) on stdout. RSA private keys are loaded with
`unsafe_skip_rsa_key_validation=True` so the baseline does not pay for a full RSA key
consistency check that a scanner does not need.
"""

import json
import os
import sys
import time
from datetime import timezone
from collections import Counter, defaultdict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import ExtensionOID

DAY = 86400
WARN_DAYS, CRIT_DAYS = 30, 7
WARN_FRACTION, CRIT_FRACTION = 1 / 3, 1 / 10
CLOCK_SKEW = 300
MIN_RSA, MIN_EC = 2048, 256
PEM_CERT = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_pem_certs(data):
    """cryptography >= 39 parses every block itself; older versions get a split by hand."""
    if hasattr(x509, "load_pem_x509_certificates"):
        return x509.load_pem_x509_certificates(data)
    certs, start = [], data.find(PEM_CERT)
    while start >= 0:
        end = data.find(PEM_END, start)
        if end < 0:
            raise ValueError("unterminated PEM block")
        end += len(PEM_END)
        certs.append(x509.load_pem_x509_certificate(data[start:end]))
        start = data.find(PEM_CERT, end)
    if not certs:
        raise ValueError("no certificates")
    return certs


def validity(cert):
    """(notBefore, notAfter) as Unix seconds; the *_utc properties arrived in cryptography 42."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return (cert.not_valid_before.replace(tzinfo=timezone.utc).timestamp(),
            cert.not_valid_after.replace(tzinfo=timezone.utc).timestamp())


def load_key(data):
    try:
        return serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:  # cryptography < 39
        return serialization.load_pem_private_key(data, password=None)


def verify_issued_by(cert, issuer):
    if hasattr(cert, "verify_directly_issued_by"):
        cert.verify_directly_issued_by(issuer)
        return
    key = issuer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    else:
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))


def key_file_for(path):
    directory, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if name in ("cert.pem", "fullchain.pem"):
        candidate = os.path.join(directory, "privkey.pem")
        if os.path.exists(candidate):
            return candidate
    if ext in (".crt", ".pem", ".cer"):
        candidate = os.path.join(directory, stem + ".key")
        if os.path.exists(candidate):
            return candidate
    return None


class Scan:
    def __init__(self, now):
        self.now = now
        self.findings = Counter()
        self.files = 0
        self.parse_errors = 0
        self.cert_blocks = 0
        self.unique = {}  # fingerprint -> certificate
        self.by_subject = defaultdict(list)  # subject DER -> fingerprints
        self.leaf_dirs = defaultdict(set)  # fingerprint -> directories
        self.keys = {}  # key path -> public key SPKI DER (None when unreadable)
        self.inventory = []  # one row per certificate block, as an inventory would keep

    def file(self, path):
        self.files += 1
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            self.findings["read_error"] += 1
            return
        try:
            if b"-----BEGIN" in data:
                if PEM_CERT not in data:
                    return  # a key or something else: not a certificate source
                certs = load_pem_certs(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
        except Exception:
            self.parse_errors += 1
            self.findings["parse_error"] += 1
            return
        for cert in certs:
            self.certificate(path, cert)
        leaf = certs[0]
        if not is_ca(leaf):
            fingerprint = leaf.fingerprint(hashes.SHA256())
            self.leaf_dirs[fingerprint].add(os.path.dirname(path))
            key_path = key_file_for(path)
            if key_path is not None:
                self.key_match(leaf, key_path)

    def certificate(self, path, cert):
        self.cert_blocks += 1
        fingerprint = cert.fingerprint(hashes.SHA256())
        not_before, not_after = validity(cert)
        subject = cert.subject.rfc4514_string()
        try:
            sans = cert.extensions.get_extension_for_oid(
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key_type, bits, weak_key = "rsa", key.key_size, key.key_size < MIN_RSA
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key_type, bits, weak_key = "ec", key.key_size, key.key_size < MIN_EC
        elif isinstance(key, dsa.DSAPublicKey):
            key_type, bits, weak_key = "dsa", key.key_size, True
        else:
            key_type, bits, weak_key = type(key).__name__, 0, False
        try:
            sig_hash = cert.signature_hash_algorithm
        except Exception:
            sig_hash = None
        self_issued = cert.issuer == cert.subject
        self.inventory.append((path, subject, cert.serial_number, fingerprint, not_before,
                               not_after, sans, key_type, bits,
                               sig_hash.name if sig_hash else None))

        left = not_after - self.now
        if left < 0:
            self.findings["expired"] += 1
        else:
            lifetime = max(not_after - not_before, 0)
            warn = min(WARN_DAYS * DAY, lifetime * WARN_FRACTION)
            crit = min(CRIT_DAYS * DAY, lifetime * CRIT_FRACTION)
            if left <= crit:
                self.findings["expiring_critical"] += 1
            elif left <= warn:
                self.findings["expiring_warning"] += 1
        if not_before - self.now > CLOCK_SKEW:
            self.findings["not_yet_valid"] += 1
        if weak_key:
            self.findings["weak_key"] += 1
        if not self_issued and isinstance(sig_hash, (hashes.MD5, hashes.SHA1)):
            self.findings["weak_signature"] += 1

        if fingerprint not in self.unique:
            self.unique[fingerprint] = cert
            self.by_subject[cert.subject.public_bytes()].append(fingerprint)

    def key_match(self, leaf, key_path):
        if key_path not in self.keys:
            try:
                with open(key_path, "rb") as f:
                    key = load_key(f.read())
                self.keys[key_path] = key.public_key().public_bytes(*SPKI)
            except Exception:
                self.keys[key_path] = None
        own = self.keys[key_path]
        if own is not None and own != leaf.public_key().public_bytes(*SPKI):
            self.findings["key_mismatch"] += 1

    def chains(self):
        for cert in self.unique.values():
            if cert.issuer == cert.subject:
                continue
            candidates = self.by_subject.get(cert.issuer.public_bytes(), [])
            if not candidates:
                self.findings["chain_incomplete"] += 1
                continue
            for fingerprint in candidates:
                try:
                    verify_issued_by(cert, self.unique[fingerprint])
                    break
                except Exception:
                    continue
            else:
                self.findings["signature_invalid"] += 1

    def duplicates(self):
        for dirs in self.leaf_dirs.values():
            if len(dirs) > 1:
                self.findings["duplicate"] += 1


def is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def main(argv):
    if len(argv) < 2:
        print(f"usage: {argv[0]} PATH...", file=sys.stderr)
        return 2
    started = time.monotonic()
    scan = Scan(time.time())
    for root in argv[1:]:
        if os.path.isfile(root):
            scan.file(root)
            continue
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name == "MANIFEST.json" or name.endswith(".key") or name == "privkey.pem":
                    continue
                scan.file(os.path.join(directory, name))
    scan.chains()
    scan.duplicates()
    summary = {
        "tool": "python-cryptography",
        "cryptography": __import__("cryptography").__version__,
        "cert_files_read": scan.files,
        "parse_errors": scan.parse_errors,
        "cert_blocks": scan.cert_blocks,
        "unique_certs": len(scan.unique),
        "keys_loaded": len(scan.keys),
        "findings": dict(sorted(scan.findings.items())),
        "seconds": round(time.monotonic() - started, 3),
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    critical = any(scan.findings[k] for k in
                   ("expired", "expiring_critical", "not_yet_valid", "key_mismatch",
                    "signature_invalid"))
    return 1 if critical else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
