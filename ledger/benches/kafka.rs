//! Appends and rebuilds on Apache Kafka, each next to its baseline on the same broker
//! in the same run:
//!
//! - appends through the consign ledger (one chain, its sequencer in this process,
//!   one transaction per group commit), throughput and p99 latency. The baseline is a
//!   raw rdkafka producer (idempotent, `acks=all`) with the same number of sends in
//!   flight, sending records of the same size to a one-partition topic.
//! - rebuilding a copy of the chain from the topic against a raw read-committed
//!   consumer reading the same partition.
//!
//! Run with `CONSIGN_KAFKA_BROKERS=HOST:PORT cargo bench -p consign-ledger --bench
//! kafka`. `CONSIGN_BENCH_SECONDS` sets each append measurement's duration (default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use consign_ledger::kafka::{KafkaOptions, ensure_events_topic, open_kafka_ledger};
use consign_ledger::{AppendRequest, EmbeddedOptions, NewEvent};
use consign_schemas::events::{DeliveryWithdrawn, Event};
use consign_schemas::{AccountId, Actor, ChainId, DeliveryId, Position};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const CHAIN: ChainId = ChainId::new(0);

fn event(payload_bytes: usize, index: u64) -> NewEvent {
    let account = AccountId::from_bytes([3; 16]);
    let mut reason = format!("{index:020}");
    reason.extend(std::iter::repeat_n(
        'x',
        payload_bytes.saturating_sub(reason.len()),
    ));
    NewEvent {
        actor: Actor::Account(account),
        event: Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery: DeliveryId::random(),
            by: account,
            reason,
        }),
    }
}

fn seconds() -> Duration {
    let seconds = std::env::var("CONSIGN_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(seconds)
}

fn unique(purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("consign.bench.{purpose}.{nanos:x}")
}

/// Throughput in events per second and the p99 latency in milliseconds.
struct Rate {
    per_second: f64,
    p99_ms: f64,
    count: u64,
}

fn summarise(mut latencies: Vec<Duration>, elapsed: Duration) -> Rate {
    latencies.sort();
    let p99 = latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    Rate {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p99_ms: p99.as_secs_f64() * 1000.0,
        count: latencies.len() as u64,
    }
}

/// Appends from `appenders` tasks through the Kafka ledger; returns the rate, the
/// topic and the stored size of one event.
async fn consign_appends(
    brokers: &str,
    appenders: usize,
    payload_bytes: usize,
) -> (Rate, String, usize) {
    let topic = unique("ledger");
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaOptions {
        brokers: brokers.to_owned(),
        topic: topic.clone(),
        sequence: None,
        balance: false,
    };
    let options = EmbeddedOptions {
        chains: Some(1),
        ..EmbeddedOptions::default()
    };
    let (ledger, status) = open_kafka_ledger(dir.path(), options, &kafka)
        .await
        .unwrap();
    assert!(status.wait_ready(&[CHAIN], Duration::from_secs(60)).await);
    let ledger = Arc::new(ledger);
    let stop = Arc::new(AtomicBool::new(false));

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..appenders as u64 {
        let ledger = Arc::clone(&ledger);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut index = task << 40;
            while !stop.load(Ordering::Relaxed) {
                let request = AppendRequest::new(CHAIN, vec![event(payload_bytes, index)]);
                let sent = Instant::now();
                ledger.append(request).await.unwrap();
                latencies.push(sent.elapsed());
                index += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(seconds()).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();

    let sample = ledger.read_raw(CHAIN, Position::ZERO, 1).unwrap();
    let size = sample[0].bytes.len();
    Arc::into_inner(ledger).unwrap().close();
    (summarise(latencies, elapsed), topic, size)
}

/// Sends `size`-byte records from `in_flight` tasks with an idempotent `acks=all`
/// producer to a new one-partition topic with the ledger's settings.
async fn raw_produce(brokers: &str, in_flight: usize, size: usize) -> Rate {
    let topic = unique("raw");
    ensure_events_topic(brokers, &topic, 1).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let producer = producer.clone();
        let stop = Arc::clone(&stop);
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let payload = vec![b'x'; size];
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                producer
                    .send(
                        FutureRecord::<[u8], _>::to(&topic)
                            .partition(0)
                            .payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }

    tokio::time::sleep(seconds()).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    summarise(latencies, started.elapsed())
}

/// Rebuilds a copy of `topic`'s chain from Kafka; returns events per second.
async fn rebuild(brokers: &str, topic: &str, events: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaOptions {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        sequence: Some(Vec::new()),
        balance: false,
    };
    let started = Instant::now();
    let (ledger, status) = open_kafka_ledger(dir.path(), EmbeddedOptions::default(), &kafka)
        .await
        .unwrap();
    assert!(status.catch_up(Duration::from_secs(600)).await.unwrap());
    let elapsed = started.elapsed();
    assert_eq!(ledger.next_position(CHAIN).unwrap().get(), events);
    ledger.close();
    events as f64 / elapsed.as_secs_f64()
}

/// Reads every committed record of `topic`'s partition 0; returns records per second.
fn raw_consume(brokers: &str, topic: &str, events: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "consign-bench")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < events {
        if let Some(message) = consumer.poll(Duration::from_secs(30)) {
            bytes += message.unwrap().payload().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    assert!(bytes > 0);
    read as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let Some(brokers) = std::env::var("CONSIGN_KAFKA_BROKERS")
        .ok()
        .filter(|value| !value.is_empty())
    else {
        println!(
            "SKIPPED: set CONSIGN_KAFKA_BROKERS to a broker, such as one from scripts/kafka/start.sh"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "Kafka appends, {} s per measurement, broker {brokers}",
            seconds().as_secs_f64()
        );
        println!(
            "{:>8} {:>10} {:>7} {:>13} {:>10} {:>13} {:>10} {:>6}",
            "payload",
            "in flight",
            "bytes",
            "consign ev/s",
            "p99 ms",
            "raw ev/s",
            "p99 ms",
            "ratio"
        );
        let mut rebuild_topic = None;
        for payload in [100, 1024] {
            for in_flight in [1, 64, 1024] {
                let (consign, topic, size) = consign_appends(&brokers, in_flight, payload).await;
                let raw = raw_produce(&brokers, in_flight, size).await;
                println!(
                    "{:>8} {:>10} {:>7} {:>13.0} {:>10.1} {:>13.0} {:>10.1} {:>6.2}",
                    payload,
                    in_flight,
                    size,
                    consign.per_second,
                    consign.p99_ms,
                    raw.per_second,
                    raw.p99_ms,
                    consign.per_second / raw.per_second
                );
                if payload == 100 && in_flight == 64 {
                    rebuild_topic = Some((topic, consign.count));
                }
            }
        }

        let (topic, appended) = rebuild_topic.unwrap();
        // Opened without a checkpoint policy, the chain contains the appended events only.
        let rebuilt = rebuild(&brokers, &topic, appended).await;
        let consumed = {
            let brokers = brokers.clone();
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || raw_consume(&brokers, &topic, appended))
                .await
                .unwrap()
        };
        println!(
            "rebuild of {appended} events from Kafka: {rebuilt:.0} events/s; raw read-committed \
             consumer {consumed:.0} records/s; ratio {:.2}",
            rebuilt / consumed
        );
    });
}
