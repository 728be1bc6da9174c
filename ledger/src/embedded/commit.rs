//! One group commit: sequencing, idempotency, the Merkle index, checkpoints, the
//! write and the replies.
//!
//! Without a publisher a group is one RocksDB batch. With one, each chain's part of
//! the group is a batch of its own, published upstream before it is written, so that
//! an upstream failure on one chain leaves the others' events in place.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use consign_schemas::{
    ChainId, Envelope, EventId, IdempotencyKey, Position, SCHEMA_VERSION, Timestamp,
};
use rocksdb::{WriteBatch, WriteOptions};

use super::checkpoints::{Checkpoints, Signed};
use super::import::commit_import;
use super::open::{events_family, idempotency_family, meta_family};
use super::tree::{self, indexed_size_key, merkle_family};
use super::upstream::{Published, Publisher};
use super::writer::Group;
use super::{ForcedCheckpoint, Pending, Shared};
use crate::clock::Clock;
use crate::error::LedgerError;
use crate::keys::{self, Head};
use crate::merkle::MerkleAccumulator;
use crate::record::{Appended, AppendedEvent};

/// Resolution of one request in a group.
enum Outcome {
    /// New events, written by this group.
    Written(Appended),
    /// The idempotency key was already durable: read the original events back.
    Replay {
        chain: ChainId,
        first: Position,
        count: u32,
    },
    /// The key was used by an earlier request of the same group.
    SameAs(usize),
    Rejected(LedgerError),
}

/// The state and settings one group commit works with.
pub(super) struct Committer<'a> {
    pub(super) shared: &'a Shared,
    pub(super) write_options: &'a WriteOptions,
    pub(super) clock: &'a Clock,
    pub(super) checkpoints: &'a mut Checkpoints,
    pub(super) publisher: Option<&'a mut (dyn Publisher + 'static)>,
}

impl Committer<'_> {
    /// Writes the group's imports, then its appends and checkpoints, and replies to
    /// every request. Returns the storage failure, if any, after replying to every
    /// request of the failed batch with it.
    pub(super) fn run(&mut self, mut group: Group) -> Result<(), String> {
        for import in std::mem::take(&mut group.imports) {
            commit_import(self.shared, import, self.write_options, self.checkpoints)?;
        }
        if self.publisher.is_none() {
            return self.commit(group, None);
        }

        let mut parts: BTreeMap<ChainId, Group> = BTreeMap::new();
        for pending in group.appends {
            parts
                .entry(pending.request.chain)
                .or_default()
                .appends
                .push(pending);
        }
        for forced in group.forced {
            parts.entry(forced.chain).or_default().forced.push(forced);
        }
        let waiting: BTreeSet<ChainId> =
            self.checkpoints.candidates(&[], &[]).into_iter().collect();
        for chain in waiting {
            parts.entry(chain).or_default();
        }
        for (chain, mut part) in parts {
            part.closing = group.closing;
            self.commit(part, Some(chain))?;
        }
        Ok(())
    }

    /// Commits `group`, whose requests are all for `only` when it is set.
    fn commit(&mut self, group: Group, only: Option<ChainId>) -> Result<(), String> {
        let shared = self.shared;
        let Group {
            appends: mut group,
            mut forced,
            closing,
            ..
        } = group;
        if !self.checkpoints.enabled() {
            for request in forced.drain(..) {
                let _ = request.reply.send(Err(LedgerError::NoCheckpointSigner));
            }
        }
        if let Some(chain) = only
            && let Some(publisher) = self.publisher.as_deref_mut()
            && let Err(error) = publisher.ready(chain)
        {
            self.checkpoints.release(chain);
            let reason = reason_of(error);
            for pending in group {
                let _ = pending.reply.send(Err(unavailable(chain, &reason)));
            }
            for request in forced {
                let _ = request.reply.send(Err(unavailable(chain, &reason)));
            }
            return Ok(());
        }
        let mut published = self.publisher.is_some().then(Vec::new);

        let db = &shared.db;
        let events_cf = events_family(db);
        let idempotency_cf = idempotency_family(db);
        let meta_cf = meta_family(db);
        let merkle_cf = merkle_family(db);

        let mut heads: HashMap<ChainId, Head> = HashMap::new();
        let mut trees: HashMap<ChainId, MerkleAccumulator> = HashMap::new();
        let mut appended_chains: Vec<ChainId> = Vec::new();
        let mut keys_in_group: HashMap<IdempotencyKey, usize> = HashMap::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut batch = WriteBatch::default();
        let now = self.clock.now();

        for (index, pending) in group.iter_mut().enumerate() {
            let request = &pending.request;

            if let Some(key) = &request.idempotency_key {
                if let Some(&original) = keys_in_group.get(key) {
                    outcomes.push(Outcome::SameAs(original));
                    continue;
                }
                match db.get_cf(idempotency_cf, key.as_str().as_bytes()) {
                    Ok(Some(value)) => {
                        outcomes.push(match keys::decode_idempotency(&value) {
                            Some((chain, first, count)) => Outcome::Replay {
                                chain,
                                first,
                                count,
                            },
                            None => Outcome::Rejected(LedgerError::Corrupt {
                                dir: shared.dir.clone(),
                                reason: format!(
                                    "idempotency entry for {:?} is malformed",
                                    key.as_str()
                                ),
                            }),
                        });
                        continue;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        outcomes.push(Outcome::Rejected(LedgerError::from_rocksdb(
                            "append", error,
                        )));
                        continue;
                    }
                }
            }

            let chain = request.chain;
            if merkle_cf.is_some()
                && let Err(reason) = tree_of(shared, &mut trees, chain)
            {
                outcomes.push(Outcome::Rejected(LedgerError::Storage {
                    operation: "append",
                    reason,
                }));
                continue;
            }
            let head = *heads
                .entry(chain)
                .or_insert_with(|| shared.heads.lock().expect("heads lock poisoned")[&chain]);
            match sequence_request(
                pending,
                head,
                now,
                &mut batch,
                events_cf,
                published.as_mut(),
            ) {
                Ok((appended, new_head)) => {
                    if let Some(merkle_cf) = merkle_cf {
                        let tree = trees.get_mut(&chain).expect("loaded before sequencing");
                        for event in &appended.events {
                            tree::push_leaf(tree, chain, &event.hash, &mut batch, merkle_cf);
                        }
                    }
                    let request = &pending.request;
                    if let Some(key) = &request.idempotency_key {
                        let first = appended.events[0].position;
                        let count = u32::try_from(appended.events.len()).unwrap_or(u32::MAX);
                        batch.put_cf(
                            idempotency_cf,
                            key.as_str().as_bytes(),
                            keys::encode_idempotency(request.chain, first, count),
                        );
                        keys_in_group.insert(key.clone(), index);
                    }
                    heads.insert(chain, new_head);
                    appended_chains.push(chain);
                    outcomes.push(Outcome::Written(appended));
                }
                Err(error) => outcomes.push(Outcome::Rejected(error)),
            }
        }

        let due = Due {
            forced: &forced,
            appended: &appended_chains,
            closing,
            only,
            now,
        };
        let signed = match sign_due(
            shared,
            &due,
            self.checkpoints,
            &mut heads,
            &mut trees,
            &mut batch,
            published.as_mut(),
        ) {
            Ok(signed) => signed,
            Err(error) => {
                let reason = error.to_string();
                fail_group(group, forced, &reason);
                return Err(reason);
            }
        };

        for (chain, head) in &heads {
            batch.put_cf(meta_cf, keys::head_key(*chain), keys::encode_head(head));
        }
        for (chain, tree) in &trees {
            batch.put_cf(meta_cf, indexed_size_key(*chain), tree.len().to_be_bytes());
        }

        if let (Some(chain), Some(published), Some(publisher)) =
            (only, &published, self.publisher.as_deref_mut())
            && !published.is_empty()
            && let Err(error) = publisher.publish(chain, published)
        {
            let reason = reason_of(error);
            tracing::warn!(chain = %chain, error = %reason, "events not committed upstream");
            for pending in group {
                let _ = pending.reply.send(Err(unavailable(chain, &reason)));
            }
            for request in forced {
                let _ = request.reply.send(Err(unavailable(chain, &reason)));
            }
            return Ok(());
        }

        if !batch.is_empty()
            && let Err(error) = db.write_opt(batch, self.write_options)
        {
            let reason = crate::error::rocksdb_reason(error);
            fail_group(group, forced, &reason);
            return Err(reason);
        }

        self.checkpoints
            .committed(appended_chains.into_iter(), &signed);
        publish_heads(shared, &heads, trees);
        reply(shared, group, outcomes);
        for request in forced {
            let next = shared.heads.lock().expect("heads lock poisoned")[&request.chain].next;
            let _ = request
                .reply
                .send(Ok(self.checkpoints.covering(request.chain, next)));
        }
        Ok(())
    }
}

/// Returns the reason of an upstream error, without the wording that
/// [`LedgerError::Unavailable`] adds when it is shown.
fn reason_of(error: LedgerError) -> String {
    match error {
        LedgerError::Unavailable { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Builds the error of an append to `chain` that the upstream did not take.
fn unavailable(chain: ChainId, reason: &str) -> LedgerError {
    LedgerError::Unavailable {
        chain,
        reason: reason.to_owned(),
    }
}

/// Returns the group's copy of `chain`'s tree, starting from the committed one.
pub(super) fn tree_of<'a>(
    shared: &Shared,
    trees: &'a mut HashMap<ChainId, MerkleAccumulator>,
    chain: ChainId,
) -> Result<&'a mut MerkleAccumulator, String> {
    let entry = match trees.entry(chain) {
        Entry::Occupied(entry) => return Ok(entry.into_mut()),
        Entry::Vacant(entry) => entry,
    };
    let committed = shared
        .trees
        .lock()
        .expect("trees lock poisoned")
        .get(&chain)
        .cloned();
    let tree = match committed {
        Some(tree) => tree,
        None => {
            let size = shared.heads.lock().expect("heads lock poisoned")[&chain]
                .next
                .get();
            tree::accumulator_at(shared, chain, size).map_err(|error| error.to_string())?
        }
    };
    Ok(entry.insert(tree))
}

/// The chains a group may sign checkpoints for, and the conditions.
struct Due<'a> {
    forced: &'a [ForcedCheckpoint],
    appended: &'a [ChainId],
    /// The ledger is closing: every uncovered chain is due.
    closing: bool,
    /// The only chain of this commit, when the group is committed chain by chain.
    only: Option<ChainId>,
    now: Timestamp,
}

/// Adds a checkpoint event to the batch for each chain that is due one, and to
/// `published` when the events go upstream.
fn sign_due(
    shared: &Shared,
    due: &Due<'_>,
    checkpoints: &Checkpoints,
    heads: &mut HashMap<ChainId, Head>,
    trees: &mut HashMap<ChainId, MerkleAccumulator>,
    batch: &mut WriteBatch,
    mut published: Option<&mut Vec<Published>>,
) -> Result<Vec<Signed>, LedgerError> {
    let Some(merkle_cf) = merkle_family(&shared.db) else {
        return Ok(Vec::new());
    };
    let instant = Instant::now();
    let mut signed = Vec::new();
    let forced_chains: Vec<ChainId> = due.forced.iter().map(|request| request.chain).collect();
    for chain in checkpoints.candidates(due.appended, &forced_chains) {
        if due.only.is_some_and(|only| only != chain) {
            continue;
        }
        let head = match heads.get(&chain) {
            Some(head) => *head,
            None => shared.heads.lock().expect("heads lock poisoned")[&chain],
        };
        let force = due.closing || forced_chains.contains(&chain);
        if !checkpoints.is_due(chain, head.next, instant, force) {
            continue;
        }
        let tree = tree_of(shared, trees, chain).map_err(|reason| LedgerError::Storage {
            operation: "checkpoint",
            reason,
        })?;
        let (new_head, checkpoint, hash, bytes) =
            checkpoints.sign(chain, head, tree, due.now, batch, shared)?;
        tree::push_leaf(tree, chain, &hash, batch, merkle_cf);
        if let Some(published) = published.as_deref_mut() {
            published.push(Published {
                position: head.next,
                delivery: None,
                bytes,
            });
        }
        heads.insert(chain, new_head);
        signed.push(checkpoint);
    }
    Ok(signed)
}

fn fail_group(group: Vec<Pending>, forced: Vec<ForcedCheckpoint>, reason: &str) {
    for pending in group {
        let _ = pending.reply.send(Err(LedgerError::from_storage_reason(
            "append",
            reason.to_owned(),
        )));
    }
    for request in forced {
        let _ = request.reply.send(Err(LedgerError::from_storage_reason(
            "checkpoint",
            reason.to_owned(),
        )));
    }
}

/// Assigns positions, links and the sequencer time to one request's events and adds
/// them to the batch. Returns the placements and the chain's new head.
fn sequence_request(
    pending: &mut Pending,
    head: Head,
    now: Timestamp,
    batch: &mut WriteBatch,
    events_cf: &rocksdb::ColumnFamily,
    published: Option<&mut Vec<Published>>,
) -> Result<(Appended, Head), LedgerError> {
    let request = &mut pending.request;
    let time = now.max(head.last_time);
    let mut next = head.next;
    let mut previous = head.last_hash;
    let mut encoded = Vec::with_capacity(request.events.len());

    // Encode everything first, so a request that fails to encode adds nothing. The
    // events move into their envelopes: the request is not needed after this.
    for new_event in std::mem::take(&mut request.events) {
        let delivery = new_event.event.delivery();
        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId::random(),
            chain: request.chain,
            position: next,
            previous,
            time,
            command: request.command,
            idempotency_key: request.idempotency_key.clone(),
            actor: new_event.actor,
            event: new_event.event,
        };
        let (hash, value) = keys::encode_event_value(&envelope)?;
        encoded.push((next, hash, value, delivery));
        previous = hash;
        next = next.next();
    }

    let mut events = Vec::with_capacity(encoded.len());
    let mut published = published;
    for (position, hash, value, delivery) in encoded {
        if let Some(published) = published.as_deref_mut() {
            published.push(Published {
                position,
                delivery,
                bytes: value[32..].to_vec(),
            });
        }
        batch.put_cf(events_cf, keys::event_key(request.chain, position), value);
        events.push(AppendedEvent { position, hash });
    }

    let new_head = Head {
        next,
        last_hash: previous,
        last_time: time,
    };
    let appended = Appended {
        chain: request.chain,
        events,
        replayed: false,
    };
    Ok((appended, new_head))
}

pub(super) fn publish_heads(
    shared: &Shared,
    heads: &HashMap<ChainId, Head>,
    trees: HashMap<ChainId, MerkleAccumulator>,
) {
    {
        let mut committed = shared.heads.lock().expect("heads lock poisoned");
        let mut committed_trees = shared.trees.lock().expect("trees lock poisoned");
        for (chain, head) in heads {
            committed.insert(*chain, *head);
        }
        committed_trees.extend(trees);
    }
    for (chain, head) in heads {
        shared.watchers[chain].send_replace(head.next);
    }
}

fn reply(shared: &Shared, group: Vec<Pending>, outcomes: Vec<Outcome>) {
    let mut results: Vec<Option<Result<Appended, LedgerError>>> = Vec::with_capacity(group.len());
    for outcome in outcomes {
        let result = match outcome {
            Outcome::Written(appended) => Ok(appended),
            Outcome::Replay {
                chain,
                first,
                count,
            } => super::read::read_placements(shared, chain, first, count).map(|events| Appended {
                chain,
                events,
                replayed: true,
            }),
            Outcome::SameAs(original) => match &results[original] {
                Some(Ok(appended)) => Ok(Appended {
                    replayed: true,
                    ..appended.clone()
                }),
                _ => Err(LedgerError::Storage {
                    operation: "append",
                    reason: "the original request with this idempotency key failed".to_owned(),
                }),
            },
            Outcome::Rejected(error) => Err(error),
        };
        results.push(Some(result));
    }

    for (pending, result) in group.into_iter().zip(results) {
        let result = result.expect("every request has a result");
        let _ = pending.reply.send(result);
    }
}
