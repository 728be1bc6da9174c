//! Checks that the indexes beside the chains agree with the events they index.
//!
//! A chain can verify while an index entry beside it is wrong. A head entry with
//! another last hash breaks the chain at the next append. A wrong Merkle node gives
//! proofs that fail, and a lost idempotency entry lets a retried request append twice.
//! An [`IndexComparison`] verifies each chain and, in the same pass over its events,
//! compares:
//!
//! - each chain's head entry with its last event (hash and time);
//! - every stored Merkle node with the root of the events it covers, and finds nodes
//!   outside the indexed size;
//! - every idempotency entry with the events that carry its key, both ways;
//! - each chain's last-checkpoint entry with its last `CheckpointSigned` event;
//! - and finds events and entries of chains the ledger does not have.

use consign_schemas::{ChainId, Envelope, Hash32, IdempotencyKey, Position, Timestamp};
use rocksdb::{Direction, IteratorMode};

use super::EmbeddedLedger;
use super::checkpoints::last_checkpoint;
use super::open::{events_family, idempotency_family, meta_family};
use super::read::read_raw;
use super::tree::{STORED_LEVEL, indexed_size_key, merkle_family, node_key};
use crate::error::LedgerError;
use crate::keys::{self, Head};
use crate::merkle::MerkleAccumulator;
use crate::verify::{AcceptedEvent, ChainChecks, ChainReport};

/// An idempotency entry: the chain, first position and event count of its append.
type Entry = (ChainId, Position, u32);

/// A comparison of the ledger's indexes with its events, fed by verifying every chain
/// from its start with [`IndexComparison::verify_chain`], then ended with
/// [`IndexComparison::finish`].
#[derive(Debug)]
pub struct IndexComparison<'a> {
    ledger: &'a EmbeddedLedger,
    /// True in a copy of a Kafka ledger. There the same idempotency key can be used on
    /// two chains whose sequencers run in different processes, and the copy keeps one
    /// entry, so an event's key only has to have an entry.
    upstream: bool,
    /// Events that carry an idempotency key, over the chains compared so far.
    keyed: u64,
}

/// Facts that one chain's pass collects from its events.
struct ChainScan {
    chain: ChainId,
    head: Head,
    /// Events the Merkle index covers.
    indexed: u64,
    tree: MerkleAccumulator,
    last_hash: Hash32,
    /// Position of the last `CheckpointSigned` event.
    last_checkpoint: Option<Position>,
    /// Events that carry an idempotency key.
    keyed: u64,
    /// The latest sequencer time, which the head entry records.
    latest: Option<Timestamp>,
    /// The idempotency entry looked up last, reused for the events of one append.
    entry: Option<(IdempotencyKey, Option<Entry>)>,
}

impl EmbeddedLedger {
    /// Starts comparing the indexes with the events.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn compare_indexes(&self) -> Result<IndexComparison<'_>, LedgerError> {
        let db = &self.shared.db;
        let upstream = db
            .get_cf(meta_family(db), super::upstream::UPSTREAM_KEY)
            .map_err(|error| LedgerError::from_rocksdb("read", error))?
            .is_some();
        Ok(IndexComparison {
            ledger: self,
            upstream,
            keyed: 0,
        })
    }

    /// Verifies every chain and compares the indexes with the events, as the module
    /// documentation lists. Returns the number of events read. `progress` receives
    /// the number of events read so far.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] naming the first break of a chain or the first entry
    /// that disagrees, and storage failures.
    pub fn check_index_contents(&self, progress: &dyn Fn(u64)) -> Result<u64, LedgerError> {
        let mut comparison = self.compare_indexes()?;
        let mut read = 0u64;
        for chain in self.chains() {
            let report = comparison.verify_chain(chain, ChainChecks::default(), &|done| {
                progress(read + done);
            })?;
            if let Some(found) = report.first_break {
                return Err(self.corrupt(format!(
                    "{found}; run `consign ledger verify` for the whole report"
                )));
            }
            read += report.verified;
        }
        comparison.finish()?;
        progress(read);
        Ok(read)
    }

    fn corrupt(&self, reason: String) -> LedgerError {
        LedgerError::Corrupt {
            dir: self.shared.dir.clone(),
            reason,
        }
    }
}

impl IndexComparison<'_> {
    /// Verifies `chain` from its start with `checks`, as
    /// [`EmbeddedLedger::verify_chain_with`] does, and compares the chain's head,
    /// Merkle, checkpoint and idempotency entries with its events in the same pass.
    /// A chain that breaks is reported in the returned report, and the entries after
    /// the break are not compared.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] naming the first entry that disagrees with the events,
    /// and storage failures.
    pub fn verify_chain(
        &mut self,
        chain: ChainId,
        checks: ChainChecks,
        progress: &dyn Fn(u64),
    ) -> Result<ChainReport, LedgerError> {
        let (ledger, upstream) = (self.ledger, self.upstream);
        let head = ledger.head(chain)?;
        let mut scan = ChainScan {
            chain,
            indexed: ledger.indexed_size(chain, head.next)?,
            head,
            tree: MerkleAccumulator::new(),
            last_hash: consign_schemas::genesis_hash(chain),
            last_checkpoint: None,
            keyed: 0,
            latest: None,
            entry: None,
        };
        let report = ledger.verify_chain_observed(
            chain,
            Position::ZERO,
            None,
            checks,
            progress,
            |event| ledger.observe(&mut scan, upstream, event),
        )?;
        if report.first_break.is_none() {
            ledger.end_chain(&scan)?;
            self.keyed += scan.keyed;
        }
        Ok(report)
    }

    /// Ends the comparison with the checks that span the chains: the idempotency
    /// entries against the events carrying keys, and entries of chains the ledger does
    /// not have. Call it after every chain verified.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_chain`].
    pub fn finish(self) -> Result<(), LedgerError> {
        if !self.upstream {
            self.ledger.check_idempotency_entries(self.keyed)?;
        }
        self.ledger.check_foreign_chains()
    }
}

impl EmbeddedLedger {
    /// Compares the entries that name one verified event with it.
    fn observe(
        &self,
        scan: &mut ChainScan,
        upstream: bool,
        event: &AcceptedEvent<'_>,
    ) -> Result<(), LedgerError> {
        if scan.tree.len() < scan.indexed {
            self.push_checked(&mut scan.tree, scan.chain, &event.hash)?;
        }
        if let Some(key) = event.idempotency_key {
            scan.keyed += 1;
            self.check_event_key(scan.chain, event.position, key, upstream, scan)?;
        }
        if event.checkpoint {
            scan.last_checkpoint = Some(event.position);
        }
        scan.last_hash = event.hash;
        scan.latest = scan.latest.max(Some(event.time));
        Ok(())
    }

    /// Compares the chain's head, last-checkpoint and Merkle entries with what its
    /// verified events showed.
    fn end_chain(&self, scan: &ChainScan) -> Result<(), LedgerError> {
        let chain = scan.chain;
        if scan.head.last_hash != scan.last_hash {
            return Err(self.corrupt(format!(
                "the head entry of chain {chain} records the last hash {}, but the event at \
                 its end hashes to {}",
                scan.head.last_hash, scan.last_hash
            )));
        }
        if let Some(latest) = scan.latest
            && scan.head.last_time != latest
        {
            return Err(self.corrupt(format!(
                "the head entry of chain {chain} records the latest time as {} µs after 1970, \
                 but the latest event of the chain has {} µs",
                scan.head.last_time.as_micros(),
                latest.as_micros()
            )));
        }

        let recorded = last_checkpoint(&self.shared.db, &self.shared.dir, chain)?;
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
        self.check_stored_nodes(chain, scan.indexed)
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
        key: &IdempotencyKey,
        upstream: bool,
        scan: &mut ChainScan,
    ) -> Result<(), LedgerError> {
        let cached = scan.entry.as_ref().filter(|(cached, _)| cached == key);
        let entry = match cached {
            Some((_, entry)) => *entry,
            None => {
                let entry = self.idempotency_entry(key)?;
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
                 entry names {} from position {first} of chain {entry_chain}",
                key.as_str(),
                events(u64::from(count))
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
                    "the idempotency entry for {name:?} names {} from position \
                     {first} of chain {chain}, which are not the events carrying that key",
                    events(u64::from(count))
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

/// Writes a count of events, such as "1 event" or "3 events".
fn events(count: u64) -> String {
    if count == 1 {
        "1 event".to_owned()
    } else {
        format!("{count} events")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
