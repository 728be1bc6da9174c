//! The error type of the blob store.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

use super::StorageKey;

/// Every failure of the blob store: writing, reading, deleting and key handling.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("I/O failed while {operation} {path}: {source}")]
    Io {
        /// Step that failed, for example "renaming into place".
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("reading the uploaded document failed, so nothing was stored: {source}")]
    Source {
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    #[error(
        "document is larger than the limit of {limit} bytes ({received} bytes received \
         before reading stopped); send a smaller document or raise the limit"
    )]
    TooLarge { limit: u64, received: u64 },

    #[error("blob {storage_key} not found in {dir}; it was purged or the store directory is wrong")]
    NotFound {
        storage_key: StorageKey,
        dir: PathBuf,
    },

    #[error("invalid storage key {key:?}: expected 32 lowercase hexadecimal digits")]
    InvalidStorageKey { key: String },

    #[error(
        "blob {storage_key} failed its integrity check: {detail}; the stored file was \
         altered or damaged, restore it from a backup"
    )]
    Integrity {
        storage_key: StorageKey,
        detail: String,
    },

    #[error(
        "blob {storage_key} is encrypted at rest but no key-encryption key was given; load key {key_id}"
    )]
    KeyRequired {
        storage_key: StorageKey,
        key_id: String,
    },

    #[error(
        "blob {storage_key} was encrypted under key {expected} but key {actual} was given; load key {expected}"
    )]
    WrongKey {
        storage_key: StorageKey,
        expected: String,
        actual: String,
    },

    #[error(
        "unsupported encryption algorithm {algorithm:?} on blob {storage_key}; this build reads only {supported:?}"
    )]
    UnsupportedAlgorithm {
        storage_key: StorageKey,
        algorithm: String,
        supported: &'static str,
    },

    #[error("invalid encryption descriptor on blob {storage_key}: {detail}")]
    InvalidDescriptor {
        storage_key: StorageKey,
        detail: String,
    },

    #[error(
        "range of {len} bytes at offset {start} is outside blob {storage_key} of {size} bytes; \
         request a range that ends at or before the size"
    )]
    RangeNotSatisfiable {
        storage_key: StorageKey,
        start: u64,
        len: u64,
        size: u64,
    },

    #[error(
        "invalid key file {path}: {length} bytes, expected exactly 32 raw bytes; restore it \
         from a backup, because documents encrypted under it cannot be read without it"
    )]
    InvalidKeyFile { path: PathBuf, length: u64 },

    #[error(
        "the shared document folder {path} does not exist or is not a folder; create it \
         (or mount the shared filesystem it is on) and start again"
    )]
    SharedFolderMissing { path: PathBuf },
}

impl BlobError {
    /// Builds a closure that wraps an I/O error with the operation and path.
    pub(super) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            operation,
            path,
            source,
        }
    }
}
