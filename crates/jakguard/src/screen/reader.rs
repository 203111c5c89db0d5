//! Streaming one NDJSON file (plain or gzip) as chunks of whole lines, processed in parallel
//! and merged in file order.
//!
//! The source thread of an ordered pipeline (`pipeline::ordered`) decompresses and cuts the
//! file into chunks of about `CHUNK_BYTES` that end at a newline (a longer line makes a longer
//! chunk), numbering lines as it goes. The caller's `work` runs on the chunks on every core;
//! `merge` sees the results one by one in file order while the next chunks are worked on, so
//! whatever it builds is the same for any number of threads. Chunk buffers go back to the
//! source once merged (and kept for the next file) and are read into again: memory holds a
//! few chunks, never the file.

use super::export::ExportFile;
use super::pipeline;
use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;
use std::io::{self, BufReader, Read};
use std::sync::Mutex;

const CHUNK_BYTES: usize = 4 << 20;
/// Chunk buffers kept for the next file: fresh multi-megabyte buffers come straight from
/// the kernel, zeroed page by page, and would be for every file.
const POOL_MAX: usize = 16;
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Whole lines of a file: `data` ends with a newline unless it is the file's last line.
pub struct Chunk {
    /// The 1-based number of the chunk's first line.
    pub first_line: u64,
    /// Where `data` starts in the file (in the decompressed text for gzip).
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Chunk {
    /// The lines with their numbers, without the line ending.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.lines_at().map(|(n, _, line)| (n, line))
    }

    /// The lines with their numbers and their byte offsets in the file.
    pub fn lines_at(&self) -> impl Iterator<Item = (u64, u64, &[u8])> {
        let body = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
        let mut start = 0usize;
        let mut number = self.first_line;
        std::iter::from_fn(move || {
            if start > body.len() {
                return None;
            }
            let at = self.offset + start as u64;
            let rest = &body[start..];
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = &rest[..end];
            start += end + 1;
            number += 1;
            Some((number - 1, at, line.strip_suffix(b"\r").unwrap_or(line)))
        })
    }
}

/// The file could not be read to its end (I/O error or corrupt gzip). Lines before
/// `after_line` were processed.
#[derive(Debug)]
pub struct ReadFailure {
    pub after_line: u64,
    pub error: io::Error,
}

/// Runs `work` over every chunk of `file` and `merge` over the results in file order.
/// A read failure stops this file only; what was read before it has been merged.
pub fn for_each_chunk<R, E>(
    file: &ExportFile,
    progress: &ProgressBar,
    work: impl Fn(&Chunk) -> R + Sync,
    mut merge: impl FnMut(R) -> Result<(), E>,
) -> Result<Option<ReadFailure>, E>
where
    R: Send,
{
    let mut chunks = match ChunkReader::open(file, progress.clone()) {
        Ok(c) => c,
        Err(error) => {
            return Ok(Some(ReadFailure {
                after_line: 0,
                error,
            }));
        }
    };
    pipeline::ordered(
        rayon::current_num_threads(),
        &mut chunks,
        |chunk: Chunk| (work(&chunk), chunk.data),
        |(result, buffer)| {
            give_back(buffer);
            merge(result)
        },
    )?;
    Ok(chunks.failure.take())
}

/// A buffer from the pool, or a new one.
fn take_buffer() -> Vec<u8> {
    POOL.lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_default()
}

/// Keeps a merged chunk's buffer for the next chunk (of this file or the next).
fn give_back(buffer: Vec<u8>) {
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
    {
        pool.push(buffer);
    }
}

/// Counts the bytes read from disk, for the progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// A file as an iterator of chunks; stops at the end or at the first read failure, which it
/// keeps for the caller.
struct ChunkReader {
    reader: Box<dyn Read + Send>,
    /// The start of a line the previous chunk did not finish.
    carry: Vec<u8>,
    /// The number of the next line.
    line: u64,
    /// Bytes handed out in chunks so far: the offset of the next chunk.
    offset: u64,
    /// How much each read takes in (`CHUNK_BYTES`; smaller in tests).
    chunk_bytes: usize,
    failure: Option<ReadFailure>,
    done: bool,
}

impl ChunkReader {
    fn open(file: &ExportFile, bar: ProgressBar) -> io::Result<Self> {
        let f = std::fs::File::open(&file.path)?;
        let counted = Counted { inner: f, bar };
        let reader: Box<dyn Read + Send> = if file.gzip {
            // Multi-member: concatenated gzip files (as some exporters append) read whole.
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                counted,
            )))
        } else {
            Box::new(counted)
        };
        Ok(ChunkReader {
            reader,
            carry: vec![],
            line: 1,
            offset: 0,
            chunk_bytes: CHUNK_BYTES,
            failure: None,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let mut buf = take_buffer();
        let carry = self.carry.len();
        // The buffer keeps the length it was given back with and is read into over its old
        // bytes: only growth is zeroed. (`read_to_end` would zero the whole spare room of
        // every chunk first, since the reader is a `dyn Read` without `read_buf`: 3 % of
        // the run's instructions.)
        if buf.len() < carry {
            buf.resize(carry, 0);
        }
        buf[..carry].copy_from_slice(&self.carry);
        self.carry.clear();
        let mut filled = carry;
        loop {
            let start = filled;
            let limit = start + self.chunk_bytes;
            if buf.len() < limit {
                // Room for the next chunk's carry too (the end of a line, usually far less
                // than an eighth of a chunk): a pooled buffer then never moves to grow, which
                // copied and freshly faulted in 4 MiB for most chunks (3 % of a screen).
                if buf.capacity() < limit {
                    buf.reserve_exact(limit + self.chunk_bytes / 8 - buf.len());
                }
                buf.resize(limit, 0);
            }
            while filled < limit {
                match self.reader.read(&mut buf[filled..limit]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        give_back(buf);
                        return Err(e);
                    }
                }
            }
            let at_end = filled < limit;
            // Only the part just read can hold the last newline (the carry has none).
            if let Some(pos) = memchr::memrchr(b'\n', &buf[start..filled]).map(|p| start + p) {
                self.carry.extend_from_slice(&buf[pos + 1..filled]);
                buf.truncate(pos + 1);
                return Ok(Some(self.chunk(buf)));
            }
            if at_end {
                // The end of the file: what is left is its last line, without a newline.
                self.done = true;
                buf.truncate(filled);
                if buf.is_empty() {
                    give_back(buf);
                    return Ok(None);
                }
                return Ok(Some(self.chunk(buf)));
            }
            // One line longer than a chunk: keep reading until it ends.
        }
    }

    /// Hands out `data` (whole lines) as the next chunk.
    fn chunk(&mut self, data: Vec<u8>) -> Chunk {
        let count = memchr::memchr_iter(b'\n', &data).count() as u64;
        let chunk = Chunk {
            first_line: self.line,
            offset: self.offset,
            data,
        };
        self.line += count;
        self.offset += chunk.data.len() as u64;
        chunk
    }
}

impl Iterator for ChunkReader {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(c) => c,
            Err(error) => {
                self.done = true;
                self.failure = Some(ReadFailure {
                    after_line: self.line.saturating_sub(1),
                    error,
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static [u8], chunk_bytes: usize) -> ChunkReader {
        ChunkReader {
            reader: Box::new(text),
            carry: vec![],
            line: 1,
            offset: 0,
            chunk_bytes,
            failure: None,
            done: false,
        }
    }

    #[test]
    fn chunks_are_whole_lines_with_their_numbers_and_offsets() {
        let text: &'static [u8] = b"one\ntwo two\r\n\na line longer than a chunk\nx\nlast";
        for size in [1, 2, 3, 5, 8, 64] {
            let chunks: Vec<Chunk> = reader(text, size).collect();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
            assert_eq!(joined, text, "size {size}");
            let mut lines = vec![];
            for c in &chunks {
                assert!(
                    c.data.ends_with(b"\n") || c.data.ends_with(b"last"),
                    "size {size}"
                );
                for (n, at, line) in c.lines_at() {
                    // The offset points at the line in the file.
                    assert_eq!(&text[at as usize..at as usize + line.len()], line);
                    lines.push((n, line.to_vec()));
                }
            }
            let want: Vec<(u64, Vec<u8>)> = [
                "one",
                "two two",
                "",
                "a line longer than a chunk",
                "x",
                "last",
            ]
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.as_bytes().to_vec()))
            .collect();
            assert_eq!(lines, want, "size {size}");
        }
        assert_eq!(reader(b"", 4).count(), 0);
        let ends_with_newline: Vec<Chunk> = reader(b"a\nb\n", 64).collect();
        assert_eq!(ends_with_newline.len(), 1);
        assert_eq!(ends_with_newline[0].lines().count(), 2);
    }
}
