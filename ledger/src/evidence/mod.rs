//! Evidence bundles: a delivery's events with the proofs and keys that let a third
//! party check them offline, without trusting the operator or its software.
//!
//! A bundle is one JSON document: the delivery's events as stored bytes, each with an
//! inclusion proof into the tree of a signed checkpoint, that checkpoint's own stored
//! event, the postmarks, and every published public key. Each event's stored bytes
//! carry its link to the event before it. The Merkle proofs stand in for the events of
//! other deliveries between them, which the bundle leaves out.
//!
//! The bytes of a bundle are canonical: [`Bundle::to_bytes`] writes the only accepted
//! form, pretty-printed JSON with lowercase hex and a final newline, so a change to any
//! byte of a bundle fails verification.

mod export;
mod verify;

use std::collections::BTreeMap;

use consign_schemas::{ChainId, ContentHash, DeliveryId, EventHash, Hash32, Position, Timestamp};
use serde::{Deserialize, Serialize};

pub use export::{export_bundle, read_checkpoint};
pub use verify::{Check, VerifyReport, check_saved_checkpoint, verify_bundle};

/// The value of a bundle's `format` field.
pub const BUNDLE_FORMAT: &str = "consign evidence bundle v1";

/// Errors of exporting a bundle.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Ledger(#[from] crate::LedgerError),
    #[error("delivery {delivery} has no events in the ledger")]
    NoEvents { delivery: DeliveryId },
    #[error(
        "the event at chain {chain} position {position} is missing or damaged: {reason}; run `consign ledger verify`"
    )]
    Damaged {
        chain: ChainId,
        position: Position,
        reason: String,
    },
    #[error(
        "the bundle built from this ledger does not verify ({failures}), so it is not \
         handed out; run `consign ledger verify` to find damage to the Merkle index or the \
         checkpoints, and give every server the same key folder"
    )]
    SelfCheck { failures: String },
}

/// An evidence bundle; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub delivery: DeliveryId,
    pub chain: ChainId,
    pub events: Vec<BundleEvent>,
    pub checkpoint: BundleCheckpoint,
    pub postmarks: Vec<BundlePostmark>,
    /// Every published key by key id, hex-encoded.
    pub public_keys: BTreeMap<String, PublicKeyHex>,
}

/// One event of the delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    pub position: Position,
    /// The event type's name, for readers; verification checks it against the bytes.
    #[serde(rename = "type")]
    pub kind: String,
    pub hash: EventHash,
    #[serde(with = "hex_bytes")]
    pub stored: Vec<u8>,
    /// Sibling hashes from the leaf up to the checkpoint's root.
    pub inclusion_proof: Vec<Hash32>,
}

/// The signed checkpoint that the inclusion proofs lead to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleCheckpoint {
    /// Position of the `CheckpointSigned` event.
    pub position: Position,
    pub hash: EventHash,
    #[serde(with = "hex_bytes")]
    pub stored: Vec<u8>,
    pub tree_size: u64,
    pub root: Hash32,
    /// Sequencer time of the checkpoint event, which the signature covers.
    pub time: Timestamp,
    pub key_id: String,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// The fields of a `PostmarkIssued` event, spelled out for checkers that do not
/// decode payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePostmark {
    pub submission_position: Position,
    pub submission_hash: EventHash,
    pub time: Timestamp,
    pub document_hashes: Vec<ContentHash>,
    pub key_id: String,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// A 32-byte Ed25519 public key as 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKeyHex(#[serde(with = "hex_key")] pub [u8; 32]);

impl Bundle {
    /// Writes the canonical bytes of the bundle.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a bundle always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses bundle bytes without checking them; [`verify_bundle`] checks them.
    ///
    /// # Errors
    ///
    /// The JSON error, with its line and column, when the bytes are not a bundle.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Serializes bytes as lowercase hex, and reads only lowercase hex back.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("hex digits must be lowercase"));
        }
        hex::decode(&text).map_err(serde::de::Error::custom)
    }
}

mod hex_key {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        super::hex_bytes::serialize(key, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let bytes = super::hex_bytes::deserialize(deserializer)?;
        bytes.try_into().map_err(|bytes: Vec<u8>| {
            serde::de::Error::custom(format!("a public key has 32 bytes, not {}", bytes.len()))
        })
    }
}
