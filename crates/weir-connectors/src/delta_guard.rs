//! A guard on the Delta log that every table weir writes goes through: no commit may remove
//! a file that a concurrent commit removed already.
//!
//! Delta's rule (Spark's `ConcurrentDeleteDeleteException`) is that two transactions that
//! remove the same file conflict. delta-rs 1.1's conflict checker only counts removals with
//! `dataChange = true`, and a compaction removes its small files with `dataChange = false`.
//! So two compactions of the same files, planned on the same version (the sink's
//! `auto_compact` and a `weir optimize`, or two `weir optimize`), both commit: the loser is
//! rebased over the winner, and the rows of those files are then in the table twice, once in
//! each compacted file. That would break exactly-once as surely as a duplicated batch.
//!
//! The guard sits in the object store delta-rs writes through. A log entry
//! (`_delta_log/<version>.json`) that removes files names the version its writer read
//! (`commitInfo.readVersion`); before it is written as version N, the guard reads the
//! entries between that version and N (the commits delta-rs rebased it over) and refuses
//! the write when one of them removed one of its files. delta-rs then returns the error
//! without committing, and the compaction's new files are left unreferenced (for the sink's
//! journal sweep, or VACUUM). Entries without removals (every streaming append) pass through
//! after a look for `"remove"`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, RenameTargetMode,
};

/// An object store that refuses a Delta log entry removing a file that a commit it was
/// rebased over removed already.
pub(crate) struct RemoveOnce {
    inner: Arc<dyn ObjectStore>,
}

impl RemoveOnce {
    /// Guards the Delta log entries written through `inner`.
    pub(crate) fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner })
    }

    /// Checks the entry `bytes` about to become log version `version` at `location`.
    async fn check(&self, location: &Path, version: u64, bytes: &[u8]) -> object_store::Result<()> {
        let entry = Entry::parse(bytes);
        let Some(read) = entry.read_version else { return Ok(()) };
        if entry.removes.is_empty() || version <= read + 1 {
            return Ok(());
        }
        for between in read + 1..version {
            let path = sibling(location, between);
            let earlier = match self.inner.get(&path).await {
                Ok(found) => found.bytes().await?,
                Err(source @ object_store::Error::NotFound { .. }) => {
                    return Err(refused(location, format!("cannot check for files removed twice: version {between} is not in the log ({source})")));
                }
                Err(e) => return Err(e),
            };
            if let Some(file) = Entry::parse(&earlier).removes.intersection(&entry.removes).next() {
                return Err(refused(
                    location,
                    format!(
                        "this commit (read at version {read}) removes {file}, which version {between} removed already (another compaction of the same files); nothing was committed"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the guard reads from a log entry.
#[derive(Debug, Default)]
struct Entry {
    /// `commitInfo.readVersion`: the table version its writer read.
    read_version: Option<u64>,
    /// The paths it removes, decoded.
    removes: HashSet<String>,
}

impl Entry {
    fn parse(bytes: &[u8]) -> Self {
        let mut entry = Self::default();
        // Appends never remove: skip their parsing.
        if !bytes.windows(8).any(|w| w == b"\"remove\"") {
            return entry;
        }
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if let Some(path) = action["remove"]["path"].as_str() {
                // Writers encode paths differently (`%20`, or not): compare them decoded.
                let decoded = Path::from_url_path(path).map(|p| p.to_string()).unwrap_or_else(|_| path.to_string());
                entry.removes.insert(decoded);
            }
            if let Some(read) = action["commitInfo"]["readVersion"].as_u64() {
                entry.read_version = Some(read);
            }
        }
        entry
    }
}

/// The log version `location` holds, when it is a Delta log entry (`_delta_log/<20 digits>.json`).
fn log_version(location: &Path) -> Option<u64> {
    let mut parts: Vec<_> = location.parts().collect();
    let file = parts.pop()?;
    let dir = parts.pop()?;
    let digits = file.as_ref().strip_suffix(".json")?;
    (dir.as_ref() == "_delta_log" && digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The log entry of `version` beside the entry at `location`.
fn sibling(location: &Path, version: u64) -> Path {
    let mut parts: Vec<_> = location.parts().collect();
    parts.pop();
    Path::from_iter(parts).join(format!("{version:020}.json"))
}

fn refused(location: &Path, message: String) -> object_store::Error {
    object_store::Error::Generic { store: "Delta log", source: format!("{location}: {message}").into() }
}

impl fmt::Display for RemoveOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoveOnce({})", self.inner)
    }
}

impl fmt::Debug for RemoveOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoveOnce({:?})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RemoveOnce {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        if let Some(version) = log_version(location) {
            let bytes: Bytes = payload.clone().into();
            self.check(location, version, &bytes).await?;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    /// Log stores that stage an entry and copy it into place without overwriting are checked
    /// too.
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        if let (Some(version), CopyMode::Create) = (log_version(to), &options.mode) {
            let bytes = self.inner.get(from).await?.bytes().await?;
            self.check(to, version, &bytes).await?;
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        if let (Some(version), RenameTargetMode::Create) = (log_version(to), &options.target_mode) {
            let bytes = self.inner.get(from).await?.bytes().await?;
            self.check(to, version, &bytes).await?;
        }
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn entry(read: u64, removes: &[&str]) -> PutPayload {
        let mut lines = vec![format!(r#"{{"commitInfo":{{"operation":"OPTIMIZE","readVersion":{read}}}}}"#)];
        lines.extend(removes.iter().map(|p| format!(r#"{{"remove":{{"path":"{p}","dataChange":false}}}}"#)));
        lines.join("\n").into()
    }

    #[tokio::test]
    async fn a_file_is_removed_once() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = RemoveOnce::wrap(Arc::clone(&inner));
        let log = |v: u64| Path::from(format!("t/_delta_log/{v:020}.json"));
        store.put(&log(0), r#"{"commitInfo":{"operation":"WRITE"}}"#.into()).await.unwrap();
        // Read at 0, first to commit: nothing between.
        store.put(&log(1), entry(0, &["p=a/f%201.parquet", "g.parquet"])).await.unwrap();
        // Read at 0 too, rebased over 1: one of its files (written encoded otherwise) is gone.
        let e = store.put(&log(2), entry(0, &["p=a/f 1.parquet"])).await.unwrap_err().to_string();
        assert!(e.contains("version 1 removed already") && e.contains("f 1.parquet"), "{e}");
        assert!(inner.head(&log(2)).await.is_err(), "nothing was written");
        // Other files, or read after version 1: fine.
        store.put(&log(2), entry(0, &["h.parquet"])).await.unwrap();
        store.put(&log(3), entry(2, &["g.parquet"])).await.unwrap();
        // Data files and entries without removals are never parsed.
        store.put(&Path::from("t/_delta_log/x.parquet"), "remove".into()).await.unwrap();
        assert_eq!(log_version(&log(7)), Some(7));
        assert_eq!(log_version(&Path::from("t/_delta_log/00000000000000000007.checkpoint.parquet")), None);
    }
}
