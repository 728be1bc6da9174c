//! Helpers shared by the ledger's integration tests.

#![allow(dead_code)]

use std::path::Path;

use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, NewEvent};
use consign_schemas::events::{DeliveryWithdrawn, Event};
use consign_schemas::{AccountId, Actor, ChainId, DeliveryId};

/// Builds a small event whose reason text makes it unique.
pub fn withdrawal(index: u64) -> NewEvent {
    let account = AccountId::from_bytes([7; 16]);
    NewEvent {
        actor: Actor::Account(account),
        event: Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery: DeliveryId::random(),
            by: account,
            reason: format!("withdrawal number {index}"),
        }),
    }
}

/// Opens a ledger with default options.
pub fn open(dir: &Path) -> EmbeddedLedger {
    EmbeddedLedger::open(dir, EmbeddedOptions::default()).expect("ledger opens")
}

/// Fills chain 0 with `count` events in batches of `batch` events, without fsync.
pub fn fill(dir: &Path, count: u64, batch: u64) {
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir, options).expect("ledger opens");
    let mut index = 0;
    while index < count {
        let size = batch.min(count - index);
        let events = (index..index + size).map(withdrawal).collect();
        ledger
            .append_blocking(AppendRequest::new(ChainId::new(0), events))
            .expect("append succeeds");
        index += size;
    }
    ledger.close();
}

/// Returns the Kafka broker list from `CONSIGN_KAFKA_BROKERS`, or `None` outside CI
/// when no broker was started. Under CI a missing broker fails the test.
pub fn kafka_brokers() -> Option<String> {
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

/// Returns a topic name that no other test or run uses.
pub fn unique_topic(purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("consign.test.{purpose}.{nanos:x}.{}", std::process::id())
}
