//! Streaming writes: temp file, hashing, size limit, optional sealing, fsync and rename.
//!
//! The only state is the temp file of a write in progress, owned by a [`TempFile`] guard
//! that removes it on every early return and when the future is dropped.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::fs::{File, OpenOptions};

use super::chunk::{CHUNK_SIZE, ChunkCipher, MAX_SEALED_SIZE, TAG_SIZE};
use super::sink::FileSink;
use super::{BlobError, BlobLimits, BlobStore, KeyEncryptionKey, StorageKey, StoredBlob};
use consign_schemas::ContentHash;

/// See [`BlobStore::put`].
pub(super) async fn put<S, E>(
    store: &BlobStore,
    source: S,
    limits: &BlobLimits,
    encryption: Option<&KeyEncryptionKey>,
) -> Result<StoredBlob, BlobError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let storage_key = StorageKey::generate();
    let temp_path = store.tmp.join(format!("{storage_key}.part"));
    // Readable by the server's user only: a document not encrypted at rest is the
    // plaintext itself.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp_path)
        .await
        .map_err(BlobError::io("creating temp file", &temp_path))?;
    let temp = TempFile {
        path: Some(temp_path.clone()),
    };

    // An encrypted document is sealed with its own data key. A plain one is copied as is.
    let (mut sealer, descriptor) = match encryption {
        Some(kek) => {
            let (cipher, descriptor) = kek.new_document_cipher();
            (Some(Sealer::new(cipher)), Some(descriptor))
        }
        None => (None, None),
    };
    // The sealing format cannot number more chunks than this, whatever the caller allows.
    let max_size = match sealer {
        Some(_) => limits.max_size.min(MAX_SEALED_SIZE),
        None => limits.max_size,
    };

    // A plain document is hashed on the writing thread, which receives the plaintext.
    // A sealed one is hashed here, before sealing.
    let mut writer = FileSink::new(
        file.into_std().await,
        sealer.is_none(),
        Arc::clone(&store.in_flight),
    );
    let mut hasher = blake3::Hasher::new();
    let mut size: u64 = 0;
    let mut source = pin!(source);
    while let Some(item) = source.next().await {
        let bytes = item.map_err(|error| BlobError::Source {
            source: error.into(),
        })?;
        size = size.saturating_add(bytes.len() as u64);
        if size > max_size {
            tracing::warn!(
                limit = max_size,
                received = size,
                "document rejected: too large"
            );
            return Err(BlobError::TooLarge {
                limit: max_size,
                received: size,
            });
        }

        let written = match &mut sealer {
            Some(sealer) => {
                hasher.update(&bytes);
                sealer.push(&bytes, &mut writer).await
            }
            None => writer.send(bytes).await,
        };
        written.map_err(BlobError::io("writing", &temp_path))?;
    }
    if let Some(sealer) = sealer {
        sealer
            .finish(&mut writer)
            .await
            .map_err(BlobError::io("writing", &temp_path))?;
    }

    let written_hash = writer
        .finish()
        .await
        .map_err(BlobError::io("writing and fsyncing", &temp_path))?;
    let hash = written_hash.unwrap_or_else(|| hasher.finalize());

    install(store, temp, &storage_key).await?;
    let content_hash = ContentHash::from_bytes(*hash.as_bytes());
    tracing::info!(
        blob.key = %storage_key,
        blob.size = size,
        blob.encrypted = descriptor.is_some(),
        "blob stored"
    );
    Ok(StoredBlob {
        storage_key,
        size,
        content_hash,
        encryption: descriptor,
    })
}

/// Renames a complete temp file into `objects/` and fsyncs the folders that changed.
async fn install(store: &BlobStore, mut temp: TempFile, key: &StorageKey) -> Result<(), BlobError> {
    let fan_out_dir = store.fan_out_dir(key);
    let created = !tokio::fs::try_exists(&fan_out_dir)
        .await
        .map_err(BlobError::io("checking", &fan_out_dir))?;
    if created {
        tokio::fs::create_dir_all(&fan_out_dir)
            .await
            .map_err(BlobError::io("creating", &fan_out_dir))?;
        sync_dir(&store.objects).await?;
    }

    let final_path = store.object_path(key);
    let temp_path = temp.path.take().expect("a temp file is installed once");
    if let Err(error) = tokio::fs::rename(&temp_path, &final_path).await {
        temp.path = Some(temp_path);
        return Err(BlobError::io("renaming into place", final_path)(error));
    }

    // Until the folder is fsynced the rename may not survive a crash, so a failure here
    // is a failed write, and the file is removed so that it is not served later.
    if let Err(error) = sync_dir(&fan_out_dir).await {
        temp.path = Some(final_path);
        return Err(error);
    }
    Ok(())
}

/// Fsyncs a folder so that entries created, renamed or removed in it are durable.
pub(super) async fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    let folder = File::open(dir)
        .await
        .map_err(BlobError::io("opening folder", dir))?;
    folder
        .sync_all()
        .await
        .map_err(BlobError::io("fsyncing folder", dir))
}

/// A file that this write created and removes unless the write succeeds.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        // N.B. a blocking call in drop, because drop cannot await. Unlinking one file is
        // quick, and this runs only on failures and cancellations.
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::error!(path = %path.display(), %error, "cannot remove the file of a failed blob write");
        }
    }
}

/// Cuts the plaintext into chunks, seals each one and writes it.
struct Sealer {
    cipher: ChunkCipher,
    /// Plaintext of the current chunk, sealed in place. Its capacity is fixed at one
    /// sealed chunk so it never reallocates.
    buffer: Vec<u8>,
    index: u64,
}

impl Sealer {
    fn new(cipher: ChunkCipher) -> Self {
        Self {
            cipher,
            buffer: Vec::with_capacity(CHUNK_SIZE + TAG_SIZE),
            index: 0,
        }
    }

    /// Adds plaintext. A full chunk is sealed only when more plaintext arrives, because
    /// until then it may be the final chunk, which is sealed with a different nonce.
    async fn push(&mut self, mut data: &[u8], writer: &mut FileSink) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.buffer.len() == CHUNK_SIZE {
                self.seal_and_write(false, writer).await?;
            }
            let take = (CHUNK_SIZE - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the buffered plaintext as the final chunk (empty for an empty document).
    async fn finish(mut self, writer: &mut FileSink) -> std::io::Result<()> {
        self.seal_and_write(true, writer).await
    }

    async fn seal_and_write(&mut self, last: bool, writer: &mut FileSink) -> std::io::Result<()> {
        // `put` caps encrypted input at MAX_SEALED_SIZE, which keeps the index within the
        // 32-bit counter, so this error is not reached.
        self.cipher
            .seal(self.index, last, &mut self.buffer)
            .map_err(|_| std::io::Error::other("chunk counter overflow"))?;
        writer.write_all(&self.buffer).await?;
        self.buffer.clear();
        self.index += 1;
        Ok(())
    }
}
