//! Key-encryption keys and the wrapping of per-document data keys.
//!
//! A [`KeyEncryptionKey`] is 32 raw bytes, loaded from a key file that belongs outside the data directory.
//! It never encrypts documents itself: each document gets a fresh [`DataKey`], and only
//! that key, wrapped by the key-encryption key, goes into the ledger's
//! [`EncryptionDescriptor`]. The wrapped form is `nonce (24 random bytes) || ciphertext
//! of the data key || tag`, sealed with XChaCha20-Poly1305 with the descriptor's
//! algorithm and nonce prefix as associated data, so neither can be swapped unnoticed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use consign_schemas::events::EncryptionDescriptor;
use zeroize::Zeroizing;

use super::chunk::{ALGORITHM, ChunkCipher, DataKey, NONCE_PREFIX_SIZE};
use super::{BlobError, StorageKey};

/// Domain separation for the key id, which is derived from the key itself.
const KEY_ID_CONTEXT: &str = "consign 2026-12-04 key-encryption key id v1";

/// Prefix of the associated data when wrapping a data key.
const WRAP_CONTEXT: &[u8] = b"consign 2026-12-04 wrapped data key v1";

const WRAP_NONCE_SIZE: usize = 24;
const WRAPPED_KEY_SIZE: usize = WRAP_NONCE_SIZE + 32 + 16;

/// A 256-bit key that wraps the data keys of documents encrypted at rest.
///
/// Its id is `kek-` and 16 hexadecimal digits derived from the key with BLAKE3. So a
/// descriptor names the key it needs without a registry of ids, and a wrong key file is
/// reported as a wrong key rather than as damaged data.
pub struct KeyEncryptionKey {
    key: Zeroizing<[u8; 32]>,
    key_id: String,
}

impl KeyEncryptionKey {
    /// Draws a fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self::from_bytes(key)
    }

    pub fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        let derived = blake3::derive_key(KEY_ID_CONTEXT, &key[..]);
        let key_id = format!("kek-{}", hex::encode(&derived[..8]));
        Self { key, key_id }
    }

    /// Reads a key file of exactly 32 raw bytes.
    ///
    /// # Errors
    ///
    /// [`BlobError::Io`] if the file cannot be read, [`BlobError::InvalidKeyFile`] if it
    /// is not 32 bytes long.
    pub fn load(path: &Path) -> Result<Self, BlobError> {
        let bytes =
            Zeroizing::new(fs::read(path).map_err(BlobError::io("reading key file", path))?);
        let key: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| BlobError::InvalidKeyFile {
                path: path.to_owned(),
                length: bytes.len() as u64,
            })?;
        Ok(Self::from_bytes(Zeroizing::new(key)))
    }

    /// Writes the key to a new file readable by its owner only (mode 0600) and fsyncs it.
    ///
    /// # Errors
    ///
    /// [`BlobError::Io`] if the file exists already or cannot be written.
    pub fn save_new(&self, path: &Path) -> Result<(), BlobError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(BlobError::io("creating key file", path))?;
        file.write_all(&self.key[..])
            .and_then(|()| file.sync_all())
            .map_err(BlobError::io("writing key file", path))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Draws a data key and nonce prefix for a new document, and returns its chunk cipher
    /// with the descriptor that the ledger stores.
    pub(super) fn new_document_cipher(&self) -> (ChunkCipher, EncryptionDescriptor) {
        let data_key = DataKey::generate();
        let mut nonce_prefix = [0u8; NONCE_PREFIX_SIZE];
        rand::fill(&mut nonce_prefix[..]);

        let mut wrap_nonce = [0u8; WRAP_NONCE_SIZE];
        rand::fill(&mut wrap_nonce[..]);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&wrap_nonce),
                Payload {
                    msg: data_key.as_bytes(),
                    aad: &wrap_associated_data(ALGORITHM, &nonce_prefix),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts 32 bytes without error");

        let mut wrapped_key = Vec::with_capacity(WRAPPED_KEY_SIZE);
        wrapped_key.extend_from_slice(&wrap_nonce);
        wrapped_key.extend_from_slice(&sealed);
        let descriptor = EncryptionDescriptor {
            algorithm: ALGORITHM.to_owned(),
            key_id: self.key_id.clone(),
            wrapped_key,
            nonce_prefix: nonce_prefix.to_vec(),
        };
        (ChunkCipher::new(&data_key, nonce_prefix), descriptor)
    }

    /// Unwraps the data key in `descriptor` and returns the document's chunk cipher.
    pub(super) fn document_cipher(
        &self,
        storage_key: &StorageKey,
        descriptor: &EncryptionDescriptor,
    ) -> Result<ChunkCipher, BlobError> {
        let (data_key, nonce_prefix) = self.unwrap_data_key(storage_key, descriptor)?;
        Ok(ChunkCipher::new(&data_key, nonce_prefix))
    }

    /// Returns the raw data key of `descriptor`, for tests that decrypt independently.
    #[cfg(test)]
    pub(super) fn unwrap_data_key_for_test(
        &self,
        storage_key: &StorageKey,
        descriptor: &EncryptionDescriptor,
    ) -> Zeroizing<[u8; 32]> {
        let (data_key, _) = self.unwrap_data_key(storage_key, descriptor).unwrap();
        Zeroizing::new(*data_key.as_bytes())
    }

    fn unwrap_data_key(
        &self,
        storage_key: &StorageKey,
        descriptor: &EncryptionDescriptor,
    ) -> Result<(DataKey, [u8; NONCE_PREFIX_SIZE]), BlobError> {
        if descriptor.algorithm != ALGORITHM {
            return Err(BlobError::UnsupportedAlgorithm {
                storage_key: storage_key.clone(),
                algorithm: descriptor.algorithm.clone(),
                supported: ALGORITHM,
            });
        }
        if descriptor.key_id != self.key_id {
            return Err(BlobError::WrongKey {
                storage_key: storage_key.clone(),
                expected: descriptor.key_id.clone(),
                actual: self.key_id.clone(),
            });
        }
        let invalid = |detail: String| BlobError::InvalidDescriptor {
            storage_key: storage_key.clone(),
            detail,
        };
        let nonce_prefix: [u8; NONCE_PREFIX_SIZE] =
            descriptor.nonce_prefix[..].try_into().map_err(|_| {
                invalid(format!(
                    "nonce prefix is {} bytes, expected {NONCE_PREFIX_SIZE}",
                    descriptor.nonce_prefix.len()
                ))
            })?;
        if descriptor.wrapped_key.len() != WRAPPED_KEY_SIZE {
            return Err(invalid(format!(
                "wrapped key is {} bytes, expected {WRAPPED_KEY_SIZE}",
                descriptor.wrapped_key.len()
            )));
        }

        let (wrap_nonce, sealed) = descriptor.wrapped_key.split_at(WRAP_NONCE_SIZE);
        let unwrapped = self
            .cipher()
            .decrypt(
                XNonce::from_slice(wrap_nonce),
                Payload {
                    msg: sealed,
                    aad: &wrap_associated_data(&descriptor.algorithm, &nonce_prefix),
                },
            )
            .map_err(|_| BlobError::Integrity {
                storage_key: storage_key.clone(),
                detail: "the wrapped data key failed authentication".to_owned(),
            })?;
        let unwrapped = Zeroizing::new(unwrapped);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&unwrapped);
        Ok((DataKey::from_bytes(key), nonce_prefix))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.key[..]))
    }
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn wrap_associated_data(algorithm: &str, nonce_prefix: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_CONTEXT.len() + algorithm.len() + nonce_prefix.len() + 1);
    aad.extend_from_slice(WRAP_CONTEXT);
    aad.extend_from_slice(algorithm.as_bytes());
    // A separator keeps "algorithm || prefix" unambiguous, since the algorithm has no 0 byte.
    aad.push(0);
    aad.extend_from_slice(nonce_prefix);
    aad
}
