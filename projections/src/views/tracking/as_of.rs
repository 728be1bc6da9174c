//! One delivery's tracking state after any prefix of its events, folded in memory with
//! the view's own apply code, for replaying a delivery as it stood at an earlier point.

use consign_ledger::StoredEvent;
use consign_schemas::DeliveryId;

use super::{DeliveryTracking, RecipientTracking, Tracking, load_summary, recipient_key};
use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::store::ViewState;

/// Applies `events` in the given order to an empty in-memory tracking state and returns
/// `delivery` as the tracking view would show it after them. Returns `None` when no
/// event among them submits the delivery.
///
/// Both this fold and the stored view go through [`Tracking`]'s `apply`. So the result
/// equals what [`delivery`](super::delivery) reads from a store that applied the same
/// events. Events of other deliveries may be included and change nothing about
/// `delivery`.
///
/// # Errors
///
/// Failures of `apply`, which on an in-memory state are only undecodable values.
pub fn delivery_as_of<'a>(
    events: impl IntoIterator<Item = &'a StoredEvent>,
    delivery: DeliveryId,
) -> Result<Option<DeliveryTracking>, ProjectionError> {
    let mut state = ViewState::in_memory(Tracking::NAME);
    for event in events {
        Tracking.apply(event, &mut state)?;
    }

    let Some((_, summary)) = load_summary(&state, delivery)? else {
        return Ok(None);
    };
    let mut recipients = Vec::with_capacity(summary.recipients.len());
    for index in 0..summary.recipients.len() {
        let key = recipient_key(delivery, index);
        let record = state
            .get_decoded::<RecipientTracking>(&key)?
            .ok_or_else(|| {
                ProjectionError::corrupt(
                    Tracking::NAME,
                    &key,
                    "summary lists a recipient with no record",
                )
            })?;
        recipients.push(record);
    }
    Ok(Some(DeliveryTracking {
        summary,
        recipients,
    }))
}
