//! Status, progress reports and the live follower.

use std::time::Duration;

use consign_projections::{
    ALL_VIEWS, CatchUpOptions, Positions, Progress, ProjectionError, catch_up, catch_up_with,
    follow, status,
};
use consign_schemas::{ChainId, Position};

use crate::common::{append_workload, digests, generated_ledger, open_store};

#[test]
fn status_reports_positions_and_lag() {
    let fixture = generated_ledger(100, 3, 11);
    let ledger = &fixture.ledger;
    let heads: Positions = ledger
        .chains()
        .map(|chain| (chain, ledger.next_position(chain).unwrap()))
        .collect();
    let partial: Positions = heads
        .iter()
        .map(|(&chain, head)| (chain, Position::new(head.get() / (chain.get() as u64 + 2))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), ledger);
    let options = CatchUpOptions {
        until: Some(partial.clone()),
        ..CatchUpOptions::default()
    };
    catch_up_with(ledger, &store, &ALL_VIEWS, &options, |_| {}).unwrap();

    let behind = status(ledger, &store, &ALL_VIEWS).unwrap();
    catch_up(ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let caught_up = status(ledger, &store, &ALL_VIEWS).unwrap();

    assert_eq!(behind.len(), ALL_VIEWS.len());
    for (report, view) in behind.iter().zip(ALL_VIEWS) {
        assert_eq!(report.view, view.name());
        assert_eq!(report.chains.len(), 3);
        for chain in &report.chains {
            assert_eq!(chain.position, partial[&chain.chain], "{}", report.view);
            assert_eq!(chain.head, heads[&chain.chain], "{}", report.view);
            assert_eq!(
                chain.lag,
                heads[&chain.chain].get() - partial[&chain.chain].get()
            );
            assert!(chain.lag > 0);
        }
    }
    let final_digests = digests(&store);
    for (report, digest) in caught_up.iter().zip(&final_digests) {
        assert!(
            report.chains.iter().all(|chain| chain.lag == 0),
            "{}",
            report.view
        );
        assert_eq!(report.state, digest.state);
        assert_eq!(report.entries, digest.entries);
    }
}

#[test]
fn progress_counts_every_event() {
    let fixture = generated_ledger(80, 2, 12);
    let ledger = &fixture.ledger;
    let total: u64 = ledger
        .chains()
        .map(|chain| ledger.next_position(chain).unwrap().get())
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), ledger);
    let mut reports = Vec::new();
    let options = CatchUpOptions {
        batch_events: 100,
        until: None,
    };

    let last = catch_up_with(ledger, &store, &ALL_VIEWS, &options, |progress| {
        reports.push(progress)
    })
    .unwrap();
    let again = catch_up(ledger, &store, &ALL_VIEWS, |_| {}).unwrap();

    assert_eq!(
        last,
        Progress {
            applied: total,
            total
        }
    );
    assert_eq!(reports.first(), Some(&Progress { applied: 0, total }));
    assert_eq!(reports.last(), Some(&last));
    assert!(
        reports
            .windows(2)
            .all(|pair| pair[0].applied < pair[1].applied)
    );
    assert!(reports.len() as u64 >= total / 100);
    assert_eq!(
        again,
        Progress {
            applied: 0,
            total: 0
        }
    );
}

#[test]
fn store_ahead_of_ledger_rejected() {
    let long = generated_ledger(30, 1, 13);
    let short = generated_ledger(5, 1, 13);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &long.ledger);
    catch_up(&long.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();

    let error = catch_up(&short.ledger, &store, &ALL_VIEWS, |_| {}).unwrap_err();

    assert!(
        matches!(error, ProjectionError::AheadOfLedger { .. }),
        "{error}"
    );
}

#[test]
fn follow_applies_live_appends() {
    let fixture = generated_ledger(60, 2, 14);
    let ledger = &fixture.ledger;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), ledger);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();

    let followed = std::thread::scope(|scope| {
        let follower = scope.spawn(|| {
            runtime.block_on(follow(ledger, &store, &ALL_VIEWS, async {
                let _ = stopped.await;
            }))
        });
        // More deliveries while the follower runs, from another seed.
        append_workload(ledger, &fixture.clock, 40, 2, 15);
        runtime.block_on(async {
            for chain in ledger.chains() {
                let last = Position::new(ledger.next_position(chain).unwrap().get() - 1);
                for view in ALL_VIEWS {
                    let wait = store.wait_for(view.name(), chain, last);
                    tokio::time::timeout(Duration::from_secs(20), wait)
                        .await
                        .expect("the follower reaches the head within 20 s")
                        .unwrap();
                }
            }
        });
        stop.send(()).unwrap();
        follower.join().unwrap()
    });
    followed.unwrap();

    let rebuilt_dir = tempfile::tempdir().unwrap();
    let rebuilt = open_store(rebuilt_dir.path(), ledger);
    catch_up(ledger, &rebuilt, &ALL_VIEWS, |_| {}).unwrap();
    assert_eq!(digests(&store), digests(&rebuilt));
    for chain in ledger.chains() {
        assert_eq!(
            store.position("audit", chain).unwrap(),
            ledger.next_position(chain).unwrap()
        );
    }
    assert_eq!(
        store.chains().collect::<Vec<_>>(),
        vec![ChainId::new(0), ChainId::new(1)]
    );
}
