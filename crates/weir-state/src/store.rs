//! Versioned keyed state in the checkpoint: `state/<operator>/<N>.delta` holds what batch N
//! changed (Arrow IPC: `key` binary, `expires` int64, NULL = removed), and every
//! `snapshot_every` batches `state/<operator>/<N>.snapshot` holds the whole state.
//!
//! Batch N reads version N-1 and writes version N. Loading version V takes the newest
//! snapshot at or below V and applies the deltas after it, so a replayed batch starts from
//! exactly the state it started from the first time.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BinaryBuilder, Int64Array, Int64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use weir_checkpoint::{Checkpoint, EntryWriter};

use crate::dedup::DedupMap;
use crate::error::{Result, StateError};
use crate::key::Key;

/// Where one operator's state lives, and how often it is snapshotted.
#[derive(Debug, Clone)]
pub struct StateFiles {
    dir: String,
    snapshot_every: u64,
}

fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::Binary, false), Field::new("expires", DataType::Int64, true)]))
}

impl StateFiles {
    /// The state of operator `name`, snapshotted every `snapshot_every` versions.
    pub fn new(name: &str, snapshot_every: u64) -> Self {
        Self { dir: format!("state/{name}"), snapshot_every: snapshot_every.max(1) }
    }

    fn path(&self, version: u64, kind: &str) -> String {
        format!("{}/{version}.{kind}", self.dir)
    }

    /// The state as of `version` (`None`: before the first batch, empty).
    pub async fn load(&self, checkpoint: &Checkpoint, version: Option<u64>) -> Result<DedupMap> {
        let mut map = DedupMap::default();
        let Some(version) = version else { return Ok(map) };
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
                self.apply(checkpoint, &self.path(s, "snapshot"), &mut map).await?;
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
            self.apply(checkpoint, &self.path(v, "delta"), &mut map).await?;
        }
        Ok(map)
    }

    async fn apply(&self, checkpoint: &Checkpoint, relative: &str, map: &mut DedupMap) -> Result<()> {
        let shown = checkpoint.show_entry(relative);
        let corrupt = |m: String| StateError::Corrupt { path: shown.clone(), message: m };
        let bytes = checkpoint.get_bytes(relative).await?.ok_or_else(|| corrupt("missing".into()))?;
        let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(|e| corrupt(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            let keys = batch.column(0).as_any().downcast_ref::<BinaryArray>().ok_or_else(|| corrupt("bad key column".into()))?;
            let expires = batch.column(1).as_any().downcast_ref::<Int64Array>().ok_or_else(|| corrupt("bad expires column".into()))?;
            for i in 0..batch.num_rows() {
                if expires.is_null(i) {
                    map.remove(keys.value(i));
                } else {
                    map.insert(keys.value(i), expires.value(i));
                }
            }
        }
        Ok(())
    }

    /// Starts writing version `version`'s delta; see [`DeltaWriter`].
    pub fn delta_writer(&self, checkpoint: &Checkpoint, version: u64) -> Result<DeltaWriter> {
        Ok(DeltaWriter { version, file: StateFile::new(checkpoint.entry_writer(&self.path(version, "delta")))?, removing: false })
    }

    /// Completes version `delta.version`, and writes a snapshot when one is due.
    pub async fn commit(&self, checkpoint: &Checkpoint, delta: DeltaWriter, state: &DedupMap) -> Result<()> {
        let version = delta.version;
        delta.file.finish().await?;
        if (version + 1).is_multiple_of(self.snapshot_every) {
            let mut file = StateFile::new(checkpoint.entry_writer(&self.path(version, "snapshot")))?;
            let mut entries = state.iter().peekable();
            while entries.peek().is_some() {
                file.write(entries.by_ref().take(ENCODE_ROWS).map(|(k, e)| (k, Some(e)))).await?;
            }
            file.finish().await?;
        }
        Ok(())
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

/// Entries per record batch of a state file: a file is written and sent to the checkpoint
/// a slice at a time, so even a large state or delta needs little memory to write.
const ENCODE_ROWS: usize = 65_536;

/// Version N's delta, written while batch N runs: the keys the batch adds
/// ([`DeltaWriter::add`]), then the keys it evicts ([`DeltaWriter::remove`]), go to the file
/// as the batch goes, so a batch that adds or evicts millions of keys never holds them all.
/// Nothing is readable before [`StateFiles::commit`] finishes it; dropped unfinished (the
/// batch failed), it leaves nothing behind.
#[derive(Debug)]
pub struct DeltaWriter {
    version: u64,
    file: StateFile,
    /// Whether removals were written: a delta is read in order, so a key added after its
    /// removal would come back.
    removing: bool,
}

impl DeltaWriter {
    /// Writes `added` (keys and their expiry) to the delta; all of them come before the
    /// first removal.
    pub async fn add(&mut self, added: Vec<(Key, i64)>) -> Result<()> {
        if self.removing && !added.is_empty() {
            return Err(StateError::Data(format!("state version {}: keys added after keys removed", self.version)));
        }
        for slice in added.chunks(ENCODE_ROWS) {
            self.file.write(slice.iter().map(|(k, e)| (k, Some(*e)))).await?;
        }
        Ok(())
    }

    /// Writes `removed` (evicted keys) to the delta.
    pub async fn remove(&mut self, removed: Vec<Key>) -> Result<()> {
        self.removing |= !removed.is_empty();
        for slice in removed.chunks(ENCODE_ROWS) {
            self.file.write(slice.iter().map(|k| (k, None))).await?;
        }
        Ok(())
    }
}

/// An IPC state file being written, a slice of entries at a time, each slice's bytes sent on
/// to the checkpoint as soon as they are encoded.
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
    fn new(out: EntryWriter) -> Result<Self> {
        let schema = file_schema();
        let writer = FileWriter::try_new(Vec::new(), &schema).map_err(data_err)?;
        Ok(Self { writer, schema, out, written: false })
    }

    /// Writes up to [`ENCODE_ROWS`] entries as one record batch.
    async fn write<K: AsRef<[u8]>>(&mut self, entries: impl Iterator<Item = (K, Option<i64>)>) -> Result<()> {
        // Sized by the entries at hand: a small batch's delta does not reserve a full slice.
        let rows = entries.size_hint().0.min(ENCODE_ROWS);
        let (mut keys, mut expires) = (BinaryBuilder::with_capacity(rows, rows * 24), Int64Builder::with_capacity(rows));
        for (key, e) in entries {
            keys.append_value(key);
            expires.append_option(e);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![Arc::new(keys.finish()), Arc::new(expires.finish())]).map_err(data_err)?;
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
            self.write(std::iter::empty::<(&[u8], Option<i64>)>()).await?;
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
    use super::*;

    #[tokio::test]
    async fn versions_load_from_snapshot_and_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().to_str().unwrap()).unwrap();
        let files = StateFiles::new("dedup", 3);
        let mut state = DedupMap::default();
        let k = |i: u8| Key::new(&[i]);
        for v in 0..7u64 {
            let added = vec![(k(v as u8), v as i64)];
            let removed = if v >= 2 { vec![k(v as u8 - 2)] } else { vec![] };
            for (key, e) in &added {
                state.insert(key.as_bytes(), *e);
            }
            for key in &removed {
                state.remove(key.as_bytes());
            }
            let mut delta = files.delta_writer(&cp, v).unwrap();
            delta.add(added).await.unwrap();
            let removes = !removed.is_empty();
            delta.remove(removed).await.unwrap();
            assert_eq!(delta.add(vec![(k(0), 0)]).await.is_err(), removes, "adds come before removals");
            files.commit(&cp, delta, &state).await.unwrap();
            let loaded = files.load(&cp, Some(v)).await.unwrap();
            assert_eq!(loaded, state, "version {v}");
        }
        // A big version, its new keys written in two pieces as a batch would: the file
        // goes up in parts (over 4 MiB) and reads back whole.
        let mut delta = files.delta_writer(&cp, 7).unwrap();
        let big = |from: u32, to: u32| (from..to).map(|i| (Key::new(format!("key-{i:012}").as_bytes()), i64::from(i))).collect::<Vec<_>>();
        delta.add(big(0, 150_000)).await.unwrap();
        for (key, e) in big(0, 300_000) {
            state.insert(key.as_bytes(), e);
        }
        delta.add(big(150_000, 300_000)).await.unwrap();
        files.commit(&cp, delta, &state).await.unwrap();
        assert_eq!(files.load(&cp, Some(7)).await.unwrap(), state);
        // A batch that fails before it commits leaves no delta behind.
        let mut dropped = files.delta_writer(&cp, 8).unwrap();
        dropped.add(big(300_000, 600_000)).await.unwrap();
        drop(dropped);
        assert!(!cp.file_names("state/dedup").await.unwrap().iter().any(|n| n.starts_with("8.")));
        files.purge(&cp, 5).await.unwrap();
        let left = cp.file_names("state/dedup").await.unwrap();
        assert!(!left.iter().any(|n| n == "0.delta" || n == "2.snapshot"), "{left:?}");
        assert_eq!(files.load(&cp, Some(7)).await.unwrap(), state);
        assert!(files.load(&cp, Some(1)).await.is_err(), "purged versions are gone, loudly");
    }
}
