//! Streaming one NDJSON file (plain or gzip) as chunks of whole lines, processed in parallel
//! and merged in file order.
//!
//! A reader thread decompresses and cuts the file into chunks of about `CHUNK_BYTES` that end
//! at a newline (a longer line makes a longer chunk), numbering lines as it goes. The caller's
//! `work` runs on a batch of chunks in parallel (rayon); `merge` then sees the results one
//! by one in file order, so whatever it builds is the same for any number of threads. Memory
//! holds a few batches, never the file.

use super::export::ExportFile;
use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

const CHUNK_BYTES: usize = 4 << 20;

/// Whole lines of a file: `data` ends with a newline unless it is the file's last line.
pub struct Chunk {
    /// The 1-based number of the chunk's first line.
    pub first_line: u64,
    pub data: Vec<u8>,
}

impl Chunk {
    /// The lines with their numbers, without the line ending.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let body = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
        body.split(|b| *b == b'\n').enumerate().map(|(i, l)| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            (self.first_line + i as u64, l)
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
    let batch_size = 2 * rayon::current_num_threads().max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Chunk, ReadFailure>>(batch_size);
        let bar = progress.clone();
        scope.spawn(move || read_chunks(file, bar, tx));
        let mut failure = None;
        let mut batch: Vec<Chunk> = Vec::with_capacity(batch_size);
        loop {
            let done = fill(&rx, &mut batch, batch_size, &mut failure);
            let results: Vec<R> = batch.par_iter().map(&work).collect();
            batch.clear();
            for r in results {
                merge(r)?;
            }
            if done {
                break;
            }
        }
        // Dropping `rx` here (end of scope) stops the reader should it still run.
        Ok(failure)
    })
}

/// Takes up to `n` chunks; true when the file is finished.
fn fill(
    rx: &Receiver<Result<Chunk, ReadFailure>>,
    batch: &mut Vec<Chunk>,
    n: usize,
    failure: &mut Option<ReadFailure>,
) -> bool {
    while batch.len() < n {
        match rx.recv() {
            Ok(Ok(c)) => batch.push(c),
            Ok(Err(f)) => {
                *failure = Some(f);
                return true;
            }
            Err(_) => return true,
        }
    }
    false
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

fn read_chunks(file: &ExportFile, bar: ProgressBar, tx: SyncSender<Result<Chunk, ReadFailure>>) {
    let mut line = 1u64;
    let result = (|| -> io::Result<()> {
        let f = std::fs::File::open(&file.path)?;
        let counted = Counted { inner: f, bar };
        let mut reader: Box<dyn Read> = if file.gzip {
            // Multi-member: concatenated gzip files (as some exporters append) read whole.
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                counted,
            )))
        } else {
            Box::new(counted)
        };
        let mut carry: Vec<u8> = vec![];
        loop {
            let mut buf = std::mem::take(&mut carry);
            let start = buf.len();
            buf.resize(start + CHUNK_BYTES, 0);
            let n = read_full(&mut reader, &mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                if !buf.is_empty() {
                    let _ = tx.send(Ok(Chunk {
                        first_line: line,
                        data: buf,
                    }));
                }
                return Ok(());
            }
            match memchr::memrchr(b'\n', &buf) {
                Some(pos) => {
                    carry = buf[pos + 1..].to_vec();
                    buf.truncate(pos + 1);
                    let count = memchr::memchr_iter(b'\n', &buf).count() as u64;
                    let chunk = Chunk {
                        first_line: line,
                        data: buf,
                    };
                    line += count;
                    if tx.send(Ok(chunk)).is_err() {
                        return Ok(());
                    }
                }
                // One line longer than a chunk: keep reading until it ends.
                None => carry = buf,
            }
        }
    })();
    if let Err(error) = result {
        let _ = tx.send(Err(ReadFailure {
            after_line: line.saturating_sub(1),
            error,
        }));
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
