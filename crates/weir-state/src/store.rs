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

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use weir_checkpoint::{Checkpoint, EntryWriter};

use crate::error::{Result, StateError};

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
        let mut snapshots = Vec::new();
        let mut deltas = Vec::new();
        for name in checkpoint.file_names(&self.dir).await? {
            if let Some(n) = name.strip_suffix(".snapshot").and_then(|n| n.parse::<u64>().ok()) {
                snapshots.push(n);
            } else if let Some(n) = name.strip_suffix(".delta").and_then(|n| n.parse::<u64>().ok()) {
                deltas.push(n);
            }
        }
        let base = snapshots.into_iter().filter(|s| *s <= version).max();
        let first_delta = match base {
            Some(s) => {
                self.apply(checkpoint, &self.path(s, "snapshot"), apply).await?;
                s + 1
            }
            None => 0,
        };
        for v in first_delta..=version {
            if !deltas.contains(&v) {
                return Err(StateError::Corrupt {
                    path: checkpoint.show_entry(&self.path(v, "delta")),
                    message: format!("missing: state version {version} needs it; the checkpoint is incomplete"),
                });
            }
            self.apply(checkpoint, &self.path(v, "delta"), apply).await?;
        }
        Ok(())
    }

    async fn apply(&self, checkpoint: &Checkpoint, relative: &str, apply: &mut (dyn FnMut(&RecordBatch) -> Result<()> + Send)) -> Result<()> {
        let shown = checkpoint.show_entry(relative);
        let corrupt = |m: String| StateError::Corrupt { path: shown.clone(), message: m };
        let bytes = checkpoint.get_bytes(relative).await?.ok_or_else(|| corrupt("missing".into()))?;
        let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(|e| corrupt(e.to_string()))?;
        if !self.schema.fields().is_empty() && reader.schema().fields() != self.schema.fields() {
            return Err(corrupt(format!(
                "its columns ({}) are not this operator's ({}); was the checkpoint written by another query?",
                show_fields(&reader.schema()),
                show_fields(&self.schema)
            )));
        }
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            apply(&batch).map_err(|e| match e {
                StateError::Data(m) => corrupt(m),
                other => other,
            })?;
        }
        Ok(())
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
    }
}
