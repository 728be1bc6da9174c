//! Subscriptions: follow a chain from a position, waking on each durable append.

use std::collections::VecDeque;
use std::sync::Arc;

use consign_schemas::{ChainId, Position};
use futures::Stream;
use tokio::sync::watch;

use super::read::{decode_raw, read_raw};
use super::{EmbeddedLedger, Shared};
use crate::error::LedgerError;
use crate::record::StoredEvent;

/// Events read per storage round trip.
const READ_AHEAD: usize = 512;

/// A cursor over one chain that yields every durable event in order, then waits.
pub struct Subscription {
    shared: Arc<Shared>,
    chain: ChainId,
    next: Position,
    buffer: VecDeque<StoredEvent>,
    head: watch::Receiver<Position>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("chain", &self.chain)
            .field("next", &self.next)
            .finish()
    }
}

impl EmbeddedLedger {
    /// Follows `chain` from position `from`: first the events already stored, then each
    /// new one as soon as it is durable.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`].
    pub fn subscribe(&self, chain: ChainId, from: Position) -> Result<Subscription, LedgerError> {
        let head = self
            .shared
            .watchers
            .get(&chain)
            .ok_or(LedgerError::UnknownChain {
                chain,
                chains: self.chain_count(),
            })?
            .subscribe();
        Ok(Subscription {
            shared: Arc::clone(&self.shared),
            chain,
            next: from,
            buffer: VecDeque::new(),
            head,
        })
    }
}

impl Subscription {
    /// Position of the next event this subscription will yield.
    pub fn position(&self) -> Position {
        self.next
    }

    /// Returns the next event, waiting for it to be appended if necessary.
    ///
    /// # Errors
    ///
    /// Storage failures and events that fail their hash check or do not decode. After
    /// the ledger is closed, the call waits until it is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is only consumed when this returns it.
    pub async fn next(&mut self) -> Result<StoredEvent, LedgerError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.position().next();
                return Ok(event);
            }

            // Mark the current head as seen before reading, so an append that lands
            // after the read still wakes the wait below.
            let head = *self.head.borrow_and_update();
            if head > self.next {
                self.fill()?;
                continue;
            }
            self.head.changed().await.map_err(|_| LedgerError::Closed)?;
        }
    }

    // NOTE: the read runs on the async worker thread. A read-ahead of 512 small events
    // takes well under a millisecond, so it is not handed to a blocking pool.
    fn fill(&mut self) -> Result<(), LedgerError> {
        let raws = read_raw(&self.shared, self.chain, self.next, READ_AHEAD)?;
        for raw in raws {
            if raw.position != self.next_expected() {
                return Err(LedgerError::Corrupt {
                    dir: self.shared.dir.clone(),
                    reason: format!(
                        "chain {} has no event at position {}",
                        self.chain,
                        self.next_expected()
                    ),
                });
            }
            let event = decode_raw(&self.shared, raw)?;
            self.buffer.push_back(event);
        }
        Ok(())
    }

    fn next_expected(&self) -> Position {
        self.buffer
            .back()
            .map(|event| event.position().next())
            .unwrap_or(self.next)
    }

    /// Turns the subscription into a stream that ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<StoredEvent, LedgerError>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut subscription = state?;
            match subscription.next().await {
                Ok(event) => Some((Ok(event), Some(subscription))),
                Err(error) => Some((Err(error), None)),
            }
        })
    }
}
