//! Prometheus metrics, health and readiness over HTTP (`weir run --metrics-addr`).
//!
//! [`Metrics`] is a [`QueryListener`]: every progress event of every query of the session
//! updates counters, gauges and histograms labelled by the query's name and id, so the
//! numbers are the ones the progress JSON shows, never a second count. [`Metrics::serve`]
//! answers on one address:
//!
//! - `GET /metrics`: the Prometheus text format (0.0.4), with the process's own numbers
//!   (resident memory, CPU seconds, open files) read from `/proc` at the scrape;
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when every query the session started is running and its last batch
//!   (or its last trigger that found nothing new) ended within `ready_within`; 503 with the
//!   reason otherwise.
//!
//! The registry belongs to the [`Metrics`] value, not to the process: two sessions in one
//! process (tests, Python) keep their numbers apart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::progress::{QueryIdleEvent, QueryListener, QueryProgress, QueryStartedEvent, QueryTerminatedEvent, QueryWarningEvent, now_millis};

/// Label pairs, in order.
type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds from 1 ms to about 65 s, doubling.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The metrics of a session's queries, and the state `/readyz` judges.
pub struct Metrics {
    registry: Registry,
    input_rows: Family<Labels, Counter>,
    input_bytes: Family<Labels, Counter>,
    source_retries: Family<Labels, Counter>,
    source_unavailable: Family<Labels, Counter<f64, AtomicU64>>,
    commit_retries: Family<Labels, Counter>,
    output_rows: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    replayed_batches: Family<Labels, Counter>,
    dropped_rows: Family<Labels, Counter>,
    warnings: Family<Labels, Counter>,
    batch_seconds: Histograms,
    phase_seconds: Histograms,
    state_rows: Family<Labels, Gauge>,
    state_bytes: Family<Labels, Gauge>,
    spilled_bytes: Family<Labels, Counter>,
    watermark: Family<Labels, FloatGauge>,
    watermark_lag: Family<Labels, FloatGauge>,
    last_batch: Family<Labels, FloatGauge>,
    source_rows: Family<Labels, Counter>,
    kafka_lag: Family<Labels, Gauge>,
    files_pending: Family<Labels, Gauge>,
    sink_version: Family<Labels, Gauge>,
    up: Family<Labels, Gauge>,
    process_rss: Gauge,
    process_cpu: FloatGauge,
    process_fds: Gauge,
    process_start: FloatGauge,
    queries: Mutex<BTreeMap<String, QueryHealth>>,
}

/// What `/readyz` knows of a query.
#[derive(Debug, Clone)]
struct QueryHealth {
    name: String,
    active: bool,
    /// When its last batch, or trigger that found nothing new, ended (ms since the epoch).
    last_seen_ms: i64,
    exception: Option<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family weir exports, under the prefix `weir`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let histograms = || Histograms::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let m = Self {
            input_rows: Family::default(),
            input_bytes: Family::default(),
            source_retries: Family::default(),
            source_unavailable: Family::default(),
            commit_retries: Family::default(),
            output_rows: Family::default(),
            batches: Family::default(),
            replayed_batches: Family::default(),
            dropped_rows: Family::default(),
            warnings: Family::default(),
            batch_seconds: histograms(),
            phase_seconds: histograms(),
            state_rows: Family::default(),
            state_bytes: Family::default(),
            spilled_bytes: Family::default(),
            watermark: Family::default(),
            watermark_lag: Family::default(),
            last_batch: Family::default(),
            source_rows: Family::default(),
            kafka_lag: Family::default(),
            files_pending: Family::default(),
            sink_version: Family::default(),
            up: Family::default(),
            process_rss: Gauge::default(),
            process_cpu: FloatGauge::default(),
            process_fds: Gauge::default(),
            process_start: FloatGauge::default(),
            queries: Mutex::new(BTreeMap::new()),
            registry: Registry::default(),
        };
        registry.register("input_rows", "Rows read from the query's sources", m.input_rows.clone());
        registry.register("input_bytes", "Bytes the query's sources decoded (file text or Parquet row groups, Kafka keys and values)", m.input_bytes.clone());
        registry.register("output_rows", "Rows the query wrote to its sink", m.output_rows.clone());
        registry.register("source_retries", "Attempts made again to reach an unavailable source", m.source_retries.clone());
        registry.register("source_unavailable_seconds", "Time a source was unavailable: from a failed attempt to the next that worked", m.source_unavailable.clone());
        registry.register("sink_commit_retries", "Delta commits tried again (another writer committed first, an answer was lost)", m.commit_retries.clone());
        registry.register("batches", "Batches run (replays of an unfinished batch included)", m.batches.clone());
        registry.register("replayed_batches", "Batches run again after a restart", m.replayed_batches.clone());
        registry.register(
            "dropped_rows",
            "Rows dropped: reason=duplicate (deduplication), late (at or below the watermark), bad (failed to decode, sent to the dead-letter table)",
            m.dropped_rows.clone(),
        );
        registry.register("warnings", "Warnings the query reported (source retries, skipped data)", m.warnings.clone());
        registry.register("batch_duration_seconds", "Wall-clock time of a batch, start to commit", m.batch_seconds.clone());
        registry.register(
            "batch_phase_duration_seconds",
            "Time of each phase of a batch: plan (offsets and their log entry), read (waiting for the sources), execute (the plan, the operators, encoding), commit (the sink's commit and the commit log), state (state files)",
            m.phase_seconds.clone(),
        );
        registry.register("state_rows", "Rows a stateful operator holds", m.state_rows.clone());
        registry.register("state_bytes", "Memory a stateful operator's state uses", m.state_bytes.clone());
        registry.register(
            "state_spilled_bytes",
            "Bytes of a batch's deduplication candidates written to a temporary file past the 16 MiB held in memory",
            m.spilled_bytes.clone(),
        );
        registry.register("watermark_seconds", "The query's event-time watermark (seconds since the epoch)", m.watermark.clone());
        registry.register("watermark_lag_seconds", "How far the watermark is behind the wall clock at the end of the last batch", m.watermark_lag.clone());
        registry.register("last_batch_timestamp_seconds", "When the query's last batch ended (seconds since the epoch)", m.last_batch.clone());
        registry.register("source_input_rows", "Rows read from one source", m.source_rows.clone());
        registry.register("kafka_lag_offsets", "Offsets of a Kafka partition not yet read, after the last batch", m.kafka_lag.clone());
        registry.register("source_files_pending", "Files a file source found and no batch has taken yet, at the last batch", m.files_pending.clone());
        registry.register("sink_version", "The Delta table's version after the last batch", m.sink_version.clone());
        registry.register("query_up", "1 while the query runs, 0 once it stopped or failed", m.up.clone());
        registry.register("process_resident_memory_bytes", "Resident memory of the weir process", m.process_rss.clone());
        registry.register("process_cpu_seconds", "CPU time the weir process used, user and system", m.process_cpu.clone());
        registry.register("process_open_fds", "File descriptors the weir process holds open", m.process_fds.clone());
        registry.register("process_start_time_seconds", "When the weir process started (seconds since the epoch)", m.process_start.clone());
        Self { registry, ..m }
    }

    /// The metrics in the Prometheus text format (0.0.4), the process's numbers read now.
    pub fn render(&self) -> String {
        self.read_process();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// `Ok` when every query started is running and was seen within `within`; otherwise why
    /// not.
    pub fn readiness(&self, within: Duration) -> Result<String, String> {
        let now = now_millis();
        let queries = lock(&self.queries);
        let mut problems = Vec::new();
        for (id, q) in queries.iter() {
            if !q.active {
                let why = q.exception.as_deref().map_or("stopped".to_string(), |e| format!("failed: {e}"));
                problems.push(format!("query '{}' ({id}) {why}", q.name));
            } else if now - q.last_seen_ms > within.as_millis() as i64 {
                problems.push(format!("query '{}' ({id}) has not ended a batch or trigger for {} s", q.name, (now - q.last_seen_ms) / 1000));
            }
        }
        match problems.is_empty() {
            true => Ok(format!("ready: {} queries running\n", queries.len())),
            false => Err(problems.join("\n") + "\n"),
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (port 0: any free port) until
    /// the runtime ends; returns the address bound.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr, ready_within: Duration) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let metrics = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let _ = answer(stream, &metrics, ready_within).await;
                });
            }
        });
        Ok(bound)
    }

    fn read_process(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
        // Fields after the command (which may hold spaces) in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Linux reports these times in USER_HZ ticks, 100 per second on every platform weir
        // builds for.
        let ticks = 100.0;
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat (11 and 12 after the command);
        // starttime is field 22 (19 after it), in ticks since boot.
        self.process_cpu.set((number(11) + number(12)) / ticks);
        if let Some(boot) = boot_time() {
            self.process_start.set(boot + number(19) / ticks);
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.process_rss.set(kb * 1024);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.process_fds.set(fds.count() as i64);
        }
    }

    fn query_seen(&self, id: &str, name: Option<&str>, f: impl FnOnce(&mut QueryHealth)) {
        let mut queries = lock(&self.queries);
        let q = queries.entry(id.to_string()).or_insert_with(|| QueryHealth {
            name: name.unwrap_or(id).to_string(),
            active: true,
            last_seen_ms: now_millis(),
            exception: None,
        });
        f(q);
    }

    fn name_of(&self, id: &str) -> String {
        lock(&self.queries).get(id).map_or_else(|| id.to_string(), |q| q.name.clone())
    }
}

/// Seconds since the epoch at which the machine booted (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn labels(name: &str, id: &str) -> Labels {
    vec![("query".to_string(), name.to_string()), ("id".to_string(), id.to_string())]
}

fn with(mut base: Labels, more: &[(&str, &str)]) -> Labels {
    base.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    base
}

/// A JSON number or a number in a string (Spark writes some metrics as strings).
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl QueryListener for Metrics {
    fn on_query_started(&self, event: &QueryStartedEvent) {
        self.query_seen(&event.id, Some(&event.name), |q| {
            q.name = event.name.clone();
            q.active = true;
            q.exception = None;
            q.last_seen_ms = now_millis();
        });
        self.up.get_or_create(&labels(&event.name, &event.id)).set(1);
    }

    fn on_query_progress(&self, p: &QueryProgress) {
        self.query_seen(&p.id, Some(&p.name), |q| q.last_seen_ms = now_millis());
        let base = labels(&p.name, &p.id);
        self.input_rows.get_or_create(&base).inc_by(p.num_input_rows);
        let bytes: u64 = p.sources.iter().filter_map(|s| s.metrics.get("numInputBytes").and_then(Value::as_u64)).sum();
        self.input_bytes.get_or_create(&base).inc_by(bytes);
        self.commit_retries.get_or_create(&base).inc_by(p.sink.metrics.get("numCommitRetries").and_then(Value::as_u64).unwrap_or(0));
        self.output_rows.get_or_create(&base).inc_by(p.sink.num_output_rows);
        self.batches.get_or_create(&base).inc();
        if p.is_replay {
            self.replayed_batches.get_or_create(&base).inc();
        }
        let d = &p.duration_ms;
        self.batch_seconds.get_or_create(&base).observe(d.trigger_execution as f64 / 1000.0);
        // Spark's phases regrouped: addBatch holds the sink's and the state's commits.
        for (phase, ms) in [
            ("plan", d.latest_offset + d.wal_commit + d.query_planning),
            ("read", d.get_batch),
            ("execute", d.add_batch.saturating_sub(d.sink_commit + d.state_commit)),
            ("commit", d.sink_commit + d.commit_offsets),
            ("state", d.state_commit),
        ] {
            self.phase_seconds.get_or_create(&with(base.clone(), &[("phase", phase)])).observe(ms as f64 / 1000.0);
        }
        let now = now_millis() as f64 / 1000.0;
        self.last_batch.get_or_create(&base).set(now);
        if let Some(watermark) = p.event_time.as_ref().and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.watermark).ok()) {
            let at = watermark.timestamp_millis() as f64 / 1000.0;
            self.watermark.get_or_create(&base).set(at);
            if at > 0.0 {
                self.watermark_lag.get_or_create(&base).set(now - at);
            }
        }
        for (i, op) in p.state_operators.iter().enumerate() {
            let operator = format!("{i}:{}", op.get("operatorName").and_then(Value::as_str).unwrap_or("operator"));
            let op_labels = with(base.clone(), &[("operator", &operator)]);
            if let Some(rows) = op.get("numRowsTotal").and_then(Value::as_i64) {
                self.state_rows.get_or_create(&op_labels).set(rows);
            }
            if let Some(bytes) = op.get("memoryUsedBytes").and_then(Value::as_i64) {
                self.state_bytes.get_or_create(&op_labels).set(bytes);
            }
            if let Some(late) = op.get("numRowsDroppedByWatermark").and_then(Value::as_u64) {
                self.dropped_rows.get_or_create(&with(base.clone(), &[("reason", "late")])).inc_by(late);
            }
            if let Some(dups) = op.get("customMetrics").and_then(|c| c.get("numDroppedDuplicateRows")).and_then(Value::as_u64) {
                self.dropped_rows.get_or_create(&with(base.clone(), &[("reason", "duplicate")])).inc_by(dups);
            }
            if let Some(spilled) = op.get("customMetrics").and_then(|c| c.get("spilledCandidateBytes")).and_then(Value::as_u64) {
                self.spilled_bytes.get_or_create(&op_labels).inc_by(spilled);
            }
        }
        for s in &p.sources {
            let source = with(base.clone(), &[("source", &s.description)]);
            self.source_rows.get_or_create(&source).inc_by(s.num_input_rows);
            self.source_retries.get_or_create(&source).inc_by(s.metrics.get("numRetries").and_then(Value::as_u64).unwrap_or(0));
            let unavailable_ms = s.metrics.get("unavailableMs").and_then(Value::as_u64).unwrap_or(0);
            self.source_unavailable.get_or_create(&source).inc_by(unavailable_ms as f64 / 1000.0);
            if let Some(bad) = s.metrics.get("numBadRows").and_then(Value::as_u64) {
                self.dropped_rows.get_or_create(&with(base.clone(), &[("reason", "bad")])).inc_by(bad);
            }
            if let Some(pending) = s.metrics.get("numFilesOutstanding").and_then(Value::as_i64) {
                self.files_pending.get_or_create(&with(base.clone(), &[("source", &s.description)])).set(pending);
            }
            if let Some(Value::Object(topics)) = s.metrics.get("offsetsBehindLatest") {
                for (topic, partitions) in topics {
                    let Value::Object(partitions) = partitions else { continue };
                    for (partition, lag) in partitions {
                        if let Some(lag) = number(lag) {
                            let l = with(base.clone(), &[("topic", topic), ("partition", partition)]);
                            self.kafka_lag.get_or_create(&l).set(lag as i64);
                        }
                    }
                }
            }
        }
        if let Some(version) = p.sink.version {
            self.sink_version.get_or_create(&base).set(version);
        }
    }

    fn on_query_idle(&self, event: &QueryIdleEvent) {
        self.query_seen(&event.id, None, |q| q.last_seen_ms = now_millis());
    }

    fn on_query_warning(&self, event: &QueryWarningEvent) {
        let name = self.name_of(&event.id);
        self.warnings.get_or_create(&labels(&name, &event.id)).inc();
    }

    fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
        let name = self.name_of(&event.id);
        self.query_seen(&event.id, None, |q| {
            q.active = false;
            q.exception = event.exception.clone();
        });
        self.up.get_or_create(&labels(&name, &event.id)).set(0);
    }
}

/// Reads one HTTP request from `stream` and answers it.
async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics, ready_within: Duration) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", prometheus_client::encoding::prometheus_text::CONTENT_TYPE, metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET", "/readyz") => match metrics.readiness(ready_within) {
            Ok(body) => ("200 OK", "text/plain; charset=utf-8", body),
            Err(body) => ("503 Service Unavailable", "text/plain; charset=utf-8", body),
        },
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "weir serves /metrics, /healthz and /readyz\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET only\n".to_string()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_prometheus_names() {
        let m = Metrics::new();
        m.on_query_started(&QueryStartedEvent {
            id: "q1".into(),
            run_id: "r".into(),
            name: "clean".into(),
            checkpoint: "cp".into(),
            timestamp: String::new(),
            warnings: Vec::new(),
        });
        let text = m.render();
        assert!(text.contains("# TYPE weir_query_up gauge\nweir_query_up{query=\"clean\",id=\"q1\"} 1\n"), "{text}");
        assert!(text.contains("weir_process_resident_memory_bytes "), "{text}");
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
        m.on_query_terminated(&QueryTerminatedEvent { id: "q1".into(), run_id: "r".into(), exception: Some("boom".into()) });
        let why = m.readiness(Duration::from_secs(60)).unwrap_err();
        assert!(why.contains("query 'clean' (q1) failed: boom"), "{why}");
    }
}
