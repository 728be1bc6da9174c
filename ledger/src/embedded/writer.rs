//! The writer thread: sequences appends and group-commits them.
//!
//! The thread takes every request waiting in its queue, up to a maximum number of
//! events. It assigns positions and links, encodes and hashes each event, and writes
//! the whole group, heads and idempotency entries in one RocksDB write batch with one
//! fsync.
//! Only after that write returns are the heads advanced and the appenders replied to, so
//! an acknowledged append is always durable.
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

use super::open::{events_family, idempotency_family, meta_family};
use super::{EmbeddedOptions, Pending, Shared};
use crate::clock::Clock;
use crate::error::LedgerError;
use crate::keys::{self, Head};
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

pub(super) fn run(
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Pending>,
    options: EmbeddedOptions,
) {
    let mut write_options = WriteOptions::default();
    write_options.set_sync(options.sync);
    let mut failure: Option<String> = None;

    let mut expected_requests = 1;

    while let Ok(first) = receiver.recv() {
        let group = gather_group(&receiver, first, expected_requests, &options);
        expected_requests = group.len();

        if let Some(reason) = &failure {
            for pending in group {
                let _ = pending.reply.send(Err(LedgerError::Storage {
                    operation: "append",
                    reason: format!("an earlier write failed ({reason}); restart consign"),
                }));
            }
            continue;
        }

        if let Err(reason) = commit_group(&shared, group, &write_options, &options.clock) {
            tracing::error!(
                dir = %shared.dir.display(),
                error = %reason,
                "ledger group commit failed; rejecting appends until restart"
            );
            failure = Some(reason);
        }
    }
    tracing::debug!(dir = %shared.dir.display(), "ledger writer stopped");
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
    receiver: &mpsc::Receiver<Pending>,
    first: Pending,
    expected_requests: usize,
    options: &EmbeddedOptions,
) -> Vec<Pending> {
    let deadline = Instant::now() + options.group_wait;
    let mut event_count = first.request.events.len();
    let mut group = vec![first];

    while event_count < options.max_group_events {
        let next = match receiver.try_recv() {
            Ok(next) => next,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                let now = Instant::now();
                if group.len() >= expected_requests || now >= deadline {
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
        event_count += next.request.events.len();
        group.push(next);
    }
    group
}

/// Writes one group and replies to its appenders. Returns the storage failure, if any,
/// after replying to every appender with it.
fn commit_group(
    shared: &Shared,
    mut group: Vec<Pending>,
    write_options: &WriteOptions,
    clock: &Clock,
) -> Result<(), String> {
    let db = &shared.db;
    let events_cf = events_family(db);
    let idempotency_cf = idempotency_family(db);
    let meta_cf = meta_family(db);

    let mut heads: HashMap<ChainId, Head> = HashMap::new();
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
        let head = *heads
            .entry(chain)
            .or_insert_with(|| shared.heads.lock().expect("heads lock poisoned")[&chain]);
        match sequence_request(pending, head, now, &mut batch, events_cf) {
            Ok((appended, new_head)) => {
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
                outcomes.push(Outcome::Written(appended));
            }
            Err(error) => outcomes.push(Outcome::Rejected(error)),
        }
    }

    for (chain, head) in &heads {
        batch.put_cf(meta_cf, keys::head_key(*chain), keys::encode_head(head));
    }

    if !batch.is_empty()
        && let Err(error) = db.write_opt(batch, write_options)
    {
        let reason = error.into_string();
        for pending in group {
            let _ = pending.reply.send(Err(LedgerError::from_storage_reason(
                "append",
                reason.clone(),
            )));
        }
        return Err(reason);
    }

    publish_heads(shared, &heads);
    reply(shared, group, outcomes);
    Ok(())
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

fn publish_heads(shared: &Shared, heads: &HashMap<ChainId, Head>) {
    {
        let mut committed = shared.heads.lock().expect("heads lock poisoned");
        for (chain, head) in heads {
            committed.insert(*chain, *head);
        }
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
