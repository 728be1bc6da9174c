//! Opening the ledger on Apache Kafka: the topic check, this process's copy of the
//! chains, the feeder and the sequencers.
//!
//! The ledger returned is the embedded store in the data directory, driven by Kafka.
//! Appends go through the sequencer of their chain, in this process or, through the
//! commands topic, in another. Every read (ranges, subscriptions, proofs,
//! verification) is served from the copy, which contains the records committed to
//! the topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use consign_schemas::{ChainId, Position};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;

use super::balance::Balancer;
use super::commands::{Forwarder, Intake, commands_topic};
use super::replica::{Feeder, Progress};
use super::sequencer::{SequencerPublisher, SequencerSet};
use super::topic::{EVENTS_TOPIC, KafkaSetupError, ensure_events_topic};
use crate::embedded::{EmbeddedLedger, EmbeddedOptions};
use crate::error::LedgerError;

/// Settings of the Kafka ledger: the brokers, the topic and this process's chains.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic that contains the chains, one per partition.
    pub topic: String,
    /// Chains whose sequencer runs in this process; `None` for every chain. Ignored
    /// when `balance` is set.
    pub sequence: Option<Vec<ChainId>>,
    /// Whether the chains to sequence come from a consumer group shared with every
    /// other process that sets this. The chains then spread over those processes and
    /// move when one stops.
    pub balance: bool,
}

impl KafkaOptions {
    /// Options for `brokers` with the default topic, sequencing every chain.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: EVENTS_TOPIC.to_owned(),
            sequence: None,
            balance: false,
        }
    }
}

/// Errors of opening the Kafka ledger.
#[derive(Debug, thiserror::Error)]
pub enum KafkaOpenError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "the copy in {dir} has {stored} chains, but topic {topic} has {partitions} \
         partitions, so it is the copy of another ledger; give this topic a new --data-dir"
    )]
    CopyOfAnotherLedger {
        dir: PathBuf,
        stored: u32,
        topic: String,
        partitions: u32,
    },
    #[error("cannot start reading topic {topic} at {brokers}: {reason}")]
    Consumer {
        brokers: String,
        topic: String,
        reason: String,
    },
}

/// The Kafka side of an open ledger: which sequencers are ready, how far the copy has
/// read.
#[derive(Clone)]
pub struct KafkaStatus {
    sequencers: Arc<SequencerSet>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for KafkaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStatus")
            .field("topic", &self.sequencers.topic)
            .field("ready", &self.sequencers.ready_chains())
            .finish()
    }
}

impl KafkaStatus {
    /// Chains whose sequencer in this process takes appends now.
    pub fn ready_chains(&self) -> Vec<ChainId> {
        self.sequencers.ready_chains()
    }

    /// Chains whose sequencer in this process was fenced, with the reason.
    pub fn fenced_chains(&self) -> Vec<(ChainId, String)> {
        self.sequencers.fenced_chains()
    }

    /// Returns why the copy stopped following `chain`, if it did.
    pub fn broken(&self, chain: ChainId) -> Option<String> {
        self.progress.broken(chain)
    }

    /// Waits until the copy contains every record committed to the topic before the
    /// call. Returns false on timeout.
    ///
    /// # Errors
    ///
    /// [`KafkaSetupError::Unreachable`] when the end of a partition cannot be read, and
    /// [`KafkaSetupError::Unusable`] naming a partition the copy stopped following.
    pub async fn catch_up(&self, timeout: Duration) -> Result<bool, KafkaSetupError> {
        let brokers = self.sequencers.brokers.clone();
        let topic = self.sequencers.topic.clone();
        let ends = tokio::task::spawn_blocking(move || partition_ends(&brokers, &topic))
            .await
            .expect("watermark task panicked")?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = false;
            for (chain, end) in &ends {
                if let Some(reason) = self.progress.broken(*chain) {
                    return Err(KafkaSetupError::Unusable {
                        topic: self.sequencers.topic.clone(),
                        reason,
                    });
                }
                behind |= !self.progress.reached(*chain, *end);
            }
            if !behind {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the sequencers of `chains` are ready; returns false on timeout.
    pub async fn wait_ready(&self, chains: &[ChainId], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.ready_chains();
            if chains.iter().all(|chain| ready.contains(chain)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the copy of `chain` in `ledger` contains position `position`; returns
/// false on timeout. For reading an event appended by another process.
pub async fn wait_replicated(
    ledger: &EmbeddedLedger,
    chain: ChainId,
    position: Position,
    timeout: Duration,
) -> Result<bool, LedgerError> {
    let deadline = Instant::now() + timeout;
    while ledger.next_position(chain)? <= position {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(true)
}

/// Opens the ledger on Kafka with its copy in `dir`.
///
/// Creates or checks the events and commands topics (a process that sequences no chain
/// only checks them), opens the copy, starts the feeder from the offsets
/// stored with the copy, and starts the sequencers of `kafka.sequence` in the
/// background: appends to a chain fail with [`LedgerError::Unavailable`] until its
/// sequencer is ready (see [`KafkaStatus::wait_ready`]).
///
/// # Errors
///
/// [`KafkaOpenError`] naming the unreachable cluster, a topic setting that differs,
/// or the ledger error of the copy.
pub async fn open_kafka_ledger(
    dir: &Path,
    options: EmbeddedOptions,
    kafka: &KafkaOptions,
) -> Result<(EmbeddedLedger, KafkaStatus), KafkaOpenError> {
    // An existing topic gives the chain count; an explicit count that differs is
    // rejected by the topic check below.
    let existing = existing_partitions(&kafka.brokers, &kafka.topic).await?;
    // A process that sequences no chain only reads what others write, so a topic name
    // that does not exist is a mistake, not a new ledger.
    let reader = !kafka.balance && kafka.sequence.as_ref().is_some_and(Vec::is_empty);
    if reader && existing.is_none() {
        return Err(KafkaSetupError::Unusable {
            topic: kafka.topic.clone(),
            reason: format!(
                "it does not exist at {}; check --kafka-topic, or start `consign serve \
                 --kafka` first, which creates it",
                kafka.brokers
            ),
        }
        .into());
    }
    let chains_given = options.chains.is_some();
    let mut chains = match (options.chains, existing) {
        (Some(chains), _) => chains,
        (None, Some(partitions)) => partitions,
        (None, None) => 1,
    };
    match ensure_events_topic(&kafka.brokers, &kafka.topic, chains).await {
        // Another process created the topic since it was looked up: take its count.
        Err(KafkaSetupError::Partitions { found, .. }) if options.chains.is_none() => {
            chains = u32::try_from(found).unwrap_or(u32::MAX);
            ensure_events_topic(&kafka.brokers, &kafka.topic, chains).await?;
        }
        other => {
            other?;
        }
    }
    let commands = commands_topic(&kafka.topic);
    if reader
        && existing_partitions(&kafka.brokers, &commands)
            .await?
            .is_none()
    {
        return Err(KafkaSetupError::Unusable {
            topic: commands,
            reason: format!(
                "it does not exist at {}, although topic {} does; start `consign serve \
                 --kafka` on that topic first, which creates it",
                kafka.brokers, kafka.topic
            ),
        }
        .into());
    }
    ensure_events_topic(&kafka.brokers, &commands, chains).await?;

    let progress = Arc::new(Progress::default());
    let all: Vec<ChainId> = (0..chains).map(ChainId::new).collect();
    let sequenced = if kafka.balance {
        Vec::new()
    } else {
        kafka.sequence.clone().unwrap_or_else(|| all.clone())
    };
    if let Some(chain) = sequenced.iter().find(|chain| chain.get() >= chains) {
        return Err(LedgerError::UnknownChain {
            chain: *chain,
            chains,
        }
        .into());
    }
    let sequencers = SequencerSet::new(
        &kafka.brokers,
        &kafka.topic,
        &sequenced,
        Arc::clone(&progress),
    );

    let options = EmbeddedOptions {
        chains: Some(chains),
        // Kafka keeps the events durably; the copy is refilled from the stored
        // offsets after a crash.
        sync: false,
        ..options
    };
    let publisher = Box::new(SequencerPublisher(Arc::clone(&sequencers)));
    let ledger = match EmbeddedLedger::open_with(dir, options, Some(publisher)) {
        Ok(ledger) => ledger,
        // The count came from the topic, not from --chains.
        Err(LedgerError::ChainCountMismatch { dir, stored, .. }) if !chains_given => {
            return Err(KafkaOpenError::CopyOfAnotherLedger {
                dir,
                stored,
                topic: kafka.topic.clone(),
                partitions: chains,
            });
        }
        Err(error) => return Err(error.into()),
    };
    ledger.claim_upstream(&format!("kafka:{}", kafka.topic))?;

    let mut resume = BTreeMap::new();
    for chain in &all {
        let offset = ledger.upstream_offset(*chain)?;
        if let Some(offset) = offset {
            progress.resume_at(*chain, offset);
        }
        resume.insert(*chain, offset);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = Feeder {
        brokers: kafka.brokers.clone(),
        topic: kafka.topic.clone(),
        resume,
        writer: ledger.writer_handle()?,
        progress: Arc::clone(&progress),
        stop: Arc::clone(&stop),
    };
    let consumer = feeder
        .consumer()
        .map_err(|error| KafkaOpenError::Consumer {
            brokers: kafka.brokers.clone(),
            topic: kafka.topic.clone(),
            reason: error.to_string(),
        })?;
    let feeder_thread = std::thread::Builder::new()
        .name("consign-kafka-feeder".to_owned())
        .spawn(move || feeder.run(consumer))
        .map_err(|error| KafkaOpenError::Consumer {
            brokers: kafka.brokers.clone(),
            topic: kafka.topic.clone(),
            reason: format!("cannot start the feeder thread: {error}"),
        })?;

    let consumer_error = |reason: String| KafkaOpenError::Consumer {
        brokers: kafka.brokers.clone(),
        topic: commands.clone(),
        reason,
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .map_err(|error| consumer_error(error.to_string()))?;
    ledger.set_forward(Arc::new(Forwarder {
        producer,
        topic: commands.clone(),
        events_topic: kafka.topic.clone(),
        sequencers: Arc::clone(&sequencers),
    }));
    let intake = Intake {
        brokers: kafka.brokers.clone(),
        topic: commands.clone(),
        events_topic: kafka.topic.clone(),
        writer: ledger.writer_handle()?,
        sequencers: Arc::clone(&sequencers),
        stop: Arc::clone(&stop),
    };
    let intake_consumer = intake
        .consumer()
        .map_err(|error| consumer_error(error.to_string()))?;
    let intake_thread = std::thread::Builder::new()
        .name("consign-kafka-intake".to_owned())
        .spawn(move || intake.run(intake_consumer))
        .map_err(|error| consumer_error(format!("cannot start the intake thread: {error}")))?;

    sequencers.start_all();
    let balancer_thread = if kafka.balance {
        let balancer = Balancer {
            brokers: kafka.brokers.clone(),
            topic: commands.clone(),
            events_topic: kafka.topic.clone(),
            sequencers: Arc::clone(&sequencers),
            stop: Arc::clone(&stop),
        };
        let consumer = balancer
            .consumer()
            .map_err(|error| consumer_error(error.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("consign-kafka-balancer".to_owned())
            .spawn(move || balancer.run(consumer))
            .map_err(|error| {
                consumer_error(format!("cannot start the balancer thread: {error}"))
            })?;
        Some(thread)
    } else {
        None
    };
    let closing = Arc::clone(&sequencers);
    ledger.on_close(Box::new(move || {
        stop.store(true, Ordering::Relaxed);
        if let Some(thread) = balancer_thread
            && thread.join().is_err()
        {
            tracing::error!("the Kafka balancer thread panicked");
        }
        closing.stop();
        if intake_thread.join().is_err() {
            tracing::error!("the Kafka intake thread panicked");
        }
        if feeder_thread.join().is_err() {
            tracing::error!("the Kafka feeder thread panicked");
        }
    }));

    tracing::info!(
        brokers = %kafka.brokers,
        topic = %kafka.topic,
        chains,
        sequenced = sequenced.len(),
        balance = kafka.balance,
        "ledger opened on Kafka"
    );
    let status = KafkaStatus {
        sequencers,
        progress,
    };
    Ok((ledger, status))
}

/// Returns the offset after the last record of every partition of `topic`.
fn partition_ends(brokers: &str, topic: &str) -> Result<Vec<(ChainId, i64)>, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "consign-replica")
        .create()
        .map_err(unreachable)?;
    let timeout = Duration::from_secs(15);
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(unreachable)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .map_or(0, |found| found.partitions().len());
    let mut ends = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(unreachable)?;
        ends.push((ChainId::new(partition.unsigned_abs()), high));
    }
    Ok(ends)
}

/// Returns the partition count of `topic`, or `None` when it does not exist.
async fn existing_partitions(brokers: &str, topic: &str) -> Result<Option<u32>, KafkaSetupError> {
    let unreachable = |cause| KafkaSetupError::Unreachable {
        brokers: brokers.to_owned(),
        cause,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(unreachable)?;
    // Asking for one topic by name could make a broker create it with its defaults.
    let metadata = tokio::task::spawn_blocking(move || {
        admin.inner().fetch_metadata(None, Duration::from_secs(15))
    })
    .await
    .expect("metadata task panicked")
    .map_err(unreachable)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic && found.error().is_none())
        .map(|found| u32::try_from(found.partitions().len()).unwrap_or(u32::MAX))
        .filter(|partitions| *partitions > 0))
}
