//! The consign ledger: an append-only log of hash-chained events.
//!
//! Every event stores the hash of its predecessor in the same chain, so any change to
//! stored bytes, any gap and any reordering is detected by [`EmbeddedLedger::verify_chain`]. The embedded
//! backend keeps the log in RocksDB and group-commits concurrent appends under one
//! fsync.

pub mod checkpoint;
mod clock;
mod embedded;
mod error;
pub mod evidence;
pub mod kafka;
mod keys;
pub mod merkle;
pub mod postmark;
mod record;
mod verify;
pub mod workload;

pub use clock::{Clock, ManualClock};
pub use embedded::{EmbeddedLedger, EmbeddedOptions, IndexComparison, Subscription, TreeHead};
pub use error::LedgerError;
pub use record::{AppendRequest, Appended, AppendedEvent, NewEvent, RawEvent, StoredEvent};
pub use verify::{AcceptedEvent, BreakReason, ChainBreak, ChainChecks, ChainReport, ChainVerifier};
