//! Gzip on every core for the rendered outputs, pigz-style: the text is cut into blocks, each
//! deflated on its own core and ended with a sync flush, and the blocks concatenated into one
//! deflate stream under one gzip header, with the CRC-32s combined. The result is a single
//! ordinary gzip member, which every client reads (curl and browsers stop after the first
//! member of a multi-member stream).
//!
//! The stream is kept open ([`GzBody`]): a response closes it with a tail of its own, so
//! `/metrics` serves the same compressed body as Prometheus text or, with `# EOF`, as
//! OpenMetrics, without compressing twice.
//!
//! While the very first output is being compressed, its blocks can be followed as they come
//! ([`Progress`], [`follow`]): a scraper waiting for a daemon that just started receives and
//! unpacks the first blocks while the last ones are still being deflated.
//!
//! An output seldom read can go to a file instead of memory as it is deflated
//! ([`ParallelGz::spilling`], [`SpilledBody`]).
//!
//! Blocks are cut where the content says (after certain lines), and each is deflated with a
//! fresh compressor, so a block's bytes depend on its text alone. A rescan's output is cut the
//! same way as the one being served except around what changed, and every block whose text
//! (by SHA-256) is unchanged is taken from the served output instead of deflated again.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use axum::body::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use futures_util::Stream;
use rayon::prelude::*;
use tokio::sync::watch;

/// Blocks are cut where the content says, not at fixed offsets, so that a rescan which
/// changed a few lines cuts the rest of the text exactly as before and finds those blocks
/// already deflated (see [`ParallelGz::reusing`]). A block ends after a line whose CRC-32
/// is a multiple of CUT_EVERY, once it holds MIN_BLOCK bytes; lines of exposition text are
/// 200-400 bytes, so blocks come to about a megabyte: big enough that the flush between
/// blocks and the lost dictionary cost nothing measurable, small enough to spread megabytes
/// over the cores. MAX_BLOCK bounds a block without such a line.
const MIN_BLOCK: usize = 512 << 10;
const CUT_EVERY: u32 = 2048;
const MAX_BLOCK: usize = 4 << 20;

/// Room for all but one block in twenty: a cut comes on average CUT_EVERY lines (half a
/// megabyte) after MIN_BLOCK. Pages never written cost no memory.
const BLOCK_CAPACITY: usize = 4 * MIN_BLOCK;

/// The gzip header: deflate, no name or time, unknown OS (RFC 1952 section 2.3).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

type Digest = [u8; 32];

/// One deflated block and what identifies its input.
#[derive(Clone)]
struct Block {
    deflated: Bytes,
    /// SHA-256 of the uncompressed block: equal digests, equal deflated bytes.
    digest: Digest,
    crc: crc32fast::Hasher,
}

pub(crate) struct ParallelGz {
    /// Each deflated block, every one allocated to its exact size: a hundred thousand
    /// certificates compress to tens of megabytes, and one growing buffer would hold up to
    /// twice that.
    blocks: Vec<Block>,
    crc: crc32fast::Hasher,
    written: u64,
    /// Cut blocks waiting to be deflated, one per core at a time.
    full: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// The blocks of the previous output, by digest.
    previous: HashMap<Digest, Block>,
    /// Blocks taken from `previous` instead of deflated.
    reused: usize,
    /// Where followers see each block as soon as it is deflated.
    progress: Option<watch::Sender<Progress>>,
    /// Where blocks go instead of memory (see [`Self::spilling`]).
    spill: Option<Spill>,
}

/// A file that receives the gzip stream as it is deflated.
struct Spill {
    file: std::fs::File,
    len: u64,
}

/// A finished gzip stream kept in a file (unlinked: it goes away with its last reader) and
/// read from there for each response, so it takes no memory between responses.
#[derive(Clone)]
pub(crate) struct SpilledBody {
    file: Arc<std::fs::File>,
    len: u64,
}

/// Sees an output while it is being compressed.
pub(crate) type Follower = watch::Receiver<Progress>;

/// An output being compressed: the blocks so far (header first), then the whole stream.
#[derive(Default)]
pub(crate) struct Progress {
    blocks: Vec<Bytes>,
    done: Option<GzBody>,
}

impl Progress {
    pub(crate) fn done(&self) -> Option<&GzBody> {
        self.done.as_ref()
    }
}

/// A gzip stream still open for a tail: the header and every block, sync-flushed.
#[derive(Clone)]
pub(crate) struct GzBody {
    blocks: Arc<[Block]>,
    crc: crc32fast::Hasher,
    written: u64,
    /// How many of `blocks` were taken from the previous output.
    reused: usize,
}

impl ParallelGz {
    pub(crate) fn new() -> Self {
        Self {
            blocks: Vec::new(),
            crc: crc32fast::Hasher::new(),
            written: 0,
            full: Vec::new(),
            current: Vec::with_capacity(BLOCK_CAPACITY),
            previous: HashMap::new(),
            reused: 0,
            progress: None,
            spill: None,
        }
    }

    /// As [`Self::new`], writing the stream to `file` as each block is deflated instead of
    /// keeping it: the output is never held in memory, whole or growing.
    pub(crate) fn spilling(mut file: std::fs::File) -> io::Result<Self> {
        file.write_all(&HEADER)?;
        Ok(Self {
            spill: Some(Spill {
                file,
                len: HEADER.len() as u64,
            }),
            ..Self::new()
        })
    }

    /// Ends a [`Self::spilling`] stream: the last blocks and the gzip trailer go to its file.
    pub(crate) fn finish_spilled(mut self) -> io::Result<SpilledBody> {
        self.deflate_rest()?;
        let tail = tail_of(&self.crc, self.written, b"");
        let Some(mut spill) = self.spill.take() else {
            return Err(io::Error::other("not a spilling stream"));
        };
        spill.file.write_all(&tail)?;
        Ok(SpilledBody {
            len: spill.len + tail.len() as u64,
            file: Arc::new(spill.file),
        })
    }

    /// As [`Self::new`], taking every block that comes out the same as one of `previous`
    /// from there: a rescan that changed a few certificates deflates a few blocks, and the
    /// unchanged ones are shared with the output still being served, not held twice.
    pub(crate) fn reusing(previous: &GzBody) -> Self {
        Self {
            previous: previous
                .blocks
                .iter()
                .map(|block| (block.digest, block.clone()))
                .collect(),
            ..Self::new()
        }
    }

    /// As [`Self::new`], showing each block to the receivers of the returned channel as it
    /// is deflated, and the finished stream at the end.
    pub(crate) fn followed() -> (Self, Follower) {
        let (sender, receiver) = watch::channel(Progress {
            blocks: vec![Bytes::from_static(&HEADER)],
            done: None,
        });
        let gz = Self {
            progress: Some(sender),
            ..Self::new()
        };
        (gz, receiver)
    }

    pub(crate) fn finish(mut self) -> GzBody {
        // Only a spilling stream can fail, and it ends in `finish_spilled`.
        let _ = self.deflate_rest();
        let body = GzBody {
            blocks: self.blocks.into(),
            crc: self.crc,
            written: self.written,
            reused: self.reused,
        };
        if let Some(progress) = self.progress {
            progress.send_modify(|p| {
                p.blocks.clear();
                p.done = Some(body.clone());
            });
        }
        body
    }

    /// Deflates the block being written and those waiting for a core.
    fn deflate_rest(&mut self) -> io::Result<()> {
        if !self.current.is_empty() {
            self.cut()?;
        }
        self.deflate_full()
    }

    /// Ends the block being written.
    fn cut(&mut self) -> io::Result<()> {
        // Handed over, not copied: a copy would hold the block twice while it waits for a core.
        let block = std::mem::replace(&mut self.current, Vec::with_capacity(BLOCK_CAPACITY));
        self.full.push(block);
        if self.full.len() >= rayon::current_num_threads() {
            self.deflate_full()?;
        }
        Ok(())
    }

    fn deflate_full(&mut self) -> io::Result<()> {
        let previous = &self.previous;
        let blocks: Vec<(Block, bool)> = self
            .full
            .par_iter()
            .map(|input| {
                let digest: Digest = digest(&SHA256, input)
                    .as_ref()
                    .try_into()
                    .unwrap_or_default();
                if let Some(known) = previous.get(&digest) {
                    return (known.clone(), true);
                }
                let mut crc = crc32fast::Hasher::new();
                crc.update(input);
                let deflated = Bytes::from(deflate(input, FlushCompress::Sync));
                let block = Block {
                    deflated,
                    digest,
                    crc,
                };
                (block, false)
            })
            .collect();
        self.full.clear();
        let first = self.blocks.len();
        for (block, reused) in blocks {
            self.crc.combine(&block.crc);
            self.reused += usize::from(reused);
            match &mut self.spill {
                Some(spill) => {
                    spill.file.write_all(&block.deflated)?;
                    spill.len += block.deflated.len() as u64;
                }
                None => self.blocks.push(block),
            }
        }
        if let Some(progress) = &self.progress {
            let new = &self.blocks[first..];
            progress.send_modify(|p| p.blocks.extend(new.iter().map(|b| b.deflated.clone())));
        }
        Ok(())
    }
}

impl Write for ParallelGz {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let len = self.current.len();
            if len < MIN_BLOCK {
                // No cut before MIN_BLOCK: no need to look at the lines yet.
                let take = rest.len().min(MIN_BLOCK - len);
                self.current.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                continue;
            }
            // Up to the next line end, and never past MAX_BLOCK.
            let take = memchr::memchr(b'\n', rest)
                .map_or(rest.len(), |i| i + 1)
                .min(MAX_BLOCK - len);
            self.current.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let len = self.current.len();
            if self.current.last() == Some(&b'\n') {
                let body = &self.current[..len - 1];
                let start = memchr::memrchr(b'\n', body).map_or(0, |i| i + 1);
                if crc32fast::hash(&self.current[start..]).is_multiple_of(CUT_EVERY) {
                    self.cut()?;
                    continue;
                }
            }
            if len == MAX_BLOCK {
                self.cut()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl GzBody {
    /// Blocks taken from the previous output, and all blocks.
    pub(crate) fn reused_blocks(&self) -> (usize, usize) {
        (self.reused, self.blocks.len())
    }

    /// The complete gzip stream of everything written and then `tail`: the shared blocks and
    /// a few closing bytes.
    pub(crate) fn closed_with(&self, tail: &[u8]) -> Vec<Bytes> {
        let end = tail_of(&self.crc, self.written, tail);
        let mut parts = Vec::with_capacity(self.blocks.len() + 2);
        parts.push(Bytes::from_static(&HEADER));
        parts.extend(self.blocks.iter().map(|b| b.deflated.clone()));
        parts.push(Bytes::from(end));
        parts
    }

    /// Compressed bytes held.
    #[cfg(test)]
    fn compressed_len(&self) -> usize {
        self.blocks.iter().map(|b| b.deflated.len()).sum()
    }
}

/// The end of a gzip stream of `written` bytes so far, after `tail`: the last deflate block,
/// the CRC-32 and the length.
fn tail_of(crc: &crc32fast::Hasher, written: u64, tail: &[u8]) -> Vec<u8> {
    let mut crc = crc.clone();
    crc.update(tail);
    let mut end = deflate(tail, FlushCompress::Finish);
    let len = written + tail.len() as u64;
    end.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    end.extend_from_slice(&(len as u32).to_le_bytes());
    end
}

impl SpilledBody {
    /// The gzip stream, read as it is sent.
    pub(crate) fn stream(&self) -> impl Stream<Item = io::Result<Bytes>> + Send + use<> {
        let body = self.clone();
        futures_util::stream::try_unfold(0u64, move |offset| {
            let body = body.clone();
            async move {
                if offset >= body.len {
                    return Ok(None);
                }
                let chunk = tokio::task::spawn_blocking(move || body.read_chunk(offset))
                    .await
                    .map_err(io::Error::other)??;
                let next = offset + chunk.len() as u64;
                Ok(Some((chunk, next)))
            }
        })
    }

    /// The gzip stream as a reader (for decompressing it).
    pub(crate) fn reader(&self) -> impl io::Read + Send + 'static {
        SpilledReader {
            body: self.clone(),
            offset: 0,
        }
    }

    fn read_chunk(&self, offset: u64) -> io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        const CHUNK: u64 = 256 << 10;
        let mut buf = vec![0; CHUNK.min(self.len - offset) as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

struct SpilledReader {
    body: SpilledBody,
    offset: u64,
}

impl io::Read for SpilledReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.body.len.saturating_sub(self.offset);
        let want = (buf.len() as u64).min(left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.body.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The gzip stream of an output still being compressed, closed with `tail`: each block as
/// soon as it is deflated, the rest once it is finished. Ends early (an error, so the client
/// sees a cut response) if the output is abandoned.
pub(crate) fn follow(
    progress: Follower,
    tail: &'static [u8],
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let state = (progress, 0usize, VecDeque::new(), false);
    futures_util::stream::unfold(
        state,
        move |(mut progress, mut sent, mut ready, mut ended)| async move {
            loop {
                if let Some(block) = ready.pop_front() {
                    return Some((Ok(block), (progress, sent, ready, ended)));
                }
                if ended {
                    return None;
                }
                {
                    let now = progress.borrow_and_update();
                    if let Some(body) = &now.done {
                        ready.extend(body.closed_with(tail).into_iter().skip(sent));
                        ended = true;
                        continue;
                    }
                    if sent < now.blocks.len() {
                        ready.extend(now.blocks[sent..].iter().cloned());
                        sent = now.blocks.len();
                        continue;
                    }
                }
                if progress.changed().await.is_err() {
                    let cut = io::Error::other("the output was abandoned while being compressed");
                    return Some((Err(cut), (progress, sent, ready, true)));
                }
            }
        },
    )
}

/// Raw deflate of one block; `Sync` leaves the stream open for the next block. The result is
/// trimmed to its length, as it is kept for as long as it is served.
fn deflate(input: &[u8], flush: FlushCompress) -> Vec<u8> {
    // Level 1 in zlib-rs is its "quick" strategy: on 100 MB of exposition text it keeps 26 MB
    // where level 2 keeps 17 MB, for 0.17 s more CPU. The output is held for as long as it is
    // served, twice during a rescan, so level 2.
    let mut compress = Compress::new(Compression::new(2), false);
    // Exposition text with fingerprints compresses about fourfold; half leaves room.
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        let status = compress.compress_vec(&input[consumed..], &mut out, flush);
        let done = compress.total_in() as usize == input.len();
        match status {
            Ok(Status::StreamEnd) => break,
            // The flush is complete once all input is in and output space was left over.
            Ok(_) if done && out.len() < out.capacity() && flush == FlushCompress::Sync => break,
            Ok(_) => out.reserve(out.capacity().max(64)),
            Err(_) => break,
        }
    }
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip_single_member(parts: &[Bytes]) -> Vec<u8> {
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        // GzDecoder, not MultiGzDecoder: it reads one member only, as curl does.
        let mut decoder = flate2::read::GzDecoder::new(&whole[..]);
        let mut back = Vec::new();
        decoder.read_to_end(&mut back).unwrap();
        let mut rest = Vec::new();
        decoder.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "exactly one gzip member");
        back
    }

    #[test]
    fn blocks_deflated_apart_make_one_gzip_member() {
        let line = b"certvigil_cert_info{source=\"/x\"} 1\n";
        let text: Vec<u8> = (0..2 * MAX_BLOCK + 12345)
            .map(|i| line[i % line.len()])
            .collect();
        let mut gz = ParallelGz::new();
        for piece in text.chunks(7919) {
            gz.write_all(piece).unwrap();
        }
        let body = gz.finish();
        assert_eq!(gunzip_single_member(&body.closed_with(b"")), text);
        let mut with_eof = text.clone();
        with_eof.extend_from_slice(b"# EOF\n");
        assert_eq!(
            gunzip_single_member(&body.closed_with(b"# EOF\n")),
            with_eof
        );
        assert!(
            body.compressed_len() < text.len() / 5,
            "compressed: {}",
            body.compressed_len()
        );
    }

    #[test]
    fn the_gzip_tool_reads_it_whole() {
        let text: Vec<u8> = (0..2 * MAX_BLOCK + 7)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut gz = ParallelGz::new();
        gz.write_all(&text).unwrap();
        let whole: Vec<u8> = gz.finish().closed_with(b"end").concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gz");
        std::fs::write(&path, whole).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut expected = text;
        expected.extend_from_slice(b"end");
        assert_eq!(out.stdout, expected);
    }

    /// Exposition-like lines, all different, cut to `len` bytes.
    fn text(len: usize) -> Vec<u8> {
        let mut text: Vec<u8> = (0..)
            .flat_map(|i| {
                format!(
                    "certvigil_cert_not_after_timestamp_seconds{{source=\"/etc/ssl/{i}.pem\"}} 17\n"
                )
                .into_bytes()
            })
            .take(len)
            .collect();
        text.truncate(len);
        text
    }

    /// Collects a follower's stream; `on_item` is called after each item with the count.
    fn collect(
        follower: Follower,
        tail: &'static [u8],
        on_item: impl Fn(usize),
    ) -> io::Result<Vec<u8>> {
        use futures_util::StreamExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut stream = std::pin::pin!(follow(follower, tail));
            let mut bytes = Vec::new();
            let mut items = 0;
            while let Some(item) = stream.next().await {
                bytes.extend_from_slice(&item?);
                items += 1;
                on_item(items);
            }
            Ok(bytes)
        })
    }

    #[test]
    fn a_follower_gets_blocks_before_the_end_and_then_the_whole_stream() {
        // Enough for a block per core even if every one were cut at MAX_BLOCK.
        let first_batch = (rayon::current_num_threads() + 1) * MAX_BLOCK;
        let text = text(first_batch + MAX_BLOCK + 999);
        let (mut gz, follower) = ParallelGz::followed();
        let (seen, wait_seen) = std::sync::mpsc::channel();
        let writer = {
            let text = text.clone();
            std::thread::spawn(move || {
                // In pieces, as a renderer writes (a block is cut after the write that fills it).
                for piece in text[..first_batch].chunks(8192) {
                    gz.write_all(piece).unwrap();
                }
                // The rest is written only once the follower holds a deflated block: a
                // follower that waited for the end would leave this waiting.
                wait_seen
                    .recv_timeout(std::time::Duration::from_secs(30))
                    .expect("the follower received a block before the output was finished");
                for piece in text[first_batch..].chunks(8192) {
                    gz.write_all(piece).unwrap();
                }
                gz.finish()
            })
        };
        let got = collect(follower, b"# EOF\n", move |items| {
            if items == 2 {
                let _ = seen.send(());
            }
        })
        .unwrap();
        let body = writer.join().unwrap();
        assert_eq!(got, body.closed_with(b"# EOF\n").concat());
        let mut expected = text;
        expected.extend_from_slice(b"# EOF\n");
        assert_eq!(gunzip_single_member(&[Bytes::from(got)]), expected);
    }

    #[test]
    fn a_follower_of_an_abandoned_output_gets_an_error() {
        let (mut gz, follower) = ParallelGz::followed();
        gz.write_all(&text(3 * MAX_BLOCK)).unwrap();
        drop(gz);
        assert!(collect(follower, b"", |_| {}).is_err());
    }

    #[test]
    fn a_deflated_block_holds_no_spare_capacity() {
        let text: Vec<u8> = (0..MIN_BLOCK).map(|i| (i * 31 % 241) as u8).collect();
        let out = deflate(&text, FlushCompress::Sync);
        assert_eq!(out.len(), out.capacity());
    }

    /// A spilled stream is byte for byte the one kept in memory, read back whole by the
    /// response stream and by the reader; none of it stays in memory.
    #[test]
    fn a_spilled_stream_is_the_same_stream_read_from_its_file() {
        use futures_util::StreamExt;
        let text = text(5 * MAX_BLOCK + 12_345);
        let (in_memory, _) = gzip(&text, 8192, None);
        let mut spilling = ParallelGz::spilling(tempfile::tempfile().unwrap()).unwrap();
        for piece in text.chunks(8192) {
            spilling.write_all(piece).unwrap();
        }
        assert!(spilling.blocks.is_empty());
        let spilled = spilling.finish_spilled().unwrap();
        let expected = in_memory.closed_with(b"").concat();
        assert_eq!(spilled.len, expected.len() as u64);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let chunks: Vec<Bytes> = runtime
            .block_on(async { spilled.stream().map(|chunk| chunk.unwrap()).collect().await });
        assert!(chunks.len() > 1, "sent in pieces");
        assert_eq!(chunks.concat(), expected);
        let mut read = Vec::new();
        spilled.reader().read_to_end(&mut read).unwrap();
        assert_eq!(read, expected);
        assert_eq!(gunzip_single_member(&chunks), text);

        let empty = ParallelGz::spilling(tempfile::tempfile().unwrap()).unwrap();
        let empty = empty.finish_spilled().unwrap();
        let mut read = Vec::new();
        empty.reader().read_to_end(&mut read).unwrap();
        assert!(gunzip_single_member(&[Bytes::from(read)]).is_empty());
    }

    #[test]
    fn empty_output_is_a_valid_empty_stream() {
        let body = ParallelGz::new().finish();
        assert!(gunzip_single_member(&body.closed_with(b"")).is_empty());
    }

    fn gzip(text: &[u8], pieces: usize, previous: Option<&GzBody>) -> (GzBody, usize) {
        let mut gz = previous.map_or_else(ParallelGz::new, ParallelGz::reusing);
        for piece in text.chunks(pieces) {
            gz.write_all(piece).unwrap();
        }
        let body = gz.finish();
        let reused = body.reused_blocks().0;
        (body, reused)
    }

    fn digests(body: &GzBody) -> Vec<Digest> {
        body.blocks.iter().map(|b| b.digest).collect()
    }

    #[test]
    fn blocks_are_cut_by_content_not_by_how_it_is_written() {
        let text = text(3 * MAX_BLOCK);
        let (whole, _) = gzip(&text, text.len(), None);
        let (pieces, _) = gzip(&text, 4093, None);
        assert!(whole.blocks.len() >= 3, "{} blocks", whole.blocks.len());
        assert_eq!(digests(&whole), digests(&pieces));
        assert_eq!(gunzip_single_member(&pieces.closed_with(b"")), text);
    }

    /// A rescan that changed one line in the middle and the last line deflates the blocks
    /// holding them; every other block is the previous output's, shared, not copied.
    #[test]
    fn a_rescan_deflates_only_the_blocks_that_changed() {
        let before = text(3 * MAX_BLOCK);
        let (old, none) = gzip(&before, 8192, None);
        assert_eq!(none, 0);
        let mut after = before.clone();
        let middle = after.len() / 2;
        let line = middle + after[middle..].iter().position(|&b| b == b'\n').unwrap() + 1;
        after.splice(
            line..line,
            b"certvigil_cert_info{source=\"/new.pem\"} 1\n"
                .iter()
                .copied(),
        );
        let last = after.len() - 1;
        after[last - 1] = b'9';

        let (new, reused) = gzip(&after, 8192, Some(&old));
        assert_eq!(gunzip_single_member(&new.closed_with(b"")), after);
        assert!(
            reused + 3 >= new.blocks.len() && reused > 0,
            "{reused} of {} blocks reused",
            new.blocks.len()
        );
        let shared = new
            .blocks
            .iter()
            .filter(|b| {
                old.blocks
                    .iter()
                    .any(|o| o.deflated.as_ptr() == b.deflated.as_ptr())
            })
            .count();
        assert_eq!(shared, reused);
        // Nothing changed: everything reused.
        let (same, reused) = gzip(&before, 8192, Some(&old));
        assert_eq!(reused, same.blocks.len());
        assert_eq!(
            same.closed_with(b"").concat(),
            old.closed_with(b"").concat()
        );
    }
}
