//! Reading the audit view: a delivery's history and the search indexes.

use std::fmt;
use std::str::FromStr;

use consign_schemas::{
    AccountId, ChainId, ContentHash, DeliveryId, EventKind, Position, Timestamp,
};
use rocksdb::Direction;

use super::{
    Audit, AuditEntry, AuditRecord, BY_DOCUMENT_HASH, BY_RECIPIENT, BY_SENDER, BY_TIME, ENTRY,
    address_part,
};
use crate::error::ProjectionError;
use crate::keys::{field, key, time_key};
use crate::store::{ViewStore, decode};

/// A search over the audit indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditSearch {
    /// Deliveries of one sender, oldest submission first.
    Sender(AccountId),
    /// Deliveries with a recipient at this address, compared lowercased, in delivery
    /// id order.
    RecipientAddress(String),
    /// Deliveries with a document whose plaintext has this BLAKE3 hash, in delivery id
    /// order.
    DocumentHash(ContentHash),
    /// Deliveries submitted at or after `from` and before `before`, oldest first.
    SubmittedBetween { from: Timestamp, before: Timestamp },
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// Matching deliveries, each once.
    pub deliveries: Vec<DeliveryId>,
    /// The cursor to give the next search with the same criterion, or `None` when
    /// this page contains the last match.
    pub next: Option<SearchCursor>,
}

/// A position in one search's results: the index key of the last delivery on a page.
///
/// Its text form is the key in hexadecimal digits, for use in a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchCursor(Vec<u8>);

impl fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl FromStr for SearchCursor {
    type Err = ProjectionError;

    /// Parses the text form. Whether the cursor belongs to a search is checked by
    /// [`search_page`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match hex::decode(text) {
            Ok(bytes) if !bytes.is_empty() => Ok(Self(bytes)),
            _ => Err(ProjectionError::InvalidCursor {
                text: text.to_owned(),
            }),
        }
    }
}

/// Returns up to `limit` deliveries that match `search`, each once.
///
/// # Errors
///
/// [`ProjectionError::UnknownView`] when the store was opened without the audit view,
/// storage failures and undecodable keys.
pub fn search(
    store: &ViewStore,
    search: &AuditSearch,
    limit: usize,
) -> Result<Vec<DeliveryId>, ProjectionError> {
    Ok(search_page(store, search, None, limit)?.deliveries)
}

/// Returns up to `limit` deliveries that match `search` after the cursor `after`, each
/// once, and the cursor of the next page when more match.
///
/// # Errors
///
/// As [`search`], and [`ProjectionError::InvalidCursor`] when `after` comes from a
/// search with another criterion.
pub fn search_page(
    store: &ViewStore,
    search: &AuditSearch,
    after: Option<&SearchCursor>,
    limit: usize,
) -> Result<SearchPage, ProjectionError> {
    let (lower, upper, delivery_offset) = match search {
        AuditSearch::Sender(sender) => {
            let prefix = key(BY_SENDER, &[sender.as_bytes()]);
            let upper = crate::keys::prefix_end(&prefix);
            (prefix, upper, 1 + 16 + 8)
        }
        AuditSearch::RecipientAddress(address) => {
            let prefix = key(BY_RECIPIENT, &[&address_part(address)]);
            let upper = crate::keys::prefix_end(&prefix);
            let offset = prefix.len();
            (prefix, upper, offset)
        }
        AuditSearch::DocumentHash(hash) => {
            let prefix = key(BY_DOCUMENT_HASH, &[hash.as_bytes()]);
            let upper = crate::keys::prefix_end(&prefix);
            (prefix, upper, 1 + 32)
        }
        AuditSearch::SubmittedBetween { from, before } => {
            if from >= before {
                return Ok(SearchPage {
                    deliveries: Vec::new(),
                    next: None,
                });
            }
            let lower = key(BY_TIME, &[&time_key(*from)]);
            let upper = key(BY_TIME, &[&time_key(*before)]);
            (lower, Some(upper), 1 + 8)
        }
    };

    let lower = match after {
        None => lower,
        Some(SearchCursor(key)) => {
            let within = *key >= lower && upper.as_ref().is_none_or(|upper| key < upper);
            if !within {
                return Err(ProjectionError::InvalidCursor {
                    text: hex::encode(key),
                });
            }
            // The smallest key after the cursor's own.
            let mut next = key.clone();
            next.push(0);
            next
        }
    };

    let mut page = SearchPage {
        deliveries: Vec::new(),
        next: None,
    };
    let mut last_key = Vec::new();
    let reader = store.reader();
    for entry in reader.scan(Audit::NAME, lower, upper, Direction::Forward)? {
        let (key, _) = entry?;
        let delivery = field::<16>(&key, delivery_offset)
            .map(DeliveryId::from_bytes)
            .ok_or_else(|| {
                ProjectionError::corrupt(Audit::NAME, &key, "index key has no delivery")
            })?;
        // A delivery with two documents of one hash has two index keys in a row, and
        // the cursor passes both.
        if page.deliveries.last() == Some(&delivery) {
            last_key = key.to_vec();
            continue;
        }
        if page.deliveries.len() >= limit {
            page.next = Some(SearchCursor(last_key));
            break;
        }
        page.deliveries.push(delivery);
        last_key = key.to_vec();
    }
    Ok(page)
}

/// Returns the history of `delivery` in ledger order; empty for an unknown delivery.
///
/// # Errors
///
/// As [`search`], and undecodable entries.
pub fn history(
    store: &ViewStore,
    delivery: DeliveryId,
) -> Result<Vec<AuditEntry>, ProjectionError> {
    let prefix = key(ENTRY, &[delivery.as_bytes()]);
    let mut entries = Vec::new();
    let reader = store.reader();
    for entry in reader.scan_prefix(Audit::NAME, &prefix)? {
        let (key, value) = entry?;
        let corrupt = |reason: &str| ProjectionError::corrupt(Audit::NAME, &key, reason);
        let chain = field::<4>(&key, 17)
            .map(|bytes| ChainId::new(u32::from_be_bytes(bytes)))
            .ok_or_else(|| corrupt("history key has no chain"))?;
        let position = field::<8>(&key, 21)
            .map(|bytes| Position::new(u64::from_be_bytes(bytes)))
            .ok_or_else(|| corrupt("history key has no position"))?;
        let record: AuditRecord = decode(Audit::NAME, &key, &value)?;
        let kind = *EventKind::ALL
            .get(usize::from(record.kind))
            .ok_or_else(|| corrupt("unknown event type"))?;
        entries.push(AuditEntry {
            chain,
            position,
            hash: record.hash,
            previous: record.previous,
            time: record.time,
            kind,
        });
    }
    Ok(entries)
}
