//! [`follow`]: applying events live, as the ledger makes them durable.

use std::future::Future;

use consign_ledger::{EmbeddedLedger, StoredEvent};
use futures::{FutureExt, StreamExt};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::{DEFAULT_BATCH_EVENTS, check_chain_count, lowest_positions};
use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::store::ViewStore;

/// Applies every chain from each view's stored position, first the events already in
/// the ledger and then each new one as soon as it is durable, until `shutdown`
/// completes.
///
/// Events that are ready together are applied in one batch of at most
/// [`DEFAULT_BATCH_EVENTS`], so a burst of appends costs one write. Shutdown is checked
/// between batches: a batch being written is finished first.
///
/// # Errors
///
/// As [`catch_up_with`](super::catch_up_with), and subscription failures. The batches
/// written before the failure stay written.
pub async fn follow(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectionError> {
    check_chain_count(ledger, store)?;
    let mut streams = Vec::new();
    for (chain, start) in lowest_positions(ledger, store, views)? {
        streams.push(ledger.subscribe(chain, start)?.into_stream().boxed());
    }
    let mut events = futures::stream::select_all(streams);
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::info!(
        views = views.len(),
        chains = store.chain_count(),
        "view follower started"
    );

    loop {
        let first = tokio::select! {
            biased;
            () = &mut shutdown => break,
            next = events.next() => next,
        };
        let Some(first) = first else {
            // Every subscription ends only after yielding an error, which returns below.
            shutdown.as_mut().await;
            break;
        };

        let mut batch = vec![first?];
        while batch.len() < DEFAULT_BATCH_EVENTS {
            match events.next().now_or_never() {
                Some(Some(event)) => batch.push(event?),
                Some(None) | None => break,
            }
        }
        apply_in_place(store, views, &batch)?;
    }

    tracing::info!(views = views.len(), "view follower stopped");
    Ok(())
}

/// Applies a batch, telling a multi-threaded runtime that this worker blocks for the
/// write and its fsync, so that other tasks move to another worker meanwhile.
fn apply_in_place(
    store: &ViewStore,
    views: &[&dyn Projection],
    batch: &[StoredEvent],
) -> Result<u64, ProjectionError> {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| store.apply(views, batch))
        }
        // NOTE: on a current-thread runtime the write blocks every other task of the
        // runtime until it returns.
        _ => store.apply(views, batch),
    }
}
