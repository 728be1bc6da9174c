//! Two `consign serve` processes on one Kafka topic, each sequencing one of its two
//! chains, take submissions concurrently: every acknowledged submission is in the
//! topic exactly once, whichever process took it, and every chain verifies.
//!
//! The broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test command sets
//! after starting one; under CI a missing broker fails the test.
//! `CONSIGN_KAFKA_SOAK_SECONDS` sets how long the processes take submissions
//! (default 60).

mod kafka_support;

use std::time::Duration;

use kafka_support::{Load, Outcome, ServeProcess, acknowledged, check_topic, create_sender};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_record_every_acknowledged_submission_once() {
    let Some(brokers) = kafka_support::kafka_brokers() else {
        return;
    };
    let seconds: u64 = std::env::var("CONSIGN_KAFKA_SOAK_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    let topic = kafka_support::unique_topic("serve");
    let work = tempfile::tempdir().unwrap();

    let client = reqwest::Client::new();
    let mut first = ServeProcess::start(&work.path().join("first"), &brokers, &topic, "0");
    let mut second = ServeProcess::start(&work.path().join("second"), &brokers, &topic, "1");
    first.wait_healthy(&client).await;
    second.wait_healthy(&client).await;
    create_sender(work.path(), &brokers, &topic);

    let load = Load::start(&[&first.base, &second.base], 2);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let records = load.finish().await;
    drop(first);
    drop(second);

    let ids = acknowledged(&records);
    let unavailable = records
        .iter()
        .flatten()
        .filter(|(_, outcome)| !matches!(outcome, Outcome::Acknowledged(_)))
        .count();
    eprintln!(
        "{} submissions acknowledged in {seconds} s, {unavailable} not",
        ids.len()
    );
    assert!(ids.len() > 20, "only {} acknowledged", ids.len());
    // Each client of each process had submissions acknowledged.
    for (worker, record) in records.iter().enumerate() {
        assert!(
            record
                .iter()
                .any(|(_, outcome)| matches!(outcome, Outcome::Acknowledged(_))),
            "client {worker} had no submission acknowledged"
        );
    }

    check_topic(work.path(), &brokers, &topic, &ids).await;
}
