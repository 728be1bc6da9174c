//! The checked-in fixtures: their paths, the workload settings they are generated
//! from, and helpers that load and replay them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use consign_ledger::workload::WorkloadConfig;
use consign_projections::{ALL_VIEWS, ViewDigest, ViewStore};
use consign_replay_tests::fixture::{self, Recording};
use tempfile::TempDir;

/// Set to `1` to rewrite the expected files in `fixtures_replay_to_expected`, and to
/// let `regenerate_fixtures` record new ledgers.
pub const UPDATE_VARIABLE: &str = "CONSIGN_UPDATE_FIXTURES";

/// Returns whether the expected outputs, or with `regenerate_fixtures` the fixtures
/// themselves, should be rewritten instead of compared.
pub fn update_requested() -> bool {
    std::env::var(UPDATE_VARIABLE).is_ok_and(|value| value == "1")
}

/// Largest fixture file accepted, so that the checked-in files stay small.
pub const MAX_FIXTURE_BYTES: u64 = 2 << 20;

/// One checked-in fixture and the settings it was generated from.
#[derive(Debug)]
pub struct FixtureSpec {
    /// File stem of `NAME.ledger` and `NAME.expected.json`.
    pub name: &'static str,
    pub config: WorkloadConfig,
}

impl FixtureSpec {
    pub fn ledger_path(&self) -> PathBuf {
        fixtures_dir().join(format!("{}.ledger", self.name))
    }

    pub fn expected_path(&self) -> PathBuf {
        fixtures_dir().join(format!("{}.expected.json", self.name))
    }

    /// Loads and checks the fixture file, panicking with the error on failure.
    pub fn load(&self) -> Recording {
        let path = self.ledger_path();
        fixture::load(&path).unwrap_or_else(|error| panic!("cannot load a fixture: {error}"))
    }
}

/// Returns the folder of the checked-in fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Returns every checked-in fixture.
///
/// Both use 24 billing codes instead of the default 12, and the ledger signs a
/// checkpoint every 500 events. The events are sequenced at their simulated times, and
/// the submission gaps spread the submissions over about three months, so that billing
/// has rows in several months.
pub fn specs() -> [FixtureSpec; 2] {
    [
        FixtureSpec {
            name: "small",
            config: WorkloadConfig {
                deliveries: 200,
                seed: 5,
                chains: 1,
                billing_codes: 24,
                mean_submission_gap: Duration::from_secs(12 * 3600),
                ..WorkloadConfig::default()
            },
        },
        FixtureSpec {
            name: "multi",
            config: WorkloadConfig {
                deliveries: 380,
                seed: 9,
                chains: 4,
                billing_codes: 24,
                mean_submission_gap: Duration::from_secs(6 * 3600),
                ..WorkloadConfig::default()
            },
        },
    ]
}

/// A view store in a temporary directory that is removed on drop.
pub struct TempStore {
    pub store: ViewStore,
    _dir: TempDir,
}

/// Replays every event of `recording` into a new store in a temporary directory.
pub fn replay(recording: &Recording) -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture::replay_into(recording, dir.path()).unwrap();
    TempStore { store, _dir: dir }
}

/// Returns the digest of every built-in view, in [`ALL_VIEWS`] order.
pub fn digests(store: &ViewStore) -> Vec<ViewDigest> {
    ALL_VIEWS
        .iter()
        .map(|view| store.digest(view.name()).unwrap())
        .collect()
}
