//! Azurite, the Azure Blob Storage emulator (npm package `azurite`, installed by scripts/test
//! into `~/.cache/weir/node`), on a free port of 127.0.0.1. weir reaches it with
//! `storage.azure_storage_use_emulator = 'true'` and `AZURITE_BLOB_STORAGE_URL`.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::kafka::{free_port, venv_python};

/// `$WEIR_AZURITE`, else the one scripts/test installs.
fn azurite_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_AZURITE") {
        return PathBuf::from(path);
    }
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/weir/node/node_modules/.bin/azurite-blob")
}

/// An Azurite blob service, killed on drop.
pub struct Azurite {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Azurite {
    /// Starts Azurite with its data in `dir` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Self {
        let binary = azurite_binary();
        assert!(binary.exists(), "no Azurite at {} (run scripts/test, which installs it with npm, or set WEIR_AZURITE)", binary.display());
        let log = dir.join("azurite.log");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--skipApiVersionCheck", "--loose", "--location"])
            .arg(dir.join("azurite"))
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut azurite = Azurite { port, child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = azurite.child.try_wait().unwrap() {
                panic!("Azurite exited with {status}: {}", std::fs::read_to_string(&azurite.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "Azurite does not listen on port {port} after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `container` (tests/azurite_container.py signs the request).
    pub fn create_container(&self, container: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/azurite_container.py");
        let out = Command::new(venv_python()).arg(script).arg(self.endpoint()).arg(container).output().unwrap();
        assert!(out.status.success(), "creating container '{container}': {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Points `cmd` (weir, or the independent reader) at this emulator.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AZURITE_BLOB_STORAGE_URL", self.endpoint())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
