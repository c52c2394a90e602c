//! Errors of the checkpoint.

/// What can go wrong reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The location could not be resolved or created.
    #[error("{location}: {message}")]
    Location {
        /// As given by the user.
        location: String,
        /// Why.
        message: String,
    },
    /// Another process holds the checkpoint.
    #[error("checkpoint {location} is in use by another weir process{}; stop it first, or use another --checkpoint", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    InUse {
        /// The checkpoint.
        location: String,
        /// Who holds it, when known.
        holder: Option<String>,
    },
    /// An entry that must be written once already exists: another runner wrote it.
    #[error("checkpoint entry {path} already exists: another query is running on this checkpoint")]
    Conflict {
        /// The entry.
        path: String,
    },
    /// Another runner took over this runner's lease (object stores): it stops before it
    /// commits anything more.
    #[error("this runner lost its lease {lease}{}: another runner took over the checkpoint, and this one stops before its next commit", by.as_ref().map(|b| format!(" to {b}")).unwrap_or_default())]
    LeaseLost {
        /// The lease object.
        lease: String,
        /// Who holds it now, when known.
        by: Option<String>,
    },
    /// The object store cannot write an object only if it is absent.
    #[error("{location}: the store does not support conditional writes (put if absent: {message}), which weir needs to write each checkpoint entry once and keep a second runner out. Use a store that supports them (AWS S3, GCS, Azure, MinIO, R2), or set storage.allow_unsafe_rename = true to go on without that protection")]
    NoConditionalWrites {
        /// The object written.
        location: String,
        /// The store's answer.
        message: String,
    },
    /// An entry could not be parsed.
    #[error("checkpoint file {path} is corrupt ({message}); it is not reset automatically: restore it, or start over with a new checkpoint")]
    Corrupt {
        /// The entry.
        path: String,
        /// Parser message.
        message: String,
    },
    /// An entry was written but could not be made durable (local disk).
    #[error("checkpoint entry {path} was written but cannot be synced to disk: {source}")]
    Sync {
        /// The entry.
        path: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error("checkpoint I/O on {path}: {source}")]
    Io {
        /// The entry.
        path: String,
        /// Store error.
        #[source]
        source: object_store::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;
