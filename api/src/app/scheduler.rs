//! The scheduler: releases deliveries at their delivery date and expires them at their
//! expiration date, each exactly once.
//!
//! It reads due work from the persisted `schedule` view and appends `DeliveryReleased`
//! under the idempotency key `release/DELIVERY` and `DeliveryExpired` under
//! `expire/DELIVERY`, then waits until the view has applied the event, which removes
//! the entry.
//! The keys make each event unique in the ledger even when the scheduler runs again
//! after a restart, or a release races with another. A delivery whose expiration date
//! has also passed when its release falls due is expired without a release. Between rounds it sleeps until the
//! next due time, the next write to the views, or one minute, whichever comes first.
//! Each round also issues the postmarks that a crash kept from following their
//! submissions.

use std::sync::Arc;
use std::time::Duration;

use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::schedule::{self, DueKind};
use consign_schemas::events::{DeliveryExpired, DeliveryReleased};
use consign_schemas::{Actor, DeliveryId, Event, IdempotencyKey, SystemComponent, Timestamp};

use super::core::Core;
use super::error::{ApiError, UNCONFIRMED};

/// Maximum sleep between two rounds.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs the scheduler until `shutdown` completes.
///
/// # Errors
///
/// The ledger rejected an append; the scheduler stops, because nothing due can be
/// recorded until the ledger is reopened. An append that a Kafka sequencer cannot take
/// now is tried again a second later instead.
pub async fn run(
    core: Arc<Core>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ApiError> {
    tokio::pin!(shutdown);
    let mut changes = core.views.commits();
    loop {
        let now = core.clock.now();
        // A round waits for the views to apply each step, and the view follower stops
        // at shutdown too, so the round gives way to the shutdown. Its appends carry
        // idempotency keys, so a step cut short is recorded once at the next start.
        let outcome = tokio::select! {
            () = &mut shutdown => return Ok(()),
            outcome = round(&core, now) => outcome,
        };
        let next = match outcome {
            Ok(next) => next,
            // A Kafka sequencer that is starting or changing hands: try again soon.
            Err(ApiError::Unavailable { message }) if message.starts_with(UNCONFIRMED) => {
                tracing::warn!(error = %message, "scheduler cannot record now; retrying");
                Some(Timestamp::from_micros(
                    now.as_micros().saturating_add(UNAVAILABLE_RETRY_MICROS),
                ))
            }
            Err(error) => return Err(error),
        };

        let deadline = next.unwrap_or(Timestamp::from_micros(i64::MAX));
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = core.clock.sleep_until(deadline, MAX_SLEEP) => {}
            _ = changes.changed() => {}
        }
    }
}

/// Wait before a round that follows one the ledger could not record, in microseconds.
const UNAVAILABLE_RETRY_MICROS: i64 = 1_000_000;

/// Maximum entries handled in one round; a longer backlog takes several rounds.
const ROUND_LIMIT: usize = 1_000;

/// Records every release and expiry due at `now`, and returns the next due time.
///
/// # Errors
///
/// As [`run`], and a view that cannot be read.
pub async fn round(core: &Core, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    let due = schedule::due_at_or_before(&core.views, now, ROUND_LIMIT)?;
    let mut handled = 0;
    for entry in &due {
        let delivery = entry.delivery;
        // On Kafka, the process that sequences the delivery's chain records its steps.
        if !core.ledger.sequences_here(core.chain_of(delivery)) {
            continue;
        }
        handled += 1;
        let expired = || {
            (
                "expire",
                Event::DeliveryExpired(DeliveryExpired { delivery }),
            )
        };
        let (action, event) = match entry.kind {
            // A release and an expiry both due, after the server was down through both
            // dates: the documents never became available, so only the expiry is
            // recorded, and it removes the release from the schedule.
            DueKind::Release if expiry_of(core, delivery).is_some_and(|at| at <= now) => expired(),
            DueKind::Release => (
                "release",
                Event::DeliveryReleased(DeliveryReleased { delivery }),
            ),
            DueKind::Expiry => expired(),
        };
        let recorded = append_once(core, delivery, action, event).await?;
        if recorded {
            tracing::info!(%delivery, action, "scheduled step recorded");
        }
    }
    let unsigned = core.model().missing_postmarks();
    for delivery in unsigned {
        if core.ledger.sequences_here(core.chain_of(delivery)) {
            super::postmark::issue(core, delivery).await?;
        }
    }
    if due.len() == ROUND_LIMIT && handled > 0 {
        return Ok(Some(now));
    }
    Ok(schedule::next_due_after(&core.views, now)?.map(|entry| entry.at))
}

/// Returns the expiration date of a delivery, if it has one.
fn expiry_of(core: &Core, delivery: DeliveryId) -> Option<Timestamp> {
    let model = core.model();
    let options = &model.delivery(delivery)?.options;
    options.expires_at.as_ref().map(|time| time.instant)
}

/// Appends `event` under its idempotency key and waits until the schedule view has
/// applied it. Returns false when the key replayed an earlier append.
async fn append_once(
    core: &Core,
    delivery: DeliveryId,
    action: &str,
    event: Event,
) -> Result<bool, ApiError> {
    let key =
        IdempotencyKey::new(format!("{action}/{delivery}")).expect("the key is short and valid");
    let request = AppendRequest::new(
        core.chain_of(delivery),
        vec![NewEvent {
            actor: Actor::System(SystemComponent::Scheduler),
            event,
        }],
    )
    .with_idempotency_key(key);
    let appended = core.append(request).await?;
    let position = appended.events[0].position;
    core.views
        .wait_for("schedule", appended.chain, position)
        .await?;
    Ok(!appended.replayed)
}
