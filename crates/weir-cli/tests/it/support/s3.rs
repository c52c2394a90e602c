//! A real S3 protocol server for the tests: `moto_server` (the `moto` package scripts/test
//! installs into the tests' virtualenv) on 127.0.0.1, and a proxy in front of it that fails
//! requests on purpose. weir reaches them through the standard `AWS_*` variables
//! ([`S3Server::env`]), as a user's S3-compatible server would be reached. A [`Place`] lets
//! a test look into a checkpoint or a table on local disk and in S3 alike.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

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

    /// The ETag of an object (S3 HeadObject), `None` when there is none. It is the MD5 of
    /// the bytes of a plain PUT, so it changes when an object is rewritten with other bytes.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let (status, head, _) = exchange(self.port, "HEAD", &format!("/{bucket}/{}", encode(key)), b"").unwrap();
        match status {
            200 => Some(etag_value(head.lines().find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("etag")))?.1)),
            404 => None,
            other => panic!("heading s3://{bucket}/{key}: {other}"),
        }
    }

    /// The keys under `prefix` in `bucket`, sorted (S3 ListObjectsV2).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.list_etags(bucket, prefix).into_keys().collect()
    }

    /// The keys under `prefix` in `bucket` with their ETags (S3 ListObjectsV2, every page).
    pub fn list_etags(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        let mut objects = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={}", encode_param(prefix));
            if let Some(token) = &token {
                path += &format!("&continuation-token={}", encode_param(token));
            }
            let (status, body) = request(self.port, "GET", &path, b"").unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "listing s3://{bucket}/{prefix}: {body}");
            for contents in body.split("<Contents>").skip(1) {
                let key = unescape(element(contents, "Key").unwrap_or_else(|| panic!("no <Key> in a listing of s3://{bucket}/{prefix}: {body}")));
                objects.insert(key, etag_value(&unescape(element(contents, "ETag").unwrap_or_default())));
            }
            token = element(&body, "NextContinuationToken").filter(|_| element(&body, "IsTruncated") == Some("true")).map(unescape);
            if token.is_none() {
                return objects;
            }
        }
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

/// A directory the tests look into, such as a checkpoint, a Delta table or a source's
/// directory: on local disk, or a prefix of a bucket of an S3 server. Paths given to its
/// methods are relative to it, with `/`.
#[derive(Clone)]
pub enum Place {
    Local(PathBuf),
    S3 { server: Arc<S3Server>, bucket: String, prefix: String },
}

/// What a [`Place`] held at one moment, to tell what was written after it.
pub enum Mark {
    /// The moment: local modification times are finer than a millisecond.
    Local(SystemTime),
    /// Every object's ETag: S3's LastModified counts whole seconds. An object rewritten
    /// with the very same bytes keeps its ETag, so it does not count as written.
    S3(BTreeMap<String, String>),
}

impl Place {
    /// The place `relative` inside this one.
    pub fn join(&self, relative: &str) -> Self {
        match self {
            Place::Local(dir) => Place::Local(dir.join(relative)),
            Place::S3 { server, bucket, prefix } => Place::S3 { server: Arc::clone(server), bucket: bucket.clone(), prefix: format!("{prefix}/{relative}") },
        }
    }

    /// The S3 key of `relative`.
    fn key(prefix: &str, relative: &str) -> String {
        format!("{prefix}/{relative}")
    }

    /// `relative` as a path or `s3://` URL, for messages.
    pub fn show(&self, relative: &str) -> String {
        match self {
            Place::Local(dir) => dir.join(relative).display().to_string(),
            Place::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{}", Self::key(prefix, relative)),
        }
    }

    /// How `weir` run in `cwd` is told this place, in a script or on its command line: a
    /// relative path, or an `s3://` URL.
    pub fn in_script(&self, cwd: &Path) -> String {
        match self {
            Place::Local(dir) => dir.strip_prefix(cwd).unwrap_or(dir).display().to_string(),
            Place::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The ids `N` of the `<dir>/<N>.json` files, ascending (`N` may have leading zeros).
    pub fn ids(&self, dir: &str) -> Vec<u64> {
        let names: Vec<String> = match self {
            Place::Local(root) => std::fs::read_dir(root.join(dir))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect(),
            Place::S3 { server, bucket, prefix } => {
                let under = Self::key(prefix, dir) + "/";
                server.list(bucket, &under).iter().filter_map(|k| k.strip_prefix(&under)).filter(|n| !n.contains('/')).map(str::to_string).collect()
            }
        };
        let mut ids: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".json")?.parse().ok()).collect();
        ids.sort_unstable();
        ids
    }

    pub fn exists(&self, relative: &str) -> bool {
        match self {
            Place::Local(dir) => dir.join(relative).exists(),
            Place::S3 { server, bucket, prefix } => server.etag(bucket, &Self::key(prefix, relative)).is_some(),
        }
    }

    /// The bytes of `relative`, `None` when there is no such file.
    pub fn read(&self, relative: &str) -> Option<Vec<u8>> {
        match self {
            Place::Local(dir) => std::fs::read(dir.join(relative)).ok(),
            Place::S3 { server, bucket, prefix } => server.get(bucket, &Self::key(prefix, relative)),
        }
    }

    /// Writes `lines` as the file `name`, all at once (see [`super::write_file`]).
    pub fn write_lines(&self, name: &str, lines: &[String]) {
        match self {
            Place::Local(dir) => super::write_file(dir, name, lines),
            Place::S3 { server, bucket, prefix } => server.put(bucket, &Self::key(prefix, name), (lines.join("\n") + "\n").as_bytes()),
        }
    }

    /// What the place holds now.
    pub fn mark(&self) -> Mark {
        match self {
            Place::Local(_) => Mark::Local(SystemTime::now()),
            Place::S3 { server, bucket, prefix } => Mark::S3(server.list_etags(bucket, &format!("{prefix}/"))),
        }
    }

    /// Whether `relative` was written after `mark` was taken.
    pub fn written_since(&self, mark: &Mark, relative: &str) -> bool {
        match (self, mark) {
            (Place::Local(dir), Mark::Local(at)) => std::fs::metadata(dir.join(relative)).and_then(|m| m.modified()).is_ok_and(|t| t >= *at),
            (Place::S3 { server, bucket, prefix }, Mark::S3(etags)) => {
                let key = Self::key(prefix, relative);
                server.etag(bucket, &key).is_some_and(|etag| etags.get(&key) != Some(&etag))
            }
            _ => panic!("a mark of another kind of place"),
        }
    }

    /// How long to wait between looks for a step that is about to show: a local look is a
    /// system call, an S3 look an HTTP request that moto (Python) takes about 5 ms to
    /// answer, so S3 is looked at every few ms, one request at a time.
    pub fn poll_interval(&self) -> Duration {
        match self {
            Place::Local(_) => Duration::from_micros(250),
            Place::S3 { .. } => Duration::from_millis(2),
        }
    }

    /// The Delta table here, read by the independent reader (in S3, every column).
    pub fn read_table(&self, columns: &[&str]) -> super::DeltaView {
        match self {
            Place::Local(dir) => super::DeltaView::read_columns(dir, columns),
            Place::S3 { server, bucket, prefix } => super::DeltaView::read_s3(&format!("s3://{bucket}/{prefix}"), &server.endpoint()),
        }
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
    percent_encode(key, b"/")
}

/// Percent-encodes a query parameter's value (`/` encoded too).
fn encode_param(value: &str) -> String {
    percent_encode(value, b"")
}

fn percent_encode(text: &str, kept: &[u8]) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ if kept.contains(&b) => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

fn unescape(xml: &str) -> String {
    xml.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#34;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// An ETag without its quotes, as a header and a listing both give it.
fn etag_value(raw: &str) -> String {
    raw.trim().trim_matches('"').to_string()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, unsigned (moto does not check signatures);
/// returns the status and body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    exchange(port, method, path, body).map(|(status, _, body)| (status, body))
}

/// [`request`], also returning the answer's head (status line and headers).
fn exchange(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
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
    Ok((status, head, body))
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
        let every = |k: u64, salt: u64| k > 0 && (n.wrapping_mul(2654435761).wrapping_add(salt) >> 7).is_multiple_of(k);
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
