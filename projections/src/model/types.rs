//! The records the model keeps: accounts, documents, deliveries and their recipients.

use std::collections::BTreeMap;

use consign_schemas::events::{
    DeliveryOptions, EncryptionDescriptor, Mailbox, NotificationKind, Role,
};
use consign_schemas::{
    AccountId, ChainId, ContentHash, DeliveryId, DocumentId, EventHash, NotificationId, Position,
    RecipientId, Timestamp,
};

/// An account as last defined by `AccountOpened` and `CredentialChanged`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub opened_at: Timestamp,
}

impl Account {
    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            address: self.email.clone(),
            display_name: Some(self.display_name.clone()),
        }
    }
}

/// A stored document, from its `DocumentUploaded` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub id: DocumentId,
    pub account: AccountId,
    pub file_name: String,
    pub media_type: String,
    pub size: u64,
    pub content_hash: ContentHash,
    pub storage_key: String,
    pub encryption: Option<EncryptionDescriptor>,
    pub purged: bool,
}

/// Where an event sits in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef {
    pub chain: ChainId,
    pub position: Position,
    pub hash: EventHash,
    pub time: Timestamp,
}

/// The latest state of one e-mail (a link e-mail or a receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationStatus {
    /// An attempt is recorded and its outcome is not.
    Attempted,
    Sent {
        at: Timestamp,
    },
    Deferred {
        reason: String,
        retry_at: Timestamp,
    },
    Failed {
        reason: String,
    },
}

/// One e-mail and its attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: NotificationId,
    pub kind: NotificationKind,
    pub message_id: String,
    pub attempts: u32,
    pub status: NotificationStatus,
}

/// One recipient of a delivery and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub id: RecipientId,
    pub mailbox: Mailbox,
    pub via_list: Option<String>,
    pub token_hash: EventHash,
    /// The link e-mail, once its first attempt is recorded.
    pub consignment: Option<Notification>,
    /// The receipt e-mail to the sender about this recipient.
    pub receipt: Option<Notification>,
    pub first_opened_at: Option<Timestamp>,
    pub opens: u32,
    pub denials: u32,
    /// First full download time of each document.
    pub downloads: BTreeMap<DocumentId, Timestamp>,
    pub receipt_sent_at: Option<Timestamp>,
}

/// A delivery and its life so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub sender: AccountId,
    pub subject: String,
    pub message: String,
    pub options: DeliveryOptions,
    pub documents: Vec<DocumentId>,
    pub recipients: Vec<Recipient>,
    pub submitted: EventRef,
    pub released_at: Option<Timestamp>,
    pub expired_at: Option<Timestamp>,
    pub withdrawn: Option<Withdrawal>,
    pub purged: bool,
    /// The electronic postmark, once issued.
    pub postmark: Option<PostmarkRecord>,
}

/// An issued postmark and where its event sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostmarkRecord {
    pub event: consign_schemas::events::PostmarkIssued,
    pub at: EventRef,
}

/// The sender's recall of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    pub at: Timestamp,
    pub by: AccountId,
    pub reason: String,
}

/// Whether a recipient may have a delivery's documents at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    NotYetReleased,
    Expired,
    Withdrawn,
    Purged,
}

impl Delivery {
    /// Decides availability at `now`. The expiration date counts at once, before the
    /// scheduler has recorded `DeliveryExpired`.
    pub fn availability(&self, now: Timestamp) -> Availability {
        if self.withdrawn.is_some() {
            return Availability::Withdrawn;
        }
        if self.purged {
            return Availability::Purged;
        }
        let expires = self.options.expires_at.as_ref().map(|time| time.instant);
        if self.expired_at.is_some() || expires.is_some_and(|instant| instant <= now) {
            return Availability::Expired;
        }
        if self.released_at.is_none() {
            return Availability::NotYetReleased;
        }
        Availability::Available
    }

    pub fn recipient(&self, id: RecipientId) -> Option<&Recipient> {
        self.recipients.iter().find(|recipient| recipient.id == id)
    }

    pub(crate) fn recipient_mut(&mut self, id: RecipientId) -> Option<&mut Recipient> {
        self.recipients
            .iter_mut()
            .find(|recipient| recipient.id == id)
    }
}
