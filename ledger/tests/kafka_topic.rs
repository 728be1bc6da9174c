//! The events topic against a real Apache Kafka broker: created with the settings that
//! keep every acknowledged event, accepted when it has them, rejected when it does not.
//!
//! The broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test command sets
//! after starting one. Under CI a missing broker fails the test.

mod common;

use common::{kafka_brokers as brokers, unique_topic};
use consign_ledger::kafka::{KafkaSetupError, TopicCheck, ensure_events_topic};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

async fn create_plain(brokers: &str, topic: &str, partitions: i32, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in settings {
        new_topic = new_topic.set(key, value);
    }
    let results = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn topic_created_then_checked() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_topic("fresh");

    let first = ensure_events_topic(&brokers, &topic, 4).await.unwrap();
    let second = ensure_events_topic(&brokers, &topic, 4).await.unwrap();

    assert_eq!(first, TopicCheck::Created);
    assert_eq!(second, TopicCheck::Checked);
}

#[tokio::test]
async fn expiring_topic_rejected() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_topic("expiring");
    create_plain(&brokers, &topic, 2, &[("retention.ms", "604800000")]).await;

    let rejected = ensure_events_topic(&brokers, &topic, 2).await.unwrap_err();

    assert!(
        matches!(&rejected, KafkaSetupError::Setting { setting: "retention.ms", found, .. } if found == "604800000"),
        "{rejected}"
    );
    assert!(
        rejected.to_string().contains("retention.ms=-1"),
        "{rejected}"
    );
}

#[tokio::test]
async fn wrong_partition_count_rejected() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_topic("partitions");
    create_plain(&brokers, &topic, 3, &[]).await;

    let rejected = ensure_events_topic(&brokers, &topic, 8).await.unwrap_err();

    assert!(
        matches!(
            rejected,
            KafkaSetupError::Partitions {
                found: 3,
                expected: 8,
                ..
            }
        ),
        "{rejected}"
    );
}

#[tokio::test]
async fn unreachable_cluster_named() {
    if brokers().is_none() {
        return;
    }
    // A loopback port where nothing listens.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);

    let rejected = ensure_events_topic(&address, "consign.events", 1)
        .await
        .unwrap_err();

    assert!(
        matches!(rejected, KafkaSetupError::Unreachable { .. }),
        "{rejected}"
    );
    assert!(rejected.to_string().contains(&address), "{rejected}");
}
