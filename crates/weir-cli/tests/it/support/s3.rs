//! A real S3 protocol server for the tests: `moto_server` (the `moto` package scripts/test
//! installs into the tests' virtualenv) on 127.0.0.1, and a proxy in front of it that fails
//! requests on purpose. weir reaches them through the standard `AWS_*` variables
//! ([`S3Server::env`]), as a user's S3-compatible server would be reached.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::kafka::{free_port, venv_python};

/// `moto_server` on a free port of 127.0.0.1, killed on drop.
pub struct S3Server {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl S3Server {
    /// Starts `python -m moto.server` (log in `dir`) and waits until it answers; tries other
    /// ports if one is taken.
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("moto.log");
        let python = venv_python();
        for attempt in 1..=5 {
            let port = free_port();
            let out = File::options().create(true).append(true).open(&log).unwrap();
            let child = Command::new(&python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {} (set WEIR_PYTHON, or run scripts/test): {e}", python.display()));
            let mut server = S3Server { port, child, log: log.clone() };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) if attempt < 5 => eprintln!("moto_server on port {port} failed ({e}); trying another port"),
                Err(e) => panic!(
                    "moto_server does not start: {e} (the tests need the `moto` package in {}; run scripts/test, which installs tests/requirements.txt)\n{}",
                    python.display(),
                    server.log_tail()
                ),
            }
        }
        unreachable!()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("moto_server exited with {status}"));
            }
            match request(self.port, "GET", "/", b"") {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("no answer on port {} after 30 s: {e}", self.port)),
            }
        }
    }

    /// The server's URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (S3 CreateBucket: `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = request(self.port, "PUT", &format!("/{bucket}"), b"").unwrap();
        assert_eq!(status, 200, "creating bucket '{bucket}': {}", String::from_utf8_lossy(&body));
    }

    /// Writes an object (S3 PutObject).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, answer) = request(self.port, "PUT", &format!("/{bucket}/{}", encode(key)), body).unwrap();
        assert_eq!(status, 200, "putting s3://{bucket}/{key}: {}", String::from_utf8_lossy(&answer));
    }

    /// Reads an object, `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = request(self.port, "GET", &format!("/{bucket}/{}", encode(key)), b"").unwrap();
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("getting s3://{bucket}/{key}: {other} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// The keys under `prefix` in `bucket`, sorted (S3 ListObjectsV2; one page of up to
    /// 1,000 keys, more than any test writes under one prefix).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = request(self.port, "GET", &format!("/{bucket}?list-type=2&prefix={}", encode(prefix)), b"").unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "listing s3://{bucket}/{prefix}: {body}");
        let mut keys: Vec<String> = body.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>")).map(|(k, _)| unescape(k)).collect();
        keys.sort();
        keys
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(3000)..];
        format!("--- moto_server log ({}) ---\n{}", self.log.display(), String::from_utf8_lossy(tail))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the `AWS_*` variables for an S3 server at `endpoint`.
pub fn env_for<'a>(cmd: &'a mut Command, endpoint: &str) -> &'a mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "weir-test")
        .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
}

/// Percent-encodes a key for a request path (`/` kept).
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unescape(xml: &str) -> String {
    xml.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, unsigned (moto does not check signatures);
/// returns the status and body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // moto checks no signature, but treats a request without one as anonymous, which may
    // not read what weir's credentials wrote.
    let auth = "AWS4-HMAC-SHA256 Credential=weir-test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(head.clone()))?;
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// What the proxy does to the requests it fails.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// One request in this many is answered `503 SlowDown` (throttling) unseen by the server.
    pub throttle_every: u64,
    /// One in this many is answered `500 InternalError` unseen by the server.
    pub error_every: u64,
    /// One PUT in this many reaches the server and is applied, and its answer is replaced by
    /// `500 InternalError`: the client cannot tell whether it landed.
    pub lost_answer_every: u64,
    /// One request in this many is held this long before it is forwarded (slow, not failed).
    pub slow_every: u64,
    pub slow: Duration,
    /// Requests for this bucket are answered `403 AccessDenied`.
    pub denied_bucket: Option<&'static str>,
}

impl Faults {
    /// No faults, but `bucket` denied.
    pub fn deny(bucket: &'static str) -> Self {
        Self { throttle_every: 0, error_every: 0, lost_answer_every: 0, slow_every: 0, slow: Duration::ZERO, denied_bucket: Some(bucket) }
    }
}

/// A proxy on a free port of 127.0.0.1 in front of an S3 server that fails requests as
/// [`Faults`] says, one connection per request (it answers `Connection: close`).
pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Requests seen, and how many of them were failed on purpose.
    pub seen: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl FaultProxy {
    pub fn start(target: u16, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, n, f) = (Arc::clone(&stop), Arc::clone(&seen), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let number = n.fetch_add(1, Ordering::SeqCst) + 1;
                        let f = Arc::clone(&f);
                        std::thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            let _ = proxy_one(client, target, number, faults, &f);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => return,
                }
            }
        });
        Self { port, stop, seen, failed }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves one client connection: its requests one after the other (keep-alive), each
/// forwarded on a fresh connection to the server or failed.
fn proxy_one(client: TcpStream, target: u16, number: u64, faults: Faults, failed: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let mut n = number.wrapping_mul(7919);
    loop {
        // The request: its head, then Content-Length bytes of body.
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let length: usize = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let first = text.lines().next().unwrap_or_default().to_string();
        let method = first.split_whitespace().next().unwrap_or_default().to_string();
        let path = first.split_whitespace().nth(1).unwrap_or_default().to_string();
        n = n.wrapping_add(1);
        let every = |k: u64, salt: u64| k > 0 && (n.wrapping_mul(2654435761).wrapping_add(salt) >> 7) % k == 0;
        if let Some(bucket) = faults.denied_bucket
            && (path == format!("/{bucket}") || path.starts_with(&format!("/{bucket}/")) || path.starts_with(&format!("/{bucket}?")))
        {
            failed.fetch_add(1, Ordering::SeqCst);
            reply(&mut writer, 403, "AccessDenied", "Access Denied")?;
            continue;
        }
        if every(faults.throttle_every, 1) {
            failed.fetch_add(1, Ordering::SeqCst);
            reply(&mut writer, 503, "SlowDown", "Please reduce your request rate.")?;
            continue;
        }
        if every(faults.error_every, 2) {
            failed.fetch_add(1, Ordering::SeqCst);
            reply(&mut writer, 500, "InternalError", "We encountered an internal error. Please try again.")?;
            continue;
        }
        if every(faults.slow_every, 3) {
            std::thread::sleep(faults.slow);
        }
        let lose_answer = method == "PUT" && every(faults.lost_answer_every, 4);
        // Forward with `Connection: close` and read the whole answer.
        let mut upstream = TcpStream::connect(("127.0.0.1", target))?;
        let head = text
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let head = head.trim_end_matches("\r\n").to_string();
        write!(upstream, "{head}\r\nConnection: close\r\n\r\n")?;
        upstream.write_all(&body)?;
        let mut answer = Vec::new();
        upstream.read_to_end(&mut answer)?;
        if lose_answer {
            failed.fetch_add(1, Ordering::SeqCst);
            reply(&mut writer, 500, "InternalError", "We encountered an internal error. Please try again.")?;
            continue;
        }
        // The answer, telling the client this connection ends here.
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(answer.len());
        let answer_head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let kept: Vec<&str> = answer_head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
        write!(writer, "{}\r\nConnection: close\r\n\r\n", kept.join("\r\n"))?;
        writer.write_all(answer.get(split + 4..).unwrap_or_default())?;
        writer.flush()?;
        return Ok(());
    }
}

fn reply(writer: &mut TcpStream, status: u16, code: &str, message: &str) -> std::io::Result<()> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>");
    let reason = match status {
        403 => "Forbidden",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}
