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
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};
use serde::{Deserialize, Serialize};
use weir_checkpoint::durable::StagedFile;
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

/// Where `LocalFileSystem` keeps the object at `location` under `disk`'s root (the URL
/// segments it joins decode back to the parts' text).
fn local_path(disk: &LocalDisk, location: &Path) -> std::path::PathBuf {
    disk.root().join(location.as_ref())
}

/// Makes the file at `location` (relative to the table) durable.
async fn sync(disk: &Arc<LocalDisk>, location: &Path) -> object_store::Result<()> {
    let file = local_path(disk, location);
    disk.sync(file).await.map_err(|e| object_store::Error::Generic { store: "LocalFileSystem", source: format!("cannot sync {location} to disk: {e}").into() })
}

/// A data file uploaded in parts (delta-rs's parts of 5 MiB and more), written by weir
/// itself rather than by object_store's `LocalFileSystem`: to a [`StagedFile`] at the path
/// that store would use (`<file>#<n>` while written, which its listings skip), straight to
/// the disk past the page cache where the file system allows it, then synced and renamed
/// into place when complete. The file is synced at its batch's commit and not read back by
/// weir; copying a batch's Parquet bytes into the page cache cost system time on the batch's
/// path (see `StagedFile`). Parts are written in order whatever order their uploads run in.
#[derive(Debug)]
struct StagedUpload {
    parts: Arc<Mutex<StagedParts>>,
    /// Where the next part starts in the file.
    offset: u64,
    disk: Arc<LocalDisk>,
    location: Path,
}

/// The file of a [`StagedUpload`], and the parts that came before one in front of them.
#[derive(Debug)]
struct StagedParts {
    /// `None` once completed or aborted.
    file: Option<StagedFile>,
    /// Bytes written to the file.
    written: u64,
    /// Parts waiting for the ones before them, by where they start.
    waiting: std::collections::BTreeMap<u64, PutPayload>,
}

fn local_err(what: &str, location: &Path, e: impl fmt::Display) -> object_store::Error {
    object_store::Error::Generic { store: "LocalFileSystem", source: format!("cannot {what} {location}: {e}").into() }
}

impl StagedUpload {
    async fn start(disk: Arc<LocalDisk>, location: &Path) -> object_store::Result<Self> {
        let dest = local_path(&disk, location);
        let file = tokio::task::spawn_blocking(move || StagedFile::create(dest))
            .await
            .map_err(|e| local_err("write", location, e))?
            .map_err(|e| local_err("write", location, e))?;
        let parts = StagedParts { file: Some(file), written: 0, waiting: Default::default() };
        Ok(Self { parts: Arc::new(Mutex::new(parts)), offset: 0, disk, location: location.clone() })
    }
}

#[async_trait]
impl MultipartUpload for StagedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let at = self.offset;
        self.offset += data.content_length() as u64;
        let (parts, location) = (Arc::clone(&self.parts), self.location.clone());
        Box::pin(async move {
            let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut guard = parts.lock().expect("not poisoned");
                let parts = &mut *guard;
                parts.waiting.insert(at, data);
                while let Some(entry) = parts.waiting.first_entry()
                    && *entry.key() == parts.written
                {
                    let data = entry.remove();
                    let file = parts.file.as_mut().ok_or_else(|| std::io::Error::other("the upload has ended"))?;
                    for chunk in data.iter() {
                        file.write(chunk)?;
                    }
                    parts.written += data.content_length() as u64;
                }
                Ok(())
            });
            write.await.map_err(|e| local_err("write", &location, e))?.map_err(|e| local_err("write", &location, e))
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (parts, location) = (Arc::clone(&self.parts), self.location.clone());
        let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut parts = parts.lock().expect("not poisoned");
            let file = parts.file.take().ok_or_else(|| std::io::Error::other("the upload has ended"))?;
            if !parts.waiting.is_empty() {
                return Err(std::io::Error::other("a part of the file was not uploaded"));
            }
            file.finish().map(drop)
        });
        done.await.map_err(|e| local_err("complete", &location, e))?.map_err(|e| local_err("complete", &location, e))?;
        sync(&self.disk, &location).await?;
        Ok(PutResult { e_tag: None, version: None })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // The staging file goes with it.
        let file = self.parts.lock().expect("not poisoned").file.take();
        drop(file);
        Ok(())
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
    /// A data file put whole (delta-rs puts a file smaller than its 5 MiB parts in one
    /// piece: every file of a small batch) is written as one uploaded in parts is, past the
    /// page cache ([`StagedUpload`]). Anything else, a log entry put only if it is new among
    /// them, goes through the local file system store as it asks.
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.journal.record(location).await?;
        let data_file = matches!(opts.mode, PutMode::Overwrite)
            && opts.attributes.is_empty()
            && location.parts().next().is_some_and(|first| first.as_ref() != "_delta_log");
        let result = match data_file {
            true => {
                let dest = local_path(&self.disk, location);
                let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut file = StagedFile::create(dest)?;
                    for chunk in payload.iter() {
                        file.write(chunk)?;
                    }
                    file.finish().map(drop)
                });
                write.await.map_err(|e| local_err("write", location, e))?.map_err(|e| local_err("write", location, e))?;
                PutResult { e_tag: None, version: None }
            }
            false => self.inner.put_opts(location, payload, opts).await?,
        };
        sync(&self.disk, location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.journal.record(location).await?;
        // `LocalFileSystem` refuses attributes (and ignores tags): it says so.
        if !opts.attributes.is_empty() {
            return self.inner.put_multipart_opts(location, opts).await;
        }
        Ok(Box::new(StagedUpload::start(Arc::clone(&self.disk), location).await?))
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

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt as _;
    use object_store::local::LocalFileSystem;

    use super::*;

    /// A journaled store over a new directory, the local store under it, and a data file's
    /// location there with its path on disk: a name object_store escapes ('%'), in a folder
    /// with '=' and a space.
    fn journaled() -> (tempfile::TempDir, JournaledStore, Arc<dyn ObjectStore>, Path, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let fs = LocalFileSystem::new_with_prefix(&root).unwrap();
        let location = Path::from("day=2024-01-01 x/part-00000-a b%.parquet");
        let file = fs.path_to_filesystem(&location).unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(fs);
        let store = JournaledStore::new(Arc::clone(&local), Journal::default(), Arc::new(LocalDisk::new(root)));
        (tmp, store, local, location, file)
    }

    /// A data file uploaded in parts lands whole, in part order, at the path the local file
    /// system store reads it from, even when the parts' uploads finish in reverse order;
    /// until complete it is only a staging file, and an aborted upload leaves nothing.
    #[tokio::test]
    async fn a_multipart_upload_is_written_in_part_order_and_appears_when_complete() {
        let (_tmp, store, local, location, file) = journaled();
        let bytes: Vec<u8> = (0..3_500_000u32).map(|i| (i % 253) as u8).collect();
        let cuts = [0, 1_048_576, 1_048_577, 2_200_000, 3_500_000];

        let mut upload = store.put_multipart(&location).await.unwrap();
        let parts: Vec<UploadPart> = cuts.windows(2).map(|w| upload.put_part(PutPayload::from(bytes[w[0]..w[1]].to_vec()))).collect();
        for part in parts.into_iter().rev() {
            part.await.unwrap();
        }
        let dir = file.parent().unwrap().to_path_buf();
        let names = || -> Vec<String> { std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect() };
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(names(), [format!("{name}#1")], "staged beside its name until complete");
        upload.complete().await.unwrap();
        assert_eq!(names(), std::slice::from_ref(&name), "in place, and no staging file left");
        let got = local.get(&location).await.unwrap().bytes().await.unwrap();
        assert!(got == bytes, "the store reads the parts in order where they were written");

        let aborted = Path::from("day=2024-01-01 x/part-00001.parquet");
        let mut upload = store.put_multipart(&aborted).await.unwrap();
        upload.put_part(PutPayload::from(vec![1u8; 10])).await.unwrap();
        upload.abort().await.unwrap();
        assert_eq!(names(), [name], "an aborted upload leaves nothing");
    }

    /// A data file put whole lands whole at the path the local file system store reads, in
    /// place of what was there, with no staging file left; a log entry put only if new is
    /// still refused when one is there, and written when not.
    #[tokio::test]
    async fn a_data_file_put_whole_is_staged_and_a_log_entry_stays_conditional() {
        let (_tmp, store, local, location, file) = journaled();
        for len in [10usize, 1_048_576 + 4_096 + 3, 2_000_000] {
            let bytes: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8).collect();
            let (head, tail) = bytes.split_at(len / 3);
            let payload = PutPayload::from_iter([bytes::Bytes::from(head.to_vec()), bytes::Bytes::from(tail.to_vec())]);
            store.put(&location, payload).await.unwrap();
            let got = local.get(&location).await.unwrap().bytes().await.unwrap();
            assert!(got == bytes, "{len} bytes read back as put");
            let dir = file.parent().unwrap();
            let names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            assert_eq!(names, [file.file_name().unwrap().to_str().unwrap()], "no staging file left");
        }

        let entry = Path::from("_delta_log/00000000000000000001.json");
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        store.put_opts(&entry, PutPayload::from_static(b"{}"), create.clone()).await.unwrap();
        let e = store.put_opts(&entry, PutPayload::from_static(b"{\"x\":1}"), create).await.unwrap_err();
        assert!(matches!(e, object_store::Error::AlreadyExists { .. }), "{e}");
        assert_eq!(local.get(&entry).await.unwrap().bytes().await.unwrap().as_ref(), b"{}");
    }
}
