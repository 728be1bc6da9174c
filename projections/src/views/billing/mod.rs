//! The `billing` view: usage per account, billing code and UTC calendar month of the
//! submission time.
//!
//! Keys:
//!
//! | key | value |
//! | --- | --- |
//! | `u`, month (year as u16 BE with the sign bit flipped, then the month), sender account, billing code (`0x00` for none, else `0x01` and the UTF-8 code) | postcard [`Usage`] |
//! | `p`, document | size in bytes (u64 BE) of a document uploaded and not yet submitted |
//!
//! Rows from different chains only ever add counters, so the state is the same however
//! the chains interleave.

mod export;
mod month;
mod rates;
mod read;

use consign_ledger::StoredEvent;
use consign_schemas::events::{DeliverySubmitted, Priority};
use consign_schemas::{AccountId, Event};
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::keys::key;
use crate::projection::Projection;
use crate::store::{Positions, ViewState};

pub use export::{write_csv, write_json};
pub use month::Month;
pub use rates::{Amounts, MAX_RATE_CENTS, RateTable};
pub use read::{UsageQuery, billing_as_of, usage};

const USAGE: u8 = b'u';
const PENDING_DOCUMENT: u8 = b'p';

/// Usage per account, billing code and month.
#[derive(Clone, Copy, Debug, Default)]
pub struct Billing;

impl Billing {
    pub const NAME: &'static str = "billing";
}

/// Counters of one account, billing code and month, all from `DeliverySubmitted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub deliveries: u64,
    /// Recipients summed over the deliveries, mailing-list members included.
    pub recipients: u64,
    pub documents: u64,
    /// Sizes of the documents, in bytes of plaintext.
    pub bytes: u64,
    /// Deliveries with each priority.
    pub normal_priority: u64,
    pub high_priority: u64,
    pub urgent_priority: u64,
    /// Deliveries with an electronic postmark requested.
    pub postmarks: u64,
    /// Deliveries with encryption at rest.
    pub encrypted: u64,
    /// Deliveries with an access password.
    pub password_protected: u64,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.deliveries += other.deliveries;
        self.recipients += other.recipients;
        self.documents += other.documents;
        self.bytes += other.bytes;
        self.normal_priority += other.normal_priority;
        self.high_priority += other.high_priority;
        self.urgent_priority += other.urgent_priority;
        self.postmarks += other.postmarks;
        self.encrypted += other.encrypted;
        self.password_protected += other.password_protected;
    }
}

/// The usage of one account, billing code and month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub month: Month,
    pub account: AccountId,
    pub billing_code: Option<String>,
    pub usage: Usage,
}

/// Usage rows and the ledger positions they reflect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingReport {
    /// Next position in each chain: the rows count every event before it and none after.
    pub positions: Positions,
    /// Rows in key order: by month, then account, then billing code with none first.
    pub rows: Vec<UsageRow>,
}

fn usage_key(month: Month, account: AccountId, billing_code: Option<&str>) -> Vec<u8> {
    let mut key = key(USAGE, &[&month.to_key(), account.as_bytes()]);
    match billing_code {
        None => key.push(0),
        Some(code) => {
            key.push(1);
            key.extend_from_slice(code.as_bytes());
        }
    }
    key
}

fn pending_document_key(document: consign_schemas::DocumentId) -> Vec<u8> {
    key(PENDING_DOCUMENT, &[document.as_bytes()])
}

impl Projection for Billing {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError> {
        match &event.envelope.event {
            Event::DocumentUploaded(uploaded) => {
                let key = pending_document_key(uploaded.document);
                state.put(key, uploaded.size.to_be_bytes().to_vec());
                Ok(())
            }
            Event::DeliverySubmitted(submitted) => {
                let month = Month::of(event.envelope.time)?;
                let delta = submission_usage(submitted, state)?;
                let code = submitted.options.billing_code.as_deref();
                let key = usage_key(month, submitted.sender, code);
                let mut usage = state.get_decoded::<Usage>(&key)?.unwrap_or_default();
                usage.add(&delta);
                state.put_encoded(key, &usage);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Counts one submission, taking its documents' sizes out of the pending uploads.
///
/// NOTE: a document whose upload is not before the submission in the same chain counts
/// 0 bytes. The server and the workload generator append the uploads and the submission
/// in one append, so this happens only for a ledger written otherwise.
fn submission_usage(
    submitted: &DeliverySubmitted,
    state: &mut ViewState<'_>,
) -> Result<Usage, ProjectionError> {
    let options = &submitted.options;
    let mut usage = Usage {
        deliveries: 1,
        recipients: submitted.recipients.len() as u64,
        documents: submitted.documents.len() as u64,
        postmarks: u64::from(options.postmark),
        encrypted: u64::from(options.encrypt_at_rest),
        password_protected: u64::from(options.access_password_hash.is_some()),
        ..Usage::default()
    };
    match options.priority {
        Priority::Normal => usage.normal_priority = 1,
        Priority::High => usage.high_priority = 1,
        Priority::Urgent => usage.urgent_priority = 1,
    }

    for &document in &submitted.documents {
        let key = pending_document_key(document);
        let Some(size) = state.get(&key)? else {
            continue;
        };
        let size: [u8; 8] = size.as_slice().try_into().map_err(|_| {
            ProjectionError::corrupt(Billing::NAME, &key, "document size is not 8 bytes")
        })?;
        usage.bytes += u64::from_be_bytes(size);
        state.delete(key);
    }
    Ok(usage)
}
