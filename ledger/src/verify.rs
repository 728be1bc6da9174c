//! Chain verification, shared by every backend.
//!
//! Each stored event is checked on its own (recorded hash against the hash of its
//! bytes, decoding, chain and position fields) in parallel, and then the links between
//! neighbours are checked in order. The first failure in position order is reported.
//!
//! A verification from the start of a chain also rebuilds its Merkle tree and checks
//! every `CheckpointSigned` event against it: the tree size must be the checkpoint's
//! position and the root that of the events before it. Given the published public
//! keys, it checks each checkpoint's signature too.

use std::sync::Arc;

use consign_schemas::events::Event;
use consign_schemas::{
    ChainId, Envelope, EventHash, Hash32, IdempotencyKey, Position, Timestamp, genesis_hash,
    hash_stored_event,
};
use rayon::prelude::*;

use crate::checkpoint::{CheckpointFields, PublicKeys, verify_checkpoint};
use crate::merkle::MerkleAccumulator;
use crate::record::RawEvent;

/// Reason verification stopped at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakReason {
    /// The stored bytes hash to a different value than the hash recorded beside them.
    HashMismatch {
        recorded: EventHash,
        computed: EventHash,
    },
    /// The event's `previous` field is not the hash of the event before it.
    BrokenLink {
        expected: EventHash,
        found: EventHash,
    },
    /// No event is stored at this position although later ones, or the head, say
    /// there should be.
    Gap,
    /// The stored bytes are not a valid envelope.
    Undecodable { reason: String },
    /// The stored value is too short to hold a recorded hash.
    MissingHash,
    /// The envelope names another chain or position than the key it is stored under.
    Misplaced {
        found_chain: ChainId,
        found_position: Position,
    },
    /// An event is stored at or after the chain's recorded head.
    BeyondHead { head: Position },
    /// An extra event was inserted here: the event stored after it claims this
    /// position and links to the same predecessor.
    Inserted,
    /// A checkpoint states another tree than the one of the events before it.
    CheckpointMismatch {
        tree_size: u64,
        root: Hash32,
        computed: Hash32,
    },
    /// A checkpoint's signature does not verify with the published keys.
    CheckpointSignature { reason: String },
    /// The chain ends before the size of a checkpoint saved earlier: events after
    /// this position were removed.
    Truncated { saved_size: u64 },
    /// The events up to a saved checkpoint's size have another root than it states.
    SavedCheckpointMismatch {
        saved_size: u64,
        saved_root: Hash32,
        computed: Hash32,
    },
}

impl std::fmt::Display for BreakReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BreakReason::HashMismatch { recorded, computed } => write!(
                f,
                "hash mismatch: stored bytes hash to {computed}, but {recorded} is recorded"
            ),
            BreakReason::BrokenLink { expected, found } => write!(
                f,
                "broken link: previous hash is {found}, but the preceding event hashes to {expected}"
            ),
            BreakReason::Gap => f.write_str("gap: no event is stored at this position"),
            BreakReason::Undecodable { reason } => write!(f, "undecodable bytes: {reason}"),
            BreakReason::MissingHash => {
                f.write_str("undecodable bytes: value is shorter than a hash")
            }
            BreakReason::Misplaced {
                found_chain,
                found_position,
            } => write!(
                f,
                "misplaced event: it says chain {found_chain} position {found_position}"
            ),
            BreakReason::BeyondHead { head } => write!(
                f,
                "event stored beyond the chain's recorded head, which is position {head}"
            ),
            BreakReason::Inserted => f.write_str(
                "inserted event: the next stored event claims this position and links to the \
                 same predecessor",
            ),
            BreakReason::CheckpointMismatch {
                tree_size,
                root,
                computed,
            } => write!(
                f,
                "checkpoint mismatch: it states a tree of {tree_size} events with root {root}, \
                 but the events before it have root {computed}"
            ),
            BreakReason::CheckpointSignature { reason } => {
                write!(f, "checkpoint signature rejected: {reason}")
            }
            BreakReason::Truncated { saved_size } => write!(
                f,
                "truncated: the chain ends here, but a saved checkpoint covers {saved_size} events"
            ),
            BreakReason::SavedCheckpointMismatch {
                saved_size,
                saved_root,
                computed,
            } => write!(
                f,
                "altered at or before this position: the first {saved_size} events have root \
                 {computed}, but the saved checkpoint states {saved_root}"
            ),
        }
    }
}

/// The first failure found in a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub chain: ChainId,
    pub position: Position,
    pub reason: BreakReason,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {} position {}: {}",
            self.chain, self.position, self.reason
        )
    }
}

/// The outcome of verifying a range of one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub chain: ChainId,
    pub from: Position,
    /// Events that passed every check before the first break, or all of them.
    pub verified: u64,
    /// Hash of the last verified event, or the value linked to by `from`.
    pub last_hash: EventHash,
    pub first_break: Option<ChainBreak>,
}

/// An event that passed every check, as [`ChainVerifier::feed_observed`] shows it to
/// its observer, in position order.
#[derive(Debug)]
pub struct AcceptedEvent<'a> {
    pub position: Position,
    pub hash: EventHash,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    /// True for a `CheckpointSigned` event.
    pub checkpoint: bool,
    pub time: Timestamp,
}

/// One event's own checks, independent of its neighbours.
struct Checked {
    position: Position,
    /// The event's hash and its `previous` field, or why it failed.
    result: Result<(EventHash, EventHash), BreakReason>,
    /// The `previous` field of an event that decoded, even if a later check failed.
    previous: Option<EventHash>,
    /// The hash of the stored bytes, when a hash was recorded beside them.
    computed: Option<EventHash>,
    /// The tree size, root, key id, signature and time of a checkpoint event.
    checkpoint: Option<(u64, Hash32, String, Vec<u8>, Timestamp)>,
    /// The idempotency key and time of an event that decoded.
    key_and_time: Option<(Option<IdempotencyKey>, Timestamp)>,
}

fn check_one(chain: ChainId, raw: &RawEvent) -> Checked {
    let mut decoded_previous = None;
    let mut computed_hash = None;
    let mut checkpoint = None;
    let mut key_and_time = None;
    let mut result = || {
        let recorded = raw.recorded_hash.ok_or(BreakReason::MissingHash)?;
        let computed = hash_stored_event(&raw.bytes);
        computed_hash = Some(computed);
        if computed != recorded {
            return Err(BreakReason::HashMismatch { recorded, computed });
        }
        let envelope = Envelope::decode(&raw.bytes).map_err(|error| BreakReason::Undecodable {
            reason: error.to_string(),
        })?;
        decoded_previous = Some(envelope.previous);
        key_and_time = Some((envelope.idempotency_key, envelope.time));
        if let Event::CheckpointSigned(signed) = envelope.event {
            checkpoint = Some((
                signed.tree_size,
                signed.root_hash,
                signed.key_id,
                signed.signature,
                envelope.time,
            ));
        }
        if envelope.chain != chain || envelope.position != raw.position {
            return Err(BreakReason::Misplaced {
                found_chain: envelope.chain,
                found_position: envelope.position,
            });
        }
        Ok((computed, envelope.previous))
    };
    let result = result();
    Checked {
        position: raw.position,
        result,
        previous: decoded_previous,
        computed: computed_hash,
        checkpoint,
        key_and_time,
    }
}

/// Checks beyond the chain links, for a verification from the start of a chain.
#[derive(Clone, Debug, Default)]
pub struct ChainChecks {
    /// Published keys to check checkpoint signatures with.
    pub keys: Option<Arc<PublicKeys>>,
    /// The tree size and root of a checkpoint saved outside the ledger.
    pub saved_checkpoint: Option<(u64, Hash32)>,
}

/// Checks a chain incrementally, fed with stored events in key order.
#[derive(Debug)]
pub struct ChainVerifier {
    chain: ChainId,
    from: Position,
    expected: Position,
    previous: EventHash,
    /// The `previous` field of the last accepted event, to recognise an inserted one.
    accepted_link: Option<EventHash>,
    /// Position every event must stay below, and the position the range must reach.
    end: Position,
    first_break: Option<ChainBreak>,
    /// The Merkle tree of the events accepted so far, when verifying from the start.
    tree: Option<MerkleAccumulator>,
    /// Keys to check checkpoint signatures with.
    keys: Option<Arc<PublicKeys>>,
    /// A tree size and root saved from an earlier checkpoint, which the chain must
    /// still contain.
    saved: Option<(u64, Hash32)>,
    /// Set once an observer of [`Self::feed_observed`] returned an error.
    observer_failed: bool,
}

impl ChainVerifier {
    /// Starts at `from`, whose predecessor hashes to `previous` (the genesis value when
    /// `from` is 0), and expects events up to but excluding `end`.
    pub fn new(chain: ChainId, from: Position, previous: EventHash, end: Position) -> Self {
        Self {
            chain,
            from,
            expected: from,
            previous,
            accepted_link: None,
            end,
            first_break: None,
            tree: (from == Position::ZERO).then(MerkleAccumulator::new),
            keys: None,
            saved: None,
            observer_failed: false,
        }
    }

    /// Adds `checks`: checkpoint signatures with the published keys, and a saved
    /// checkpoint (tree size and root) that the chain must still contain. Only a
    /// verification from the start of the chain checks the saved checkpoint.
    pub fn with_checks(mut self, checks: ChainChecks) -> Self {
        self.keys = checks.keys;
        self.saved = checks.saved_checkpoint;
        self
    }

    /// Starts at the beginning of the chain.
    pub fn from_genesis(chain: ChainId, end: Position) -> Self {
        Self::new(chain, Position::ZERO, genesis_hash(chain), end)
    }

    /// Sets the position the range must reach, for a stream whose length is known only
    /// once it has been read to its end. Start such a verifier with an end of
    /// `u64::MAX`.
    pub fn set_end(&mut self, end: Position) {
        self.end = end;
    }

    /// True once a break is found; further input is ignored.
    pub fn is_broken(&self) -> bool {
        self.first_break.is_some()
    }

    /// True once a break is found or an observer failed: further input is ignored.
    pub fn is_stopped(&self) -> bool {
        self.is_broken() || self.observer_failed
    }

    /// Checks the next stored events, which must come in increasing position order.
    pub fn feed(&mut self, raws: &[RawEvent]) {
        let accept_all = |_: &AcceptedEvent<'_>| Ok::<(), std::convert::Infallible>(());
        let Ok(()) = self.feed_observed(raws, accept_all);
    }

    /// Checks like [`Self::feed`] and shows each event that passed to `observer`, so
    /// that a caller can compare its own records with the events in the same pass. The
    /// first error of `observer` stops the feed and is returned; the verifier then
    /// takes no more input.
    ///
    /// # Errors
    ///
    /// The error of `observer`.
    pub fn feed_observed<E>(
        &mut self,
        raws: &[RawEvent],
        mut observer: impl FnMut(&AcceptedEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.is_broken() || self.observer_failed {
            return Ok(());
        }
        let chain = self.chain;
        let checked: Vec<Checked> = raws.par_iter().map(|raw| check_one(chain, raw)).collect();

        for mut item in checked {
            let position = item.position;
            let checkpoint = item.checkpoint.is_some();
            let key_and_time = item.key_and_time.take();
            if let Err(reason) = self.link(item) {
                self.first_break = Some(reason);
                return Ok(());
            }
            let Some((key, time)) = key_and_time else {
                continue;
            };
            let accepted = AcceptedEvent {
                position,
                hash: self.previous,
                idempotency_key: key.as_ref(),
                checkpoint,
                time,
            };
            if let Err(error) = observer(&accepted) {
                self.observer_failed = true;
                return Err(error);
            }
        }
        Ok(())
    }

    fn link(&mut self, item: Checked) -> Result<(), ChainBreak> {
        let at = |position, reason| ChainBreak {
            chain: self.chain,
            position,
            reason,
        };
        if item.position >= self.end {
            return Err(at(
                item.position,
                BreakReason::BeyondHead { head: self.end },
            ));
        }
        if item.position != self.expected {
            return Err(at(self.expected, BreakReason::Gap));
        }
        if let Err(BreakReason::Misplaced {
            found_chain,
            found_position,
        }) = &item.result
            && *found_chain == self.chain
            && found_position.get().checked_add(1) == Some(item.position.get())
            && item.previous.is_some()
            && item.previous == self.accepted_link
            // A copy of the event just accepted is misplaced where it sits, not a sign
            // that the accepted one was inserted.
            && item.computed != Some(self.previous)
        {
            let inserted_at = *found_position;
            self.expected = inserted_at;
            return Err(at(inserted_at, BreakReason::Inserted));
        }
        let (hash, previous) = item.result.map_err(|reason| at(item.position, reason))?;
        if previous != self.previous {
            return Err(at(
                item.position,
                BreakReason::BrokenLink {
                    expected: self.previous,
                    found: previous,
                },
            ));
        }
        if let Some((tree_size, root, key_id, signature, time)) = &item.checkpoint {
            self.check_checkpoint(item.position, *tree_size, *root, key_id, signature, *time)
                .map_err(|reason| at(item.position, reason))?;
        }
        if let Some(tree) = &mut self.tree {
            tree.push(&hash);
            if let Some((saved_size, saved_root)) = self.saved
                && tree.len() == saved_size
            {
                let computed = tree.root();
                if computed != saved_root {
                    return Err(at(
                        item.position,
                        BreakReason::SavedCheckpointMismatch {
                            saved_size,
                            saved_root,
                            computed,
                        },
                    ));
                }
            }
        }
        self.accepted_link = Some(previous);
        self.previous = hash;
        self.expected = self.expected.next();
        Ok(())
    }

    fn check_checkpoint(
        &self,
        position: Position,
        tree_size: u64,
        root: Hash32,
        key_id: &str,
        signature: &[u8],
        time: Timestamp,
    ) -> Result<(), BreakReason> {
        if let Some(tree) = &self.tree {
            let computed = tree.root();
            if tree_size != position.get() || root != computed {
                return Err(BreakReason::CheckpointMismatch {
                    tree_size,
                    root,
                    computed,
                });
            }
        }
        if let Some(keys) = &self.keys {
            let fields = CheckpointFields {
                chain: self.chain,
                tree_size,
                root,
                time,
            };
            verify_checkpoint(keys, &fields, key_id, signature).map_err(|error| {
                BreakReason::CheckpointSignature {
                    reason: error.to_string(),
                }
            })?;
        }
        Ok(())
    }

    /// Returns the Merkle tree of the events accepted so far, when verifying from the
    /// start of the chain.
    pub fn tree(&self) -> Option<&MerkleAccumulator> {
        self.tree.as_ref()
    }

    /// Ends the check: a range that stopped short of `end` has a gap.
    pub fn finish(mut self) -> ChainReport {
        if self.first_break.is_none() && self.expected < self.end {
            self.first_break = Some(ChainBreak {
                chain: self.chain,
                position: self.expected,
                reason: BreakReason::Gap,
            });
        }
        if self.first_break.is_none()
            && self.tree.is_some()
            && let Some((saved_size, _)) = self.saved
            && self.expected.get() < saved_size
        {
            self.first_break = Some(ChainBreak {
                chain: self.chain,
                position: self.expected,
                reason: BreakReason::Truncated { saved_size },
            });
        }
        ChainReport {
            chain: self.chain,
            from: self.from,
            verified: self.expected.get() - self.from.get(),
            last_hash: self.previous,
            first_break: self.first_break,
        }
    }
}
