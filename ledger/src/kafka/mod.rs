//! The Apache Kafka backend's cluster set-up: the events topic, created or checked
//! at start.
//!
//! The rest of the backend (one sequencer per partition with a transactional
//! producer, consumers that read committed records only) is not built yet.

mod topic;

pub use topic::{EVENTS_TOPIC, KafkaSetupError, TopicCheck, ensure_events_topic};
