//! Append requests and stored events: the values that cross the ledger interface.

use consign_schemas::{
    Actor, ChainId, CommandId, Envelope, Event, EventHash, IdempotencyKey, Position,
};

/// One event to append, before the ledger assigns its place in a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub actor: Actor,
    pub event: Event,
}

/// A batch of events appended atomically to one chain: all become durable, or none.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub chain: ChainId,
    pub command: CommandId,
    /// When set, a request whose key is already in the ledger writes nothing and
    /// returns the positions of the original events.
    pub idempotency_key: Option<IdempotencyKey>,
    pub events: Vec<NewEvent>,
}

impl AppendRequest {
    /// Builds a request for `events` on `chain` under a fresh command id.
    pub fn new(chain: ChainId, events: Vec<NewEvent>) -> Self {
        Self {
            chain,
            command: CommandId::random(),
            idempotency_key: None,
            events,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

/// The place of one appended event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendedEvent {
    pub position: Position,
    pub hash: EventHash,
}

/// The result of a durable append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub chain: ChainId,
    /// One entry per requested event, in request order.
    pub events: Vec<AppendedEvent>,
    /// True when the idempotency key was already present and nothing was written.
    pub replayed: bool,
}

/// An event read back from the ledger, with the exact bytes its hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub envelope: Envelope,
    pub hash: EventHash,
    pub bytes: Vec<u8>,
}

impl StoredEvent {
    pub fn chain(&self) -> ChainId {
        self.envelope.chain
    }

    pub fn position(&self) -> Position {
        self.envelope.position
    }
}

/// An event as found in storage, before any check: its key position, the hash
/// recorded beside it, and its stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub position: Position,
    /// `None` when the stored value is too short to contain a hash.
    pub recorded_hash: Option<EventHash>,
    pub bytes: Vec<u8>,
}
