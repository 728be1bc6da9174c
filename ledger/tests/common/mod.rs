//! Helpers shared by the ledger's integration tests.

#![allow(dead_code)]

use std::path::Path;

use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, NewEvent};
use consign_schemas::events::{DeliveryWithdrawn, Event};
use consign_schemas::{AccountId, Actor, ChainId, DeliveryId};

// Only the Kafka tests use these.
#[allow(unused_imports)]
pub use consign_ledger::kafka::testing::{brokers as kafka_brokers, unique_topic};

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

/// Copies the folder `from` with everything in it to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
