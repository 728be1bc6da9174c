//! The [`Projection`] trait that every persisted view implements.

use consign_ledger::StoredEvent;

use crate::error::ProjectionError;
use crate::store::ViewState;

/// A view that is a pure function of the log prefix.
///
/// A projection reads and writes its state only through the [`ViewState`] it is given,
/// and decides from the event alone (its envelope, payload, position, hash and sequencer
/// time), never from a clock, a random source or anything global. Keys and values are
/// deterministic bytes, so equal prefixes give byte-identical state, whatever the batch
/// boundaries and however the chains interleave.
///
/// Chains are applied independently of each other. A view whose state for one key
/// depends on events of two chains must combine them in an order-independent way, as
/// billing does by adding counters.
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// Returns the view's name: the column family of its state and its key in the
    /// `positions` family. It never changes once a store contains the view.
    fn name(&self) -> &'static str;

    /// Returns the version of the view's state layout and apply rules. Change it with
    /// either; [`ViewStore::open`](crate::ViewStore::open) then deletes the old state and
    /// positions so that the view is rebuilt from position zero.
    fn version(&self) -> u32;

    /// Applies one event, which is the next position of its chain for this view.
    ///
    /// # Errors
    ///
    /// Reading the state fails, or a stored value does not decode. The batch that the
    /// event belongs to is then written neither for this view nor for any other.
    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError>;
}

/// Checks that `name` can be a column family name and a `positions` key prefix.
pub(crate) fn check_view_name(name: &str) -> Result<(), ProjectionError> {
    let allowed =
        |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_".contains(&byte);
    let reserved = ["default", "meta", "positions"].contains(&name);
    if name.is_empty() || name.len() > 64 || reserved || !name.bytes().all(allowed) {
        return Err(ProjectionError::InvalidViewName {
            name: name.to_owned(),
        });
    }
    Ok(())
}
