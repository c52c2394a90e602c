//! `weir run --metrics-addr`: Prometheus metrics scraped over HTTP during a run by a real
//! client (Python's urllib) and parsed by the Prometheus client library's own parser; the
//! counters add up to the rows in the Delta table; `/healthz` and `/readyz` answer.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::kafka::free_port;
use crate::support::*;

const PIPELINE: &str = "
CREATE TABLE events (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1,
      on_bad_row = 'dead_letter', dead_letter_path = 'bad');
CREATE TABLE out WITH (connector = 'delta', path = 'out');
INSERT INTO out SELECT DISTINCT ON (id) id, ts FROM events ORDER BY id, ts;
";

/// Fetches `/healthz`, `/readyz` and `/metrics` at `addr`; the metrics' samples as
/// `{"name{label=value,...}": value}` (labels sorted), and each endpoint's status.
pub fn scrape(addr: &str) -> Value {
    let code = format!(
        r#"
import json, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families
def get(path):
    try:
        with urllib.request.urlopen(f"http://{addr}{{path}}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
out = {{}}
for path in ["/healthz", "/readyz"]:
    out[path] = get(path)[0]
status, text = get("/metrics")
out["/metrics"] = status
samples = {{}}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f"{{k}}={{v}}" for k, v in sorted(s.labels.items()))
        samples[f"{{s.name}}{{{{{{labels}}}}}}"] = s.value
out["samples"] = samples
print(json.dumps(out))
"#
    );
    let python = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(python).arg("-c").arg(&code).output().unwrap();
    assert!(out.status.success(), "scrape failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the one sample named `name` whose labels include `labels`.
pub fn sample(scraped: &Value, name: &str, labels: &[&str]) -> f64 {
    let samples = scraped["samples"].as_object().unwrap();
    let found: Vec<f64> = samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v.as_f64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one sample {name} {labels:?} in {samples:?}");
    found[0]
}

#[test]
fn metrics_add_up_to_the_rows_written() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    // Three files of 100 events; the second and third repeat 20 ids of the one before.
    for f in 0..3i64 {
        let ids = (f * 100..f * 100 + 100).chain((f * 100 - 20..f * 100).filter(|i| *i >= 0));
        let mut lines: Vec<String> = ids.map(|i| format!(r#"{{"id": {i}, "ts": "2024-01-02T00:00:{:02}Z"}}"#, i % 60)).collect();
        if f == 1 {
            lines.push(r#"{"id": "not a number", "ts": "2024-01-02T00:00:00Z"}"#.to_string());
        }
        write_file(&dir.join("in"), &format!("{f}.json"), &lines);
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = weir(&dir)
        .args(["run", "p.sql", "--trigger", "100ms", "--metrics-addr", &addr])
        // Every batch spills its candidate rows to a file (see determinism.rs).
        .env("WEIR_DEDUP_CANDIDATE_MEMORY", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".weir/checkpoints/out/commits/2.json").exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("three batches never committed:\n{}", stderr(&child.wait_with_output().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let scraped = scrape(&addr);
    assert_eq!((scraped["/healthz"].as_u64(), scraped["/readyz"].as_u64(), scraped["/metrics"].as_u64()), (Some(200), Some(200), Some(200)));
    let q = "query=out";
    let rows_in = sample(&scraped, "weir_input_rows_total", &[q]);
    let rows_out = sample(&scraped, "weir_output_rows_total", &[q]);
    let dups = sample(&scraped, "weir_dropped_rows_total", &[q, "reason=duplicate"]);
    assert_eq!(rows_in, 340.0, "every line read");
    assert_eq!(dups, 40.0, "the repeated ids dropped");
    let table = DeltaView::read_columns(&dir.join("out"), &["id"]).rows().len() as f64;
    assert_eq!(rows_out, table, "output rows are the table's rows");
    assert_eq!(rows_in - dups, rows_out);
    assert_eq!(sample(&scraped, "weir_dropped_rows_total", &[q, "reason=bad"]), 1.0, "the bad line, in the dead-letter table");
    assert_eq!(DeltaView::read_columns(&dir.join("bad"), &["line"]).rows().len(), 1);
    assert_eq!(sample(&scraped, "weir_source_files_pending", &[q]), 0.0, "every file taken");
    assert!(sample(&scraped, "weir_batches_total", &[q]) >= 3.0);
    assert!(sample(&scraped, "weir_batch_duration_seconds_count", &[q]) >= 3.0);
    for phase in ["plan", "read", "execute", "commit", "state"] {
        assert!(sample(&scraped, "weir_batch_phase_duration_seconds_count", &[q, &format!("phase={phase}")]) >= 3.0, "{phase}");
    }
    // Every byte of the three files was decoded once.
    let file_bytes: u64 = (0..3).map(|f| std::fs::metadata(dir.join(format!("in/{f}.json"))).unwrap().len()).sum();
    assert_eq!(sample(&scraped, "weir_input_bytes_total", &[q]), file_bytes as f64);
    assert_eq!(sample(&scraped, "weir_source_retries_total", &[q]), 0.0);
    assert_eq!(sample(&scraped, "weir_source_unavailable_seconds_total", &[q]), 0.0);
    assert_eq!(sample(&scraped, "weir_sink_commit_retries_total", &[q]), 0.0);
    assert_eq!(sample(&scraped, "weir_state_rows", &[q]), 300.0, "the ids held");
    assert!(sample(&scraped, "weir_state_spilled_bytes_total", &[q]) > 0.0, "the candidates spilled");
    assert_eq!(sample(&scraped, "weir_query_up", &[q]), 1.0);
    assert!(sample(&scraped, "weir_process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&scraped, "weir_process_open_fds", &[]) > 3.0);

    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("metrics at http://{addr}/metrics")), "{}", stderr(&out));
}
