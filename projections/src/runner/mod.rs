//! Feeding ledger events to the views: [`catch_up`] from each view's stored position to
//! the ledger head in batches, and [`follow`] live from subscriptions.
//!
//! Chains are independent, so each chain is applied in position order on its own and
//! the chains one after another. Every batch goes through [`ViewStore::apply`], which
//! writes the views' state and positions together.

mod follow;

use consign_ledger::{EmbeddedLedger, LedgerError};
use consign_schemas::{ChainId, Position};

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::store::{Positions, ViewStore};

pub use follow::follow;

/// Events read from the ledger and written to the store per batch, by default.
pub const DEFAULT_BATCH_EVENTS: usize = 1_000;

/// Settings of a catch-up.
#[derive(Clone, Debug)]
pub struct CatchUpOptions {
    /// Maximum number of events per batch, and so per write.
    pub batch_events: usize,
    /// Next position to stop at in each chain, instead of the ledger head. A chain
    /// missing here is applied to its head.
    pub until: Option<Positions>,
}

impl Default for CatchUpOptions {
    fn default() -> Self {
        Self {
            batch_events: DEFAULT_BATCH_EVENTS,
            until: None,
        }
    }
}

/// How far a catch-up has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Events handed to the views so far.
    pub applied: u64,
    /// Events to hand to the views in this catch-up: from the lowest stored position
    /// of any view to the target, summed over the chains.
    pub total: u64,
}

/// Applies every chain from each view's stored position to the ledger head, in batches
/// of [`DEFAULT_BATCH_EVENTS`]. Calls `progress` once before the first batch and after
/// each batch, and returns the final progress.
///
/// # Errors
///
/// As [`catch_up_with`].
pub fn catch_up(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
    progress: impl FnMut(Progress),
) -> Result<Progress, ProjectionError> {
    catch_up_with(ledger, store, views, &CatchUpOptions::default(), progress)
}

/// Applies every chain from each view's stored position to the target of
/// `options.until`, or to the ledger head, in batches of `options.batch_events`.
///
/// The heads are read once at the start: events appended meanwhile are left for the
/// next catch-up or for [`follow`]. A view already at or past a target is left as it is.
///
/// # Errors
///
/// [`ProjectionError::ChainCountMismatch`] when the ledger has another chain count than
/// the store, [`ProjectionError::AheadOfLedger`] when a view has applied positions the
/// ledger does not have, [`ProjectionError::PastHead`] for a target past the head,
/// ledger read failures, and every error of [`ViewStore::apply`]. Batches written before
/// the failure stay written.
pub fn catch_up_with(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
    options: &CatchUpOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Progress, ProjectionError> {
    check_chain_count(ledger, store)?;
    let batch_events = options.batch_events.max(1);
    let plan = plan_chains(ledger, store, views, options.until.as_ref())?;

    let mut done = Progress {
        applied: 0,
        total: plan
            .iter()
            .map(|range| range.target.get() - range.start.get())
            .sum(),
    };
    tracing::info!(
        views = views.len(),
        events = done.total,
        "view catch-up started"
    );
    progress(done);

    for range in plan {
        let mut next = range.start;
        while next < range.target {
            let limit = (range.target.get() - next.get()).min(batch_events as u64) as usize;
            let events = ledger.read(range.chain, next, limit)?;
            let Some(last) = events.last() else {
                return Err(missing_event(ledger, range.chain, next, range.target));
            };
            let after = last.position().next();
            store.apply(views, &events)?;
            done.applied += events.len() as u64;
            next = after;
            progress(done);
        }
    }

    tracing::info!(
        views = views.len(),
        events = done.applied,
        "view catch-up finished"
    );
    Ok(done)
}

/// The positions of one chain that a catch-up applies.
struct ChainRange {
    chain: ChainId,
    start: Position,
    target: Position,
}

/// Finds, per chain, the lowest stored position of any view and the target.
fn plan_chains(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
    until: Option<&Positions>,
) -> Result<Vec<ChainRange>, ProjectionError> {
    let lowest = lowest_positions(ledger, store, views)?;
    let mut plan = Vec::new();
    for (chain, start) in lowest {
        let head = ledger.next_position(chain)?;
        let target = match until.and_then(|until| until.get(&chain)) {
            Some(&requested) if requested > head => {
                return Err(ProjectionError::PastHead {
                    chain,
                    requested,
                    head,
                });
            }
            Some(&requested) => requested,
            None => head,
        };
        if start < target {
            plan.push(ChainRange {
                chain,
                start,
                target,
            });
        }
    }
    Ok(plan)
}

/// Returns, per chain, the lowest next position of any of `views`, after checking that
/// no view is past the ledger head.
fn lowest_positions(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
) -> Result<Positions, ProjectionError> {
    let mut lowest = Positions::new();
    for chain in store.chains() {
        let head = ledger.next_position(chain)?;
        let mut start = head;
        for view in views {
            let position = store.position(view.name(), chain)?;
            if position > head {
                return Err(ProjectionError::AheadOfLedger {
                    view: view.name().to_owned(),
                    chain,
                    position,
                    head,
                });
            }
            start = start.min(position);
        }
        lowest.insert(chain, start);
    }
    Ok(lowest)
}

/// Checks that the ledger has the chain count the store was built for.
fn check_chain_count(ledger: &EmbeddedLedger, store: &ViewStore) -> Result<(), ProjectionError> {
    if ledger.chain_count() != store.chain_count() {
        return Err(ProjectionError::ChainCountMismatch {
            dir: store.dir().to_path_buf(),
            stored: store.chain_count(),
            ledger: ledger.chain_count(),
        });
    }
    Ok(())
}

/// Builds the error for a chain that has no event at `position`, below `target`,
/// which its head promised.
pub(crate) fn missing_event(
    ledger: &EmbeddedLedger,
    chain: ChainId,
    position: Position,
    target: Position,
) -> ProjectionError {
    ProjectionError::Ledger(LedgerError::Corrupt {
        dir: ledger.dir().to_path_buf(),
        reason: format!(
            "chain {chain} has no event at position {position}, below the position {target} \
             that the catch-up read up to"
        ),
    })
}
