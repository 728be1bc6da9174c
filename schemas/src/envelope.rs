//! The event envelope, its canonical postcard encoding and the hashing rules.
//!
//! Stored bytes are `postcard(Envelope)`, with the schema version as the first field so
//! that a reader can reject a future format before decoding anything else. An event's
//! hash is BLAKE3 in key-derivation mode, under a context string of its own, over
//! exactly those stored bytes. Nothing is re-encoded before hashing.

use serde::{Deserialize, Serialize};

use crate::SchemaError;
use crate::events::Event;
use crate::ids::{
    AccountId, ChainId, CommandId, DeliveryId, EventHash, EventId, Hash32, IdempotencyKey,
    Position, RecipientId, Timestamp,
};

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// BLAKE3 key-derivation context for event hashes. Changing it breaks every chain.
const EVENT_HASH_CONTEXT: &str = "consign 2026-12-04 stored event v1";

/// BLAKE3 key-derivation context for each chain's genesis value.
const GENESIS_CONTEXT: &str = "consign 2026-12-04 chain genesis v1";

/// Originator of an event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Account(AccountId),
    Recipient {
        delivery: DeliveryId,
        recipient: RecipientId,
    },
    System(SystemComponent),
}

/// The parts of consign that append events on their own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemComponent {
    Scheduler,
    Notifier,
    Sequencer,
    Administration,
    WorkloadGenerator,
}

/// An event as stored: its place in a chain, its link to the predecessor, and its payload.
///
/// The ledger fills in `event_id`, `chain`, `position`, `previous` and `time`; callers
/// supply the rest through an append request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub schema_version: u16,
    pub event_id: EventId,
    pub chain: ChainId,
    pub position: Position,
    /// Hash of the event at `position - 1`, or the chain's genesis value at position 0.
    pub previous: EventHash,
    /// UTC time from the sequencer's clock.
    pub time: Timestamp,
    pub command: CommandId,
    pub idempotency_key: Option<IdempotencyKey>,
    pub actor: Actor,
    pub event: Event,
}

impl Envelope {
    /// Encodes the envelope into its canonical stored bytes.
    ///
    /// # Errors
    ///
    /// Fails only if postcard rejects a value, which the derived types never cause.
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        postcard::to_stdvec(self).map_err(|source| SchemaError::Encode {
            reason: source.to_string(),
        })
    }

    /// Appends the canonical stored bytes to `buffer` and returns it, so a caller can
    /// frame them without a second copy. The appended bytes equal [`Self::encode`]'s.
    ///
    /// # Errors
    ///
    /// As [`Self::encode`].
    pub fn encode_into(&self, buffer: Vec<u8>) -> Result<Vec<u8>, SchemaError> {
        postcard::to_extend(self, buffer).map_err(|source| SchemaError::Encode {
            reason: source.to_string(),
        })
    }

    /// Decodes stored bytes, checking the schema version first.
    ///
    /// # Errors
    ///
    /// [`SchemaError::UnsupportedVersion`] for bytes written by a newer schema,
    /// [`SchemaError::Decode`] for bytes that are not a valid envelope, and
    /// [`SchemaError::TrailingBytes`] when bytes remain after the envelope.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, SchemaError> {
        let version = peek_schema_version(bytes)?;
        if version != SCHEMA_VERSION {
            return Err(SchemaError::UnsupportedVersion {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }

        let (envelope, rest) =
            postcard::take_from_bytes::<Envelope>(bytes).map_err(|source| SchemaError::Decode {
                reason: source.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(SchemaError::TrailingBytes { count: rest.len() });
        }
        Ok(envelope)
    }
}

/// Reads the schema version at the start of stored bytes without decoding the rest.
///
/// # Errors
///
/// [`SchemaError::Decode`] when the bytes do not start with a version number.
pub fn peek_schema_version(bytes: &[u8]) -> Result<u16, SchemaError> {
    postcard::take_from_bytes::<u16>(bytes)
        .map(|(version, _)| version)
        .map_err(|source| SchemaError::Decode {
            reason: format!("no schema version: {source}"),
        })
}

/// Hashes an event's exact stored bytes.
pub fn hash_stored_event(stored_bytes: &[u8]) -> EventHash {
    Hash32::from_bytes(blake3::derive_key(EVENT_HASH_CONTEXT, stored_bytes))
}

/// Returns the fixed `previous` value of a chain's first event.
pub fn genesis_hash(chain: ChainId) -> EventHash {
    Hash32::from_bytes(blake3::derive_key(
        GENESIS_CONTEXT,
        &chain.get().to_be_bytes(),
    ))
}
