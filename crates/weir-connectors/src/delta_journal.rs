//! Which data files a Delta sink writes, recorded before each file exists, so that the files
//! of a batch that never committed can be found and removed after a crash.
//!
//! delta-rs names data files itself (`part-00000-<uuid>-c000.snappy.parquet`), so a file
//! left by a crash between writing Parquet and committing to the log looks like anyone
//! else's. The sink therefore hands delta-rs an object store that, before the first byte of a
//! data file is written, records its path in the checkpoint as
//! `sinks/<table>/pending/<batch>-<attempt>-<n>.json`. A successful commit deletes the
//! attempt's records. On restart the sink reads what is left: a recorded file that no
//! readable version of the table references is an orphan (its batch crashed before the
//! commit, or its attempt failed before a later one committed). Only files weir recorded are
//! ever deleted, and never one that the log references.
//!
//! The same store makes what delta-rs writes durable: object_store's local file system
//! never fsyncs, so each file (a data file when its upload completes, a log entry when it is
//! put) and the directories created for it are synced before the write returns.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, UploadPart,
};
use serde::{Deserialize, Serialize};
use weir_checkpoint::{Checkpoint, LocalDisk};

/// One recorded data file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PendingFile {
    /// The file's path relative to the table: the log's `add.path`, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Records of weir 0.1 before the table-relative `file`: the object's path in a store
    /// rooted at the file system's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl PendingFile {
    /// The file's path relative to the table at `table_dir`; `None` when the record names a
    /// file outside it (a record of another table), or nothing.
    pub fn table_relative(&self, table_dir: &std::path::Path) -> Option<String> {
        if let Some(file) = &self.file {
            return Some(file.clone());
        }
        // An old record holds the raw absolute path, without its leading `/`.
        let absolute = std::path::Path::new("/").join(self.path.as_deref()?);
        let relative = absolute.strip_prefix(table_dir).ok()?;
        relative.to_str().filter(|r| !r.is_empty()).map(str::to_string)
    }
}

/// Where the current attempt records its files.
#[derive(Default)]
struct Target {
    checkpoint: Option<Arc<Checkpoint>>,
    dir: String,
    /// `<batch>-<attempt>` while a batch is being written.
    attempt: Option<String>,
    written: u64,
    /// Records of this attempt, to delete once it commits.
    records: Vec<String>,
}

/// The shared journal of one sink.
#[derive(Clone, Default)]
pub(crate) struct Journal {
    target: Arc<Mutex<Target>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Records go to `dir` in `checkpoint` from now on.
    pub fn attach(&self, checkpoint: &Arc<Checkpoint>, dir: String) {
        let mut t = self.target.lock().expect("not poisoned");
        t.checkpoint = Some(Arc::clone(checkpoint));
        t.dir = dir;
    }

    /// Data files written from now on belong to `batch_id`.
    pub fn begin(&self, batch_id: u64) {
        let mut t = self.target.lock().expect("not poisoned");
        t.attempt = Some(format!("{batch_id}-{}", uuid::Uuid::new_v4().simple()));
        t.written = 0;
        t.records.clear();
    }

    /// Data files written from now on belong to a compaction (`compact-<uuid>`): swept like
    /// a batch's when it never commits.
    pub fn begin_compaction(&self) {
        let mut t = self.target.lock().expect("not poisoned");
        t.attempt = Some(format!("compact-{}", uuid::Uuid::new_v4().simple()));
        t.written = 0;
        t.records.clear();
    }

    /// The attempt failed: its records stay in the checkpoint for the next start's sweep,
    /// and nothing more is recorded under it.
    pub fn abandon(&self) {
        let mut t = self.target.lock().expect("not poisoned");
        t.attempt = None;
        t.records.clear();
    }

    /// The batch being written, if any.
    fn batch(&self) -> Option<u64> {
        let t = self.target.lock().expect("not poisoned");
        t.attempt.as_ref().and_then(|a| a.split('-').next()).and_then(|b| b.parse().ok())
    }

    /// The batch committed: its records are no longer needed.
    pub async fn finish(&self) {
        let (checkpoint, records) = {
            let mut t = self.target.lock().expect("not poisoned");
            t.attempt = None;
            (t.checkpoint.clone(), std::mem::take(&mut t.records))
        };
        if let Some(c) = checkpoint {
            for r in records {
                // A record left behind is harmless: the next start finds its file referenced.
                let _ = c.delete(&r).await;
            }
        }
    }

    /// Records `location` (relative to the table) before it is written, when a batch is
    /// being written.
    async fn record(&self, location: &Path) -> object_store::Result<()> {
        if location.parts().next().is_some_and(|p| p.as_ref() == "_delta_log") {
            if let Some(batch) = self.batch() {
                crate::failpoint::hit("before_delta_commit", batch);
            }
            return Ok(());
        }
        let (checkpoint, relative) = {
            let mut t = self.target.lock().expect("not poisoned");
            let (Some(checkpoint), Some(attempt)) = (t.checkpoint.clone(), t.attempt.clone()) else { return Ok(()) };
            t.written += 1;
            let relative = format!("{}/{attempt}-{}.json", t.dir, t.written);
            t.records.push(relative.clone());
            (checkpoint, relative)
        };
        checkpoint
            .put_json_new(&relative, &PendingFile { file: Some(location.to_string()), path: None })
            .await
            .map_err(|e| object_store::Error::Generic { store: "weir journal", source: Box::new(e) })
    }
}

/// An object store over a local table's directory that records data files in a [`Journal`]
/// before writing them, and syncs every file it writes.
pub(crate) struct JournaledStore {
    inner: Arc<dyn ObjectStore>,
    journal: Journal,
    disk: Arc<LocalDisk>,
}

impl JournaledStore {
    pub fn new(inner: Arc<dyn ObjectStore>, journal: Journal, disk: Arc<LocalDisk>) -> Self {
        Self { inner, journal, disk }
    }
}

/// Makes the file at `location` (relative to the table) durable.
async fn sync(disk: &Arc<LocalDisk>, location: &Path) -> object_store::Result<()> {
    let file = disk.root().join(location.as_ref());
    disk.sync(file).await.map_err(|e| object_store::Error::Generic { store: "LocalFileSystem", source: format!("cannot sync {location} to disk: {e}").into() })
}

/// A data file being uploaded in parts; synced when complete.
#[derive(Debug)]
struct SyncedUpload {
    inner: Box<dyn MultipartUpload>,
    disk: Arc<LocalDisk>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        sync(&self.disk, &self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl fmt::Display for JournaledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Journaled({})", self.inner)
    }
}

impl fmt::Debug for JournaledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JournaledStore({:?})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for JournaledStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.journal.record(location).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        sync(&self.disk, location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.journal.record(location).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload { inner, disk: Arc::clone(&self.disk), location: location.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
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

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        sync(&self.disk, to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: object_store::RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        sync(&self.disk, to).await
    }
}
