//! Confirmation that a group's transaction is complete in its partition, not only in
//! the transaction coordinator.
//!
//! A successful commit means the coordinator recorded the decision; the markers that
//! make the records readable are written to the partition afterwards. A broker that
//! stops at that moment can record the commit and never write the marker, after which
//! the partition treats the records as part of the producer's next transaction and a
//! later fencing aborts them. So the sequencer acknowledges a group only once the
//! partition's last stable offset, which the brokers report to read-committed clients,
//! has passed the group's last record.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

/// A transactional producer whose context notes the offset of every delivered record.
pub(super) type TxProducer = BaseProducer<DeliveryTracker>;

/// Producer context that keeps the highest offset the brokers gave a record.
#[derive(Default)]
pub(super) struct DeliveryTracker {
    last_offset: AtomicI64,
}

impl DeliveryTracker {
    /// Returns the highest offset delivered so far, -1 when none.
    pub(super) fn last_offset(&self) -> i64 {
        self.last_offset.load(Ordering::Acquire)
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Ok(message) = result {
            self.last_offset
                .fetch_max(message.offset(), Ordering::AcqRel);
        }
    }
}

/// Failure of a sequencer's transaction, or of the check that its commit is complete.
#[derive(Debug, thiserror::Error)]
pub(super) enum TransactionError {
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error(
        "the commit of offsets up to {last} was accepted, but partition {partition} shows no \
         completed transaction there after {waited_ms} ms (last stable offset {stable})"
    )]
    NotStable {
        partition: i32,
        last: i64,
        stable: i64,
        waited_ms: u128,
    },
    #[error(
        "partition {partition} still holds an open transaction from offset {stable} to {end} \
         after this sequencer aborted it"
    )]
    StillOpen {
        partition: i32,
        stable: i64,
        end: i64,
    },
}

/// Waits until the last stable offset of `partition` is past `last`, the offset of the
/// group's last record, for at most `timeout`.
pub(super) fn await_stable(
    producer: &TxProducer,
    topic: &str,
    partition: i32,
    last: i64,
    timeout: Duration,
) -> Result<(), TransactionError> {
    let started = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        // The producer's isolation level is read_committed (librdkafka's default), so
        // the high offset it reports is the last stable offset.
        let (_, stable) = producer
            .client()
            .fetch_watermarks(topic, partition, remaining)?;
        if stable > last {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(TransactionError::NotStable {
                partition,
                last,
                stable,
                waited_ms: started.elapsed().as_millis(),
            });
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// How long a new sequencer lets the partition's last stable offset reach its end
/// before it takes an open transaction there as left behind.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Header of the empty record that closes a transaction left open in a partition.
const CLOSING_HEADER: &str = "consign-closes-open-transaction";

/// Aborts a transaction of `producer`'s id that was left open in `partition`, and
/// returns the partition's end, now stable.
///
/// Starting a producer aborts the open transaction of its predecessor, but only in the
/// partitions the coordinator has recorded for it. When a broker stops just after a
/// commit, the coordinator can record the commit while the partition never gets its
/// marker (seen with Apache Kafka 4.4.0 on a single node stopped with SIGTERM). The
/// partition then contains records that no commit or abort will end, and the next
/// commit of the same producer id would commit them too, although no client received
/// an acknowledgement for them. An empty record in a transaction that is then aborted ends them
/// as aborted.
pub(super) fn close_open_transaction(
    producer: &TxProducer,
    brokers: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<i64, TransactionError> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let (_, end) = reader.fetch_watermarks(topic, partition, timeout)?;
    let started = Instant::now();
    let mut stable = stable_end(producer, topic, partition, timeout)?;
    while stable < end && started.elapsed() < SETTLE_TIMEOUT {
        std::thread::sleep(Duration::from_millis(20));
        stable = stable_end(producer, topic, partition, timeout)?;
    }
    if stable >= end {
        return Ok(stable);
    }

    tracing::warn!(
        topic,
        partition,
        stable,
        end,
        "records from offset {stable} on belong to an open transaction that no broker will end; aborting it"
    );
    producer.begin_transaction()?;
    let headers = OwnedHeaders::new().insert(Header {
        key: CLOSING_HEADER,
        value: Some(""),
    });
    let empty: &[u8] = &[];
    let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
        .partition(partition)
        .payload(empty)
        .headers(headers);
    producer.send(record).map_err(|(error, _)| error)?;
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
    producer.abort_transaction(timeout)?;

    let (_, end) = reader.fetch_watermarks(topic, partition, timeout)?;
    let started = Instant::now();
    loop {
        let stable = stable_end(producer, topic, partition, timeout)?;
        if stable >= end {
            tracing::info!(topic, partition, end, "open transaction aborted");
            return Ok(stable);
        }
        if started.elapsed() > timeout {
            return Err(TransactionError::StillOpen {
                partition,
                stable,
                end,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Returns the last stable offset of `partition`.
fn stable_end(
    producer: &TxProducer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<i64, KafkaError> {
    let (_, stable) = producer
        .client()
        .fetch_watermarks(topic, partition, timeout)?;
    Ok(stable)
}
