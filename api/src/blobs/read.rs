//! Streaming reads of whole blobs and byte ranges, plain or encrypted.
//!
//! A read owns its open file and a buffer of one sealed chunk. It yields plaintext only
//! after the chunk holding it was authenticated, and with a whole read it compares the
//! BLAKE3 hash of everything yielded with the recorded content hash at the end.

use std::io::SeekFrom;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::chunk::{self, CHUNK_SIZE, ChunkCipher, TAG_SIZE};
use super::{BlobError, BlobStore, BlobStream, KeyEncryptionKey, StorageKey, StoredBlob};
use consign_schemas::ContentHash;

/// See [`BlobStore::open_read`] and [`BlobStore::read_range`].
pub(super) async fn open(
    store: &BlobStore,
    blob: &StoredBlob,
    kek: Option<&KeyEncryptionKey>,
    start: u64,
    len: u64,
    whole: bool,
) -> Result<BlobStream, BlobError> {
    let key = &blob.storage_key;
    let range_end = start.checked_add(len).filter(|&end| end <= blob.size);
    let Some(range_end) = range_end else {
        return Err(BlobError::RangeNotSatisfiable {
            storage_key: key.clone(),
            start,
            len,
            size: blob.size,
        });
    };

    // The key is checked before the file is touched, so a missing key is reported as such
    // even for a blob that was purged.
    let cipher = match (&blob.encryption, kek) {
        (None, _) => None,
        (Some(descriptor), Some(kek)) => Some(kek.document_cipher(key, descriptor)?),
        (Some(descriptor), None) => {
            return Err(BlobError::KeyRequired {
                storage_key: key.clone(),
                key_id: descriptor.key_id.clone(),
            });
        }
    };

    let path = store.object_path(key);
    let mut file = match File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlobError::NotFound {
                storage_key: key.clone(),
                dir: store.objects.clone(),
            });
        }
        Err(error) => return Err(BlobError::io("opening", path)(error)),
    };

    // A length check finds truncated or extended files before any byte is served, also
    // for plain blobs and for ranges that never reach the damaged part.
    let file_len = file
        .metadata()
        .await
        .map_err(BlobError::io("reading metadata of", &path))?
        .len();
    let expected_len = match cipher {
        Some(_) => chunk::sealed_len(blob.size),
        None => blob.size,
    };
    if file_len != expected_len {
        tracing::warn!(blob.key = %key, file_len, expected_len, "blob has the wrong length");
        return Err(integrity(
            key,
            format!("the file is {file_len} bytes but {expected_len} were expected"),
        ));
    }

    let first_chunk = start / CHUNK_SIZE as u64;
    let file_offset = match cipher {
        Some(_) => chunk::sealed_offset(first_chunk),
        None => start,
    };
    file.seek(SeekFrom::Start(file_offset))
        .await
        .map_err(BlobError::io("seeking in", &path))?;
    tracing::debug!(blob.key = %key, start, len, whole, "blob read opened");

    let reader = Reader {
        file,
        path,
        storage_key: key.clone(),
        size: blob.size,
        position: start,
        end: range_end,
        cipher,
        chunk_index: first_chunk,
        buffer: Vec::new(),
        hash_check: whole.then(|| (blake3::Hasher::new(), blob.content_hash)),
    };
    let stream = futures::stream::try_unfold(reader, |mut reader| async move {
        let piece = reader.next_piece().await?;
        Ok(piece.map(|piece| (piece, reader)))
    });
    Ok(stream.boxed())
}

/// The state of one read.
struct Reader {
    file: File,
    path: PathBuf,
    storage_key: StorageKey,
    size: u64,
    /// Plaintext offset of the next byte to yield.
    position: u64,
    /// Plaintext offset just past the last byte to yield.
    end: u64,
    cipher: Option<ChunkCipher>,
    /// Index of the next sealed chunk to read, for encrypted blobs.
    chunk_index: u64,
    buffer: Vec<u8>,
    /// Running hash and expected hash, for whole reads only.
    hash_check: Option<(blake3::Hasher, ContentHash)>,
}

impl Reader {
    /// Returns the next non-empty piece of plaintext, or `None` at the end of the range.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, BlobError> {
        let piece = match &self.cipher {
            None => self.next_plain().await?,
            Some(_) => self.next_opened().await?,
        };
        match piece {
            Some(piece) => {
                if let Some((hasher, _)) = &mut self.hash_check {
                    hasher.update(&piece);
                }
                Ok(Some(piece))
            }
            None => {
                self.check_hash()?;
                Ok(None)
            }
        }
    }

    async fn next_plain(&mut self) -> Result<Option<Bytes>, BlobError> {
        if self.position == self.end {
            return Ok(None);
        }
        let len = (self.end - self.position).min(CHUNK_SIZE as u64) as usize;
        let mut piece = vec![0u8; len];
        self.file
            .read_exact(&mut piece)
            .await
            .map_err(|error| self.read_error(error))?;
        self.position += len as u64;
        Ok(Some(Bytes::from(piece)))
    }

    async fn next_opened(&mut self) -> Result<Option<Bytes>, BlobError> {
        let last_index = chunk::chunk_count(self.size) - 1;
        loop {
            // A whole read opens every chunk, even the empty final chunk of an empty
            // document, so that each tag is verified.
            let whole = self.hash_check.is_some();
            let done = self.position == self.end && !(whole && self.chunk_index <= last_index);
            if done {
                return Ok(None);
            }

            let index = self.chunk_index;
            let sealed_len = chunk::plain_chunk_len(self.size, index) + TAG_SIZE;
            self.buffer.resize(sealed_len, 0);
            self.file
                .read_exact(&mut self.buffer)
                .await
                .map_err(|error| self.read_error(error))?;
            let cipher = self
                .cipher
                .as_ref()
                .expect("next_opened runs on encrypted blobs");
            if cipher
                .open(index, index == last_index, &mut self.buffer)
                .is_err()
            {
                tracing::warn!(blob.key = %self.storage_key, chunk = index, "blob chunk failed authentication");
                return Err(integrity(
                    &self.storage_key,
                    format!("chunk {index} failed authentication"),
                ));
            }
            self.chunk_index += 1;

            // Only the first chunk of a range starts before `position`.
            let chunk_start = index * CHUNK_SIZE as u64;
            let skip = (self.position - chunk_start) as usize;
            let take = ((self.end - self.position) as usize).min(self.buffer.len() - skip);
            if take == 0 {
                continue;
            }
            self.position += take as u64;
            return Ok(Some(Bytes::copy_from_slice(
                &self.buffer[skip..skip + take],
            )));
        }
    }

    fn check_hash(&mut self) -> Result<(), BlobError> {
        let Some((hasher, expected)) = self.hash_check.take() else {
            return Ok(());
        };
        let actual = ContentHash::from_bytes(*hasher.finalize().as_bytes());
        if actual != expected {
            tracing::warn!(blob.key = %self.storage_key, %expected, %actual, "blob hash mismatch");
            return Err(integrity(
                &self.storage_key,
                format!("BLAKE3 of the content is {actual}, the ledger records {expected}"),
            ));
        }
        Ok(())
    }

    fn read_error(&self, error: std::io::Error) -> BlobError {
        // The length was checked at open, so a short read means the file changed since.
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return integrity(
                &self.storage_key,
                "the file became shorter while being read".to_owned(),
            );
        }
        BlobError::Io {
            operation: "reading blob",
            path: self.path.clone(),
            source: error,
        }
    }
}

fn integrity(key: &StorageKey, detail: String) -> BlobError {
    BlobError::Integrity {
        storage_key: key.clone(),
        detail,
    }
}
