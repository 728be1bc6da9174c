//! The Apache Kafka backend.
//!
//! Topic `consign.events` contains one chain per partition. Each chain is extended only
//! by its sequencer, through a transactional producer that fences any earlier one.
//! Every process keeps a verified copy of all chains in its data directory, filled by
//! a consumer that reads committed records only, and serves reads from it. An append
//! to a chain sequenced in another process goes there through topic
//! `consign.commands`.

mod balance;
mod commands;
mod confirm;
mod open;
mod replica;
mod sequencer;
pub mod testing;
mod topic;
mod verify;

pub use commands::commands_topic;
pub use open::{KafkaOpenError, KafkaOptions, KafkaStatus, open_kafka_ledger, wait_replicated};
pub use replica::Progress;
pub use sequencer::POSITION_HEADER;
pub use topic::{
    EVENTS_TOPIC, KafkaSetupError, TopicCheck, ensure_events_topic, topic_has_records,
};
pub use verify::{TopicReport, recent_checkpoint_keys, verify_topic};
