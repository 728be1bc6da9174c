//! Range reads over one chain.

use consign_schemas::{ChainId, Envelope, Position, hash_stored_event};
use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::open::events_family;
use super::{EmbeddedLedger, Shared};
use crate::error::LedgerError;
use crate::keys;
use crate::record::{AppendedEvent, RawEvent, StoredEvent};

impl EmbeddedLedger {
    /// Reads up to `limit` stored events of `chain` from position `from`, as stored,
    /// without checking them. Stops early at the end of the chain.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`] and storage failures.
    pub fn read_raw(
        &self,
        chain: ChainId,
        from: Position,
        limit: usize,
    ) -> Result<Vec<RawEvent>, LedgerError> {
        if chain.get() >= self.chain_count() {
            return Err(LedgerError::UnknownChain {
                chain,
                chains: self.chain_count(),
            });
        }
        read_raw(&self.shared, chain, from, limit)
    }

    /// Reads and decodes up to `limit` events of `chain` from position `from`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] when a stored event does not decode or its bytes do
    /// not match its recorded hash; `consign ledger verify` locates such damage.
    pub fn read(
        &self,
        chain: ChainId,
        from: Position,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        self.read_raw(chain, from, limit)?
            .into_iter()
            .map(|raw| decode_raw(&self.shared, raw))
            .collect()
    }
}

pub(crate) fn read_raw(
    shared: &Shared,
    chain: ChainId,
    from: Position,
    limit: usize,
) -> Result<Vec<RawEvent>, LedgerError> {
    let start = keys::event_key(chain, from);
    let mut read_options = ReadOptions::default();
    read_options.set_iterate_upper_bound(keys::event_key(chain, Position::new(u64::MAX)).to_vec());

    let iterator = shared.db.iterator_cf_opt(
        events_family(&shared.db),
        read_options,
        IteratorMode::From(&start, Direction::Forward),
    );

    let mut events = Vec::with_capacity(limit.min(4096));
    for entry in iterator {
        if events.len() >= limit {
            break;
        }
        let (key, value) = entry.map_err(|error| LedgerError::from_rocksdb("read", error))?;
        let Some((key_chain, position)) = keys::parse_event_key(&key) else {
            return Err(LedgerError::Corrupt {
                dir: shared.dir.clone(),
                reason: format!("event key {} has the wrong length", hex_of(&key)),
            });
        };
        if key_chain != chain {
            break;
        }
        events.push(raw_event(position, &value));
    }
    Ok(events)
}

pub(crate) fn decode_raw(shared: &Shared, raw: RawEvent) -> Result<StoredEvent, LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt {
        dir: shared.dir.clone(),
        reason: format!("event at position {}: {reason}", raw.position),
    };

    let recorded = raw
        .recorded_hash
        .ok_or_else(|| corrupt("stored value is shorter than a hash".to_owned()))?;
    let hash = hash_stored_event(&raw.bytes);
    if hash != recorded {
        return Err(corrupt(
            "stored bytes do not match the recorded hash".to_owned(),
        ));
    }
    let envelope = Envelope::decode(&raw.bytes).map_err(|error| corrupt(error.to_string()))?;
    Ok(StoredEvent {
        envelope,
        hash,
        bytes: raw.bytes,
    })
}

/// Reads the positions and hashes of `count` events from `first`, for idempotent replays.
pub(crate) fn read_placements(
    shared: &Shared,
    chain: ChainId,
    first: Position,
    count: u32,
) -> Result<Vec<AppendedEvent>, LedgerError> {
    let raws = read_raw(shared, chain, first, count as usize)?;
    if raws.len() != count as usize {
        return Err(LedgerError::Corrupt {
            dir: shared.dir.clone(),
            reason: format!(
                "idempotency entry points at {count} events from position {first} of chain \
                 {chain}, but only {} exist",
                raws.len()
            ),
        });
    }
    raws.into_iter()
        .map(|raw| {
            let stored = decode_raw(shared, raw)?;
            Ok(AppendedEvent {
                position: stored.position(),
                hash: stored.hash,
            })
        })
        .collect()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn raw_event(position: Position, value: &[u8]) -> RawEvent {
    match keys::split_event_value(value) {
        Some((hash, bytes)) => RawEvent {
            position,
            recorded_hash: Some(hash),
            bytes: bytes.to_vec(),
        },
        None => RawEvent {
            position,
            recorded_hash: None,
            bytes: value.to_vec(),
        },
    }
}
