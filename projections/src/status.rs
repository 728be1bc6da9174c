//! [`status`]: each view's positions and lag against the ledger, and its state digest.

use consign_ledger::EmbeddedLedger;
use consign_schemas::{ChainId, Hash32, Position};

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::store::ViewStore;

/// One view's position in one chain against the ledger head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainStatus {
    pub chain: ChainId,
    /// Next position the view will apply.
    pub position: Position,
    /// Next position the ledger will append.
    pub head: Position,
    /// Events appended but not yet applied: `head - position`, or 0 for a view at or
    /// past the head. A catch-up rejects a view past the head.
    pub lag: u64,
}

/// Positions and lag of one view, with its state digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewStatus {
    pub view: String,
    /// One entry per chain, in chain order.
    pub chains: Vec<ChainStatus>,
    /// The state digest of [`ViewStore::digest`] at these positions.
    pub state: Hash32,
    pub entries: u64,
}

/// Reports, for each of `views`, each chain's position, lag and the state digest.
///
/// The positions and the digest come from one snapshot of the store. The heads are read
/// after it, so a lag is never understated by an append that lands in between.
///
/// # Errors
///
/// [`ProjectionError::UnknownView`], storage failures, and
/// [`ProjectionError::ChainCountMismatch`] when the ledger has another chain count.
pub fn status(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
) -> Result<Vec<ViewStatus>, ProjectionError> {
    if ledger.chain_count() != store.chain_count() {
        return Err(ProjectionError::ChainCountMismatch {
            dir: store.dir().to_path_buf(),
            stored: store.chain_count(),
            ledger: ledger.chain_count(),
        });
    }

    let mut report = Vec::with_capacity(views.len());
    for view in views {
        let digest = store.digest(view.name())?;
        let mut chains = Vec::with_capacity(digest.positions.len());
        for (&chain, &position) in &digest.positions {
            let head = ledger.next_position(chain)?;
            chains.push(ChainStatus {
                chain,
                position,
                head,
                lag: head.get().saturating_sub(position.get()),
            });
        }
        report.push(ViewStatus {
            view: digest.view,
            chains,
            state: digest.state,
            entries: digest.entries,
        });
    }
    Ok(report)
}
