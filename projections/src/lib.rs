//! Projections: views folded from the ledger, each a pure function of a log prefix.
//!
//! - [`model`] is the in-memory delivery model that the server checks commands against,
//!   rebuilt at every start.
//! - The persisted views live in a [`ViewStore`], a RocksDB database of their own:
//!   [`tracking`] for senders, [`billing`] by account, billing code and month, [`audit`]
//!   for legal discovery and [`schedule`], the scheduler's due list. Each implements
//!   [`Projection`]. [`catch_up`] and [`follow`] feed them ledger events, and each batch
//!   writes a view's state and its positions in one atomic write. [`ViewStore::digest`]
//!   and [`status`] report each view's state digest and how far it lags.
//!
//! Projections read the ledger and never append to it.

mod error;
mod keys;
pub mod model;
mod projection;
mod runner;
mod status;
mod store;
mod views;

pub use error::ProjectionError;
pub use projection::Projection;
pub use runner::{CatchUpOptions, DEFAULT_BATCH_EVENTS, Progress, catch_up, catch_up_with, follow};
pub use status::{ChainStatus, ViewStatus, status};
pub use store::{Positions, ViewDigest, ViewState, ViewStore, ViewStoreOptions};
pub use views::{ALL_VIEWS, audit, billing, schedule, tracking};
