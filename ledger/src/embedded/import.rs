//! Imports of events committed upstream into the local copy of a chain.
//!
//! Each record is checked before anything is written. Its bytes must decode to an
//! event of the chain. An event at a position the copy already has must have the same
//! hash, and a new one must take the next position and link to the head. The
//! valid prefix of a batch is written in one RocksDB batch with the Merkle leaves,
//! idempotency entries and the offset after the last record. The first invalid
//! record is reported with its offset.

use std::collections::HashMap;
use std::iter;

use consign_schemas::{ChainId, Envelope, Event, IdempotencyKey, Position, hash_stored_event};
use rocksdb::{WriteBatch, WriteOptions};

use super::Shared;
use super::checkpoints::{Checkpoints, Signed, last_checkpoint_key};
use super::commit::{publish_heads, tree_of};
use super::open::{events_family, idempotency_family, meta_family};
use super::tree::{self, indexed_size_key, merkle_family};
use super::upstream::{ImportRecord, Imported, PendingImport, offset_key};
use crate::error::LedgerError;
use crate::keys::{self, Head};
use crate::merkle::MerkleAccumulator;

/// Writes the valid prefix of one import and replies with the outcome. Returns the
/// storage failure, after which the writer stops accepting work.
pub(super) fn commit_import(
    shared: &Shared,
    import: PendingImport,
    write_options: &WriteOptions,
    checkpoints: &mut Checkpoints,
) -> Result<(), String> {
    let PendingImport {
        chain,
        records,
        reply,
    } = import;
    if chain.get() >= shared.chain_count {
        let _ = reply.send(Err(LedgerError::UnknownChain {
            chain,
            chains: shared.chain_count,
        }));
        return Ok(());
    }

    let mut state = ImportState::start(shared, chain)?;
    let mut rejection = None;
    for record in &records {
        if let Err(reason) = state.add(shared, record) {
            rejection = Some(LedgerError::Replica {
                chain,
                offset: record.offset,
                reason,
            });
            break;
        }
    }

    let ImportState {
        head,
        tree,
        batch,
        imported,
        signed,
        ..
    } = state;
    if imported.written > 0 || imported.present > 0 {
        let mut batch = batch;
        batch.put_cf(
            meta_family(&shared.db),
            keys::head_key(chain),
            keys::encode_head(&head),
        );
        if let Some(tree) = &tree {
            batch.put_cf(
                meta_family(&shared.db),
                indexed_size_key(chain),
                tree.len().to_be_bytes(),
            );
        }
        if let Err(error) = shared.db.write_opt(batch, write_options) {
            let reason = crate::error::rocksdb_reason(error);
            let _ = reply.send(Err(LedgerError::from_storage_reason(
                "import",
                reason.clone(),
            )));
            return Err(reason);
        }
        if imported.written > 0 {
            checkpoints.committed(iter::once(chain), &signed);
            let trees = tree
                .map(|tree| HashMap::from([(chain, tree)]))
                .unwrap_or_default();
            publish_heads(shared, &HashMap::from([(chain, head)]), trees);
        }
    }

    let _ = reply.send(match rejection {
        Some(error) => Err(error),
        None => Ok(imported),
    });
    Ok(())
}

/// The chain's head, tree and batch while the records of one import are checked.
struct ImportState {
    chain: ChainId,
    head: Head,
    tree: Option<MerkleAccumulator>,
    batch: WriteBatch,
    imported: Imported,
    signed: Vec<Signed>,
    /// Idempotency entries written by this import: key to first position and count.
    keys: HashMap<IdempotencyKey, (Position, u32)>,
}

impl ImportState {
    fn start(shared: &Shared, chain: ChainId) -> Result<Self, String> {
        let head = shared.heads.lock().expect("heads lock poisoned")[&chain];
        let tree = if merkle_family(&shared.db).is_some() {
            let mut trees = HashMap::new();
            Some(tree_of(shared, &mut trees, chain)?.clone())
        } else {
            None
        };
        Ok(Self {
            chain,
            head,
            tree,
            batch: WriteBatch::default(),
            imported: Imported::default(),
            signed: Vec::new(),
            keys: HashMap::new(),
        })
    }

    /// Checks one record and adds it to the batch when it is new.
    fn add(&mut self, shared: &Shared, record: &ImportRecord) -> Result<(), String> {
        let chain = self.chain;
        let hash = hash_stored_event(&record.bytes);
        let envelope = Envelope::decode(&record.bytes)
            .map_err(|error| format!("its bytes do not decode ({error})"))?;
        if envelope.chain != chain {
            return Err(format!("it contains an event of chain {}", envelope.chain));
        }
        let position = envelope.position;

        if position < self.head.next {
            let stored = super::read::read_placements(shared, chain, position, 1)
                .map_err(|error| format!("cannot read position {position} ({error})"))?;
            let pending = stored.first().map(|placed| placed.hash);
            if pending != Some(hash) {
                return Err(format!(
                    "position {position} contains a different event here (hash {}) than upstream \
                     (hash {hash}): the chain has forked",
                    pending.map_or_else(|| "none".to_owned(), |hash| hash.to_string())
                ));
            }
            self.imported.present += 1;
            self.record_offset(shared, record.offset);
            return Ok(());
        }
        if position > self.head.next {
            return Err(format!(
                "it contains position {position}, but the next position is {}: events are missing",
                self.head.next
            ));
        }
        if envelope.previous != self.head.last_hash {
            return Err(format!(
                "its previous hash {} is not the hash of position {}'s predecessor, {}",
                envelope.previous, position, self.head.last_hash
            ));
        }

        let db = &shared.db;
        let mut value = Vec::with_capacity(32 + record.bytes.len());
        value.extend_from_slice(hash.as_bytes());
        value.extend_from_slice(&record.bytes);
        self.batch
            .put_cf(events_family(db), keys::event_key(chain, position), value);
        if let (Some(tree), Some(merkle_cf)) = (&mut self.tree, merkle_family(db)) {
            tree::push_leaf(tree, chain, &hash, &mut self.batch, merkle_cf);
        }
        if let Some(key) = &envelope.idempotency_key {
            self.index_key(shared, key, position)?;
        }
        if let Event::CheckpointSigned(_) = envelope.event {
            self.batch.put_cf(
                meta_family(db),
                last_checkpoint_key(chain),
                position.get().to_be_bytes(),
            );
            self.signed.push(Signed { chain, position });
        }

        self.head = Head {
            next: position.next(),
            last_hash: hash,
            last_time: envelope.time.max(self.head.last_time),
        };
        self.imported.written += 1;
        self.record_offset(shared, record.offset);
        Ok(())
    }

    /// Records the first position and event count of the request that used `key`:
    /// the events of one request are consecutive and share its key.
    fn index_key(
        &mut self,
        shared: &Shared,
        key: &IdempotencyKey,
        position: Position,
    ) -> Result<(), String> {
        let entry = match self.keys.get(key) {
            Some(entry) => Some(*entry),
            None => shared
                .db
                .get_cf(idempotency_family(&shared.db), key.as_str().as_bytes())
                .map_err(|error| error.into_string())?
                .and_then(|value| keys::decode_idempotency(&value))
                .filter(|(chain, _, _)| *chain == self.chain)
                .map(|(_, first, count)| (first, count)),
        };
        let entry = match entry {
            Some((first, count)) if first.get() + u64::from(count) == position.get() => {
                (first, count + 1)
            }
            Some(_) => return Ok(()),
            None => (position, 1),
        };
        self.keys.insert(key.clone(), entry);
        self.batch.put_cf(
            idempotency_family(&shared.db),
            key.as_str().as_bytes(),
            keys::encode_idempotency(self.chain, entry.0, entry.1),
        );
        Ok(())
    }

    fn record_offset(&mut self, shared: &Shared, offset: i64) {
        self.batch.put_cf(
            meta_family(&shared.db),
            offset_key(self.chain),
            (offset + 1).to_be_bytes(),
        );
    }
}
