//! Appending, reading, idempotency, subscriptions and the directory lock of the
//! embedded ledger.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_schemas::{ChainId, IdempotencyKey, Position, genesis_hash, hash_stored_event};

use common::{open, withdrawal};

const CHAIN: ChainId = ChainId::new(0);

#[tokio::test]
async fn appended_events_read_back_linked() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());

    let first = ledger
        .append(AppendRequest::new(
            CHAIN,
            vec![withdrawal(0), withdrawal(1)],
        ))
        .await
        .unwrap();
    let second = ledger
        .append(AppendRequest::new(CHAIN, vec![withdrawal(2)]))
        .await
        .unwrap();

    assert_eq!(first.events[0].position, Position::new(0));
    assert_eq!(first.events[1].position, Position::new(1));
    assert_eq!(second.events[0].position, Position::new(2));
    assert!(!first.replayed);

    let events = ledger.read(CHAIN, Position::ZERO, 10).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].envelope.previous, genesis_hash(CHAIN));
    assert_eq!(events[1].envelope.previous, events[0].hash);
    assert_eq!(events[2].envelope.previous, events[1].hash);
    assert_eq!(events[2].hash, hash_stored_event(&events[2].bytes));
    assert_eq!(events[2].hash, second.events[0].hash);
    assert_eq!(events[0].envelope.command, events[1].envelope.command);
    assert!(events[1].envelope.time <= events[2].envelope.time);
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(3));
}

#[tokio::test]
async fn events_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let appended = {
        let ledger = open(dir.path());
        ledger
            .append(AppendRequest::new(CHAIN, vec![withdrawal(0)]))
            .await
            .unwrap()
    };

    let ledger = open(dir.path());
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(1));
    assert_eq!(ledger.last_hash(CHAIN).unwrap(), appended.events[0].hash);
    let next = ledger
        .append(AppendRequest::new(CHAIN, vec![withdrawal(1)]))
        .await
        .unwrap();
    assert_eq!(next.events[0].position, Position::new(1));
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.verified, 2);
}

#[tokio::test]
async fn idempotency_key_returns_original_positions() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let key = IdempotencyKey::new("submit-1").unwrap();

    let original = ledger
        .append(
            AppendRequest::new(CHAIN, vec![withdrawal(0), withdrawal(1)])
                .with_idempotency_key(key.clone()),
        )
        .await
        .unwrap();
    ledger
        .append(AppendRequest::new(CHAIN, vec![withdrawal(2)]))
        .await
        .unwrap();
    let retry = ledger
        .append(
            AppendRequest::new(CHAIN, vec![withdrawal(0), withdrawal(1)]).with_idempotency_key(key),
        )
        .await
        .unwrap();

    assert!(retry.replayed);
    assert_eq!(retry.events, original.events);
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(3));
}

#[tokio::test]
async fn idempotency_holds_within_one_group_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(open(dir.path()));
    let key = IdempotencyKey::new("same-key").unwrap();

    let mut tasks = Vec::new();
    for index in 0..16 {
        let ledger = Arc::clone(&ledger);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            ledger
                .append(
                    AppendRequest::new(CHAIN, vec![withdrawal(index)]).with_idempotency_key(key),
                )
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    let written: Vec<_> = results.iter().filter(|result| !result.replayed).collect();
    assert_eq!(written.len(), 1);
    assert!(
        results
            .iter()
            .all(|result| result.events == written[0].events)
    );
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(1));

    let original = written[0].events.clone();
    drop(results);
    Arc::try_unwrap(ledger).unwrap().close();
    let reopened = open(dir.path());
    let retry = reopened
        .append(AppendRequest::new(CHAIN, vec![withdrawal(99)]).with_idempotency_key(key))
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.events, original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_distinct_positions() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(open(dir.path()));

    let mut tasks = Vec::new();
    for task_index in 0..64u64 {
        let ledger = Arc::clone(&ledger);
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for round in 0..20 {
                let appended = ledger
                    .append(AppendRequest::new(
                        CHAIN,
                        vec![withdrawal(task_index * 100 + round)],
                    ))
                    .await
                    .unwrap();
                positions.push(appended.events[0].position);
            }
            positions
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        for position in task.await.unwrap() {
            assert!(all.insert(position), "position {position} given twice");
        }
    }

    assert_eq!(all.len(), 64 * 20);
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.verified, 64 * 20);
}

#[tokio::test]
async fn subscription_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(open(dir.path()));
    ledger
        .append(AppendRequest::new(CHAIN, vec![withdrawal(0)]))
        .await
        .unwrap();

    let mut subscription = ledger.subscribe(CHAIN, Position::ZERO).unwrap();
    let first = subscription.next().await.unwrap();
    assert_eq!(first.position(), Position::new(0));

    let waiting = tokio::spawn(async move { subscription.next().await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "subscription returned before any append"
    );

    let appended = ledger
        .append(AppendRequest::new(CHAIN, vec![withdrawal(1)]))
        .await
        .unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("subscription woke up")
        .unwrap();
    assert_eq!(second.position(), Position::new(1));
    assert_eq!(second.hash, appended.events[0].hash);
}

#[tokio::test]
async fn subscription_from_middle() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let events = (0..1200).map(withdrawal).collect();
    ledger
        .append(AppendRequest::new(CHAIN, events))
        .await
        .unwrap();

    let mut subscription = ledger.subscribe(CHAIN, Position::new(700)).unwrap();
    for expected in 700..1200 {
        assert_eq!(
            subscription.next().await.unwrap().position(),
            Position::new(expected)
        );
    }
    assert_eq!(subscription.position(), Position::new(1200));
}

#[tokio::test]
async fn invalid_requests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());

    let empty = ledger
        .append(AppendRequest::new(CHAIN, Vec::new()))
        .await
        .unwrap_err();
    assert!(matches!(empty, LedgerError::EmptyAppend), "{empty}");

    let unknown = ledger
        .append(AppendRequest::new(ChainId::new(5), vec![withdrawal(0)]))
        .await
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "chain 5 does not exist: this ledger has chains 0 to 0"
    );
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::ZERO);
}

#[test]
fn chains_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        chains: Some(3),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options.clone()).unwrap();
    for chain in [0, 2, 2, 1, 2] {
        ledger
            .append_blocking(AppendRequest::new(ChainId::new(chain), vec![withdrawal(0)]))
            .unwrap();
    }
    assert_eq!(
        ledger.next_position(ChainId::new(0)).unwrap(),
        Position::new(1)
    );
    assert_eq!(
        ledger.next_position(ChainId::new(1)).unwrap(),
        Position::new(1)
    );
    assert_eq!(
        ledger.next_position(ChainId::new(2)).unwrap(),
        Position::new(3)
    );
    for chain in ledger.chains() {
        let report = ledger
            .verify_chain(chain, Position::ZERO, None, &|_| {})
            .unwrap();
        assert_eq!(report.first_break, None, "chain {chain}");
    }
    ledger.close();

    let mismatch = EmbeddedLedger::open(
        dir.path(),
        EmbeddedOptions {
            chains: Some(4),
            ..options
        },
    )
    .unwrap_err();
    assert!(
        mismatch
            .to_string()
            .contains("created with 3 chains, but 4 were requested"),
        "{mismatch}"
    );
    assert!(
        mismatch.to_string().contains("leave out --chains"),
        "{mismatch}"
    );
}

#[test]
fn second_open_in_same_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _ledger = open(dir.path());

    let error = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    assert!(
        matches!(error, LedgerError::Locked { holder: Some(pid), .. } if pid == std::process::id()),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("is in use by another consign process"),
        "{error}"
    );
}
