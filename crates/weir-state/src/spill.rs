//! A batch's spilled candidate rows (see `dedup.rs`): a temporary file written and read
//! back past the page cache.
//!
//! A batch of two million new keys spills about 130 MB of candidate rows and reads them
//! back once, at its end. Written through the page cache, each MB costs the kernel a copy
//! into pages it must first find, and on a virtual machine whose fresh pages are slow to
//! fault in that is up to 2.6 ms of system time per MB (`dd` of 130 MB here: 0.33 s the
//! first time, 0.03 s into pages just freed; direct, 0.01 s): the better part of the
//! candidates' thread. With direct I/O (`O_DIRECT`) the bytes move between the disk and a
//! few buffers of [`BLOCK`] used over and over, and the disk's own cache (the host's, on a
//! virtual machine) serves the reads. A thread reads up to [`READ_AHEAD`] blocks ahead of
//! the reader, so the batch loop waits for the disk only when it outruns it. Where the file
//! system does not take direct I/O, or a direct read or write fails, the file is written
//! and read through the page cache from there on, as before.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use weir_checkpoint::durable::{DirectBlock, set_direct, write_at};

/// Bytes per read or write of the file.
const BLOCK: usize = DirectBlock::SIZE;

/// Blocks read ahead of the reader.
const READ_AHEAD: usize = 2;

/// Fills `buf` from `offset`, short only at the file's end; a direct read that fails is
/// tried again through the page cache, which the file then keeps to.
fn read_at(file: &File, direct: &mut bool, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if *direct => {
                set_direct(file, false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The writing end: bytes gather in a block, written whole once full.
pub(crate) struct SpillWriter {
    file: File,
    direct: bool,
    block: DirectBlock,
    /// Bytes written to the spill (the block's included).
    written: u64,
}

impl SpillWriter {
    /// A new, unnamed temporary file (removed when it is closed).
    pub(crate) fn new() -> io::Result<Self> {
        let file = tempfile::tempfile()?;
        let direct = set_direct(&file, true).is_ok();
        Ok(Self { file, direct, block: DirectBlock::new(), written: 0 })
    }

    /// Writes the block at its place: direct writes are of whole aligned lengths, so the
    /// last, partial block goes with the bytes after it in the buffer, which no read gets
    /// to (a reader stops at [`Self::written`]).
    fn write_block(&mut self) -> io::Result<()> {
        let bytes = match self.direct {
            true => self.block.filled_to_page(),
            false => self.block.filled(),
        };
        let offset = self.written - self.block.len() as u64;
        write_at(&self.file, &mut self.direct, bytes, offset)?;
        self.block.set_len(0);
        Ok(())
    }

    /// Bytes written to the spill so far.
    pub(crate) fn len(&self) -> u64 {
        self.written
    }

    /// Writes what is left and hands the file over to be read from its start.
    pub(crate) fn finish(self) -> io::Result<SpillReader> {
        Ok(SpillReader::new(self.written_out()?))
    }

    /// Writes what is left: the file, to be read from its start.
    fn written_out(mut self) -> io::Result<Fill> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        Ok(Fill { file: self.file, direct: self.direct, len: self.written, offset: 0 })
    }
}

impl Write for SpillWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.block.fill(bytes);
        self.written += n as u64;
        if self.block.is_full() {
            self.write_block()?;
        }
        Ok(n)
    }

    /// Nothing: blocks are written whole, and the last by [`SpillWriter::finish`]; nothing
    /// reads the file before.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a spill's blocks in order.
struct Fill {
    file: File,
    direct: bool,
    /// The spill's bytes: past them, the file holds the padding of the last direct write.
    len: u64,
    offset: u64,
}

impl Fill {
    /// Fills `block` with the next bytes of the spill; `false` at its end.
    fn next(&mut self, block: &mut DirectBlock) -> io::Result<bool> {
        let Some(want) = self.len.checked_sub(self.offset).filter(|&rest| rest > 0).map(|rest| rest.min(BLOCK as u64) as usize) else {
            return Ok(false);
        };
        let buf = match self.direct {
            true => block.pages_mut(want),
            false => &mut block.pages_mut(want)[..want],
        };
        let got = read_at(&self.file, &mut self.direct, buf, self.offset)?;
        if got < want {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the spill file ends at {} of its {} bytes", self.offset + got as u64, self.len)));
        }
        block.set_len(want);
        self.offset += want as u64;
        Ok(true)
    }
}

/// Where a [`SpillReader`]'s blocks come from.
enum Blocks {
    /// A thread reading ahead: each block, `None` at the end. Blocks read go back to it.
    Thread { filled: Receiver<io::Result<Option<DirectBlock>>>, empty: Sender<DirectBlock> },
    /// Read here, when the spill is one block or no thread could be started.
    Here(Fill),
}

/// The reading end, from the spill's first byte.
pub(crate) struct SpillReader {
    blocks: Blocks,
    current: Option<DirectBlock>,
    pos: usize,
}

impl SpillReader {
    fn new(fill: Fill) -> Self {
        if fill.len <= BLOCK as u64 {
            return Self::here(fill);
        }
        let (filled_tx, filled) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let (empty, empty_rx) = std::sync::mpsc::channel();
        // The file goes to the thread through a slot, from which it comes back when no
        // thread can be had: then it is read here.
        let slot = Arc::new(Mutex::new(Some(fill)));
        let theirs = Arc::clone(&slot);
        let read = move || {
            let Some(fill) = theirs.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
            read_ahead(fill, &filled_tx, &empty_rx);
        };
        match std::thread::Builder::new().name("weir-spill".into()).spawn(read) {
            Ok(_) => Self { blocks: Blocks::Thread { filled, empty }, current: None, pos: 0 },
            Err(_) => match slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                Some(fill) => Self::here(fill),
                // Not reached: a thread that never started took nothing.
                None => Self { blocks: Blocks::Thread { filled, empty }, current: None, pos: 0 },
            },
        }
    }

    fn here(fill: Fill) -> Self {
        Self { blocks: Blocks::Here(fill), current: None, pos: 0 }
    }
}

/// The reading thread: every block in order, then `None`, or the first error.
fn read_ahead(mut fill: Fill, filled: &SyncSender<io::Result<Option<DirectBlock>>>, empty: &Receiver<DirectBlock>) {
    loop {
        let mut block = empty.try_recv().unwrap_or_else(|_| DirectBlock::new());
        let next = match fill.next(&mut block) {
            Ok(true) => Ok(Some(block)),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        let last = !matches!(next, Ok(Some(_)));
        // A closed channel: the reader was dropped.
        if filled.send(next).is_err() || last {
            return;
        }
    }
}

impl Read for SpillReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(block) = &self.current
                && self.pos < block.len()
            {
                let n = (block.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&block.filled()[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.pos = 0;
            match &mut self.blocks {
                Blocks::Thread { filled, empty } => {
                    if let Some(done) = self.current.take() {
                        // A stopped thread needs no more blocks.
                        let _ = empty.send(done);
                    }
                    match filled.recv() {
                        Ok(Ok(Some(block))) => self.current = Some(block),
                        Ok(Ok(None)) => return Ok(0),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(io::Error::other("the thread reading the spill file stopped")),
                    }
                }
                Blocks::Here(fill) => {
                    // Emptied first: after an error the block holds nothing to read again.
                    let block = self.current.get_or_insert_with(DirectBlock::new);
                    block.set_len(0);
                    if !fill.next(block)? {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_checkpoint::durable::DIRECT_ALIGN;

    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    fn round_trip(data: &[u8], pieces: usize) -> Vec<u8> {
        let mut writer = SpillWriter::new().unwrap();
        for piece in data.chunks(pieces.max(1)) {
            writer.write_all(piece).unwrap();
        }
        let mut reader = writer.finish().unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 7_777];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        back
    }

    /// Whatever the spill's length against the blocks and the alignment, and however it was
    /// written, it reads back byte for byte, and reading past its end gives nothing.
    #[test]
    fn a_spill_reads_back_what_was_written() {
        for len in [0, 1, DIRECT_ALIGN - 1, DIRECT_ALIGN, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345, 9 * BLOCK] {
            let data = bytes(len);
            for pieces in [1 << 16, 100_003] {
                assert!(round_trip(&data, pieces) == data, "{len} bytes written {pieces} at a time");
            }
        }
    }

    /// A spill read where no thread reads ahead (one block, or no thread to be had) gives
    /// the same bytes.
    #[test]
    fn a_spill_read_without_a_thread_gives_the_same_bytes() {
        let data = bytes(5 * BLOCK + 999);
        let mut writer = SpillWriter::new().unwrap();
        writer.write_all(&data).unwrap();
        let mut reader = SpillReader::here(writer.written_out().unwrap());
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert!(back == data);
    }

    /// A direct write the file system refuses (here: from a buffer not aligned for it) is
    /// made through the page cache, which the file keeps to; the bytes read back whole.
    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        let file = tempfile::tempfile().unwrap();
        let mut direct = set_direct(&file, true).is_ok();
        let was_direct = direct;
        let data = bytes(3 * DIRECT_ALIGN + 1);
        write_at(&file, &mut direct, &data[1..], 0).unwrap();
        // Only a file open for direct I/O refuses the unaligned write.
        assert!(!direct || !was_direct);
        let mut reader = SpillReader::here(Fill { file, direct, len: data.len() as u64 - 1, offset: 0 });
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert!(back == data[1..]);
    }

    /// A spill file shorter than what was written to it is an error when read, never a
    /// quiet end: the candidate rows it lost would be lost from the batch's output.
    #[test]
    fn a_spill_cut_short_is_an_error() {
        for len in [BLOCK / 2, 3 * BLOCK + 5] {
            let mut writer = SpillWriter::new().unwrap();
            writer.write_all(&bytes(len)).unwrap();
            let fill = writer.written_out().unwrap();
            fill.file.set_len(len as u64 / 2).unwrap();
            let mut reader = SpillReader::new(fill);
            let e = reader.read_to_end(&mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains("the spill file ends at"), "{e}");
        }
    }
}
