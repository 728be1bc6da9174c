//! The writer's checkpoint bookkeeping: which chains are due a signed checkpoint, and
//! the `CheckpointSigned` events themselves.
//!
//! `meta` keeps the position of each chain's last checkpoint event under
//! `checkpoint/<chain>`, written in the batch that writes the event.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use consign_schemas::events::CheckpointSigned;
use consign_schemas::{
    Actor, ChainId, CommandId, Envelope, Event, EventHash, EventId, Position, SCHEMA_VERSION,
    SystemComponent, Timestamp,
};
use rocksdb::{DB, WriteBatch};

use super::Shared;
use super::open::meta_family;
use crate::checkpoint::{CheckpointFields, CheckpointPolicy, checkpoint_message};
use crate::error::LedgerError;
use crate::keys::{self, Head};
use crate::merkle::MerkleAccumulator;

pub(crate) fn last_checkpoint_key(chain: ChainId) -> Vec<u8> {
    let mut key = b"checkpoint/".to_vec();
    key.extend_from_slice(&chain.get().to_be_bytes());
    key
}

/// Reads the position of the last checkpoint event of `chain`, if any.
pub(crate) fn last_checkpoint(
    db: &DB,
    dir: &std::path::Path,
    chain: ChainId,
) -> Result<Option<Position>, LedgerError> {
    let value = db
        .get_cf(meta_family(db), last_checkpoint_key(chain))
        .map_err(|error| LedgerError::from_rocksdb("read", error))?;
    value
        .map(|value| {
            let bytes: [u8; 8] = value
                .as_slice()
                .try_into()
                .map_err(|_| LedgerError::Corrupt {
                    dir: dir.to_path_buf(),
                    reason: format!("last checkpoint entry of chain {chain} has the wrong length"),
                })?;
            Ok(Position::new(u64::from_be_bytes(bytes)))
        })
        .transpose()
}

/// How far each chain is covered by a checkpoint.
#[derive(Clone, Copy, Debug)]
struct Coverage {
    /// Events before this position are covered: one past the last checkpoint event.
    covered: u64,
    /// When the oldest uncovered event was committed (or the writer started, for
    /// events committed before).
    uncovered_since: Option<Instant>,
}

/// The writer's view of checkpoints across chains.
pub(crate) struct Checkpoints {
    policy: Option<CheckpointPolicy>,
    chains: HashMap<ChainId, Coverage>,
    /// Chains with events that no checkpoint covers yet, so that a group looks at
    /// these only and not at every chain.
    uncovered: BTreeSet<ChainId>,
}

/// A checkpoint event added to a group's batch.
pub(crate) struct Signed {
    pub(crate) chain: ChainId,
    pub(crate) position: Position,
}

impl Checkpoints {
    pub(crate) fn load(
        shared: &Shared,
        policy: Option<CheckpointPolicy>,
    ) -> Result<Self, LedgerError> {
        let now = Instant::now();
        let heads = shared.heads.lock().expect("heads lock poisoned").clone();
        let mut chains = HashMap::with_capacity(heads.len());
        let mut uncovered = BTreeSet::new();
        for (chain, head) in heads {
            let covered = last_checkpoint(&shared.db, &shared.dir, chain)?
                .map_or(0, |position| position.get() + 1);
            let uncovered_since = (head.next.get() > covered).then_some(now);
            if uncovered_since.is_some() {
                uncovered.insert(chain);
            }
            chains.insert(
                chain,
                Coverage {
                    covered,
                    uncovered_since,
                },
            );
        }
        Ok(Self {
            policy,
            chains,
            uncovered,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    /// Returns when the next checkpoint falls due by time, if one is waiting.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let every = self.policy.as_ref()?.every;
        self.uncovered
            .iter()
            .filter_map(|chain| self.chains[chain].uncovered_since)
            .min()
            .map(|since| since + every)
    }

    /// Returns whether `chain`, whose next position is `next`, is due a checkpoint.
    /// With `force`, any uncovered event makes the chain due.
    pub(crate) fn is_due(&self, chain: ChainId, next: Position, now: Instant, force: bool) -> bool {
        let Some(policy) = &self.policy else {
            return false;
        };
        let coverage = self.chains[&chain];
        let uncovered = next.get().saturating_sub(coverage.covered);
        if uncovered == 0 {
            return false;
        }
        force
            || uncovered >= policy.every_events
            || coverage
                .uncovered_since
                .is_some_and(|since| now.duration_since(since) >= policy.every)
    }

    /// Returns the position of the checkpoint that covers every event before `next`,
    /// when the last one does.
    pub(crate) fn covering(&self, chain: ChainId, next: Position) -> Option<Position> {
        let covered = self.chains[&chain].covered;
        (covered > 0 && covered >= next.get()).then(|| Position::new(covered - 1))
    }

    /// Returns the chains that may be due a checkpoint after a group that appended to
    /// `appended` and asked for one on `forced`, in number order.
    pub(crate) fn candidates(&self, appended: &[ChainId], forced: &[ChainId]) -> Vec<ChainId> {
        let mut chains: BTreeSet<ChainId> = self.uncovered.clone();
        chains.extend(appended.iter().chain(forced).copied());
        chains.into_iter().collect()
    }

    /// Signs a checkpoint over `tree` at the end of `head`'s chain and adds the event
    /// to `batch`. Returns the new head, the event's hash and its stored bytes.
    pub(crate) fn sign(
        &self,
        chain: ChainId,
        head: Head,
        tree: &MerkleAccumulator,
        now: Timestamp,
        batch: &mut WriteBatch,
        shared: &Shared,
    ) -> Result<(Head, Signed, EventHash, Vec<u8>), LedgerError> {
        let policy = self
            .policy
            .as_ref()
            .ok_or(LedgerError::NoCheckpointSigner)?;
        let time = now.max(head.last_time);
        let fields = CheckpointFields {
            chain,
            tree_size: head.next.get(),
            root: tree.root(),
            time,
        };
        let (key_id, signature) = policy.signer.sign(&checkpoint_message(&fields));

        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId::random(),
            chain,
            position: head.next,
            previous: head.last_hash,
            time,
            command: CommandId::random(),
            idempotency_key: None,
            actor: Actor::System(SystemComponent::Sequencer),
            event: Event::CheckpointSigned(CheckpointSigned {
                chain,
                tree_size: fields.tree_size,
                root_hash: fields.root,
                key_id,
                signature,
            }),
        };
        let (hash, value) = keys::encode_event_value(&envelope)?;
        let bytes = value[32..].to_vec();
        let db = &shared.db;
        batch.put_cf(
            super::open::events_family(db),
            keys::event_key(chain, head.next),
            value,
        );
        batch.put_cf(
            meta_family(db),
            last_checkpoint_key(chain),
            head.next.get().to_be_bytes(),
        );
        let signed = Signed {
            chain,
            position: head.next,
        };
        let new_head = Head {
            next: head.next.next(),
            last_hash: hash,
            last_time: time,
        };
        Ok((new_head, signed, hash, bytes))
    }

    /// Stops tracking `chain` until its next append: its sequencer runs elsewhere, so
    /// this process signs no checkpoint for it.
    pub(crate) fn release(&mut self, chain: ChainId) {
        if let Some(coverage) = self.chains.get_mut(&chain) {
            coverage.uncovered_since = None;
        }
        self.uncovered.remove(&chain);
    }

    /// Records a committed group: `appended` chains got new events, `signed` got
    /// checkpoints after them.
    pub(crate) fn committed(&mut self, appended: impl Iterator<Item = ChainId>, signed: &[Signed]) {
        let now = Instant::now();
        for chain in appended {
            let coverage = self.chains.get_mut(&chain).expect("every chain is tracked");
            coverage.uncovered_since.get_or_insert(now);
            self.uncovered.insert(chain);
        }
        for checkpoint in signed {
            let coverage = self
                .chains
                .get_mut(&checkpoint.chain)
                .expect("every chain is tracked");
            coverage.covered = checkpoint.position.get() + 1;
            coverage.uncovered_since = None;
            self.uncovered.remove(&checkpoint.chain);
        }
    }
}
