//! Event schemas of consign: the envelope, every event payload, the identifier and
//! hash newtypes, the canonical postcard encoding and the BLAKE3 hashing rules.
//!
//! This crate does no I/O. Every type here is a compatibility boundary: events written
//! today must decode and hash identically in later versions, which the golden vectors
//! under `tests/golden/` enforce.

mod envelope;
mod error;
pub mod events;
mod ids;

pub use envelope::{
    Actor, Envelope, SCHEMA_VERSION, SystemComponent, genesis_hash, hash_stored_event,
    peek_schema_version,
};
pub use error::SchemaError;
pub use events::{Event, EventKind};
pub use ids::{
    AccountId, ChainId, CommandId, ContentHash, DeliveryId, DocumentId, EventHash, EventId, Hash32,
    IdempotencyKey, NotificationId, Position, RecipientId, Timestamp,
};
