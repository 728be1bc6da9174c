//! [`ViewStore`]: the persisted views in a RocksDB database of their own.
//!
//! Column families:
//!
//! | family | key | value |
//! | --- | --- | --- |
//! | `meta` | `format`, `chain-count`, `version/<view>` | format marker, chain count (u32 BE), view version (u32 BE) |
//! | `positions` | view name, `0x00`, chain (u32 BE) | next position to apply (u64 BE) |
//! | one per view | the view's keys | the view's values |
//!
//! A batch of events is applied to every view in memory first, and then each view's
//! state changes and its new positions are written in one `WriteBatch`, fsynced by
//! default. After a crash a view therefore has either all of a batch or none of it,
//! and its positions record which.

mod open;
mod snapshot;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use consign_ledger::StoredEvent;
use consign_schemas::{ChainId, Position};
use rocksdb::{ColumnFamily, DB, WriteBatch, WriteOptions};
use tokio::sync::watch;

use crate::error::ProjectionError;
use crate::keys;
use crate::projection::Projection;

pub use snapshot::ViewDigest;
pub use state::ViewState;
pub(crate) use state::decode;

pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_POSITIONS: &str = "positions";

/// The next position to apply in each chain, for every chain of the ledger.
pub type Positions = BTreeMap<ChainId, Position>;

/// A key and value read from a view.
pub(crate) type Entry = (Box<[u8]>, Box<[u8]>);

/// Settings for opening a view store.
#[derive(Clone, Debug)]
pub struct ViewStoreOptions {
    /// Number of chains of the ledger the views are built from. A store built for
    /// another count is rejected.
    pub chain_count: u32,
    /// Fsync every applied batch. Turning this off risks losing the last batches in a
    /// power failure, which a restart then applies again; it is meant for tests.
    pub sync: bool,
}

impl ViewStoreOptions {
    /// Options for a ledger of `chain_count` chains, with fsync on.
    pub fn new(chain_count: u32) -> Self {
        Self {
            chain_count,
            sync: true,
        }
    }
}

/// An open view store. Reads may run concurrently with each other and with one writer;
/// batches are applied one at a time.
pub struct ViewStore {
    db: DB,
    dir: PathBuf,
    chain_count: u32,
    sync: bool,
    /// Held while a batch is built and written, so that two writers never apply the
    /// same positions or interleave read-modify-write of a shared key.
    write_lock: Mutex<()>,
    /// Counts committed batches, so that readers can wait for a position.
    commits: watch::Sender<u64>,
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore")
            .field("dir", &self.dir)
            .field("chain_count", &self.chain_count)
            .finish()
    }
}

impl ViewStore {
    /// Opens the view store in `dir`, creating it if missing, with a column family for
    /// each of `views`.
    ///
    /// A view whose stored version differs from [`Projection::version`] loses its state
    /// and positions, in one write, so that the next catch-up rebuilds it.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::DataDir`] when the directory cannot be created,
    /// [`ProjectionError::FormatMismatch`] for a store of another format,
    /// [`ProjectionError::ChainCountMismatch`] for a store built for another ledger,
    /// [`ProjectionError::InvalidViewName`], and storage failures, among them another
    /// process holding the store open.
    pub fn open(
        dir: impl AsRef<Path>,
        options: &ViewStoreOptions,
        views: &[&dyn Projection],
    ) -> Result<Self, ProjectionError> {
        open::open(dir.as_ref(), options, views)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn chain_count(&self) -> u32 {
        self.chain_count
    }

    /// Returns every chain of the ledger the store was built for, in order.
    pub fn chains(&self) -> impl Iterator<Item = ChainId> + use<> {
        (0..self.chain_count).map(ChainId::new)
    }

    pub(crate) fn family(&self, view: &str) -> Result<&ColumnFamily, ProjectionError> {
        if [CF_META, CF_POSITIONS].contains(&view) {
            return Err(ProjectionError::UnknownView {
                view: view.to_owned(),
            });
        }
        self.db
            .cf_handle(view)
            .ok_or_else(|| ProjectionError::UnknownView {
                view: view.to_owned(),
            })
    }

    fn positions_family(&self) -> &ColumnFamily {
        self.db
            .cf_handle(CF_POSITIONS)
            .expect("open creates the positions family")
    }

    fn check_chain(&self, chain: ChainId) -> Result<(), ProjectionError> {
        if chain.get() >= self.chain_count {
            return Err(ProjectionError::UnknownChain {
                chain,
                chains: self.chain_count,
            });
        }
        Ok(())
    }

    /// Returns the next position `view` will apply in each chain.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::UnknownView`], storage failures and a stored position that is
    /// not 8 bytes.
    pub fn positions(&self, view: &str) -> Result<Positions, ProjectionError> {
        self.reader().positions(view)
    }

    /// Returns the next position `view` will apply in `chain`.
    ///
    /// # Errors
    ///
    /// As [`Self::positions`], and [`ProjectionError::UnknownChain`].
    pub fn position(&self, view: &str, chain: ChainId) -> Result<Position, ProjectionError> {
        self.family(view)?;
        self.check_chain(chain)?;
        let key = position_key(view, chain);
        let value = self
            .db
            .get_cf(self.positions_family(), &key)
            .map_err(|error| ProjectionError::from_rocksdb("read", error))?;
        match value {
            None => Ok(Position::ZERO),
            Some(bytes) => decode_position(&key, &bytes),
        }
    }

    /// Returns a receiver that changes after every write of view state.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Waits until `view` has applied the event at `position` of `chain`, so that a
    /// read after an append returns the appended events.
    ///
    /// # Errors
    ///
    /// As [`Self::position`].
    pub async fn wait_for(
        &self,
        view: &str,
        chain: ChainId,
        position: Position,
    ) -> Result<(), ProjectionError> {
        let mut commits = self.commits.subscribe();
        loop {
            if self.position(view, chain)? > position {
                return Ok(());
            }
            // `changed` fails only once the sender is dropped, which `self` prevents.
            let _ = commits.changed().await;
        }
    }

    /// Applies `events` to every view in `views` and writes all their state changes
    /// and new positions in one write. Returns the number of events that at least one
    /// view applied.
    ///
    /// The events of each chain must come in position order; chains may interleave.
    /// A view skips an event before its next position, so applying an overlap again
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::Gap`] for an event after a view's next position,
    /// [`ProjectionError::UnknownChain`], [`ProjectionError::UnknownView`], a view's own
    /// apply error, and storage failures. Nothing of the batch is written then.
    pub fn apply(
        &self,
        views: &[&dyn Projection],
        events: &[StoredEvent],
    ) -> Result<u64, ProjectionError> {
        for event in events {
            self.check_chain(event.chain())?;
        }
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());

        let mut batch = WriteBatch::default();
        let mut applied = vec![false; events.len()];
        for view in views {
            let name = view.name();
            let family = self.family(name)?;
            let mut positions = self.positions(name)?;
            let mut advanced = BTreeSet::new();
            let mut state = ViewState::over_store(name, &self.db, family);

            for (index, event) in events.iter().enumerate() {
                let chain = event.chain();
                let expected = positions[&chain];
                if event.position() < expected {
                    continue;
                }
                if event.position() > expected {
                    return Err(ProjectionError::Gap {
                        view: name.to_owned(),
                        chain,
                        position: event.position(),
                        expected,
                    });
                }
                view.apply(event, &mut state)?;
                positions.insert(chain, event.position().next());
                advanced.insert(chain);
                applied[index] = true;
            }

            for (key, value) in state.take_pending() {
                match value {
                    Some(value) => batch.put_cf(family, key, value),
                    None => batch.delete_cf(family, key),
                }
            }
            for chain in advanced {
                let next = positions[&chain].get().to_be_bytes();
                batch.put_cf(self.positions_family(), position_key(name, chain), next);
            }
        }

        if batch.is_empty() {
            return Ok(0);
        }
        self.write(batch)?;
        self.commits.send_modify(|count| *count += 1);
        Ok(applied.iter().filter(|applied| **applied).count() as u64)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), ProjectionError> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(self.sync);
        self.db
            .write_opt(batch, &write_options)
            .map_err(|error| ProjectionError::from_rocksdb("write", error))
    }

    /// Deletes the state and positions of `view` in one write, so that the next
    /// catch-up rebuilds it from position zero.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::UnknownView`] and storage failures.
    pub fn reset(&self, view: &dyn Projection) -> Result<(), ProjectionError> {
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let batch = open::reset_batch(self, view)?;
        self.write(batch)?;
        self.commits.send_modify(|count| *count += 1);
        tracing::info!(view = view.name(), dir = %self.dir.display(), "view reset for a rebuild");
        Ok(())
    }
}

/// Returns the key prefix of a view's positions: its name and a zero byte, which no
/// view name contains.
fn position_prefix(view: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(view.len() + 1);
    prefix.extend_from_slice(view.as_bytes());
    prefix.push(0);
    prefix
}

fn position_key(view: &str, chain: ChainId) -> Vec<u8> {
    let mut key = position_prefix(view);
    key.extend_from_slice(&chain.get().to_be_bytes());
    key
}

fn decode_position(key: &[u8], bytes: &[u8]) -> Result<Position, ProjectionError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| ProjectionError::corrupt(CF_POSITIONS, key, "position is not 8 bytes"))?;
    Ok(Position::new(u64::from_be_bytes(bytes)))
}

/// Reads the positions of one view from an iterator over its `positions` entries;
/// chains without an entry are at position zero.
fn read_positions(
    chain_count: u32,
    prefix: &[u8],
    entries: impl Iterator<Item = Result<Entry, rocksdb::Error>>,
) -> Result<Positions, ProjectionError> {
    let mut positions: Positions = (0..chain_count)
        .map(|chain| (ChainId::new(chain), Position::ZERO))
        .collect();
    for entry in entries {
        let (key, value) = entry.map_err(|error| ProjectionError::from_rocksdb("read", error))?;
        let chain = keys::field::<4>(&key, prefix.len())
            .filter(|_| key.len() == prefix.len() + 4)
            .map(|bytes| ChainId::new(u32::from_be_bytes(bytes)))
            .ok_or_else(|| {
                ProjectionError::corrupt(CF_POSITIONS, &key, "key is not a view and chain")
            })?;
        if chain.get() >= chain_count {
            return Err(ProjectionError::corrupt(
                CF_POSITIONS,
                &key,
                format!("chain {chain} is past the chain count {chain_count}"),
            ));
        }
        positions.insert(chain, decode_position(&key, &value)?);
    }
    Ok(positions)
}
