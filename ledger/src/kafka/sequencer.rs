//! Per-partition sequencers: the only writers of the events topic.
//!
//! Each chain this process sequences has a transactional producer whose
//! `transactional.id` names the topic and partition. Starting one fences any earlier
//! producer with the same id, in this process or another, and aborts its open
//! transaction. The chain takes appends only once this process's copy contains every
//! record committed before that point, so a new sequencer always extends the real
//! head. Each group of a chain is one transaction; the writer hears of success only
//! after the commit, with `acks=all`.
//!
//! A sequencer that learns it was fenced stops for good and logs the reason. After any other
//! failure the outcome of the transaction is unknown, so the chain takes no appends
//! until a new producer has fenced the old one and the copy has caught up again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consign_schemas::ChainId;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use super::confirm::{
    DeliveryTracker, TransactionError, TxProducer, await_stable, close_open_transaction,
};
use super::replica::Progress;
use crate::embedded::{Published, Publisher};
use crate::error::LedgerError;

/// Maximum wait for a transaction to start, or for a new producer to learn the end of
/// its partition.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum wait for the brokers to acknowledge the records of one group. During a broker
/// outage or a leader change, the appends of the group fail after this long with an
/// unknown outcome, instead of holding their requests until Kafka is back.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum wait for a commit, once the records are acknowledged.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Header that carries the event position, for people reading the raw topic.
pub const POSITION_HEADER: &str = "consign-position";

/// The state of one chain's sequencer in this process.
enum Slot {
    /// Fencing earlier producers and waiting for the copy to catch up.
    Starting,
    /// Taking appends. The producer is shared so that a commit runs outside the lock
    /// while the chain still counts as sequenced here.
    Ready(Arc<TxProducer>),
    /// Another producer took the chain over; this process no longer sequences it.
    Fenced(String),
}

/// State shared by the sequencers and their start-up threads.
pub(super) struct SequencerSet {
    pub(super) brokers: String,
    pub(super) topic: String,
    slots: Mutex<HashMap<ChainId, Slot>>,
    progress: Arc<Progress>,
    stop: AtomicBool,
    starters: Mutex<Vec<JoinHandle<()>>>,
}

impl SequencerSet {
    pub(super) fn new(
        brokers: &str,
        topic: &str,
        chains: &[ChainId],
        progress: Arc<Progress>,
    ) -> Arc<Self> {
        let slots = chains
            .iter()
            .map(|chain| (*chain, Slot::Starting))
            .collect();
        Arc::new(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            slots: Mutex::new(slots),
            progress,
            stop: AtomicBool::new(false),
            starters: Mutex::new(Vec::new()),
        })
    }

    /// Starts the sequencer of every chain this process sequences.
    pub(super) fn start_all(self: &Arc<Self>) {
        let chains: Vec<ChainId> = self.lock().keys().copied().collect();
        for chain in chains {
            self.start(chain);
        }
    }

    /// Returns true when the sequencer of `chain` takes appends now.
    pub(super) fn is_ready(&self, chain: ChainId) -> bool {
        matches!(self.lock().get(&chain), Some(Slot::Ready(_)))
    }

    /// Returns true when this process sequences `chain` or is starting its sequencer.
    pub(super) fn is_home(&self, chain: ChainId) -> bool {
        matches!(
            self.lock().get(&chain),
            Some(Slot::Ready(_) | Slot::Starting)
        )
    }

    /// Returns the chains whose sequencer is ready.
    pub(super) fn ready_chains(&self) -> Vec<ChainId> {
        let mut chains: Vec<ChainId> = self
            .lock()
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Ready(_)))
            .map(|(chain, _)| *chain)
            .collect();
        chains.sort();
        chains
    }

    /// Returns the chains whose sequencer was fenced, with the reason.
    pub(super) fn fenced_chains(&self) -> Vec<(ChainId, String)> {
        self.lock()
            .iter()
            .filter_map(|(chain, slot)| match slot {
                Slot::Fenced(reason) => Some((*chain, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// Stops the start-up threads and waits for them.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let starters = std::mem::take(&mut *self.starters.lock().expect("starters lock poisoned"));
        for starter in starters {
            let _ = starter.join();
        }
    }

    /// Returns true while `chain`'s sequencer is starting, so not released meanwhile.
    fn is_starting(&self, chain: ChainId) -> bool {
        matches!(self.lock().get(&chain), Some(Slot::Starting))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChainId, Slot>> {
        self.slots.lock().expect("sequencer slots lock poisoned")
    }

    fn transactional_id(&self, chain: ChainId) -> String {
        format!("consign-sequencer-{}-{}", self.topic, chain.get())
    }

    /// Stops sequencing `chain` in this process, which the chain owners' group moved
    /// elsewhere. Appends to it are forwarded from then on.
    pub(super) fn release(&self, chain: ChainId) {
        let released = self.lock().remove(&chain);
        if let Some(Slot::Ready(producer)) = released {
            close_in_background(chain, producer);
        }
        tracing::info!(chain = %chain, topic = %self.topic, "sequencer released");
    }

    /// Starts `chain`'s sequencer on a thread of its own.
    pub(super) fn start(self: &Arc<Self>, chain: ChainId) {
        self.lock().insert(chain, Slot::Starting);
        let set = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("consign-sequencer-{}", chain.get()))
            .spawn(move || set.run_start(chain));
        match spawned {
            Ok(handle) => self
                .starters
                .lock()
                .expect("starters lock poisoned")
                .push(handle),
            Err(error) => {
                tracing::error!(chain = %chain, %error, "cannot start the sequencer thread");
            }
        }
    }

    /// Starts `chain`'s sequencer again after a failed transaction, unless closing or
    /// released.
    fn start_again(self: &Arc<Self>, chain: ChainId) {
        let released = !self.lock().contains_key(&chain);
        if !self.stop.load(Ordering::Relaxed) && !released {
            self.start(chain);
        }
    }

    /// Fences earlier producers of `chain`, waits for the copy to contain everything they
    /// committed, and marks the chain ready. Retries until it succeeds or the ledger
    /// closes.
    fn run_start(&self, chain: ChainId) {
        let mut backoff = Duration::from_millis(200);
        while !self.stop.load(Ordering::Relaxed) {
            if !self.is_starting(chain) {
                return;
            }
            match self.fence_and_catch_up(chain) {
                Ok(Some(producer)) => {
                    let mut slots = self.lock();
                    if matches!(slots.get(&chain), Some(Slot::Starting)) {
                        tracing::info!(chain = %chain, topic = %self.topic, "sequencer ready");
                        slots.insert(chain, Slot::Ready(Arc::new(producer)));
                    }
                    return;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(chain = %chain, %error, "sequencer cannot start yet; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Returns the ready producer, or `None` when the ledger closed first.
    fn fence_and_catch_up(&self, chain: ChainId) -> Result<Option<TxProducer>, TransactionError> {
        // A producer without a polling thread: the commit serves the delivery reports
        // itself, while a polling thread would make each commit wait for its next poll.
        let producer: TxProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("transactional.id", self.transactional_id(chain))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            // A transaction that starts right after the previous commit gets the error
            // CONCURRENT_TRANSACTIONS until the commit markers are written. At the
            // default backoff of 100 ms, doubling up to one second, every group would
            // wait that long.
            .set("retry.backoff.ms", "2")
            .set("retry.backoff.max.ms", "20")
            .set("transaction.timeout.ms", "60000")
            .create_with_context(DeliveryTracker::default())?;
        producer.init_transactions(TRANSACTION_TIMEOUT)?;
        let partition = partition_of(chain);
        let end = close_open_transaction(
            &producer,
            &self.brokers,
            &self.topic,
            partition,
            TRANSACTION_TIMEOUT,
        )?;

        let started = Instant::now();
        let mut logged = Instant::now();
        while !self.progress.reached(chain, end) {
            if self.stop.load(Ordering::Relaxed) || !self.is_starting(chain) {
                return Ok(None);
            }
            if let Some(reason) = self.progress.broken(chain) {
                tracing::error!(chain = %chain, %reason, "the copy of this chain does not match Kafka; not sequencing it");
                self.lock().insert(chain, Slot::Fenced(reason));
                return Ok(None);
            }
            if logged.elapsed() > Duration::from_secs(10) {
                tracing::info!(chain = %chain, end, waited_s = started.elapsed().as_secs(), "sequencer waiting for the copy to catch up");
                logged = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Some(producer))
    }

    /// Commits one group of `chain` in a transaction of its producer.
    fn commit(
        &self,
        chain: ChainId,
        producer: &TxProducer,
        events: &[Published],
    ) -> Result<(), TransactionError> {
        producer.begin_transaction()?;
        let partition = partition_of(chain);
        for event in events {
            let position = event.position.get().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: POSITION_HEADER,
                value: Some(&position),
            });
            let key: Vec<u8> = match event.delivery {
                Some(delivery) => delivery.to_string().into_bytes(),
                None => format!("chain-{}", chain.get()).into_bytes(),
            };
            let mut record = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(&key)
                .payload(&event.bytes)
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((error, _)) => return Err(error.into()),
                }
            }
        }

        // The commit flushes too, but rdkafka's flush polls in steps of 100 ms, so
        // every commit would wait that long. Delivery is awaited here in 1 ms steps.
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut).into(),
                );
            }
            producer.poll(Duration::from_millis(1));
        }
        producer.commit_transaction(COMMIT_TIMEOUT)?;
        let last = producer.context().last_offset();
        await_stable(producer, &self.topic, partition, last, DELIVERY_TIMEOUT)
    }
}

/// The writer's handle on the sequencers.
pub(super) struct SequencerPublisher(pub(super) Arc<SequencerSet>);

impl Publisher for SequencerPublisher {
    fn ready(&mut self, chain: ChainId) -> Result<(), LedgerError> {
        let reason = match self.0.lock().get(&chain) {
            Some(Slot::Ready(_)) => return Ok(()),
            Some(Slot::Starting) => format!(
                "the sequencer of chain {chain} is starting: it is fencing earlier sequencers and \
                 catching up with Kafka"
            ),
            Some(Slot::Fenced(reason)) => reason.clone(),
            None => format!("chain {chain} is sequenced by another consign process"),
        };
        Err(LedgerError::Unavailable { chain, reason })
    }

    fn publish(&mut self, chain: ChainId, events: &[Published]) -> Result<(), LedgerError> {
        let set = Arc::clone(&self.0);
        let ready = match set.lock().get(&chain) {
            Some(Slot::Ready(producer)) => Some(Arc::clone(producer)),
            _ => None,
        };
        let Some(producer) = ready else {
            return self.ready(chain);
        };

        match set.commit(chain, &producer, events) {
            Ok(()) => Ok(()),
            Err(TransactionError::Kafka(error)) if is_fenced(&error) => {
                let reason = format!(
                    "another sequencer for chain {chain} (transactional.id {}) fenced this one, \
                     so this process no longer extends chain {chain}",
                    set.transactional_id(chain)
                );
                tracing::error!(chain = %chain, %error, "sequencer fenced; it stops for good");
                set.lock().insert(chain, Slot::Fenced(reason.clone()));
                Err(LedgerError::Unavailable { chain, reason })
            }
            Err(error) => {
                if let TransactionError::Kafka(KafkaError::Transaction(inner)) = &error
                    && inner.txn_requires_abort()
                {
                    let _ = producer.abort_transaction(TRANSACTION_TIMEOUT);
                }
                tracing::warn!(chain = %chain, %error, "transaction failed; restarting the sequencer");
                set.start_again(chain);
                close_in_background(chain, producer);
                Err(LedgerError::Unavailable {
                    chain,
                    reason: format!(
                        "Kafka did not confirm the events ({error}); they may or may not be \
                         recorded, so retry with the same idempotency key"
                    ),
                })
            }
        }
    }
}

/// Closes a producer this process no longer uses on a thread of its own, because
/// closing one that cannot reach its brokers waits for them.
fn close_in_background(chain: ChainId, producer: Arc<TxProducer>) {
    let closing = std::thread::Builder::new()
        .name(format!("consign-sequencer-close-{}", chain.get()))
        .spawn(move || drop(producer));
    if let Err(error) = closing {
        tracing::warn!(chain = %chain, %error, "cannot start a thread to close the old producer");
    }
}

/// Returns true when `error` reports a newer producer with the same transactional id.
fn is_fenced(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::Transaction(inner) => inner.code(),
        other => match other.rdkafka_error_code() {
            Some(code) => code,
            None => return false,
        },
    };
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Returns the partition of `chain`: chain n is partition n.
pub(super) fn partition_of(chain: ChainId) -> i32 {
    i32::try_from(chain.get()).unwrap_or(i32::MAX)
}
