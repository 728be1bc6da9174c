//! Reading usage rows: from the store at its current positions with [`usage`], or from a
//! ledger prefix in memory with [`billing_as_of`], through the same apply code.

use consign_ledger::EmbeddedLedger;
use consign_schemas::{AccountId, ChainId, Position};
use rocksdb::Direction;

use super::{Billing, BillingReport, Month, USAGE, Usage, UsageRow};
use crate::error::ProjectionError;
use crate::keys::{self, field, key};
use crate::projection::Projection;
use crate::runner::{DEFAULT_BATCH_EVENTS, missing_event};
use crate::store::{Positions, ViewState, ViewStore, decode};

/// Selection of usage rows by month and billing code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// First month, inclusive.
    pub from: Month,
    /// Last month, inclusive.
    pub to: Month,
    /// Only the rows of this billing code; every row, with or without a code, when `None`.
    pub billing_code: Option<String>,
}

/// Reads the usage rows of `query` and the positions they reflect, from one snapshot.
///
/// # Errors
///
/// [`ProjectionError::UnknownView`] when the store was opened without the billing view,
/// storage failures and undecodable rows.
pub fn usage(store: &ViewStore, query: &UsageQuery) -> Result<BillingReport, ProjectionError> {
    let (lower, upper) = key_range(query);
    let reader = store.reader();
    let positions = reader.positions(Billing::NAME)?;
    let entries = reader
        .scan(Billing::NAME, lower, upper, Direction::Forward)?
        .collect::<Result<Vec<_>, _>>()?;
    let entries = entries.iter().map(|(key, value)| (&key[..], &value[..]));
    Ok(BillingReport {
        positions,
        rows: rows(entries, query)?,
    })
}

/// Computes the usage rows of `query` from the ledger prefix that ends before
/// `positions`, in memory, with the billing view's own apply code. A chain missing from
/// `positions` contributes no event.
///
/// The result equals what [`usage`] returns from a store caught up to exactly those
/// positions, so an invoice made earlier can be reproduced from its stated positions.
///
/// # Errors
///
/// [`ProjectionError::UnknownChain`] for a chain the ledger does not have,
/// [`ProjectionError::PastHead`] for a position past the ledger head, and ledger read
/// failures.
pub fn billing_as_of(
    ledger: &EmbeddedLedger,
    positions: &Positions,
    query: &UsageQuery,
) -> Result<BillingReport, ProjectionError> {
    if let Some((&chain, _)) = positions.range(ChainId::new(ledger.chain_count())..).next() {
        return Err(ProjectionError::UnknownChain {
            chain,
            chains: ledger.chain_count(),
        });
    }

    let mut state = ViewState::in_memory(Billing::NAME);
    let mut applied = Positions::new();
    for chain in ledger.chains() {
        let target = positions.get(&chain).copied().unwrap_or(Position::ZERO);
        let head = ledger.next_position(chain)?;
        if target > head {
            return Err(ProjectionError::PastHead {
                chain,
                requested: target,
                head,
            });
        }

        let mut next = Position::ZERO;
        while next < target {
            let limit = (target.get() - next.get()).min(DEFAULT_BATCH_EVENTS as u64) as usize;
            let events = ledger.read(chain, next, limit)?;
            if events.is_empty() {
                return Err(missing_event(ledger, chain, next, target));
            }
            for event in &events {
                if event.position() != next {
                    return Err(missing_event(ledger, chain, next, target));
                }
                Billing.apply(event, &mut state)?;
                next = next.next();
            }
        }
        applied.insert(chain, target);
    }

    let (lower, upper) = key_range(query);
    let entries = state.memory_entries().filter(|(key, _)| {
        *key >= lower.as_slice() && upper.as_ref().is_none_or(|upper| *key < upper.as_slice())
    });
    Ok(BillingReport {
        positions: applied,
        rows: rows(entries, query)?,
    })
}

/// Returns the key range of the months of `query`; an empty range when `from` is after
/// `to`.
fn key_range(query: &UsageQuery) -> (Vec<u8>, Option<Vec<u8>>) {
    let lower = key(USAGE, &[&query.from.to_key()]);
    if query.from > query.to {
        return (lower.clone(), Some(lower));
    }
    let upper = keys::prefix_end(&key(USAGE, &[&query.to.to_key()]));
    (lower, upper)
}

/// Decodes the usage rows among `entries` that match the billing code of `query`.
fn rows<'e>(
    entries: impl Iterator<Item = (&'e [u8], &'e [u8])>,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, ProjectionError> {
    let mut rows = Vec::new();
    for (key, value) in entries {
        let row_key = decode_usage_key(key)?;
        if let Some(code) = &query.billing_code
            && row_key.billing_code.as_deref() != Some(code.as_str())
        {
            continue;
        }
        rows.push(UsageRow {
            month: row_key.month,
            account: row_key.account,
            billing_code: row_key.billing_code,
            usage: decode::<Usage>(Billing::NAME, key, value)?,
        });
    }
    Ok(rows)
}

struct UsageKey {
    month: Month,
    account: AccountId,
    billing_code: Option<String>,
}

fn decode_usage_key(key: &[u8]) -> Result<UsageKey, ProjectionError> {
    let corrupt = |reason: &str| ProjectionError::corrupt(Billing::NAME, key, reason);
    let month = field::<3>(key, 1)
        .and_then(Month::from_key)
        .ok_or_else(|| corrupt("usage key has no valid month"))?;
    let account = field::<16>(key, 4)
        .map(AccountId::from_bytes)
        .ok_or_else(|| corrupt("usage key has no account"))?;
    let billing_code = match key.get(20..) {
        Some([0]) => None,
        Some([1, code @ ..]) => Some(
            String::from_utf8(code.to_vec()).map_err(|_| corrupt("billing code is not UTF-8"))?,
        ),
        _ => return Err(corrupt("usage key has no billing code marker")),
    };
    Ok(UsageKey {
        month,
        account,
        billing_code,
    })
}
