//! `prefix_restart_equals_one_pass`: views that applied a prefix of each chain, were
//! closed and reopened, and then applied the rest, contain the same state as views
//! that applied everything in one pass.

use std::sync::OnceLock;

use consign_ledger::StoredEvent;
use consign_projections::{ALL_VIEWS, ViewDigest};
use consign_replay_tests::fixture::{self, Recording};
use consign_schemas::Position;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::common::{digests, replay, specs};

/// Each fixture with the digests of a one-pass replay, computed once for all cases.
fn one_pass() -> &'static [(String, Recording, Vec<ViewDigest>)] {
    static ONE_PASS: OnceLock<Vec<(String, Recording, Vec<ViewDigest>)>> = OnceLock::new();
    ONE_PASS.get_or_init(|| {
        specs()
            .into_iter()
            .map(|spec| {
                let recording = spec.load();
                let digests = digests(&replay(&recording).store);
                (spec.name.to_owned(), recording, digests)
            })
            .collect()
    })
}

/// Orders the events of every chain round-robin, one event of each chain in turn, so
/// that every batch mixes chains.
fn interleaved(chains: &[&[StoredEvent]]) -> Vec<StoredEvent> {
    let longest = chains.iter().map(|events| events.len()).max().unwrap_or(0);
    let mut events = Vec::new();
    for index in 0..longest {
        for chain in chains {
            if let Some(event) = chain.get(index) {
                events.push(event.clone());
            }
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// `cuts` picks the prefix of each chain, and the `overlap` events before each cut
    /// are applied again after the restart, which the views must skip.
    #[test]
    fn prefix_restart_equals_one_pass(
        cuts in proptest::collection::vec(any::<Index>(), 4),
        overlap in 0usize..40,
        batch in 1usize..700,
        interleave in any::<bool>(),
    ) {
        for (name, recording, expected) in one_pass() {
            let dir = tempfile::tempdir().unwrap();
            let prefixes: Vec<usize> = recording
                .chains
                .iter()
                .zip(&cuts)
                .map(|(events, cut)| cut.index(events.len() + 1))
                .collect();

            let store = fixture::open_store(dir.path(), recording.chain_count()).unwrap();
            for (events, &prefix) in recording.chains.iter().zip(&prefixes) {
                fixture::apply_in_batches(&store, &events[..prefix], batch).unwrap();
            }
            drop(store);

            let store = fixture::open_store(dir.path(), recording.chain_count()).unwrap();
            let reopened: Vec<Position> = prefixes.iter().map(|&prefix| Position::new(prefix as u64)).collect();
            for view in ALL_VIEWS {
                let positions: Vec<Position> = store.positions(view.name()).unwrap().into_values().collect();
                prop_assert_eq!(&positions, &reopened, "{}: {} positions after reopening", name, view.name());
            }

            let rests: Vec<&[StoredEvent]> = recording
                .chains
                .iter()
                .zip(&prefixes)
                .map(|(events, &prefix)| &events[prefix.saturating_sub(overlap)..])
                .collect();
            if interleave {
                fixture::apply_in_batches(&store, &interleaved(&rests), batch).unwrap();
            } else {
                for rest in rests {
                    fixture::apply_in_batches(&store, rest, batch).unwrap();
                }
            }
            prop_assert_eq!(&digests(&store), expected, "{}: digests after the restart", name);
        }
    }
}
