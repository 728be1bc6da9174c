//! How a replicated backend drives the embedded store.
//!
//! With Apache Kafka, the store in the data directory is this process's copy of every
//! chain. Two things feed it. The writer sequences appends for the chains whose
//! sequencer runs in this process, and hands each group to a [`Publisher`] that commits
//! it upstream before anything is written here. Imports bring the events that the
//! upstream committed, in partition order, from any sequencer. An import checks
//! each event against the local head: an event already present must be identical, and
//! a new one must extend the chain.

use std::future::Future;
use std::pin::Pin;

use consign_schemas::{ChainId, DeliveryId, Position};
use tokio::sync::oneshot;

use super::EmbeddedLedger;
use crate::error::LedgerError;
use crate::record::{AppendRequest, Appended};

/// Sends appends for chains whose sequencer runs in another process to that sequencer.
pub(crate) trait Forward: Send + Sync {
    /// True while this process sequences `chain`.
    fn sequences(&self, chain: ChainId) -> bool;

    /// True when `chain` is one this process was started to sequence and was not
    /// fenced from, even while its sequencer is starting.
    fn home(&self, chain: ChainId) -> bool;

    /// Hands `request` to the sequencer of its chain and waits until `ledger`, the
    /// local copy, contains the result.
    fn forward<'a>(
        &'a self,
        ledger: &'a EmbeddedLedger,
        request: AppendRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Appended, LedgerError>> + Send + 'a>>;
}

/// Commits sequenced events upstream; the writer calls it once per chain and group.
pub(crate) trait Publisher: Send {
    /// Returns `Ok` when this process sequences `chain` now, or why it does not.
    fn ready(&mut self, chain: ChainId) -> Result<(), LedgerError>;

    /// Makes `events`, consecutive events of `chain`, durable upstream. On an error
    /// the events may or may not have been committed: the publisher must not accept
    /// another group for `chain` until it has caught up with what the upstream contains.
    fn publish(&mut self, chain: ChainId, events: &[Published]) -> Result<(), LedgerError>;
}

/// One sequenced event handed to a [`Publisher`].
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub(crate) position: Position,
    /// The delivery the event belongs to, the record key upstream.
    pub(crate) delivery: Option<DeliveryId>,
    /// The stored bytes that the event hash covers.
    pub(crate) bytes: Vec<u8>,
}

/// One event committed upstream, as read back in partition order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRecord {
    /// The record's offset in its partition, stored so a restart resumes after it.
    pub offset: i64,
    /// The stored bytes of the event.
    pub bytes: Vec<u8>,
}

/// The outcome of an import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Events that extended the local chain.
    pub written: u64,
    /// Events that the local chain already had, byte for byte.
    pub present: u64,
}

/// An import waiting for the writer.
pub(crate) struct PendingImport {
    pub(crate) chain: ChainId,
    pub(crate) records: Vec<ImportRecord>,
    pub(crate) reply: oneshot::Sender<Result<Imported, LedgerError>>,
}

/// Meta key of the offset after the last record imported into `chain`.
pub(crate) fn offset_key(chain: ChainId) -> Vec<u8> {
    let mut key = b"upstream-offset/".to_vec();
    key.extend_from_slice(&chain.get().to_be_bytes());
    key
}

/// Meta key naming the upstream this store is a copy of, such as `kafka:consign.events`.
pub(crate) const UPSTREAM_KEY: &[u8] = b"upstream";
