//! Where things live: a local path or an object store URL, resolved to an `ObjectStore`.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::error::{CheckpointError, Result};

/// A resolved location: the store, the root inside it, and how to show it to users.
#[derive(Debug, Clone)]
pub struct Location {
    /// The object store holding the location.
    pub store: Arc<dyn ObjectStore>,
    /// The root path inside `store`.
    pub root: Path,
    /// The URL of the root (`file:///abs/dir/` for local paths).
    pub url: Url,
    /// The local directory, when the location is on local disk.
    pub local_dir: Option<std::path::PathBuf>,
}

impl Location {
    /// Resolves `location`: a URL with a scheme (`file://`, `memory://`), or a local path,
    /// relative to the working directory. A local directory is created when `create` is set.
    pub fn resolve(location: &str, create: bool) -> Result<Self> {
        let invalid = |m: String| CheckpointError::Location { location: location.to_string(), message: m };
        if location.contains("://") && !location.starts_with("file://") {
            let url = Url::parse(location).map_err(|e| invalid(e.to_string()))?;
            let (store, root) = object_store::parse_url(&url).map_err(|e| invalid(e.to_string()))?;
            return Ok(Self { store: Arc::from(store), root, url, local_dir: None });
        }
        // A `file://` URL is percent-encoded (`file:///data/c%20d/` is `/data/c d/`); a plain
        // path is taken as it is, `%` and all.
        let path = match location.starts_with("file://") {
            true => Url::parse(location)
                .map_err(|e| invalid(e.to_string()))?
                .to_file_path()
                .map_err(|()| invalid("not a local file URL (file:///absolute/path)".into()))?,
            false => std::path::PathBuf::from(location),
        };
        if create {
            crate::durable::create_dir_all(&path).map_err(|e| invalid(format!("cannot create the directory: {e}")))?;
        }
        let abs = std::fs::canonicalize(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => invalid("no such directory".into()),
            _ => invalid(e.to_string()),
        })?;
        if !abs.is_dir() {
            return Err(invalid("not a directory".into()));
        }
        let store = LocalFileSystem::new_with_prefix(&abs).map_err(|e| invalid(e.to_string()))?;
        let url = Url::from_directory_path(&abs).map_err(|()| invalid("not an absolute path".into()))?;
        Ok(Self { store: Arc::new(store), root: Path::default(), url, local_dir: Some(abs) })
    }

    /// `root/relative`.
    pub fn child(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    /// How to name `path` (inside this location) in a message.
    pub fn display(&self, path: &Path) -> String {
        match &self.local_dir {
            Some(dir) => dir.join(path.as_ref()).display().to_string(),
            None => format!("{}://{}/{}", self.url.scheme(), self.url.host_str().unwrap_or_default(), path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `file://` URL is decoded once; a plain path is taken as it is, `%` included.
    #[test]
    fn file_urls_are_decoded_once_and_paths_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let dir = base.join("c d%20é #1");
        let by_path = Location::resolve(dir.to_str().unwrap(), true).unwrap();
        assert_eq!(by_path.local_dir.as_deref(), Some(dir.as_path()));
        assert!(by_path.url.as_str().ends_with("/c%20d%2520%C3%A9%20%231/"), "{}", by_path.url);
        let by_url = Location::resolve(by_path.url.as_str(), false).unwrap();
        assert_eq!(by_url.local_dir.as_deref(), Some(dir.as_path()), "the URL names the same directory");
        assert!(!base.join("c d é #1").exists(), "never decoded twice");
    }
}
