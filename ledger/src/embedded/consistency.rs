//! Checks that the indexes beside the chains agree with the events they index.
//!
//! A chain can verify while an index entry beside it is wrong. A head entry with
//! another last hash breaks the chain at the next append. A wrong Merkle node gives
//! proofs that fail, and a lost idempotency entry lets a retried request append twice.
//! Once the chains verified, this pass reads every event again and compares:
//!
//! - each chain's head entry with its last event (hash and time);
//! - every stored Merkle node with the root of the events it covers, and finds nodes
//!   outside the indexed size;
//! - every idempotency entry with the events that carry its key, both ways;
//! - each chain's last-checkpoint entry with its last `CheckpointSigned` event;
//! - and finds events and entries of chains the ledger does not have.

use consign_schemas::events::Event;
use consign_schemas::{
    ChainId, Envelope, Hash32, IdempotencyKey, Position, Timestamp, genesis_hash,
};
use rayon::prelude::*;
use rocksdb::{Direction, IteratorMode};

use super::EmbeddedLedger;
use super::checkpoints::last_checkpoint;
use super::open::{events_family, idempotency_family, meta_family};
use super::read::read_raw;
use super::tree::{STORED_LEVEL, indexed_size_key, merkle_family, node_key};
use crate::error::LedgerError;
use crate::keys;
use crate::merkle::MerkleAccumulator;

/// An idempotency entry: the chain, first position and event count of its append.
type Entry = (ChainId, Position, u32);

/// Events read per chunk.
const CHUNK: usize = 16_384;

/// Facts that one chain's pass collects from its events.
struct ChainScan {
    /// Position of the last `CheckpointSigned` event.
    last_checkpoint: Option<Position>,
    /// Events that carry an idempotency key.
    keyed: u64,
    /// The latest sequencer time, which the head entry records.
    latest: Option<Timestamp>,
    /// The idempotency entry looked up last, reused for the events of one append.
    entry: Option<(IdempotencyKey, Option<Entry>)>,
    /// Events read.
    read: u64,
}

impl EmbeddedLedger {
    /// Compares the head, Merkle, idempotency and checkpoint entries with the events,
    /// as the module documentation lists, and returns the number of events read.
    /// Run it after the chains verified, because it trusts the events' recorded
    /// hashes. `progress` receives the number of events read so far.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] naming the first entry that disagrees, and storage
    /// failures.
    pub fn check_index_contents(&self, progress: &dyn Fn(u64)) -> Result<u64, LedgerError> {
        let db = &self.shared.db;
        let upstream = db
            .get_cf(meta_family(db), super::upstream::UPSTREAM_KEY)
            .map_err(|error| LedgerError::from_rocksdb("read", error))?
            .is_some();

        let mut read = 0u64;
        let mut keyed = 0u64;
        for number in 0..self.shared.chain_count {
            let scan = self.check_chain_entries(ChainId::new(number), upstream, read, progress)?;
            read += scan.read;
            keyed += scan.keyed;
        }
        if !upstream {
            self.check_idempotency_entries(keyed)?;
        }
        self.check_foreign_chains()?;
        progress(read);
        Ok(read)
    }

    fn corrupt(&self, reason: String) -> LedgerError {
        LedgerError::Corrupt {
            dir: self.shared.dir.clone(),
            reason,
        }
    }

    /// Checks one chain's head, Merkle, checkpoint and idempotency entries against
    /// its events. `before` counts the events read before this chain, for `progress`.
    ///
    /// In a copy of a Kafka ledger (`upstream`), the same idempotency key can be used
    /// on two chains whose sequencers run in different processes, and the copy keeps
    /// one entry: there an event's key only has to have an entry.
    fn check_chain_entries(
        &self,
        chain: ChainId,
        upstream: bool,
        before: u64,
        progress: &dyn Fn(u64),
    ) -> Result<ChainScan, LedgerError> {
        let db = &self.shared.db;
        let head = self.head(chain)?;
        let indexed = self.indexed_size(chain, head.next)?;
        let mut tree = MerkleAccumulator::new();
        let mut scan = ChainScan {
            last_checkpoint: None,
            keyed: 0,
            latest: None,
            entry: None,
            read: 0,
        };
        let mut last_hash = genesis_hash(chain);

        let mut position = Position::ZERO;
        while position < head.next {
            let limit = (head.next.get() - position.get()).min(CHUNK as u64) as usize;
            let raws = read_raw(&self.shared, chain, position, limit)?;
            if raws.is_empty() {
                return Err(
                    self.corrupt(format!("chain {chain} has no event at position {position}"))
                );
            }
            // Each event decodes on its own, so a chunk decodes in parallel.
            let decoded: Vec<_> = raws
                .par_iter()
                .map(|raw| {
                    let envelope = Envelope::decode(&raw.bytes).ok()?;
                    let checkpoint = matches!(envelope.event, Event::CheckpointSigned(_));
                    Some((
                        raw.recorded_hash?,
                        envelope.idempotency_key,
                        checkpoint,
                        envelope.time,
                    ))
                })
                .collect();
            for (raw, decoded) in raws.iter().zip(decoded) {
                let Some((hash, key, checkpoint, time)) = decoded else {
                    return Err(self.corrupt(format!(
                        "event {} of chain {chain} does not decode; run `consign ledger verify`",
                        raw.position
                    )));
                };
                if tree.len() < indexed {
                    self.push_checked(&mut tree, chain, &hash)?;
                }
                if let Some(key) = key {
                    scan.keyed += 1;
                    self.check_event_key(chain, raw.position, key, upstream, &mut scan)?;
                }
                if checkpoint {
                    scan.last_checkpoint = Some(raw.position);
                }
                position = raw.position.next();
                last_hash = hash;
                scan.latest = scan.latest.max(Some(time));
                scan.read += 1;
                if scan.read.is_multiple_of(65_536) {
                    progress(before + scan.read);
                }
            }
        }

        if head.last_hash != last_hash {
            return Err(self.corrupt(format!(
                "the head entry of chain {chain} records the last hash {}, but the event at \
                 its end hashes to {last_hash}",
                head.last_hash
            )));
        }
        if let Some(latest) = scan.latest
            && head.last_time != latest
        {
            return Err(self.corrupt(format!(
                "the head entry of chain {chain} records the latest time as {} µs after 1970, \
                 but the latest event of the chain has {} µs",
                head.last_time.as_micros(),
                latest.as_micros()
            )));
        }

        let recorded = last_checkpoint(db, &self.shared.dir, chain)?;
        if recorded != scan.last_checkpoint {
            let describe = |found: Option<Position>| {
                found.map_or_else(|| "none".to_owned(), |position| position.to_string())
            };
            return Err(self.corrupt(format!(
                "the last-checkpoint entry of chain {chain} names position {}, but the last \
                 CheckpointSigned event is at {}",
                describe(recorded),
                describe(scan.last_checkpoint)
            )));
        }
        self.check_stored_nodes(chain, indexed)?;
        Ok(scan)
    }

    /// Returns how many events of `chain` the Merkle index covers, checked against the
    /// head, or 0 for a ledger without the index.
    fn indexed_size(&self, chain: ChainId, head: Position) -> Result<u64, LedgerError> {
        let db = &self.shared.db;
        if merkle_family(db).is_none() {
            return Ok(0);
        }
        let value = db
            .get_cf(meta_family(db), indexed_size_key(chain))
            .map_err(|error| LedgerError::from_rocksdb("read the Merkle index", error))?;
        let indexed = match value {
            None => 0,
            Some(value) => {
                let bytes: [u8; 8] = value.as_slice().try_into().map_err(|_| {
                    self.corrupt(format!(
                        "the indexed size of chain {chain} has the wrong length"
                    ))
                })?;
                u64::from_be_bytes(bytes)
            }
        };
        if indexed > head.get() {
            return Err(self.corrupt(format!(
                "the Merkle index of chain {chain} covers {indexed} events, but the chain has {head}"
            )));
        }
        Ok(indexed)
    }

    /// Adds `hash` to `tree` and compares every stored node it completes.
    fn push_checked(
        &self,
        tree: &mut MerkleAccumulator,
        chain: ChainId,
        hash: &Hash32,
    ) -> Result<(), LedgerError> {
        let mut completed = Vec::new();
        tree.push_reporting(hash, |level, index, root| {
            if level >= STORED_LEVEL {
                completed.push((level, index, *root));
            }
        });
        let Some(family) = merkle_family(&self.shared.db) else {
            return Ok(());
        };
        for (level, index, root) in completed {
            let stored = self
                .shared
                .db
                .get_cf(family, node_key(chain, level, index))
                .map_err(|error| LedgerError::from_rocksdb("read the Merkle index", error))?;
            let describe = format!("Merkle node level {level} index {index} of chain {chain}");
            match stored {
                None => return Err(self.corrupt(format!("{describe} is missing from the index"))),
                Some(value) if value.as_slice() != root.as_bytes() => {
                    return Err(self.corrupt(format!(
                        "{describe} is stored as {}, but the events under it give {root}",
                        hex(&value)
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Finds stored Merkle nodes of `chain` that cover events past the indexed size,
    /// or below the stored level, which the writer never stores.
    fn check_stored_nodes(&self, chain: ChainId, indexed: u64) -> Result<(), LedgerError> {
        let db = &self.shared.db;
        let Some(family) = merkle_family(db) else {
            return Ok(());
        };
        let prefix = chain.get().to_be_bytes();
        let iterator = db.iterator_cf(family, IteratorMode::From(&prefix[..], Direction::Forward));
        for item in iterator {
            let (key, _) =
                item.map_err(|error| LedgerError::from_rocksdb("read the Merkle index", error))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let node = <[u8; 13]>::try_from(&key[..]).ok().and_then(|key| {
                let level = u32::from(key[4]);
                let index = u64::from_be_bytes(key[5..].try_into().ok()?);
                let end = index.checked_add(1)?.checked_shl(level)?;
                ((STORED_LEVEL..64).contains(&level) && end >> level == index + 1)
                    .then_some((level, index, end))
            });
            match node {
                Some((_, _, end)) if end <= indexed => {}
                Some((level, index, end)) => {
                    return Err(self.corrupt(format!(
                        "the Merkle index of chain {chain} has a node at level {level} index \
                         {index}, covering events up to {end}, past the {indexed} it indexes"
                    )));
                }
                None => {
                    return Err(self.corrupt(format!(
                        "the Merkle index of chain {chain} has an entry with the malformed key {}",
                        hex(&key)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks that an event carrying an idempotency key lies in the range that key's
    /// entry names.
    fn check_event_key(
        &self,
        chain: ChainId,
        position: Position,
        key: IdempotencyKey,
        upstream: bool,
        scan: &mut ChainScan,
    ) -> Result<(), LedgerError> {
        let cached = scan.entry.as_ref().filter(|(cached, _)| *cached == key);
        let entry = match cached {
            Some((_, entry)) => *entry,
            None => {
                let entry = self.idempotency_entry(&key)?;
                scan.entry = Some((key.clone(), entry));
                entry
            }
        };
        match entry {
            Some(_) if upstream => Ok(()),
            Some((entry_chain, first, count))
                if entry_chain == chain
                    && first <= position
                    && position.get() - first.get() < u64::from(count) =>
            {
                Ok(())
            }
            Some((entry_chain, first, count)) => Err(self.corrupt(format!(
                "event {position} of chain {chain} carries the idempotency key {:?}, whose \
                 entry names {count} events from position {first} of chain {entry_chain}",
                key.as_str()
            ))),
            None => Err(self.corrupt(format!(
                "event {position} of chain {chain} carries the idempotency key {:?}, which has \
                 no entry",
                key.as_str()
            ))),
        }
    }

    fn idempotency_entry(&self, key: &IdempotencyKey) -> Result<Option<Entry>, LedgerError> {
        let db = &self.shared.db;
        let value = db
            .get_cf(idempotency_family(db), key.as_str().as_bytes())
            .map_err(|error| LedgerError::from_rocksdb("read the idempotency index", error))?;
        value
            .map(|value| {
                keys::decode_idempotency(&value).ok_or_else(|| {
                    self.corrupt(format!(
                        "the idempotency entry for {:?} is malformed",
                        key.as_str()
                    ))
                })
            })
            .transpose()
    }

    /// Checks that the idempotency entries name exactly the events that carry keys.
    ///
    /// The chain pass found each such event inside its key's entry. If the entries'
    /// event counts add up to the number of those events, no entry can name an event
    /// without its key, so one pass over the entries decides. Only when the sums
    /// differ are the entries' events read, to name the wrong entry.
    fn check_idempotency_entries(&self, keyed: u64) -> Result<(), LedgerError> {
        let mut named = 0u128;
        for entry in self.idempotency_entries() {
            let (_, _, _, count) = entry?;
            named += u128::from(count);
        }
        if named == u128::from(keyed) {
            return Ok(());
        }

        for entry in self.idempotency_entries() {
            let (name, chain, first, count) = entry?;
            let head = self.head(chain)?.next.get();
            let end = first.get() + u64::from(count);
            let carries = |position: u64| -> Result<bool, LedgerError> {
                let envelope = self.envelope_at(chain, Position::new(position))?;
                Ok(envelope
                    .idempotency_key
                    .is_some_and(|found| found.as_str() == name))
            };
            let all = (first.get()..end)
                .map(carries)
                .collect::<Result<Vec<bool>, _>>()?
                .into_iter()
                .all(|carried| carried);
            let before = first.get() > 0 && carries(first.get() - 1)?;
            let after = end < head && carries(end)?;
            if !all || before || after {
                return Err(self.corrupt(format!(
                    "the idempotency entry for {name:?} names {count} events from position \
                     {first} of chain {chain}, which are not the events carrying that key"
                )));
            }
        }
        Err(self.corrupt(format!(
            "the idempotency entries name {named} events, but {keyed} events carry keys"
        )))
    }

    /// Reads every idempotency entry as (key, chain, first position, count), checking
    /// that it decodes and names committed events of a chain the ledger has.
    fn idempotency_entries(
        &self,
    ) -> impl Iterator<Item = Result<(String, ChainId, Position, u32), LedgerError>> + '_ {
        let db = &self.shared.db;
        db.iterator_cf(idempotency_family(db), IteratorMode::Start)
            .map(move |item| {
                let (key, value) = item.map_err(|error| {
                    LedgerError::from_rocksdb("read the idempotency index", error)
                })?;
                let name = String::from_utf8_lossy(&key).into_owned();
                let Some((chain, first, count)) = keys::decode_idempotency(&value) else {
                    return Err(
                        self.corrupt(format!("the idempotency entry for {name:?} is malformed"))
                    );
                };
                if chain.get() >= self.shared.chain_count || count == 0 {
                    return Err(self.corrupt(format!(
                        "the idempotency entry for {name:?} names {count} events of chain \
                         {chain}, which the ledger does not have"
                    )));
                }
                let head = self.head(chain)?.next.get();
                let end = first.get().saturating_add(u64::from(count));
                if end > head {
                    return Err(self.corrupt(format!(
                        "the idempotency entry for {name:?} names events up to {end} of chain \
                         {chain}, which has {head}"
                    )));
                }
                Ok((name, chain, first, count))
            })
    }

    /// Finds events, heads and index entries stored for chains past the chain count.
    fn check_foreign_chains(&self) -> Result<(), LedgerError> {
        let db = &self.shared.db;
        let count = self.shared.chain_count;
        let start = keys::event_key(ChainId::new(count), Position::ZERO);
        if let Some(item) = db
            .iterator_cf(
                events_family(db),
                IteratorMode::From(&start, Direction::Forward),
            )
            .next()
        {
            let (key, _) = item.map_err(|error| LedgerError::from_rocksdb("read", error))?;
            let found = keys::parse_event_key(&key).map_or_else(
                || hex(&key),
                |(chain, position)| format!("{chain}:{position}"),
            );
            return Err(self.corrupt(format!(
                "an event is stored under {found}, but the ledger has {count} chains"
            )));
        }
        if let Some(family) = merkle_family(db)
            && let Some(item) = db
                .iterator_cf(
                    family,
                    IteratorMode::From(&count.to_be_bytes()[..], Direction::Forward),
                )
                .next()
        {
            let (key, _) =
                item.map_err(|error| LedgerError::from_rocksdb("read the Merkle index", error))?;
            return Err(self.corrupt(format!(
                "the Merkle index has the entry {} of a chain past the {count} the ledger has",
                hex(&key)
            )));
        }
        for item in db.iterator_cf(meta_family(db), IteratorMode::Start) {
            let (key, _) = item.map_err(|error| LedgerError::from_rocksdb("read", error))?;
            let chain = [&b"head/"[..], b"merkle-size/", b"checkpoint/"]
                .iter()
                .find_map(|prefix| key.strip_prefix(*prefix))
                .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
                .map(u32::from_be_bytes);
            if let Some(chain) = chain
                && chain >= count
            {
                return Err(self.corrupt(format!(
                    "the meta entry {:?} belongs to chain {chain}, but the ledger has {count} \
                     chains",
                    String::from_utf8_lossy(&key)
                )));
            }
        }
        Ok(())
    }

    fn envelope_at(&self, chain: ChainId, position: Position) -> Result<Envelope, LedgerError> {
        let raw = read_raw(&self.shared, chain, position, 1)?
            .into_iter()
            .next()
            .filter(|raw| raw.position == position)
            .ok_or_else(|| {
                self.corrupt(format!("chain {chain} has no event at position {position}"))
            })?;
        Envelope::decode(&raw.bytes).map_err(|error| {
            self.corrupt(format!(
                "event {position} of chain {chain} does not decode: {error}"
            ))
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
