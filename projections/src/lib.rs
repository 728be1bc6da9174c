//! Projections: views folded from the ledger into RocksDB state, each a pure function
//! of a log prefix. Tracking for senders, billing by billing code, the legal audit
//! view and the scheduler's due list live here, and so does their rebuild.
//!
//! Projections read the ledger and never append to it. The crate has no views yet:
//! the embedded ledger they consume is in `consign-ledger`.
