//! The records of the tracking view and the status rules.
//!
//! These types are stored with postcard, so a change to a field changes the stored
//! layout and needs a new [`Tracking`](super::Tracking) version.

use consign_schemas::events::Mailbox;
use consign_schemas::{AccountId, DeliveryId, DocumentId, NotificationId, RecipientId, Timestamp};
use serde::{Deserialize, Serialize};

/// Status of one recipient, as shown to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingStatus {
    /// Submitted with a delivery date that has not come, or not yet released.
    Scheduled,
    /// The documents are available; no link e-mail outcome yet.
    Released,
    /// The link e-mail was deferred and will be retried.
    Deferred,
    /// The link e-mail failed for good.
    Failed,
    /// The link e-mail was sent.
    Notified,
    /// The recipient opened the delivery page.
    Opened,
    /// The recipient downloaded at least one document in full.
    Downloaded,
    /// The receipt e-mail about this recipient went to the sender.
    ReceiptSent,
    /// The delivery expired; this outranks the recipient's own progress.
    Expired,
    /// The sender withdrew the delivery; this outranks everything else.
    Withdrawn,
}

impl TrackingStatus {
    /// Every status, in the order above.
    pub const ALL: [TrackingStatus; 10] = [
        TrackingStatus::Scheduled,
        TrackingStatus::Released,
        TrackingStatus::Deferred,
        TrackingStatus::Failed,
        TrackingStatus::Notified,
        TrackingStatus::Opened,
        TrackingStatus::Downloaded,
        TrackingStatus::ReceiptSent,
        TrackingStatus::Expired,
        TrackingStatus::Withdrawn,
    ];
}

/// How far a recipient got on their own, apart from what happened to the delivery.
/// Later variants outrank earlier ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum Stage {
    #[default]
    Waiting,
    Deferred,
    Failed,
    Notified,
    Opened,
    Downloaded,
    ReceiptSent,
}

/// One recipient in a delivery summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientSummary {
    pub recipient: RecipientId,
    /// The address as the sender gave it.
    pub address: String,
    pub status: TrackingStatus,
    pub(super) stage: Stage,
}

/// A delivery as listed to its sender, with the time of each delivery-level step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySummary {
    pub delivery: DeliveryId,
    pub sender: AccountId,
    /// Sequencer time of the submission.
    pub submitted_at: Timestamp,
    pub subject: String,
    pub billing_code: Option<String>,
    pub documents: Vec<DocumentId>,
    /// The delivery date the sender chose, if any.
    pub deliver_at: Option<Timestamp>,
    /// The expiration date the sender chose, if any.
    pub expires_at: Option<Timestamp>,
    pub postmarked_at: Option<Timestamp>,
    pub released_at: Option<Timestamp>,
    pub expired_at: Option<Timestamp>,
    pub withdrawn_at: Option<Timestamp>,
    pub purged_at: Option<Timestamp>,
    /// Recipients in submission order.
    pub recipients: Vec<RecipientSummary>,
}

impl DeliverySummary {
    /// Computes a recipient's status from its stage and the delivery's own steps.
    pub(super) fn status_of(&self, stage: Stage) -> TrackingStatus {
        if self.withdrawn_at.is_some() {
            return TrackingStatus::Withdrawn;
        }
        if self.expired_at.is_some() {
            return TrackingStatus::Expired;
        }
        match stage {
            Stage::ReceiptSent => TrackingStatus::ReceiptSent,
            Stage::Downloaded => TrackingStatus::Downloaded,
            Stage::Opened => TrackingStatus::Opened,
            Stage::Notified => TrackingStatus::Notified,
            Stage::Failed => TrackingStatus::Failed,
            Stage::Deferred => TrackingStatus::Deferred,
            Stage::Waiting if self.released_at.is_some() => TrackingStatus::Released,
            Stage::Waiting => TrackingStatus::Scheduled,
        }
    }

    /// Recomputes every recipient's status after a change.
    pub(super) fn refresh_statuses(&mut self) {
        for index in 0..self.recipients.len() {
            self.recipients[index].status = self.status_of(self.recipients[index].stage);
        }
    }

    /// Returns whether any recipient is in `status`.
    pub fn has_status(&self, status: TrackingStatus) -> bool {
        self.recipients
            .iter()
            .any(|recipient| recipient.status == status)
    }
}

/// A link e-mail deferral: the last one recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    pub at: Timestamp,
    pub attempt: u32,
    pub reason: String,
    pub retry_at: Timestamp,
}

/// The permanent failure of the link e-mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at: Timestamp,
    pub attempt: u32,
    pub reason: String,
}

/// The first full download of one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentDownload {
    pub document: DocumentId,
    pub at: Timestamp,
}

/// One recipient's steps, each with its sequencer time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientTracking {
    pub recipient: RecipientId,
    pub mailbox: Mailbox,
    pub via_list: Option<String>,
    /// The link e-mail, once its first attempt is recorded.
    pub notification: Option<NotificationId>,
    pub attempts: u32,
    pub first_attempt_at: Option<Timestamp>,
    pub notified_at: Option<Timestamp>,
    pub deferral: Option<Deferral>,
    pub failure: Option<Failure>,
    pub opened_at: Option<Timestamp>,
    pub opens: u32,
    /// Wrong passwords, throttled attempts and visits after the end, all refused.
    pub denials: u32,
    /// First full download of each document, in the order they happened.
    pub downloads: Vec<DocumentDownload>,
    /// The receipt e-mail to the sender about this recipient, once attempted.
    pub receipt_notification: Option<NotificationId>,
    pub receipt_sent_at: Option<Timestamp>,
}

impl RecipientTracking {
    pub(super) fn new(recipient: RecipientId, mailbox: Mailbox, via_list: Option<String>) -> Self {
        Self {
            recipient,
            mailbox,
            via_list,
            notification: None,
            attempts: 0,
            first_attempt_at: None,
            notified_at: None,
            deferral: None,
            failure: None,
            opened_at: None,
            opens: 0,
            denials: 0,
            downloads: Vec::new(),
            receipt_notification: None,
            receipt_sent_at: None,
        }
    }
}

/// A delivery with every recipient's steps, read together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTracking {
    pub summary: DeliverySummary,
    /// In submission order, like `summary.recipients`.
    pub recipients: Vec<RecipientTracking>,
}
