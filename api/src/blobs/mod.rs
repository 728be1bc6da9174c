//! The document blob store: documents as files in a local directory, written and read as
//! streams, optionally encrypted at rest.
//!
//! Layout under the store's directory:
//!
//! - `objects/ab/ab…`: one file per document, named by its [`StorageKey`] (the 32 hex
//!   digits of a random [`DocumentId`]) inside a directory named by its first two digits,
//!   so 256 directories share the files.
//! - `tmp/`: documents being written. A write renames its temp file into `objects/` only
//!   after the content is complete and fsynced, so `objects/` never contains a partial
//!   document. Both folders are on one filesystem, so the rename is atomic.
//!
//! A client's file name is metadata for the ledger only: storage keys are generated here,
//! and [`StorageKey::parse`] accepts nothing but hex digits, so no client text reaches a
//! path.
//!
//! A plain blob is the plaintext itself. An encrypted blob is the chunk format described in
//! `chunk.rs`, under a data key that is stored only wrapped by a [`KeyEncryptionKey`] in the
//! [`EncryptionDescriptor`]. The [`ContentHash`] is always BLAKE3 of the plaintext.
//!
//! NOTE: keys are random, not content hashes, so the same document uploaded twice is
//! stored twice. This keeps purges simple: deleting one upload never affects another.

mod chunk;
mod error;
mod key;
mod read;
mod sink;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_memory;
#[cfg(test)]
mod tests_tamper;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use consign_schemas::events::EncryptionDescriptor;
use consign_schemas::{ContentHash, DocumentId};
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;

pub use chunk::{ALGORITHM, CHUNK_SIZE};
pub use error::BlobError;
pub use key::KeyEncryptionKey;

/// A stream of plaintext pieces, each at most [`CHUNK_SIZE`] bytes long.
pub type BlobStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// Age under which a shared store's temp files are kept: another server may be
/// writing them.
pub const SHARED_LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// A store of documents in one local directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    /// Age under which temp files are kept, or `None` in a store of its own.
    keep_younger_than: Option<Duration>,
    /// Permits of the KiB that all uploads together may have in flight between
    /// receiving and writing.
    in_flight: Arc<Semaphore>,
}

/// Limits enforced while a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Maximum document size in bytes (of the plaintext).
    pub max_size: u64,
}

/// The name of a stored object: 32 lowercase hexadecimal digits.
///
/// The digit-only form is the invariant that keeps storage paths inside `objects/`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StorageKey(String);

/// Record of a stored document: what the ledger stores, and what a read needs back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub storage_key: StorageKey,
    /// Plaintext size in bytes.
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub content_hash: ContentHash,
    /// Encryption at rest of the file, or `None` for a plain file.
    pub encryption: Option<EncryptionDescriptor>,
}

impl BlobStore {
    /// Opens the store in `dir`, creating `objects/` and `tmp/` if needed.
    ///
    /// # Errors
    ///
    /// [`BlobError::Io`] if a folder cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        Self::open_with(dir.into(), None)
    }

    /// Opens a store that other servers may use at the same time, such as a folder on a
    /// shared filesystem. The folder must exist, so that a share that is not mounted
    /// is noticed. Temp files are removed only once they are older than
    /// [`SHARED_LEFTOVER_AGE`], and [`BlobStore::remove_unreferenced`] removes nothing,
    /// because documents of other ledgers, or of submissions not yet in this server's
    /// copy, may be there.
    ///
    /// # Errors
    ///
    /// [`BlobError::SharedFolderMissing`] when `dir` is not a folder, otherwise as
    /// [`BlobStore::open`].
    pub fn open_shared(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = dir.into();
        if !root.is_dir() {
            return Err(BlobError::SharedFolderMissing { path: root });
        }
        Self::open_with(root, Some(SHARED_LEFTOVER_AGE))
    }

    fn open_with(root: PathBuf, keep_younger_than: Option<Duration>) -> Result<Self, BlobError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        for folder in [&objects, &tmp] {
            std::fs::create_dir_all(folder).map_err(BlobError::io("creating", folder))?;
        }
        let store = Self {
            root,
            objects,
            tmp,
            keep_younger_than,
            in_flight: Arc::new(Semaphore::new(sink::STORE_KIB_IN_FLIGHT)),
        };
        store.remove_stale_parts()?;
        tracing::info!(dir = %store.root.display(), shared = keep_younger_than.is_some(), "blob store opened");
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Stores a document read from `source`, encrypted at rest if `encryption` is given.
    ///
    /// The document streams through fixed-size buffers into a file in `tmp/` while its
    /// BLAKE3 hash and size are computed, so memory does not grow with the document. The
    /// file is then fsynced, renamed into `objects/`, and its folder fsynced.
    ///
    /// # Errors
    ///
    /// [`BlobError::TooLarge`] as soon as more than `limits.max_size` bytes arrive,
    /// [`BlobError::Source`] if `source` yields an error, [`BlobError::Io`] if the disk
    /// fails. In every error case no file of this write remains in `tmp/` or `objects/`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future removes the temp file, so a cancelled write leaves nothing.
    pub async fn put<S, E>(
        &self,
        source: S,
        limits: &BlobLimits,
        encryption: Option<&KeyEncryptionKey>,
    ) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        write::put(self, source, limits, encryption).await
    }

    /// Opens the whole plaintext of `blob` as a stream.
    ///
    /// The file's length is checked against `blob.size` before the stream is returned.
    /// Encrypted chunks are authenticated before their plaintext is yielded. At the end
    /// the BLAKE3 hash of everything read is compared with `blob.content_hash`.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`], [`BlobError::Integrity`] (wrong length, failed chunk,
    /// hash mismatch), and for encrypted blobs [`BlobError::KeyRequired`],
    /// [`BlobError::WrongKey`] and the descriptor errors. Errors found while streaming
    /// arrive as the stream's last item.
    ///
    /// NOTE: a plain blob is only known to be altered at the hash check at the end, after
    /// its bytes were yielded. Callers that send the bytes on (HTTP) must abort the
    /// response on that error so the client sees a failed download.
    pub async fn open_read(
        &self,
        blob: &StoredBlob,
        kek: Option<&KeyEncryptionKey>,
    ) -> Result<BlobStream, BlobError> {
        read::open(self, blob, kek, 0, blob.size, true).await
    }

    /// Opens `len` plaintext bytes of `blob` starting at byte `start`, for HTTP Range.
    ///
    /// An encrypted blob is read from the sealed chunk that contains `start`, which is
    /// possible because each chunk's nonce carries its index (see `chunk.rs`). Every
    /// chunk read is authenticated, but the content hash is not checked, because the
    /// range may not cover the whole document.
    ///
    /// # Errors
    ///
    /// [`BlobError::RangeNotSatisfiable`] if `start + len` exceeds the size, and those of
    /// [`BlobStore::open_read`] except the hash mismatch.
    pub async fn read_range(
        &self,
        blob: &StoredBlob,
        kek: Option<&KeyEncryptionKey>,
        start: u64,
        len: u64,
    ) -> Result<BlobStream, BlobError> {
        read::open(self, blob, kek, start, len, false).await
    }

    /// Deletes every stored document whose key `is_referenced` rejects, and returns how
    /// many it deleted. At start, before any upload, the server passes the keys of the
    /// ledger's `DocumentUploaded` events: a document stored by a submission that a
    /// crash kept from reaching the ledger is referenced by nothing and never will be.
    /// A shared store deletes nothing.
    ///
    /// # Errors
    ///
    /// [`BlobError::Io`] if a folder cannot be listed or a file removed.
    pub fn remove_unreferenced(
        &self,
        is_referenced: impl Fn(&str) -> bool,
    ) -> Result<u64, BlobError> {
        if self.keep_younger_than.is_some() {
            tracing::info!(dir = %self.root.display(), "a shared document folder is not cleaned up: its documents may belong to other servers");
            return Ok(0);
        }
        let mut removed = 0;
        let folders =
            std::fs::read_dir(&self.objects).map_err(BlobError::io("listing", &self.objects))?;
        for folder in folders {
            let folder = folder
                .map_err(BlobError::io("listing", &self.objects))?
                .path();
            if !folder.is_dir() {
                continue;
            }
            let files = std::fs::read_dir(&folder).map_err(BlobError::io("listing", &folder))?;
            for file in files {
                let path = file.map_err(BlobError::io("listing", &folder))?.path();
                let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                    continue;
                };
                if StorageKey::parse(name).is_err() || is_referenced(name) || !path.is_file() {
                    continue;
                }
                std::fs::remove_file(&path).map_err(BlobError::io("removing", &path))?;
                tracing::warn!(
                    blob.key = name,
                    "removed a document that no submission on the ledger refers to"
                );
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes a stored document, for purges, and fsyncs its folder. Returns whether a
    /// file was removed: `false` means it was already gone, so a retried purge succeeds.
    ///
    /// # Errors
    ///
    /// [`BlobError::Io`] if the file exists but cannot be removed.
    pub async fn delete(&self, key: &StorageKey) -> Result<bool, BlobError> {
        let path = self.object_path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(blob.key = %key, "blob to delete was already gone");
                return Ok(false);
            }
            Err(error) => return Err(BlobError::io("removing", path)(error)),
        }
        write::sync_dir(&self.fan_out_dir(key)).await?;
        tracing::info!(blob.key = %key, "blob deleted");
        Ok(true)
    }

    fn fan_out_dir(&self, key: &StorageKey) -> PathBuf {
        self.objects.join(&key.0[..2])
    }

    fn object_path(&self, key: &StorageKey) -> PathBuf {
        self.fan_out_dir(key).join(&key.0)
    }
}

/// Removes the temp files of writes that a crash interrupted. The caller holds the data
/// directory's lock, so no other writer can own them.
impl BlobStore {
    /// Removes the temp files of interrupted uploads.
    fn remove_stale_parts(&self) -> Result<(), BlobError> {
        let tmp = &self.tmp;
        let entries = std::fs::read_dir(tmp).map_err(BlobError::io("listing", tmp))?;
        for entry in entries {
            let path = entry.map_err(BlobError::io("listing", tmp))?.path();
            let is_part = path
                .extension()
                .is_some_and(|extension| extension == "part");
            if is_part && !path.is_file() {
                tracing::warn!(path = %path.display(), "not a file, so not removed; remove it by hand");
                continue;
            }
            if is_part && !self.is_recent(&path) {
                std::fs::remove_file(&path).map_err(BlobError::io("removing", &path))?;
                tracing::warn!(path = %path.display(), "removed the temp file of an interrupted upload");
            }
        }
        Ok(())
    }

    /// Returns whether a shared store must keep `path` because it was modified
    /// recently. A file whose age cannot be read counts as recent.
    fn is_recent(&self, path: &Path) -> bool {
        let Some(keep) = self.keep_younger_than else {
            return false;
        };
        let modified = std::fs::metadata(path).and_then(|metadata| metadata.modified());
        match modified {
            Ok(modified) => SystemTime::now()
                .duration_since(modified)
                .map_or(true, |age| age < keep),
            Err(_) => true,
        }
    }
}

impl StorageKey {
    /// Draws the key of a new object from a random document id.
    fn generate() -> Self {
        Self(hex::encode(DocumentId::random().as_bytes()))
    }

    /// Parses a key read back from the ledger.
    ///
    /// # Errors
    ///
    /// [`BlobError::InvalidStorageKey`] unless `text` is 32 lowercase hexadecimal digits.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let valid = text.len() == 32
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !valid {
            return Err(BlobError::InvalidStorageKey {
                key: text.to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
