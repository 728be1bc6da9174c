//! Key and value layouts of the embedded store.
//!
//! Event keys are the chain number and position, both big-endian, so RocksDB's byte
//! order is chain order then position order. An event value is the 32-byte event hash
//! followed by the stored event bytes that the hash covers.

use consign_schemas::{
    ChainId, Envelope, EventHash, Hash32, Position, SchemaError, Timestamp, hash_stored_event,
};

pub(crate) const EVENT_KEY_LEN: usize = 12;

pub(crate) fn event_key(chain: ChainId, position: Position) -> [u8; EVENT_KEY_LEN] {
    let mut key = [0u8; EVENT_KEY_LEN];
    key[..4].copy_from_slice(&chain.get().to_be_bytes());
    key[4..].copy_from_slice(&position.get().to_be_bytes());
    key
}

/// Splits an event key, or returns `None` for a key of the wrong length.
pub(crate) fn parse_event_key(key: &[u8]) -> Option<(ChainId, Position)> {
    let key: &[u8; EVENT_KEY_LEN] = key.try_into().ok()?;
    let chain = u32::from_be_bytes(key[..4].try_into().ok()?);
    let position = u64::from_be_bytes(key[4..].try_into().ok()?);
    Some((ChainId::new(chain), Position::new(position)))
}

/// Encodes an envelope straight into an event value and returns its hash with it.
pub(crate) fn encode_event_value(envelope: &Envelope) -> Result<(EventHash, Vec<u8>), SchemaError> {
    let mut value = Vec::with_capacity(32 + 256);
    value.extend_from_slice(&[0u8; 32]);
    let mut value = envelope.encode_into(value)?;
    let hash = hash_stored_event(&value[32..]);
    value[..32].copy_from_slice(hash.as_bytes());
    Ok((hash, value))
}

/// Splits an event value into its recorded hash and stored bytes.
pub(crate) fn split_event_value(value: &[u8]) -> Option<(EventHash, &[u8])> {
    if value.len() < 32 {
        return None;
    }
    let (hash, bytes) = value.split_at(32);
    Some((Hash32::from_bytes(hash.try_into().ok()?), bytes))
}

/// The last appended event of a chain, kept in the meta column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// Position the next event will take.
    pub next: Position,
    /// Hash of the last event, or the genesis value of an empty chain.
    pub last_hash: EventHash,
    /// Sequencer time of the last event; times never go backwards within a chain.
    pub last_time: Timestamp,
}

pub(crate) const META_CHAIN_COUNT: &[u8] = b"chain-count";
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const FORMAT_V1: &[u8] = b"consign embedded ledger v1";

pub(crate) fn head_key(chain: ChainId) -> Vec<u8> {
    let mut key = b"head/".to_vec();
    key.extend_from_slice(&chain.get().to_be_bytes());
    key
}

pub(crate) fn encode_head(head: &Head) -> [u8; 48] {
    let mut value = [0u8; 48];
    value[..8].copy_from_slice(&head.next.get().to_be_bytes());
    value[8..40].copy_from_slice(head.last_hash.as_bytes());
    value[40..].copy_from_slice(&head.last_time.as_micros().to_be_bytes());
    value
}

pub(crate) fn decode_head(value: &[u8]) -> Option<Head> {
    let value: &[u8; 48] = value.try_into().ok()?;
    Some(Head {
        next: Position::new(u64::from_be_bytes(value[..8].try_into().ok()?)),
        last_hash: Hash32::from_bytes(value[8..40].try_into().ok()?),
        last_time: Timestamp::from_micros(i64::from_be_bytes(value[40..].try_into().ok()?)),
    })
}

/// Idempotency entry: the chain, first position and event count of the original append.
pub(crate) fn encode_idempotency(chain: ChainId, first: Position, count: u32) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..4].copy_from_slice(&chain.get().to_be_bytes());
    value[4..12].copy_from_slice(&first.get().to_be_bytes());
    value[12..].copy_from_slice(&count.to_be_bytes());
    value
}

pub(crate) fn decode_idempotency(value: &[u8]) -> Option<(ChainId, Position, u32)> {
    let value: &[u8; 16] = value.try_into().ok()?;
    Some((
        ChainId::new(u32::from_be_bytes(value[..4].try_into().ok()?)),
        Position::new(u64::from_be_bytes(value[4..12].try_into().ok()?)),
        u32::from_be_bytes(value[12..].try_into().ok()?),
    ))
}
