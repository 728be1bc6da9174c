//! The `tracking` view: each delivery's and each recipient's status with the time of
//! every step, and per sender an index of deliveries by submission time.
//!
//! Keys:
//!
//! | key | value |
//! | --- | --- |
//! | `d`, delivery | sender and submission time (u64 BE, sign bit flipped): where its summary is |
//! | `s`, sender, submission time, delivery | postcard [`DeliverySummary`] |
//! | `r`, delivery, recipient index (u32 BE) | postcard [`RecipientTracking`] |
//!
//! A delivery's events are all in one chain, so each key is written from one chain only.

mod as_of;
mod list;
mod types;

use consign_ledger::StoredEvent;
use consign_schemas::events::{DeliverySubmitted, NotificationKind};
use consign_schemas::{AccountId, DeliveryId, Event, RecipientId, Timestamp};

use crate::error::ProjectionError;
use crate::keys::{field, key, time_key};
use crate::projection::Projection;
use crate::store::ViewState;

pub use as_of::delivery_as_of;
pub use list::{DeliveryFilter, DeliveryPage, ListCursor, MAX_PAGE, delivery, list_deliveries};
use types::Stage;
pub use types::{
    Deferral, DeliverySummary, DeliveryTracking, DocumentDownload, Failure, RecipientSummary,
    RecipientTracking, TrackingStatus,
};

const LOCATOR: u8 = b'd';
const SUMMARY: u8 = b's';
const RECIPIENT: u8 = b'r';

/// Delivery and recipient status for senders.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tracking;

impl Tracking {
    pub const NAME: &'static str = "tracking";
}

fn locator_key(delivery: DeliveryId) -> Vec<u8> {
    key(LOCATOR, &[delivery.as_bytes()])
}

fn summary_key(sender: AccountId, submitted_at: Timestamp, delivery: DeliveryId) -> Vec<u8> {
    key(
        SUMMARY,
        &[
            sender.as_bytes(),
            &time_key(submitted_at),
            delivery.as_bytes(),
        ],
    )
}

fn recipient_key(delivery: DeliveryId, index: usize) -> Vec<u8> {
    let index = u32::try_from(index).expect("a delivery has fewer than 2^32 recipients");
    key(RECIPIENT, &[delivery.as_bytes(), &index.to_be_bytes()])
}

/// Turns a locator value into the key of the delivery's summary.
fn summary_key_of(delivery: DeliveryId, locator: &[u8]) -> Result<Vec<u8>, ProjectionError> {
    let corrupt = || {
        ProjectionError::corrupt(
            Tracking::NAME,
            &locator_key(delivery),
            "locator is not 24 bytes",
        )
    };
    if locator.len() != 24 {
        return Err(corrupt());
    }
    let sender = field::<16>(locator, 0).ok_or_else(corrupt)?;
    let time = field::<8>(locator, 16).ok_or_else(corrupt)?;
    Ok(key(SUMMARY, &[&sender, &time, delivery.as_bytes()]))
}

impl Projection for Tracking {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError> {
        let time = event.envelope.time;
        match &event.envelope.event {
            Event::DeliverySubmitted(submitted) => submit(state, submitted, time),
            Event::PostmarkIssued(issued) => update_delivery(state, issued.delivery, |summary| {
                summary.postmarked_at.get_or_insert(time);
            }),
            Event::DeliveryReleased(released) => {
                update_delivery(state, released.delivery, |summary| {
                    summary.released_at.get_or_insert(time);
                })
            }
            Event::DeliveryExpired(expired) => {
                update_delivery(state, expired.delivery, |summary| {
                    summary.expired_at.get_or_insert(time);
                })
            }
            Event::DeliveryWithdrawn(withdrawn) => {
                update_delivery(state, withdrawn.delivery, |summary| {
                    summary.withdrawn_at.get_or_insert(time);
                })
            }
            Event::DocumentsPurged(purged) => update_delivery(state, purged.delivery, |summary| {
                summary.purged_at.get_or_insert(time);
            }),
            Event::NotificationAttempted(attempted) => update_recipient(
                state,
                attempted.delivery,
                attempted.recipient,
                |recipient| {
                    match attempted.kind {
                        NotificationKind::Consignment => {
                            recipient.notification.get_or_insert(attempted.notification);
                            recipient.first_attempt_at.get_or_insert(time);
                            recipient.attempts = recipient.attempts.max(attempted.attempt);
                        }
                        NotificationKind::Receipt => {
                            recipient
                                .receipt_notification
                                .get_or_insert(attempted.notification);
                        }
                    }
                    None
                },
            ),
            Event::NotificationSent(sent) => {
                update_recipient(state, sent.delivery, sent.recipient, |recipient| {
                    if recipient.notification != Some(sent.notification) {
                        return None;
                    }
                    recipient.notified_at.get_or_insert(time);
                    Some(Stage::Notified)
                })
            }
            Event::NotificationDeferred(deferred) => {
                update_recipient(state, deferred.delivery, deferred.recipient, |recipient| {
                    if recipient.notification != Some(deferred.notification) {
                        return None;
                    }
                    recipient.deferral = Some(Deferral {
                        at: time,
                        attempt: deferred.attempt,
                        reason: deferred.reason.clone(),
                        retry_at: deferred.retry_at,
                    });
                    Some(Stage::Deferred)
                })
            }
            Event::NotificationFailed(failed) => {
                update_recipient(state, failed.delivery, failed.recipient, |recipient| {
                    if recipient.notification != Some(failed.notification) {
                        return None;
                    }
                    recipient.failure.get_or_insert_with(|| Failure {
                        at: time,
                        attempt: failed.attempt,
                        reason: failed.reason.clone(),
                    });
                    Some(Stage::Failed)
                })
            }
            Event::DeliveryOpened(opened) => {
                update_recipient(state, opened.delivery, opened.recipient, |recipient| {
                    recipient.opened_at.get_or_insert(time);
                    recipient.opens += 1;
                    Some(Stage::Opened)
                })
            }
            Event::AccessDenied(denied) => {
                update_recipient(state, denied.delivery, denied.recipient, |recipient| {
                    recipient.denials += 1;
                    None
                })
            }
            Event::DocumentDownloaded(downloaded) => update_recipient(
                state,
                downloaded.delivery,
                downloaded.recipient,
                |recipient| {
                    let seen = recipient
                        .downloads
                        .iter()
                        .any(|download| download.document == downloaded.document);
                    if !seen {
                        recipient.downloads.push(DocumentDownload {
                            document: downloaded.document,
                            at: time,
                        });
                    }
                    Some(Stage::Downloaded)
                },
            ),
            Event::ReceiptSent(receipt) => {
                update_recipient(state, receipt.delivery, receipt.recipient, |recipient| {
                    recipient.receipt_sent_at.get_or_insert(time);
                    Some(Stage::ReceiptSent)
                })
            }
            Event::AccountOpened(_)
            | Event::CredentialChanged(_)
            | Event::MailingListDefined(_)
            | Event::DocumentUploaded(_)
            | Event::CheckpointSigned(_) => Ok(()),
        }
    }
}

/// Records a new delivery. A second submission of the same delivery id is ignored.
fn submit(
    state: &mut ViewState<'_>,
    submitted: &DeliverySubmitted,
    time: Timestamp,
) -> Result<(), ProjectionError> {
    let locator = locator_key(submitted.delivery);
    if state.get(&locator)?.is_some() {
        return Ok(());
    }
    let options = &submitted.options;
    let mut summary = DeliverySummary {
        delivery: submitted.delivery,
        sender: submitted.sender,
        submitted_at: time,
        subject: submitted.subject.clone(),
        billing_code: options.billing_code.clone(),
        documents: submitted.documents.clone(),
        deliver_at: options.deliver_at.as_ref().map(|zoned| zoned.instant),
        expires_at: options.expires_at.as_ref().map(|zoned| zoned.instant),
        postmarked_at: None,
        released_at: None,
        expired_at: None,
        withdrawn_at: None,
        purged_at: None,
        recipients: Vec::with_capacity(submitted.recipients.len()),
    };

    for (index, entry) in submitted.recipients.iter().enumerate() {
        summary.recipients.push(RecipientSummary {
            recipient: entry.recipient,
            address: entry.mailbox.address.clone(),
            status: TrackingStatus::Scheduled,
            stage: Stage::Waiting,
        });
        let recipient = RecipientTracking::new(
            entry.recipient,
            entry.mailbox.clone(),
            entry.via_list.clone(),
        );
        state.put_encoded(recipient_key(submitted.delivery, index), &recipient);
    }
    summary.refresh_statuses();

    let mut location = submitted.sender.as_bytes().to_vec();
    location.extend_from_slice(&time_key(time));
    state.put(locator, location);
    state.put_encoded(
        summary_key(submitted.sender, time, submitted.delivery),
        &summary,
    );
    Ok(())
}

/// Reads a delivery's summary and the key it is stored at, or `None` for a delivery
/// this view has no submission of.
fn load_summary(
    state: &ViewState<'_>,
    delivery: DeliveryId,
) -> Result<Option<(Vec<u8>, DeliverySummary)>, ProjectionError> {
    let Some(locator) = state.get(&locator_key(delivery))? else {
        return Ok(None);
    };
    let key = summary_key_of(delivery, &locator)?;
    let summary = state.get_decoded::<DeliverySummary>(&key)?.ok_or_else(|| {
        ProjectionError::corrupt(Tracking::NAME, &key, "locator points at no summary")
    })?;
    Ok(Some((key, summary)))
}

/// Changes a delivery's summary and recomputes its recipients' statuses. Events of an
/// unknown delivery are ignored.
fn update_delivery(
    state: &mut ViewState<'_>,
    delivery: DeliveryId,
    change: impl FnOnce(&mut DeliverySummary),
) -> Result<(), ProjectionError> {
    let Some((key, mut summary)) = load_summary(state, delivery)? else {
        return Ok(());
    };
    change(&mut summary);
    summary.refresh_statuses();
    state.put_encoded(key, &summary);
    Ok(())
}

/// Changes one recipient's record. `change` returns the stage the event reaches, if
/// any; the summary is rewritten only when that raises the recipient's stage. Events of
/// an unknown delivery or recipient are ignored.
fn update_recipient(
    state: &mut ViewState<'_>,
    delivery: DeliveryId,
    recipient: RecipientId,
    change: impl FnOnce(&mut RecipientTracking) -> Option<Stage>,
) -> Result<(), ProjectionError> {
    let Some((summary_key, mut summary)) = load_summary(state, delivery)? else {
        return Ok(());
    };
    let Some(index) = summary
        .recipients
        .iter()
        .position(|candidate| candidate.recipient == recipient)
    else {
        return Ok(());
    };

    let key = recipient_key(delivery, index);
    let mut record = state
        .get_decoded::<RecipientTracking>(&key)?
        .ok_or_else(|| {
            ProjectionError::corrupt(
                Tracking::NAME,
                &key,
                "summary lists a recipient with no record",
            )
        })?;
    let reached = change(&mut record);
    state.put_encoded(key, &record);

    if let Some(stage) = reached
        && stage > summary.recipients[index].stage
    {
        summary.recipients[index].stage = stage;
        summary.refresh_statuses();
        state.put_encoded(summary_key, &summary);
    }
    Ok(())
}
