//! Reading the tracking view: one delivery in full, and a sender's deliveries with
//! filters and paging.

use std::fmt;
use std::str::FromStr;

use consign_schemas::{AccountId, DeliveryId, Timestamp};
use rocksdb::Direction;

use super::{
    DeliverySummary, DeliveryTracking, RECIPIENT, RecipientTracking, SUMMARY, Tracking,
    TrackingStatus, locator_key, summary_key, summary_key_of,
};
use crate::error::ProjectionError;
use crate::keys::{self, field, key, time_key};
use crate::store::{ViewStore, decode};

/// Largest page [`list_deliveries`] returns; a larger limit is lowered to it.
pub const MAX_PAGE: usize = 500;

/// Conditions on a sender's deliveries to list. Every condition that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Deliveries with at least one recipient in this status.
    pub status: Option<TrackingStatus>,
    /// Deliveries submitted at or after this time.
    pub submitted_from: Option<Timestamp>,
    /// Deliveries submitted before this time.
    pub submitted_before: Option<Timestamp>,
    pub billing_code: Option<String>,
    /// Deliveries with a recipient at this address, compared lowercased.
    pub recipient_address: Option<String>,
}

/// Position of the next page: the last delivery of the previous page.
///
/// Its text form is 48 hexadecimal digits, for use in a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListCursor {
    submitted_at: Timestamp,
    delivery: DeliveryId,
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(time_key(self.submitted_at)))?;
        f.write_str(&hex::encode(self.delivery.as_bytes()))
    }
}

impl FromStr for ListCursor {
    type Err = ProjectionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 24];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ProjectionError::InvalidCursor {
            text: text.to_owned(),
        })?;
        let time = field::<8>(&bytes, 0).expect("24 bytes hold a time");
        let delivery = field::<16>(&bytes, 8).expect("24 bytes hold a delivery");
        Ok(Self {
            submitted_at: keys::time_from_key(time),
            delivery: DeliveryId::from_bytes(delivery),
        })
    }
}

/// One page of a sender's deliveries, newest submission first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliverySummary>,
    /// Set when the page is full: pass it back for the next page, which may be empty.
    pub next_cursor: Option<ListCursor>,
}

/// Lists the deliveries of `sender` that match `filter`, newest submission first, at
/// most `limit` (1 to [`MAX_PAGE`]) from `cursor` on.
///
/// The time range is a key range, but the other conditions are checked per delivery, so
/// a page of a rare status may read many deliveries.
///
/// # Errors
///
/// [`ProjectionError::UnknownView`] when the store was opened without the tracking
/// view, storage failures and undecodable summaries.
pub fn list_deliveries(
    store: &ViewStore,
    sender: AccountId,
    filter: &DeliveryFilter,
    limit: usize,
    cursor: Option<&ListCursor>,
) -> Result<DeliveryPage, ProjectionError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let prefix = key(SUMMARY, &[sender.as_bytes()]);
    let lower = match filter.submitted_from {
        Some(from) => key(SUMMARY, &[sender.as_bytes(), &time_key(from)]),
        None => prefix.clone(),
    };
    let mut upper = match filter.submitted_before {
        Some(before) => key(SUMMARY, &[sender.as_bytes(), &time_key(before)]),
        None => keys::prefix_end(&prefix).expect("the summary tag is not 0xFF"),
    };
    if let Some(cursor) = cursor {
        upper = upper.min(summary_key(sender, cursor.submitted_at, cursor.delivery));
    }

    let mut page = DeliveryPage {
        deliveries: Vec::new(),
        next_cursor: None,
    };
    if lower >= upper {
        return Ok(page);
    }

    let address = filter
        .recipient_address
        .as_ref()
        .map(|address| address.to_lowercase());
    let reader = store.reader();
    for entry in reader.scan(Tracking::NAME, lower, Some(upper), Direction::Reverse)? {
        let (key, value) = entry?;
        let summary: DeliverySummary = decode(Tracking::NAME, &key, &value)?;
        if !matches(&summary, filter, address.as_deref()) {
            continue;
        }
        page.deliveries.push(summary);
        if page.deliveries.len() == limit {
            let last = page.deliveries.last().expect("the page is full");
            page.next_cursor = Some(ListCursor {
                submitted_at: last.submitted_at,
                delivery: last.delivery,
            });
            break;
        }
    }
    Ok(page)
}

fn matches(summary: &DeliverySummary, filter: &DeliveryFilter, address: Option<&str>) -> bool {
    if let Some(status) = filter.status
        && !summary.has_status(status)
    {
        return false;
    }
    if let Some(code) = &filter.billing_code
        && summary.billing_code.as_ref() != Some(code)
    {
        return false;
    }
    if let Some(address) = address
        && !summary
            .recipients
            .iter()
            .any(|recipient| recipient.address.to_lowercase() == address)
    {
        return false;
    }
    true
}

/// Reads one delivery with every recipient's steps, from one snapshot; `None` for a
/// delivery the view has no submission of.
///
/// # Errors
///
/// As [`list_deliveries`], and undecodable recipient records.
pub fn delivery(
    store: &ViewStore,
    delivery: DeliveryId,
) -> Result<Option<DeliveryTracking>, ProjectionError> {
    let reader = store.reader();
    let Some(locator) = reader.get(Tracking::NAME, &locator_key(delivery))? else {
        return Ok(None);
    };
    let summary_key = summary_key_of(delivery, &locator)?;
    let bytes = reader.get(Tracking::NAME, &summary_key)?.ok_or_else(|| {
        ProjectionError::corrupt(Tracking::NAME, &summary_key, "locator points at no summary")
    })?;
    let summary: DeliverySummary = decode(Tracking::NAME, &summary_key, &bytes)?;

    let mut recipients = Vec::with_capacity(summary.recipients.len());
    for entry in reader.scan_prefix(Tracking::NAME, &key(RECIPIENT, &[delivery.as_bytes()]))? {
        let (key, value) = entry?;
        recipients.push(decode::<RecipientTracking>(Tracking::NAME, &key, &value)?);
    }
    Ok(Some(DeliveryTracking {
        summary,
        recipients,
    }))
}
