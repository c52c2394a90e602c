//! `weir checkpoint show`: what a checkpoint says about its query, read without the lock,
//! so it is safe while the query runs, and never written.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use weir_checkpoint::{Checkpoint, StorageOptions};

use crate::error::{Result, WeirError};
use crate::progress::iso_millis;

/// What a checkpoint holds, for people (`Display`) and scripts (`Serialize`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    /// Where it is.
    pub location: String,
    /// The stable query id (the Delta `txn` app id).
    pub query_id: String,
    /// The query's text.
    pub query: String,
    /// What it reads, by source name.
    pub sources: BTreeMap<String, String>,
    /// What it writes.
    pub sink: String,
    /// The sink's columns.
    pub sink_columns: Option<String>,
    /// `min` or `max`.
    pub watermark_policy: Option<String>,
    /// The weir that created it, and when.
    pub weir_version: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The newest batch recorded.
    pub last_batch: Option<BatchReport>,
    /// The stateful operators, with their state files.
    pub state_operators: Vec<OperatorReport>,
}

/// The newest batch of a checkpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    /// Its id.
    pub batch_id: u64,
    /// Whether `commits/N` exists: false means the next run replays it.
    pub committed: bool,
    /// When it was planned (RFC 3339).
    pub planned_at: String,
    /// Its watermark (RFC 3339; the epoch before any).
    pub watermark: String,
    /// Each source's start and end offsets.
    pub sources: BTreeMap<String, Value>,
    /// The Delta versions static tables were joined at.
    pub static_versions: Option<BTreeMap<String, i64>>,
    /// Rows it wrote and the sink's version after it, once committed.
    pub output_rows: Option<u64>,
    /// The sink's version after it, once committed.
    pub sink_version: Option<i64>,
    /// The run that planned it.
    pub run_id: Option<String>,
}

/// One stateful operator and its files.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorReport {
    /// Its directory under `state/`.
    pub id: String,
    /// What it is (`dedupKeys`, `windowAggregate`), its keys, event time and delay, from
    /// `metadata.json`.
    pub spec: Option<Value>,
    /// State files (snapshots and deltas) and their bytes.
    pub files: usize,
    /// Total bytes of its files.
    pub bytes: u64,
    /// The newest snapshot's batch id.
    pub newest_snapshot: Option<u64>,
}

/// Reads the checkpoint at `location` (object store settings `storage`).
pub async fn show_checkpoint(location: &str, storage: &StorageOptions) -> Result<CheckpointReport> {
    let checkpoint = Checkpoint::read_only(location, storage)?;
    let shown = checkpoint.display();
    let meta = checkpoint
        .metadata()
        .await?
        .ok_or_else(|| WeirError::Config(format!("{shown} is not a weir checkpoint: it has no metadata.json")))?;
    let last_batch = match checkpoint.latest().await? {
        Some((offsets, commit)) => Some(BatchReport {
            batch_id: offsets.batch_id,
            committed: commit.is_some(),
            planned_at: iso_millis(offsets.batch_timestamp_ms),
            watermark: iso_millis(offsets.batch_watermark_ms),
            sources: offsets
                .sources
                .iter()
                .map(|(name, o)| (name.clone(), serde_json::json!({"start": o.start, "end": o.end})))
                .collect(),
            static_versions: offsets.static_versions.clone(),
            output_rows: commit.as_ref().map(|c| c.num_output_rows),
            sink_version: commit.as_ref().and_then(|c| c.sink_version),
            run_id: offsets.run_id.clone(),
        }),
        None => None,
    };
    // State files by operator directory.
    let location = checkpoint.location();
    let state = location.child("state");
    let mut dirs: BTreeMap<String, (usize, u64, Option<u64>)> = BTreeMap::new();
    let mut listing = location.store.list(Some(&state));
    while let Some(meta) = listing.try_next().await.map_err(|e| WeirError::Config(format!("cannot list {}: {e}", location.display(&state))))? {
        let Some(relative) = meta.location.prefix_match(&state) else { continue };
        let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
        let [dir, name] = parts.as_slice() else { continue };
        let entry = dirs.entry(dir.clone()).or_default();
        entry.0 += 1;
        entry.1 += meta.size;
        if let Some(id) = name.strip_suffix(".snapshot").and_then(|n| n.parse::<u64>().ok()) {
            entry.2 = entry.2.max(Some(id));
        }
    }
    let specs: Vec<Value> = meta.state_operators.iter().flatten().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect();
    let state_operators = dirs
        .into_iter()
        .map(|(id, (files, bytes, newest_snapshot))| {
            // `dedup` is operator 0; `<kind>-<i>` operator i.
            let index = id.rsplit_once('-').and_then(|(_, i)| i.parse::<usize>().ok()).unwrap_or(0);
            OperatorReport { spec: specs.get(index).cloned(), id, files, bytes, newest_snapshot }
        })
        .collect();
    Ok(CheckpointReport {
        location: shown,
        query_id: meta.id,
        query: meta.query,
        sources: meta.sources,
        sink: meta.sink,
        sink_columns: meta.sink_columns,
        watermark_policy: meta.watermark_policy,
        weir_version: meta.weir_version,
        created_at: iso_millis(meta.created_at_ms),
        last_batch,
        state_operators,
    })
}

impl std::fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "checkpoint   {}", self.location)?;
        writeln!(f, "query id     {}", self.query_id)?;
        writeln!(f, "query        {}", self.query.trim())?;
        for (name, what) in &self.sources {
            writeln!(f, "source       {name}: {what}")?;
        }
        writeln!(f, "sink         {}", self.sink)?;
        if let Some(columns) = &self.sink_columns {
            writeln!(f, "sink columns {columns}")?;
        }
        writeln!(f, "created      {} by weir {}", self.created_at, self.weir_version)?;
        match &self.last_batch {
            None => writeln!(f, "last batch   none yet")?,
            Some(b) => {
                let state = match b.committed {
                    true => format!("committed: {} rows out, sink version {}", b.output_rows.unwrap_or(0), b.sink_version.map_or("-".to_string(), |v| v.to_string())),
                    false => "planned, not committed: the next run replays it".to_string(),
                };
                writeln!(f, "last batch   {} ({state})", b.batch_id)?;
                writeln!(f, "  planned    {}", b.planned_at)?;
                writeln!(f, "  watermark  {}", b.watermark)?;
                for (name, offsets) in &b.sources {
                    writeln!(f, "  {name}: start {} end {}", offsets["start"], offsets["end"])?;
                }
                if let Some(versions) = &b.static_versions {
                    for (table, version) in versions {
                        writeln!(f, "  static table {table} at version {version}")?;
                    }
                }
            }
        }
        if self.state_operators.is_empty() {
            writeln!(f, "state        none (a stateless query)")?;
        }
        for op in &self.state_operators {
            let spec = op.spec.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
            let snapshot = op.newest_snapshot.map(|s| format!(", newest snapshot at batch {s}")).unwrap_or_default();
            writeln!(f, "state        {}: {} files, {} bytes{snapshot}{spec}", op.id, op.files, op.bytes)?;
        }
        Ok(())
    }
}
