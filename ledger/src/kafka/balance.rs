//! Spreading the chains over the processes started with balancing on.
//!
//! Those processes are the members of one consumer group on the commands topic, whose
//! partitions match the chains, and each sequences the chains of the partitions the
//! group assigns to it. When a process joins, leaves or stops sending heartbeats, the
//! group moves chains: the old owner releases a chain it lost, and the new owner's
//! sequencer fences any producer of it that is still running. The cooperative sticky
//! strategy moves only the chains that must move.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use consign_schemas::ChainId;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use super::sequencer::SequencerSet;

/// Time without heartbeats after which the group takes a process's chains away. The
/// brokers accept 6 s at least by default (`group.min.session.timeout.ms`).
const SESSION_TIMEOUT_MS: &str = "6000";

/// The member of the chain owners' group in this process.
pub(super) struct Balancer {
    pub(super) brokers: String,
    /// The commands topic, one partition per chain.
    pub(super) topic: String,
    /// The events topic, which names the group: two events topics may share one
    /// commands topic, and their servers must not split one set of chains.
    pub(super) events_topic: String,
    pub(super) sequencers: Arc<SequencerSet>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Balancer {
    /// Creates the group member, subscribed to the commands topic.
    pub(super) fn consumer(&self) -> Result<BaseConsumer, KafkaError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("consign-owners-{}", self.events_topic))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "1000")
            // The member reads the commands only to stay in the group. The intake
            // reads and commits them.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .create()?;
        consumer.subscribe(&[&self.topic])?;
        Ok(consumer)
    }

    /// Follows the group's assignment until stopped: starts the sequencers of the
    /// chains assigned to this process and releases those taken away.
    pub(super) fn run(self, consumer: BaseConsumer) {
        let mut owned: BTreeSet<ChainId> = BTreeSet::new();
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(Err(error)) = consumer.poll(Duration::from_millis(100)) {
                tracing::warn!(topic = %self.topic, %error, "the chain owners' group failed; retrying");
            }
            let assigned: BTreeSet<ChainId> = match consumer.assignment() {
                Ok(list) => list
                    .elements()
                    .iter()
                    .map(|element| ChainId::new(element.partition().unsigned_abs()))
                    .collect(),
                Err(error) => {
                    tracing::warn!(topic = %self.topic, %error, "cannot read this process's chains from the group");
                    continue;
                }
            };
            for chain in assigned.difference(&owned) {
                tracing::info!(chain = %chain, "the group assigned this chain to this process");
                self.sequencers.start(*chain);
            }
            for chain in owned.difference(&assigned) {
                tracing::info!(chain = %chain, "the group moved this chain to another process");
                self.sequencers.release(*chain);
            }
            owned = assigned;
        }
        // Leaving the group at once hands the chains over without waiting for the
        // session to time out.
        consumer.unsubscribe();
    }
}
