//! Replay tests: recorded ledgers replayed through the projections and the verifiers,
//! backend equivalence checks, and fixtures of tampered and old-schema ledgers.
//!
//! The fixtures and their tests arrive with the projections; the tamper and crash
//! tests of the ledger itself are in `ledger/tests/`.
