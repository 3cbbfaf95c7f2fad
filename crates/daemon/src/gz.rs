//! Gzip on every core for the rendered outputs, pigz-style: the text is cut into blocks, each
//! compressed on its own into a gzip member, and the members concatenated. RFC 1952 allows a
//! stream of members and every client that asks for gzip (Go's, which Prometheus uses, curl,
//! browsers) reads them as one body.

use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use rayon::prelude::*;

/// Uncompressed bytes per member: big enough that a member's own header and dictionary reset
/// cost nothing measurable, small enough to spread a few megabytes over the cores.
const BLOCK: usize = 1 << 20;

pub(crate) struct ParallelGz {
    out: Vec<u8>,
    full: Vec<Vec<u8>>,
    current: Vec<u8>,
}

impl ParallelGz {
    pub(crate) fn new() -> Self {
        Self {
            out: Vec::new(),
            full: Vec::new(),
            current: Vec::with_capacity(BLOCK),
        }
    }

    /// The compressed stream; never empty, since an empty body is not valid gzip.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if !self.current.is_empty() || self.out.is_empty() {
            self.full.push(std::mem::take(&mut self.current));
        }
        self.compress_full();
        self.out
    }

    fn compress_full(&mut self) {
        let members: Vec<Vec<u8>> = self.full.par_iter().map(|block| gzip(block)).collect();
        for member in members {
            self.out.extend_from_slice(&member);
        }
        self.full.clear();
    }
}

impl Write for ParallelGz {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.current.extend_from_slice(buf);
        if self.current.len() >= BLOCK {
            let block = std::mem::replace(&mut self.current, Vec::with_capacity(BLOCK));
            self.full.push(block);
            // A batch per round of cores keeps at most a few blocks uncompressed in memory.
            if self.full.len() >= 2 * rayon::current_num_threads() {
                self.compress_full();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_read_back_as_the_original_text() {
        let line = b"certvigil_cert_info{source=\"/x\"} 1\n";
        let text: Vec<u8> = (0..3 * BLOCK + 12345)
            .map(|i| line[i % line.len()])
            .collect();
        let mut gz = ParallelGz::new();
        for piece in text.chunks(7919) {
            gz.write_all(piece).unwrap();
        }
        let compressed = gz.finish();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
        // Several members, not one: the blocks were compressed separately.
        let mut single = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut single)
            .unwrap();
        assert!(single.len() >= BLOCK && single.len() < text.len());
    }

    #[test]
    fn empty_output_is_a_valid_empty_stream() {
        let compressed = ParallelGz::new().finish();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(!compressed.is_empty() && back.is_empty());
    }
}
