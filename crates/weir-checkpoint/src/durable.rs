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
    /// Files under `root`, an existing directory. The root's own entry is synced now (it
    /// may just have been created).
    pub fn new(root: PathBuf) -> io::Result<Self> {
        if let Some(parent) = root.parent() {
            sync(parent)?;
        }
        Ok(Self { root, durable_dirs: Mutex::new(HashSet::new()) })
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

    /// A file in new directories: the file, then each directory up to the root; a second
    /// file there: the file and its directory only.
    #[test]
    fn a_file_and_the_directories_created_for_it_are_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let disk = LocalDisk::new(root.clone()).unwrap();
        assert_eq!(synced_under(tmp.path()), [""], "the root's entry, in its parent");
        std::fs::write(root.join("a/b/1.json"), b"{}").unwrap();
        disk.sync_file(&root.join("a/b/1.json")).unwrap();
        std::fs::write(root.join("a/b/2.json"), b"{}").unwrap();
        disk.sync_file(&root.join("a/b/2.json")).unwrap();
        assert_eq!(synced_under(&root), ["a/b/1.json", "a/b", "a", "", "a/b/2.json", "a/b"]);
    }
}
