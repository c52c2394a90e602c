//! Helpers of the end-to-end tests: run the real `weir` binary, write source files, read
//! Delta tables back with an independent reader (Python `deltalake`, see tests/read_delta.py).
//! The Kafka tests' broker and producer are in [`kafka`].

pub mod azure;
pub mod kafka;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `weir` binary built for these tests (with failpoints compiled in).
pub fn weir(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(dir).env_remove("WEIR_FAILPOINT");
    cmd
}

/// Runs `weir run <script> --trigger available-now` in `dir` with extra args.
pub fn run(dir: &Path, script: &str, extra: &[&str]) -> Output {
    let mut cmd = weir(dir);
    cmd.args(["run", script, "--trigger", "available-now"]).args(extra);
    cmd.output().expect("weir runs")
}

/// Runs `weir run <script> --trigger available-now` in `dir` with extra args, and kills it
/// (failing the test) if it has not finished within `limit`: for sources that could wait
/// for ever, such as Kafka.
pub fn run_within(dir: &Path, script: &str, extra: &[&str], limit: Duration) -> Output {
    let mut cmd = weir(dir);
    cmd.args(["run", script, "--trigger", "available-now"]).args(extra);
    output_within(cmd, limit)
}

/// The output of `cmd`, which must finish within `limit`; otherwise it is killed and the
/// test fails with what it printed so far.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("weir starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap();
            panic!("{cmd:?} did not finish within {limit:?}; its stderr:\n{}", String::from_utf8_lossy(&err));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Runs `p.sql` in `dir` with failpoint `failpoint` armed for batch `batch`, and checks that
/// weir aborted there (SIGABRT, as a crash would leave things) within `limit`.
pub fn crash_at(dir: &Path, failpoint: &str, batch: u64, limit: Duration) {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = weir(dir);
    cmd.args(["run", "p.sql", "--trigger", "available-now"]).env("WEIR_FAILPOINT", format!("{failpoint}:{batch}"));
    let out = output_within(cmd, limit);
    assert_eq!(out.status.signal(), Some(6), "{failpoint}:{batch} should abort weir:\n{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("failpoint {failpoint} hit in batch {batch}")), "{}", stderr(&out));
}

/// The newest batch id in a checkpoint's `offsets/`.
pub fn newest_batch(checkpoint: &Path) -> Option<u64> {
    std::fs::read_dir(checkpoint.join("offsets"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .max()
}

/// stderr of a finished command.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with weir's stderr unless it succeeded.
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "weir failed ({}):\n{}", out.status, stderr(out));
}

/// Writes `lines` as the file `dir/name` atomically (hidden temp name, then rename), as a
/// well-behaved producer does.
pub fn write_file(dir: &Path, name: &str, lines: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// The Python interpreter that has the independent reader's packages.
fn python() -> String {
    std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The table at `path` as read by Python `deltalake` and its raw `_delta_log`.
pub struct DeltaView {
    pub json: Value,
}

impl DeltaView {
    pub fn read(path: &Path) -> Self {
        Self::read_with(path, &[])
    }

    /// Reads only `columns` of the rows (the commits in full): faster for big tables.
    pub fn read_columns(path: &Path, columns: &[&str]) -> Self {
        Self::read_with(path, &["--columns".to_string(), columns.join(",")])
    }

    /// The table at an `s3://` URL, read from the S3 server at `endpoint` (the reader lists
    /// its log and files with boto3, reads it with `deltalake`).
    pub fn read_s3(url: &str, endpoint: &str) -> Self {
        let mut cmd = Command::new(python());
        s3::env_for(&mut cmd, endpoint);
        Self::read_cmd(cmd, Path::new(url), &[])
    }

    /// The table at an `az://` URL in the Azurite emulator `azurite` (rows and version; the
    /// reader does not list its log).
    pub fn read_azure(url: &str, azurite: &azure::Azurite) -> Self {
        let mut cmd = Command::new(python());
        azurite.env(&mut cmd);
        Self::read_cmd(cmd, Path::new(url), &[])
    }

    fn read_with(path: &Path, args: &[String]) -> Self {
        Self::read_cmd(Command::new(python()), path, args)
    }

    fn read_cmd(mut cmd: Command, path: &Path, args: &[String]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/read_delta.py");
        let out = cmd.arg(&script).arg(path).args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {} (set WEIR_PYTHON, or run scripts/test which installs the reader): {e}", python())
        });
        assert!(
            out.status.success(),
            "independent Delta reader failed on {} (scripts/test installs its Python packages):\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { json: serde_json::from_slice(&out.stdout).expect("reader prints JSON") }
    }

    /// Every row as compact JSON, sorted: a multiset to compare.
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self.json["rows"].as_array().unwrap().iter().map(Value::to_string).collect();
        rows.sort();
        rows
    }

    pub fn commits(&self) -> Vec<Value> {
        self.json["commits"].as_array().unwrap().clone()
    }

    /// `(appId, version)` of every txn action, in commit order.
    pub fn txns(&self) -> Vec<(String, i64)> {
        self.commits()
            .iter()
            .flat_map(|c| c["txns"].as_array().unwrap().clone())
            .map(|t| (t["appId"].as_str().unwrap().to_string(), t["version"].as_i64().unwrap()))
            .collect()
    }
}

/// `columns` of every row of the table at `path` as DuckDB's delta extension reads it (see
/// tests/read_delta_duckdb.py), as compact JSON, sorted.
pub fn duckdb_rows(path: &Path, columns: &[&str]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/read_delta_duckdb.py");
    let out = Command::new(python()).arg(&script).arg(path).args(["--columns", &columns.join(",")]).output().expect("python runs");
    assert!(out.status.success(), "DuckDB could not read {}:\n{}", path.display(), String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("the DuckDB reader prints JSON");
    let mut rows: Vec<String> = json["rows"].as_array().unwrap().iter().map(Value::to_string).collect();
    rows.sort();
    rows
}

/// Runs Python `code` (with the independent reader's packages) in `dir`. The interpreter
/// leaves with `os._exit` once done: deltalake's native threads sometimes abort a normal
/// shutdown after the work completed.
pub fn python_in(dir: &Path, code: &str) {
    let code = format!("{code}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)");
    let out = Command::new(python()).arg("-c").arg(&code).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "python failed:\n{code}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The query id recorded in a checkpoint.
pub fn query_id(checkpoint: &Path) -> String {
    let meta: Value = serde_json::from_slice(&std::fs::read(checkpoint.join("metadata.json")).unwrap()).unwrap();
    meta["id"].as_str().unwrap().to_string()
}

/// SplitMix64: small, seedable and good enough to pick test data and kill moments; the
/// same seed gives the same numbers on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits until `path` exists; panics naming `what` (with the child's stderr, killing it)
/// when `child` ends first or a minute passes.
pub fn wait_for_path(child: &mut std::process::Child, path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut err);
            }
            panic!("{what} never happened:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory for one test.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// JSON events `{"id", "user", "amount"}` for ids in `ids`; odd ids have negative amounts.
pub fn events(ids: std::ops::Range<u64>) -> Vec<String> {
    ids.map(|i| {
        let amount = if i % 2 == 1 { -(i as f64) } else { i as f64 * 1.5 };
        format!(r#"{{"id": {i}, "user": "u{}", "amount": {amount}}}"#, i % 7)
    })
    .collect()
}

/// The rows the standard pipeline (see `PIPELINE`) writes for `ids`, in the reader's form.
pub fn expected_rows(ids: impl Iterator<Item = u64>) -> Vec<String> {
    let mut rows: Vec<String> = ids
        .filter(|i| i % 2 == 0)
        .map(|i| serde_json::json!({ "id": i, "user": format!("U{}", i % 7), "amount": i as f64 * 1.5 }).to_string())
        .collect();
    rows.sort();
    rows
}

/// A file → filter/projection → Delta pipeline used by several tests.
pub const PIPELINE: &str = "
CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)
WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 1);

CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');

INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;
";

/// The reader shows BINARY values in base64.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}
