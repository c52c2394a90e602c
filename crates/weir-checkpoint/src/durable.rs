//! Durable writes on local disk. object_store's `LocalFileSystem` writes a file to a staging
//! name and renames (or links) it into place, but never calls fsync: after a power loss a
//! file whose write returned can be missing or empty, and so can a directory it created.
//! weir writes through object_store and then syncs, where it knows the local path: every
//! checkpoint entry and state file, and every file of a Delta commit (data files and the log
//! entry), before the batch loop goes on. Object stores need none of this: a completed
//! upload is durable there.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Syncs files under one local directory, and the directory entries that lead to them.
#[derive(Debug)]
pub struct LocalDisk {
    root: PathBuf,
    /// Directories under `root` whose own entry in their parent is known to be durable.
    durable_dirs: Mutex<HashSet<PathBuf>>,
}

impl LocalDisk {
    /// Files under `root`, an existing directory (made with [`create_dir_all`], so that its
    /// own entry is durable).
    pub fn new(root: PathBuf) -> Self {
        Self { root, durable_dirs: Mutex::new(HashSet::new()) }
    }

    /// The directory synced files are under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the file at `path` (under the root) durable: its content, its entry in its
    /// directory, and the entries of the directories above it up to the root that object_store
    /// may have created for it (each synced once per process).
    pub fn sync_file(&self, path: &Path) -> io::Result<()> {
        sync(path)?;
        let mut created = Vec::new();
        let mut dir = path.parent();
        while let Some(d) = dir {
            sync(d)?;
            if d == self.root || !d.starts_with(&self.root) || self.durable_dirs.lock().expect("not poisoned").contains(d) {
                break;
            }
            created.push(d.to_path_buf());
            dir = d.parent();
        }
        self.durable_dirs.lock().expect("not poisoned").extend(created);
        Ok(())
    }

    /// [`LocalDisk::sync_file`] off the async threads.
    pub async fn sync(self: &Arc<Self>, path: PathBuf) -> io::Result<()> {
        let disk = Arc::clone(self);
        tokio::task::spawn_blocking(move || disk.sync_file(&path)).await.map_err(io::Error::other)?
    }
}

/// Creates `dir` and the directories above it that are missing, as `std::fs::create_dir_all`
/// does, and makes their entries durable: the parent of each directory it created is synced.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    // Absolute, so that the walk up ends at a directory that exists (`/`), not at `""`.
    let dir = &std::path::absolute(dir)?;
    let mut existing = dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if existing == dir {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut created = dir.as_path();
    while let Some(parent) = created.parent() {
        sync(parent)?;
        if parent == existing {
            break;
        }
        created = parent;
    }
    Ok(())
}

/// Bytes a [`StagedFile`] hands to the disk's writeback at a time.
const WRITEBACK_EVERY: u64 = 1 << 20;

/// Bytes a [`StagedFile`] writes at a time straight to the disk.
const DIRECT_BLOCK: usize = 1 << 20;

/// The alignment of a direct (`O_DIRECT`) read or write: of its buffer, its offset in the
/// file and its length.
pub const DIRECT_ALIGN: usize = 4096;

/// A file written in pieces on local disk, beside its name until complete and then renamed
/// into place, as object_store's `LocalFileSystem` writes a multipart upload (the staging
/// name is `<name>#<n>`, which its listings skip). Dropped before [`StagedFile::finish`],
/// the staging file is removed.
///
/// Where the file system allows it (Linux, `O_DIRECT`), the bytes go straight from a
/// buffer of [`DIRECT_BLOCK`] to the disk, past the page cache: such a file (a batch's state
/// delta or Parquet file, tens of MB) is synced at the batch's end and not read back by the
/// run (a state file only by a restart), so copying it into the page cache was CPU spent for
/// nothing, and on a virtual machine whose fresh pages
/// are slow to fault in, 0.1-0.25 s of system time per 96 MB (`dd` here: 0.01 s direct).
/// Only the last partial page (under 4 KiB) is written through the cache. Elsewhere each MiB written
/// is handed to the disk's writeback at once (`sync_file_range`), so that the fsync that
/// makes the file durable waits for its last bytes only.
#[derive(Debug)]
pub struct StagedFile {
    file: Option<File>,
    staging: PathBuf,
    dest: PathBuf,
    written: u64,
    /// Bytes handed to the writeback so far (without `direct`).
    started: u64,
    /// The block being filled, while the file is open for direct writes.
    direct: Option<DirectBlock>,
}

/// A buffer of [`DirectBlock::SIZE`] bytes aligned for direct I/O, the first
/// [`DirectBlock::len`] of them filled: what a [`StagedFile`] and a dedup's spill file write
/// and read a block at a time.
#[derive(Debug)]
pub struct DirectBlock {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Default for DirectBlock {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectBlock {
    /// Bytes a block holds.
    pub const SIZE: usize = DIRECT_BLOCK;

    /// An empty block.
    pub fn new() -> Self {
        let buf = vec![0u8; DIRECT_BLOCK + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Self { buf, start, len: 0 }
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = (DIRECT_BLOCK - self.len).min(bytes.len());
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// Bytes filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more bytes fit.
    pub fn is_full(&self) -> bool {
        self.len == DIRECT_BLOCK
    }

    /// The filled bytes.
    pub fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The filled bytes and what follows them in the buffer up to the next whole page: a
    /// direct write of a partial block.
    pub fn filled_to_page(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len.next_multiple_of(DIRECT_ALIGN)]
    }

    /// The buffer's first `len` bytes and those after them up to the next whole page, for a
    /// direct read of `len` bytes; then [`Self::set_len`].
    pub fn pages_mut(&mut self, len: usize) -> &mut [u8] {
        let end = self.start + len.next_multiple_of(DIRECT_ALIGN).min(DIRECT_BLOCK);
        &mut self.buf[self.start..end]
    }

    /// Says that the first `len` bytes are filled (at most [`Self::SIZE`]).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(DIRECT_BLOCK);
    }
}

impl StagedFile {
    /// A new staging file for `dest`, whose directory is made (durably) if missing.
    pub fn create(dest: PathBuf) -> io::Result<Self> {
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a file path: {}", dest.display())));
        };
        create_dir_all(dir)?;
        let name = name.to_string_lossy().into_owned();
        for n in 1u32.. {
            let staging = dir.join(staging_name(&name, n));
            match open_new(&staging) {
                Ok((file, direct)) => {
                    let direct = direct.then(DirectBlock::new);
                    return Ok(Self { file: Some(file), staging, dest, written: 0, started: 0, direct });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("a staging name is free")
    }

    /// Appends `bytes`.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        while let Some(block) = self.direct.as_mut()
            && !bytes.is_empty()
        {
            let n = block.fill(bytes);
            self.written += n as u64;
            bytes = &bytes[n..];
            if block.is_full() {
                self.flush_block()?;
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let file = self.file.as_ref().expect("written before finish");
        file.write_all_at(bytes, self.written)?;
        self.written += bytes.len() as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            start_writeback(file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(())
    }

    /// Writes the block, whole, at its place in the file: straight to the disk, or through
    /// the page cache from here on if the disk refuses that (written again).
    fn flush_block(&mut self) -> io::Result<()> {
        let Some(block) = &mut self.direct else { return Ok(()) };
        let file = self.file.as_ref().expect("written before finish");
        let mut direct = true;
        write_at(file, &mut direct, block.filled(), self.written - block.len() as u64)?;
        match direct {
            true => block.set_len(0),
            false => {
                self.direct = None;
                self.started = self.written;
            }
        }
        Ok(())
    }

    /// Syncs the content and renames the file into place (replacing what was there); the
    /// new directory entry is the caller's to sync ([`LocalDisk::sync_file`]). Returns the
    /// file's path.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let file = self.file.take().expect("finished once");
        if let Some(block) = self.direct.take().filter(|b| !b.is_empty()) {
            // The last block is partial, and a direct write is of a whole number of aligned
            // pages: those go straight to the disk, the rest (less than a page) through the
            // page cache; all of it does if the disk refuses.
            use std::os::unix::fs::FileExt;
            let (filled, start) = (block.filled(), self.written - block.len() as u64);
            let pages = block.len() / DIRECT_ALIGN * DIRECT_ALIGN;
            let direct = if pages > 0 && file.write_all_at(&filled[..pages], start).is_ok() { pages } else { 0 };
            set_direct(&file, false)?;
            file.write_all_at(&filled[direct..], start + direct as u64)?;
        }
        file.sync_all()?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.staging, &self.dest) {
            let _ = std::fs::remove_file(&self.staging);
            return Err(e);
        }
        Ok(std::mem::take(&mut self.dest))
    }
}

/// Writes `bytes` at `offset` of `file`, open for direct I/O when `direct`: a direct write
/// that fails is made again through the page cache, which the file keeps to from then on
/// (`direct` turns false).
pub fn write_at(file: &File, direct: &mut bool, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if *direct {
        if file.write_all_at(bytes, offset).is_ok() {
            return Ok(());
        }
        set_direct(file, false)?;
        *direct = false;
    }
    file.write_all_at(bytes, offset)
}

/// Opens `path`, which must not exist, for writing: for direct writes where the file system
/// takes them (the flag says so).
fn open_new(path: &Path) -> io::Result<(File, bool)> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut direct = options.clone();
        direct.custom_flags(libc::O_DIRECT);
        match direct.open(path) {
            Ok(file) => return Ok((file, true)),
            // No direct I/O on this file system (tmpfs on older kernels, some FUSE ones).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((options.open(path)?, false))
}

/// Turns direct I/O (`O_DIRECT`) of `file` on or off: with it off, what follows goes
/// through the page cache. Turning it on fails (`EINVAL`) where the file system does not
/// take it, and elsewhere than Linux.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a valid open descriptor, reading and setting its status flags.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
        if libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn set_direct(_file: &File, on: bool) -> io::Result<()> {
    match on {
        true => Err(io::Error::from(io::ErrorKind::Unsupported)),
        false => Ok(()),
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// The `n`th name for a file being written in place of `name`: `name`, `#` and the number,
/// as object_store's `LocalFileSystem` names its multipart uploads (its listings skip them).
fn staging_name(name: &str, n: u32) -> String {
    format!("{name}#{n}")
}

/// Whether `name` is a file being written ([`staging_name`]).
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(entry, n)| !entry.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Starts writing `len` bytes of `file` from `offset` to the disk, without waiting: a hint,
/// whose failure leaves them to the fsync that follows.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a valid open descriptor and a range; the call reads or writes no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// fsync of a file or a directory.
fn sync(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    #[cfg(test)]
    tests::SYNCED.lock().expect("not poisoned").push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every path synced in this process, in order (tests filter by their own directory).
    pub(crate) static SYNCED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// The paths under `dir` synced so far, relative to it (`""` for `dir` itself).
    pub(crate) fn synced_under(dir: &Path) -> Vec<String> {
        SYNCED
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// A staged file holds exactly the bytes written, in order, whatever the sizes of the
    /// pieces: pieces within a direct block, across several, ending on a block's edge, and
    /// a partial last block (its whole pages direct, the rest through the page cache). On this machine's file
    /// systems the file is open for direct writes, and stays so until its last block.
    #[test]
    fn a_staged_file_holds_its_bytes_across_direct_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..DIRECT_BLOCK as u64 * 5).map(|i| (i * 7 % 251) as u8).collect();
        for pieces in [vec![1, 4095, 7], vec![DIRECT_BLOCK], vec![DIRECT_BLOCK - 1, 1, DIRECT_BLOCK], vec![3 * DIRECT_BLOCK + 12_345, 700_000, 1]] {
            let dest = tmp.path().join(format!("f-{}", pieces.len()));
            let mut file = StagedFile::create(dest.clone()).unwrap();
            let direct = file.direct.is_some();
            let mut at = 0;
            for n in &pieces {
                file.write(&bytes[at..at + n]).unwrap();
                at += n;
            }
            if direct {
                assert!(file.direct.is_some(), "{pieces:?}: still direct");
            }
            assert_eq!(file.finish().unwrap(), dest);
            assert_eq!(std::fs::read(&dest).unwrap(), &bytes[..at], "{pieces:?} (direct: {direct})");
        }
    }

    /// `create_dir_all` syncs the parent of each directory it creates. A file in directories
    /// made since: the file, then each directory up to the root; a second file there: the
    /// file and its directory only.
    #[test]
    fn a_file_and_the_directories_created_for_it_are_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        create_dir_all(&root.join("a/b")).unwrap();
        assert_eq!(synced_under(tmp.path()), ["root/a", "root", ""], "each directory created, in its parent");
        // The same place as a path relative to the working directory, through `/`.
        let up = std::env::current_dir().unwrap().components().count() - 1;
        let relative = Path::new(&"../".repeat(up)).join(root.join("c").strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        create_dir_all(&relative).unwrap();
        assert!(root.join("c").is_dir(), "a relative path is created too");
        let before = synced_under(&root).len();
        let disk = LocalDisk::new(root.clone());
        std::fs::write(root.join("a/b/1.json"), b"{}").unwrap();
        disk.sync_file(&root.join("a/b/1.json")).unwrap();
        std::fs::write(root.join("a/b/2.json"), b"{}").unwrap();
        disk.sync_file(&root.join("a/b/2.json")).unwrap();
        assert_eq!(synced_under(&root)[before..], ["a/b/1.json", "a/b", "a", "", "a/b/2.json", "a/b"]);
    }
}
