//! Fixtures: generated ledgers whose sequencer times span two calendar months, and view
//! stores in temporary directories.

use std::path::Path;
use std::time::Duration;

use consign_ledger::workload::{self, Appender, WorkloadConfig};
use consign_ledger::{
    AppendRequest, Appended, EmbeddedLedger, EmbeddedOptions, LedgerError, ManualClock, StoredEvent,
};
use consign_projections::{ALL_VIEWS, ViewDigest, ViewStore, ViewStoreOptions};
use consign_schemas::{Position, Timestamp};
use tempfile::TempDir;

/// 2026-03-20T00:00:00Z: with one append every 10 minutes, a few thousand appends reach
/// into April.
const CLOCK_START: Timestamp = Timestamp::from_micros(1_773_964_800_000_000);
/// Sequencer time between two appends.
const APPEND_STEP: Duration = Duration::from_secs(600);

/// A generated ledger in a temporary directory.
pub struct Fixture {
    pub ledger: EmbeddedLedger,
    pub clock: ManualClock,
    _dir: TempDir,
}

/// Moves the manual clock forward before every append, so that sequencer times spread
/// over weeks instead of the moment the test runs.
struct SteppingAppender<'a> {
    ledger: &'a EmbeddedLedger,
    clock: &'a ManualClock,
}

impl Appender for SteppingAppender<'_> {
    type Error = LedgerError;

    async fn append(
        &self,
        request: AppendRequest,
        _at: Timestamp,
    ) -> Result<Appended, LedgerError> {
        self.clock.advance(APPEND_STEP);
        self.ledger.append(request).await
    }
}

/// Generates a ledger of `deliveries` deliveries over `chains` chains.
pub fn generated_ledger(deliveries: u64, chains: u32, seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(CLOCK_START);
    let options = EmbeddedOptions {
        chains: Some(chains),
        sync: false,
        clock: clock.clock(),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    append_workload(&ledger, &clock, deliveries, chains, seed);
    Fixture {
        ledger,
        clock,
        _dir: dir,
    }
}

/// Appends a generated workload to an open ledger.
pub fn append_workload(
    ledger: &EmbeddedLedger,
    clock: &ManualClock,
    deliveries: u64,
    chains: u32,
    seed: u64,
) {
    let config = WorkloadConfig {
        deliveries,
        chains,
        seed,
        ..WorkloadConfig::default()
    };
    let appender = SteppingAppender { ledger, clock };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(workload::generate(&appender, config, 16, |_| {}))
        .unwrap();
}

/// Reads every event of every chain, chain by chain.
pub fn all_events(ledger: &EmbeddedLedger) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for chain in ledger.chains() {
        events.extend(ledger.read(chain, Position::ZERO, usize::MAX).unwrap());
    }
    events
}

/// Opens a store with every built-in view, with fsync on as in production.
pub fn open_store(dir: &Path, ledger: &EmbeddedLedger) -> ViewStore {
    ViewStore::open(
        dir,
        &ViewStoreOptions::new(ledger.chain_count()),
        &ALL_VIEWS,
    )
    .unwrap()
}

/// Returns the digest of every built-in view.
pub fn digests(store: &ViewStore) -> Vec<ViewDigest> {
    ALL_VIEWS
        .iter()
        .map(|view| store.digest(view.name()).unwrap())
        .collect()
}
