//! Tampering with a stored ledger of 10,000 events: every change is reported by
//! verification at the exact position, with its reason.
//!
//! Each case copies a prepared ledger, changes it through RocksDB directly (as an
//! attacker with disk access would), and verifies the copy.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use consign_ledger::{BreakReason, ChainBreak, EmbeddedLedger, EmbeddedOptions};
use consign_schemas::{ChainId, Envelope, EventId, Position, hash_stored_event};
use proptest::prelude::*;
use rocksdb::{DB, Options};

const EVENTS: u64 = 10_000;
const CHAIN: ChainId = ChainId::new(0);

fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            common::fill(dir.path(), EVENTS, 97);
            dir
        })
        .path()
}

fn key(position: u64) -> Vec<u8> {
    let mut key = CHAIN.get().to_be_bytes().to_vec();
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// Copies the template ledger and changes the copy with `tamper` through raw RocksDB access.
fn tampered(tamper: impl FnOnce(&DB, &rocksdb::ColumnFamily)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(template(), dir.path());
    let path: PathBuf = dir.path().join("ledger");
    let db = DB::open_cf(
        &Options::default(),
        path,
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap();
    let events = db.cf_handle("events").unwrap();
    tamper(&db, events);
    drop(db);
    dir
}

/// Verifies like `consign ledger verify`, on a read-only open: opening for appends
/// refuses a ledger whose head entry does not name its last event.
fn first_break(dir: &Path) -> Option<ChainBreak> {
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir, options).unwrap();
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    report.first_break
}

#[test]
fn untouched_ledger_verifies() {
    let dir = tampered(|_, _| {});
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.verified, EVENTS);
    assert_eq!(report.last_hash, ledger.last_hash(CHAIN).unwrap());
}

#[test]
fn partial_range_verifies_from_its_predecessor() {
    let dir = tampered(|_, _| {});
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let report = ledger
        .verify_chain(
            CHAIN,
            Position::new(4_000),
            Some(Position::new(4_500)),
            &|_| {},
        )
        .unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.verified, 500);
}

#[test]
fn forged_event_appended_after_head_is_reported() {
    let dir = tampered(|db, events| {
        let last = db.get_cf(events, key(EVENTS - 1)).unwrap().unwrap();
        db.put_cf(events, key(EVENTS), last).unwrap();
    });
    let found = first_break(dir.path()).unwrap();
    assert_eq!(found.position, Position::new(EVENTS));
    assert_eq!(
        found.reason,
        BreakReason::BeyondHead {
            head: Position::new(EVENTS)
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn flipped_byte_reported_at_its_position(position in 0..EVENTS, offset in 0usize..4096, mask in 1u8..=255) {
        let dir = tampered(|db, events| {
            let mut value = db.get_cf(events, key(position)).unwrap().unwrap();
            let index = offset % value.len();
            value[index] ^= mask;
            db.put_cf(events, key(position), value).unwrap();
        });

        let found = first_break(dir.path()).expect("a flipped byte is detected");
        prop_assert_eq!(found.position, Position::new(position));
        prop_assert!(matches!(found.reason, BreakReason::HashMismatch { .. }), "{}", found);
    }

    #[test]
    fn deleted_event_reported_as_gap(position in 0..EVENTS) {
        let dir = tampered(|db, events| db.delete_cf(events, key(position)).unwrap());

        let found = first_break(dir.path()).expect("a deletion is detected");
        prop_assert_eq!(found.position, Position::new(position));
        prop_assert_eq!(found.reason, BreakReason::Gap);
    }

    #[test]
    fn swapped_events_reported_at_first(first in 0..EVENTS - 1, distance in 1..EVENTS) {
        let second = (first + distance).min(EVENTS - 1);
        prop_assume!(second > first);
        let dir = tampered(|db, events| {
            let a = db.get_cf(events, key(first)).unwrap().unwrap();
            let b = db.get_cf(events, key(second)).unwrap().unwrap();
            db.put_cf(events, key(first), b).unwrap();
            db.put_cf(events, key(second), a).unwrap();
        });

        let found = first_break(dir.path()).expect("a swap is detected");
        prop_assert_eq!(found.position, Position::new(first));
        let misplaced = BreakReason::Misplaced { found_chain: CHAIN, found_position: Position::new(second) };
        prop_assert_eq!(found.reason, misplaced);
    }

    #[test]
    fn inserted_forgery_reported_at_its_position(position in 0..EVENTS) {
        let dir = tampered(|db, events| {
            // A forger familiar with the format: the new event links to the real
            // predecessor, claims the position it is stored at, and carries a correct
            // recorded hash. Every later event moves up by one.
            for moved in (position..EVENTS).rev() {
                let value = db.get_cf(events, key(moved)).unwrap().unwrap();
                db.put_cf(events, key(moved + 1), value).unwrap();
            }
            let original = db.get_cf(events, key(position + 1)).unwrap().unwrap();
            let mut forged = Envelope::decode(&original[32..]).unwrap();
            forged.event_id = EventId::random();
            let bytes = forged.encode().unwrap();
            let mut value = hash_stored_event(&bytes).as_bytes().to_vec();
            value.extend_from_slice(&bytes);
            db.put_cf(events, key(position), value).unwrap();
        });

        let found = first_break(dir.path()).expect("an insertion is detected");
        prop_assert_eq!(found.position, Position::new(position));
        prop_assert_eq!(found.reason, BreakReason::Inserted);
    }

    #[test]
    fn copied_event_reported_where_it_was_copied(position in 0..EVENTS - 1) {
        let dir = tampered(|db, events| {
            let value = db.get_cf(events, key(position)).unwrap().unwrap();
            db.put_cf(events, key(position + 1), value).unwrap();
        });

        let found = first_break(dir.path()).expect("a copied event is detected");
        prop_assert_eq!(found.position, Position::new(position + 1));
        let misplaced = BreakReason::Misplaced { found_chain: CHAIN, found_position: Position::new(position) };
        prop_assert_eq!(found.reason, misplaced);
    }

    #[test]
    fn replaced_event_is_broken_link(position in 1..EVENTS) {
        let dir = tampered(|db, events| {
            let original = db.get_cf(events, key(position)).unwrap().unwrap();
            let mut forged = Envelope::decode(&original[32..]).unwrap();
            forged.previous = hash_stored_event(b"not the predecessor");
            let bytes = forged.encode().unwrap();
            let mut value = hash_stored_event(&bytes).as_bytes().to_vec();
            value.extend_from_slice(&bytes);
            db.put_cf(events, key(position), value).unwrap();
        });

        let found = first_break(dir.path()).expect("a replaced event is detected");
        prop_assert_eq!(found.position, Position::new(position));
        prop_assert!(matches!(found.reason, BreakReason::BrokenLink { .. }), "{}", found);
    }
}
