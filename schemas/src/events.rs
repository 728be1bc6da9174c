//! Event payloads: one struct per event type, and the [`Event`] enum that stores them.
//!
//! Variants are only ever appended at the end of [`Event`] and fields are never
//! reordered, because postcard encodes the variant index and field order.
//! The golden vectors in `tests/golden/` fail on any change to these encodings.

use serde::{Deserialize, Serialize};

use crate::ids::{
    AccountId, ChainId, ContentHash, DeliveryId, DocumentId, EventHash, NotificationId, Position,
    RecipientId, Timestamp,
};

/// Permission level of an account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Sender,
    Billing,
    Auditor,
}

/// An e-mail address with an optional display name, in any script.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Mailbox {
    pub address: String,
    pub display_name: Option<String>,
}

/// A UTC instant together with the IANA zone the sender entered it in.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ZonedTime {
    pub instant: Timestamp,
    /// IANA zone name such as `Europe/Paris`, or `UTC`.
    pub zone: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    High,
    Urgent,
}

/// Encryption at rest of a stored document. The data key is stored only wrapped.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EncryptionDescriptor {
    /// AEAD construction, for example `XChaCha20-Poly1305/STREAM-64KiB`.
    pub algorithm: String,
    /// Identifier of the key-encryption key that wrapped `wrapped_key`.
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce_prefix: Vec<u8>,
}

/// Options a sender chooses per delivery.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliveryOptions {
    pub priority: Priority,
    pub encrypt_at_rest: bool,
    pub receipt_requested: bool,
    pub expires_at: Option<ZonedTime>,
    pub deliver_at: Option<ZonedTime>,
    pub billing_code: Option<String>,
    /// Argon2id PHC string of the access password; the password itself is never stored.
    pub access_password_hash: Option<String>,
    pub require_tls: bool,
    pub postmark: bool,
}

/// One recipient of a delivery, with the hash of its private link token.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RecipientEntry {
    pub recipient: RecipientId,
    pub mailbox: Mailbox,
    /// Name of the sender's mailing list this recipient came from, if any.
    pub via_list: Option<String>,
    /// BLAKE3 hash of the link token; the token itself is only in the e-mail.
    pub access_token_hash: EventHash,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccountOpened {
    pub account: AccountId,
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CredentialChanged {
    pub account: AccountId,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// A sender's mailing list, replacing any earlier list of the same name. A definition
/// without members removes the list.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MailingListDefined {
    pub account: AccountId,
    pub name: String,
    pub members: Vec<Mailbox>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DocumentUploaded {
    pub document: DocumentId,
    pub account: AccountId,
    /// The client's file name: metadata only, never part of a filesystem path.
    pub file_name: String,
    pub media_type: String,
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub content_hash: ContentHash,
    /// Key of the stored object in the blob store.
    pub storage_key: String,
    pub encryption: Option<EncryptionDescriptor>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliverySubmitted {
    pub delivery: DeliveryId,
    pub sender: AccountId,
    pub recipients: Vec<RecipientEntry>,
    pub documents: Vec<DocumentId>,
    pub subject: String,
    pub message: String,
    pub options: DeliveryOptions,
}

/// Electronic postmark: an Ed25519 signature over the submission event and its documents.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PostmarkIssued {
    pub delivery: DeliveryId,
    pub submission_chain: ChainId,
    pub submission_position: Position,
    pub submission_hash: EventHash,
    pub time: Timestamp,
    pub document_hashes: Vec<ContentHash>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliveryReleased {
    pub delivery: DeliveryId,
}

/// Kind of e-mail a notification sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The link e-mail to a recipient.
    Consignment,
    /// The receipt e-mail to the sender after a recipient's first full download.
    Receipt,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NotificationAttempted {
    pub notification: NotificationId,
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub kind: NotificationKind,
    /// RFC 5322 Message-ID, fixed for every retry of this notification.
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NotificationSent {
    pub notification: NotificationId,
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub attempt: u32,
    /// The SMTP server's final reply, or the outbox file name.
    pub server_reply: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NotificationDeferred {
    pub notification: NotificationId,
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub attempt: u32,
    pub reason: String,
    pub retry_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub notification: NotificationId,
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliveryOpened {
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
}

/// Reason a recipient was turned away.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    WrongPassword,
    Throttled,
    NotYetReleased,
    Expired,
    Withdrawn,
    Purged,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccessDenied {
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub reason: DenialReason,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DocumentDownloaded {
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub document: DocumentId,
    pub bytes: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReceiptSent {
    pub delivery: DeliveryId,
    /// The recipient whose download the receipt reports.
    pub recipient: RecipientId,
    pub notification: NotificationId,
    pub message_id: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliveryExpired {
    pub delivery: DeliveryId,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeliveryWithdrawn {
    pub delivery: DeliveryId,
    pub by: AccountId,
    pub reason: String,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DocumentsPurged {
    pub delivery: DeliveryId,
    pub documents: Vec<DocumentId>,
}

/// A signed Merkle tree head over a chain prefix.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CheckpointSigned {
    pub chain: ChainId,
    pub tree_size: u64,
    pub root_hash: EventHash,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// Every event type. The variant order is part of the stored format.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Event {
    AccountOpened(AccountOpened),
    CredentialChanged(CredentialChanged),
    MailingListDefined(MailingListDefined),
    DocumentUploaded(DocumentUploaded),
    DeliverySubmitted(DeliverySubmitted),
    PostmarkIssued(PostmarkIssued),
    DeliveryReleased(DeliveryReleased),
    NotificationAttempted(NotificationAttempted),
    NotificationSent(NotificationSent),
    NotificationDeferred(NotificationDeferred),
    NotificationFailed(NotificationFailed),
    DeliveryOpened(DeliveryOpened),
    AccessDenied(AccessDenied),
    DocumentDownloaded(DocumentDownloaded),
    ReceiptSent(ReceiptSent),
    DeliveryExpired(DeliveryExpired),
    DeliveryWithdrawn(DeliveryWithdrawn),
    DocumentsPurged(DocumentsPurged),
    CheckpointSigned(CheckpointSigned),
}

/// The type of an [`Event`] without its data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum EventKind {
    AccountOpened,
    CredentialChanged,
    MailingListDefined,
    DocumentUploaded,
    DeliverySubmitted,
    PostmarkIssued,
    DeliveryReleased,
    NotificationAttempted,
    NotificationSent,
    NotificationDeferred,
    NotificationFailed,
    DeliveryOpened,
    AccessDenied,
    DocumentDownloaded,
    ReceiptSent,
    DeliveryExpired,
    DeliveryWithdrawn,
    DocumentsPurged,
    CheckpointSigned,
}

impl EventKind {
    /// Every kind, in stored variant order.
    pub const ALL: [EventKind; 19] = [
        EventKind::AccountOpened,
        EventKind::CredentialChanged,
        EventKind::MailingListDefined,
        EventKind::DocumentUploaded,
        EventKind::DeliverySubmitted,
        EventKind::PostmarkIssued,
        EventKind::DeliveryReleased,
        EventKind::NotificationAttempted,
        EventKind::NotificationSent,
        EventKind::NotificationDeferred,
        EventKind::NotificationFailed,
        EventKind::DeliveryOpened,
        EventKind::AccessDenied,
        EventKind::DocumentDownloaded,
        EventKind::ReceiptSent,
        EventKind::DeliveryExpired,
        EventKind::DeliveryWithdrawn,
        EventKind::DocumentsPurged,
        EventKind::CheckpointSigned,
    ];

    /// Returns the type name used in exports and dumps.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::AccountOpened => "AccountOpened",
            EventKind::CredentialChanged => "CredentialChanged",
            EventKind::MailingListDefined => "MailingListDefined",
            EventKind::DocumentUploaded => "DocumentUploaded",
            EventKind::DeliverySubmitted => "DeliverySubmitted",
            EventKind::PostmarkIssued => "PostmarkIssued",
            EventKind::DeliveryReleased => "DeliveryReleased",
            EventKind::NotificationAttempted => "NotificationAttempted",
            EventKind::NotificationSent => "NotificationSent",
            EventKind::NotificationDeferred => "NotificationDeferred",
            EventKind::NotificationFailed => "NotificationFailed",
            EventKind::DeliveryOpened => "DeliveryOpened",
            EventKind::AccessDenied => "AccessDenied",
            EventKind::DocumentDownloaded => "DocumentDownloaded",
            EventKind::ReceiptSent => "ReceiptSent",
            EventKind::DeliveryExpired => "DeliveryExpired",
            EventKind::DeliveryWithdrawn => "DeliveryWithdrawn",
            EventKind::DocumentsPurged => "DocumentsPurged",
            EventKind::CheckpointSigned => "CheckpointSigned",
        }
    }

    /// Returns the name of the event of ETSI EN 319 522-1 (electronic registered
    /// delivery) that this kind records, or `None` when no event of the standard
    /// matches.
    ///
    /// `NotificationSent` and `NotificationFailed` also record the receipt e-mail to the
    /// sender, which is not a consignment notification. A caller that knows the
    /// notification's [`NotificationKind`] must drop the name for
    /// [`NotificationKind::Receipt`].
    ///
    /// No equivalent:
    ///
    /// - `AccountOpened`, `CredentialChanged`, `MailingListDefined`, `CheckpointSigned`:
    ///   they belong to no delivery.
    /// - `DocumentUploaded`: part of the submission that `DeliverySubmitted` accepts.
    /// - `PostmarkIssued`: evidence about the submission, not an event of the delivery.
    /// - `NotificationAttempted`, `NotificationDeferred`: steps before the outcome of
    ///   a notification.
    /// - `AccessDenied`: a refused visit, after which the recipient may still succeed.
    /// - `ReceiptSent`: the e-mail that passes evidence to the sender.
    /// - `DeliveryExpired`, `DeliveryWithdrawn`: they end the delivery for every
    ///   recipient, including those who already downloaded, so they are not a
    ///   `ContentHandoverFailure` for a recipient. consign has no step in which a
    ///   recipient accepts or rejects the delivery, so `AcceptanceRejectionExpiry`
    ///   does not apply either.
    /// - `DocumentsPurged`: storage housekeeping after the delivery ended.
    pub fn etsi_name(self) -> Option<&'static str> {
        match self {
            EventKind::DeliverySubmitted => Some("SubmissionAcceptance"),
            EventKind::DeliveryReleased => Some("ContentConsignment"),
            EventKind::NotificationSent => Some("ConsignmentNotification"),
            EventKind::NotificationFailed => Some("ConsignmentNotificationFailure"),
            EventKind::DeliveryOpened => Some("ContentAccessTracking"),
            EventKind::DocumentDownloaded => Some("ContentHandover"),
            EventKind::AccountOpened
            | EventKind::CredentialChanged
            | EventKind::MailingListDefined
            | EventKind::DocumentUploaded
            | EventKind::PostmarkIssued
            | EventKind::NotificationAttempted
            | EventKind::NotificationDeferred
            | EventKind::AccessDenied
            | EventKind::ReceiptSent
            | EventKind::DeliveryExpired
            | EventKind::DeliveryWithdrawn
            | EventKind::DocumentsPurged
            | EventKind::CheckpointSigned => None,
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::AccountOpened(_) => EventKind::AccountOpened,
            Event::CredentialChanged(_) => EventKind::CredentialChanged,
            Event::MailingListDefined(_) => EventKind::MailingListDefined,
            Event::DocumentUploaded(_) => EventKind::DocumentUploaded,
            Event::DeliverySubmitted(_) => EventKind::DeliverySubmitted,
            Event::PostmarkIssued(_) => EventKind::PostmarkIssued,
            Event::DeliveryReleased(_) => EventKind::DeliveryReleased,
            Event::NotificationAttempted(_) => EventKind::NotificationAttempted,
            Event::NotificationSent(_) => EventKind::NotificationSent,
            Event::NotificationDeferred(_) => EventKind::NotificationDeferred,
            Event::NotificationFailed(_) => EventKind::NotificationFailed,
            Event::DeliveryOpened(_) => EventKind::DeliveryOpened,
            Event::AccessDenied(_) => EventKind::AccessDenied,
            Event::DocumentDownloaded(_) => EventKind::DocumentDownloaded,
            Event::ReceiptSent(_) => EventKind::ReceiptSent,
            Event::DeliveryExpired(_) => EventKind::DeliveryExpired,
            Event::DeliveryWithdrawn(_) => EventKind::DeliveryWithdrawn,
            Event::DocumentsPurged(_) => EventKind::DocumentsPurged,
            Event::CheckpointSigned(_) => EventKind::CheckpointSigned,
        }
    }

    /// Returns the delivery this event belongs to, if any.
    pub fn delivery(&self) -> Option<DeliveryId> {
        match self {
            Event::AccountOpened(_)
            | Event::CredentialChanged(_)
            | Event::MailingListDefined(_)
            | Event::DocumentUploaded(_)
            | Event::CheckpointSigned(_) => None,
            Event::DeliverySubmitted(e) => Some(e.delivery),
            Event::PostmarkIssued(e) => Some(e.delivery),
            Event::DeliveryReleased(e) => Some(e.delivery),
            Event::NotificationAttempted(e) => Some(e.delivery),
            Event::NotificationSent(e) => Some(e.delivery),
            Event::NotificationDeferred(e) => Some(e.delivery),
            Event::NotificationFailed(e) => Some(e.delivery),
            Event::DeliveryOpened(e) => Some(e.delivery),
            Event::AccessDenied(e) => Some(e.delivery),
            Event::DocumentDownloaded(e) => Some(e.delivery),
            Event::ReceiptSent(e) => Some(e.delivery),
            Event::DeliveryExpired(e) => Some(e.delivery),
            Event::DeliveryWithdrawn(e) => Some(e.delivery),
            Event::DocumentsPurged(e) => Some(e.delivery),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn etsi_names_cover_every_kind() {
        let expected = [
            (EventKind::AccountOpened, None),
            (EventKind::CredentialChanged, None),
            (EventKind::MailingListDefined, None),
            (EventKind::DocumentUploaded, None),
            (EventKind::DeliverySubmitted, Some("SubmissionAcceptance")),
            (EventKind::PostmarkIssued, None),
            (EventKind::DeliveryReleased, Some("ContentConsignment")),
            (EventKind::NotificationAttempted, None),
            (EventKind::NotificationSent, Some("ConsignmentNotification")),
            (EventKind::NotificationDeferred, None),
            (
                EventKind::NotificationFailed,
                Some("ConsignmentNotificationFailure"),
            ),
            (EventKind::DeliveryOpened, Some("ContentAccessTracking")),
            (EventKind::AccessDenied, None),
            (EventKind::DocumentDownloaded, Some("ContentHandover")),
            (EventKind::ReceiptSent, None),
            (EventKind::DeliveryExpired, None),
            (EventKind::DeliveryWithdrawn, None),
            (EventKind::DocumentsPurged, None),
            (EventKind::CheckpointSigned, None),
        ];
        let kinds: Vec<EventKind> = expected.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(
            kinds,
            EventKind::ALL,
            "the table lists every kind once, in order"
        );
        for (kind, name) in expected {
            assert_eq!(kind.etsi_name(), name, "{}", kind.name());
        }
    }
}
