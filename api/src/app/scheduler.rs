//! The scheduler: releases deliveries at their delivery date and expires them at their
//! expiration date, each exactly once.
//!
//! It reads due work from the model and appends `DeliveryReleased` under the
//! idempotency key `release/DELIVERY` and `DeliveryExpired` under `expire/DELIVERY`.
//! The keys make each event unique in the ledger even when the scheduler runs again
//! after a restart, or a release races with another. Between rounds it sleeps until the
//! next due time, the next applied event, or one minute, whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use consign_ledger::{AppendRequest, NewEvent};
use consign_schemas::events::{DeliveryExpired, DeliveryReleased};
use consign_schemas::{Actor, DeliveryId, Event, IdempotencyKey, SystemComponent, Timestamp};

use super::core::Core;
use super::error::ApiError;

/// Longest sleep between two rounds.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs the scheduler until `shutdown` completes.
///
/// # Errors
///
/// The ledger rejected an append; the scheduler stops, because nothing due can be
/// recorded until the ledger is reopened.
pub async fn run(
    core: Arc<Core>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ApiError> {
    tokio::pin!(shutdown);
    let mut changes = core.applied_changes();
    loop {
        let now = core.clock.now();
        let next = round(&core, now).await?;

        let deadline = next.unwrap_or(Timestamp::from_micros(i64::MAX));
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = core.clock.sleep_until(deadline, MAX_SLEEP) => {}
            _ = changes.changed() => {}
        }
    }
}

/// Records every release and expiry due at `now`, and returns the next due time.
///
/// # Errors
///
/// As [`run`].
pub async fn round(core: &Core, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    let (releases, expiries) = {
        let model = core.model();
        (model.due_releases(now), model.due_expiries(now))
    };
    for delivery in releases {
        let event = Event::DeliveryReleased(DeliveryReleased { delivery });
        append_once(core, delivery, "release", event).await?;
        tracing::info!(%delivery, "delivery released at its delivery date");
    }
    for delivery in expiries {
        let event = Event::DeliveryExpired(DeliveryExpired { delivery });
        append_once(core, delivery, "expire", event).await?;
        tracing::info!(%delivery, "delivery expired");
    }
    Ok(core.model().next_due_after(now))
}

async fn append_once(
    core: &Core,
    delivery: DeliveryId,
    action: &str,
    event: Event,
) -> Result<(), ApiError> {
    let key = IdempotencyKey::new(format!("{action}/{delivery}")).expect("the key is short and valid");
    let request = AppendRequest::new(
        core.chain_of(delivery),
        vec![NewEvent {
            actor: Actor::System(SystemComponent::Scheduler),
            event,
        }],
    )
    .with_idempotency_key(key);
    core.append(request).await.map(|_| ())
}
