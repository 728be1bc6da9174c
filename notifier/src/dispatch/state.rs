//! The dispatcher's fold: what the ledger records about accounts, documents, deliveries
//! and notifications, reduced to what sending e-mails needs.
//!
//! [`DispatchState::apply`] is a pure function of the events it is given. Each chain is
//! folded in order, but chains are folded independently of each other, so an event may
//! arrive before a related event of another chain, such as a delivery before its
//! sender's `AccountOpened` on chain 0. Nothing here fails on missing data: work that
//! needs it waits until the data is folded (see [`DispatchState::due`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use consign_ledger::StoredEvent;
use consign_schemas::events::{
    AccountOpened, DeliverySubmitted, DocumentDownloaded, DocumentUploaded, Mailbox,
    NotificationAttempted, NotificationKind, ZonedTime,
};
use consign_schemas::{
    AccountId, ChainId, DeliveryId, DocumentId, Event, NotificationId, Position, RecipientId,
    Timestamp,
};

use crate::compose::DocumentEntry;

/// State of a notification after the events folded so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotificationStatus {
    /// The latest attempt is recorded, its outcome is not: it is being sent, or a
    /// crash came between the attempt and its outcome.
    Attempted,
    /// The latest attempt failed transiently; the next attempt is due at `retry_at`.
    Deferred { retry_at: Timestamp },
    /// Final: the e-mail went out.
    Sent,
    /// Final: the e-mail failed permanently, or retrying was given up.
    Failed,
}

impl NotificationStatus {
    /// True for `Sent` and `Failed`, after which no attempt follows.
    pub fn is_final(self) -> bool {
        matches!(self, NotificationStatus::Sent | NotificationStatus::Failed)
    }
}

/// One notification (one e-mail and its retries) as recorded in the ledger.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NotificationRecord {
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub kind: NotificationKind,
    /// Chain of the `NotificationAttempted` events, which is the delivery's chain.
    pub chain: ChainId,
    pub message_id: String,
    /// Number of the latest recorded attempt, from 1.
    pub attempt: u32,
    /// Sequencer time of the first attempt folded for this notification.
    pub first_attempted_at: Timestamp,
    /// Sequencer time of the latest attempt.
    pub attempted_at: Timestamp,
    pub status: NotificationStatus,
}

/// A delivery as submitted, with the events that changed its state since.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryRecord {
    /// Chain of the `DeliverySubmitted` event, where every event of the delivery goes.
    pub chain: ChainId,
    pub sender: AccountId,
    pub recipients: Vec<(RecipientId, Mailbox)>,
    pub subject: String,
    pub message: String,
    pub documents: Vec<DocumentId>,
    pub expires_at: Option<ZonedTime>,
    pub receipt_requested: bool,
    /// Whether the sender set an access password; the hash itself is not kept.
    pub password_required: bool,
    pub released: bool,
    /// A `DeliveryExpired` event was folded. The expiry time alone also counts as
    /// expired once it has passed; see [`DeliveryRecord::is_closed`].
    pub expired: bool,
    pub withdrawn: bool,
}

impl DeliveryRecord {
    /// True when the delivery was withdrawn, or expired by event or by its expiry time.
    pub fn is_closed(&self, now: Timestamp) -> bool {
        let expiry_passed = self
            .expires_at
            .as_ref()
            .is_some_and(|expires_at| expires_at.instant <= now);
        self.withdrawn || self.expired || expiry_passed
    }

    pub fn mailbox_of(&self, recipient: RecipientId) -> Option<&Mailbox> {
        self.recipients
            .iter()
            .find(|(id, _)| *id == recipient)
            .map(|(_, mailbox)| mailbox)
    }
}

/// A recipient's first full download of a document, which a receipt reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FirstDownload {
    pub document: DocumentId,
    /// Sequencer time of the `DocumentDownloaded` event.
    pub at: Timestamp,
}

/// Fold of every chain into what the dispatcher needs, with indexes of the
/// notifications and deliveries that may have work due.
///
/// NOTE: the whole fold lives in memory and is rebuilt from position 0 at every start,
/// so memory use and start-up time grow with the ledger.
#[derive(Clone, Debug, Default)]
pub struct DispatchState {
    /// Per chain, the position after the last folded event.
    next_positions: HashMap<ChainId, Position>,
    pub(crate) accounts: HashMap<AccountId, Mailbox>,
    pub(crate) documents: HashMap<DocumentId, DocumentEntry>,
    pub(crate) deliveries: HashMap<DeliveryId, DeliveryRecord>,
    pub(crate) notifications: HashMap<NotificationId, NotificationRecord>,
    /// The first notification recorded for each delivery, recipient and kind.
    pub(crate) by_recipient: HashMap<(DeliveryId, RecipientId, NotificationKind), NotificationId>,
    pub(crate) first_downloads: HashMap<(DeliveryId, RecipientId), FirstDownload>,
    receipts_sent: HashSet<(DeliveryId, RecipientId)>,
    /// Released deliveries with at least one recipient without a consignment attempt.
    pub(crate) awaiting_consignment: BTreeSet<DeliveryId>,
    /// Notifications whose latest attempt has no outcome yet.
    pub(crate) unresolved: BTreeSet<NotificationId>,
    /// Deferred notifications, ordered by `retry_at`.
    pub(crate) deferred: BTreeSet<(Timestamp, NotificationId)>,
    /// First downloads of deliveries with receipts requested, without a receipt
    /// notification yet.
    pub(crate) awaiting_receipt: BTreeSet<(DeliveryId, RecipientId)>,
    /// Attempts this dispatcher recorded itself, as notification and attempt number.
    own_attempts: HashSet<(NotificationId, u32)>,
    /// How long an attempt recorded by another dispatcher, or before a restart, is left
    /// to its sender before it is sent again. Zero sends it at once.
    pub(crate) foreign_attempt_grace: Duration,
}

impl DispatchState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an empty state that leaves attempts recorded elsewhere to their sender
    /// for `grace` before sending them again.
    pub fn with_foreign_attempt_grace(grace: Duration) -> Self {
        Self {
            foreign_attempt_grace: grace,
            ..Self::default()
        }
    }

    /// Notes an attempt this dispatcher recorded, so that its e-mail goes out at once.
    pub fn note_own_attempt(&mut self, notification: NotificationId, attempt: u32) {
        self.own_attempts.insert((notification, attempt));
    }

    /// Returns when the latest attempt of `record` may be sent by this dispatcher: at
    /// once for its own attempts, otherwise once the grace has passed.
    pub(crate) fn sendable_at(&self, id: NotificationId, record: &NotificationRecord) -> Timestamp {
        // The attempt's time comes from the sequencer, whose clock can be ahead of this
        // dispatcher's, so an attempt that needs no wait is sendable at any time.
        if self.foreign_attempt_grace.is_zero() || self.own_attempts.contains(&(id, record.attempt))
        {
            return Timestamp::from_micros(i64::MIN);
        }
        let grace = i64::try_from(self.foreign_attempt_grace.as_micros()).unwrap_or(i64::MAX);
        Timestamp::from_micros(record.attempted_at.as_micros().saturating_add(grace))
    }

    /// Returns the position after the last event folded from `chain`: where reading or
    /// following that chain continues.
    pub fn next_position(&self, chain: ChainId) -> Position {
        self.next_positions
            .get(&chain)
            .copied()
            .unwrap_or(Position::ZERO)
    }

    /// Returns the chain of a delivery's events, once its submission is folded.
    pub fn delivery_chain(&self, delivery: DeliveryId) -> Option<ChainId> {
        self.deliveries.get(&delivery).map(|record| record.chain)
    }

    /// Returns what the ledger records about one notification.
    pub fn notification(&self, notification: NotificationId) -> Option<&NotificationRecord> {
        self.notifications.get(&notification)
    }

    /// Returns the notification recorded for a recipient of a delivery, if any.
    pub fn notification_for(
        &self,
        delivery: DeliveryId,
        recipient: RecipientId,
        kind: NotificationKind,
    ) -> Option<NotificationId> {
        self.by_recipient.get(&(delivery, recipient, kind)).copied()
    }

    /// Folds one stored event.
    ///
    /// Events must come in chain order. An event at a position already folded for its
    /// chain is skipped, so feeding an overlapping range twice changes nothing.
    pub fn apply(&mut self, stored: &StoredEvent) {
        let chain = stored.chain();
        let position = stored.position();
        if position < self.next_position(chain) {
            return;
        }
        self.next_positions.insert(chain, position.next());

        let time = stored.envelope.time;
        match &stored.envelope.event {
            Event::AccountOpened(opened) => self.apply_account_opened(opened),
            Event::DocumentUploaded(uploaded) => self.apply_document_uploaded(uploaded),
            Event::DeliverySubmitted(submitted) => {
                self.apply_delivery_submitted(chain, submitted);
            }
            Event::DeliveryReleased(released) => {
                if let Some(delivery) = self.deliveries.get_mut(&released.delivery) {
                    delivery.released = true;
                }
                self.refresh_awaiting_consignment(released.delivery);
            }
            Event::DeliveryExpired(expired) => {
                if let Some(delivery) = self.deliveries.get_mut(&expired.delivery) {
                    delivery.expired = true;
                }
                self.awaiting_consignment.remove(&expired.delivery);
            }
            Event::DeliveryWithdrawn(withdrawn) => {
                if let Some(delivery) = self.deliveries.get_mut(&withdrawn.delivery) {
                    delivery.withdrawn = true;
                }
                self.awaiting_consignment.remove(&withdrawn.delivery);
            }
            Event::NotificationAttempted(attempted) => {
                self.apply_attempted(chain, time, attempted);
            }
            Event::NotificationSent(sent) => {
                self.finish(
                    sent.notification,
                    Some(sent.attempt),
                    NotificationStatus::Sent,
                );
            }
            Event::NotificationDeferred(deferred) => {
                self.defer(deferred.notification, deferred.attempt, deferred.retry_at);
            }
            Event::NotificationFailed(failed) => {
                let attempt = Some(failed.attempt);
                self.finish(failed.notification, attempt, NotificationStatus::Failed);
            }
            Event::DocumentDownloaded(downloaded) => self.apply_downloaded(time, downloaded),
            Event::ReceiptSent(receipt) => {
                let key = (receipt.delivery, receipt.recipient);
                self.receipts_sent.insert(key);
                self.awaiting_receipt.remove(&key);
                self.finish(receipt.notification, None, NotificationStatus::Sent);
            }
            Event::CredentialChanged(_)
            | Event::MailingListDefined(_)
            | Event::PostmarkIssued(_)
            | Event::DeliveryOpened(_)
            | Event::AccessDenied(_)
            | Event::DocumentsPurged(_)
            | Event::CheckpointSigned(_) => {}
        }
    }

    fn apply_account_opened(&mut self, opened: &AccountOpened) {
        let display_name = Some(opened.display_name.clone()).filter(|name| !name.is_empty());
        let mailbox = Mailbox {
            address: opened.email.clone(),
            display_name,
        };
        self.accounts.insert(opened.account, mailbox);
    }

    fn apply_document_uploaded(&mut self, uploaded: &DocumentUploaded) {
        let entry = DocumentEntry {
            name: uploaded.file_name.clone(),
            size: uploaded.size,
            content_hash: uploaded.content_hash,
        };
        self.documents.insert(uploaded.document, entry);
    }

    /// Records a submission. A second submission of the same delivery id is ignored.
    fn apply_delivery_submitted(&mut self, chain: ChainId, submitted: &DeliverySubmitted) {
        if self.deliveries.contains_key(&submitted.delivery) {
            return;
        }
        let recipients = submitted
            .recipients
            .iter()
            .map(|entry| (entry.recipient, entry.mailbox.clone()))
            .collect();
        let record = DeliveryRecord {
            chain,
            sender: submitted.sender,
            recipients,
            subject: submitted.subject.clone(),
            message: submitted.message.clone(),
            documents: submitted.documents.clone(),
            expires_at: submitted.options.expires_at.clone(),
            receipt_requested: submitted.options.receipt_requested,
            password_required: submitted.options.access_password_hash.is_some(),
            released: false,
            expired: false,
            withdrawn: false,
        };
        self.deliveries.insert(submitted.delivery, record);
    }

    /// Records an attempt: the first one opens the notification, a later one moves a
    /// deferred notification back to `Attempted`. An attempt whose number is not above
    /// the latest, or that follows a final outcome, is ignored.
    fn apply_attempted(
        &mut self,
        chain: ChainId,
        time: Timestamp,
        attempted: &NotificationAttempted,
    ) {
        let id = attempted.notification;
        if let Some(record) = self.notifications.get_mut(&id) {
            if record.status.is_final() || attempted.attempt <= record.attempt {
                return;
            }
            if let NotificationStatus::Deferred { retry_at } = record.status {
                self.deferred.remove(&(retry_at, id));
            }
            record.attempt = attempted.attempt;
            record.attempted_at = time;
            record.status = NotificationStatus::Attempted;
            self.unresolved.insert(id);
            return;
        }

        let record = NotificationRecord {
            delivery: attempted.delivery,
            recipient: attempted.recipient,
            kind: attempted.kind,
            chain,
            message_id: attempted.message_id.clone(),
            attempt: attempted.attempt,
            first_attempted_at: time,
            attempted_at: time,
            status: NotificationStatus::Attempted,
        };
        self.notifications.insert(id, record);
        self.unresolved.insert(id);
        self.by_recipient
            .entry((attempted.delivery, attempted.recipient, attempted.kind))
            .or_insert(id);

        match attempted.kind {
            NotificationKind::Consignment => self.refresh_awaiting_consignment(attempted.delivery),
            NotificationKind::Receipt => {
                self.awaiting_receipt
                    .remove(&(attempted.delivery, attempted.recipient));
            }
        }
    }

    /// Records a deferral of the latest attempt, unless that attempt already has an
    /// outcome.
    fn defer(&mut self, id: NotificationId, attempt: u32, retry_at: Timestamp) {
        let Some(record) = self.notifications.get_mut(&id) else {
            return;
        };
        if record.attempt != attempt || record.status != NotificationStatus::Attempted {
            return;
        }
        record.status = NotificationStatus::Deferred { retry_at };
        self.unresolved.remove(&id);
        self.own_attempts.retain(|(own, _)| *own != id);
        self.deferred.insert((retry_at, id));
    }

    /// Records a final outcome. `attempt` is checked against the latest attempt when
    /// the event carries one; `ReceiptSent` does not. A notification already final
    /// keeps its first final outcome.
    fn finish(&mut self, id: NotificationId, attempt: Option<u32>, status: NotificationStatus) {
        let Some(record) = self.notifications.get_mut(&id) else {
            return;
        };
        if record.status.is_final() || attempt.is_some_and(|attempt| attempt != record.attempt) {
            return;
        }
        if let NotificationStatus::Deferred { retry_at } = record.status {
            self.deferred.remove(&(retry_at, id));
        }
        record.status = status;
        self.unresolved.remove(&id);
        self.own_attempts.retain(|(own, _)| *own != id);
    }

    fn apply_downloaded(&mut self, time: Timestamp, downloaded: &DocumentDownloaded) {
        let key = (downloaded.delivery, downloaded.recipient);
        if self.first_downloads.contains_key(&key) {
            return;
        }
        let first = FirstDownload {
            document: downloaded.document,
            at: time,
        };
        self.first_downloads.insert(key, first);

        let receipt_requested = self
            .deliveries
            .get(&downloaded.delivery)
            .is_some_and(|delivery| delivery.receipt_requested);
        let receipt_recorded = self.receipts_sent.contains(&key)
            || self.by_recipient.contains_key(&(
                downloaded.delivery,
                downloaded.recipient,
                NotificationKind::Receipt,
            ));
        if receipt_requested && !receipt_recorded {
            self.awaiting_receipt.insert(key);
        }
    }

    /// Puts a released, open delivery into `awaiting_consignment` while one of its
    /// recipients has no consignment notification, and takes it out otherwise.
    fn refresh_awaiting_consignment(&mut self, delivery_id: DeliveryId) {
        let Some(delivery) = self.deliveries.get(&delivery_id) else {
            return;
        };
        let open = delivery.released && !delivery.expired && !delivery.withdrawn;
        let missing = delivery.recipients.iter().any(|(recipient, _)| {
            !self.by_recipient.contains_key(&(
                delivery_id,
                *recipient,
                NotificationKind::Consignment,
            ))
        });
        if open && missing {
            self.awaiting_consignment.insert(delivery_id);
        } else {
            self.awaiting_consignment.remove(&delivery_id);
        }
    }
}
