//! The feeder: reads every partition of the events topic, committed records only,
//! and imports them into this process's copy of the chains.
//!
//! It resumes each partition at the offset stored with the copy, so a restart reads
//! only what it has not imported. After each import it records how far the consumer
//! has read, from which a starting sequencer learns when the copy contains everything
//! committed before it fenced its predecessors. A record that does not extend the
//! copy (a fork, a gap, bytes that do not decode) stops that partition and is logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consign_schemas::ChainId;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::sequencer::partition_of;
use crate::embedded::{ImportRecord, WriterHandle};
use crate::error::LedgerError;

/// Most records gathered from the consumer before they are imported.
const BATCH_RECORDS: usize = 2048;

/// How far the feeder has read each partition, and which partitions it stopped.
#[derive(Debug, Default)]
pub struct Progress {
    /// Offset of the next record to read, after everything read was imported.
    read: Mutex<HashMap<ChainId, i64>>,
    broken: Mutex<HashMap<ChainId, String>>,
}

impl Progress {
    /// True when every record of `chain`'s partition before `offset` was imported.
    pub fn reached(&self, chain: ChainId, offset: i64) -> bool {
        offset <= 0
            || self
                .read
                .lock()
                .expect("progress lock poisoned")
                .get(&chain)
                .is_some_and(|read| *read >= offset)
    }

    /// Returns why the feeder stopped reading `chain`'s partition, if it did.
    pub fn broken(&self, chain: ChainId) -> Option<String> {
        self.broken
            .lock()
            .expect("progress lock poisoned")
            .get(&chain)
            .cloned()
    }

    /// Records that every record of `chain`'s partition before `offset` was imported.
    pub(super) fn resume_at(&self, chain: ChainId, offset: i64) {
        let mut read = self.read.lock().expect("progress lock poisoned");
        let entry = read.entry(chain).or_insert(offset);
        *entry = (*entry).max(offset);
    }
}

/// Settings of the feeder.
pub(super) struct Feeder {
    pub(super) brokers: String,
    pub(super) topic: String,
    /// Resume offset of each partition: the offset after the last imported record.
    pub(super) resume: BTreeMap<ChainId, Option<i64>>,
    pub(super) writer: WriterHandle,
    pub(super) progress: Arc<Progress>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Feeder {
    /// Creates the consumer, assigned to every partition at its resume offset.
    pub(super) fn consumer(&self) -> Result<BaseConsumer, KafkaError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "consign-replica")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for (chain, resume) in &self.resume {
            let offset = resume.map_or(Offset::Beginning, Offset::Offset);
            assignment.add_partition_offset(&self.topic, partition_of(*chain), offset)?;
        }
        consumer.assign(&assignment)?;
        Ok(consumer)
    }

    /// Reads and imports until stopped.
    pub(super) fn run(self, consumer: BaseConsumer) {
        let chains: HashMap<i32, ChainId> = self
            .resume
            .keys()
            .map(|chain| (partition_of(*chain), *chain))
            .collect();
        while !self.stop.load(Ordering::Relaxed) {
            let mut gathered: BTreeMap<ChainId, Vec<ImportRecord>> = BTreeMap::new();
            let mut count = 0;
            let mut wait = Duration::from_millis(100);
            while count < BATCH_RECORDS {
                match consumer.poll(wait) {
                    None => break,
                    Some(Ok(message)) => {
                        let Some(chain) = chains.get(&message.partition()).copied() else {
                            continue;
                        };
                        if self.progress.broken(chain).is_some() {
                            continue;
                        }
                        gathered.entry(chain).or_default().push(ImportRecord {
                            offset: message.offset(),
                            bytes: message.payload().unwrap_or_default().to_vec(),
                        });
                        count += 1;
                        wait = Duration::ZERO;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(topic = %self.topic, %error, "reading the events topic failed; retrying");
                        break;
                    }
                }
            }

            for (chain, records) in gathered {
                match self.writer.import(chain, records) {
                    Ok(_) => {}
                    Err(error @ LedgerError::Replica { .. }) => {
                        tracing::error!(chain = %chain, %error, "stopped reading this chain's partition");
                        self.progress
                            .broken
                            .lock()
                            .expect("progress lock poisoned")
                            .insert(chain, error.to_string());
                    }
                    Err(LedgerError::Closed) => return,
                    Err(error) => {
                        tracing::error!(chain = %chain, %error, "import failed; stopping the feeder");
                        return;
                    }
                }
            }
            self.record_positions(&consumer, &chains);
        }
    }

    /// Records how far the consumer has read each partition.
    fn record_positions(&self, consumer: &BaseConsumer, chains: &HashMap<i32, ChainId>) {
        let Ok(positions) = consumer.position() else {
            return;
        };
        for element in positions.elements() {
            if let (Some(chain), Offset::Offset(offset)) =
                (chains.get(&element.partition()), element.offset())
            {
                self.progress.resume_at(*chain, offset);
            }
        }
    }
}
