//! The consign application: command line, HTTP server and pages on top of the ledger.
//!
//! Only this crate deals with HTTP, JSON and terminals. The binary in `main.rs` is a
//! thin wrapper around [`cli::run`].

pub mod app;
pub mod blobs;
pub mod cli;
pub(crate) mod listen;
pub mod logging;
pub(crate) mod pages;
pub mod progress;
pub mod serve;
pub(crate) mod web;
pub mod zoned;
