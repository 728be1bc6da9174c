//! Forwarded appends: how a process appends to a chain whose sequencer runs elsewhere.
//!
//! The process writes the request to the commands topic, in the partition of its
//! chain, and waits until its own copy contains the events. Every forwarded request
//! carries an idempotency key, made from the command id when the caller gave none.
//! The requester finds its events by that key, and a command that sequencers read
//! twice, after a crash or a hand-over, is recorded once.
//!
//! The sequencer side is the intake: a consumer of the commands partitions of the
//! chains this process sequences, which appends each command through the writer and
//! commits the consumer offset once the appends are durable. A command whose chain
//! this process no longer sequences is left for the next sequencer.
//!
//! Two events topics can share one commands topic (`x.events` and `x` both give
//! `x.commands`). Each command therefore names its events topic in a header, the
//! intake skips commands for another one, and each events topic has its own consumer
//! group, so neither ledger takes or commits the other's commands.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use consign_schemas::events::Event;
use consign_schemas::{Actor, ChainId, CommandId, IdempotencyKey};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::sequencer::{SequencerSet, partition_of};
use crate::embedded::{EmbeddedLedger, Forward, WriterHandle};
use crate::error::LedgerError;
use crate::record::{AppendRequest, Appended, NewEvent};

/// Maximum wait for a forwarded append to reach the local copy.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum wait for Kafka to confirm a forwarded append's command.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Most commands appended together by the intake.
const INTAKE_BATCH: usize = 1024;

/// Header of a command naming the events topic it is for.
const EVENTS_TOPIC_HEADER: &str = "consign-events-topic";

/// Returns the commands topic that goes with the events topic `events`:
/// `consign.events` gives `consign.commands`.
pub fn commands_topic(events: &str) -> String {
    match events.strip_suffix(".events") {
        Some(stem) => format!("{stem}.commands"),
        None => format!("{events}.commands"),
    }
}

/// An append request as written to the commands topic.
#[derive(Serialize, Deserialize)]
struct Command {
    chain: ChainId,
    command: CommandId,
    idempotency_key: IdempotencyKey,
    events: Vec<(Actor, Event)>,
}

/// The requester side: writes commands and waits for their events.
pub(super) struct Forwarder {
    pub(super) producer: FutureProducer,
    /// The commands topic.
    pub(super) topic: String,
    pub(super) events_topic: String,
    pub(super) sequencers: Arc<SequencerSet>,
}

impl Forwarder {
    async fn send(
        &self,
        ledger: &EmbeddedLedger,
        request: AppendRequest,
    ) -> Result<Appended, LedgerError> {
        let chain = request.chain;
        let key =
            match &request.idempotency_key {
                Some(key) => key.clone(),
                None => IdempotencyKey::new(format!("forwarded/{}", request.command)).map_err(
                    |error| LedgerError::Storage {
                        operation: "forward",
                        reason: error.to_string(),
                    },
                )?,
            };
        if let Some(found) = ledger.find_idempotent(&key)? {
            return Ok(found);
        }

        let command = Command {
            chain,
            command: request.command,
            idempotency_key: key.clone(),
            events: request
                .events
                .into_iter()
                .map(|event| (event.actor, event.event))
                .collect(),
        };
        let payload = postcard::to_stdvec(&command).map_err(|error| LedgerError::Storage {
            operation: "forward",
            reason: error.to_string(),
        })?;
        let record_key = key.as_str().as_bytes().to_vec();
        let headers = OwnedHeaders::new().insert(Header {
            key: EVENTS_TOPIC_HEADER,
            value: Some(self.events_topic.as_bytes()),
        });
        let record = FutureRecord::to(&self.topic)
            .partition(partition_of(chain))
            .key(&record_key)
            .payload(&payload)
            .headers(headers);
        // The producer retries for minutes while the brokers are down, so the request
        // gets 503 after SEND_TIMEOUT, as an append of a chain sequenced here does.
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.producer.send(record, SEND_TIMEOUT));
        match sent.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => {
                return Err(LedgerError::Unavailable {
                    chain,
                    reason: format!(
                        "Kafka did not take the request for the chain's sequencer: {error}"
                    ),
                });
            }
            Err(_) => {
                return Err(LedgerError::Unavailable {
                    chain,
                    reason: format!(
                        "Kafka did not confirm the request for the chain's sequencer within {} \
                         s; it may still be recorded, so retry with the same idempotency key",
                        SEND_TIMEOUT.as_secs()
                    ),
                });
            }
        }

        let deadline = Instant::now() + FORWARD_TIMEOUT;
        loop {
            if let Some(found) = ledger.find_idempotent(&key)? {
                return Ok(Appended {
                    replayed: !self.recorded_by(ledger, &found, request.command)?,
                    ..found
                });
            }
            if Instant::now() >= deadline {
                return Err(LedgerError::Unavailable {
                    chain,
                    reason: format!(
                        "the sequencer of chain {chain} did not record the request within {} s; \
                         it may still be recorded, so retry with the same idempotency key",
                        FORWARD_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// True when the events found under the key were written for `command`, rather
    /// than by an earlier request with the same key.
    fn recorded_by(
        &self,
        ledger: &EmbeddedLedger,
        found: &Appended,
        command: CommandId,
    ) -> Result<bool, LedgerError> {
        let Some(first) = found.events.first() else {
            return Ok(false);
        };
        let events = ledger.read(found.chain, first.position, 1)?;
        Ok(events
            .first()
            .is_some_and(|event| event.envelope.command == command))
    }
}

impl Forward for Forwarder {
    fn sequences(&self, chain: ChainId) -> bool {
        self.sequencers.is_ready(chain)
    }

    fn home(&self, chain: ChainId) -> bool {
        self.sequencers.is_home(chain)
    }

    fn forward<'a>(
        &'a self,
        ledger: &'a EmbeddedLedger,
        request: AppendRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Appended, LedgerError>> + Send + 'a>> {
        Box::pin(self.send(ledger, request))
    }
}

/// The sequencer side: appends the commands of the chains this process sequences.
pub(super) struct Intake {
    pub(super) brokers: String,
    /// The commands topic.
    pub(super) topic: String,
    pub(super) events_topic: String,
    pub(super) writer: WriterHandle,
    pub(super) sequencers: Arc<SequencerSet>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Intake {
    pub(super) fn consumer(&self) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("consign-sequencers-{}", self.events_topic),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
    }

    /// Appends commands until stopped, following the set of ready sequencers.
    pub(super) fn run(self, consumer: BaseConsumer) {
        let mut assigned: BTreeSet<ChainId> = BTreeSet::new();
        while !self.stop.load(Ordering::Relaxed) {
            let ready: BTreeSet<ChainId> = self.sequencers.ready_chains().into_iter().collect();
            if ready != assigned {
                let mut assignment = TopicPartitionList::new();
                for chain in &ready {
                    // The committed offset of the group, where the previous sequencer
                    // of the chain stopped.
                    if let Err(error) = assignment.add_partition_offset(
                        &self.topic,
                        partition_of(*chain),
                        Offset::Stored,
                    ) {
                        tracing::error!(%error, "cannot assign the commands partitions");
                    }
                }
                if let Err(error) = consumer.assign(&assignment) {
                    tracing::warn!(%error, "cannot read the commands topic; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                assigned = ready;
            }
            if assigned.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if self.take_batch(&consumer) {
                // Assigned again from the committed offsets, so the commands not
                // recorded are read again once their chain's sequencer is back.
                assigned.clear();
            }
        }
    }

    /// Appends one batch of commands and commits, for each chain, the offset after its
    /// last command that is durable with all before it. Returns true when a command
    /// was not recorded.
    fn take_batch(&self, consumer: &BaseConsumer) -> bool {
        let mut waiting = Vec::new();
        let mut wait = Duration::from_millis(100);
        while waiting.len() < INTAKE_BATCH {
            match consumer.poll(wait) {
                None => break,
                Some(Err(error)) => {
                    tracing::warn!(topic = %self.topic, %error, "reading the commands topic failed");
                    break;
                }
                Some(Ok(message)) => {
                    wait = Duration::ZERO;
                    let partition = message.partition();
                    let offset = message.offset();
                    let chain = ChainId::new(partition.unsigned_abs());
                    if let Some(other) = other_events_topic(&message, &self.events_topic) {
                        tracing::debug!(chain = %chain, offset, topic = %other, "skipping a command for another events topic");
                        waiting.push((chain, offset, None));
                        continue;
                    }
                    let decoded: Result<Command, _> =
                        postcard::from_bytes(message.payload().unwrap_or_default());
                    let outcome = match decoded {
                        Ok(command) if command.chain == chain => {
                            let request = AppendRequest {
                                chain,
                                command: command.command,
                                idempotency_key: Some(command.idempotency_key),
                                events: command
                                    .events
                                    .into_iter()
                                    .map(|(actor, event)| NewEvent { actor, event })
                                    .collect(),
                            };
                            Some(self.writer.enqueue(request))
                        }
                        _ => {
                            tracing::error!(chain = %chain, offset, "skipping a command that does not decode");
                            None
                        }
                    };
                    waiting.push((chain, offset, outcome));
                }
            }
        }

        let mut commit: BTreeMap<ChainId, i64> = BTreeMap::new();
        let mut stopped: BTreeSet<ChainId> = BTreeSet::new();
        for (chain, offset, outcome) in waiting {
            let durable = match outcome {
                None => true,
                Some(Err(_)) => false,
                Some(Ok(receiver)) => match receiver.blocking_recv() {
                    Ok(Ok(_)) => true,
                    Ok(Err(LedgerError::EmptyAppend | LedgerError::UnknownChain { .. })) => true,
                    Ok(Err(error)) => {
                        tracing::warn!(chain = %chain, offset, %error, "command not recorded; it stays for the chain's sequencer");
                        false
                    }
                    Err(_) => false,
                },
            };
            if !durable {
                stopped.insert(chain);
            }
            if !stopped.contains(&chain) {
                commit.insert(chain, offset + 1);
            }
        }

        if commit.is_empty() {
            return !stopped.is_empty();
        }
        let mut offsets = TopicPartitionList::new();
        for (chain, offset) in &commit {
            let _ = offsets.add_partition_offset(
                &self.topic,
                partition_of(*chain),
                Offset::Offset(*offset),
            );
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
            tracing::warn!(%error, "cannot commit the commands offsets; they may be read again");
        }
        !stopped.is_empty()
    }
}

/// Returns the events topic a command's header names, when it is not `events_topic`. A
/// command without the header is taken as this ledger's.
fn other_events_topic(message: &impl Message, events_topic: &str) -> Option<String> {
    let headers = message.headers()?;
    let named = headers
        .iter()
        .find(|header| header.key == EVENTS_TOPIC_HEADER)?
        .value?;
    (named != events_topic.as_bytes()).then(|| String::from_utf8_lossy(named).into_owned())
}
