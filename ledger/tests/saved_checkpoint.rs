//! A checkpoint saved outside the ledger reveals what the chain alone cannot: a
//! truncated tail, and a chain rewritten consistently from some position on.
//!
//! Each case copies a prepared ledger, rewrites the copy through RocksDB directly (as
//! an attacker with disk access would, head included), and verifies it against a
//! checkpoint saved from the original.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use consign_ledger::{BreakReason, ChainChecks, EmbeddedLedger, EmbeddedOptions};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, Envelope, EventHash, Position, genesis_hash, hash_stored_event};
use proptest::prelude::*;
use rocksdb::{DB, Options};

const EVENTS: u64 = 3_000;
const CHAIN: ChainId = ChainId::new(0);

fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            common::fill(dir.path(), EVENTS, 41);
            dir
        })
        .path()
}

fn copy_of_template() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(template().join("ledger"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn event_key(position: u64) -> Vec<u8> {
    let mut key = CHAIN.get().to_be_bytes().to_vec();
    key.extend_from_slice(&position.to_be_bytes());
    key
}

fn head_key() -> Vec<u8> {
    let mut key = b"head/".to_vec();
    key.extend_from_slice(&CHAIN.get().to_be_bytes());
    key
}

fn open_raw(dir: &Path) -> DB {
    DB::open_cf(
        &Options::default(),
        dir.join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap()
}

/// Writes a consistent head: the next position, the last hash and a time.
fn write_head(db: &DB, next: u64, last_hash: EventHash) {
    let mut value = next.to_be_bytes().to_vec();
    value.extend_from_slice(last_hash.as_bytes());
    value.extend_from_slice(&0_i64.to_be_bytes());
    db.put_cf(db.cf_handle("meta").unwrap(), head_key(), value)
        .unwrap();
}

/// Returns the tree size and root of a checkpoint saved after the first `size` events.
fn saved_checkpoint(size: u64) -> (u64, consign_schemas::Hash32) {
    let ledger = EmbeddedLedger::open(
        template(),
        EmbeddedOptions {
            read_only: true,
            ..EmbeddedOptions::default()
        },
    )
    .unwrap();
    (size, ledger.tree_root(CHAIN, size).unwrap())
}

/// Verifies like `consign ledger verify`, on a read-only open: opening for appends
/// rejects a ledger whose Merkle index no longer matches its events.
fn verify(
    dir: &Path,
    saved: Option<(u64, consign_schemas::Hash32)>,
) -> Option<consign_ledger::ChainBreak> {
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir, options).unwrap();
    let checks = ChainChecks {
        keys: None,
        saved_checkpoint: saved,
    };
    ledger
        .verify_chain_with(CHAIN, Position::ZERO, None, checks, &|_| {})
        .unwrap()
        .first_break
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn saved_checkpoint_detects_truncation(size in 1..=EVENTS, cut_pick: u64) {
        let cut = cut_pick % size;
        let dir = copy_of_template();
        {
            let db = open_raw(dir.path());
            let events = db.cf_handle("events").unwrap();
            for position in cut..EVENTS {
                db.delete_cf(events, event_key(position)).unwrap();
            }
            let last_hash = if cut == 0 {
                genesis_hash(CHAIN)
            } else {
                let value = db.get_cf(events, event_key(cut - 1)).unwrap().unwrap();
                hash_stored_event(&value[32..])
            };
            write_head(&db, cut, last_hash);
        }

        prop_assert_eq!(verify(dir.path(), None), None, "the links alone look intact");
        let found = verify(dir.path(), Some(saved_checkpoint(size))).expect("truncation is detected");
        prop_assert_eq!(found.position, Position::new(cut));
        prop_assert_eq!(found.reason, BreakReason::Truncated { saved_size: size });
    }

    #[test]
    fn saved_checkpoint_detects_rewrite(size in 1..=EVENTS, from_pick: u64) {
        let from = from_pick % size;
        let dir = copy_of_template();
        {
            let db = open_raw(dir.path());
            let events = db.cf_handle("events").unwrap();
            let mut previous = if from == 0 {
                genesis_hash(CHAIN)
            } else {
                let value = db.get_cf(events, event_key(from - 1)).unwrap().unwrap();
                hash_stored_event(&value[32..])
            };
            for position in from..EVENTS {
                let value = db.get_cf(events, event_key(position)).unwrap().unwrap();
                let mut envelope = Envelope::decode(&value[32..]).unwrap();
                if position == from
                    && let Event::DeliveryWithdrawn(withdrawn) = &mut envelope.event
                {
                    withdrawn.reason = "rewritten".to_owned();
                }
                envelope.previous = previous;
                let bytes = envelope.encode().unwrap();
                previous = hash_stored_event(&bytes);
                let mut stored = previous.as_bytes().to_vec();
                stored.extend_from_slice(&bytes);
                db.put_cf(events, event_key(position), stored).unwrap();
            }
            write_head(&db, EVENTS, previous);
        }

        prop_assert_eq!(verify(dir.path(), None), None, "the rewritten links are consistent");
        let found = verify(dir.path(), Some(saved_checkpoint(size))).expect("the rewrite is detected");
        prop_assert_eq!(found.position, Position::new(size - 1));
        prop_assert!(matches!(found.reason, BreakReason::SavedCheckpointMismatch { saved_size, .. } if saved_size == size), "{}", found);
    }
}
