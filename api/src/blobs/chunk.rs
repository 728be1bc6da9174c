//! The chunk format of documents encrypted at rest.
//!
//! The plaintext is cut into chunks of [`CHUNK_SIZE`] bytes. Only the final chunk may be
//! shorter, and an empty document is one empty chunk. Each chunk is sealed with
//! XChaCha20-Poly1305 under the document's own data key, and the stored file is the
//! sealed chunks back to back, each one [`TAG_SIZE`] bytes longer than its plaintext.
//!
//! Chunk `i` uses the 24-byte nonce `prefix (19 bytes) || i as u32 big-endian || flag`,
//! where the flag byte is 1 for the final chunk and 0 for every other. This is the nonce
//! layout of the STREAM construction in RustCrypto's `aead::stream::StreamBE32`, and a
//! test decrypts our files with its `DecryptorBE32`. We build the nonces here rather than
//! use that encryptor because a ranged read must open chunk `i` without opening chunks
//! `0..i` first. The counter authenticates each chunk's place, so reordered or swapped
//! chunks fail, and the flag authenticates the end, so a file cut at a chunk boundary
//! fails too.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Plaintext bytes per chunk (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Bytes that sealing adds to each chunk: the Poly1305 tag.
pub const TAG_SIZE: usize = 16;

/// Bytes of random nonce prefix per document: the 24-byte XChaCha20 nonce less the
/// 4-byte counter and the 1-byte final-chunk flag.
pub const NONCE_PREFIX_SIZE: usize = 19;

/// Name of this format in [`EncryptionDescriptor::algorithm`](consign_schemas::events::EncryptionDescriptor).
pub const ALGORITHM: &str = "XChaCha20-Poly1305/STREAM-BE32/64KiB";

/// Largest plaintext this format can hold: the 32-bit counter numbers 2^32 chunks.
pub const MAX_SEALED_SIZE: u64 = (u32::MAX as u64 + 1) * CHUNK_SIZE as u64;

const SEALED_CHUNK_SIZE: u64 = (CHUNK_SIZE + TAG_SIZE) as u64;

/// Returns the number of chunks of a plaintext of `size` bytes (at least 1).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// Returns the length of the stored file for a plaintext of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    size + chunk_count(size) * TAG_SIZE as u64
}

/// Returns the offset in the stored file at which sealed chunk `index` starts.
pub fn sealed_offset(index: u64) -> u64 {
    index * SEALED_CHUNK_SIZE
}

/// Returns the plaintext length of chunk `index` of a document of `size` bytes.
pub fn plain_chunk_len(size: u64, index: u64) -> usize {
    let start = index * CHUNK_SIZE as u64;
    let len = size.saturating_sub(start).min(CHUNK_SIZE as u64);
    // N.B. `len` is at most CHUNK_SIZE, so the cast cannot truncate.
    len as usize
}

/// A 256-bit data key, drawn fresh for each document and wiped from memory on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Seals and opens the chunks of one document.
pub struct ChunkCipher {
    cipher: XChaCha20Poly1305,
    nonce_prefix: [u8; NONCE_PREFIX_SIZE],
}

/// Sealing or opening a chunk failed: a tag did not verify, or the chunk index is past
/// the 32-bit counter.
#[derive(Debug)]
pub struct ChunkError;

impl ChunkCipher {
    pub fn new(data_key: &DataKey, nonce_prefix: [u8; NONCE_PREFIX_SIZE]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(data_key.as_bytes())),
            nonce_prefix,
        }
    }

    /// Encrypts chunk `index` in place and appends its tag.
    pub fn seal(&self, index: u64, last: bool, buffer: &mut Vec<u8>) -> Result<(), ChunkError> {
        let nonce = self.nonce(index, last)?;
        self.cipher
            .encrypt_in_place(&nonce, b"", buffer)
            .map_err(|_| ChunkError)
    }

    /// Verifies and decrypts sealed chunk `index` in place, removing its tag. On failure
    /// the buffer contents are unspecified and must not be used.
    pub fn open(&self, index: u64, last: bool, buffer: &mut Vec<u8>) -> Result<(), ChunkError> {
        let nonce = self.nonce(index, last)?;
        self.cipher
            .decrypt_in_place(&nonce, b"", buffer)
            .map_err(|_| ChunkError)
    }

    fn nonce(&self, index: u64, last: bool) -> Result<XNonce, ChunkError> {
        let counter = u32::try_from(index).map_err(|_| ChunkError)?;
        let mut nonce = XNonce::default();
        nonce[..NONCE_PREFIX_SIZE].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_SIZE..NONCE_PREFIX_SIZE + 4].copy_from_slice(&counter.to_be_bytes());
        nonce[NONCE_PREFIX_SIZE + 4] = u8::from(last);
        Ok(nonce)
    }
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkCipher(..)")
    }
}
