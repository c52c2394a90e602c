//! Where things live: a local path, or an object store URL (`s3://`, `gs://`, `az://`,
//! `abfss://`; `memory://` in tests), resolved to an `ObjectStore`.
//!
//! Object stores take their credentials and endpoints from each cloud's standard chain (for
//! S3 the `AWS_*` variables, `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` included, then profile
//! files, SSO, web identity, container and instance metadata; for GCS `GOOGLE_*` and the
//! metadata server; for Azure `AZURE_*`, managed and workload identity). A table's
//! `storage.<key>` options override them; the keys are object_store's (`aws_region`,
//! `aws_endpoint`, `google_service_account`, `azure_storage_account_name`, ...). Transient
//! errors (timeouts, 5xx, throttling) are retried with backoff by the store's client.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use url::Url;

use crate::error::{CheckpointError, Result};

/// Settings of an object store: a table's `storage.<key>` options without the prefix (or the
/// checkpoint's), by key.
pub type StorageOptions = BTreeMap<String, String>;

/// The option that lets weir use a store without conditional writes (put-if-absent), as
/// delta-rs names it: entries are then written check-then-put, and a second runner is not
/// excluded.
pub const ALLOW_UNSAFE_RENAME: &str = "allow_unsafe_rename";

/// The local path `location` names: a `file://` URL's path, percent-decoded
/// (`file:///data/c%20d/` is `/data/c d/`), or a plain path as it is, `%` and all (relative
/// to the working directory). Errors when `options` (object store settings) are given.
fn local_path(location: &str, options: &StorageOptions) -> std::result::Result<std::path::PathBuf, String> {
    if !options.is_empty() {
        let keys: Vec<String> = options.keys().map(|k| format!("storage.{k}")).collect();
        return Err(format!("{} apply to object stores, and this is a local path", keys.join(", ")));
    }
    match location.starts_with("file://") {
        true => Url::parse(location)
            .map_err(|e| e.to_string())?
            .to_file_path()
            .map_err(|()| "not a local file URL (file:///absolute/path)".into()),
        false => Ok(std::path::PathBuf::from(location)),
    }
}

/// Whether `location` is an object store's URL (`s3://`, `memory://`, ...) rather than a
/// local path or a `file://` URL.
pub fn is_object_store_url(location: &str) -> bool {
    location.contains("://") && !location.starts_with("file://")
}

/// The local directory of `location`, a plain path or a `file://` URL (percent-decoded);
/// None for an object store's URL, or a `file://` URL that names no local path (which
/// [`Location::resolve`] reports).
pub fn local_dir(location: &str) -> Option<std::path::PathBuf> {
    match is_object_store_url(location) {
        true => None,
        false => local_path(location, &StorageOptions::new()).ok(),
    }
}

/// A resolved location: the store, the root inside it, and how to show it to users.
#[derive(Debug, Clone)]
pub struct Location {
    /// The object store holding the location. For an object store URL this is the store of
    /// the whole bucket (container), and `root` the prefix inside it.
    pub store: Arc<dyn ObjectStore>,
    /// The root path inside `store`.
    pub root: Path,
    /// The URL of the root (`file:///abs/dir/` for local paths).
    pub url: Url,
    /// The local directory, when the location is on local disk.
    pub local_dir: Option<std::path::PathBuf>,
    /// The options the store was built with (never shown: they may hold secrets).
    pub options: StorageOptions,
    /// `storage.allow_unsafe_rename = true`: the user accepts a store without conditional
    /// writes.
    pub allow_unsafe_rename: bool,
}

impl Location {
    /// Resolves `location`: a URL with a scheme (`file://`, `s3://`, `gs://`, `az://`,
    /// `abfss://`, `memory://`), or a local path, relative to the working directory. A local
    /// directory is created when `create` is set.
    pub fn resolve(location: &str, create: bool) -> Result<Self> {
        Self::resolve_with(location, create, &StorageOptions::new())
    }

    /// [`Location::resolve`] with the store's `options` (`storage.*` options without the
    /// prefix). Options name object_store's keys; an unknown key is an error that names it.
    pub fn resolve_with(location: &str, create: bool, options: &StorageOptions) -> Result<Self> {
        let invalid = |m: String| CheckpointError::Location { location: location.to_string(), message: m };
        let mut options = options.clone();
        let allow_unsafe_rename = match options.remove(ALLOW_UNSAFE_RENAME).as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!("option 'storage.{ALLOW_UNSAFE_RENAME}' must be true or false, not '{other}'")));
            }
        };
        if is_object_store_url(location) {
            let url = Url::parse(location).map_err(|e| invalid(e.to_string()))?;
            let url = match url.path().ends_with('/') {
                true => url,
                false => {
                    let mut dir = url.clone();
                    dir.set_path(&format!("{}/", url.path()));
                    dir
                }
            };
            let (store, root) = open_store(&url, &options).map_err(invalid)?;
            let store = match allow_unsafe_rename {
                true => Arc::new(CheckThenPut { inner: store }) as Arc<dyn ObjectStore>,
                false => store,
            };
            return Ok(Self { store, root, url, local_dir: None, options, allow_unsafe_rename });
        }
        let path = local_path(location, &options).map_err(invalid)?;
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
        Ok(Self { store: Arc::new(store), root: Path::default(), url, local_dir: Some(abs), options, allow_unsafe_rename })
    }

    /// The URL [`Location::resolve_with`] with `create` set gives `location`, with nothing
    /// created: a local directory not made yet is named by its nearest existing ancestor,
    /// resolved as the directory itself would be (symbolic links followed), and the rest of
    /// the path. For telling whether two locations are one before any of them is made.
    pub fn url_of(location: &str, options: &StorageOptions) -> Result<Url> {
        if is_object_store_url(location) {
            return Ok(Self::resolve_with(location, false, options)?.url);
        }
        let invalid = |m: String| CheckpointError::Location { location: location.to_string(), message: m };
        let path = std::path::absolute(local_path(location, options).map_err(invalid)?).map_err(|e| invalid(e.to_string()))?;
        let parts: Vec<std::path::Component<'_>> = path.components().collect();
        let existing = (0..=parts.len()).rev().find(|&n| parts[..n].iter().collect::<std::path::PathBuf>().exists()).unwrap_or(0);
        let mut dir = std::fs::canonicalize(parts[..existing].iter().collect::<std::path::PathBuf>()).map_err(|e| invalid(e.to_string()))?;
        if !dir.is_dir() {
            return Err(invalid(format!("{} is not a directory", dir.display())));
        }
        for part in &parts[existing..] {
            match part {
                std::path::Component::ParentDir => {
                    dir.pop();
                }
                std::path::Component::Normal(name) => dir.push(name),
                _ => {}
            }
        }
        Url::from_directory_path(&dir).map_err(|()| invalid("not an absolute path".into()))
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
            None => {
                let authority = match self.url.username() {
                    "" => self.url.host_str().unwrap_or_default().to_string(),
                    user => format!("{user}@{}", self.url.host_str().unwrap_or_default()),
                };
                format!("{}://{authority}/{path}", self.url.scheme())
            }
        }
    }

    /// Whether the location is on an object store (not local disk).
    pub fn is_object_store(&self) -> bool {
        self.local_dir.is_none()
    }
}

/// The store of the bucket (container) `url` names, and the path inside it.
fn open_store(url: &Url, options: &StorageOptions) -> std::result::Result<(Arc<dyn ObjectStore>, Path), String> {
    let (scheme, root) = ObjectStoreScheme::parse(url).map_err(|_| unsupported(url.scheme()))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Memory => {
            if let Some(key) = options.keys().next() {
                return Err(format!("option 'storage.{key}' does not apply to memory:// locations"));
            }
            let (store, _) = object_store::parse_url(url).map_err(|e| e.to_string())?;
            Arc::from(store)
        }
        ObjectStoreScheme::AmazonS3 if matches!(url.scheme(), "s3" | "s3a") => cloud::s3(url, options)?,
        ObjectStoreScheme::GoogleCloudStorage => cloud::gcs(url, options)?,
        ObjectStoreScheme::MicrosoftAzure if url.scheme() != "https" => cloud::azure(url, options)?,
        _ => return Err(unsupported(url.scheme())),
    };
    Ok((store, root))
}

/// A store whose user accepted writing without conditional writes
/// (`storage.allow_unsafe_rename = true`): a create-if-absent the store cannot do is done as
/// a check, then a write, which a second writer can slip between. Stores that can do it
/// still do.
#[derive(Debug)]
struct CheckThenPut {
    inner: Arc<dyn ObjectStore>,
}

impl std::fmt::Display for CheckThenPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckThenPut({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CheckThenPut {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        if opts.mode != PutMode::Create {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let conditional = self.inner.put_opts(location, payload.clone(), opts.clone()).await;
        if !matches!(conditional, Err(object_store::Error::NotImplemented { .. })) {
            return conditional;
        }
        // The store cannot create-if-absent: check, then write.
        match self.inner.head(location).await {
            Ok(_) => Err(object_store::Error::AlreadyExists {
                path: location.to_string(),
                source: "exists (checked before writing; storage.allow_unsafe_rename)".into(),
            }),
            Err(object_store::Error::NotFound { .. }) => {
                self.inner.put_opts(location, payload, PutOptions { mode: PutMode::Overwrite, ..opts }).await
            }
            Err(e) => Err(e),
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn unsupported(scheme: &str) -> String {
    format!("weir reads and writes local paths and file://, s3://, gs://, az:// and abfss:// URLs, not {scheme}://")
}

/// An option key the store does not know.
#[cfg_attr(not(any(feature = "s3", feature = "gcs", feature = "azure")), allow(dead_code))]
fn unknown_option(key: &str, store: &str, examples: &str) -> String {
    format!("unknown option 'storage.{key}' for {store} (object_store's keys, e.g. {examples})")
}

#[cfg(feature = "s3")]
mod aws {
    //! The AWS SDK's credential chain for object_store's S3 client: it adds profile files
    //! (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`), SSO and credential processes
    //! to what object_store reads itself.

    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use aws_credential_types::provider::ProvideCredentials;
    use object_store::aws::AwsCredential;
    use object_store::{CredentialProvider, Error};
    use tokio::sync::{Mutex, OnceCell};

    /// Credentials from the AWS SDK's default chain, cached until shortly before they expire.
    #[derive(Debug, Default)]
    pub struct SdkChain {
        chain: OnceCell<aws_config::SdkConfig>,
        cached: Mutex<Option<aws_credential_types::Credentials>>,
    }

    #[async_trait::async_trait]
    impl CredentialProvider for SdkChain {
        type Credential = AwsCredential;

        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            let mut cached = self.cached.lock().await;
            let fresh = |c: &aws_credential_types::Credentials| {
                c.expiry().is_none_or(|expiry| expiry > SystemTime::now() + Duration::from_secs(300))
            };
            if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
                return Ok(Arc::new(convert(c)));
            }
            let config = self.chain.get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest())).await;
            let provider = config.credentials_provider().ok_or_else(|| Error::Generic {
                store: "S3",
                source: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), or run where instance metadata or web identity provides them".into(),
            })?;
            let credentials = provider.provide_credentials().await.map_err(|e| Error::Generic {
                store: "S3",
                source: format!("cannot get AWS credentials from the default chain (environment, profile files, SSO, web identity, instance metadata): {e}").into(),
            })?;
            let out = convert(&credentials);
            *cached = Some(credentials);
            Ok(Arc::new(out))
        }
    }

    fn convert(c: &aws_credential_types::Credentials) -> AwsCredential {
        AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }
    }
}

mod cloud {
    //! One builder per cloud, each started from its environment variables.

    use std::sync::Arc;

    use object_store::ObjectStore;
    use url::Url;

    use super::StorageOptions;

    #[cfg(feature = "s3")]
    pub fn s3(url: &Url, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        for (key, value) in options {
            let parsed: AmazonS3ConfigKey = key.to_ascii_lowercase().parse().map_err(|_| {
                super::unknown_option(key, "S3", "aws_region, aws_endpoint, aws_access_key_id, aws_secret_access_key, aws_session_token, allow_http")
            })?;
            builder = builder.with_config(parsed, value);
        }
        // Without a key, the AWS SDK's chain finds one (profile files included), as the
        // AWS CLI and delta-rs do; a web identity or container role object_store handles.
        let own_chain = [AmazonS3ConfigKey::WebIdentityTokenFile, AmazonS3ConfigKey::ContainerCredentialsRelativeUri, AmazonS3ConfigKey::ContainerCredentialsFullUri]
            .iter()
            .any(|k| builder.get_config_value(k).is_some());
        if builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId).is_none() && !own_chain {
            builder = builder.with_credentials(Arc::new(super::aws::SdkChain::default()));
        }
        Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
    }

    #[cfg(not(feature = "s3"))]
    pub fn s3(_: &Url, _: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        Err("this weir was built without S3 support (cargo feature `s3`)".into())
    }

    #[cfg(feature = "gcs")]
    pub fn gcs(url: &Url, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
        for (key, value) in options {
            let parsed: GoogleConfigKey = key.to_ascii_lowercase().parse().map_err(|_| {
                super::unknown_option(key, "GCS", "google_service_account, google_service_account_key, google_application_credentials")
            })?;
            builder = builder.with_config(parsed, value);
        }
        Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
    }

    #[cfg(not(feature = "gcs"))]
    pub fn gcs(_: &Url, _: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        Err("this weir was built without GCS support (cargo feature `gcs`)".into())
    }

    #[cfg(feature = "azure")]
    pub fn azure(url: &Url, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
        for (key, value) in options {
            let parsed: AzureConfigKey = key.to_ascii_lowercase().parse().map_err(|_| {
                super::unknown_option(key, "Azure", "azure_storage_account_name, azure_storage_account_key, azure_storage_sas_key, azure_storage_use_emulator")
            })?;
            builder = builder.with_config(parsed, value);
        }
        Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
    }

    #[cfg(not(feature = "azure"))]
    pub fn azure(_: &Url, _: &StorageOptions) -> Result<Arc<dyn ObjectStore>, String> {
        Err("this weir was built without Azure support (cargo feature `azure`)".into())
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

    fn opts(pairs: &[(&str, &str)]) -> StorageOptions {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Each cloud's URL resolves to its bucket's store and the prefix inside it; unknown
    /// option keys and schemes are refused naming them.
    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure"))]
    #[test]
    fn cloud_urls_resolve_to_their_bucket_and_prefix() {
        let s3 = Location::resolve_with("s3://bucket/a/b", false, &opts(&[("aws_region", "eu-west-1"), ("aws_access_key_id", "k"), ("aws_secret_access_key", "s")])).unwrap();
        assert_eq!(s3.root.as_ref(), "a/b");
        assert_eq!(s3.display(&s3.child("offsets/0.json")), "s3://bucket/a/b/offsets/0.json");
        assert!(s3.store.to_string().contains("bucket"), "{}", s3.store);
        let gs = Location::resolve_with("gs://bucket/t/", false, &StorageOptions::new()).unwrap();
        assert_eq!(gs.root.as_ref(), "t");
        let az = Location::resolve_with("az://container/t", false, &opts(&[("azure_storage_account_name", "acct"), ("azure_storage_use_emulator", "true")])).unwrap();
        assert_eq!(az.root.as_ref(), "t");
        let abfss = Location::resolve_with("abfss://container@acct.dfs.core.windows.net/x/y", false, &opts(&[("azure_storage_use_emulator", "true")])).unwrap();
        assert_eq!(abfss.root.as_ref(), "x/y");
        assert_eq!(abfss.display(&abfss.child("z")), "abfss://container@acct.dfs.core.windows.net/x/y/z");

        let err = Location::resolve_with("s3://bucket/a", false, &opts(&[("aws_regoin", "x")])).unwrap_err().to_string();
        assert!(err.starts_with("s3://bucket/a: unknown option 'storage.aws_regoin' for S3"), "{err}");
        let err = Location::resolve("ftp://host/x", false).unwrap_err().to_string();
        assert!(err.contains("not ftp://"), "{err}");
        let err = Location::resolve_with("s3://b/a", false, &opts(&[("allow_unsafe_rename", "yes")])).unwrap_err().to_string();
        assert!(err.contains("'storage.allow_unsafe_rename' must be true or false"), "{err}");
        let unsafe_ok = Location::resolve_with("s3://b/a", false, &opts(&[("allow_unsafe_rename", "TRUE")])).unwrap();
        assert!(unsafe_ok.allow_unsafe_rename);
        assert!(!unsafe_ok.options.contains_key("allow_unsafe_rename"));
    }

    /// `storage.*` options on a local path are a mistake worth naming.
    #[test]
    fn storage_options_on_a_local_path_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Location::resolve_with(tmp.path().to_str().unwrap(), false, &opts(&[("aws_region", "x")])).unwrap_err().to_string();
        assert!(err.ends_with("storage.aws_region apply to object stores, and this is a local path"), "{err}");
    }

    /// `url_of` names a local directory as resolving it with `create` would, and makes
    /// nothing: through a symbolic link, with `..` after a part not made yet, as a
    /// `file://` URL; a file in the way is an error.
    #[test]
    fn url_of_a_directory_not_made_yet_is_the_one_creating_it_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        std::fs::write(base.join("file"), b"x").unwrap();
        let none = StorageOptions::new();
        let cases = [
            (base.join("link/a/b").display().to_string(), "real/a/b"),
            (base.join("link/new/../c").display().to_string(), "real/c"),
            (format!("file://{}/link/d%20e", base.display()), "real/d e"),
            (base.join("real").display().to_string(), "real"),
        ];
        let urls: Vec<Url> = cases.iter().map(|(location, _)| Location::url_of(location, &none).unwrap()).collect();
        assert_eq!(std::fs::read_dir(base.join("real")).unwrap().count(), 0, "nothing is made");
        for ((location, made), url) in cases.iter().zip(urls) {
            assert_eq!(url, Url::from_directory_path(base.join(made)).unwrap(), "{location}");
            assert_eq!(Location::resolve_with(location, true, &none).unwrap().url, url, "creating it: {location}");
        }
        let err = Location::url_of(base.join("file/x").to_str().unwrap(), &none).unwrap_err().to_string();
        assert!(err.ends_with("file is not a directory"), "{err}");
        let err = Location::url_of(base.to_str().unwrap(), &opts(&[("aws_region", "x")])).unwrap_err().to_string();
        assert!(err.ends_with("storage.aws_region apply to object stores, and this is a local path"), "{err}");
    }
}
