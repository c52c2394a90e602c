//! Versioned operator state in the checkpoint: `state/<operator id>/<N>.delta` holds what
//! batch N changed, and every `snapshot_every` batches `state/<operator id>/<N>.snapshot`
//! holds the whole state. Both are Arrow IPC files whose schema the operator fixes
//! ([`crate::StatefulOperator::state_schema`]); the files know nothing of what the rows mean.
//!
//! Batch N reads version N-1 and writes version N. Loading version V takes the newest
//! snapshot at or below V and hands its record batches, then those of the deltas after it, in
//! order, to the operator ([`crate::StatefulOperator::restore`]), so a replayed batch starts
//! from exactly the state it started from the first time.

use std::io::Cursor;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use weir_checkpoint::{Checkpoint, EntryWriter};

use crate::error::{Result, StateError};
use crate::operator::SnapshotFilter;

/// Where one operator's state lives, the schema of its files, and how often it is
/// snapshotted.
#[derive(Debug, Clone)]
pub struct StateFiles {
    dir: String,
    snapshot_every: u64,
    schema: SchemaRef,
}

impl StateFiles {
    /// The state of operator `id` (its directory under `state/`), in files of `schema`,
    /// snapshotted every `snapshot_every` versions. A schema without columns reads files of
    /// any columns (`weir checkpoint state`, which has no operator to ask).
    pub fn new(id: &str, snapshot_every: u64, schema: SchemaRef) -> Self {
        Self { dir: format!("state/{id}"), snapshot_every: snapshot_every.max(1), schema }
    }

    fn path(&self, version: u64, kind: &str) -> String {
        format!("{}/{version}.{kind}", self.dir)
    }

    /// Whether version `version` gets a snapshot.
    pub fn snapshot_due(&self, version: u64) -> bool {
        (version + 1).is_multiple_of(self.snapshot_every)
    }

    /// Hands the state as of `version` (`None`: before the first batch, nothing) to `apply`,
    /// a record batch at a time, in order.
    pub async fn load(&self, checkpoint: &Checkpoint, version: Option<u64>, apply: &mut (dyn FnMut(&RecordBatch) -> Result<()> + Send)) -> Result<()> {
        let Some(version) = version else { return Ok(()) };
        for file in self.files_of(checkpoint, version, Some(version)).await? {
            let shown = checkpoint.show_entry(&file);
            for batch in self.open(checkpoint, &file).await? {
                let batch = batch.map_err(|e| corrupt(&shown, e.to_string()))?;
                apply(&batch).map_err(|e| match e {
                    StateError::Data(m) => corrupt(&shown, m),
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// Writes version `version`'s snapshot from the files alone (a snapshot taken while later
    /// batches run, which change the state in memory): the rows of the newest snapshot before
    /// it and of every delta after that, up to `version`'s, that `keep` keeps, in order, in
    /// record batches of `max_rows` (the deltas of small batches hold a few rows each). A file
    /// is read a record batch at a time when the checkpoint is on local disk (whole from an
    /// object store). Nothing is visible unless it completes.
    pub async fn compact(&self, checkpoint: &Checkpoint, version: u64, keep: &SnapshotFilter, max_rows: usize) -> Result<()> {
        let files = self.files_of(checkpoint, version, version.checked_sub(1)).await?;
        let mut out = self.snapshot_writer(checkpoint, version)?;
        // Kept rows not written yet.
        let (mut kept, mut rows) = (Vec::new(), 0);
        for file in files {
            let shown = checkpoint.show_entry(&file);
            for batch in self.open(checkpoint, &file).await? {
                let batch = keep(&batch.map_err(|e| corrupt(&shown, e.to_string()))?)?;
                rows += batch.num_rows();
                kept.push(batch);
                if rows >= max_rows.max(1) {
                    write_kept(&mut out, &mut kept).await?;
                    rows = 0;
                }
            }
        }
        if rows > 0 {
            write_kept(&mut out, &mut kept).await?;
        }
        out.finish().await
    }

    /// The files whose rows, in order, make the state as of `version`: the newest snapshot
    /// at or below `newest_snapshot` (`None`: none), then every delta after it.
    async fn files_of(&self, checkpoint: &Checkpoint, version: u64, newest_snapshot: Option<u64>) -> Result<Vec<String>> {
        let mut snapshots = Vec::new();
        let mut deltas = Vec::new();
        for name in checkpoint.file_names(&self.dir).await? {
            if let Some(n) = name.strip_suffix(".snapshot").and_then(|n| n.parse::<u64>().ok()) {
                snapshots.push(n);
            } else if let Some(n) = name.strip_suffix(".delta").and_then(|n| n.parse::<u64>().ok()) {
                deltas.push(n);
            }
        }
        let base = newest_snapshot.and_then(|newest| snapshots.into_iter().filter(|s| *s <= newest).max());
        let mut files: Vec<String> = base.iter().map(|&s| self.path(s, "snapshot")).collect();
        for v in base.map_or(0, |s| s + 1)..=version {
            if !deltas.contains(&v) {
                let message = format!("missing: state version {version} needs it; the checkpoint is incomplete");
                return Err(corrupt(&checkpoint.show_entry(&self.path(v, "delta")), message));
            }
            files.push(self.path(v, "delta"));
        }
        Ok(files)
    }

    /// A reader of the state file `relative`, its columns checked against the operator's: on
    /// local disk straight from the file, a record batch at a time; in an object store from
    /// the whole file, fetched.
    async fn open(&self, checkpoint: &Checkpoint, relative: &str) -> Result<FileReader<Box<dyn ReadSeek>>> {
        let shown = checkpoint.show_entry(relative);
        let input: Box<dyn ReadSeek> = match &checkpoint.location().local_dir {
            Some(dir) => match std::fs::File::open(dir.join(relative)) {
                Ok(file) => Box::new(std::io::BufReader::new(file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(corrupt(&shown, "missing".into())),
                Err(e) => return Err(corrupt(&shown, e.to_string())),
            },
            None => Box::new(Cursor::new(checkpoint.get_bytes(relative).await?.ok_or_else(|| corrupt(&shown, "missing".into()))?)),
        };
        let reader = FileReader::try_new(input, None).map_err(|e| corrupt(&shown, e.to_string()))?;
        if !self.schema.fields().is_empty() && reader.schema().fields() != self.schema.fields() {
            return Err(corrupt(
                &shown,
                format!(
                    "its columns ({}) are not this operator's ({}); was the checkpoint written by another query?",
                    show_fields(&reader.schema()),
                    show_fields(&self.schema)
                ),
            ));
        }
        Ok(reader)
    }

    /// Starts writing version `version`'s delta; see [`StateWriter`].
    pub fn delta_writer(&self, checkpoint: &Checkpoint, version: u64) -> Result<StateWriter> {
        Ok(StateWriter { version, file: StateFile::new(checkpoint.entry_writer(&self.path(version, "delta")), &self.schema)? })
    }

    /// Starts writing version `version`'s snapshot; see [`StateWriter`].
    pub fn snapshot_writer(&self, checkpoint: &Checkpoint, version: u64) -> Result<StateWriter> {
        Ok(StateWriter { version, file: StateFile::new(checkpoint.entry_writer(&self.path(version, "snapshot")), &self.schema)? })
    }

    /// Deletes files no version at or after `oldest_needed` needs.
    pub async fn purge(&self, checkpoint: &Checkpoint, oldest_needed: u64) -> Result<()> {
        let names = checkpoint.file_names(&self.dir).await?;
        let snapshot_of = |n: &str| n.strip_suffix(".snapshot").and_then(|n| n.parse::<u64>().ok());
        let Some(base) = names.iter().filter_map(|n| snapshot_of(n)).filter(|s| *s <= oldest_needed).max() else {
            return Ok(());
        };
        for name in &names {
            let version = snapshot_of(name).or_else(|| name.strip_suffix(".delta").and_then(|n| n.parse().ok()));
            if let Some(v) = version
                && (v < base || (v == base && name.ends_with(".delta")))
            {
                checkpoint.delete(&format!("{}/{name}", self.dir)).await?;
            }
        }
        Ok(())
    }
}

/// Writes the rows `kept` (taking them) to a snapshot made from the files as one record
/// batch. The failpoint `during_state_snapshot` aborts at the first.
async fn write_kept(out: &mut StateWriter, kept: &mut Vec<RecordBatch>) -> Result<()> {
    let batch = match kept.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        [first, ..] => concat_batches(&first.schema(), kept.iter()).map_err(data_err)?,
    };
    kept.clear();
    out.write(&batch).await?;
    weir_checkpoint::failpoint::hit("during_state_snapshot", out.version());
    Ok(())
}

/// A state file's bytes: a local file, or an object's.
trait ReadSeek: std::io::Read + std::io::Seek + Send {}

impl<T: std::io::Read + std::io::Seek + Send> ReadSeek for T {}

fn corrupt(shown: &str, message: String) -> StateError {
    StateError::Corrupt { path: shown.to_string(), message }
}

fn show_fields(schema: &SchemaRef) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// A state file of version N (its delta, or its snapshot) being written while batch N runs:
/// record batches go to the file as they come ([`StateWriter::write`]), so a batch that
/// changes millions of keys never holds them all. Nothing is readable before
/// [`StateWriter::finish`]; dropped unfinished (the batch failed), it leaves nothing behind.
#[derive(Debug)]
pub struct StateWriter {
    version: u64,
    file: StateFile,
}

impl StateWriter {
    /// The version it writes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Writes `batch` (in the files' schema) to the file.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.file.write(batch).await
    }

    /// Completes the file: it becomes visible.
    pub async fn finish(self) -> Result<()> {
        self.file.finish().await
    }
}

/// An IPC state file being written, each record batch's bytes sent on to the checkpoint as
/// soon as they are encoded.
struct StateFile {
    writer: FileWriter<Vec<u8>>,
    schema: SchemaRef,
    out: EntryWriter,
    /// Whether a record batch was written: an empty file still gets one (empty) batch.
    written: bool,
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile").field("out", &self.out).finish_non_exhaustive()
    }
}

impl StateFile {
    fn new(out: EntryWriter, schema: &SchemaRef) -> Result<Self> {
        let writer = FileWriter::try_new(Vec::new(), schema).map_err(data_err)?;
        Ok(Self { writer, schema: SchemaRef::clone(schema), out, written: false })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(StateError::Data(format!(
                "internal: a state batch of columns ({}) for a file of ({})",
                show_fields(&batch.schema()),
                show_fields(&self.schema)
            )));
        }
        let batch = RecordBatch::try_new(SchemaRef::clone(&self.schema), batch.columns().to_vec()).map_err(data_err)?;
        self.writer.write(&batch).map_err(data_err)?;
        self.written = true;
        self.send().await
    }

    /// Sends the bytes encoded so far on to the checkpoint. The IPC writer keeps its own
    /// count of offsets, so its buffer can be emptied between batches.
    async fn send(&mut self) -> Result<()> {
        let bytes = std::mem::take(self.writer.get_mut());
        if !bytes.is_empty() {
            self.out.put(bytes::Bytes::from(bytes)).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        if !self.written {
            let empty = RecordBatch::new_empty(SchemaRef::clone(&self.schema));
            self.write(&empty).await?;
        }
        self.writer.finish().map_err(data_err)?;
        self.send().await?;
        Ok(self.out.finish().await?)
    }
}

fn data_err(e: arrow::error::ArrowError) -> StateError {
    StateError::Data(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
    }

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    async fn loaded(files: &StateFiles, cp: &Checkpoint, version: u64) -> Result<Vec<i64>> {
        let mut seen = Vec::new();
        files
            .load(cp, Some(version), &mut |b: &RecordBatch| {
                let v = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                seen.extend(v.iter().flatten());
                Ok(())
            })
            .await?;
        Ok(seen)
    }

    #[tokio::test]
    async fn versions_load_from_snapshot_and_deltas_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().to_str().unwrap()).unwrap();
        let files = StateFiles::new("op", 3, schema());
        // Version v's delta holds [10v, 10v + 3); a snapshot (versions 2, 5) holds a marker.
        for v in 0..7i64 {
            let mut delta = files.delta_writer(&cp, v as u64).unwrap();
            delta.write(&batch(10 * v..10 * v + 2)).await.unwrap();
            delta.write(&batch(10 * v + 2..10 * v + 3)).await.unwrap();
            delta.finish().await.unwrap();
            if files.snapshot_due(v as u64) {
                let mut snapshot = files.snapshot_writer(&cp, v as u64).unwrap();
                snapshot.write(&batch(-v..-v + 1)).await.unwrap();
                snapshot.finish().await.unwrap();
            }
        }
        assert_eq!(loaded(&files, &cp, 1).await.unwrap(), vec![0, 1, 2, 10, 11, 12]);
        assert_eq!(loaded(&files, &cp, 4).await.unwrap(), vec![-2, 30, 31, 32, 40, 41, 42]);
        assert_eq!(loaded(&files, &cp, 6).await.unwrap(), vec![-5, 60, 61, 62]);
        // A file of other columns is refused, naming the file.
        let other = StateFiles::new("op", 3, Arc::new(Schema::new(vec![Field::new("w", DataType::Utf8, true)])));
        let e = loaded(&other, &cp, 6).await.unwrap_err().to_string();
        assert!(e.contains("5.snapshot") && e.contains("columns"), "{e}");
        // A batch that fails before it finishes leaves nothing behind.
        let mut dropped = files.delta_writer(&cp, 7).unwrap();
        dropped.write(&batch(0..300_000)).await.unwrap();
        drop(dropped);
        assert!(!cp.file_names("state/op").await.unwrap().iter().any(|n| n.starts_with("7.")));
        files.purge(&cp, 5).await.unwrap();
        let left = cp.file_names("state/op").await.unwrap();
        assert!(!left.iter().any(|n| n == "0.delta" || n == "2.snapshot" || n == "5.delta"), "{left:?}");
        assert_eq!(loaded(&files, &cp, 6).await.unwrap(), vec![-5, 60, 61, 62]);
        assert!(loaded(&files, &cp, 1).await.is_err(), "purged versions are gone, loudly");

        // A snapshot made from the files: the snapshot before and the deltas since, through
        // the filter, in record batches of `max_rows`. One whose filter fails (a cancelled
        // one) leaves nothing behind.
        let failing: SnapshotFilter = Box::new(|_| Err(StateError::Data("cancelled".into())));
        assert!(files.compact(&cp, 6, &failing, 2).await.is_err());
        assert!(!cp.file_names("state/op").await.unwrap().iter().any(|n| n.starts_with("6.snapshot")));
        let odd: SnapshotFilter = Box::new(|b: &RecordBatch| {
            let v = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            Ok(arrow::compute::filter_record_batch(b, &v.iter().map(|v| v.map(|v| v % 2 != 0)).collect()).unwrap())
        });
        files.compact(&cp, 6, &odd, 2).await.unwrap();
        let mut sizes = Vec::new();
        files
            .load(&cp, Some(6), &mut |b: &RecordBatch| {
                sizes.push(b.num_rows());
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!((loaded(&files, &cp, 6).await.unwrap(), sizes), (vec![-5, 61], vec![2]), "6.snapshot alone, in one batch");
    }
}
