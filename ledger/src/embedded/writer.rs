//! The writer thread: sequences appends and group-commits them.
//!
//! The thread takes every request waiting in its queue, up to a maximum number of
//! events. It assigns positions and links, encodes and hashes each event, and writes
//! the whole group, heads and idempotency entries in one RocksDB write batch with one
//! fsync.
//! Only after that write returns are the heads advanced and the appenders replied to, so
//! an acknowledged append is always durable.
//!
//! Each event also extends its chain's Merkle tree, whose new stored subtree roots go
//! into the same batch. When checkpoints are on, a chain that is due one gets a
//! `CheckpointSigned` event at the end of the group. The writer wakes up for
//! checkpoints that fall due by time, and it signs a last one for every uncovered
//! chain when the ledger closes.
//!
//! After a failed write the writer rejects every later append until the ledger is
//! reopened: RocksDB may or may not have kept the failed batch, and the heads are only
//! trustworthy once reloaded from disk.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use consign_schemas::{
    ChainId, Envelope, EventId, IdempotencyKey, Position, SCHEMA_VERSION, Timestamp,
};
use rocksdb::{WriteBatch, WriteOptions};

use super::checkpoints::{Checkpoints, Signed};
use super::open::{events_family, idempotency_family, meta_family};
use super::tree::{self, indexed_size_key, merkle_family};
use super::{EmbeddedOptions, ForcedCheckpoint, Pending, Shared, Work};
use crate::clock::Clock;
use crate::error::LedgerError;
use crate::keys::{self, Head};
use crate::merkle::MerkleAccumulator;
use crate::record::{Appended, AppendedEvent};

/// Maximum pause between two arriving requests while a group is gathered.
const IDLE_GAP: Duration = Duration::from_micros(150);

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

/// The work of one group commit.
#[derive(Default)]
pub(super) struct Group {
    appends: Vec<Pending>,
    forced: Vec<ForcedCheckpoint>,
    /// The ledger is closing: sign a checkpoint for every uncovered chain.
    closing: bool,
}

pub(super) fn run(
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Work>,
    options: EmbeddedOptions,
    mut checkpoints: Checkpoints,
) {
    let mut write_options = WriteOptions::default();
    write_options.set_sync(options.sync);
    let mut failure: Option<String> = None;

    let mut expected_requests = 1;

    loop {
        let first = match checkpoints.next_due() {
            None => match receiver.recv() {
                Ok(work) => Some(work),
                Err(_) => break,
            },
            Some(due) => match receiver.recv_timeout(due.saturating_duration_since(Instant::now()))
            {
                Ok(work) => Some(work),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let group = match first {
            Some(first) => gather_group(&receiver, first, expected_requests, &options),
            None => Group::default(),
        };
        if !group.appends.is_empty() {
            expected_requests = group.appends.len();
        }

        if let Some(reason) = &failure {
            reject_group(group, reason);
            continue;
        }

        if let Err(reason) = commit_group(
            &shared,
            group,
            &write_options,
            &options.clock,
            &mut checkpoints,
        ) {
            tracing::error!(
                dir = %shared.dir.display(),
                error = %reason,
                "ledger group commit failed; rejecting appends until restart"
            );
            failure = Some(reason);
        }
    }

    if failure.is_none() && checkpoints.enabled() && !options.read_only {
        let closing = Group {
            closing: true,
            ..Group::default()
        };
        if let Err(reason) = commit_group(
            &shared,
            closing,
            &write_options,
            &options.clock,
            &mut checkpoints,
        ) {
            tracing::error!(dir = %shared.dir.display(), error = %reason, "closing checkpoint failed");
        }
    }
    tracing::debug!(dir = %shared.dir.display(), "ledger writer stopped");
}

fn reject_group(group: Group, reason: &str) {
    let error = || LedgerError::Storage {
        operation: "append",
        reason: format!("an earlier write failed ({reason}); restart consign"),
    };
    for pending in group.appends {
        let _ = pending.reply.send(Err(error()));
    }
    for forced in group.forced {
        let _ = forced.reply.send(Err(error()));
    }
}

/// Collects the requests of one group, starting with `first`.
///
/// The writer waits a little for more requests when the previous group was larger than
/// what is queued. The appenders of that group are being woken and are about to send
/// their next request, and one fsync for all of them is cheaper than two for halves.
/// The wait ends as soon as the previous group's size is reached, at
/// `options.max_group_events`, after `options.group_wait`, or when no request arrives
/// for [`IDLE_GAP`]. A group that ends early sets a smaller target for the next one, so
/// a lone appender never waits.
fn gather_group(
    receiver: &mpsc::Receiver<Work>,
    first: Work,
    expected_requests: usize,
    options: &EmbeddedOptions,
) -> Group {
    let deadline = Instant::now() + options.group_wait;
    let mut event_count = 0;
    let mut group = Group::default();
    let mut next = first;

    loop {
        match next {
            Work::Append(pending) => {
                event_count += pending.request.events.len();
                group.appends.push(pending);
            }
            Work::Checkpoint(forced) => group.forced.push(forced),
        }
        if event_count >= options.max_group_events {
            break;
        }
        next = match receiver.try_recv() {
            Ok(next) => next,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                let now = Instant::now();
                if group.appends.len() >= expected_requests || now >= deadline {
                    break;
                }
                // A pause longer than the idle gap means the rest are not coming soon.
                let wait = (deadline - now).min(IDLE_GAP);
                match receiver.recv_timeout(wait) {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
    }
    group
}

/// Writes one group and replies to its appenders. Returns the storage failure, if any,
/// after replying to every appender with it.
fn commit_group(
    shared: &Shared,
    group: Group,
    write_options: &WriteOptions,
    clock: &Clock,
    checkpoints: &mut Checkpoints,
) -> Result<(), String> {
    let Group {
        appends: mut group,
        mut forced,
        closing,
    } = group;
    if !checkpoints.enabled() {
        for request in forced.drain(..) {
            let _ = request.reply.send(Err(LedgerError::NoCheckpointSigner));
        }
    }
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
    let now = clock.now();

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
        match sequence_request(pending, head, now, &mut batch, events_cf) {
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

    let signed = match sign_due(
        shared,
        &forced,
        &appended_chains,
        closing,
        now,
        checkpoints,
        &mut heads,
        &mut trees,
        &mut batch,
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

    if !batch.is_empty()
        && let Err(error) = db.write_opt(batch, write_options)
    {
        let reason = error.into_string();
        fail_group(group, forced, &reason);
        return Err(reason);
    }

    checkpoints.committed(appended_chains.into_iter(), &signed);
    publish_heads(shared, &heads, trees);
    reply(shared, group, outcomes);
    for request in forced {
        let next = shared.heads.lock().expect("heads lock poisoned")[&request.chain].next;
        let _ = request
            .reply
            .send(Ok(checkpoints.covering(request.chain, next)));
    }
    Ok(())
}

/// Returns the group's copy of `chain`'s tree, starting from the committed one.
fn tree_of<'a>(
    shared: &Shared,
    trees: &'a mut HashMap<ChainId, MerkleAccumulator>,
    chain: ChainId,
) -> Result<&'a mut MerkleAccumulator, String> {
    if !trees.contains_key(&chain) {
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
        trees.insert(chain, tree);
    }
    Ok(trees.get_mut(&chain).expect("inserted above"))
}

/// Adds a checkpoint event to the batch for each chain that is due one.
#[allow(clippy::too_many_arguments)]
fn sign_due(
    shared: &Shared,
    forced: &[ForcedCheckpoint],
    appended: &[ChainId],
    closing: bool,
    now: Timestamp,
    checkpoints: &Checkpoints,
    heads: &mut HashMap<ChainId, Head>,
    trees: &mut HashMap<ChainId, MerkleAccumulator>,
    batch: &mut WriteBatch,
) -> Result<Vec<Signed>, LedgerError> {
    let Some(merkle_cf) = merkle_family(&shared.db) else {
        return Ok(Vec::new());
    };
    let instant = Instant::now();
    let mut signed = Vec::new();
    let forced_chains: Vec<ChainId> = forced.iter().map(|request| request.chain).collect();
    for chain in checkpoints.candidates(appended, &forced_chains) {
        let head = match heads.get(&chain) {
            Some(head) => *head,
            None => shared.heads.lock().expect("heads lock poisoned")[&chain],
        };
        let force = closing || forced_chains.contains(&chain);
        if !checkpoints.is_due(chain, head.next, instant, force) {
            continue;
        }
        let tree = tree_of(shared, trees, chain).map_err(|reason| LedgerError::Storage {
            operation: "checkpoint",
            reason,
        })?;
        let (new_head, checkpoint, hash) =
            checkpoints.sign(chain, head, tree, now, batch, shared)?;
        tree::push_leaf(tree, chain, &hash, batch, merkle_cf);
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
) -> Result<(Appended, Head), LedgerError> {
    let request = &mut pending.request;
    let time = now.max(head.last_time);
    let mut next = head.next;
    let mut previous = head.last_hash;
    let mut encoded = Vec::with_capacity(request.events.len());

    // Encode everything first, so a request that fails to encode adds nothing. The
    // events move into their envelopes: the request is not needed after this.
    for new_event in std::mem::take(&mut request.events) {
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
        encoded.push((next, hash, value));
        previous = hash;
        next = next.next();
    }

    let mut events = Vec::with_capacity(encoded.len());
    for (position, hash, value) in encoded {
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

fn publish_heads(
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
