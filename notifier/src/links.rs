//! Private link tokens: derived from a secret link key, stored only as hashes.
//!
//! A recipient's token is `base64url(BLAKE3-keyed(link key, context ‖ delivery id ‖
//! recipient id))`, 256 bits that nobody without the link key can predict. The ledger
//! stores only [`token_hash`] of it. Deriving the token instead of drawing it at random
//! lets the notifier rebuild the same link for a retry after a restart, without the
//! token itself ever being written anywhere: the link key stays in a file of its own
//! with owner-only permissions, outside the ledger.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consign_schemas::{DeliveryId, EventHash, Hash32, RecipientId};
use zeroize::Zeroizing;

use crate::compose::AccessToken;

/// Domain separation of the token derivation; changing it changes every link.
const TOKEN_CONTEXT: &[u8] = b"consign 2026-12-04 recipient link v1";

/// BLAKE3 key-derivation context of a token's stored hash.
const TOKEN_HASH_CONTEXT: &str = "consign 2026-12-04 recipient link hash v1";

/// Errors of loading or creating the link key.
#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    #[error("cannot read the link key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the link key {path} has {length} bytes, expected 32; restore it from a backup, \
         because links already sent depend on it"
    )]
    Length { path: String, length: usize },
    #[error("cannot create the link key {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

/// The secret from which every recipient link is derived.
#[derive(Clone)]
pub struct LinkKey(Zeroizing<[u8; 32]>);

impl LinkKey {
    /// Builds a key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Loads the key at `path`, or creates a new random one there (mode 0600) when the
    /// file does not exist.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or is not 32 bytes long, or a new file cannot
    /// be written.
    pub fn load_or_create(path: &Path) -> Result<Self, LinkKeyError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let array: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| LinkKeyError::Length {
                            path: shown.clone(),
                            length: bytes.len(),
                        })?;
                Ok(Self::from_bytes(array))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::from_bytes(rand::random());
                write_owner_only(path, key.0.as_slice()).map_err(|source| {
                    LinkKeyError::Create {
                        path: shown,
                        source,
                    }
                })?;
                tracing::info!(path = %path.display(), "created a new link key");
                Ok(key)
            }
            Err(source) => Err(LinkKeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Derives the link token of one recipient of one delivery.
    pub fn token(&self, delivery: DeliveryId, recipient: RecipientId) -> AccessToken {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(TOKEN_CONTEXT);
        hasher.update(delivery.as_bytes());
        hasher.update(recipient.as_bytes());
        let text = URL_SAFE_NO_PAD.encode(hasher.finalize().as_bytes());
        AccessToken::new(text).expect("43 base64url characters form a valid token")
    }
}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// Returns the hash under which a token is stored and looked up.
pub fn token_hash(token: &str) -> EventHash {
    Hash32::from_bytes(blake3::derive_key(TOKEN_HASH_CONTEXT, token.as_bytes()))
}

/// Writes `bytes` to a new file readable by its owner only, and fsyncs it.
fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn tokens_differ_per_recipient_and_are_stable() {
        let key = LinkKey::from_bytes([7; 32]);
        let delivery = DeliveryId::random();
        let first = RecipientId::random();
        let second = RecipientId::random();

        assert_eq!(key.token(delivery, first), key.token(delivery, first));
        assert_ne!(key.token(delivery, first), key.token(delivery, second));
        assert_ne!(
            key.token(delivery, first),
            LinkKey::from_bytes([8; 32]).token(delivery, first)
        );
    }

    #[test]
    fn tokens_share_no_prefix() {
        let key = LinkKey::from_bytes(rand::random());
        let delivery = DeliveryId::random();
        let tokens: Vec<String> = (0..1_000)
            .map(|_| {
                key.token(delivery, RecipientId::random())
                    .as_str()
                    .to_owned()
            })
            .collect();

        let prefixes: HashSet<&str> = tokens.iter().map(|token| &token[..6]).collect();
        assert_eq!(
            prefixes.len(),
            tokens.len(),
            "two tokens share a 6-character prefix"
        );
        assert!(tokens.iter().all(|token| token.len() == 43));

        // Every bit is set in about half of the tokens: 1,000 fair coins land within
        // 400..=600 with a failure chance below 10^-9 per bit.
        let decoded: Vec<Vec<u8>> = tokens
            .iter()
            .map(|token| URL_SAFE_NO_PAD.decode(token).unwrap())
            .collect();
        for bit in 0..256 {
            let ones = decoded
                .iter()
                .filter(|bytes| bytes[bit / 8] & (0x80 >> (bit % 8)) != 0)
                .count();
            assert!(
                (400..=600).contains(&ones),
                "bit {bit} is set in {ones} of 1000 tokens"
            );
        }
    }

    #[test]
    fn key_file_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("link.key");
        let created = LinkKey::load_or_create(&path).unwrap();
        let loaded = LinkKey::load_or_create(&path).unwrap();
        let delivery = DeliveryId::random();
        let recipient = RecipientId::random();

        assert_eq!(
            created.token(delivery, recipient),
            loaded.token(delivery, recipient)
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn short_key_file_is_refused_with_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        std::fs::write(&path, [1u8; 5]).unwrap();

        let error = LinkKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("has 5 bytes, expected 32"), "{error}");
    }
}
