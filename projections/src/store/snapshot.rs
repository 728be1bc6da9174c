//! Reads from one snapshot, so that a read function returns the state at one set of
//! positions even while batches are applied.
//!
//! The state digest is one BLAKE3 hash over a view's whole state. Equal digests show
//! that two stores built from the same log prefix contain byte-identical state.

use consign_schemas::Hash32;
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, SnapshotWithThreadMode};

use super::{Entry, Positions, ViewStore, position_prefix, read_positions};
use crate::error::ProjectionError;
use crate::keys;

/// A view's state digest and the positions it reflects, read from one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewDigest {
    pub view: String,
    /// Next position to apply in each chain.
    pub positions: Positions,
    /// BLAKE3 over every entry in key order, each as key length (u64 BE), key, value
    /// length (u64 BE), value. The positions are not part of it.
    pub state: Hash32,
    /// Number of entries in the state.
    pub entries: u64,
}

/// A consistent view of the store at one moment.
pub(crate) struct SnapshotReader<'a> {
    store: &'a ViewStore,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl ViewStore {
    /// Takes a snapshot of every view and its positions.
    pub(crate) fn reader(&self) -> SnapshotReader<'_> {
        SnapshotReader {
            store: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// Computes the state digest of `view` and reads its positions, both from one
    /// snapshot, so a concurrent batch is either in both or in neither.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::UnknownView`] and storage failures.
    pub fn digest(&self, view: &str) -> Result<ViewDigest, ProjectionError> {
        let reader = self.reader();
        let positions = reader.positions(view)?;

        let mut hasher = blake3::Hasher::new();
        let mut entries = 0u64;
        for entry in reader.scan(view, Vec::new(), None, Direction::Forward)? {
            let (key, value) = entry?;
            hash_entry(&mut hasher, &key, &value);
            entries += 1;
        }

        Ok(ViewDigest {
            view: view.to_owned(),
            positions,
            state: Hash32::from_bytes(*hasher.finalize().as_bytes()),
            entries,
        })
    }
}

impl SnapshotReader<'_> {
    /// Reads the next position of `view` in each chain.
    pub(crate) fn positions(&self, view: &str) -> Result<Positions, ProjectionError> {
        self.store.family(view)?;
        let prefix = position_prefix(view);
        let mut read_options = ReadOptions::default();
        if let Some(end) = keys::prefix_end(&prefix) {
            read_options.set_iterate_upper_bound(end);
        }
        let entries = self.snapshot.iterator_cf_opt(
            self.store.positions_family(),
            read_options,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        read_positions(self.store.chain_count, &prefix, entries)
    }

    /// Reads the value of `view` at `key`.
    pub(crate) fn get(&self, view: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        let family = self.store.family(view)?;
        self.snapshot
            .get_cf(family, key)
            .map_err(|error| ProjectionError::from_rocksdb("read", error))
    }

    /// Reads the entries of `view` with keys in `lower..upper` (no upper bound when
    /// `None`), in key order or in reverse.
    pub(crate) fn scan(
        &self,
        view: &str,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
        direction: Direction,
    ) -> Result<impl Iterator<Item = Result<Entry, ProjectionError>> + '_, ProjectionError> {
        let family = self.store.family(view)?;
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(lower);
        if let Some(upper) = upper {
            read_options.set_iterate_upper_bound(upper);
        }
        let mode = match direction {
            Direction::Forward => IteratorMode::Start,
            Direction::Reverse => IteratorMode::End,
        };
        Ok(self
            .snapshot
            .iterator_cf_opt(family, read_options, mode)
            .map(|entry| entry.map_err(|error| ProjectionError::from_rocksdb("read", error))))
    }

    /// Reads the entries of `view` whose keys start with `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        view: &str,
        prefix: &[u8],
    ) -> Result<impl Iterator<Item = Result<Entry, ProjectionError>> + '_, ProjectionError> {
        self.scan(
            view,
            prefix.to_vec(),
            keys::prefix_end(prefix),
            Direction::Forward,
        )
    }
}

/// Feeds one entry into a digest: lengths first, so no two entry lists hash alike.
fn hash_entry(hasher: &mut blake3::Hasher, key: &[u8], value: &[u8]) {
    hasher.update(&(key.len() as u64).to_be_bytes());
    hasher.update(key);
    hasher.update(&(value.len() as u64).to_be_bytes());
    hasher.update(value);
}
