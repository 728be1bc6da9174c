//! The Kafka broker rule shared by the test suites of every crate.
//!
//! The README's test command starts a broker and sets `CONSIGN_KAFKA_BROKERS`. Outside
//! CI, a test without a broker is skipped with a line saying how to run it. Under CI
//! (`CI` set) it fails instead, so a missing broker is never mistaken for a pass.

/// Returns the broker list from `CONSIGN_KAFKA_BROKERS`, or `None` outside CI when no
/// broker was started.
///
/// # Panics
///
/// Panics under CI when the variable is missing or empty.
pub fn brokers() -> Option<String> {
    match std::env::var("CONSIGN_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CONSIGN_KAFKA_BROKERS is not set under CI; run the tests with scripts/test.sh")
        }
        _ => {
            eprintln!(
                "SKIPPED: set CONSIGN_KAFKA_BROKERS or run scripts/test.sh to test against Kafka"
            );
            None
        }
    }
}

/// Returns a topic name that no other test or run uses, with `purpose` in it.
pub fn unique_topic(purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("consign.test.{purpose}.{nanos:x}.{}", std::process::id())
}
