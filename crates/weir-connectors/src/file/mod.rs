//! The file source: a directory of JSON, CSV or Parquet files, read in name order.
//!
//! Its offset is `{"logOffset": N}`: batch N read the files listed in the checkpoint entry
//! `sources/<table>/<N>.json`, written before the batch's offsets. A replay reads exactly
//! those files. Files whose path has a part starting with `_` or `.` are ignored (`_SUCCESS`,
//! temporary files): writers should write under such a name and rename when done.

pub mod decode;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir_checkpoint::{Checkpoint, Location};
use weir_sql::config::{BadRows, FileConfig, FileFormat};

use crate::error::{ConnectorError, Result};
use crate::{ReadOutput, Source};

/// `sources/<table>/<N>.json`: the files batch N reads, relative to the source directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileLogEntry {
    version: u32,
    files: Vec<String>,
}

/// Reads new files of a directory, batch by batch.
#[derive(Debug)]
pub struct FileSource {
    table: String,
    config: FileConfig,
    location: Location,
    schema: SchemaRef,
    /// Every file some batch has taken (the log entries up to the newest recorded batch).
    seen: HashSet<String>,
    /// Files of recent log entries, by entry id, so reads need no checkpoint round trip.
    entries: BTreeMap<u64, Vec<String>>,
    /// With `available-now`: the only files this run may take.
    frozen: Option<HashSet<String>>,
    /// The batch through which file lists are compacted.
    compacted_through: Option<u64>,
    /// Until the first batch of this run is planned, a crashed run may have left that
    /// batch's file list behind; later batches' lists can only come from this run.
    may_find_planned_list: bool,
}

impl FileSource {
    /// Opens the source; with no declared columns, the schema comes from the first Parquet file.
    pub async fn new(table: &str, config: FileConfig, declared: Option<SchemaRef>) -> Result<Self> {
        let location = Location::resolve(&config.path, false).map_err(|e| {
            ConnectorError::Config(format!("table '{table}': source directory {e}; create it, or fix option 'path'"))
        })?;
        let schema = match (declared, config.format) {
            (Some(s), _) => s,
            (None, FileFormat::Parquet) => {
                let files = list_files(&location).await?;
                let first = files.first().ok_or_else(|| {
                    ConnectorError::Config(format!(
                        "table '{table}': no columns declared and no Parquet file in {} to take them from; declare the columns",
                        config.path
                    ))
                })?;
                let bytes = fetch(&location, first).await?;
                let meta = ArrowReaderMetadata::load(&bytes, Default::default()).map_err(|e| {
                    ConnectorError::BadData(format!("{}: not a readable Parquet file: {e}", location.display(&location.child(first))))
                })?;
                Arc::clone(meta.schema())
            }
            (None, _) => {
                return Err(ConnectorError::Config(format!(
                    "table '{table}': a JSON or CSV file source needs declared columns, e.g. CREATE TABLE {table} (id BIGINT, ...) WITH (...)"
                )));
            }
        };
        Ok(Self {
            table: table.to_string(),
            config,
            location,
            schema,
            seen: HashSet::new(),
            entries: BTreeMap::new(),
            frozen: None,
            compacted_through: None,
            may_find_planned_list: true,
        })
    }

    fn log_path(&self, id: u64) -> String {
        format!("sources/{}/{id}.json", self.table)
    }

    async fn entry(&self, checkpoint: &Checkpoint, id: u64) -> Result<Vec<String>> {
        if let Some(files) = self.entries.get(&id) {
            return Ok(files.clone());
        }
        let entry: Option<FileLogEntry> = checkpoint.get_json(&self.log_path(id)).await?;
        entry.map(|e| e.files).ok_or_else(|| {
            ConnectorError::Config(format!(
                "checkpoint has no file list {} that its offsets refer to; the checkpoint is incomplete",
                self.log_path(id)
            ))
        })
    }
}

/// Every this many batches, the per-batch file lists before the batch are folded into one.
const COMPACT_EVERY: u64 = 100;

impl FileSource {
    /// Folds the file lists of batches up to `through` (all committed: the loop plans batch
    /// `through + 1` only after it) into `compact-<through>.json`, then deletes them, so a
    /// restart reads one file instead of one per batch.
    async fn compact(&self, checkpoint: &Checkpoint, through: u64) -> Result<()> {
        let dir = format!("sources/{}", self.table);
        let mut files: Vec<String> = self.seen.iter().cloned().collect();
        files.sort();
        match checkpoint.put_json_new(&format!("{dir}/compact-{through}.json"), &FileLogEntry { version: 1, files }).await {
            // Written by a run that died before deleting the old lists: finish its work.
            Ok(()) | Err(weir_checkpoint::CheckpointError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        for name in checkpoint.file_names(&dir).await? {
            let old_compact = name.strip_prefix("compact-").and_then(|n| n.strip_suffix(".json")?.parse::<u64>().ok());
            let old_entry = name.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok());
            if old_compact.is_some_and(|c| c < through) || old_entry.is_some_and(|id| id <= through) {
                checkpoint.delete(&format!("{dir}/{name}")).await?;
            }
        }
        Ok(())
    }
}

/// The `logOffset` of a file-source offset.
fn log_offset(offset: &Value) -> Result<u64> {
    offset
        .get("logOffset")
        .and_then(Value::as_u64)
        .ok_or_else(|| ConnectorError::Config(format!("not a file source offset: {offset}")))
}

fn is_hidden(relative: &str) -> bool {
    relative.split('/').any(|part| part.starts_with('_') || part.starts_with('.'))
}

/// Every visible file under the location, relative paths in name order.
async fn list_files(location: &Location) -> Result<Vec<String>> {
    let root = location.root.clone();
    let metas: Vec<_> = location
        .store
        .list(Some(&root))
        .try_collect()
        .await
        .map_err(|e| ConnectorError::Io(format!("cannot list {}: {e}", location.display(&root))))?;
    let prefix_len = root.as_ref().len();
    let mut files: Vec<String> = metas
        .into_iter()
        .map(|m| m.location.as_ref()[prefix_len..].trim_start_matches('/').to_string())
        .filter(|rel| !rel.is_empty() && !is_hidden(rel))
        .collect();
    files.sort();
    Ok(files)
}

/// An error reading the file `shown` of an earlier batch's list.
fn read_err(shown: &str, e: object_store::Error) -> ConnectorError {
    match e {
        object_store::Error::NotFound { .. } => ConnectorError::BadData(format!(
            "{shown}: the file was taken by an earlier batch but is gone; a replay needs it back"
        )),
        e => ConnectorError::Io(format!("cannot read {shown}: {e}")),
    }
}

/// The whole file `relative`.
async fn fetch(location: &Location, relative: &str) -> Result<Bytes> {
    let path: Path = location.child(relative);
    let shown = location.display(&path);
    let get = location.store.get(&path).await.map_err(|e| read_err(&shown, e))?;
    get.bytes().await.map_err(|e| read_err(&shown, e))
}

/// Bytes of a newline-delimited JSON file per read, and per chunk of a batch.
const PIECE_BYTES: u64 = 2 << 20;

/// Pieces read ahead of the one being decoded.
const READ_AHEAD: usize = 2;

/// `stream`, polled in a task of its own up to `ahead` items ahead of its reader. The task
/// ends when the returned stream is dropped.
fn read_ahead<T: Send + 'static>(mut stream: BoxStream<'static, T>, ahead: usize) -> BoxStream<'static, T> {
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(ahead.max(1));
    let task = AbortOnDrop(tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    }));
    futures::stream::unfold((rx, task), |(mut rx, task)| async move { rx.recv().await.map(|item| (item, (rx, task))) }).boxed()
}

/// The file `relative`, a piece at a time, for the batch loop's chunks. Newline-delimited
/// JSON is read in ranged reads of about `piece_bytes` that end at the last line end they
/// hold, the next read starting after it: a batch holds a few pieces, not whole files, and
/// the pieces decode on all cores. A line longer than a read makes the read grow until the
/// line ends. CSV (a quoted field may hold a newline) and Parquet come whole.
fn read_pieces(location: Location, relative: String, format: FileFormat, piece_bytes: u64) -> BoxStream<'static, Result<(String, Bytes)>> {
    enum Next {
        Start,
        At { pos: u64, size: u64 },
        Done,
    }
    let path: Path = location.child(&relative);
    let shown = location.display(&path);
    futures::stream::try_unfold(Next::Start, move |next| {
        let (location, relative, path, shown) = (location.clone(), relative.clone(), path.clone(), shown.clone());
        async move {
            let (pos, size) = match next {
                Next::Done => return Ok(None),
                Next::Start if format != FileFormat::Json => {
                    let bytes = fetch(&location, &relative).await?;
                    return Ok(Some(((shown, bytes), Next::Done)));
                }
                Next::Start => match location.store.head(&path).await.map_err(|e| read_err(&shown, e))?.size {
                    0 => return Ok(Some(((shown, Bytes::new()), Next::Done))),
                    size => (0, size),
                },
                Next::At { pos, size } => (pos, size),
            };
            let mut want = piece_bytes;
            loop {
                let end = pos.saturating_add(want).min(size);
                let bytes = location.store.get_range(&path, pos..end).await.map_err(|e| read_err(&shown, e))?;
                if (bytes.len() as u64) < end - pos {
                    return Err(ConnectorError::BadData(format!(
                        "{shown}: the file shrank while it was read ({size} bytes at first); files must not change once they are in the directory"
                    )));
                }
                if end == size {
                    return Ok(Some(((shown, bytes), Next::Done)));
                }
                if let Some(last) = bytes.iter().rposition(|b| *b == b'\n') {
                    let next = Next::At { pos: pos + last as u64 + 1, size };
                    return Ok(Some(((shown, bytes.slice(..=last)), next)));
                }
                want = want.saturating_mul(2);
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn description(&self) -> String {
        format!("FileSource[{}]", self.location.url)
    }

    /// Rebuilds the set of files taken from the newest compaction and the lists after it.
    /// The lists are named by the query's batch ids, not this source's own: the source's end
    /// offset can lie far behind the newest compaction (a source idle while others run, a
    /// no-data batch at a compaction boundary), so what counts is the newest recorded batch.
    /// A list after it was planned by a run that crashed before writing its offsets: the
    /// next batch takes it then (see `plan_batch`).
    async fn restore(&mut self, checkpoint: &Arc<Checkpoint>, last_batch: Option<u64>, recorded_end: Option<&Value>) -> Result<()> {
        let Some(last) = last_batch else { return Ok(()) };
        let end = recorded_end.map(log_offset).transpose()?;
        let dir = format!("sources/{}", self.table);
        let names = checkpoint.file_names(&dir).await?;
        let compacted = names
            .iter()
            .filter_map(|n| n.strip_prefix("compact-")?.strip_suffix(".json")?.parse::<u64>().ok())
            .filter(|c| *c <= last)
            .max();
        if let Some(c) = compacted {
            let relative = format!("{dir}/compact-{c}.json");
            let entry: FileLogEntry = checkpoint.get_json(&relative).await?.ok_or_else(|| {
                ConnectorError::Config(format!("checkpoint file {} vanished while reading", checkpoint.show_entry(&relative)))
            })?;
            self.seen.extend(entry.files);
            self.compacted_through = Some(c);
        }
        let mut ids: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".json")?.parse().ok()).collect();
        ids.sort_unstable();
        for id in ids {
            if compacted.is_some_and(|c| id <= c) || id > last {
                continue; // folded into the compaction, or planned by a run that crashed before its offsets
            }
            let files = self.entry(checkpoint, id).await?;
            self.seen.extend(files.iter().cloned());
            if end == Some(id) {
                self.entries.insert(id, files); // a replay of the last batch reads it
            }
        }
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.frozen = Some(list_files(&self.location).await?.into_iter().collect());
        Ok(())
    }

    async fn plan_batch(&mut self, checkpoint: &Arc<Checkpoint>, batch_id: u64, _start: Option<&Value>) -> Result<Option<Value>> {
        if batch_id > 0 && batch_id.is_multiple_of(COMPACT_EVERY) && self.compacted_through < Some(batch_id - 1) {
            self.compact(checkpoint, batch_id - 1).await?;
            self.compacted_through = Some(batch_id - 1);
        }
        // A crashed run may have logged this batch's files before its offsets: keep its choice.
        // Only the first batch of a run can have such a list, so look once, not every poll.
        let existing: Option<FileLogEntry> = if self.may_find_planned_list {
            checkpoint.get_json(&self.log_path(batch_id)).await?
        } else {
            None
        };
        self.may_find_planned_list = false;
        let files = match existing {
            Some(entry) => entry.files,
            None => {
                let mut new: Vec<String> = list_files(&self.location)
                    .await?
                    .into_iter()
                    .filter(|f| !self.seen.contains(f))
                    .filter(|f| self.frozen.as_ref().is_none_or(|frozen| frozen.contains(f)))
                    .collect();
                if let Some(max) = self.config.max_files_per_trigger {
                    new.truncate(max);
                }
                if new.is_empty() {
                    return Ok(None);
                }
                let entry = FileLogEntry { version: 1, files: new };
                checkpoint.put_json_new(&self.log_path(batch_id), &entry).await?;
                entry.files
            }
        };
        self.seen.extend(files.iter().cloned());
        self.entries.insert(batch_id, files);
        // Keep only the newest entries in memory; older ones are in the checkpoint.
        while self.entries.len() > 4 {
            self.entries.pop_first();
        }
        Ok(Some(json!({ "logOffset": batch_id })))
    }

    async fn latest_offset(&self) -> Option<Value> {
        None
    }

    async fn read(&self, checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput> {
        ReadOutput::collect(self.read_chunks(checkpoint, start, end)).await
    }

    /// Chunks in the batch's file order: a file, or a piece of about [`PIECE_BYTES`] of a
    /// JSON file. Pieces are decoded ahead, as many at a time as there are cores.
    fn read_chunks<'a>(
        &'a self,
        checkpoint: &'a Arc<Checkpoint>,
        start: Option<&'a Value>,
        end: &'a Value,
    ) -> BoxStream<'a, Result<ReadOutput>> {
        let files = async move {
            let end = log_offset(end)?;
            let start = start.map(log_offset).transpose()?;
            match start.is_none_or(|s| s < end) {
                true => self.entry(checkpoint, end).await,
                false => Ok(Vec::new()),
            }
        };
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let collect_bad = matches!(self.config.bad_rows, BadRows::DeadLetter(_));
        let (location, format) = (self.location.clone(), self.config.format);
        futures::stream::once(files)
            .map_ok(move |files| {
                // Each file comes as pieces (see `read_pieces`), numbered in the file so that
                // a bad line can be named by its line in the file. Reads run ahead of decoding.
                let location = location.clone();
                let pieces = futures::stream::iter(files).flat_map(move |relative| {
                    read_pieces(location.clone(), relative, format, PIECE_BYTES).enumerate().map(|(i, p)| p.map(|p| (i, p)))
                });
                read_ahead(pieces.boxed(), READ_AHEAD)
            })
            .try_flatten()
            // Pieces decode on all cores while the batch loop works on the pieces before.
            .map_ok(move |(i, (name, bytes))| {
                let config = self.config.clone();
                let schema = Arc::clone(&self.schema);
                async move {
                    let shown = name.clone();
                    let d = tokio::task::spawn_blocking(move || decode::decode_piece(&config, &schema, &shown, bytes))
                        .await
                        .map_err(|e| ConnectorError::Io(format!("decoding task failed: {e}")))??;
                    Ok::<_, ConnectorError>((i, name, d))
                }
            })
            .try_buffered(parallelism)
            // In file order again: number bad lines in their file.
            .scan(0u64, move |lines_before, piece| {
                let out = piece.and_then(|(i, name, d)| {
                    if i == 0 {
                        *lines_before = 0;
                    }
                    let lines = d.lines;
                    let d = d.placed(&name, *lines_before, collect_bad)?;
                    *lines_before += lines;
                    let bad_rows = if d.bad.is_empty() { Vec::new() } else { vec![dead_letter_rows(&name, &d.bad)] };
                    Ok(ReadOutput { batches: d.batches, bad_rows })
                });
                futures::future::ready(Some(out))
            })
            .boxed()
    }

    fn dead_letter(&self) -> Option<(String, SchemaRef)> {
        match &self.config.bad_rows {
            BadRows::DeadLetter(path) => Some((path.clone(), dead_letter_schema())),
            BadRows::Fail => None,
        }
    }
}

/// The dead-letter table of a file source: the raw line, its place and the error.
fn dead_letter_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, true),
        Field::new("line", DataType::Int64, true),
        Field::new("value", DataType::Binary, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn dead_letter_rows(file: &str, bad: &[decode::BadLine]) -> RecordBatch {
    use arrow::array::{BinaryArray, Int64Array, StringArray};
    RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(StringArray::from(vec![file; bad.len()])),
            Arc::new(Int64Array::from(bad.iter().map(|b| b.line as i64).collect::<Vec<_>>())),
            Arc::new(BinaryArray::from(bad.iter().map(|b| b.raw.as_slice()).collect::<Vec<_>>())),
            Arc::new(StringArray::from(bad.iter().map(|b| b.error.as_str()).collect::<Vec<_>>())),
        ],
    )
    .expect("dead-letter rows match their schema")
}
