//! The single-writer lease of a checkpoint on an object store.
//!
//! Local disk has an OS lock that dies with its process; an object store has nothing like
//! it. There a runner holds `_lease.json`, a small object written with conditional puts:
//!
//! - Taking it: create-if-absent; or, when the lease there has expired (or its holder is a
//!   process of this host that is gone), an update conditional on the ETag read, so of two
//!   runners taking over at once one wins.
//! - Holding it: renewed in the background every third of its duration, and before each
//!   commit when more than half of it has passed, each time conditional on the ETag of the
//!   holder's own last write. A renewal that finds another ETag means another runner took
//!   over: the lease is lost, and the runner stops before its next commit.
//! - Giving it up: a clean stop writes it expired, so the next runner starts at once.
//!
//! Clocks: a contender judges expiry by its wall clock against the holder's `expiresAtMs`,
//! so the runners' clocks must agree to well within the duration (NTP does). The holder
//! judges its own lease by its monotonic clock, from the moment it sent the renewal. A
//! paused holder (SIGSTOP, a long GC, a frozen VM) finds on waking that its lease ran out,
//! renews conditionally, and learns it lost it.
//!
//! The lease keeps a second runner out promptly; it is not what makes output exactly-once.
//! That rests on create-if-absent checkpoint entries and the Delta `txn` of each batch, which
//! hold even if two runners overlap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{CheckpointError, Result};

/// The lease's name inside the checkpoint.
pub const LEASE_FILE: &str = "_lease.json";

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// The run holding it (the query's run id).
    pub run_id: String,
    /// Host name and process of the holder.
    pub host: String,
    /// The holder's kernel boot id (Linux), which tells two machines of one host name apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Process id of the holder.
    pub pid: u32,
    /// Start time of the holder's process (Linux clock ticks since boot), which tells a
    /// reused pid from the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// The lease's duration, in milliseconds.
    pub duration_ms: u64,
    /// When the holder last renewed it (its wall clock, ms since the epoch).
    pub renewed_at_ms: i64,
    /// When it expires unless renewed (the holder's wall clock).
    pub expires_at_ms: i64,
}

impl LeaseRecord {
    fn holder(&self) -> String {
        format!("run {} on {} pid {}", self.run_id, self.host, self.pid)
    }

    /// Whether the holder is a process of this host (same host name and boot) that no
    /// longer runs. Hosts, containers included, must have distinct names.
    fn holder_is_gone(&self) -> bool {
        if self.host != host_name() || self.boot_id.is_none() || self.boot_id != boot_id() {
            return false;
        }
        match process_start(self.pid) {
            None => std::path::Path::new("/proc/self").exists(),
            Some(started) => self.process_start.is_some_and(|s| s != started),
        }
    }
}

/// The state of a lease this runner holds.
#[derive(Debug)]
struct Held {
    /// The version of our last write, which the next renewal is conditional on.
    version: UpdateVersion,
    /// Until when we count it ours (monotonic clock, from before the write was sent).
    valid_until: Instant,
}

/// A lease this runner holds on a checkpoint in an object store.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    shown: String,
    run_id: String,
    duration: Duration,
    held: tokio::sync::Mutex<Option<Held>>,
    lost: AtomicBool,
    /// Who took it over, once lost.
    taken_by: std::sync::Mutex<Option<String>>,
}

impl Lease {
    /// Takes the lease at `path` for `run_id`, or fails with [`CheckpointError::InUse`] when
    /// another runner holds it.
    pub async fn take(store: Arc<dyn ObjectStore>, path: Path, shown: String, checkpoint: &str, run_id: &str, duration: Duration) -> Result<Arc<Self>> {
        let lease = Self::take_once(store, path, shown, checkpoint, run_id, duration).await?;
        lease.spawn_renewals();
        Ok(lease)
    }

    /// Takes the lease without renewing it in the background.
    async fn take_once(store: Arc<dyn ObjectStore>, path: Path, shown: String, checkpoint: &str, run_id: &str, duration: Duration) -> Result<Arc<Self>> {
        let lease = Arc::new(Self {
            store,
            path,
            shown,
            run_id: run_id.to_string(),
            duration,
            held: tokio::sync::Mutex::new(None),
            lost: AtomicBool::new(false),
            taken_by: std::sync::Mutex::new(None),
        });
        // Two attempts: a holder may release or renew between our read and our write.
        for _ in 0..2 {
            let current = lease.read().await?;
            let mode = match &current {
                None => PutMode::Create,
                Some((record, version)) => {
                    let expired = record.expires_at_ms < now_ms();
                    if record.run_id != run_id && !expired && !record.holder_is_gone() {
                        let left = Duration::from_millis((record.expires_at_ms - now_ms()).max(0) as u64);
                        return Err(CheckpointError::InUse {
                            location: checkpoint.to_string(),
                            holder: Some(format!(
                                "{}; its lease {} expires in {} s unless renewed",
                                record.holder(),
                                lease.shown,
                                left.as_secs().max(1)
                            )),
                        });
                    }
                    PutMode::Update(version.clone())
                }
            };
            match lease.write(mode).await {
                Ok(()) => return Ok(lease),
                Err(Conflict) => continue,
                Err(Failed(e)) => return Err(e),
            }
        }
        Err(CheckpointError::InUse { location: checkpoint.to_string(), holder: Some(format!("another runner took its lease {} at the same moment", lease.shown)) })
    }

    /// Fails with [`CheckpointError::LeaseLost`] when another runner took the lease over;
    /// renews it first when more than half of it has passed. Called before every commit.
    pub async fn check(&self) -> Result<()> {
        self.fail_if_lost()?;
        let due = {
            let held = self.held.lock().await;
            held.as_ref().is_none_or(|h| h.valid_until.saturating_duration_since(Instant::now()) < self.duration / 2)
        };
        if due {
            self.renew().await?;
        }
        self.fail_if_lost()
    }

    /// Writes the lease expired, so that the next runner need not wait (a clean stop).
    pub async fn release(&self) {
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        let mut held = self.held.lock().await;
        let Some(h) = held.take() else { return };
        let record = self.record(0);
        let record = LeaseRecord { expires_at_ms: 0, ..record };
        let opts = PutOptions { mode: PutMode::Update(h.version), ..Default::default() };
        // Best effort: if it fails, the next runner waits for the lease to expire.
        let _ = self.store.put_opts(&self.path, payload(&record), opts).await;
        self.lost.store(true, Ordering::SeqCst);
    }

    fn fail_if_lost(&self) -> Result<()> {
        match self.lost.load(Ordering::SeqCst) {
            false => Ok(()),
            true => Err(CheckpointError::LeaseLost {
                lease: self.shown.clone(),
                by: self.taken_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            }),
        }
    }

    /// Renews the lease, conditional on our last write.
    async fn renew(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        let version = match self.held.lock().await.as_ref() {
            Some(h) => h.version.clone(),
            None => return Ok(()),
        };
        match self.write(PutMode::Update(version)).await {
            Ok(()) => Ok(()),
            Err(Conflict) => {
                let by = self.read().await.ok().flatten().map(|(r, _)| r.holder());
                *self.taken_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = by;
                self.lost.store(true, Ordering::SeqCst);
                *self.held.lock().await = None;
                Ok(())
            }
            Err(Failed(e)) => Err(e),
        }
    }

    /// Renews in the background every third of the duration, until the lease is lost or
    /// released. A failed renewal (the store unreachable) is tried again at the next tick;
    /// the check before a commit is what stops the runner.
    fn spawn_renewals(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.duration / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(lease) = weak.upgrade() else { return };
                if lease.lost.load(Ordering::SeqCst) {
                    return;
                }
                let _ = lease.renew().await;
            }
        });
    }

    async fn read(&self) -> Result<Option<(LeaseRecord, UpdateVersion)>> {
        match self.store.get(&self.path).await {
            Ok(got) => {
                let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                let bytes = got.bytes().await.map_err(|source| CheckpointError::Io { path: self.shown.clone(), source })?;
                let record = serde_json::from_slice(&bytes)
                    .map_err(|e| CheckpointError::Corrupt { path: self.shown.clone(), message: e.to_string() })?;
                Ok(Some((record, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(CheckpointError::Io { path: self.shown.clone(), source }),
        }
    }

    fn record(&self, expires_in_ms: u64) -> LeaseRecord {
        let now = now_ms();
        LeaseRecord {
            run_id: self.run_id.clone(),
            host: host_name(),
            boot_id: boot_id(),
            pid: std::process::id(),
            process_start: process_start(std::process::id()),
            duration_ms: self.duration.as_millis() as u64,
            renewed_at_ms: now,
            expires_at_ms: now + expires_in_ms as i64,
        }
    }

    async fn write(&self, mode: PutMode) -> std::result::Result<(), WriteError> {
        let sent = Instant::now();
        let record = self.record(self.duration.as_millis() as u64);
        let opts = PutOptions { mode, ..Default::default() };
        match self.store.put_opts(&self.path, payload(&record), opts).await {
            Ok(put) => {
                let version = UpdateVersion { e_tag: put.e_tag, version: put.version };
                *self.held.lock().await = Some(Held { version, valid_until: sent + self.duration });
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                // The store may have applied our write and lost its answer, so that the
                // client's retry failed on our own write: then the lease holds our record.
                match self.read().await {
                    Ok(Some((found, version))) if found == record => {
                        *self.held.lock().await = Some(Held { version, valid_until: sent + self.duration });
                        Ok(())
                    }
                    _ => Err(Conflict),
                }
            }
            Err(e @ object_store::Error::NotImplemented { .. }) => Err(Failed(CheckpointError::NoConditionalWrites {
                location: self.shown.clone(),
                message: e.to_string(),
            })),
            Err(source) => Err(Failed(CheckpointError::Io { path: self.shown.clone(), source })),
        }
    }
}

enum WriteError {
    /// Another runner wrote the lease since we read it.
    Conflict,
    Failed(CheckpointError),
}
use WriteError::{Conflict, Failed};

fn payload(record: &LeaseRecord) -> PutPayload {
    let mut bytes = serde_json::to_vec_pretty(record).expect("a lease serializes");
    bytes.push(b'\n');
    PutPayload::from(bytes)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This host's name (Linux), or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// This machine's boot id (Linux).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|b| b.trim().to_string())
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it runs (Linux).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store() -> Arc<dyn ObjectStore> {
        Arc::new(InMemory::new())
    }

    async fn take(store: &Arc<dyn ObjectStore>, run: &str, duration: Duration) -> Result<Arc<Lease>> {
        Lease::take_once(Arc::clone(store), Path::from("cp/_lease.json"), "memory:///cp/_lease.json".into(), "memory:///cp", run, duration).await
    }

    /// A second runner is refused while the first holds the lease, naming the holder.
    #[tokio::test]
    async fn a_held_lease_refuses_a_second_runner() {
        let s = store();
        let first = take(&s, "a", Duration::from_secs(30)).await.unwrap();
        let err = take(&s, "b", Duration::from_secs(30)).await.unwrap_err().to_string();
        assert!(err.contains("is in use by another weir process (run a on"), "{err}");
        assert!(err.contains("expires in"), "{err}");
        first.check().await.unwrap();
        // A clean stop lets the next runner in at once.
        first.release().await;
        take(&s, "b", Duration::from_secs(30)).await.unwrap();
    }

    /// A holder that did not renew in time (paused, say) loses its lease to the next runner
    /// and fails its next check, naming who took over; the new holder goes on.
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_the_old_holder_stops() {
        let s = store();
        let first = take(&s, "a", Duration::from_millis(300)).await.unwrap();
        assert!(take(&s, "b", Duration::from_secs(30)).await.is_err(), "held");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = take(&s, "b", Duration::from_secs(30)).await.unwrap();
        let err = first.check().await.unwrap_err().to_string();
        assert!(err.contains("lost its lease") && err.contains("run b on"), "{err}");
        second.check().await.unwrap();
        // The loser's release does not free the new holder's lease.
        first.release().await;
        assert!(take(&s, "c", Duration::from_secs(30)).await.is_err(), "still held by b");
    }

    /// Renewals keep a lease past its first duration.
    #[tokio::test]
    async fn a_renewed_lease_stays() {
        let s = store();
        let first = take(&s, "a", Duration::from_millis(400)).await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            first.check().await.unwrap();
        }
        assert!(take(&s, "b", Duration::from_secs(30)).await.is_err(), "renewed");
    }

    /// A holder on this host whose process is gone (a killed runner) does not make the next
    /// runner wait for the lease to expire.
    #[tokio::test]
    async fn a_lease_of_a_dead_local_process_is_taken_at_once() {
        let s = store();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let record = LeaseRecord {
            run_id: "dead".into(),
            host: host_name(),
            boot_id: boot_id(),
            pid,
            process_start: Some(1),
            duration_ms: 60_000,
            renewed_at_ms: now_ms(),
            expires_at_ms: now_ms() + 60_000,
        };
        s.put(&Path::from("cp/_lease.json"), payload(&record)).await.unwrap();
        take(&s, "next", Duration::from_secs(30)).await.unwrap();
    }

    #[test]
    fn this_process_has_a_start_time() {
        assert!(process_start(std::process::id()).is_some());
    }
}
