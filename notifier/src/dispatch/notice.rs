//! Building the content of a notification's e-mail, and its retry deadline, from the
//! folded state.

use std::time::Duration;

use consign_schemas::events::NotificationKind;
use consign_schemas::{NotificationId, Timestamp};

use super::state::{DispatchState, NotificationRecord};
use crate::compose::{ConsignmentNotice, ReceiptNotice};
use crate::links::LinkKey;

/// The content of one notification's e-mail.
#[derive(Clone, Debug)]
pub(crate) enum Notice {
    Consignment(ConsignmentNotice),
    Receipt(ReceiptNotice),
}

/// The last moment worth retrying a notification at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Deadline {
    /// The delivery's expiry: a link e-mail after it is useless.
    Expiry(Timestamp),
    /// The give-up period after the first attempt ends, for notifications without an
    /// expiry.
    GiveUp(Timestamp),
}

impl Deadline {
    pub fn instant(self) -> Timestamp {
        match self {
            Deadline::Expiry(instant) | Deadline::GiveUp(instant) => instant,
        }
    }
}

impl DispatchState {
    /// Builds the e-mail content of `notification`, or returns `None` while data it
    /// needs is not folded.
    pub(crate) fn notice(
        &self,
        notification: NotificationId,
        link_key: &LinkKey,
    ) -> Option<Notice> {
        let record = self.notifications.get(&notification)?;
        match record.kind {
            NotificationKind::Consignment => self
                .consignment_notice(notification, record, link_key)
                .map(Notice::Consignment),
            NotificationKind::Receipt => self
                .receipt_notice(notification, record)
                .map(Notice::Receipt),
        }
    }

    /// Returns when retrying `notification` stops: the delivery's expiry for a link
    /// e-mail that has one, otherwise `give_up_after` past the first attempt.
    pub(crate) fn deadline(
        &self,
        notification: NotificationId,
        give_up_after: Duration,
    ) -> Option<Deadline> {
        let record = self.notifications.get(&notification)?;
        let expires_at = match record.kind {
            NotificationKind::Consignment => self
                .deliveries
                .get(&record.delivery)
                .and_then(|delivery| delivery.expires_at.as_ref()),
            NotificationKind::Receipt => None,
        };
        Some(match expires_at {
            Some(expires_at) => Deadline::Expiry(expires_at.instant),
            None => Deadline::GiveUp(add_duration(record.first_attempted_at, give_up_after)),
        })
    }

    fn consignment_notice(
        &self,
        notification: NotificationId,
        record: &NotificationRecord,
        link_key: &LinkKey,
    ) -> Option<ConsignmentNotice> {
        let delivery = self.deliveries.get(&record.delivery)?;
        let documents = delivery
            .documents
            .iter()
            .map(|document| self.documents.get(document).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(ConsignmentNotice {
            notification,
            message_id: record.message_id.clone(),
            recipient: delivery.mailbox_of(record.recipient)?.clone(),
            sender: self.accounts.get(&delivery.sender)?.clone(),
            subject: delivery.subject.clone(),
            message: delivery.message.clone(),
            access_token: link_key.token(record.delivery, record.recipient),
            documents,
            expires_at: delivery.expires_at.clone(),
            password_required: delivery.password_required,
        })
    }

    fn receipt_notice(
        &self,
        notification: NotificationId,
        record: &NotificationRecord,
    ) -> Option<ReceiptNotice> {
        let delivery = self.deliveries.get(&record.delivery)?;
        let download = self
            .first_downloads
            .get(&(record.delivery, record.recipient))?;
        Some(ReceiptNotice {
            notification,
            message_id: record.message_id.clone(),
            delivery: record.delivery,
            delivery_subject: delivery.subject.clone(),
            sender: self.accounts.get(&delivery.sender)?.clone(),
            recipient: delivery.mailbox_of(record.recipient)?.clone(),
            document: self.documents.get(&download.document)?.clone(),
            downloaded_at: download.at,
        })
    }
}

/// Adds `duration` to `instant`, saturating at the largest timestamp.
pub(crate) fn add_duration(instant: Timestamp, duration: Duration) -> Timestamp {
    let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(instant.as_micros().saturating_add(micros))
}
