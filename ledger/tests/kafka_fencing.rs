//! Two sequencers of one chain, in two ledgers on one topic, both taking appends for
//! 30 s. The later one fences the earlier, which stops sequencing for good, logs the reason,
//! and hands its later appends to the new sequencer. There is no fork: the topic
//! verifies, both copies hold the same events, and every acknowledged append is there
//! exactly once.
//!
//! `CONSIGN_KAFKA_FENCE_SECONDS` sets how long both take appends (default 30). The
//! broker comes from `CONSIGN_KAFKA_BROKERS`; under CI a missing broker fails the test.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{kafka_brokers, unique_topic, withdrawal};
use consign_ledger::kafka::{KafkaOptions, open_kafka_ledger, verify_topic, wait_replicated};
use consign_ledger::{
    AppendRequest, ChainChecks, EmbeddedLedger, EmbeddedOptions, LedgerError, StoredEvent,
};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, Position};

const READY: Duration = Duration::from_secs(60);
const CHAIN: ChainId = ChainId::new(0);

/// Appends one event after another until `stop` is set. Returns the numbers of the
/// acknowledged events and how many appends were refused as unavailable; any other
/// error fails the test.
async fn append_until(
    ledger: Arc<EmbeddedLedger>,
    worker: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<u64>, u32) {
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut index = worker * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        index += 1;
        match ledger
            .append(AppendRequest::new(CHAIN, vec![withdrawal(index)]))
            .await
        {
            Ok(_) => acknowledged.push(index),
            Err(LedgerError::Unavailable { .. }) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("append {index} failed: {error}"),
        }
    }
    (acknowledged, refused)
}

/// Asserts that both copies hold the same events, and otherwise names the first
/// event where they part, so that a failure shows a fork apart from a lagging copy.
fn assert_same_events(first: &[StoredEvent], second: &[StoredEvent], head: Position) {
    if first == second {
        return;
    }
    let describe = |event: Option<&StoredEvent>| match event {
        None => "nothing".to_owned(),
        Some(event) => format!(
            "position {} hash {} command {} {:?}",
            event.position(),
            event.hash,
            event.envelope.command,
            event.envelope.event
        ),
    };
    let index = first
        .iter()
        .zip(second)
        .position(|(a, b)| a != b)
        .unwrap_or(first.len().min(second.len()));
    panic!(
        "the copies differ: the first holds {} events, the second {} (head read before: {head}); \
         at index {index} the first holds {} and the second {}",
        first.len(),
        second.len(),
        describe(first.get(index)),
        describe(second.get(index)),
    );
}

fn start_workers(
    ledger: &Arc<EmbeddedLedger>,
    first_worker: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<u64>, u32)>> {
    (first_worker..first_worker + 3)
        .map(|worker| tokio::spawn(append_until(Arc::clone(ledger), worker, Arc::clone(stop))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_sequencers_make_no_fork() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let seconds: u64 = std::env::var("CONSIGN_KAFKA_FENCE_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(30);
    let topic = unique_topic("overlap");
    let options = EmbeddedOptions {
        chains: Some(1),
        ..EmbeddedOptions::default()
    };
    let kafka = KafkaOptions {
        brokers: brokers.clone(),
        topic: topic.clone(),
        sequence: None,
        balance: false,
    };

    let first_dir = tempfile::tempdir().unwrap();
    let (first, first_status) = open_kafka_ledger(first_dir.path(), options.clone(), &kafka)
        .await
        .unwrap();
    assert!(first_status.wait_ready(&[CHAIN], READY).await);
    let first = Arc::new(first);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = start_workers(&first, 1, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The second sequencer starts while the first is busy.
    let second_dir = tempfile::tempdir().unwrap();
    let (second, second_status) = open_kafka_ledger(second_dir.path(), options, &kafka)
        .await
        .unwrap();
    assert!(second_status.wait_ready(&[CHAIN], READY).await);
    let second = Arc::new(second);
    workers.extend(start_workers(&second, 11, &stop));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged: Vec<u64> = Vec::new();
    let mut by_worker = Vec::new();
    let mut refused = 0;
    for worker in workers {
        let (numbers, refusals) = worker.await.unwrap();
        by_worker.push(numbers.len());
        acknowledged.extend(numbers);
        refused += refusals;
    }
    eprintln!("acknowledged per worker {by_worker:?}, {refused} refused as unavailable");
    // Each worker of each ledger had appends acknowledged during the overlap: the
    // first ledger's went to the new sequencer once it was fenced.
    assert!(by_worker.iter().all(|count| *count > 0), "{by_worker:?}");

    // The first sequencer was fenced and reports it.
    let fenced = first_status.fenced_chains();
    assert_eq!(fenced.len(), 1, "{fenced:?}");
    assert!(fenced[0].1.contains("fenced"), "{}", fenced[0].1);
    assert!(second_status.fenced_chains().is_empty());

    // The topic verifies on its own, and both copies hold the same chain (below).
    let head = second.next_position(CHAIN).unwrap();
    assert!(
        wait_replicated(&first, CHAIN, Position::new(head.get() - 1), READY)
            .await
            .unwrap()
    );
    let events = second.read(CHAIN, Position::ZERO, usize::MAX).unwrap();
    let reports = verify_topic(&brokers, &topic, &ChainChecks::default(), &|_| {}).unwrap();
    assert_eq!(reports[0].report.first_break, None);
    assert_eq!(reports[0].report.verified, head.get());

    // Every acknowledged append is in the chain exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for event in &events {
        if let Event::DeliveryWithdrawn(withdrawn) = &event.envelope.event {
            *counts.entry(withdrawn.reason.clone()).or_default() += 1;
        }
    }
    for number in &acknowledged {
        assert_eq!(
            counts.get(&format!("withdrawal number {number}")),
            Some(&1),
            "append {number}"
        );
    }
    assert!(counts.values().all(|count| *count == 1));

    // Checked after the acknowledged appends, so that an acknowledged append missing
    // from the sequencer's copy is reported as such.
    let in_first = first.read(CHAIN, Position::ZERO, usize::MAX).unwrap();
    assert_same_events(&in_first, &events, head);

    // The fenced ledger closes cleanly.
    Arc::into_inner(first).unwrap().close();
    Arc::into_inner(second).unwrap().close();
}
