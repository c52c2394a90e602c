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

/// A file written in pieces on local disk, beside its name until complete and then renamed
/// into place, as object_store's `LocalFileSystem` writes a multipart upload (the staging
/// name is `<name>#<n>`, which its listings skip). Each MiB written is handed to the
/// disk's writeback at once (`sync_file_range`), so that the fsync that makes the file
/// durable waits for its last bytes only: a batch's state delta of tens of MB, synced at
/// the batch's end beside its Parquet files, kept both cores idle for ~40 ms while the disk
/// wrote it all. Dropped before [`StagedFile::finish`], the staging file is removed.
#[derive(Debug)]
pub struct StagedFile {
    file: Option<File>,
    staging: PathBuf,
    dest: PathBuf,
    written: u64,
    /// Bytes handed to the writeback so far.
    started: u64,
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
            match File::options().write(true).create_new(true).open(&staging) {
                Ok(file) => return Ok(Self { file: Some(file), staging, dest, written: 0, started: 0 }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("a staging name is free")
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let file = self.file.as_mut().expect("written before finish");
        file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            start_writeback(file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(())
    }

    /// Syncs the content and renames the file into place (replacing what was there); the
    /// new directory entry is the caller's to sync ([`LocalDisk::sync_file`]). Returns the
    /// file's path.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let file = self.file.take().expect("finished once");
        file.sync_all()?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.staging, &self.dest) {
            let _ = std::fs::remove_file(&self.staging);
            return Err(e);
        }
        Ok(std::mem::take(&mut self.dest))
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
