//! Opening the view store: its column families, the format marker, the chain count and
//! each view's version.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use rocksdb::{ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options, WriteBatch};
use tokio::sync::watch;

use super::{CF_META, CF_POSITIONS, ViewStore, ViewStoreOptions, position_key};
use crate::error::ProjectionError;
use crate::projection::{Projection, check_view_name};

const FORMAT_KEY: &[u8] = b"format";
/// Marker of this store layout; a store with another marker is rejected.
const FORMAT: &str = "consign views v1";
const CHAIN_COUNT_KEY: &[u8] = b"chain-count";

fn version_key(view: &str) -> Vec<u8> {
    [b"version/", view.as_bytes()].concat()
}

pub(super) fn open(
    dir: &Path,
    options: &ViewStoreOptions,
    views: &[&dyn Projection],
) -> Result<ViewStore, ProjectionError> {
    let mut names = BTreeSet::new();
    for view in views {
        check_view_name(view.name())?;
        if !names.insert(view.name()) {
            return Err(ProjectionError::InvalidViewName {
                name: format!("{} (given twice)", view.name()),
            });
        }
    }
    if options.chain_count == 0 {
        return Err(ProjectionError::NoChains);
    }

    std::fs::create_dir_all(dir).map_err(|cause| ProjectionError::DataDir {
        dir: dir.to_path_buf(),
        cause,
    })?;
    let db = open_database(dir, &names)?;
    check_meta(&db, dir, options.chain_count)?;

    let store = ViewStore {
        db,
        dir: dir.to_path_buf(),
        chain_count: options.chain_count,
        sync: options.sync,
        write_lock: Mutex::new(()),
        commits: watch::Sender::new(0),
    };
    for view in views {
        check_version(&store, *view)?;
    }
    tracing::info!(dir = %dir.display(), views = names.len(), chains = options.chain_count, "view store opened");
    Ok(store)
}

/// Opens the database with every family it already has, plus `meta`, `positions` and
/// one per view. RocksDB refuses an open that leaves out an existing family.
fn open_database(dir: &Path, views: &BTreeSet<&str>) -> Result<DB, ProjectionError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(4);

    // A missing database has no families yet; any other failure shows again in the open.
    let existing = DB::list_cf(&Options::default(), dir).unwrap_or_default();
    let mut families: BTreeSet<String> = existing.into_iter().collect();
    families.extend([CF_META, CF_POSITIONS].map(str::to_owned));
    families.extend(views.iter().map(|name| (*name).to_owned()));

    let descriptors = families.into_iter().map(|name| {
        let mut family_options = Options::default();
        family_options.set_compression_type(DBCompressionType::Lz4);
        ColumnFamilyDescriptor::new(name, family_options)
    });
    DB::open_cf_descriptors(&options, dir, descriptors)
        .map_err(|error| ProjectionError::from_rocksdb("open", error))
}

/// Writes the format marker and chain count into a new store, or checks them in an
/// existing one.
fn check_meta(db: &DB, dir: &Path, chain_count: u32) -> Result<(), ProjectionError> {
    let meta = db.cf_handle(CF_META).expect("open creates the meta family");
    let read = |key: &[u8]| {
        db.get_cf(meta, key)
            .map_err(|error| ProjectionError::from_rocksdb("open", error))
    };

    match (read(FORMAT_KEY)?, read(CHAIN_COUNT_KEY)?) {
        (None, None) => {
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, FORMAT_KEY, FORMAT);
            batch.put_cf(meta, CHAIN_COUNT_KEY, chain_count.to_be_bytes());
            write_synced(db, batch)
        }
        (Some(format), Some(stored)) => {
            if format != FORMAT.as_bytes() {
                return Err(ProjectionError::FormatMismatch {
                    dir: dir.to_path_buf(),
                    found: String::from_utf8_lossy(&format).into_owned(),
                    expected: FORMAT,
                });
            }
            let stored: [u8; 4] = stored.as_slice().try_into().map_err(|_| {
                ProjectionError::corrupt(CF_META, CHAIN_COUNT_KEY, "chain count is not 4 bytes")
            })?;
            let stored = u32::from_be_bytes(stored);
            if stored != chain_count {
                return Err(ProjectionError::ChainCountMismatch {
                    dir: dir.to_path_buf(),
                    stored,
                    ledger: chain_count,
                });
            }
            Ok(())
        }
        (format, _) => Err(ProjectionError::corrupt(
            CF_META,
            if format.is_none() {
                FORMAT_KEY
            } else {
                CHAIN_COUNT_KEY
            },
            "the format marker and the chain count are stored together, but one is missing",
        )),
    }
}

/// Records the version of a view new to the store, or resets a view whose stored
/// version differs.
fn check_version(store: &ViewStore, view: &dyn Projection) -> Result<(), ProjectionError> {
    let meta = store
        .db
        .cf_handle(CF_META)
        .expect("open creates the meta family");
    let key = version_key(view.name());
    let stored = store
        .db
        .get_cf(meta, &key)
        .map_err(|error| ProjectionError::from_rocksdb("open", error))?;

    match stored {
        None => {
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, &key, view.version().to_be_bytes());
            write_synced(&store.db, batch)
        }
        Some(bytes) if bytes == view.version().to_be_bytes() => Ok(()),
        Some(bytes) => {
            tracing::warn!(
                view = view.name(),
                stored = hex::encode(&bytes),
                version = view.version(),
                "view version changed; deleting its state for a rebuild"
            );
            store.reset(view)
        }
    }
}

/// Builds the write that deletes a view's state and positions and records its current
/// version.
pub(super) fn reset_batch(
    store: &ViewStore,
    view: &dyn Projection,
) -> Result<WriteBatch, ProjectionError> {
    let name = view.name();
    let family = store.family(name)?;
    let meta = store
        .db
        .cf_handle(CF_META)
        .expect("open creates the meta family");
    let mut batch = WriteBatch::default();

    // A range delete up to just past the last key removes every key of the family.
    if let Some(last) = store.db.iterator_cf(family, IteratorMode::End).next() {
        let (last, _) = last.map_err(|error| ProjectionError::from_rocksdb("read", error))?;
        let mut end = last.into_vec();
        end.push(0);
        batch.delete_range_cf(family, &[][..], &end[..]);
    }
    for chain in store.chains() {
        batch.delete_cf(store.positions_family(), position_key(name, chain));
    }
    batch.put_cf(meta, version_key(name), view.version().to_be_bytes());
    Ok(batch)
}

fn write_synced(db: &DB, batch: WriteBatch) -> Result<(), ProjectionError> {
    let mut write_options = rocksdb::WriteOptions::default();
    write_options.set_sync(true);
    db.write_opt(batch, &write_options)
        .map_err(|error| ProjectionError::from_rocksdb("open", error))
}
