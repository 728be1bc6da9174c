//! `regenerate_fixtures`: records the fixture ledgers anew from the workload generator
//! and rewrites their expected outputs. It is ignored in normal runs, so run it by hand:
//!
//! ```text
//! CONSIGN_UPDATE_FIXTURES=1 cargo test -p consign-replay-tests --test replay \
//!     -- --ignored regenerate_fixtures
//! ```
//!
//! The ledger assigns random event ids, so every regeneration changes the files and
//! the digests even when the workload generator did not change.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::workload::{self, AtSimulatedTime};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, ManualClock};
use consign_replay_tests::expected::choose_deliveries;
use consign_replay_tests::fixture;
use consign_schemas::EventKind;

use crate::common::{FixtureSpec, MAX_FIXTURE_BYTES, UPDATE_VARIABLE, specs, update_requested};
use crate::expected::write_expected;

/// Appends the workload of `spec` to a new ledger in `dir`, one request at a time and
/// each at its simulated time, so that the events are in the workload's order.
pub fn generate(spec: &FixtureSpec, dir: &Path) -> EmbeddedLedger {
    let clock = ManualClock::new(spec.config.start);
    let keys = tempfile::tempdir().unwrap();
    PostmarkKeys::generate(keys.path()).unwrap();
    let options = EmbeddedOptions {
        chains: Some(spec.config.chains),
        sync: false,
        clock: clock.clock(),
        checkpoints: Some(CheckpointPolicy {
            every_events: 500,
            every: Duration::from_secs(3600),
            signer: Arc::new(PostmarkKeys::load(keys.path()).unwrap()),
        }),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir, options).unwrap();
    let appender = AtSimulatedTime {
        ledger: &ledger,
        clock: &clock,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(workload::generate(
            &appender,
            spec.config.clone(),
            1,
            |_| {},
        ))
        .unwrap();
    ledger
}

#[test]
#[ignore = "rewrites the checked-in fixtures; run by hand with CONSIGN_UPDATE_FIXTURES=1"]
fn regenerate_fixtures() {
    assert!(
        update_requested(),
        "set {UPDATE_VARIABLE}=1 to let this test rewrite the fixtures"
    );
    for spec in specs() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = generate(&spec, dir.path());
        let events = fixture::record(&ledger, &spec.ledger_path()).unwrap();
        drop(ledger);

        let recording = spec.load();
        let size = std::fs::metadata(spec.ledger_path()).unwrap().len();
        let kinds: Vec<EventKind> = recording
            .events()
            .map(|event| event.envelope.event.kind())
            .collect();
        for kind in EventKind::ALL {
            assert!(
                kinds.contains(&kind),
                "{}: no {} event; choose another seed",
                spec.name,
                kind.name()
            );
        }
        assert!(
            size <= MAX_FIXTURE_BYTES,
            "{}: {size} bytes, more than {MAX_FIXTURE_BYTES}; generate fewer deliveries",
            spec.name
        );

        write_expected(&spec, &recording, &choose_deliveries(&recording));
        println!("{}: {events} events, {size} bytes", spec.name);
    }
}
