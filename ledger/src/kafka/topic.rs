//! Creates the events topic or checks an existing one, so that consign never runs on
//! a topic that could lose or expire acknowledged events.
//!
//! Required settings: `cleanup.policy=delete` with `retention.ms=-1` and
//! `retention.bytes=-1` (history kept forever, never compacted),
//! `unclean.leader.election.enable=false`, and `min.insync.replicas` of 2 on a cluster
//! of three brokers or more (1 below that), with a replication factor of up to 3.
//! The partition count is the ledger's chain count.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Name of the topic that contains every chain.
pub const EVENTS_TOPIC: &str = "consign.events";

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of setting up the events topic.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot reach Kafka at {brokers}: {cause}; start the brokers or correct --kafka")]
    Unreachable { brokers: String, cause: KafkaError },
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("cannot use topic {topic}: {reason}")]
    Unusable { topic: String, reason: String },
    #[error(
        "topic {topic} has {setting}={found}, but consign needs {setting}={expected} so that \
         no acknowledged event is lost or expires; change it with Kafka's kafka-configs tool \
         or choose another topic"
    )]
    Setting {
        topic: String,
        setting: &'static str,
        found: String,
        expected: String,
    },
    #[error(
        "topic {topic} has {found} partitions, but this ledger has {expected} chains, one per \
         partition; use a topic with {expected} partitions"
    )]
    Partitions {
        topic: String,
        found: usize,
        expected: u32,
    },
}

/// The outcome of [`ensure_events_topic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicCheck {
    Created,
    Checked,
}

/// Creates `topic` with one partition per chain and the required settings, or checks
/// that the existing topic has them.
///
/// # Errors
///
/// [`KafkaSetupError`] naming the unreachable cluster, the failed creation, or the
/// first setting or partition count that differs.
pub async fn ensure_events_topic(
    brokers: &str,
    topic: &str,
    chains: u32,
) -> Result<TopicCheck, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(unreachable)?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(unreachable)?;
    let brokers_count = metadata.brokers().len();
    let replication = brokers_count.clamp(1, 3);
    let min_insync = if brokers_count >= 3 { "2" } else { "1" };
    let required = [
        ("cleanup.policy", "delete"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("unclean.leader.election.enable", "false"),
        ("min.insync.replicas", min_insync),
    ];

    let existing = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic && found.error().is_none());
    let outcome = match existing {
        Some(found) => {
            if found.partitions().len() != chains as usize {
                return Err(KafkaSetupError::Partitions {
                    topic: topic.to_owned(),
                    found: found.partitions().len(),
                    expected: chains,
                });
            }
            // A partition with fewer copies than the cluster allows loses acknowledged
            // events when the broker that has its only copy is lost.
            if let Some(partition) = found
                .partitions()
                .iter()
                .find(|partition| partition.replicas().len() < replication)
            {
                return Err(KafkaSetupError::Unusable {
                    topic: topic.to_owned(),
                    reason: format!(
                        "partition {} has {} replicas, but on this cluster of {brokers_count} \
                         brokers consign needs {replication}, so that no acknowledged event \
                         is lost with one broker; raise the replication factor with Kafka's \
                         kafka-reassign-partitions tool or choose another topic",
                        partition.id(),
                        partition.replicas().len()
                    ),
                });
            }
            TopicCheck::Checked
        }
        None => {
            let mut new_topic = NewTopic::new(
                topic,
                i32::try_from(chains).unwrap_or(i32::MAX),
                TopicReplication::Fixed(i32::try_from(replication).unwrap_or(3)),
            );
            for (key, value) in required {
                new_topic = new_topic.set(key, value);
            }
            let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
            let results = admin
                .create_topics([&new_topic], &options)
                .await
                .map_err(unreachable)?;
            let mut outcome = TopicCheck::Created;
            for result in results {
                match result {
                    Ok(_) => {}
                    // Another process created it first: its settings are checked below,
                    // and its partition count here.
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        check_partitions(&admin, brokers, topic, chains).await?;
                        outcome = TopicCheck::Checked;
                    }
                    Err((name, code)) => {
                        return Err(KafkaSetupError::Create {
                            topic: name,
                            reason: code.to_string(),
                        });
                    }
                }
            }
            outcome
        }
    };

    // A topic just created may not list its settings yet on the broker that replies,
    // so an incomplete description is requested again for a while.
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let resource = loop {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await
            .map_err(unreachable)?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| KafkaSetupError::Create {
                topic: topic.to_owned(),
                reason: "the cluster did not describe its settings".to_owned(),
            })?
            .map_err(|code| KafkaSetupError::Create {
                topic: topic.to_owned(),
                reason: format!("its settings cannot be read: {code}"),
            })?;
        let complete = required
            .iter()
            .all(|(setting, _)| resource.get(setting).is_some());
        if complete || tokio::time::Instant::now() >= deadline {
            break resource;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (setting, expected) in required {
        let found = resource
            .get(setting)
            .and_then(|entry| entry.value.clone())
            .unwrap_or_else(|| "(unset)".to_owned());
        if found != expected {
            return Err(KafkaSetupError::Setting {
                topic: topic.to_owned(),
                setting,
                found,
                expected: expected.to_owned(),
            });
        }
    }
    tracing::info!(topic, brokers, chains, ?outcome, "topic ready");
    Ok(outcome)
}

/// Checks the partition count of `topic`, which exists. A topic that another process
/// has just created may not be known yet to the broker that replies, so a count of
/// zero is asked again for a while.
async fn check_partitions(
    admin: &AdminClient<DefaultClientContext>,
    brokers: &str,
    topic: &str,
    chains: u32,
) -> Result<(), KafkaSetupError> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let found = loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|cause| KafkaSetupError::Unreachable {
                brokers: brokers.to_owned(),
                cause,
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|found| found.name() == topic && found.error().is_none())
            .map_or(0, |found| found.partitions().len());
        if found > 0 || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if found != chains as usize {
        return Err(KafkaSetupError::Partitions {
            topic: topic.to_owned(),
            found,
            expected: chains,
        });
    }
    Ok(())
}

/// Returns whether `topic` exists and any of its partitions contains a record, so that
/// a server can tell a new topic from one that other servers already write.
///
/// # Errors
///
/// [`KafkaSetupError::Unreachable`] when the cluster does not respond.
pub fn topic_has_records(brokers: &str, topic: &str) -> Result<bool, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(unreachable)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(unreachable)?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic && found.error().is_none())
    else {
        return Ok(false);
    };
    for partition in found.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)
            .map_err(unreachable)?;
        if high > low {
            return Ok(true);
        }
    }
    Ok(false)
}
