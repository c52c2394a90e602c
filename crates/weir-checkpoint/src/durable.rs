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
