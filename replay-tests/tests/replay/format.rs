//! The fixture format: recording a ledger and loading it back gives the ledger's
//! events, a replay of the recording equals a catch-up from the ledger, and encoding a
//! parsed file gives its bytes again.

use consign_ledger::EmbeddedLedger;
use consign_ledger::workload::WorkloadConfig;
use consign_projections::{ALL_VIEWS, catch_up};
use consign_replay_tests::fixture;
use consign_schemas::Position;
use tempfile::TempDir;

use crate::common::{FixtureSpec, digests, replay, specs};
use crate::regenerate::generate;

/// Generates a ledger of 12 deliveries over 3 chains in a temporary directory.
fn small_ledger() -> (TempDir, EmbeddedLedger) {
    let spec = FixtureSpec {
        name: "round-trip",
        config: WorkloadConfig {
            deliveries: 12,
            seed: 3,
            chains: 3,
            ..WorkloadConfig::default()
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = generate(&spec, dir.path());
    (dir, ledger)
}

#[test]
fn record_then_load_round_trips() {
    let (_ledger_dir, ledger) = small_ledger();
    let file_dir = tempfile::tempdir().unwrap();
    let path = file_dir.path().join("round-trip.ledger");

    let written = fixture::record(&ledger, &path).unwrap();
    let recording = fixture::load(&path).unwrap();

    assert_eq!(recording.chain_count(), 3);
    assert_eq!(written, recording.events().count() as u64);
    for chain in ledger.chains() {
        let stored = ledger.read(chain, Position::ZERO, usize::MAX).unwrap();
        assert_eq!(
            recording.chains[chain.get() as usize],
            stored,
            "chain {chain}"
        );
    }
}

#[test]
fn replay_equals_catch_up() {
    let (_ledger_dir, ledger) = small_ledger();
    let file_dir = tempfile::tempdir().unwrap();
    let path = file_dir.path().join("round-trip.ledger");
    fixture::record(&ledger, &path).unwrap();
    let replayed = replay(&fixture::load(&path).unwrap());
    let store_dir = tempfile::tempdir().unwrap();
    let caught_up = fixture::open_store(store_dir.path(), ledger.chain_count()).unwrap();

    catch_up(&ledger, &caught_up, &ALL_VIEWS, |_| {}).unwrap();

    assert_eq!(digests(&replayed.store), digests(&caught_up));
}

#[test]
fn encode_restores_parsed_bytes() {
    for spec in specs() {
        let path = spec.ledger_path();
        let bytes = std::fs::read(&path).unwrap();
        let parsed = fixture::parse(&path, &bytes).unwrap();

        assert!(fixture::encode(&parsed) == bytes, "{}.ledger", spec.name);
    }
}
