//! Backend equivalence: the same scripted workload is appended one request at a time
//! with the same clock, on the embedded backend and on Apache Kafka. Both give the
//! same events for every delivery, apart from the random event ids, and the same view
//! digests.
//!
//! The Kafka broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test
//! command sets after starting one; under CI a missing broker fails the test.

use std::collections::BTreeMap;
use std::time::Duration;

use consign_ledger::kafka::testing::brokers as kafka_brokers;
use consign_ledger::kafka::{KafkaOptions, open_kafka_ledger};
use consign_ledger::workload::{self, WorkloadConfig};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, ManualClock};
use consign_projections::ALL_VIEWS;
use consign_replay_tests::fixture;
use serde_json::Value;

use crate::common::{digests, replay};

fn config() -> WorkloadConfig {
    WorkloadConfig {
        deliveries: 15,
        seed: 11,
        chains: 3,
        ..WorkloadConfig::default()
    }
}

/// Appends the workload one request at a time, each at its simulated time.
async fn run_workload(ledger: &EmbeddedLedger, clock: &ManualClock) {
    let appender = workload::AtSimulatedTime { ledger, clock };
    workload::generate(&appender, config(), 1, |_| {})
        .await
        .unwrap();
}

/// Groups the events by delivery, with those of no delivery under `None`, as JSON of
/// their actor, type, payload, position and time.
fn events_by_delivery(ledger: &EmbeddedLedger) -> BTreeMap<Option<String>, Vec<Value>> {
    let mut grouped: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for chain in ledger.chains() {
        let events = ledger
            .read(chain, consign_schemas::Position::ZERO, usize::MAX)
            .unwrap();
        for event in events {
            let envelope = &event.envelope;
            let delivery = envelope.event.delivery().map(|id| id.to_string());
            grouped
                .entry(delivery)
                .or_default()
                .push(serde_json::json!({
                    "chain": envelope.chain,
                    "position": envelope.position,
                    "time": envelope.time,
                    "actor": envelope.actor,
                    "event": envelope.event,
                    "idempotency_key": envelope.idempotency_key,
                }));
        }
    }
    grouped
}

#[test]
fn embedded_and_kafka_record_the_same_history() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let embedded_dir = tempfile::tempdir().unwrap();
    let kafka_dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();

    let (embedded_events, embedded_file) = runtime.block_on(async {
        let clock = ManualClock::new(config().start);
        let options = EmbeddedOptions {
            chains: Some(config().chains),
            sync: false,
            clock: clock.clock(),
            ..EmbeddedOptions::default()
        };
        let ledger = EmbeddedLedger::open(embedded_dir.path(), options).unwrap();
        run_workload(&ledger, &clock).await;
        let path = files.path().join("embedded.ledger");
        fixture::record(&ledger, &path).unwrap();
        (events_by_delivery(&ledger), path)
    });

    let (kafka_events, kafka_file) = runtime.block_on(async {
        let clock = ManualClock::new(config().start);
        let options = EmbeddedOptions {
            chains: Some(config().chains),
            clock: clock.clock(),
            ..EmbeddedOptions::default()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let kafka = KafkaOptions {
            brokers: brokers.clone(),
            topic: format!("consign.test.equivalence.{nanos:x}.events"),
            sequence: None,
            balance: false,
        };
        let (ledger, status) = open_kafka_ledger(kafka_dir.path(), options, &kafka)
            .await
            .unwrap();
        let chains: Vec<_> = ledger.chains().collect();
        assert!(status.wait_ready(&chains, Duration::from_secs(60)).await);
        run_workload(&ledger, &clock).await;
        let path = files.path().join("kafka.ledger");
        fixture::record(&ledger, &path).unwrap();
        let events = events_by_delivery(&ledger);
        ledger.close();
        (events, path)
    });

    assert!(
        embedded_events.len() > 15,
        "{} groups",
        embedded_events.len()
    );
    assert_eq!(
        embedded_events.keys().collect::<Vec<_>>(),
        kafka_events.keys().collect::<Vec<_>>()
    );
    for (delivery, events) in &embedded_events {
        assert_eq!(events, &kafka_events[delivery], "delivery {delivery:?}");
    }

    let embedded_views = replay(&fixture::load(&embedded_file).unwrap());
    let kafka_views = replay(&fixture::load(&kafka_file).unwrap());
    let embedded_digests = digests(&embedded_views.store);
    let kafka_digests = digests(&kafka_views.store);
    for (index, view) in ALL_VIEWS.iter().enumerate() {
        if view.name() == "audit" {
            // The audit view keeps each event's hash, which covers its random event id.
            continue;
        }
        assert_eq!(
            embedded_digests[index],
            kafka_digests[index],
            "view {}",
            view.name()
        );
    }
}
