//! The plaintext preambles that upgrade a connection to TLS: SMTP, IMAP, POP3, PostgreSQL
//! and LDAP. Each read is bounded in size and by the probe's deadline.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::endpoint::StartTls;

/// Longest line (or LDAP message) accepted from a server before TLS starts.
const MAX_LINE: usize = 8 * 1024;
/// Most lines accepted in one reply (multi-line SMTP replies, untagged IMAP responses).
const MAX_LINES: usize = 64;

const POSTGRES_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const LDAP_STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

#[derive(Debug)]
pub(crate) enum Error {
    /// The deadline passed while waiting for `.0`.
    Timeout(&'static str),
    Closed(&'static str),
    Io(&'static str, io::Error),
    TooLong(&'static str),
    /// The server answered, but not with what the protocol requires.
    Unexpected(&'static str, String),
    NotOffered,
    Refused(String),
    /// Bytes after the final reply would be read as TLS by us but were sent in plaintext.
    TrailingData,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::Closed(what) => write!(f, "connection closed by server while waiting for {what}"),
            Self::Io(what, e) => write!(f, "{what}: {}", crate::endpoint::describe_io(e)),
            Self::TooLong(what) => write!(f, "{what} longer than {MAX_LINE} bytes"),
            Self::Unexpected(what, reply) => write!(f, "unexpected {what}: \"{reply}\""),
            Self::NotOffered => f.write_str("server does not offer STARTTLS"),
            Self::Refused(reply) => write!(f, "server refused STARTTLS: \"{reply}\""),
            Self::TrailingData => {
                f.write_str("server sent unexpected data after agreeing to STARTTLS")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Runs the preamble of `protocol` on `stream`; on success the next bytes are TLS.
pub(crate) async fn negotiate<S>(
    protocol: StartTls,
    stream: &mut S,
    deadline: Instant,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conv = Conversation {
        stream,
        buf: Vec::new(),
        deadline,
    };
    match protocol {
        StartTls::Smtp => smtp(&mut conv).await?,
        StartTls::Imap => imap(&mut conv).await?,
        StartTls::Pop3 => pop3(&mut conv).await?,
        StartTls::Postgres => postgres(&mut conv).await?,
        StartTls::Ldap => ldap(&mut conv).await?,
    }
    conv.finish()
}

async fn smtp<S: AsyncRead + AsyncWrite + Unpin>(
    conv: &mut Conversation<'_, S>,
) -> Result<(), Error> {
    let greeting = conv.smtp_reply("SMTP greeting").await?;
    greeting.expect(220, "SMTP greeting")?;
    conv.send(b"EHLO certvigil\r\n", "SMTP EHLO").await?;
    let ehlo = conv.smtp_reply("SMTP EHLO reply").await?;
    ehlo.expect(250, "SMTP EHLO reply")?;
    if !ehlo.offers("STARTTLS") {
        return Err(Error::NotOffered);
    }
    conv.send(b"STARTTLS\r\n", "SMTP STARTTLS").await?;
    let reply = conv.smtp_reply("SMTP STARTTLS reply").await?;
    if reply.code != 220 {
        return Err(Error::Refused(reply.last_line));
    }
    Ok(())
}

async fn imap<S: AsyncRead + AsyncWrite + Unpin>(
    conv: &mut Conversation<'_, S>,
) -> Result<(), Error> {
    let greeting = conv.read_line("IMAP greeting").await?;
    if !starts_with_ignore_case(&greeting, b"* OK") {
        return Err(Error::Unexpected("IMAP greeting", printable(&greeting)));
    }
    conv.send(b"a1 STARTTLS\r\n", "IMAP STARTTLS").await?;
    for _ in 0..MAX_LINES {
        let line = conv.read_line("IMAP STARTTLS reply").await?;
        if line.starts_with(b"* ") {
            continue;
        }
        if starts_with_ignore_case(&line, b"a1 OK") {
            return Ok(());
        }
        if starts_with_ignore_case(&line, b"a1 ") {
            return Err(Error::Refused(printable(&line)));
        }
        return Err(Error::Unexpected("IMAP STARTTLS reply", printable(&line)));
    }
    Err(Error::TooLong("IMAP STARTTLS reply"))
}

async fn pop3<S: AsyncRead + AsyncWrite + Unpin>(
    conv: &mut Conversation<'_, S>,
) -> Result<(), Error> {
    let greeting = conv.read_line("POP3 greeting").await?;
    if !greeting.starts_with(b"+OK") {
        return Err(Error::Unexpected("POP3 greeting", printable(&greeting)));
    }
    conv.send(b"STLS\r\n", "POP3 STLS").await?;
    let reply = conv.read_line("POP3 STLS reply").await?;
    if reply.starts_with(b"+OK") {
        Ok(())
    } else if reply.starts_with(b"-ERR") {
        Err(Error::Refused(printable(&reply)))
    } else {
        Err(Error::Unexpected("POP3 STLS reply", printable(&reply)))
    }
}

async fn postgres<S: AsyncRead + AsyncWrite + Unpin>(
    conv: &mut Conversation<'_, S>,
) -> Result<(), Error> {
    const WHAT: &str = "PostgreSQL SSLRequest reply";
    conv.send(&POSTGRES_SSL_REQUEST, "PostgreSQL SSLRequest")
        .await?;
    match conv.read_exact::<1>(WHAT).await? {
        [b'S'] => Ok(()),
        [b'N'] => Err(Error::Refused(
            "N (SSL is not enabled on this server)".into(),
        )),
        // An 'E' is an ErrorResponse from a server too old to know SSLRequest.
        [b'E'] => Err(Error::Refused("E (error response)".into())),
        other => Err(Error::Unexpected(WHAT, printable(&other))),
    }
}

async fn ldap<S: AsyncRead + AsyncWrite + Unpin>(
    conv: &mut Conversation<'_, S>,
) -> Result<(), Error> {
    const WHAT: &str = "LDAP StartTLS response";
    conv.send(&ldap_starttls_request(), "LDAP StartTLS request")
        .await?;
    let header = conv.read_exact::<2>(WHAT).await?;
    if header[0] != 0x30 {
        return Err(Error::Unexpected(WHAT, printable(&header)));
    }
    let len = match header[1] {
        short @ 0..=0x7f => usize::from(short),
        long @ 0x81..=0x84 => {
            let mut len = 0usize;
            for _ in 0..(long & 0x7f) {
                len = len << 8 | usize::from(conv.read_exact::<1>(WHAT).await?[0]);
            }
            len
        }
        _ => return Err(Error::Unexpected(WHAT, printable(&header))),
    };
    if len > MAX_LINE {
        return Err(Error::TooLong(WHAT));
    }
    let body = conv.read_vec(len, WHAT).await?;
    match ldap_result_code(&body) {
        Some((0, _)) => Ok(()),
        Some((code, diagnostic)) => Err(Error::Refused(format!(
            "resultCode {code}{}{}",
            if diagnostic.is_empty() { "" } else { ": " },
            printable(diagnostic)
        ))),
        None => Err(Error::Unexpected(WHAT, printable(&body))),
    }
}

/// LDAPMessage { messageID 1, ExtendedRequest { requestName StartTLS } }.
fn ldap_starttls_request() -> Vec<u8> {
    let name = tlv(0x80, LDAP_STARTTLS_OID);
    let op = tlv(0x77, &name);
    let mut body = vec![0x02, 0x01, 0x01];
    body.extend_from_slice(&op);
    tlv(0x30, &body)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    // Every element here is shorter than 128 bytes: short-form length suffices.
    let mut out = vec![tag, content.len() as u8];
    out.extend_from_slice(content);
    out
}

/// Reads the resultCode and diagnosticMessage of an ExtendedResponse (LDAPMessage body).
fn ldap_result_code(message: &[u8]) -> Option<(u8, &[u8])> {
    let (tag, _message_id, rest) = read_tlv(message)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, response, _controls) = read_tlv(rest)?;
    if tag != 0x78 {
        return None;
    }
    let (tag, code, rest) = read_tlv(response)?;
    if tag != 0x0a || code.is_empty() {
        return None;
    }
    let (_, _matched_dn, rest) = read_tlv(rest)?;
    let (_, diagnostic, _) = read_tlv(rest)?;
    Some((*code.last()?, diagnostic))
}

/// Splits one BER element (definite length, up to 4 length bytes) off `input`.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let (bytes, after) = rest.split_at_checked(usize::from(first & 0x7f))?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, b| len << 8 | usize::from(*b))
        }
        _ => return None,
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

struct SmtpReply {
    code: u16,
    lines: Vec<Vec<u8>>,
    last_line: String,
}

impl SmtpReply {
    fn expect(&self, code: u16, what: &'static str) -> Result<(), Error> {
        if self.code == code {
            Ok(())
        } else {
            Err(Error::Unexpected(what, self.last_line.clone()))
        }
    }

    /// Whether an EHLO reply lists `keyword` as an extension.
    fn offers(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            let text = line.get(4..).unwrap_or_default();
            let word = text.split(|b| *b == b' ').next().unwrap_or_default();
            word.eq_ignore_ascii_case(keyword.as_bytes())
        })
    }
}

/// Parses `250-text` / `250 text`: the code, and whether more lines follow.
fn smtp_line(line: &[u8]) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

struct Conversation<'a, S> {
    stream: &'a mut S,
    /// Read but not yet consumed.
    buf: Vec<u8>,
    deadline: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<'_, S> {
    async fn send(&mut self, bytes: &[u8], what: &'static str) -> Result<(), Error> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match timeout_at(self.deadline, write).await {
            Ok(result) => result.map_err(|e| Error::Io(what, e)),
            Err(_) => Err(Error::Timeout(what)),
        }
    }

    /// Reads more bytes into `buf`; fails on end of stream.
    async fn fill(&mut self, what: &'static str) -> Result<(), Error> {
        let mut chunk = [0u8; 1024];
        let n = match timeout_at(self.deadline, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err(Error::Closed(what)),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::Io(what, e)),
            Err(_) => return Err(Error::Timeout(what)),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One line without its line ending.
    async fn read_line(&mut self, what: &'static str) -> Result<Vec<u8>, Error> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(Error::TooLong(what));
            }
            self.fill(what).await?;
        }
    }

    async fn read_vec(&mut self, len: usize, what: &'static str) -> Result<Vec<u8>, Error> {
        while self.buf.len() < len {
            self.fill(what).await?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    async fn read_exact<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let bytes = self.read_vec(N, what).await?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    async fn smtp_reply(&mut self, what: &'static str) -> Result<SmtpReply, Error> {
        let mut lines = Vec::new();
        while lines.len() < MAX_LINES {
            let line = self.read_line(what).await?;
            let Some((code, more)) = smtp_line(&line) else {
                return Err(Error::Unexpected(what, printable(&line)));
            };
            lines.push(line);
            if !more {
                let last_line = printable(lines.last().map(Vec::as_slice).unwrap_or_default());
                return Ok(SmtpReply {
                    code,
                    lines,
                    last_line,
                });
            }
        }
        Err(Error::TooLong(what))
    }

    fn finish(self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingData)
        }
    }
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// A server's bytes made safe to show: escaped, and cut short.
fn printable(bytes: &[u8]) -> String {
    const LIMIT: usize = 120;
    let shown = bytes.get(..LIMIT).unwrap_or(bytes);
    let mut out = shown.escape_ascii().to_string();
    if bytes.len() > LIMIT {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldap_request_encoding() {
        let request = ldap_starttls_request();
        assert_eq!(
            &request[..8],
            &[0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80]
        );
        assert_eq!(request[8], 22);
        assert_eq!(&request[9..], LDAP_STARTTLS_OID);
    }

    #[test]
    fn ldap_response_codes() {
        // messageID 1, ExtendedResponse { resultCode success, "", "" }
        let ok = [
            0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(ldap_result_code(&ok), Some((0, &b""[..])));
        let refused = [
            0x02, 0x01, 0x01, 0x78, 0x09, 0x0a, 0x01, 0x02, 0x04, 0x00, 0x04, 0x02, b'n', b'o',
        ];
        assert_eq!(ldap_result_code(&refused), Some((2, &b"no"[..])));
        assert_eq!(ldap_result_code(&[0x02, 0x01]), None);
        assert_eq!(
            ldap_result_code(&[0x02, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(ldap_result_code(&[]), None);
    }

    #[test]
    fn smtp_lines() {
        assert_eq!(smtp_line(b"220 mx ESMTP"), Some((220, false)));
        assert_eq!(smtp_line(b"250-STARTTLS"), Some((250, true)));
        assert_eq!(smtp_line(b"250"), Some((250, false)));
        assert_eq!(smtp_line(b"25"), None);
        assert_eq!(smtp_line(b"HTTP/1.1 400"), None);
        assert_eq!(smtp_line(b"250xSTARTTLS"), None);
    }

    #[test]
    fn ehlo_keywords() {
        let reply = SmtpReply {
            code: 250,
            lines: vec![
                b"250-mx".to_vec(),
                b"250-PIPELINING".to_vec(),
                b"250 starttls".to_vec(),
            ],
            last_line: String::new(),
        };
        assert!(reply.offers("STARTTLS"));
        assert!(!reply.offers("SMTPUTF8"));
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable(b"ok\x00\xff"), "ok\\x00\\xff");
        assert!(printable(&[b'a'; 500]).ends_with("..."));
    }
}
