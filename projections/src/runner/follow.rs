//! [`follow`]: applying events live, as the ledger makes them durable.

use std::future::Future;

use consign_ledger::EmbeddedLedger;
use futures::{FutureExt, StreamExt};

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
/// Each batch's write and fsync block the calling thread, so a server runs this on a
/// thread of its own rather than as a task among its request handlers.
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
        store.apply(views, &batch)?;
    }

    tracing::info!(views = views.len(), "view follower stopped");
    Ok(())
}
