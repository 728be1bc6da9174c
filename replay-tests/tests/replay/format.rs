//! The fixture format: recording a ledger and loading it back gives the ledger's
//! events, and encoding a parsed file gives its bytes again.

use std::time::Duration;

use consign_ledger::workload::WorkloadConfig;
use consign_replay_tests::fixture;
use consign_schemas::Position;

use crate::common::{FixtureSpec, specs};
use crate::regenerate::generate;

#[test]
fn record_then_load_round_trips() {
    let spec = FixtureSpec {
        name: "round-trip",
        config: WorkloadConfig {
            deliveries: 12,
            seed: 3,
            chains: 3,
            ..WorkloadConfig::default()
        },
        append_step: Duration::from_secs(60),
    };
    let ledger_dir = tempfile::tempdir().unwrap();
    let ledger = generate(&spec, ledger_dir.path());
    let file_dir = tempfile::tempdir().unwrap();
    let path = file_dir.path().join("round-trip.ledger");

    let written = fixture::record(&ledger, &path).unwrap();
    let recording = fixture::load(&path).unwrap();

    assert_eq!(recording.chain_count(), 3);
    assert_eq!(written, recording.events().count() as u64);
    for chain in ledger.chains() {
        let stored = ledger.read(chain, Position::ZERO, usize::MAX).unwrap();
        assert_eq!(
            recording.chains[chain.get() as usize], stored,
            "chain {chain}"
        );
    }
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
