//! The `audit` view: each delivery's history as ledger entries, and search indexes for
//! legal discovery.
//!
//! Keys:
//!
//! | key | value |
//! | --- | --- |
//! | `e`, delivery, chain (u32 BE), position (u64 BE) | postcard `AuditRecord`: hash, previous hash, time, event type |
//! | `p`, document | postcard `PendingUpload`: a document's upload before its submission |
//! | `s`, sender, submission time, delivery | empty |
//! | `r`, address length (u32 BE), lowercased recipient address, delivery | empty |
//! | `h`, document BLAKE3 hash, delivery, document | empty |
//! | `t`, submission time, delivery | empty |
//!
//! A delivery's history contains every event that names the delivery, and the
//! `DocumentUploaded` events of its documents, which come before the submission in the
//! same chain.

mod search;

use consign_ledger::StoredEvent;
use consign_schemas::events::DeliverySubmitted;
use consign_schemas::{
    ChainId, ContentHash, DeliveryId, DocumentId, Event, EventHash, EventKind, Position, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::keys::{key, time_key};
use crate::projection::Projection;
use crate::store::ViewState;

pub use search::{AuditSearch, SearchCursor, SearchPage, history, search, search_page};

const ENTRY: u8 = b'e';
const PENDING_UPLOAD: u8 = b'p';
const BY_SENDER: u8 = b's';
const BY_RECIPIENT: u8 = b'r';
const BY_DOCUMENT_HASH: u8 = b'h';
const BY_TIME: u8 = b't';

/// Delivery histories and search indexes for auditors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Audit;

impl Audit {
    pub const NAME: &'static str = "audit";
}

/// One event in a delivery's history: where it sits in the ledger and its links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub chain: ChainId,
    pub position: Position,
    /// The event's hash over its stored bytes.
    pub hash: EventHash,
    /// The hash of the event before it in the chain, or the chain's genesis value.
    pub previous: EventHash,
    /// Sequencer time.
    pub time: Timestamp,
    pub kind: EventKind,
}

/// The stored value of an entry; chain and position are in the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct AuditRecord {
    hash: EventHash,
    previous: EventHash,
    time: Timestamp,
    /// Index of the event type in [`EventKind::ALL`], the stored variant order.
    kind: u8,
}

/// A document upload waiting for the submission that lists the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PendingUpload {
    chain: ChainId,
    position: Position,
    record: AuditRecord,
    content_hash: ContentHash,
}

fn entry_key(delivery: DeliveryId, chain: ChainId, position: Position) -> Vec<u8> {
    key(
        ENTRY,
        &[
            delivery.as_bytes(),
            &chain.get().to_be_bytes(),
            &position.get().to_be_bytes(),
        ],
    )
}

fn pending_upload_key(document: DocumentId) -> Vec<u8> {
    key(PENDING_UPLOAD, &[document.as_bytes()])
}

/// Returns the lowercased address with its length in front, so that no address is a
/// key prefix of another.
fn address_part(address: &str) -> Vec<u8> {
    let lowered = address.to_lowercase();
    let length = u32::try_from(lowered.len()).unwrap_or(u32::MAX);
    [&length.to_be_bytes()[..], lowered.as_bytes()].concat()
}

fn record_of(event: &StoredEvent) -> AuditRecord {
    let kind = event.envelope.event.kind();
    let index = EventKind::ALL
        .iter()
        .position(|candidate| *candidate == kind)
        .expect("EventKind::ALL lists every kind");
    AuditRecord {
        hash: event.hash,
        previous: event.envelope.previous,
        time: event.envelope.time,
        kind: index as u8,
    }
}

impl Projection for Audit {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError> {
        let envelope = &event.envelope;
        let record = record_of(event);
        match &envelope.event {
            Event::DocumentUploaded(uploaded) => {
                let pending = PendingUpload {
                    chain: envelope.chain,
                    position: envelope.position,
                    record,
                    content_hash: uploaded.content_hash,
                };
                state.put_encoded(pending_upload_key(uploaded.document), &pending);
            }
            Event::DeliverySubmitted(submitted) => {
                index_submission(state, submitted, envelope.time)?;
            }
            _ => {}
        }

        if let Some(delivery) = envelope.event.delivery() {
            state.put_encoded(
                entry_key(delivery, envelope.chain, envelope.position),
                &record,
            );
        }
        Ok(())
    }
}

/// Adds a submission to the search indexes and moves its documents' uploads into its
/// history.
///
/// NOTE: an upload that is not before the submission in the same chain stays out of
/// the history and the document hash index. The server and the workload generator
/// append the uploads and the submission in one append.
fn index_submission(
    state: &mut ViewState<'_>,
    submitted: &DeliverySubmitted,
    time: Timestamp,
) -> Result<(), ProjectionError> {
    let delivery = submitted.delivery;
    for &document in &submitted.documents {
        let pending_key = pending_upload_key(document);
        let Some(upload) = state.get_decoded::<PendingUpload>(&pending_key)? else {
            continue;
        };
        state.put_encoded(
            entry_key(delivery, upload.chain, upload.position),
            &upload.record,
        );
        let hash_key = key(
            BY_DOCUMENT_HASH,
            &[
                upload.content_hash.as_bytes(),
                delivery.as_bytes(),
                document.as_bytes(),
            ],
        );
        state.put(hash_key, Vec::new());
        state.delete(pending_key);
    }

    let time = time_key(time);
    state.put(
        key(
            BY_SENDER,
            &[submitted.sender.as_bytes(), &time, delivery.as_bytes()],
        ),
        Vec::new(),
    );
    state.put(key(BY_TIME, &[&time, delivery.as_bytes()]), Vec::new());
    for recipient in &submitted.recipients {
        let address = address_part(&recipient.mailbox.address);
        state.put(
            key(BY_RECIPIENT, &[&address, delivery.as_bytes()]),
            Vec::new(),
        );
    }
    Ok(())
}
