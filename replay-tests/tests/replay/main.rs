//! Replays the checked-in recorded ledgers in `fixtures/` through every view, and checks
//! the fixture format itself.

mod billing;
mod common;
mod coverage;
mod damage;
mod equivalence;
mod expected;
mod format;
mod regenerate;
mod restart;
