//! Electronic postmarks: Ed25519 signatures over a submission's place in the ledger,
//! made with keys kept in a folder of their own.
//!
//! The signed message is [`postmark_message`]: the ASCII context
//! `consign 2026-12-04 postmark v1`, then the chain (4 bytes, big-endian), the position
//! (8 bytes, big-endian), the submission event's hash (32 bytes), the sequencer time
//! (8 bytes, big-endian, signed microseconds since 1970 UTC), the number of documents
//! (4 bytes, big-endian) and each document's BLAKE3 hash (32 bytes each). Anyone with
//! the public key checks it offline with a stock Ed25519 library.
//!
//! Keys live in `DIR/<key id>.key` (the 32-byte secret seed, mode 0600) and
//! `DIR/<key id>.pub` (the 32-byte public key); `DIR/current` names the key that signs.
//! A key id is `ed25519-` and the first 16 hex digits of the BLAKE3 hash of the public
//! key. Rotation makes a new key current and keeps the old ones, so postmarks they
//! signed still verify.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use consign_schemas::{ChainId, ContentHash, EventHash, Position, Timestamp};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Domain separation of the signed message.
const CONTEXT: &[u8] = b"consign 2026-12-04 postmark v1";

/// Errors of loading, creating and using signing keys.
#[derive(Debug, thiserror::Error)]
pub enum PostmarkError {
    #[error("cannot {operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {path} is damaged: {reason}; restore it from a backup")]
    Damaged { path: PathBuf, reason: String },
    #[error("no signing key in {dir}; create one with `consign keys generate`")]
    NoKey { dir: PathBuf },
    #[error("unknown key id {key_id}")]
    UnknownKey { key_id: String },
    #[error("the postmark signature does not verify with key {key_id}")]
    BadSignature { key_id: String },
}

/// The fields a postmark signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostmarkFields {
    pub chain: ChainId,
    pub position: Position,
    pub submission_hash: EventHash,
    pub time: Timestamp,
    pub document_hashes: Vec<ContentHash>,
}

/// Encodes the message that a postmark signs; see the module documentation.
pub fn postmark_message(fields: &PostmarkFields) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + 56 + 32 * fields.document_hashes.len());
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(&fields.chain.get().to_be_bytes());
    message.extend_from_slice(&fields.position.get().to_be_bytes());
    message.extend_from_slice(fields.submission_hash.as_bytes());
    message.extend_from_slice(&fields.time.as_micros().to_be_bytes());
    let count = u32::try_from(fields.document_hashes.len()).unwrap_or(u32::MAX);
    message.extend_from_slice(&count.to_be_bytes());
    for hash in &fields.document_hashes {
        message.extend_from_slice(hash.as_bytes());
    }
    message
}

/// Returns the key id of a public key.
pub fn key_id(public: &VerifyingKey) -> String {
    let digest = blake3::hash(public.as_bytes());
    format!("ed25519-{}", &digest.to_hex()[..16])
}

/// The signing keys of one server: every key ever made, and the current one.
#[derive(Debug)]
pub struct PostmarkKeys {
    dir: PathBuf,
    current: String,
    signing: BTreeMap<String, SigningKey>,
}

impl PostmarkKeys {
    /// Loads every key in `dir`.
    ///
    /// # Errors
    ///
    /// [`PostmarkError::NoKey`] when the folder has no current key, and I/O or damage
    /// errors naming the file.
    pub fn load(dir: &Path) -> Result<Self, PostmarkError> {
        let current_path = dir.join("current");
        let current = match std::fs::read_to_string(&current_path) {
            Ok(text) => text.trim().to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(PostmarkError::NoKey {
                    dir: dir.to_path_buf(),
                });
            }
            Err(source) => return Err(io("read", &current_path, source)),
        };
        let mut signing = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| io("list", dir, source))?;
        for entry in entries {
            let path = entry.map_err(|source| io("list", dir, source))?.path();
            if path.extension().is_none_or(|extension| extension != "key") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| io("read", &path, source))?;
            let seed: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| PostmarkError::Damaged {
                        path: path.clone(),
                        reason: format!("{} bytes instead of 32", bytes.len()),
                    })?;
            let key = SigningKey::from_bytes(&seed);
            signing.insert(key_id(&key.verifying_key()), key);
        }
        if !signing.contains_key(&current) {
            return Err(PostmarkError::Damaged {
                path: current_path,
                reason: format!("it names {current}, which has no key file"),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            current,
            signing,
        })
    }

    /// Loads the public key of every key in `dir` from its `.pub` file, by key id, so
    /// that a verifier needs neither the secret keys nor the right to read them.
    ///
    /// # Errors
    ///
    /// [`PostmarkError::NoKey`] when the folder has no public key, and I/O or damage
    /// errors naming the file, such as a key whose id is not its file name.
    pub fn load_public(dir: &Path) -> Result<BTreeMap<String, [u8; 32]>, PostmarkError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(PostmarkError::NoKey {
                    dir: dir.to_path_buf(),
                });
            }
            Err(source) => return Err(io("list", dir, source)),
        };
        let mut public = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|source| io("list", dir, source))?.path();
            if path.extension().is_none_or(|extension| extension != "pub") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| io("read", &path, source))?;
            let damaged = |reason: String| PostmarkError::Damaged {
                path: path.clone(),
                reason,
            };
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| damaged(format!("{} bytes instead of 32", bytes.len())))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|error| damaged(format!("not an Ed25519 public key: {error}")))?;
            let id = key_id(&key);
            if path.file_stem().and_then(|stem| stem.to_str()) != Some(id.as_str()) {
                return Err(damaged(format!(
                    "it holds the key {id}, not the one its name gives"
                )));
            }
            public.insert(id, bytes);
        }
        if public.is_empty() {
            return Err(PostmarkError::NoKey {
                dir: dir.to_path_buf(),
            });
        }
        Ok(public)
    }

    /// Creates a new key in `dir` and makes it current; earlier keys stay. Returns the
    /// new key id.
    ///
    /// # Errors
    ///
    /// The folder or a file cannot be written.
    pub fn generate(dir: &Path) -> Result<String, PostmarkError> {
        std::fs::create_dir_all(dir).map_err(|source| io("create", dir, source))?;
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let id = key_id(&key.verifying_key());
        write_new(&dir.join(format!("{id}.key")), key.as_bytes(), 0o600)?;
        write_new(
            &dir.join(format!("{id}.pub")),
            key.verifying_key().as_bytes(),
            0o644,
        )?;

        // The current key changes by an atomic rename, so a reader sees the old or the
        // new name, never a partial one.
        let staged = dir.join("current.new");
        let _ = std::fs::remove_file(&staged);
        write_new(&staged, id.as_bytes(), 0o644)?;
        let current = dir.join("current");
        std::fs::rename(&staged, &current).map_err(|source| io("replace", &current, source))?;
        Ok(id)
    }

    /// Returns the id of the key that signs new postmarks.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Returns the folder of the keys.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signs `fields` with the current key; returns the key id and the signature.
    pub fn sign(&self, fields: &PostmarkFields) -> (String, Vec<u8>) {
        self.sign_message(&postmark_message(fields))
    }

    /// Signs any message with the current key; returns the key id and the signature.
    /// Each kind of message starts with a context string of its own, so a signature
    /// made for one kind is never valid as another.
    pub fn sign_message(&self, message: &[u8]) -> (String, Vec<u8>) {
        let key = &self.signing[&self.current];
        (self.current.clone(), key.sign(message).to_bytes().to_vec())
    }

    /// Returns every public key by id, current and retired.
    pub fn public_keys(&self) -> BTreeMap<String, [u8; 32]> {
        self.signing
            .iter()
            .map(|(id, key)| (id.clone(), key.verifying_key().to_bytes()))
            .collect()
    }

    /// Returns every public key by id, as [`Self::public_keys`] does, together with the
    /// `.pub` files in the key folder now. Servers that share a folder thus publish and
    /// check a key that another server generated after they loaded theirs.
    pub fn published_keys(&self) -> BTreeMap<String, [u8; 32]> {
        let mut keys = self.public_keys();
        match Self::load_public(&self.dir) {
            Ok(on_disk) => keys.extend(on_disk),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read the public keys of the key folder");
            }
        }
        keys
    }

    /// Checks a signature with the key it names.
    ///
    /// # Errors
    ///
    /// [`PostmarkError::UnknownKey`] or [`PostmarkError::BadSignature`].
    pub fn verify(
        &self,
        fields: &PostmarkFields,
        key_id: &str,
        signature: &[u8],
    ) -> Result<(), PostmarkError> {
        let key = self
            .signing
            .get(key_id)
            .ok_or_else(|| PostmarkError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        verify_with(&key.verifying_key(), fields, key_id, signature)
    }
}

/// Checks a postmark signature with a public key.
///
/// # Errors
///
/// [`PostmarkError::BadSignature`] when it does not verify.
pub fn verify_with(
    public: &VerifyingKey,
    fields: &PostmarkFields,
    key_id: &str,
    signature: &[u8],
) -> Result<(), PostmarkError> {
    let bad = || PostmarkError::BadSignature {
        key_id: key_id.to_owned(),
    };
    let signature = Signature::from_slice(signature).map_err(|_| bad())?;
    public
        .verify(&postmark_message(fields), &signature)
        .map_err(|_| bad())
}

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> PostmarkError {
    PostmarkError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a new file with `mode` and fsyncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PostmarkError> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io("create", path, source))?;
    file.write_all(bytes)
        .map_err(|source| io("write", path, source))?;
    file.sync_all().map_err(|source| io("fsync", path, source))
}

#[cfg(test)]
mod tests {
    use consign_schemas::Hash32;

    use super::*;

    fn fields() -> PostmarkFields {
        PostmarkFields {
            chain: ChainId::new(3),
            position: Position::new(42),
            submission_hash: Hash32::from_bytes([7; 32]),
            time: Timestamp::from_micros(1_790_000_000_000_000),
            document_hashes: vec![Hash32::from_bytes([1; 32]), Hash32::from_bytes([2; 32])],
        }
    }

    #[test]
    fn signature_verifies_and_fails_on_any_change() {
        let dir = tempfile::tempdir().unwrap();
        PostmarkKeys::generate(dir.path()).unwrap();
        let keys = PostmarkKeys::load(dir.path()).unwrap();
        let (id, signature) = keys.sign(&fields());

        assert!(keys.verify(&fields(), &id, &signature).is_ok());
        let mut moved = fields();
        moved.position = Position::new(43);
        assert!(keys.verify(&moved, &id, &signature).is_err());
        let mut other_document = fields();
        other_document.document_hashes[1] = Hash32::from_bytes([9; 32]);
        assert!(keys.verify(&other_document, &id, &signature).is_err());
    }

    #[test]
    fn rotated_key_still_verifies_old_postmarks() {
        let dir = tempfile::tempdir().unwrap();
        let first = PostmarkKeys::generate(dir.path()).unwrap();
        let (old_id, old_signature) = PostmarkKeys::load(dir.path()).unwrap().sign(&fields());
        let second = PostmarkKeys::generate(dir.path()).unwrap();
        let keys = PostmarkKeys::load(dir.path()).unwrap();

        assert_ne!(first, second);
        assert_eq!(keys.current_id(), second);
        assert_eq!(old_id, first);
        assert!(keys.verify(&fields(), &old_id, &old_signature).is_ok());
        assert_eq!(keys.public_keys().len(), 2);
    }

    #[test]
    fn secret_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let id = PostmarkKeys::generate(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(format!("{id}.key")))
            .unwrap()
            .permissions()
            .mode();

        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_folder_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let error = PostmarkKeys::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();

        assert!(error.contains("consign keys generate"), "{error}");
    }
}
