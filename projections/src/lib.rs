//! Projections: views folded from the ledger into RocksDB state, each a pure function
//! of a log prefix. Tracking for senders, billing by billing code, the legal audit
//! view and the scheduler's due list live here, and so does their rebuild.
//!
//! Projections read the ledger and never append to it. Today the crate has the
//! in-memory [`model`] that the server checks commands against.

pub mod model;
