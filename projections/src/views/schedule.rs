//! The `schedule` view: the scheduler's due list of pending releases (the delivery
//! date) and expiries (the expiration date), in time order.
//!
//! Keys:
//!
//! | key | value |
//! | --- | --- |
//! | `q`, due time, kind (0 release, 1 expiry), delivery | empty |
//! | `d`, delivery | postcard `PendingDue`: the times of its entries in `q` |
//!
//! A submission with a delivery date adds a release entry and one with an expiration
//! date an expiry entry. `DeliveryReleased` removes the release entry, and
//! `DeliveryExpired` and `DeliveryWithdrawn` remove both.

use consign_ledger::StoredEvent;
use consign_schemas::{DeliveryId, Event, Timestamp};
use rocksdb::Direction;
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::keys::{self, field, key, time_key};
use crate::projection::Projection;
use crate::store::{ViewState, ViewStore};

const DUE: u8 = b'q';
const PENDING: u8 = b'd';
const DUE_KEY_LEN: usize = 1 + 8 + 1 + 16;

/// The scheduler's due list.
#[derive(Clone, Copy, Debug, Default)]
pub struct Schedule;

impl Schedule {
    pub const NAME: &'static str = "schedule";
}

/// Kind of a due entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueKind {
    /// The delivery date: the documents become available.
    Release,
    /// The expiration date: the documents stop being available.
    Expiry,
}

impl DueKind {
    fn to_byte(self) -> u8 {
        match self {
            DueKind::Release => 0,
            DueKind::Expiry => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(DueKind::Release),
            1 => Some(DueKind::Expiry),
            _ => None,
        }
    }
}

/// One pending release or expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueEntry {
    /// The UTC instant the sender chose.
    pub at: Timestamp,
    pub kind: DueKind,
    pub delivery: DeliveryId,
}

/// The due times of one delivery that still have an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PendingDue {
    release: Option<Timestamp>,
    expiry: Option<Timestamp>,
}

fn due_key(at: Timestamp, kind: DueKind, delivery: DeliveryId) -> Vec<u8> {
    key(
        DUE,
        &[&time_key(at), &[kind.to_byte()], delivery.as_bytes()],
    )
}

fn pending_key(delivery: DeliveryId) -> Vec<u8> {
    key(PENDING, &[delivery.as_bytes()])
}

impl Projection for Schedule {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError> {
        match &event.envelope.event {
            Event::DeliverySubmitted(submitted) => {
                let options = &submitted.options;
                let pending = PendingDue {
                    release: options.deliver_at.as_ref().map(|time| time.instant),
                    expiry: options.expires_at.as_ref().map(|time| time.instant),
                };
                add(state, submitted.delivery, pending);
                Ok(())
            }
            Event::DeliveryReleased(released) => {
                remove(state, released.delivery, &[DueKind::Release])
            }
            Event::DeliveryExpired(expired) => remove(
                state,
                expired.delivery,
                &[DueKind::Release, DueKind::Expiry],
            ),
            Event::DeliveryWithdrawn(withdrawn) => remove(
                state,
                withdrawn.delivery,
                &[DueKind::Release, DueKind::Expiry],
            ),
            _ => Ok(()),
        }
    }
}

fn add(state: &mut ViewState<'_>, delivery: DeliveryId, pending: PendingDue) {
    if pending == PendingDue::default() {
        return;
    }
    if let Some(at) = pending.release {
        state.put(due_key(at, DueKind::Release, delivery), Vec::new());
    }
    if let Some(at) = pending.expiry {
        state.put(due_key(at, DueKind::Expiry, delivery), Vec::new());
    }
    state.put_encoded(pending_key(delivery), &pending);
}

fn remove(
    state: &mut ViewState<'_>,
    delivery: DeliveryId,
    kinds: &[DueKind],
) -> Result<(), ProjectionError> {
    let key = pending_key(delivery);
    let Some(mut pending) = state.get_decoded::<PendingDue>(&key)? else {
        return Ok(());
    };
    for &kind in kinds {
        let slot = match kind {
            DueKind::Release => &mut pending.release,
            DueKind::Expiry => &mut pending.expiry,
        };
        if let Some(at) = slot.take() {
            state.delete(due_key(at, kind, delivery));
        }
    }
    if pending == PendingDue::default() {
        state.delete(key);
    } else {
        state.put_encoded(key, &pending);
    }
    Ok(())
}

/// Returns up to `limit` pending entries due at or before `time`, earliest first.
///
/// # Errors
///
/// [`ProjectionError::UnknownView`] when the store was opened without this view,
/// storage failures and undecodable keys.
pub fn due_at_or_before(
    store: &ViewStore,
    time: Timestamp,
    limit: usize,
) -> Result<Vec<DueEntry>, ProjectionError> {
    let upper = keys::prefix_end(&key(DUE, &[&time_key(time)]));
    let upper = upper.unwrap_or_else(|| vec![DUE + 1]);
    store
        .reader()
        .scan(Schedule::NAME, vec![DUE], Some(upper), Direction::Forward)?
        .take(limit)
        .map(|entry| decode_due_key(&entry?.0))
        .collect()
}

/// Returns the earliest pending entry due after `time`, for the scheduler's next
/// wake-up. Entries already due are left out.
///
/// # Errors
///
/// As [`due_at_or_before`].
pub fn next_due_after(
    store: &ViewStore,
    time: Timestamp,
) -> Result<Option<DueEntry>, ProjectionError> {
    let Some(lower) = keys::prefix_end(&key(DUE, &[&time_key(time)])) else {
        return Ok(None);
    };
    if lower.first() != Some(&DUE) {
        // `time` is the latest representable instant.
        return Ok(None);
    }
    store
        .reader()
        .scan(
            Schedule::NAME,
            lower,
            Some(vec![DUE + 1]),
            Direction::Forward,
        )?
        .next()
        .map(|entry| decode_due_key(&entry?.0))
        .transpose()
}

fn decode_due_key(key: &[u8]) -> Result<DueEntry, ProjectionError> {
    let corrupt = || ProjectionError::corrupt(Schedule::NAME, key, "not a due-list key");
    if key.len() != DUE_KEY_LEN {
        return Err(corrupt());
    }
    let at = keys::time_from_key(field(key, 1).ok_or_else(corrupt)?);
    let kind = DueKind::from_byte(key[9]).ok_or_else(corrupt)?;
    let delivery = DeliveryId::from_bytes(field(key, 10).ok_or_else(corrupt)?);
    Ok(DueEntry { at, kind, delivery })
}
