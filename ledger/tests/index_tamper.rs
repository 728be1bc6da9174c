//! Tampering with the indexes beside a chain that still verifies: the head entry,
//! the Merkle nodes, the idempotency entries, the last-checkpoint entry and entries
//! of chains the ledger does not have. Each change is found by the index comparison
//! and named in its message; a damaged head also keeps the ledger from opening for
//! appends.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::evidence::export_bundle;
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_schemas::{ChainId, IdempotencyKey, Position};
use rocksdb::{DB, Options};

use common::withdrawal;

const CHAIN: ChainId = ChainId::new(0);

/// Appends made to the template: 300 events in requests of 3, every other request
/// with an idempotency key, and a checkpoint every 100 events.
const REQUESTS: u64 = 100;

fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let keys_dir = dir.path().join("keys");
            PostmarkKeys::generate(&keys_dir).unwrap();
            let options = EmbeddedOptions {
                sync: false,
                checkpoints: Some(CheckpointPolicy {
                    every_events: 100,
                    every: Duration::from_secs(3600),
                    signer: Arc::new(PostmarkKeys::load(&keys_dir).unwrap()),
                }),
                ..EmbeddedOptions::default()
            };
            let ledger = EmbeddedLedger::open(dir.path().join("data"), options).unwrap();
            for request in 0..REQUESTS {
                let events = (request * 3..request * 3 + 3).map(withdrawal).collect();
                let mut append = AppendRequest::new(CHAIN, events);
                if request % 2 == 0 {
                    append = append.with_idempotency_key(key_of(request));
                }
                ledger.append_blocking(append).unwrap();
            }
            ledger.close();
            dir
        })
        .path()
}

fn key_of(request: u64) -> IdempotencyKey {
    IdempotencyKey::new(format!("request-{request}")).unwrap()
}

/// Copies the template's data directory and changes the copy through raw RocksDB
/// access, as someone with access to the disk could.
fn tampered(tamper: impl FnOnce(&DB)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&template().join("data"), dir.path());
    let db = DB::open_cf(
        &Options::default(),
        dir.path().join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap();
    tamper(&db);
    drop(db);
    dir
}

fn read_only(dir: &Path) -> EmbeddedLedger {
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    EmbeddedLedger::open(dir, options).unwrap()
}

/// Verifies chain 0, which must be intact, and returns the index comparison's result.
fn compare(dir: &Path) -> Result<u64, LedgerError> {
    let ledger = read_only(dir);
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    assert_eq!(report.first_break, None, "the chain itself verifies");
    ledger.check_index_contents(&|_| {})
}

/// Returns the comparison's message, which must name damage.
fn damage(dir: &Path) -> String {
    match compare(dir) {
        Err(error @ LedgerError::Corrupt { .. }) => error.to_string(),
        other => panic!("expected damage to be found, got {other:?}"),
    }
}

fn node_key(level: u8, index: u64) -> Vec<u8> {
    let mut key = CHAIN.get().to_be_bytes().to_vec();
    key.push(level);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn head_key(chain: u32) -> Vec<u8> {
    let mut key = b"head/".to_vec();
    key.extend_from_slice(&chain.to_be_bytes());
    key
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).unwrap()
}

#[test]
fn untouched_indexes_agree() {
    let dir = tampered(|_| {});
    let read = compare(dir.path()).unwrap();
    // 300 events and the three checkpoints after each 100.
    assert_eq!(read, 303);
}

#[test]
fn changed_merkle_node_is_named() {
    let dir = tampered(|db| {
        let merkle = cf(db, "merkle");
        let mut value = db.get_cf(merkle, node_key(6, 1)).unwrap().unwrap();
        value[0] ^= 1;
        db.put_cf(merkle, node_key(6, 1), value).unwrap();
    });
    let message = damage(dir.path());
    assert!(
        message.contains("Merkle node level 6 index 1 of chain 0 is stored as"),
        "{message}"
    );
}

#[test]
fn missing_merkle_node_is_named() {
    let dir = tampered(|db| db.delete_cf(cf(db, "merkle"), node_key(7, 0)).unwrap());
    let message = damage(dir.path());
    assert!(
        message.contains("Merkle node level 7 index 0 of chain 0 is missing"),
        "{message}"
    );
}

#[test]
fn merkle_node_past_the_indexed_size_is_named() {
    let dir = tampered(|db| {
        db.put_cf(cf(db, "merkle"), node_key(6, 40), [0u8; 32])
            .unwrap()
    });
    let message = damage(dir.path());
    assert!(message.contains("node at level 6 index 40"), "{message}");
}

#[test]
fn changed_head_hash_is_found_and_blocks_appends() {
    let dir = tampered(|db| {
        let meta = cf(db, "meta");
        let mut value = db.get_cf(meta, head_key(0)).unwrap().unwrap();
        value[20] ^= 0x10;
        db.put_cf(meta, head_key(0), value).unwrap();
    });
    let message = damage(dir.path());
    assert!(
        message.contains("the head entry of chain 0 records the last hash"),
        "{message}"
    );

    let rejected = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    let rejected = rejected.to_string();
    assert!(
        rejected.contains("the head entry of chain 0 records the last hash"),
        "{rejected}"
    );
}

#[test]
fn deleted_idempotency_entry_is_named() {
    let dir = tampered(|db| {
        db.delete_cf(cf(db, "idempotency"), key_of(10).as_str().as_bytes())
            .unwrap();
    });
    let message = damage(dir.path());
    assert!(
        message.contains("\"request-10\", which has no entry"),
        "{message}"
    );
}

#[test]
fn moved_idempotency_entry_is_named() {
    let dir = tampered(|db| {
        let idempotency = cf(db, "idempotency");
        let key = key_of(20);
        let mut value = db
            .get_cf(idempotency, key.as_str().as_bytes())
            .unwrap()
            .unwrap();
        // The first position, bytes 4 to 12, moves one event later.
        value[11] += 1;
        db.put_cf(idempotency, key.as_str().as_bytes(), value)
            .unwrap();
    });
    let message = damage(dir.path());
    assert!(message.contains("\"request-20\""), "{message}");
}

#[test]
fn moved_checkpoint_entry_is_named() {
    let dir = tampered(|db| {
        let mut key = b"checkpoint/".to_vec();
        key.extend_from_slice(&CHAIN.get().to_be_bytes());
        db.put_cf(cf(db, "meta"), key, 100u64.to_be_bytes())
            .unwrap();
    });
    let message = damage(dir.path());
    assert!(
        message.contains("last-checkpoint entry of chain 0 names position 100"),
        "{message}"
    );
}

#[test]
fn entries_of_unknown_chains_are_named() {
    let event = tampered(|db| {
        let events = cf(db, "events");
        let mut stored = CHAIN.get().to_be_bytes().to_vec();
        stored.extend_from_slice(&5u64.to_be_bytes());
        let value = db.get_cf(events, &stored).unwrap().unwrap();
        let mut foreign = 1u32.to_be_bytes().to_vec();
        foreign.extend_from_slice(&0u64.to_be_bytes());
        db.put_cf(events, foreign, value).unwrap();
    });
    let message = damage(event.path());
    assert!(
        message.contains("an event is stored under 1:0"),
        "{message}"
    );

    let head = tampered(|db| {
        let meta = cf(db, "meta");
        let value = db.get_cf(meta, head_key(0)).unwrap().unwrap();
        db.put_cf(meta, head_key(3), value).unwrap();
    });
    let message = damage(head.path());
    assert!(message.contains("belongs to chain 3"), "{message}");
}

/// A bundle proved with a damaged Merkle node would fail its inclusion checks, so the
/// export refuses it rather than hand it out.
#[tokio::test]
async fn export_refuses_damaged_merkle_proofs() {
    let dir = tampered(|db| {
        let merkle = cf(db, "merkle");
        // The sibling of the subtree that contains position 10, so its proof uses it.
        let mut value = db.get_cf(merkle, node_key(6, 1)).unwrap().unwrap();
        value[5] ^= 1;
        db.put_cf(merkle, node_key(6, 1), value).unwrap();
    });
    let keys = PostmarkKeys::load(&template().join("keys")).unwrap();
    let public = keys.public_keys();
    let options = EmbeddedOptions {
        sync: false,
        checkpoints: Some(CheckpointPolicy {
            every_events: u64::MAX,
            every: Duration::from_secs(3600),
            signer: Arc::new(keys),
        }),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    let event = ledger.read(CHAIN, Position::new(10), 1).unwrap().remove(0);
    let delivery = event.envelope.event.delivery().unwrap();

    let rejected = export_bundle(&ledger, delivery, CHAIN, &[event.position()], &public)
        .await
        .unwrap_err();
    let message = rejected.to_string();
    assert!(message.contains("does not verify"), "{message}");
    assert!(message.contains("inclusion"), "{message}");
    ledger.close();
}

/// A damaged node of the tree's frontier would make the writer sign a wrong root into
/// the next checkpoint, so the ledger does not open for appends.
#[test]
fn damaged_frontier_node_blocks_appends() {
    let dir = tampered(|db| {
        let merkle = cf(db, "merkle");
        // Events 0 to 255: the largest perfect subtree of the 303-event tree.
        let mut value = db.get_cf(merkle, node_key(8, 0)).unwrap().unwrap();
        value[0] ^= 1;
        db.put_cf(merkle, node_key(8, 0), value).unwrap();
    });

    let rejected = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    let message = rejected.to_string();
    assert!(
        message.contains("does not give the root that the checkpoint"),
        "{message}"
    );

    let found = damage(dir.path());
    assert!(found.contains("Merkle node level 8 index 0"), "{found}");
}
