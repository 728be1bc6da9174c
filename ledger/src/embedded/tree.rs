//! Each chain's Merkle tree, kept beside its events, and the proofs built from it.
//!
//! The `merkle` column family contains the root of every perfect subtree of at least
//! [`STORED_LEVEL`]'s size: key chain (4 bytes) ‖ level (1 byte) ‖ index (8 bytes), all
//! big-endian, value the 32-byte root. The writer adds them in the same batch as the
//! events that complete them, with the indexed size in `meta`. Smaller subtrees are
//! hashed from the events' recorded hashes, one block of 64 events at a time, so a
//! proof reads at most two blocks and a few dozen stored roots. A ledger written
//! before the index existed is indexed when it is next opened for writing.

use std::collections::HashMap;

use consign_schemas::{ChainId, EventHash, Hash32, Position};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use super::open::{events_family, meta_family};
use super::{EmbeddedLedger, Shared};
use crate::error::LedgerError;
use crate::keys;
use crate::merkle::source::{self, SubtreeSource};
use crate::merkle::{self, MerkleAccumulator, MerkleError};

pub(crate) const CF_MERKLE: &str = "merkle";

/// The smallest stored subtree contains `2^STORED_LEVEL` leaves.
pub(crate) const STORED_LEVEL: u32 = 6;

const BLOCK: u64 = 1 << STORED_LEVEL;

/// Events read per batch while indexing an older ledger.
const INDEX_BATCH: usize = 16_384;

/// A chain's Merkle tree head: its size and root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub chain: ChainId,
    pub tree_size: u64,
    pub root: Hash32,
}

pub(crate) fn node_key(chain: ChainId, level: u32, index: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..4].copy_from_slice(&chain.get().to_be_bytes());
    // Levels run to 63 at most: a tree has fewer than 2^64 leaves.
    key[4] = level as u8;
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn indexed_size_key(chain: ChainId) -> Vec<u8> {
    let mut key = b"merkle-size/".to_vec();
    key.extend_from_slice(&chain.get().to_be_bytes());
    key
}

/// Returns the `merkle` column family, absent in an older ledger opened read-only.
pub(crate) fn merkle_family(db: &DB) -> Option<&rocksdb::ColumnFamily> {
    db.cf_handle(CF_MERKLE)
}

/// Adds the stored-size subtrees that `leaf` completes to `batch`.
pub(crate) fn push_leaf(
    tree: &mut MerkleAccumulator,
    chain: ChainId,
    leaf: &EventHash,
    batch: &mut WriteBatch,
    family: &rocksdb::ColumnFamily,
) {
    tree.push_reporting(leaf, |level, index, root| {
        if level >= STORED_LEVEL {
            batch.put_cf(family, node_key(chain, level, index), root.as_bytes());
        }
    });
}

/// Perfect subtree roots of one chain, read from the index or hashed from events.
pub(crate) struct StoredTree<'a> {
    shared: &'a Shared,
    chain: ChainId,
    /// The last blocks of leaf hashes read, by block number.
    blocks: Vec<(u64, Vec<EventHash>)>,
}

impl<'a> StoredTree<'a> {
    pub(crate) fn new(shared: &'a Shared, chain: ChainId) -> Self {
        Self {
            shared,
            chain,
            blocks: Vec::new(),
        }
    }

    fn corrupt(&self, reason: String) -> LedgerError {
        LedgerError::Corrupt {
            dir: self.shared.dir.clone(),
            reason,
        }
    }

    /// Returns the recorded hashes of block `number`: up to [`BLOCK`] events.
    fn block(&mut self, number: u64) -> Result<&[EventHash], LedgerError> {
        if let Some(found) = self.blocks.iter().position(|(block, _)| *block == number) {
            return Ok(&self.blocks[found].1);
        }
        let first = number * BLOCK;
        let hashes = read_hashes(
            self.shared,
            self.chain,
            Position::new(first),
            BLOCK as usize,
        )?;
        if self.blocks.len() >= 4 {
            self.blocks.remove(0);
        }
        self.blocks.push((number, hashes));
        Ok(&self.blocks.last().expect("a block was just added").1)
    }
}

impl From<MerkleError> for LedgerError {
    fn from(error: MerkleError) -> Self {
        LedgerError::Proof {
            reason: error.to_string(),
        }
    }
}

impl SubtreeSource for StoredTree<'_> {
    type Error = LedgerError;

    fn perfect_root(&mut self, level: u32, index: u64) -> Result<Hash32, LedgerError> {
        if level >= STORED_LEVEL {
            let db = &self.shared.db;
            if let Some(family) = merkle_family(db) {
                let stored = db
                    .get_cf(family, node_key(self.chain, level, index))
                    .map_err(|error| LedgerError::from_rocksdb("read the Merkle index", error))?;
                if let Some(value) = stored {
                    let bytes: [u8; 32] = value.as_slice().try_into().map_err(|_| {
                        self.corrupt(format!(
                            "Merkle node level {level} index {index} of chain {} has {} bytes",
                            self.chain,
                            value.len()
                        ))
                    })?;
                    return Ok(Hash32::from_bytes(bytes));
                }
            }
            let left = self.perfect_root(level - 1, index * 2)?;
            let right = self.perfect_root(level - 1, index * 2 + 1)?;
            return Ok(merkle::node_hash(&left, &right));
        }

        let first = index << level;
        let size = 1_usize << level;
        let offset = (first % BLOCK) as usize;
        let chain = self.chain;
        let leaves = self.block(first / BLOCK)?;
        match leaves.get(offset..offset + size) {
            Some(leaves) => Ok(merkle::root(leaves)),
            None => {
                let missing = first / BLOCK * BLOCK + leaves.len() as u64;
                Err(self.corrupt(format!("chain {chain} has no event at position {missing}")))
            }
        }
    }
}

/// Reads the recorded hashes of up to `limit` consecutive events from `from`.
fn read_hashes(
    shared: &Shared,
    chain: ChainId,
    from: Position,
    limit: usize,
) -> Result<Vec<EventHash>, LedgerError> {
    let mut read_options = ReadOptions::default();
    read_options.set_iterate_upper_bound(
        keys::event_key(
            chain,
            Position::new(from.get().saturating_add(limit as u64)),
        )
        .to_vec(),
    );
    let start = keys::event_key(chain, from);
    let iterator = shared.db.iterator_cf_opt(
        events_family(&shared.db),
        read_options,
        IteratorMode::From(&start, Direction::Forward),
    );

    let mut hashes = Vec::with_capacity(limit);
    for entry in iterator {
        let (key, value) = entry.map_err(|error| LedgerError::from_rocksdb("read", error))?;
        let expected = Position::new(from.get() + hashes.len() as u64);
        let corrupt = |reason: String| LedgerError::Corrupt {
            dir: shared.dir.clone(),
            reason,
        };
        if keys::parse_event_key(&key) != Some((chain, expected)) {
            return Err(corrupt(format!(
                "chain {chain} has no event at position {expected}"
            )));
        }
        let (hash, _) = keys::split_event_value(&value)
            .ok_or_else(|| corrupt(format!("event {expected} of chain {chain} has no hash")))?;
        hashes.push(hash);
    }
    Ok(hashes)
}

/// Rebuilds the accumulator of the first `size` leaves from perfect subtree roots.
pub(crate) fn accumulator_at(
    shared: &Shared,
    chain: ChainId,
    size: u64,
) -> Result<MerkleAccumulator, LedgerError> {
    let mut tree = StoredTree::new(shared, chain);
    let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0;
    for level in (0..u64::BITS).rev() {
        if size & (1 << level) != 0 {
            subtrees.push(tree.perfect_root(level, start >> level)?);
            start += 1 << level;
        }
    }
    Ok(MerkleAccumulator::from_subtrees(size, subtrees))
}

/// Loads each chain's tree at its head, first indexing what an older ledger lacks.
///
/// # Errors
///
/// [`LedgerError::Corrupt`] when a chain's events are missing or its stored nodes do
/// not give the root of its last checkpoint: appending would extend or sign a wrong
/// tree. A read-only open loads no trees, so verification still locates the damage.
pub(crate) fn load_trees(
    shared: &Shared,
    heads: &HashMap<ChainId, Position>,
) -> Result<HashMap<ChainId, MerkleAccumulator>, LedgerError> {
    let mut trees = HashMap::with_capacity(heads.len());
    for (&chain, &head) in heads {
        trees.insert(chain, load_tree(shared, chain, head)?);
    }
    Ok(trees)
}

fn load_tree(
    shared: &Shared,
    chain: ChainId,
    head: Position,
) -> Result<MerkleAccumulator, LedgerError> {
    let db = &shared.db;
    let family = merkle_family(db).expect("a writable ledger has the merkle column family");
    let meta = meta_family(db);
    let corrupt = |reason: String| LedgerError::Corrupt {
        dir: shared.dir.clone(),
        reason,
    };

    let indexed = match db
        .get_cf(meta, indexed_size_key(chain))
        .map_err(|error| LedgerError::from_rocksdb("open", error))?
    {
        None => 0,
        Some(value) => u64::from_be_bytes(value.as_slice().try_into().map_err(|_| {
            corrupt(format!(
                "indexed size of chain {chain} has the wrong length"
            ))
        })?),
    };
    if indexed > head.get() {
        return Err(corrupt(format!(
            "the Merkle index of chain {chain} covers {indexed} events, but the chain has {head}"
        )));
    }

    let mut tree = accumulator_at(shared, chain, indexed)?;
    check_against_checkpoint(shared, chain, &tree)?;
    if tree.len() < head.get() {
        tracing::info!(chain = %chain, from = tree.len(), to = %head, "indexing the Merkle tree");
    }
    while tree.len() < head.get() {
        let hashes = read_hashes(shared, chain, Position::new(tree.len()), INDEX_BATCH)?;
        if hashes.is_empty() {
            return Err(corrupt(format!(
                "chain {chain} has no event at position {}",
                tree.len()
            )));
        }
        let mut batch = WriteBatch::default();
        for hash in hashes.iter().take((head.get() - tree.len()) as usize) {
            push_leaf(&mut tree, chain, hash, &mut batch, family);
        }
        batch.put_cf(meta, indexed_size_key(chain), tree.len().to_be_bytes());
        let mut options = WriteOptions::default();
        options.set_sync(true);
        db.write_opt(batch, &options)
            .map_err(|error| LedgerError::from_rocksdb("index the Merkle tree", error))?;
    }
    Ok(tree)
}

/// Checks the tree that the stored nodes give against the chain's last signed
/// checkpoint, so that a damaged node is never signed into a new checkpoint.
///
/// The stored nodes must give the checkpoint's root at its tree size. From there, the
/// recorded hashes of the events after it, which are few because checkpoints are
/// frequent, must lead to the same root as `tree`. A chain without a checkpoint has no
/// signed root to compare with and is not checked.
fn check_against_checkpoint(
    shared: &Shared,
    chain: ChainId,
    tree: &MerkleAccumulator,
) -> Result<(), LedgerError> {
    let Some(position) = super::checkpoints::last_checkpoint(&shared.db, &shared.dir, chain)?
    else {
        return Ok(());
    };
    let corrupt = |reason: String| LedgerError::Corrupt {
        dir: shared.dir.clone(),
        reason,
    };
    let raw = super::read::read_raw(shared, chain, position, 1)?
        .into_iter()
        .next()
        .filter(|raw| raw.position == position)
        .ok_or_else(|| corrupt(format!("chain {chain} has no event at position {position}")))?;
    let signed = match consign_schemas::Envelope::decode(&raw.bytes).map(|envelope| envelope.event)
    {
        Ok(consign_schemas::events::Event::CheckpointSigned(signed)) => signed,
        _ => {
            return Err(corrupt(format!(
                "the last checkpoint of chain {chain} is recorded at position {position}, \
                 which holds no checkpoint"
            )));
        }
    };
    if signed.tree_size > tree.len() {
        // The index does not reach the checkpoint yet; it is built from the events.
        return Ok(());
    }

    let mismatch = || {
        corrupt(format!(
            "the Merkle index of chain {chain} does not give the root that the checkpoint \
             at position {position} signed; run `consign ledger verify`"
        ))
    };
    let mut rebuilt = accumulator_at(shared, chain, signed.tree_size)?;
    if rebuilt.root() != signed.root_hash {
        return Err(mismatch());
    }
    while rebuilt.len() < tree.len() {
        let limit = usize::try_from(tree.len() - rebuilt.len())
            .unwrap_or(usize::MAX)
            .min(INDEX_BATCH);
        let hashes = read_hashes(shared, chain, Position::new(rebuilt.len()), limit)?;
        if hashes.is_empty() {
            return Err(corrupt(format!(
                "chain {chain} has no event at position {}",
                rebuilt.len()
            )));
        }
        for hash in &hashes {
            rebuilt.push(hash);
        }
    }
    if rebuilt.root() != tree.root() {
        return Err(mismatch());
    }
    Ok(())
}

impl EmbeddedLedger {
    /// Returns the Merkle tree head over every committed event of `chain`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`] and storage failures.
    pub fn tree_head(&self, chain: ChainId) -> Result<TreeHead, LedgerError> {
        let size = self.next_position(chain)?.get();
        let committed = self
            .shared
            .trees
            .lock()
            .expect("trees lock poisoned")
            .get(&chain)
            .filter(|tree| tree.len() == size)
            .map(MerkleAccumulator::root);
        let root = match committed {
            Some(root) => root,
            None => self.tree_root(chain, size)?,
        };
        Ok(TreeHead {
            chain,
            tree_size: size,
            root,
        })
    }

    /// Returns the Merkle root of the first `tree_size` events of `chain`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::TreeBeyondHead`] when the chain has fewer events, and storage
    /// failures.
    pub fn tree_root(&self, chain: ChainId, tree_size: u64) -> Result<Hash32, LedgerError> {
        self.check_tree_size(chain, tree_size)?;
        source::tree_root(&mut StoredTree::new(&self.shared, chain), tree_size)
    }

    /// Builds the inclusion proof of the event at `position` in the tree of the first
    /// `tree_size` events of `chain`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::TreeBeyondHead`], [`LedgerError::Proof`] when `position` is not
    /// below `tree_size`, and storage failures.
    pub fn inclusion_proof(
        &self,
        chain: ChainId,
        position: Position,
        tree_size: u64,
    ) -> Result<Vec<Hash32>, LedgerError> {
        self.check_tree_size(chain, tree_size)?;
        source::inclusion_proof_from(
            &mut StoredTree::new(&self.shared, chain),
            position.get(),
            tree_size,
        )
    }

    /// Builds the proof that the tree of the first `old_size` events of `chain` is a
    /// prefix of the tree of the first `new_size`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::TreeBeyondHead`], [`LedgerError::Proof`] when `old_size` is
    /// larger than `new_size`, and storage failures.
    pub fn consistency_proof(
        &self,
        chain: ChainId,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash32>, LedgerError> {
        self.check_tree_size(chain, new_size)?;
        source::consistency_proof_from(
            &mut StoredTree::new(&self.shared, chain),
            old_size,
            new_size,
        )
    }

    fn check_tree_size(&self, chain: ChainId, tree_size: u64) -> Result<(), LedgerError> {
        let events = self.next_position(chain)?.get();
        if tree_size > events {
            return Err(LedgerError::TreeBeyondHead {
                chain,
                tree_size,
                events,
            });
        }
        Ok(())
    }
}
