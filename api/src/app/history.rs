//! A delivery's audit history checked against the ledger, with the recipient, document
//! and outcome that each event records.
//!
//! The audit view stores each event's position, hashes, time and type. The rest of a
//! row comes from the stored event itself, read back from the ledger for the link
//! check: recipient addresses from the submission, file names from the uploads.

use std::collections::{HashMap, HashSet};

use consign_projections::audit;
use consign_schemas::events::{DenialReason, NotificationKind};
use consign_schemas::{
    ChainId, DocumentId, Envelope, Event, EventHash, EventKind, NotificationId, Position,
    RecipientId, Timestamp,
};

use super::core::Core;
use super::error::ApiError;

/// Recipients a submission's detail names before it counts the rest.
const LISTED_RECIPIENTS: usize = 5;

/// One event of a delivery's history, checked against the ledger.
#[derive(Debug)]
pub(crate) struct CheckedEntry {
    pub(crate) entry: audit::AuditEntry,
    /// The ETSI EN 319 522 event name, if the event is one.
    pub(crate) etsi: Option<&'static str>,
    /// See [`LedgerCheck::link_verified`].
    pub(crate) link_verified: bool,
    /// The address of the recipient the event concerns, if any.
    pub(crate) recipient: Option<String>,
    /// The file name of the document the event concerns, if any.
    pub(crate) document: Option<String>,
    /// A one-line account of the event's other facts, such as a reason or a server
    /// reply, if it has any.
    pub(crate) detail: Option<String>,
}

/// Reads a delivery's history from the audit view and checks each event against the
/// ledger; empty for an unknown delivery.
///
/// # Errors
///
/// The view or the ledger cannot be read.
pub(crate) fn checked_history(
    core: &Core,
    delivery: consign_schemas::DeliveryId,
) -> Result<Vec<CheckedEntry>, ApiError> {
    let entries = audit::history(&core.views, delivery)?;
    let mut rows = Vec::with_capacity(entries.len());
    let mut receipt_notifications = HashSet::new();
    let mut names = Names::default();
    for entry in entries {
        let checked = check_in_ledger(
            core,
            entry.chain,
            entry.position,
            entry.hash,
            entry.previous,
        )?;
        let etsi = etsi_name(
            entry.kind,
            checked.event.as_ref(),
            &mut receipt_notifications,
        );
        let facts = match &checked.event {
            Some(event) => names.facts(core, event),
            None => Facts::default(),
        };
        rows.push(CheckedEntry {
            entry,
            etsi,
            link_verified: checked.link_verified,
            recipient: facts.recipient,
            document: facts.document,
            detail: facts.detail,
        });
    }
    Ok(rows)
}

/// One history event as read back from the ledger.
struct LedgerCheck {
    /// Whether the stored bytes hash to the recorded hash, the event is the one the
    /// view names, and its previous hash is the hash of the event before it (or the
    /// chain's genesis value).
    link_verified: bool,
    /// The stored event, when it exists and decodes.
    event: Option<Event>,
}

/// Reads one event of a history from the ledger and checks its link.
fn check_in_ledger(
    core: &Core,
    chain: ChainId,
    position: Position,
    hash: EventHash,
    previous: EventHash,
) -> Result<LedgerCheck, ApiError> {
    let start = Position::new(position.get().saturating_sub(1));
    let raws = core.ledger.read_raw(chain, start, 2)?;
    let Some(event) = raws.iter().find(|raw| raw.position == position) else {
        return Ok(LedgerCheck {
            link_verified: false,
            event: None,
        });
    };
    let computed = consign_schemas::hash_stored_event(&event.bytes);
    let expected_previous = if position.get() == 0 {
        Some(consign_schemas::genesis_hash(chain))
    } else {
        raws.iter()
            .find(|raw| raw.position.get() + 1 == position.get())
            .map(|raw| consign_schemas::hash_stored_event(&raw.bytes))
    };
    let link_verified = event.recorded_hash == Some(computed)
        && computed == hash
        && expected_previous == Some(previous);
    let event = Envelope::decode(&event.bytes)
        .ok()
        .map(|envelope| envelope.event);
    Ok(LedgerCheck {
        link_verified,
        event,
    })
}

/// Returns the ETSI EN 319 522 name of one history event, given in ledger order.
///
/// `receipt_notifications` collects the receipt e-mails to the sender seen so far.
/// Their `NotificationSent` and `NotificationFailed` get no name because they are not
/// consignment notifications. An event that does not decode gets its kind's name.
fn etsi_name(
    kind: EventKind,
    event: Option<&Event>,
    receipt_notifications: &mut HashSet<NotificationId>,
) -> Option<&'static str> {
    match event {
        Some(Event::NotificationAttempted(attempted))
            if attempted.kind == NotificationKind::Receipt =>
        {
            receipt_notifications.insert(attempted.notification);
        }
        Some(Event::NotificationSent(sent))
            if receipt_notifications.contains(&sent.notification) =>
        {
            return None;
        }
        Some(Event::NotificationFailed(failed))
            if receipt_notifications.contains(&failed.notification) =>
        {
            return None;
        }
        _ => {}
    }
    kind.etsi_name()
}

/// The recipient, document and detail of one event.
#[derive(Default)]
struct Facts {
    recipient: Option<String>,
    document: Option<String>,
    detail: Option<String>,
}

/// Addresses and file names met so far in a history, which later events name by id.
#[derive(Default)]
struct Names {
    recipients: HashMap<RecipientId, String>,
    documents: HashMap<DocumentId, String>,
    /// Receipt e-mails, which go to the sender and concern one recipient.
    receipts: HashSet<NotificationId>,
}

impl Names {
    /// Returns the facts `event` records, and remembers the names it introduces.
    fn facts(&mut self, core: &Core, event: &Event) -> Facts {
        let mut facts = Facts::default();
        match event {
            Event::DocumentUploaded(uploaded) => {
                self.documents
                    .insert(uploaded.document, uploaded.file_name.clone());
                facts.document = Some(uploaded.file_name.clone());
                facts.detail = Some(format!("{} bytes, {}", uploaded.size, uploaded.media_type));
            }
            Event::DeliverySubmitted(submitted) => {
                let addresses: Vec<&str> = submitted
                    .recipients
                    .iter()
                    .map(|entry| entry.mailbox.address.as_str())
                    .collect();
                for entry in &submitted.recipients {
                    self.recipients
                        .insert(entry.recipient, entry.mailbox.address.clone());
                }
                let mut listed = addresses
                    .iter()
                    .take(LISTED_RECIPIENTS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if addresses.len() > LISTED_RECIPIENTS {
                    listed.push_str(&format!(
                        " and {} more",
                        addresses.len() - LISTED_RECIPIENTS
                    ));
                }
                facts.detail = Some(format!(
                    "to {listed}; {} document(s)",
                    submitted.documents.len()
                ));
            }
            Event::NotificationAttempted(attempted) => {
                facts.recipient = self.address(attempted.recipient);
                let kind = match attempted.kind {
                    NotificationKind::Consignment => "link e-mail",
                    NotificationKind::Receipt => {
                        self.receipts.insert(attempted.notification);
                        "receipt e-mail to the sender"
                    }
                };
                facts.detail = Some(format!(
                    "{kind}, attempt {}, Message-ID {}",
                    attempted.attempt, attempted.message_id
                ));
            }
            Event::NotificationSent(sent) => {
                facts.recipient = self.address(sent.recipient);
                facts.detail = Some(format!(
                    "{}attempt {}, server reply: {}",
                    self.receipt_prefix(sent.notification),
                    sent.attempt,
                    sent.server_reply
                ));
            }
            Event::NotificationDeferred(deferred) => {
                facts.recipient = self.address(deferred.recipient);
                facts.detail = Some(format!(
                    "{}attempt {}: {}; next attempt at {}",
                    self.receipt_prefix(deferred.notification),
                    deferred.attempt,
                    deferred.reason,
                    utc_text(deferred.retry_at)
                ));
            }
            Event::NotificationFailed(failed) => {
                facts.recipient = self.address(failed.recipient);
                facts.detail = Some(format!(
                    "{}attempt {}: {}",
                    self.receipt_prefix(failed.notification),
                    failed.attempt,
                    failed.reason
                ));
            }
            Event::DeliveryOpened(opened) => {
                facts.recipient = self.address(opened.recipient);
            }
            Event::AccessDenied(denied) => {
                facts.recipient = self.address(denied.recipient);
                facts.detail = Some(denial_text(denied.reason).to_owned());
            }
            Event::DocumentDownloaded(downloaded) => {
                facts.recipient = self.address(downloaded.recipient);
                facts.document = self.documents.get(&downloaded.document).cloned();
                facts.detail = Some(format!("{} bytes", downloaded.bytes));
            }
            Event::ReceiptSent(receipt) => {
                facts.recipient = self.address(receipt.recipient);
                facts.detail = Some(format!("Message-ID {}", receipt.message_id));
            }
            Event::DeliveryWithdrawn(withdrawn) => {
                let by = core
                    .model()
                    .account(withdrawn.by)
                    .map_or_else(|| withdrawn.by.to_string(), |account| account.login.clone());
                facts.detail = Some(if withdrawn.reason.is_empty() {
                    format!("by {by}, no reason given")
                } else {
                    format!("by {by}: {}", withdrawn.reason)
                });
            }
            Event::DocumentsPurged(purged) => {
                facts.detail = Some(format!(
                    "{} document(s) removed from storage",
                    purged.documents.len()
                ));
            }
            Event::PostmarkIssued(postmark) => {
                facts.detail = Some(format!("signed with key {}", postmark.key_id));
            }
            _ => {}
        }
        facts
    }

    fn address(&self, recipient: RecipientId) -> Option<String> {
        self.recipients.get(&recipient).cloned()
    }

    /// Returns the words that mark an outcome of a receipt e-mail, whose recipient
    /// field names the recipient the receipt is about.
    fn receipt_prefix(&self, notification: NotificationId) -> &'static str {
        if self.receipts.contains(&notification) {
            "receipt e-mail to the sender, "
        } else {
            ""
        }
    }
}

/// Formats `time` as RFC 3339 in UTC to the second.
fn utc_text(time: Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(time.as_micros()) {
        Ok(instant) => instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("{} microseconds since 1970-01-01 UTC", time.as_micros()),
    }
}

/// Returns the reason of a refused access in words.
fn denial_text(reason: DenialReason) -> &'static str {
    match reason {
        DenialReason::WrongPassword => "wrong password",
        DenialReason::Throttled => "too many wrong passwords; the attempt was throttled",
        DenialReason::NotYetReleased => "not yet released",
        DenialReason::Expired => "expired",
        DenialReason::Withdrawn => "withdrawn",
        DenialReason::Purged => "documents purged",
    }
}
