//! Determinism and atomicity: the same log prefix gives the same state whatever the
//! batches, reopens and interleaving of chains.

use consign_ledger::StoredEvent;
use consign_projections::{
    ALL_VIEWS, CatchUpOptions, Positions, Projection, ProjectionError, ViewState, ViewStore,
    ViewStoreOptions, catch_up, catch_up_with,
};
use consign_schemas::{ChainId, Position};
use proptest::collection::vec;
use proptest::prop_assert_eq;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{all_events, digests, generated_ledger, open_store};

#[test]
fn small_batches_with_reopens_equal_one_pass() {
    let fixture = generated_ledger(250, 3, 1);
    let one_pass_dir = tempfile::tempdir().unwrap();
    let one_pass = open_store(one_pass_dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &one_pass, &ALL_VIEWS, |_| {}).unwrap();

    // Chains interleaved round robin, 37 events per batch, a reopen every 10 batches.
    let mut chains: Vec<Vec<StoredEvent>> = fixture
        .ledger
        .chains()
        .map(|chain| {
            fixture
                .ledger
                .read(chain, Position::ZERO, usize::MAX)
                .unwrap()
        })
        .collect();
    let mut interleaved = Vec::new();
    while chains.iter().any(|events| !events.is_empty()) {
        for events in &mut chains {
            let take = events.len().min(13);
            interleaved.extend(events.drain(..take));
        }
    }
    let rebuilt_dir = tempfile::tempdir().unwrap();
    let mut rebuilt = open_store(rebuilt_dir.path(), &fixture.ledger);
    for (index, batch) in interleaved.chunks(37).enumerate() {
        rebuilt.apply(&ALL_VIEWS, batch).unwrap();
        if index % 10 == 9 {
            drop(rebuilt);
            rebuilt = open_store(rebuilt_dir.path(), &fixture.ledger);
        }
    }

    let expected = digests(&one_pass);
    let actual = digests(&rebuilt);
    for (expected, actual) in expected.iter().zip(&actual) {
        // Every generated delivery ends released, expired or withdrawn, so the due list
        // is empty at the head; the prefix test covers it with entries.
        if expected.view != "schedule" {
            assert!(expected.entries > 0, "view {} is empty", expected.view);
        }
        assert_eq!(actual, expected, "view {}", expected.view);
    }
}

#[test]
fn overlap_is_skipped_and_gap_rejected() {
    let fixture = generated_ledger(20, 1, 2);
    let events = all_events(&fixture.ledger);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);

    assert_eq!(store.apply(&ALL_VIEWS, &events[..50]).unwrap(), 50);
    let before = digests(&store);
    assert_eq!(store.apply(&ALL_VIEWS, &events[10..50]).unwrap(), 0);
    assert_eq!(digests(&store), before);

    assert_eq!(store.apply(&ALL_VIEWS, &events[45..60]).unwrap(), 10);
    let error = store.apply(&ALL_VIEWS, &events[61..70]).unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::Gap { position, expected, .. }
                if position == Position::new(61) && expected == Position::new(60)
        ),
        "{error}"
    );
    for view in ALL_VIEWS {
        assert_eq!(
            store.position(view.name(), ChainId::new(0)).unwrap(),
            Position::new(60)
        );
    }
}

#[test]
fn reopen_checks_chain_count() {
    let dir = tempfile::tempdir().unwrap();
    drop(ViewStore::open(dir.path(), &ViewStoreOptions::new(2), &ALL_VIEWS).unwrap());

    let error = ViewStore::open(dir.path(), &ViewStoreOptions::new(3), &ALL_VIEWS).unwrap_err();

    assert!(
        matches!(
            error,
            ProjectionError::ChainCountMismatch {
                stored: 2,
                ledger: 3,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn reserved_view_name_rejected() {
    #[derive(Debug)]
    struct Meta;
    impl Projection for Meta {
        fn name(&self) -> &'static str {
            "meta"
        }
        fn version(&self) -> u32 {
            1
        }
        fn apply(&self, _: &StoredEvent, _: &mut ViewState<'_>) -> Result<(), ProjectionError> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();

    let error = ViewStore::open(dir.path(), &ViewStoreOptions::new(1), &[&Meta]).unwrap_err();

    assert!(
        matches!(error, ProjectionError::InvalidViewName { .. }),
        "{error}"
    );
}

/// Counts events per chain under one key; its version is a field so that a test can
/// change it between opens.
#[derive(Debug)]
struct EventCounter {
    version: u32,
}

impl Projection for EventCounter {
    fn name(&self) -> &'static str {
        "event-counter"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn apply(&self, event: &StoredEvent, state: &mut ViewState<'_>) -> Result<(), ProjectionError> {
        let key = event.chain().get().to_be_bytes().to_vec();
        let count = state
            .get(&key)?
            .map(|bytes| u64::from_be_bytes(bytes.try_into().unwrap()))
            .unwrap_or(0);
        state.put(key, (count + 1).to_be_bytes().to_vec());
        Ok(())
    }
}

#[test]
fn version_change_rebuilds_view() {
    let fixture = generated_ledger(10, 1, 3);
    let head = fixture.ledger.next_position(ChainId::new(0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = ViewStoreOptions::new(1);
    let first = EventCounter { version: 1 };
    let store = ViewStore::open(dir.path(), &options, &[&first]).unwrap();
    catch_up(&fixture.ledger, &store, &[&first], |_| {}).unwrap();
    let built = store.digest("event-counter").unwrap();
    drop(store);

    let second = EventCounter { version: 2 };
    let store = ViewStore::open(dir.path(), &options, &[&second]).unwrap();
    let reset = store.digest("event-counter").unwrap();
    catch_up(&fixture.ledger, &store, &[&second], |_| {}).unwrap();
    let rebuilt = store.digest("event-counter").unwrap();

    assert_eq!(built.positions[&ChainId::new(0)], head);
    assert_eq!(reset.entries, 0);
    assert_eq!(reset.positions[&ChainId::new(0)], Position::ZERO);
    assert_eq!(rebuilt, built);
}

/// Positions of a prefix: a fraction in thousandths of each chain's head.
fn prefix_of(heads: &Positions, thousandths: &[u64]) -> Positions {
    heads
        .iter()
        .zip(thousandths)
        .map(|((&chain, head), share)| (chain, Position::new(head.get() * share / 1000)))
        .collect()
}

#[test]
fn prefix_reopen_rest_equals_one_pass() {
    let fixture = generated_ledger(120, 2, 4);
    let ledger = &fixture.ledger;
    let heads: Positions = ledger
        .chains()
        .map(|chain| (chain, ledger.next_position(chain).unwrap()))
        .collect();
    let one_pass_dir = tempfile::tempdir().unwrap();
    let one_pass = open_store(one_pass_dir.path(), ledger);
    catch_up(ledger, &one_pass, &ALL_VIEWS, |_| {}).unwrap();
    let expected = digests(&one_pass);

    let config = Config {
        cases: 4,
        failure_persistence: None,
        ..Config::default()
    };
    let cases = (vec(0u64..=1000, 2), 1usize..400);
    TestRunner::new(config)
        .run(&cases, |(thousandths, batch_events)| {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(dir.path(), ledger);
            let prefix = CatchUpOptions {
                batch_events,
                until: Some(prefix_of(&heads, &thousandths)),
            };
            catch_up_with(ledger, &store, &ALL_VIEWS, &prefix, |_| {}).unwrap();
            drop(store);

            let store = open_store(dir.path(), ledger);
            let rest = CatchUpOptions {
                batch_events,
                until: None,
            };
            catch_up_with(ledger, &store, &ALL_VIEWS, &rest, |_| {}).unwrap();
            prop_assert_eq!(digests(&store), expected.clone());
            Ok(())
        })
        .unwrap();
}
