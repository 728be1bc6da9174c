//! Opening the data directory: the process lock, the RocksDB database and the heads.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use consign_schemas::{ChainId, Position, Timestamp, genesis_hash};
use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, ErrorKind, Options};
use tokio::sync::watch;

use super::tree::CF_MERKLE;
use super::{CF_EVENTS, CF_IDEMPOTENCY, CF_META, EmbeddedOptions, Shared};
use crate::error::{LedgerError, READ, READ_WRITE};
use crate::keys::{self, Head};

const LOCK_FILE: &str = "consign.lock";
const DATABASE_DIR: &str = "ledger";

pub(super) struct Opened {
    pub(super) shared: Shared,
    pub(super) lock: Option<File>,
}

/// Most chains a ledger may have; a stored count outside 1 to this is corruption.
const MAX_CHAINS: u32 = 65_536;

pub(super) fn open(dir: &Path, options: &EmbeddedOptions) -> Result<Opened, LedgerError> {
    let access = if options.read_only { READ } else { READ_WRITE };
    let data_dir_error = |source| LedgerError::DataDir {
        dir: dir.to_path_buf(),
        cause: source,
        access,
    };

    if options.read_only {
        if !dir.is_dir() {
            check_existing_ledger(dir)?;
        }
    } else {
        std::fs::create_dir_all(dir).map_err(data_dir_error)?;
    }
    let dir = dir.canonicalize().map_err(data_dir_error)?;
    let lock = if options.read_only {
        // The lock comes first: a writer that holds it may not have created the
        // database yet, and a reader must learn that the directory is in use.
        let lock = lock_directory_shared(&dir)?;
        check_existing_ledger(&dir)?;
        lock
    } else {
        Some(lock_directory(&dir)?)
    };

    let db = open_database(&dir, options.read_only)?;
    let chain_count = read_or_store_chain_count(&db, &dir, options.chains, options.read_only)?;

    let mut heads = HashMap::new();
    let mut watchers = HashMap::new();
    for number in 0..chain_count {
        let chain = ChainId::new(number);
        let head = read_head(&db, &dir, chain)?;
        if !options.read_only {
            check_head(&db, &dir, chain, &head)?;
        }
        watchers.insert(chain, watch::Sender::new(head.next));
        heads.insert(chain, head);
    }

    let mut shared = Shared {
        db,
        dir,
        chain_count,
        heads: Mutex::new(heads),
        trees: Mutex::new(HashMap::new()),
        watchers,
        write_failure: Mutex::new(None),
    };
    if !options.read_only {
        let sizes = shared
            .heads
            .get_mut()
            .expect("heads lock poisoned")
            .iter()
            .map(|(chain, head)| (*chain, head.next))
            .collect();
        let trees = super::tree::load_trees(&shared, &sizes)?;
        *shared.trees.get_mut().expect("trees lock poisoned") = trees;
    }

    tracing::info!(dir = %shared.dir.display(), chains = chain_count, read_only = options.read_only, "ledger opened");
    Ok(Opened { shared, lock })
}

/// Checks that `dir` contains a database before a read-only open, telling a missing
/// directory or database apart from one this user cannot read.
fn check_existing_ledger(dir: &Path) -> Result<(), LedgerError> {
    let not_found = |reason: &str| LedgerError::NotFound {
        dir: dir.to_path_buf(),
        reason: reason.to_owned(),
    };
    let data_dir_error = |cause| LedgerError::DataDir {
        dir: dir.to_path_buf(),
        cause,
        access: READ,
    };

    match std::fs::metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found("the directory does not exist"));
        }
        Err(error) => return Err(data_dir_error(error)),
        Ok(metadata) if !metadata.is_dir() => {
            return Err(data_dir_error(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Ok(_) => {}
    }
    check_current_present(dir)?;
    match std::fs::metadata(dir.join(DATABASE_DIR).join("CURRENT")) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(not_found("it has no ledger/CURRENT file"))
        }
        Err(error) => Err(data_dir_error(error)),
    }
}

/// Takes a shared lock for a read-only open, so a writing process keeps readers out
/// and readers do not keep each other out. A lock file that does not exist and cannot
/// be created, as on a read-only copy, means no lock is needed.
fn lock_directory_shared(dir: &Path) -> Result<Option<File>, LedgerError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(LedgerError::DataDir {
                dir: dir.to_path_buf(),
                cause: error,
                access: READ,
            });
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            Err(LedgerError::Locked {
                dir: dir.to_path_buf(),
                holder,
            })
        }
        Err(TryLockError::Error(error)) => Err(LedgerError::DataDir {
            dir: dir.to_path_buf(),
            cause: error,
            access: READ,
        }),
    }
}

/// Attempts, 10 ms apart, to take a lock that this process's own id holds.
const OWN_LOCK_TRIES: u32 = 100;

/// Takes an exclusive OS lock on the directory's lock file and records this process id.
///
/// The kernel releases the lock when the process dies, so a crash never leaves the
/// directory locked.
fn lock_directory(dir: &Path) -> Result<File, LedgerError> {
    let path = dir.join(LOCK_FILE);
    let data_dir_error = |source| LedgerError::DataDir {
        dir: dir.to_path_buf(),
        cause: source,
        access: READ_WRITE,
    };

    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(data_dir_error)?;

    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                file.rewind().map_err(data_dir_error)?;
                let holder: Option<u32> = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                // The lock of a handle this process just closed can outlive it for a
                // moment: a child process started meanwhile shares the open file until
                // it runs its program. So this process's own lock is tried again.
                tries += 1;
                if holder == Some(std::process::id()) && tries < OWN_LOCK_TRIES {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                return Err(LedgerError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(source)) => return Err(data_dir_error(source)),
        }
    }

    file.set_len(0).map_err(data_dir_error)?;
    file.rewind().map_err(data_dir_error)?;
    writeln!(file, "{}", std::process::id()).map_err(data_dir_error)?;
    Ok(file)
}

/// Returns an error when `ledger/` has database files but no `CURRENT` file.
///
/// RocksDB would create a new, empty database there and delete the table files of the
/// old one, so every event would be lost. A folder that was only being created when
/// its process stopped looks the same, which the message covers.
pub(super) fn check_current_present(dir: &Path) -> Result<(), LedgerError> {
    let path = dir.join(DATABASE_DIR);
    if path.join("CURRENT").exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(&path) else {
        return Ok(());
    };
    let database_file = entries.filter_map(Result::ok).find(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".sst")
            || name.ends_with(".log")
            || name.starts_with("MANIFEST-")
            || name.starts_with("OPTIONS-")
    });
    match database_file {
        None => Ok(()),
        Some(found) => Err(LedgerError::Corrupt {
            dir: dir.to_path_buf(),
            reason: format!(
                "{} has database files such as {} but no CURRENT file, and opening it would \
                 create an empty ledger over them; if it never held events, delete {} instead",
                path.display(),
                found.file_name().to_string_lossy(),
                path.display()
            ),
        }),
    }
}

fn open_database(dir: &Path, read_only: bool) -> Result<DB, LedgerError> {
    if !read_only {
        check_current_present(dir)?;
    }
    let mut options = Options::default();
    options.create_if_missing(!read_only);
    options.create_missing_column_families(!read_only);
    // Recovery skips only a torn last record, which no acknowledged append can be: a
    // process killed mid-write leaves one, and read-only commands must still open the
    // ledger then. Damage anywhere else in the write-ahead log fails the open instead of
    // silently dropping every later event.
    options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    options.set_paranoid_checks(true);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(4);

    let mut events_options = Options::default();
    events_options.set_write_buffer_size(64 << 20);
    events_options.set_compression_type(rocksdb::DBCompressionType::Lz4);

    let mut families = vec![
        ColumnFamilyDescriptor::new(CF_EVENTS, events_options),
        ColumnFamilyDescriptor::new(CF_IDEMPOTENCY, Options::default()),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
    ];

    let path = dir.join(DATABASE_DIR);
    // A ledger written before the Merkle index has no such family; a read-only open
    // cannot create it and proves from the events instead.
    let has_merkle = !read_only
        || DB::list_cf(&options, &path)
            .is_ok_and(|names| names.iter().any(|name| name == CF_MERKLE));
    if has_merkle {
        families.push(ColumnFamilyDescriptor::new(CF_MERKLE, Options::default()));
    }
    let opened = if read_only {
        DB::open_cf_descriptors_read_only(&options, &path, families, false)
    } else {
        DB::open_cf_descriptors(&options, &path, families)
    };
    opened.map_err(|error| {
        let kind = error.kind();
        let reason = crate::error::rocksdb_reason(error);
        match kind {
            ErrorKind::Corruption => LedgerError::Corrupt {
                dir: dir.to_path_buf(),
                reason,
            },
            // A file that the database's own metadata names is missing.
            ErrorKind::IOError if reason.contains("No such file or directory") => {
                LedgerError::Corrupt {
                    dir: dir.to_path_buf(),
                    reason,
                }
            }
            ErrorKind::InvalidArgument if reason.contains("does not exist") => {
                LedgerError::Corrupt {
                    dir: dir.to_path_buf(),
                    reason,
                }
            }
            _ => LedgerError::from_storage_reason("open", reason),
        }
    })
}

fn read_or_store_chain_count(
    db: &DB,
    dir: &Path,
    requested: Option<u32>,
    read_only: bool,
) -> Result<u32, LedgerError> {
    let meta = db.cf_handle(CF_META).expect("meta column family exists");
    let corrupt = |reason: String| LedgerError::Corrupt {
        dir: dir.to_path_buf(),
        reason,
    };

    let format = db
        .get_cf(meta, keys::META_FORMAT)
        .map_err(|error| LedgerError::from_rocksdb("open", error))?;
    let stored = db
        .get_cf(meta, keys::META_CHAIN_COUNT)
        .map_err(|error| LedgerError::from_rocksdb("open", error))?;

    match (format, stored) {
        (None, None) if read_only => Err(LedgerError::NotFound {
            dir: dir.to_path_buf(),
            reason: "the database has no consign format marker".to_owned(),
        }),
        (None, None) => {
            let count = requested.unwrap_or(1);
            if count == 0 || count > MAX_CHAINS {
                return Err(LedgerError::ChainCountMismatch {
                    dir: dir.to_path_buf(),
                    stored: 0,
                    requested: 0,
                });
            }
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(meta, keys::META_FORMAT, keys::FORMAT_V1);
            batch.put_cf(meta, keys::META_CHAIN_COUNT, count.to_be_bytes());
            let mut write_options = rocksdb::WriteOptions::default();
            write_options.set_sync(true);
            db.write_opt(batch, &write_options)
                .map_err(|error| LedgerError::from_rocksdb("open", error))?;
            Ok(count)
        }
        (Some(format), Some(stored)) => {
            if format != keys::FORMAT_V1 {
                return Err(corrupt(format!(
                    "unknown format marker {:?}",
                    String::from_utf8_lossy(&format)
                )));
            }
            let stored: [u8; 4] = stored
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("chain count entry has the wrong length".to_owned()))?;
            let stored = u32::from_be_bytes(stored);
            if stored == 0 || stored > MAX_CHAINS {
                return Err(corrupt(format!(
                    "stored chain count {stored} is outside 1 to {MAX_CHAINS}"
                )));
            }
            match requested {
                Some(requested) if requested != stored => Err(LedgerError::ChainCountMismatch {
                    dir: dir.to_path_buf(),
                    stored,
                    requested,
                }),
                _ => Ok(stored),
            }
        }
        _ => Err(corrupt(
            "format marker or chain count entry is missing".to_owned(),
        )),
    }
}

fn read_head(db: &DB, dir: &Path, chain: ChainId) -> Result<Head, LedgerError> {
    let meta = db.cf_handle(CF_META).expect("meta column family exists");
    let value = db
        .get_cf(meta, keys::head_key(chain))
        .map_err(|error| LedgerError::from_rocksdb("open", error))?;

    match value {
        None => Ok(Head {
            next: Position::ZERO,
            last_hash: genesis_hash(chain),
            last_time: Timestamp::from_micros(i64::MIN),
        }),
        Some(value) => keys::decode_head(&value).ok_or_else(|| LedgerError::Corrupt {
            dir: dir.to_path_buf(),
            reason: format!("head entry of chain {chain} has the wrong length"),
        }),
    }
}

/// Refuses a head entry that does not name the chain's last event: the next append
/// would link to the recorded hash and break the chain. Verification, which opens
/// read-only, reports the same damage with its position.
fn check_head(db: &DB, dir: &Path, chain: ChainId, head: &Head) -> Result<(), LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt {
        dir: dir.to_path_buf(),
        reason,
    };
    let events = db
        .cf_handle(CF_EVENTS)
        .expect("events column family exists");
    let read = |position: u64| {
        db.get_cf(events, keys::event_key(chain, Position::new(position)))
            .map_err(|error| LedgerError::from_rocksdb("open", error))
    };

    if read(head.next.get())?.is_some() {
        return Err(corrupt(format!(
            "chain {chain} has an event at position {}, past its head entry",
            head.next
        )));
    }
    let Some(last) = head.next.get().checked_sub(1) else {
        return Ok(());
    };
    let stored = read(last)?
        .ok_or_else(|| corrupt(format!("chain {chain} has no event at position {last}")))?;
    match keys::split_event_value(&stored) {
        Some((hash, _)) if hash == head.last_hash => Ok(()),
        Some((hash, _)) => Err(corrupt(format!(
            "the head entry of chain {chain} records the last hash {}, but event {last} is \
             recorded with {hash}",
            head.last_hash
        ))),
        None => Err(corrupt(format!(
            "event {last} of chain {chain} has no hash"
        ))),
    }
}

/// Returns the events column family, which `open` always creates.
pub(crate) fn events_family(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(CF_EVENTS)
        .expect("events column family exists")
}

/// Returns the idempotency column family, which `open` always creates.
pub(crate) fn idempotency_family(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(CF_IDEMPOTENCY)
        .expect("idempotency column family exists")
}

/// Returns the meta column family, which `open` always creates.
pub(crate) fn meta_family(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(CF_META).expect("meta column family exists")
}
