//! Replay tests: ledgers recorded in fixture files and replayed through every persisted
//! view, with the expected outputs checked in next to them.
//!
//! - [`fixture`]: the recorded-ledger file format, recording from an embedded ledger,
//!   loading with the ledger's chain check, and replay into a view store.
//! - [`expected`]: the expected output of a replay as JSON, and a path-by-path
//!   comparison for readable failures.
//!
//! The fixtures are in `fixtures/` and the tests in `tests/replay/`, which also
//! regenerates the fixtures from the workload generator. The tamper and crash tests of
//! the ledger itself are in `ledger/tests/`.

pub mod expected;
pub mod fixture;
