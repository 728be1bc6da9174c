//! Verification of the chains as the events topic contains them.
//!
//! Each partition is read from its first record to its end, committed records only.
//! The n-th record must be the event at position n of the chain. Its bytes decode, it
//! names the chain and position, and it links to the hash of the record before it. Checkpoint roots and signatures are checked as in the embedded store.

use std::collections::BTreeSet;
use std::time::Duration;

use consign_schemas::events::Event;
use consign_schemas::{ChainId, Envelope, Position, hash_stored_event};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::sequencer::partition_of;
use super::topic::KafkaSetupError;
use crate::record::RawEvent;
use crate::verify::{ChainChecks, ChainReport, ChainVerifier};

/// Records checked together.
const CHUNK: usize = 4096;

/// Maximum wait for the next record before the read is abandoned.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum duration of the read of the partitions' last records in
/// [`recent_checkpoint_keys`]. A starting server keeps the shared key folder locked
/// during it.
const TAIL_READ_LIMIT: Duration = Duration::from_secs(10);

/// The outcome of verifying one partition.
#[derive(Clone, Debug)]
pub struct TopicReport {
    pub report: ChainReport,
    /// Offset after the last record read.
    pub end_offset: i64,
}

/// Verifies every partition of `topic`, calling `progress` with the number of events
/// checked so far.
///
/// # Errors
///
/// [`KafkaSetupError::Unreachable`] when the cluster cannot be read, or sends no
/// record for [`READ_TIMEOUT`] before a partition's end.
pub fn verify_topic(
    brokers: &str,
    topic: &str,
    checks: &ChainChecks,
    progress: &dyn Fn(u64),
) -> Result<Vec<TopicReport>, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let consumer = end_reader(brokers, "consign-verify").map_err(unreachable)?;
    let metadata = consumer
        .fetch_metadata(None, READ_TIMEOUT)
        .map_err(unreachable)?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Err(KafkaSetupError::Unusable {
            topic: topic.to_owned(),
            reason: "the cluster has no such topic; check --kafka and the topic name".to_owned(),
        });
    };
    let partitions = found.partitions().len();

    let mut reports = Vec::with_capacity(partitions);
    let mut checked = 0u64;
    for partition in 0..partitions {
        let chain = ChainId::new(u32::try_from(partition).unwrap_or(u32::MAX));
        let report = verify_partition(&consumer, topic, chain, checks, &mut |count| {
            progress(checked + count);
        })
        .map_err(unreachable)?;
        checked += report.report.verified;
        reports.push(report);
    }
    Ok(reports)
}

/// Returns the ids of the keys that signed the checkpoints among the last `tail`
/// committed records of each partition of `topic`, read for at most
/// [`TAIL_READ_LIMIT`]. A chain's newest checkpoint is normally among them, since the
/// sequencer signs one soon after each group. A server compares them with its key
/// folder before it writes to the topic.
///
/// # Errors
///
/// [`KafkaSetupError::Unreachable`] when the cluster cannot be read.
pub fn recent_checkpoint_keys(
    brokers: &str,
    topic: &str,
    tail: i64,
) -> Result<BTreeSet<String>, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let consumer = end_reader(brokers, "consign-key-check").map_err(unreachable)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), READ_TIMEOUT)
        .map_err(unreachable)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();

    let mut keys = BTreeSet::new();
    let deadline = std::time::Instant::now() + TAIL_READ_LIMIT;
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, READ_TIMEOUT)
            .map_err(unreachable)?;
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(low.max(high - tail)))
            .map_err(unreachable)?;
        consumer.assign(&assignment).map_err(unreachable)?;
        // Other servers may append while this reads, so the read ends at the offset
        // the watermark named, or at the deadline, rather than at the moving end.
        while std::time::Instant::now() < deadline {
            match consumer.poll(READ_TIMEOUT) {
                None => return Err(unreachable(KafkaError::NoMessageReceived)),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(unreachable(error)),
                Some(Ok(message)) => {
                    let envelope = message
                        .payload()
                        .and_then(|bytes| Envelope::decode(bytes).ok());
                    if let Some(Event::CheckpointSigned(signed)) =
                        envelope.map(|envelope| envelope.event)
                    {
                        keys.insert(signed.key_id);
                    }
                    if message.offset() + 1 >= high {
                        break;
                    }
                }
            }
        }
        consumer.unassign().map_err(unreachable)?;
    }
    Ok(keys)
}

/// Creates a consumer of committed records that reports each partition's end, in
/// `group` without committing offsets.
fn end_reader(brokers: &str, group: &str) -> Result<BaseConsumer<EndIsNoError>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(EndIsNoError)
}

/// Consumer context that does not log reaching a partition's end as an error: the
/// verification reads to the end on purpose.
struct EndIsNoError;

impl ClientContext for EndIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::error!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for EndIsNoError {}

fn verify_partition(
    consumer: &BaseConsumer<EndIsNoError>,
    topic: &str,
    chain: ChainId,
    checks: &ChainChecks,
    progress: &mut dyn FnMut(u64),
) -> Result<TopicReport, KafkaError> {
    let partition = partition_of(chain);
    let (_, high) = consumer.fetch_watermarks(topic, partition, READ_TIMEOUT)?;
    let mut verifier =
        ChainVerifier::from_genesis(chain, Position::new(u64::MAX)).with_checks(checks.clone());
    let mut next = Position::ZERO;
    let mut end_offset = 0;

    if high > 0 {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            match consumer.poll(READ_TIMEOUT) {
                None => return Err(KafkaError::NoMessageReceived),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(error),
                Some(Ok(message)) => {
                    let bytes = message.payload().unwrap_or_default().to_vec();
                    end_offset = message.offset() + 1;
                    chunk.push(RawEvent {
                        position: next,
                        recorded_hash: Some(hash_stored_event(&bytes)),
                        bytes,
                    });
                    next = next.next();
                    if chunk.len() >= CHUNK {
                        verifier.feed(&std::mem::take(&mut chunk));
                        progress(next.get());
                    }
                }
            }
        }
        verifier.feed(&chunk);
        progress(next.get());
        consumer.unassign()?;
    }

    verifier.set_end(next);
    Ok(TopicReport {
        report: verifier.finish(),
        end_offset,
    })
}
