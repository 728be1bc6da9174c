//! Signed checkpoints: Ed25519 signatures over a chain's Merkle tree head.
//!
//! The writer appends a `CheckpointSigned` event to a chain once `every_events` events
//! have followed the previous checkpoint, or once the oldest of them has waited
//! `every`, and when the ledger closes. The checkpoint at position `p` covers the
//! first `p` events of its chain: its tree size is `p` and its root is the Merkle root
//! of their hashes.
//!
//! The signed message is [`checkpoint_message`]. It starts with the ASCII context
//! `consign 2026-12-04 checkpoint v1`, followed by the chain (4 bytes, big-endian), the
//! tree size (8 bytes, big-endian) and the root (32 bytes). It ends with the sequencer
//! time of the checkpoint event (8 bytes, big-endian, signed microseconds since 1970
//! UTC).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use consign_schemas::{ChainId, Hash32, Timestamp};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::postmark::PostmarkKeys;

/// Domain separation of the signed message.
const CONTEXT: &[u8] = b"consign 2026-12-04 checkpoint v1";

/// The fields a checkpoint signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointFields {
    pub chain: ChainId,
    pub tree_size: u64,
    pub root: Hash32,
    pub time: Timestamp,
}

/// Encodes the message that a checkpoint signs; see the module documentation.
pub fn checkpoint_message(fields: &CheckpointFields) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + 52);
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(&fields.chain.get().to_be_bytes());
    message.extend_from_slice(&fields.tree_size.to_be_bytes());
    message.extend_from_slice(fields.root.as_bytes());
    message.extend_from_slice(&fields.time.as_micros().to_be_bytes());
    message
}

/// Public keys by key id, as published.
pub type PublicKeys = BTreeMap<String, [u8; 32]>;

/// The reason a checkpoint signature was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signed with key {key_id}, which is not among the published keys")]
    UnknownKey { key_id: String },
    #[error("the signature does not verify with key {key_id}")]
    BadSignature { key_id: String },
}

/// Checks a checkpoint signature with the published key it names.
///
/// # Errors
///
/// [`SignatureError::UnknownKey`] or [`SignatureError::BadSignature`].
pub fn verify_checkpoint(
    keys: &PublicKeys,
    fields: &CheckpointFields,
    key_id: &str,
    signature: &[u8],
) -> Result<(), SignatureError> {
    verify_signature(keys, &checkpoint_message(fields), key_id, signature)
}

/// Checks an Ed25519 signature over `message` with the published key `key_id`.
///
/// # Errors
///
/// As [`verify_checkpoint`].
pub fn verify_signature(
    keys: &PublicKeys,
    message: &[u8],
    key_id: &str,
    signature: &[u8],
) -> Result<(), SignatureError> {
    let bad = || SignatureError::BadSignature {
        key_id: key_id.to_owned(),
    };
    let public = keys.get(key_id).ok_or_else(|| SignatureError::UnknownKey {
        key_id: key_id.to_owned(),
    })?;
    let public = VerifyingKey::from_bytes(public).map_err(|_| bad())?;
    let signature = Signature::from_slice(signature).map_err(|_| bad())?;
    public.verify(message, &signature).map_err(|_| bad())
}

/// Signs checkpoint messages for the writer.
pub trait CheckpointSigner: Send + Sync {
    /// Signs `message` with the current key; returns the key id and the signature.
    fn sign(&self, message: &[u8]) -> (String, Vec<u8>);
}

impl CheckpointSigner for PostmarkKeys {
    fn sign(&self, message: &[u8]) -> (String, Vec<u8>) {
        self.sign_message(message)
    }
}

/// When the writer signs checkpoints, and with which key.
#[derive(Clone)]
pub struct CheckpointPolicy {
    /// A checkpoint follows at most this many events after the previous one.
    pub every_events: u64,
    /// An event waits at most this long for a checkpoint that covers it.
    pub every: Duration,
    pub signer: Arc<dyn CheckpointSigner>,
}

impl std::fmt::Debug for CheckpointPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointPolicy")
            .field("every_events", &self.every_events)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout() {
        let fields = CheckpointFields {
            chain: ChainId::new(0x0102_0304),
            tree_size: 0x0506_0708_090a_0b0c,
            root: Hash32::from_bytes([0xee; 32]),
            time: Timestamp::from_micros(-2),
        };

        let message = checkpoint_message(&fields);

        let mut expected = b"consign 2026-12-04 checkpoint v1".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4]);
        expected.extend_from_slice(&[5, 6, 7, 8, 9, 10, 11, 12]);
        expected.extend_from_slice(&[0xee; 32]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(message, expected);
    }
}
