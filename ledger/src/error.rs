//! Errors at the ledger boundary.

use std::path::PathBuf;

use consign_schemas::{ChainId, SchemaError};

/// The access to the data directory that a read-only open needs.
pub const READ: &str = "read";

/// The access to the data directory that opening for appends needs.
pub const READ_WRITE: &str = "read and write";

/// A failure to open, append to, read or verify the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "data directory {dir} is in use by another consign process{holder}; stop that process \
         or choose another --data-dir",
        holder = holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder: Option<u32> },

    #[error(
        "data directory {dir} cannot be used ({cause}); check that it is a directory that \
         this user can {access}"
    )]
    DataDir {
        dir: PathBuf,
        cause: std::io::Error,
        /// Access that the operation needs: [`READ`] or [`READ_WRITE`].
        access: &'static str,
    },

    #[error(
        "ledger database in {dir} is corrupt: {reason}; restore the directory from a backup, \
         and run `consign ledger verify` on the copy"
    )]
    Corrupt { dir: PathBuf, reason: String },

    #[error("ledger {operation} failed: {reason}")]
    Storage {
        operation: &'static str,
        reason: String,
    },

    #[error(
        "ledger {operation} failed because the disk is full: {reason}; free disk space and retry"
    )]
    DiskFull {
        operation: &'static str,
        reason: String,
    },

    #[error("chain {chain} does not exist: this ledger has chains 0 to {last}", last = chains.saturating_sub(1))]
    UnknownChain { chain: ChainId, chains: u32 },

    #[error(
        "ledger in {dir} was created with {stored} {chains}, but {requested} {verb} \
         requested; a ledger keeps its chain count, so leave out --chains (and \
         CONSIGN_CHAINS) or give {stored}",
        chains = if *stored == 1 { "chain" } else { "chains" },
        verb = if *requested == 1 { "was" } else { "were" }
    )]
    ChainCountMismatch {
        dir: PathBuf,
        stored: u32,
        requested: u32,
    },

    #[error(
        "no ledger in {dir}: {reason}; check --data-dir, or create a ledger with \
         `consign serve` or `consign ledger generate`"
    )]
    NotFound { dir: PathBuf, reason: String },

    #[error("append request has no events")]
    EmptyAppend,

    #[error(transparent)]
    Schema(#[from] SchemaError),

    #[error("ledger is closed")]
    Closed,

    #[error(
        "chain {chain} has {events} events, fewer than the requested tree size {tree_size}; \
         ask for a size up to {events}"
    )]
    TreeBeyondHead {
        chain: ChainId,
        tree_size: u64,
        events: u64,
    },

    #[error("cannot build the proof: {reason}")]
    Proof { reason: String },

    #[error("no checkpoint signing key is configured; open the ledger with a checkpoint policy")]
    NoCheckpointSigner,

    #[error("chain {chain} cannot take appends in this process now: {reason}; retry shortly")]
    Unavailable { chain: ChainId, reason: String },

    #[error(
        "the Kafka record at partition {chain} offset {offset} does not extend this \
         process's copy of the chain: {reason}; run `consign ledger verify --kafka` to find \
         the damage"
    )]
    Replica {
        chain: ChainId,
        offset: i64,
        reason: String,
    },
}

impl LedgerError {
    /// True when the failure is damage to stored data rather than a problem running.
    pub fn is_corruption(&self) -> bool {
        match self {
            LedgerError::Corrupt { .. } => true,
            LedgerError::Storage { reason, .. } => reason.starts_with("Corruption"),
            _ => false,
        }
    }

    /// Maps a RocksDB error of `operation`, telling a full disk apart from other failures.
    pub(crate) fn from_rocksdb(operation: &'static str, error: rocksdb::Error) -> Self {
        Self::from_storage_reason(operation, rocksdb_reason(error))
    }

    /// Builds the storage error for `reason`, so one failed group commit can be reported
    /// to every waiting appender.
    pub(crate) fn from_storage_reason(operation: &'static str, reason: String) -> Self {
        if reason.contains("No space left on device") {
            LedgerError::DiskFull { operation, reason }
        } else {
            LedgerError::Storage { operation, reason }
        }
    }
}

/// Returns RocksDB's message for `error` with its kind written once. For some damage
/// RocksDB repeats it ("Corruption: Corruption: block checksum mismatch").
pub(crate) fn rocksdb_reason(error: rocksdb::Error) -> String {
    kind_written_once(error.into_string())
}

fn kind_written_once(mut reason: String) -> String {
    while let Some(rest) = reason.strip_prefix("Corruption: Corruption: ") {
        reason = format!("Corruption: {rest}");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_corruption_kind_written_once() {
        let repeated = "Corruption: Corruption: block checksum mismatch".to_owned();
        assert_eq!(
            kind_written_once(repeated),
            "Corruption: block checksum mismatch"
        );
        let other = "IO error: No space left on device".to_owned();
        assert_eq!(
            kind_written_once(other),
            "IO error: No space left on device"
        );
    }
}
