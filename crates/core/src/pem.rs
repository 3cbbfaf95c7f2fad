//! A lenient PEM splitter: one bad block does not hide the good ones around it.
//!
//! Real bundles carry comments, Windows line endings, `TRUSTED CERTIFICATE` blocks and
//! OpenSSL's `Proc-Type` headers; each block is decoded on its own and reports its own error
//! with the line where it starts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::ParseError;

#[derive(Debug)]
pub struct PemBlock {
    pub label: String,
    /// 1-based position among the blocks of the input.
    pub index: usize,
    /// 1-based line of the BEGIN marker.
    pub line: usize,
    pub der: Vec<u8>,
    /// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) were present.
    pub encrypted_headers: bool,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";

/// True when the bytes contain a PEM BEGIN marker.
pub fn looks_like_pem(data: &[u8]) -> bool {
    memfind(data, BEGIN.as_bytes()).is_some()
}

/// Splits text into blocks. Every block is either decoded or an error naming block and line.
///
/// Works on bytes: a scan splits a hundred thousand files, and converting each to a `String`
/// first is measurable.
pub fn parse_blocks(data: &[u8]) -> Vec<Result<PemBlock, ParseError>> {
    let mut out = Vec::new();
    let mut lines = data
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .enumerate()
        .peekable();
    let mut index = 0;
    let mut body = Vec::new();
    while let Some((n, line)) = lines.next() {
        let Some(label) = line
            .strip_prefix(BEGIN.as_bytes())
            .and_then(|l| l.strip_suffix(b"-----"))
        else {
            continue;
        };
        let label = String::from_utf8_lossy(label).into_owned();
        index += 1;
        let start = n + 1;
        body.clear();
        let mut encrypted_headers = false;
        let mut ended = false;
        let mut end_label_ok = true;
        let mut in_headers = true;
        while let Some((_, line)) = lines.peek() {
            let line = *line;
            if line.starts_with(BEGIN.as_bytes()) {
                break;
            }
            lines.next();
            if let Some(end) = line.strip_prefix(END.as_bytes()) {
                ended = true;
                end_label_ok = end.strip_suffix(b"-----") == Some(label.as_bytes());
                break;
            }
            if in_headers && line.contains(&b':') {
                encrypted_headers |=
                    line.starts_with(b"Proc-Type") && memfind(line, b"ENCRYPTED").is_some();
                continue;
            }
            in_headers = false;
            body.extend_from_slice(line);
        }
        let err = |reason: &str| ParseError::Pem {
            block: index,
            line: start,
            reason: reason.into(),
        };
        if !ended {
            out.push(Err(err(&format!("truncated: no END line for {label}"))));
            continue;
        }
        if !end_label_ok {
            out.push(Err(err(&format!("END line does not match BEGIN {label}"))));
            continue;
        }
        match STANDARD.decode(&body) {
            Ok(der) if der.is_empty() => out.push(Err(err("empty block"))),
            Ok(der) => out.push(Ok(PemBlock {
                label,
                index,
                line: start,
                der,
                encrypted_headers,
            })),
            Err(e) => out.push(Err(err(&format!("invalid base64: {e}")))),
        }
    }
    out
}

fn memfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_blocks_survive_a_bad_one() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\r\nAwQ=\r\n-----END CERTIFICATE-----\r\n\
                    -----BEGIN CERTIFICATE-----\nAAEC\n";
        let blocks = parse_blocks(text.as_bytes());
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0].as_ref().unwrap().der, vec![0, 1, 2]);
        assert_eq!(blocks[0].as_ref().unwrap().line, 2);
        assert!(matches!(
            blocks[1],
            Err(ParseError::Pem {
                block: 2,
                line: 5,
                ..
            })
        ));
        assert_eq!(blocks[2].as_ref().unwrap().der, vec![3, 4]);
        let Err(ParseError::Pem { reason, .. }) = &blocks[3] else {
            panic!()
        };
        assert!(reason.contains("truncated"), "{reason}");
    }

    #[test]
    fn encrypted_headers_are_noticed() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse_blocks(text.as_bytes());
        assert!(blocks[0].as_ref().unwrap().encrypted_headers);
    }
}
