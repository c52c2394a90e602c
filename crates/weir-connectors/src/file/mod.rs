//! The file source: a directory of JSON, CSV or Parquet files, read in name order.
//!
//! Its offset is `{"logOffset": N}`: batch N read the files listed in the checkpoint entry
//! `sources/<table>/<N>.json`, written before the batch's offsets, with each file's size,
//! modification time and ETag. A batch reads exactly the listed bytes of those files, on
//! its first run and on a replay (see [`read`]), and a file is read once. Files whose path
//! has a part starting with `_` or `.` are ignored (`_SUCCESS`, temporary files): writers
//! should write under such a name and rename when done.

pub mod decode;
pub(crate) mod read;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir_checkpoint::{Checkpoint, Location};
use weir_sql::config::{BadRows, FileConfig, FileFormat};

use crate::error::{ConnectorError, Result};
use crate::{Backlog, ReadOutput, Source};
use read::{Cut, ListedFile, LoggedFile};

/// `sources/<table>/<N>.json`: the files batch N reads. Version 2 describes each file
/// ([`ListedFile`]); version 1 lists names only, and such a file is read whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileLogEntry {
    version: u32,
    files: Vec<LoggedFile>,
}

/// `sources/<table>/compact-<N>.json`: the names of the files batches up to N took.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompactedFiles {
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
    entries: Mutex<BTreeMap<u64, Vec<LoggedFile>>>,
    /// With `available-now`: the only files this run may take.
    frozen: Option<HashSet<String>>,
    /// The batch through which file lists are compacted.
    compacted_through: Option<u64>,
    /// Until the first batch of this run is planned, a crashed run may have left that
    /// batch's file list behind; later batches' lists can only come from this run.
    may_find_planned_list: bool,
    /// For the user, from reads (a file that grew after it was listed).
    warnings: Mutex<Vec<String>>,
    /// New files the last listing found that no batch has taken yet (progress metrics).
    outstanding: Option<usize>,
    /// The file the next batch will most likely read first: the first one the last
    /// listing found and `max_files_per_trigger` left for later.
    next_guess: Option<ListedFile>,
    /// That file read and decoded ahead, from when the batch before had read all its rows
    /// (see [`Ahead`]).
    ahead: Mutex<Option<Ahead>>,
    /// Batches that took a file read ahead.
    ahead_taken: std::sync::atomic::AtomicU64,
}

/// A batch's decoded pieces, in order: ((file index, piece index), the file as shown, the
/// rows, the piece's bytes).
type DecodedPieces = BoxStream<'static, std::result::Result<((usize, usize), String, decode::PieceDecoded, u64), read::Failure>>;

/// The next batch's likely first file, read and decoded ahead while the batch before
/// settles and commits, when the decoders would otherwise be idle and the next batch's
/// loop would wait for its first rows. Taken by the next read only if that batch lists the
/// same file (path, size, modification time, ETag) cut the same way, so the pieces are the
/// ones it would read; otherwise dropped, which stops its tasks.
struct Ahead {
    file: ListedFile,
    cut: Cut,
    pieces: DecodedPieces,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead").field("file", &self.file.path).finish_non_exhaustive()
    }
}

impl FileSource {
    /// Opens the source; with no declared columns, the schema comes from the first Parquet file.
    pub async fn new(table: &str, config: FileConfig, declared: Option<SchemaRef>) -> Result<Self> {
        let location = Location::resolve_with(&config.path, false, &config.storage).map_err(|e| {
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
                read::parquet_schema(&location, first).await?
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
            entries: Mutex::default(),
            frozen: None,
            compacted_through: None,
            may_find_planned_list: true,
            warnings: Mutex::default(),
            outstanding: None,
            next_guess: None,
            ahead: Mutex::default(),
            ahead_taken: Default::default(),
        })
    }

    fn log_path(&self, id: u64) -> String {
        format!("sources/{}/{id}.json", self.table)
    }

    async fn entry(&self, checkpoint: &Checkpoint, id: u64) -> Result<Vec<LoggedFile>> {
        if let Some(files) = lock(&self.entries).get(&id) {
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

    /// Rewrites the file list of batch `id` (see [`FileSource::read_chunks`] for when).
    async fn rewrite_list(&self, checkpoint: &Checkpoint, id: u64, files: Vec<LoggedFile>) -> Result<()> {
        let entry = FileLogEntry { version: 2, files };
        let mut bytes = serde_json::to_vec_pretty(&entry).expect("file lists serialize");
        bytes.push(b'\n');
        checkpoint.put_bytes(&self.log_path(id), bytes.into()).await?;
        lock(&self.entries).insert(id, entry.files);
        Ok(())
    }
}

/// `mutex`, locked; a panic elsewhere does not make its data wrong.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every this many batches, the per-batch file lists before the batch are folded into one.
const COMPACT_EVERY: u64 = 100;

impl FileSource {
    /// Folds the file lists of batches up to `through` (all committed: the loop plans batch
    /// `through + 2` only after `through` commits) into `compact-<through>.json`, then
    /// deletes them, so a restart reads one file instead of one per batch. The batch after
    /// `through` may still be committing while the next is planned, and a restart re-runs it
    /// from its own list: that list stays (its files are in the compaction too, as every
    /// planned file is; a restart finds its offsets, so it counts them as taken either way).
    async fn compact(&self, checkpoint: &Checkpoint, through: u64) -> Result<()> {
        let dir = format!("sources/{}", self.table);
        let mut files: Vec<String> = self.seen.iter().cloned().collect();
        files.sort();
        match checkpoint.put_json_new(&format!("{dir}/compact-{through}.json"), &CompactedFiles { version: 1, files }).await {
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

/// Every visible file under the location, in name order, as it is now.
async fn list_files(location: &Location) -> Result<Vec<ListedFile>> {
    let root = location.root.clone();
    let metas: Vec<_> = location
        .store
        .list(Some(&root))
        .try_collect()
        .await
        .map_err(|e| ConnectorError::Io(format!("cannot list {}: {e}", location.display(&root))))?;
    let prefix_len = root.as_ref().len();
    let mut files: Vec<ListedFile> = metas
        .iter()
        .map(|m| ListedFile::new(m.location.as_ref()[prefix_len..].trim_start_matches('/').to_string(), m))
        .filter(|f| !f.path.is_empty() && !is_hidden(&f.path))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Bytes per piece of a file, and so per chunk of a batch: JSON and CSV bytes per read,
/// Parquet compressed bytes of row groups (a row group at least).
const PIECE_BYTES: u64 = 2 << 20;

/// The piece size: [`PIECE_BYTES`], or `WEIR_FILE_PIECE_BYTES` when set (a tuning knob; the
/// tests use it to show that results do not depend on how files are cut).
pub(crate) fn piece_bytes() -> u64 {
    static PIECE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PIECE.get_or_init(|| crate::tuning_knob("WEIR_FILE_PIECE_BYTES", PIECE_BYTES))
}

/// Pieces read ahead of the one being decoded.
const READ_AHEAD: usize = 2;

/// Pieces of CSV or Parquet decoded ahead of the one the batch loop works on (besides those
/// being decoded): their rows can take several times their bytes (a row group is
/// compressed; a CSV of small numbers is two bytes a value, eight decoded).
pub(crate) const DECODE_AHEAD: usize = 2;

/// Pieces of JSON decoded ahead of the one the batch loop works on: with the column names
/// in every line, their rows take fewer bytes than the text, and with more of them ready a
/// worker that finished a decode goes on to the next rather than sleeping until the loop
/// takes one. Fresh copies of two builds, alternating pairs, the engines job: 2 -> 6 took
/// the batch of 2M rows from 0.480 to 0.456 s (lower in 9 of 12) at 20 files per trigger
/// and from 0.663 to 0.634 s (8 of 8) at one, peak RSS within 3 MB; 10 was no faster than 6.
const JSON_DECODE_AHEAD: usize = 6;

/// The biggest piece decoded in a task on the runtime's workers ([`decode_ahead`]): four
/// times the usual piece ([`PIECE_BYTES`], whatever `WEIR_FILE_PIECE_BYTES` says).
const WORKER_DECODE_BYTES: u64 = 4 * PIECE_BYTES;

/// `pieces` decoded by `decode` in tasks on the runtime's workers, as many at a time as it
/// has worker threads (`--threads`), in order, in a task
/// of their own that keeps `ahead` decoded pieces ahead of the reader: driven by the
/// reader's polls alone, a decode would start only when the reader took the piece before
/// it, and the batch loop waited for decoding (280-350 ms of a 1.3 s batch of 2M JSON rows).
/// `failed` makes the error of a decoding task that did not finish.
///
/// The decode of a piece of up to [`WORKER_DECODE_BYTES`] (`size` tells) is pure CPU work
/// of a few milliseconds, and it runs on a worker although it holds the worker meanwhile: on
/// the blocking pool each piece woke a sleeping thread and the decoded piece woke a worker
/// again, and on a 2-core VM that packs woken threads onto busy cores, each wakeup could
/// leave a core idle for a millisecond or more (see benches/README.md). As tasks, the
/// decodes and the batch loop take turns on the workers, which go from one task to the
/// next without sleeping: the engines benchmark's batch of 2M rows took 4-7% less time. A
/// bigger piece (a line, record or row group bigger than that) decodes on the blocking
/// pool, so that no worker is held from its other tasks (timers, uploads) for long.
pub(crate) fn decode_ahead<P, T, E, F>(
    pieces: BoxStream<'static, std::result::Result<P, E>>,
    decode: F,
    size: fn(&P) -> u64,
    failed: fn(String) -> E,
    ahead: usize,
) -> BoxStream<'static, std::result::Result<T, E>>
where
    P: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    F: Fn(P) -> std::result::Result<T, E> + Clone + Send + 'static,
{
    // Within a runtime, as `read_ahead` below is.
    let parallelism = tokio::runtime::Handle::current().metrics().num_workers();
    let decoded = pieces
        .map_ok(move |piece| {
            let decode = decode.clone();
            let task = match size(&piece) <= WORKER_DECODE_BYTES {
                true => tokio::spawn(async move { decode(piece) }),
                false => tokio::task::spawn_blocking(move || decode(piece)),
            };
            async move { task.await.map_err(|e| failed(format!("decoding task failed: {e}")))? }
        })
        .try_buffered(parallelism);
    read_ahead(decoded.boxed(), ahead)
}

/// `stream`, polled in a task of its own up to `ahead` items ahead of its reader. The task
/// ends when the returned stream is dropped.
pub(crate) fn read_ahead<T: Send + 'static>(mut stream: BoxStream<'static, T>, ahead: usize) -> BoxStream<'static, T> {
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
            let entry: CompactedFiles = checkpoint.get_json(&relative).await?.ok_or_else(|| {
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
            self.seen.extend(files.iter().map(|f| f.path().to_string()));
            if end == Some(id) {
                self.entries.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, files); // a replay of the last batch reads it
            }
        }
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.frozen = Some(list_files(&self.location).await?.into_iter().map(|f| f.path).collect());
        Ok(())
    }

    async fn backlog(&self, _position: Option<&Value>) -> Result<Option<Backlog>> {
        // Every planned file is in `seen`, so what is left is the frozen files not in it.
        Ok(self.frozen.as_ref().map(|frozen| Backlog { amount: frozen.iter().filter(|f| !self.seen.contains(*f)).count() as u64, unit: "files" }))
    }

    async fn plan_batch(&mut self, checkpoint: &Arc<Checkpoint>, batch_id: u64, _start: Option<&Value>) -> Result<Option<Value>> {
        if batch_id > 0 && batch_id.is_multiple_of(COMPACT_EVERY) && self.compacted_through < Some(batch_id - 2) {
            self.compact(checkpoint, batch_id - 2).await?;
            self.compacted_through = Some(batch_id - 2);
        }
        // A crashed run may have logged this batch's files before its offsets: keep its choice.
        // Only the first batch of a run can have such a list, so look once, not every poll.
        let existing: Option<FileLogEntry> = if self.may_find_planned_list {
            checkpoint.get_json(&self.log_path(batch_id)).await?
        } else {
            None
        };
        self.may_find_planned_list = false;
        self.next_guess = None;
        let files = match existing {
            Some(entry) => entry.files,
            None => {
                let mut new: Vec<ListedFile> = list_files(&self.location)
                    .await?
                    .into_iter()
                    .filter(|f| !self.seen.contains(&f.path))
                    .filter(|f| self.frozen.as_ref().is_none_or(|frozen| frozen.contains(&f.path)))
                    .collect();
                let found = new.len();
                self.next_guess = self.config.max_files_per_trigger.and_then(|max| new.get(max).cloned());
                if let Some(max) = self.config.max_files_per_trigger {
                    new.truncate(max);
                }
                self.outstanding = Some(found - new.len());
                if new.is_empty() {
                    return Ok(None);
                }
                let entry = FileLogEntry { version: 2, files: new.into_iter().map(LoggedFile::Listed).collect() };
                checkpoint.put_json_new(&self.log_path(batch_id), &entry).await?;
                entry.files
            }
        };
        self.seen.extend(files.iter().map(|f| f.path().to_string()));
        let entries = self.entries.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.insert(batch_id, files);
        // Keep only the newest entries in memory; older ones are in the checkpoint.
        while entries.len() > 4 {
            entries.pop_first();
        }
        Ok(Some(json!({ "logOffset": batch_id })))
    }

    async fn latest_offset(&self) -> Option<Value> {
        None
    }

    fn has_more(&self) -> bool {
        self.outstanding.is_some_and(|n| n > 0)
    }

    async fn read(&self, checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput> {
        ReadOutput::collect(self.read_chunks(checkpoint, start, end)).await
    }

    /// Chunks in the batch's file order, and in each file in order: pieces of about
    /// [`PIECE_BYTES`] (see [`read`]). Pieces are read ahead and decoded as many at a time as
    /// there are cores.
    ///
    /// Each file is first checked against the list: the batch reads the listed bytes, or
    /// stops naming a file that changed. Two rewrites of the list keep a batch that failed
    /// on bad data fixable: a bare name (a list from before sizes were recorded, or one
    /// reopened as follows) is recorded as the file is when read; and when a file does not
    /// decode (`on_bad_row = 'fail'`, an unreadable file), the list goes back to bare names,
    /// so that the next run takes the files as they are then, fixed. That is safe: no run can
    /// have got past the listed bytes that fail to decode, so nothing of the batch was
    /// committed anywhere.
    fn read_chunks<'a>(
        &'a self,
        checkpoint: &'a Arc<Checkpoint>,
        start: Option<&'a Value>,
        end: &'a Value,
    ) -> BoxStream<'a, Result<ReadOutput>> {
        let cut = Cut { format: self.config.format, delimiter: self.config.delimiter, header: self.config.header, piece_bytes: piece_bytes() };
        let batch_id = log_offset(end).ok();
        let files = async move {
            let batch = log_offset(end)?;
            let start = start.map(log_offset).transpose()?;
            if start.is_some_and(|s| s >= batch) {
                return Ok(Vec::new());
            }
            let logged = self.entry(checkpoint, batch).await?;
            let bare = logged.iter().any(|f| matches!(f, LoggedFile::Name(_)));
            let files = read::check_files(&self.location, logged, cut, batch, &self.warnings).await?;
            if bare {
                self.rewrite_list(checkpoint, batch, files.iter().map(|(f, _)| LoggedFile::Listed(f.clone())).collect()).await?;
            }
            Ok::<_, ConnectorError>(files)
        };
        let collect_bad = matches!(self.config.bad_rows, BadRows::DeadLetter(_));
        let location = self.location.clone();
        let (config, schema) = (self.config.clone(), Arc::clone(&self.schema));
        // Errors carry whether the listed bytes failed to decode (see `read::Failure`).
        futures::stream::once(files)
            .map_err(|e| (e, false))
            .map_ok(move |files| {
                // The first file may have been read ahead while the batch before committed.
                let ahead = lock(&self.ahead).take().filter(|a| a.cut == cut && files.first().is_some_and(|(f, size)| *f == a.file && *size == f.size));
                let taken = usize::from(ahead.is_some());
                self.ahead_taken.fetch_add(taken as u64, std::sync::atomic::Ordering::Relaxed);
                // The bytes of the batch's files, for the chunks' estimate of its rows.
                let total: u64 = files.iter().map(|(f, _)| f.size).sum();
                let rest = decoded_pieces(location.clone(), config.clone(), Arc::clone(&schema), files.into_iter().enumerate().skip(taken).collect(), cut);
                let pieces = match ahead {
                    Some(ahead) => ahead.pieces.chain(rest).boxed(),
                    None => rest,
                };
                pieces.map_ok(move |piece| (piece, total))
            })
            .try_flatten()
            // In file order again: number bad lines in their file.
            .scan((None, 0u64, 0u64, 0u64), move |(last, lines_before, rows_read, bytes_read), piece| {
                let out = piece.and_then(|(((file, index), name, d, size), total)| {
                    // Chunks of a file come in file order, files in list order.
                    debug_assert!(match *last {
                        Some((f, i)) => (file, index) == (f, i + 1) || (file > f && index == 0),
                        None => index == 0,
                    });
                    *last = Some((file, index));
                    if index == 0 {
                        *lines_before = 0;
                    }
                    let lines = d.lines;
                    let d = d.placed(&name, *lines_before, collect_bad).map_err(|e| (e, true))?;
                    *lines_before += lines;
                    let bad_rows = if d.bad.is_empty() { Vec::new() } else { vec![dead_letter_rows(&name, &d.bad)] };
                    let place = crate::ChunkPlace {
                        part: place_number(file).map_err(|e| (e, false))?,
                        seq: place_number(index).map_err(|e| (e, false))?,
                    };
                    // The read's rows, at its rows per byte so far.
                    *rows_read += d.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                    *bytes_read += size;
                    let rows_hint = (*bytes_read > 0)
                        .then(|| u64::try_from(u128::from(*rows_read) * u128::from(total.max(*bytes_read)) / u128::from(*bytes_read)).unwrap_or(u64::MAX));
                    Ok(ReadOutput { batches: d.batches, bad_rows, place, bytes: size, rows_hint })
                });
                futures::future::ready(Some(out))
            })
            .then(move |out| async move {
                let (e, undecodable) = match out {
                    Ok(chunk) => return Ok(chunk),
                    Err(e) => e,
                };
                let Some(batch) = batch_id.filter(|_| undecodable) else { return Err(e) };
                let names = match self.entry(checkpoint, batch).await {
                    Ok(files) => files.iter().map(|f| LoggedFile::Name(f.path().to_string())).collect(),
                    Err(_) => return Err(e),
                };
                match self.rewrite_list(checkpoint, batch, names).await {
                    Ok(()) => Err(e),
                    Err(w) => Err(ConnectorError::BadData(format!("{e} (and the batch's file list could not be reopened for a fixed file: {w})"))),
                }
            })
            // Every row read: the next batch's first file is read ahead from here on.
            .chain(futures::stream::once(async move { self.read_next_ahead(cut) }).filter_map(|()| futures::future::ready(None)))
            .boxed()
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.warnings))
    }

    /// `numFilesOutstanding`: new files the last listing found and no batch has taken yet.
    fn metrics(&self) -> BTreeMap<String, serde_json::Value> {
        match self.outstanding {
            Some(n) => BTreeMap::from([("numFilesOutstanding".to_string(), json!(n))]),
            None => BTreeMap::new(),
        }
    }

    fn dead_letter(&self) -> Option<(String, SchemaRef)> {
        match &self.config.bad_rows {
            BadRows::DeadLetter(path) => Some((path.clone(), dead_letter_schema())),
            BadRows::Fail => None,
        }
    }
}

impl FileSource {
    /// Starts reading and decoding [`Self::next_guess`] as the next batch's first file.
    fn read_next_ahead(&self, cut: Cut) {
        let Some(file) = self.next_guess.clone() else { return };
        let pieces = decoded_pieces(self.location.clone(), self.config.clone(), Arc::clone(&self.schema), vec![(0, (file.clone(), file.size))], cut);
        *lock(&self.ahead) = Some(Ahead { file, cut, pieces });
    }
}

/// The pieces of `files` (each with its index in the batch and the bytes to read), read
/// ahead and decoded on all cores.
fn decoded_pieces(location: Location, config: FileConfig, schema: SchemaRef, files: Vec<(usize, (ListedFile, u64))>, cut: Cut) -> DecodedPieces {
    // Each file comes as pieces, numbered in the file so that a bad line can be named by
    // its line in the file. Reads run ahead of decoding.
    let pieces = futures::stream::iter(files).flat_map(move |(i, (file, size))| read::read_pieces(location.clone(), i, location.child(&file.path), size, cut));
    let decode = move |piece: read::Piece| {
        let size = piece.len();
        let read::Piece { shown, file_index, index, body } = piece;
        let d = decode::decode_piece(&config, &schema, &shown, body).map_err(|e| (e, true))?;
        Ok(((file_index, index), shown, d, size))
    };
    // Pieces decode on all cores, ahead of the batch loop.
    let ahead = match cut.format {
        FileFormat::Json => JSON_DECODE_AHEAD,
        FileFormat::Csv | FileFormat::Parquet => DECODE_AHEAD,
    };
    decode_ahead(read_ahead(pieces.boxed(), READ_AHEAD), decode, read::Piece::len, |m| (ConnectorError::Io(m), false), ahead)
}

/// A file's index in the batch, or a piece's in its file, as a [`crate::ChunkPlace`] number.
fn place_number(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| ConnectorError::Config("a batch of more than 4 billion files or pieces of a file".into()))
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

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array};

    use super::*;
    use crate::file::decode::tests::{config, schema};

    #[tokio::test]
    async fn pieces_decode_in_order_on_the_worker_and_big_ones_on_the_blocking_pool() {
        // On a current-thread runtime the worker is this thread: a piece decoded on it says so.
        let here = std::thread::current().id();
        let sizes = [1, WORKER_DECODE_BYTES, WORKER_DECODE_BYTES + 1, 7, u64::MAX, 3, 5, 2, 9, 4];
        let pieces = futures::stream::iter(sizes.map(Ok::<u64, String>)).boxed();
        let decode = move |size: u64| Ok((size, std::thread::current().id() == here));
        let decoded: Vec<(u64, bool)> = decode_ahead(pieces, decode, |size| *size, |m| m, 2).try_collect().await.unwrap();
        let expected: Vec<(u64, bool)> = sizes.iter().map(|&size| (size, size <= WORKER_DECODE_BYTES)).collect();
        assert_eq!(decoded, expected);
    }

    /// The ids of batch `id`'s rows, read as the batch loop reads them.
    async fn read_batch(source: &FileSource, cp: &Arc<Checkpoint>, id: u64) -> Vec<i64> {
        let end = json!({ "logOffset": id });
        let start = id.checked_sub(1).map(|s| json!({ "logOffset": s }));
        let chunks: Vec<ReadOutput> = source.read_chunks(cp, start.as_ref(), &end).try_collect().await.unwrap();
        let mut ids = Vec::new();
        for b in chunks.iter().flat_map(|c| &c.batches) {
            let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend((0..column.len()).map(|i| column.value(i)));
        }
        ids
    }

    fn taken(source: &FileSource) -> u64 {
        source.ahead_taken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write_file(dir: &std::path::Path, name: &str, ids: std::ops::Range<i64>) {
        let text: String = ids.map(|i| format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n")).collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// With one file per batch, the next batch's file is read ahead once a batch has read its
    /// rows, and that batch takes it: the same rows as a read from scratch. A file rewritten
    /// after it was read ahead is read again as it is now.
    #[tokio::test]
    async fn the_next_batch_s_first_file_is_read_ahead_and_taken_only_as_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        write_file(&dir, "a.json", 0..5_000);
        write_file(&dir, "b.json", 5_000..90_000);
        write_file(&dir, "c.json", 90_000..91_000);
        let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
        let config = FileConfig { path: dir.display().to_string(), max_files_per_trigger: Some(1), ..config(FileFormat::Json) };
        let mut source = FileSource::new("t", config, Some(schema())).await.unwrap();

        source.plan_batch(&cp, 0, None).await.unwrap().unwrap();
        assert!(source.has_more(), "two files wait behind the limit");
        assert_eq!(read_batch(&source, &cp, 0).await, (0..5_000).collect::<Vec<_>>());
        assert_eq!(lock(&source.ahead).as_ref().map(|a| a.file.path.clone()).as_deref(), Some("b.json"), "b is read ahead");

        source.plan_batch(&cp, 1, Some(&json!({ "logOffset": 0 }))).await.unwrap().unwrap();
        assert_eq!(read_batch(&source, &cp, 1).await, (5_000..90_000).collect::<Vec<_>>());
        assert_eq!(taken(&source), 1, "b was taken as read ahead");
        assert_eq!(lock(&source.ahead).as_ref().map(|a| a.file.path.clone()).as_deref(), Some("c.json"), "c's read-ahead started");

        // c changes after it was read ahead: its listing no longer matches, and the batch
        // reads it as it is.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_file(&dir, "c.json", 100_000..101_000);
        source.plan_batch(&cp, 2, Some(&json!({ "logOffset": 1 }))).await.unwrap().unwrap();
        assert!(!source.has_more(), "the last file is taken: caught up");
        assert_eq!(read_batch(&source, &cp, 2).await, (100_000..101_000).collect::<Vec<_>>());
        assert_eq!(taken(&source), 1, "c's read-ahead was not taken");
        assert!(lock(&source.ahead).is_none(), "nothing left to read ahead");
        assert!(source.plan_batch(&cp, 3, Some(&json!({ "logOffset": 2 }))).await.unwrap().is_none());
    }
}
