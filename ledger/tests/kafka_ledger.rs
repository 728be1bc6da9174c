//! The ledger on a real Apache Kafka broker. Appends commit through the partition's
//! sequencer, and every process's copy follows the topic. An append where the chain's
//! sequencer is elsewhere goes to it, and two ledgers whose topics share a commands
//! topic take only their own commands. A second sequencer fences the first without a
//! fork, and the topic verifies on its own.
//!
//! The broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test command sets
//! after starting one. Under CI a missing broker fails the test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{kafka_brokers, unique_topic, withdrawal};
use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::evidence::{export_bundle, verify_bundle};
use consign_ledger::kafka::{KafkaOptions, open_kafka_ledger, verify_topic, wait_replicated};
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{AppendRequest, ChainChecks, EmbeddedLedger, EmbeddedOptions, StoredEvent};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, IdempotencyKey, Position};

const READY: Duration = Duration::from_secs(60);

fn kafka(brokers: &str, topic: &str, sequence: Option<Vec<ChainId>>) -> KafkaOptions {
    KafkaOptions {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        sequence,
        balance: false,
    }
}

fn all_events(ledger: &EmbeddedLedger, chain: ChainId) -> Vec<StoredEvent> {
    ledger.read(chain, Position::ZERO, usize::MAX).unwrap()
}

fn verified_counts(brokers: &str, topic: &str, checks: &ChainChecks) -> Vec<u64> {
    let reports = verify_topic(brokers, topic, checks, &|_| {}).unwrap();
    reports
        .iter()
        .map(|report| {
            assert_eq!(
                report.report.first_break, None,
                "chain {} is broken in Kafka",
                report.report.chain
            );
            report.report.verified
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_commit_and_copies_follow() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let topic = unique_topic("ledger");
    let keys_dir = tempfile::tempdir().unwrap();
    PostmarkKeys::generate(keys_dir.path()).unwrap();
    let keys = Arc::new(PostmarkKeys::load(keys_dir.path()).unwrap());
    let options = EmbeddedOptions {
        chains: Some(2),
        checkpoints: Some(CheckpointPolicy {
            every_events: 40,
            every: Duration::from_secs(60),
            signer: keys.clone(),
        }),
        ..EmbeddedOptions::default()
    };
    let first_dir = tempfile::tempdir().unwrap();
    let (ledger, status) = open_kafka_ledger(
        first_dir.path(),
        options.clone(),
        &kafka(&brokers, &topic, None),
    )
    .await
    .unwrap();
    let chains = [ChainId::new(0), ChainId::new(1)];
    assert!(
        status.wait_ready(&chains, READY).await,
        "sequencers not ready"
    );
    let ledger = Arc::new(ledger);

    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let ledger = Arc::clone(&ledger);
        tasks.push(tokio::spawn(async move {
            let chain = ChainId::new(u32::try_from(task % 2).unwrap());
            let mut placed = Vec::new();
            for index in 0..25u64 {
                let number = task * 1000 + index;
                let request = AppendRequest::new(chain, vec![withdrawal(number)])
                    .with_idempotency_key(IdempotencyKey::new(format!("key-{number}")).unwrap());
                let appended = ledger.append(request).await.unwrap();
                placed.push((chain, appended.events[0].position));
            }
            placed
        }));
    }
    let mut placed = Vec::new();
    for task in tasks {
        placed.extend(task.await.unwrap());
    }
    assert_eq!(placed.len(), 200);

    // A repeated key returns the original place and writes nothing.
    let again = AppendRequest::new(ChainId::new(0), vec![withdrawal(0)])
        .with_idempotency_key(IdempotencyKey::new("key-0").unwrap());
    let replayed = ledger.append(again).await.unwrap();
    assert!(replayed.replayed);
    assert!(placed.contains(&(ChainId::new(0), replayed.events[0].position)));

    // 100 appends per chain plus a checkpoint every 40 events.
    let mut lengths = Vec::new();
    for chain in chains {
        let events = all_events(&ledger, chain);
        let checkpoints = events
            .iter()
            .filter(|event| matches!(event.envelope.event, Event::CheckpointSigned(_)))
            .count();
        assert_eq!(checkpoints, 2, "chain {chain}");
        assert_eq!(events.len(), 102, "chain {chain}");
        lengths.push(events.len() as u64);
    }
    let checks = ChainChecks {
        keys: Some(Arc::new(keys.public_keys())),
        saved_checkpoint: None,
    };
    assert_eq!(verified_counts(&brokers, &topic, &checks), lengths);

    // A second copy, as another process would have, fills from the topic alone and
    // contains the same bytes; it sequences nothing.
    let second_dir = tempfile::tempdir().unwrap();
    let (copy, copy_status) = open_kafka_ledger(
        second_dir.path(),
        options.clone(),
        &kafka(&brokers, &topic, Some(Vec::new())),
    )
    .await
    .unwrap();
    for chain in chains {
        let last = Position::new(lengths[chain.get() as usize] - 1);
        assert!(wait_replicated(&copy, chain, last, READY).await.unwrap());
        assert_eq!(all_events(&copy, chain), all_events(&ledger, chain));
        let report = copy
            .verify_chain(chain, Position::ZERO, None, &|_| {})
            .unwrap();
        assert_eq!(report.first_break, None);
    }
    assert!(copy_status.ready_chains().is_empty());

    // An append in the copy goes to the chain's sequencer through the commands topic,
    // and both copies contain it.
    let forwarded = copy
        .append(AppendRequest::new(ChainId::new(0), vec![withdrawal(5)]))
        .await
        .unwrap();
    assert!(!forwarded.replayed);
    let position = forwarded.events[0].position;
    assert!(
        wait_replicated(&ledger, ChainId::new(0), position, READY)
            .await
            .unwrap()
    );
    let in_first = ledger.read(ChainId::new(0), position, 1).unwrap();
    assert_eq!(in_first[0].hash, forwarded.events[0].hash);
    let again = copy
        .append(
            AppendRequest::new(ChainId::new(0), vec![withdrawal(0)])
                .with_idempotency_key(IdempotencyKey::new("key-0").unwrap()),
        )
        .await
        .unwrap();
    assert!(again.replayed);
    lengths[0] = ledger.next_position(ChainId::new(0)).unwrap().get();

    // The copy, which sequences nothing, exports evidence proved into a checkpoint
    // that the first process signed.
    let early = all_events(&copy, ChainId::new(0))[3].clone();
    let delivery = early.envelope.event.delivery().unwrap();
    let bundle = export_bundle(
        &copy,
        delivery,
        ChainId::new(0),
        &[early.position()],
        &keys.public_keys(),
    )
    .await
    .unwrap();
    assert!(bundle.checkpoint.tree_size > early.position().get());
    // These events are withdrawals without a submission, so only the `submission`
    // check fails; the signature and the inclusion proof pass.
    let report = verify_bundle(&bundle.to_bytes());
    for check in &report.checks {
        assert_eq!(check.passed, check.name != "submission", "{check:?}");
    }
    assert!(report.checks.iter().any(|check| check.name == "inclusion"));
    assert!(
        report
            .checks
            .iter()
            .any(|check| check.name == "checkpoint-signature")
    );
    copy.close();

    // Reopened, the first copy resumes after its stored offsets and goes on.
    Arc::into_inner(ledger).unwrap().close();
    let (ledger, status) =
        open_kafka_ledger(first_dir.path(), options, &kafka(&brokers, &topic, None))
            .await
            .unwrap();
    assert!(status.wait_ready(&chains, READY).await);
    let next = ledger.next_position(ChainId::new(1)).unwrap();
    let appended = ledger
        .append(AppendRequest::new(ChainId::new(1), vec![withdrawal(9999)]))
        .await
        .unwrap();
    assert!(appended.events[0].position >= next);
    ledger.close();
    let counts = verified_counts(&brokers, &topic, &ChainChecks::default());
    assert!(counts[1] > lengths[1], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequencer_fenced_by_second_without_fork() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let topic = unique_topic("fence");
    let chain = ChainId::new(0);
    let options = EmbeddedOptions {
        chains: Some(1),
        ..EmbeddedOptions::default()
    };

    let first_dir = tempfile::tempdir().unwrap();
    let (first, first_status) = open_kafka_ledger(
        first_dir.path(),
        options.clone(),
        &kafka(&brokers, &topic, None),
    )
    .await
    .unwrap();
    assert!(first_status.wait_ready(&[chain], READY).await);
    for index in 0..20 {
        first
            .append(AppendRequest::new(chain, vec![withdrawal(index)]))
            .await
            .unwrap();
    }

    let second_dir = tempfile::tempdir().unwrap();
    let (second, second_status) =
        open_kafka_ledger(second_dir.path(), options, &kafka(&brokers, &topic, None))
            .await
            .unwrap();
    assert!(second_status.wait_ready(&[chain], READY).await);
    // The new sequencer starts at the real head, after all 20 events.
    assert_eq!(second.next_position(chain).unwrap(), Position::new(20));

    // The first append after the hand-over finds the old sequencer fenced and is
    // rejected; nothing of it is recorded.
    let rejected = first
        .append(AppendRequest::new(chain, vec![withdrawal(100)]))
        .await
        .unwrap_err();
    assert!(rejected.to_string().contains("fenced"), "{rejected}");
    assert_eq!(first_status.fenced_chains().len(), 1);
    // Later appends in the fenced process go to the new sequencer.
    let forwarded = first
        .append(AppendRequest::new(chain, vec![withdrawal(101)]))
        .await
        .unwrap();
    assert_eq!(forwarded.events[0].position, Position::new(20));

    for index in 200..219 {
        let appended = second
            .append(AppendRequest::new(chain, vec![withdrawal(index)]))
            .await
            .unwrap();
        assert!(appended.events[0].position >= Position::new(20));
    }

    // The fenced process still follows the chain as the new sequencer extends it.
    assert!(
        wait_replicated(&first, chain, Position::new(39), READY)
            .await
            .unwrap()
    );
    assert_eq!(all_events(&first, chain), all_events(&second, chain));
    assert_eq!(
        verified_counts(&brokers, &topic, &ChainChecks::default()),
        vec![40]
    );
    let reasons: Vec<String> = all_events(&first, chain)
        .iter()
        .filter_map(|event| match &event.envelope.event {
            Event::DeliveryWithdrawn(withdrawn) => Some(withdrawn.reason.clone()),
            _ => None,
        })
        .collect();
    assert!(!reasons.contains(&"withdrawal number 100".to_owned()));
    first.close();
    second.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgers_sharing_commands_topic_stay_apart() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    // `x` and `x.events` both forward through `x.commands`.
    let stem = unique_topic("stem");
    let topics = [stem.clone(), format!("{stem}.events")];
    let options = EmbeddedOptions {
        chains: Some(1),
        ..EmbeddedOptions::default()
    };
    let chain = ChainId::new(0);

    let mut sequencers = Vec::new();
    let mut copies = Vec::new();
    let mut dirs = Vec::new();
    for topic in &topics {
        let sequencer_dir = tempfile::tempdir().unwrap();
        let (sequencer, status) = open_kafka_ledger(
            sequencer_dir.path(),
            options.clone(),
            &kafka(&brokers, topic, None),
        )
        .await
        .unwrap();
        assert!(
            status.wait_ready(&[chain], READY).await,
            "sequencer of {topic} not ready"
        );
        let copy_dir = tempfile::tempdir().unwrap();
        let (copy, _) = open_kafka_ledger(
            copy_dir.path(),
            options.clone(),
            &kafka(&brokers, topic, Some(Vec::new())),
        )
        .await
        .unwrap();
        sequencers.push(sequencer);
        copies.push(copy);
        dirs.push((sequencer_dir, copy_dir));
    }

    for (index, copy) in copies.iter().enumerate() {
        let appended = copy
            .append(AppendRequest::new(chain, vec![withdrawal(index as u64)]))
            .await
            .unwrap();
        assert_eq!(
            appended.events[0].position,
            Position::ZERO,
            "{}",
            topics[index]
        );
    }

    for (index, sequencer) in sequencers.iter().enumerate() {
        assert!(
            wait_replicated(sequencer, chain, Position::ZERO, READY)
                .await
                .unwrap()
        );
        let events = all_events(sequencer, chain);
        assert_eq!(
            events.len(),
            1,
            "{} took another ledger's command",
            topics[index]
        );
        let Event::DeliveryWithdrawn(withdrawn) = &events[0].envelope.event else {
            panic!("{} holds {:?}", topics[index], events[0].envelope.event);
        };
        assert_eq!(withdrawn.reason, format!("withdrawal number {index}"));
    }
}
