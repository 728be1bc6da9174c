//! The work list of the dispatcher's fold: which notification work is due at a given
//! time, and when the next work falls due.

use consign_schemas::events::NotificationKind;
use consign_schemas::{DeliveryId, NotificationId, RecipientId, Timestamp};

use super::state::{DispatchState, NotificationRecord};

/// One piece of work the ledger calls for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DueWork {
    /// Record the first attempt of a new notification: a released delivery's recipient
    /// without a consignment e-mail, or a first download without a receipt e-mail.
    FirstAttempt {
        delivery: DeliveryId,
        recipient: RecipientId,
        kind: NotificationKind,
    },
    /// Send the latest recorded attempt, which has no outcome yet. Resending after a
    /// crash reuses the notification id, Message-ID and attempt number.
    Send {
        notification: NotificationId,
        attempt: u32,
    },
    /// Record attempt number `attempt` of a deferred notification whose retry time came.
    Retry {
        notification: NotificationId,
        attempt: u32,
    },
    /// Record `NotificationFailed` for attempt `attempt` without sending, because the
    /// delivery was withdrawn or expired.
    Abandon {
        notification: NotificationId,
        attempt: u32,
        reason: String,
    },
}

/// Result of [`DispatchState::due`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Due {
    /// Work due now, in this order: sends of recorded attempts, abandons, retries, then
    /// first attempts.
    pub work: Vec<DueWork>,
    /// The earliest later time at which a deferred notification falls due, if any.
    pub next_due: Option<Timestamp>,
}

impl DispatchState {
    /// Lists the work due at `now` and the earliest future due time.
    ///
    /// Due now:
    /// - recorded attempts without an outcome, as [`DueWork::Send`] once the data to
    ///   compose the e-mail is folded, and for an attempt recorded elsewhere, once the
    ///   grace for its sender has passed;
    /// - deferred notifications with `retry_at <= now`, as [`DueWork::Retry`];
    /// - consignment notifications of a withdrawn or expired delivery, whether deferred
    ///   or attempted without an outcome, as [`DueWork::Abandon`];
    /// - recipients of released, open deliveries without a consignment notification,
    ///   and first downloads of deliveries with receipts requested without a receipt
    ///   notification, as [`DueWork::FirstAttempt`] once the sender's account and the
    ///   documents are folded.
    ///
    /// Receipts are exempt from withdrawal and expiry: the download they report
    /// happened while the delivery was open, and the sender still learns of it.
    ///
    /// The caller filters out work it already has in progress.
    pub fn due(&self, now: Timestamp) -> Due {
        let mut due = Due::default();

        for id in &self.unresolved {
            let record = &self.notifications[id];
            if let Some(reason) = self.abandon_reason(record, now) {
                due.work.push(DueWork::Abandon {
                    notification: *id,
                    attempt: record.attempt,
                    reason,
                });
            } else if self.can_compose(record) {
                let sendable_at = self.sendable_at(*id, record);
                if sendable_at <= now {
                    due.work.push(DueWork::Send {
                        notification: *id,
                        attempt: record.attempt,
                    });
                } else if due.next_due.is_none_or(|next| sendable_at < next) {
                    due.next_due = Some(sendable_at);
                }
            }
        }

        // NOTE: every deferred notification is visited, so that a withdrawal ends its
        // retries at once instead of at its retry time.
        for (retry_at, id) in &self.deferred {
            let record = &self.notifications[id];
            if let Some(reason) = self.abandon_reason(record, now) {
                due.work.push(DueWork::Abandon {
                    notification: *id,
                    attempt: record.attempt,
                    reason,
                });
            } else if *retry_at <= now {
                due.work.push(DueWork::Retry {
                    notification: *id,
                    attempt: record.attempt.saturating_add(1),
                });
            } else if due.next_due.is_none_or(|next| *retry_at < next) {
                due.next_due = Some(*retry_at);
            }
        }

        for delivery_id in &self.awaiting_consignment {
            let delivery = &self.deliveries[delivery_id];
            if delivery.is_closed(now) || !self.consignment_data_folded(*delivery_id) {
                continue;
            }
            for (recipient, _) in &delivery.recipients {
                let key = (*delivery_id, *recipient, NotificationKind::Consignment);
                if !self.by_recipient.contains_key(&key) {
                    due.work.push(DueWork::FirstAttempt {
                        delivery: *delivery_id,
                        recipient: *recipient,
                        kind: NotificationKind::Consignment,
                    });
                }
            }
        }

        for (delivery, recipient) in &self.awaiting_receipt {
            if self.receipt_data_folded(*delivery, *recipient) {
                due.work.push(DueWork::FirstAttempt {
                    delivery: *delivery,
                    recipient: *recipient,
                    kind: NotificationKind::Receipt,
                });
            }
        }
        due
    }

    /// Returns why a consignment notification must not be sent again, or `None` while
    /// its delivery is open. Receipts always return `None`.
    fn abandon_reason(&self, record: &NotificationRecord, now: Timestamp) -> Option<String> {
        if record.kind != NotificationKind::Consignment {
            return None;
        }
        let delivery = self.deliveries.get(&record.delivery)?;
        if delivery.withdrawn {
            return Some("the delivery was withdrawn before the e-mail went out".to_owned());
        }
        if delivery.is_closed(now) {
            return Some("the delivery expired before the e-mail went out".to_owned());
        }
        None
    }

    /// True when the e-mail of `record` can be composed from folded data.
    fn can_compose(&self, record: &NotificationRecord) -> bool {
        let recipient_known = self
            .deliveries
            .get(&record.delivery)
            .is_some_and(|delivery| delivery.mailbox_of(record.recipient).is_some());
        if !recipient_known {
            return false;
        }
        match record.kind {
            NotificationKind::Consignment => self.consignment_data_folded(record.delivery),
            NotificationKind::Receipt => {
                self.receipt_data_folded(record.delivery, record.recipient)
            }
        }
    }

    /// True when the delivery, its sender's account and all its documents are folded.
    fn consignment_data_folded(&self, delivery_id: DeliveryId) -> bool {
        let Some(delivery) = self.deliveries.get(&delivery_id) else {
            return false;
        };
        self.accounts.contains_key(&delivery.sender)
            && delivery
                .documents
                .iter()
                .all(|document| self.documents.contains_key(document))
    }

    /// True when the delivery, the recipient, the sender's account, the first download
    /// and its document are folded.
    fn receipt_data_folded(&self, delivery_id: DeliveryId, recipient: RecipientId) -> bool {
        let Some(delivery) = self.deliveries.get(&delivery_id) else {
            return false;
        };
        let Some(download) = self.first_downloads.get(&(delivery_id, recipient)) else {
            return false;
        };
        delivery.mailbox_of(recipient).is_some()
            && self.accounts.contains_key(&delivery.sender)
            && self.documents.contains_key(&download.document)
    }
}
