//! Errors at the boundary of the persisted views.

use std::path::PathBuf;

use consign_ledger::LedgerError;
use consign_schemas::{ChainId, Position};

/// A failure to open the view store, apply events to it, or read or export a view.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(
        "view store directory {dir} cannot be used ({cause}); check that it is a directory that \
         this user can read and write"
    )]
    DataDir { dir: PathBuf, cause: std::io::Error },

    #[error(
        "view store in {dir} has the format marker {found:?}, but this build reads {expected:?}; \
         delete {dir} so that the views are rebuilt from the ledger"
    )]
    FormatMismatch {
        dir: PathBuf,
        found: String,
        expected: &'static str,
    },

    #[error(
        "view store in {dir} was built for a ledger of {stored} chains, but the ledger has \
         {ledger}; delete {dir} so that the views are rebuilt from this ledger"
    )]
    ChainCountMismatch {
        dir: PathBuf,
        stored: u32,
        ledger: u32,
    },

    #[error("chain count is 0: open the view store with the ledger's chain count, at least 1")]
    NoChains,

    #[error("view store {operation} failed: {reason}")]
    Storage {
        operation: &'static str,
        reason: String,
    },

    #[error(
        "view store {operation} failed because its files are damaged: {reason}; the views are \
         derived from the ledger, so delete the view store directory (DATA_DIR/views) and run \
         `consign projections catch-up` or start `consign serve` to rebuild them"
    )]
    Damaged {
        operation: &'static str,
        reason: String,
    },

    #[error(
        "view store {operation} failed because the disk is full: {reason}; free disk space and \
         retry"
    )]
    DiskFull {
        operation: &'static str,
        reason: String,
    },

    #[error(
        "view name {name:?} is invalid: use 1 to 64 lowercase ASCII letters, digits, '-' or '_', \
         other than the reserved names default, meta and positions"
    )]
    InvalidViewName { name: String },

    #[error("view {view} is not open in this store; pass it to ViewStore::open")]
    UnknownView { view: String },

    #[error(
        "state of view {view} is corrupt at key {key}: {reason}; rebuild the view with \
         ViewStore::reset and catch_up"
    )]
    CorruptState {
        view: String,
        key: String,
        reason: String,
    },

    #[error(
        "view {view} expected position {expected} of chain {chain} next, but was given position \
         {position}: the events in between were never applied"
    )]
    Gap {
        view: String,
        chain: ChainId,
        position: Position,
        expected: Position,
    },

    #[error(
        "view {view} has applied chain {chain} up to position {position}, past the ledger head \
         {head}: either the ledger lost events it had acknowledged (a cut write-ahead log), or \
         the view store belongs to another ledger. Keep both as they are, check the ledger \
         with `consign ledger verify --checkpoint` against a checkpoint saved earlier, and \
         restore the data directory from a backup; delete the view store only if it belongs \
         to another ledger"
    )]
    AheadOfLedger {
        view: String,
        chain: ChainId,
        position: Position,
        head: Position,
    },

    #[error("chain {chain} does not exist: the view store has chains 0 to {last}", last = chains.saturating_sub(1))]
    UnknownChain { chain: ChainId, chains: u32 },

    #[error("position {requested} of chain {chain} is past the ledger head {head}")]
    PastHead {
        chain: ChainId,
        requested: Position,
        head: Position,
    },

    #[error(
        "time {micros} microseconds since the Unix epoch is outside the supported calendar \
         (years -9999 to 9999)"
    )]
    TimeOutOfRange { micros: i64 },

    #[error("invalid month {text:?}: expected YYYY-MM with a month from 01 to 12")]
    InvalidMonth { text: String },

    #[error("invalid list cursor {text:?}: pass back a next_cursor value unchanged")]
    InvalidCursor { text: String },

    #[error("billing {format} export failed: {reason}")]
    Export {
        format: &'static str,
        reason: String,
    },

    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ProjectionError {
    /// Maps a RocksDB error of `operation`, telling a full disk apart from other failures.
    pub(crate) fn from_rocksdb(operation: &'static str, error: rocksdb::Error) -> Self {
        let reason = error.into_string();
        if reason.contains("No space left on device") {
            ProjectionError::DiskFull { operation, reason }
        } else if reason.starts_with("Corruption") {
            ProjectionError::Damaged { operation, reason }
        } else {
            ProjectionError::Storage { operation, reason }
        }
    }

    /// Builds the error for a stored value of `view` at `key` that does not decode.
    pub(crate) fn corrupt(view: &str, key: &[u8], reason: impl ToString) -> Self {
        ProjectionError::CorruptState {
            view: view.to_owned(),
            key: hex::encode(key),
            reason: reason.to_string(),
        }
    }
}
