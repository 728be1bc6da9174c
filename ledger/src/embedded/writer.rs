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
//! The same thread writes imports of events committed upstream. With a publisher
//! (the Kafka backend), each chain's part of a group is committed upstream first and
//! written here only once that succeeded. A chain whose sequencer runs elsewhere gets
//! no appends.
//!
//! After a failed write the writer rejects every later append until the ledger is
//! reopened: RocksDB may or may not have kept the failed batch, and the heads are only
//! trustworthy once reloaded from disk.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rocksdb::WriteOptions;

use super::checkpoints::Checkpoints;
use super::commit::Committer;
use super::upstream::{PendingImport, Publisher};
use super::{EmbeddedOptions, ForcedCheckpoint, Pending, Shared, Work};
use crate::error::LedgerError;

/// Maximum pause between two arriving requests while a group is gathered.
const IDLE_GAP: Duration = Duration::from_micros(150);

/// The work of one group commit.
#[derive(Default)]
pub(super) struct Group {
    pub(super) appends: Vec<Pending>,
    pub(super) forced: Vec<ForcedCheckpoint>,
    pub(super) imports: Vec<PendingImport>,
    /// The ledger is closing: sign a checkpoint for every uncovered chain.
    pub(super) closing: bool,
}

pub(super) fn run(
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Work>,
    options: EmbeddedOptions,
    mut checkpoints: Checkpoints,
    mut publisher: Option<Box<dyn Publisher>>,
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

        let mut committer = Committer {
            shared: &shared,
            write_options: &write_options,
            clock: &options.clock,
            checkpoints: &mut checkpoints,
            publisher: publisher.as_deref_mut(),
        };
        if let Err(reason) = committer.run(group) {
            tracing::error!(
                dir = %shared.dir.display(),
                error = %reason,
                "ledger group commit failed; rejecting appends until restart"
            );
            *shared
                .write_failure
                .lock()
                .expect("write failure lock poisoned") = Some(reason.clone());
            failure = Some(reason);
        }
    }

    if failure.is_none() && checkpoints.enabled() && !options.read_only {
        let closing = Group {
            closing: true,
            ..Group::default()
        };
        let mut committer = Committer {
            shared: &shared,
            write_options: &write_options,
            clock: &options.clock,
            checkpoints: &mut checkpoints,
            publisher: publisher.as_deref_mut(),
        };
        if let Err(reason) = committer.run(closing) {
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
    for import in group.imports {
        let _ = import.reply.send(Err(error()));
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
            Work::Import(import) => group.imports.push(import),
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
