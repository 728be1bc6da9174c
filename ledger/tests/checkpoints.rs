//! The Merkle index beside each chain, signed checkpoints, and proofs from the store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use consign_ledger::checkpoint::{CheckpointFields, CheckpointPolicy, verify_checkpoint};
use consign_ledger::merkle::{self, verify_consistency, verify_inclusion};
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{
    AppendRequest, BreakReason, ChainChecks, EmbeddedLedger, EmbeddedOptions, LedgerError,
    StoredEvent,
};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, EventHash, Position};

use common::withdrawal;

const CHAIN: ChainId = ChainId::new(0);

fn new_keys() -> (tempfile::TempDir, Arc<PostmarkKeys>) {
    let dir = tempfile::tempdir().unwrap();
    PostmarkKeys::generate(dir.path()).unwrap();
    let keys = PostmarkKeys::load(dir.path()).unwrap();
    (dir, Arc::new(keys))
}

fn options(keys: &Arc<PostmarkKeys>, every_events: u64, every: Duration) -> EmbeddedOptions {
    EmbeddedOptions {
        sync: false,
        checkpoints: Some(CheckpointPolicy {
            every_events,
            every,
            signer: keys.clone(),
        }),
        ..EmbeddedOptions::default()
    }
}

fn append(ledger: &EmbeddedLedger, from: u64, count: u64) {
    let events = (from..from + count).map(withdrawal).collect();
    ledger
        .append_blocking(AppendRequest::new(CHAIN, events))
        .unwrap();
}

fn all_events(ledger: &EmbeddedLedger) -> Vec<StoredEvent> {
    ledger.read(CHAIN, Position::ZERO, usize::MAX).unwrap()
}

fn hashes(events: &[StoredEvent]) -> Vec<EventHash> {
    events.iter().map(|event| event.hash).collect()
}

/// Checks every checkpoint event of `events` against the tree of the events before
/// it and its signature, and returns their positions.
fn checked_checkpoints(events: &[StoredEvent], keys: &PostmarkKeys) -> Vec<u64> {
    let leaves = hashes(events);
    let mut positions = Vec::new();
    for event in events {
        if let Event::CheckpointSigned(signed) = &event.envelope.event {
            let position = event.position().get();
            assert_eq!(signed.tree_size, position);
            assert_eq!(signed.root_hash, merkle::root(&leaves[..position as usize]));
            let fields = CheckpointFields {
                chain: CHAIN,
                tree_size: signed.tree_size,
                root: signed.root_hash,
                time: event.envelope.time,
            };
            verify_checkpoint(
                &keys.public_keys(),
                &fields,
                &signed.key_id,
                &signed.signature,
            )
            .unwrap();
            positions.push(position);
        }
    }
    positions
}

#[test]
fn store_proofs_match_leaf_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(
        dir.path(),
        EmbeddedOptions {
            sync: false,
            ..EmbeddedOptions::default()
        },
    )
    .unwrap();
    let mut count = 0;
    for size in [1, 5, 63, 64, 65, 200, 1000, 3] {
        append(&ledger, count, size);
        count += size;
    }
    let leaves = hashes(&all_events(&ledger));
    assert_eq!(leaves.len() as u64, count);

    let head = ledger.tree_head(CHAIN).unwrap();
    assert_eq!(head.tree_size, count);
    assert_eq!(head.root, merkle::root(&leaves));

    for tree_size in [1, 2, 64, 65, 127, 128, 129, 1000, count] {
        let root = ledger.tree_root(CHAIN, tree_size).unwrap();
        assert_eq!(root, merkle::root(&leaves[..tree_size as usize]));
        for index in [0, tree_size / 3, tree_size / 2, tree_size - 1] {
            let proof = ledger
                .inclusion_proof(CHAIN, Position::new(index), tree_size)
                .unwrap();
            assert_eq!(
                proof,
                merkle::inclusion_proof(&leaves[..tree_size as usize], index).unwrap()
            );
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                tree_size,
                &proof,
                &root
            ));
        }
        let old = tree_size / 2;
        let proof = ledger.consistency_proof(CHAIN, old, tree_size).unwrap();
        let old_root = ledger.tree_root(CHAIN, old).unwrap();
        assert!(verify_consistency(old, tree_size, &old_root, &root, &proof));
    }

    let beyond = ledger.inclusion_proof(CHAIN, Position::ZERO, count + 1);
    assert!(matches!(beyond, Err(LedgerError::TreeBeyondHead { events, .. }) if events == count));
    let outside = ledger.inclusion_proof(CHAIN, Position::new(count), count);
    assert!(
        matches!(outside, Err(LedgerError::Proof { .. })),
        "{outside:?}"
    );

    // The committed tree survives a reopen.
    ledger.close();
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(ledger.tree_head(CHAIN).unwrap(), head);
    append(&ledger, count, 1);
    let leaves = hashes(&all_events(&ledger));
    assert_eq!(ledger.tree_head(CHAIN).unwrap().root, merkle::root(&leaves));
}

#[test]
fn index_built_on_open() {
    let dir = tempfile::tempdir().unwrap();
    common::fill(dir.path(), 5_000, 333);
    let expected = {
        let ledger = common::open(dir.path());
        merkle::root(&hashes(&all_events(&ledger)))
    };

    // Remove the index as if the ledger had been written before it existed.
    {
        let path = dir.path().join("ledger");
        let mut db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            path,
            ["events", "idempotency", "meta", "merkle"],
        )
        .unwrap();
        db.drop_cf("merkle").unwrap();
        let meta = db.cf_handle("meta").unwrap();
        let mut key = b"merkle-size/".to_vec();
        key.extend_from_slice(&0_u32.to_be_bytes());
        db.delete_cf(meta, key).unwrap();
    }

    let read_only = EmbeddedLedger::open(
        dir.path(),
        EmbeddedOptions {
            read_only: true,
            ..EmbeddedOptions::default()
        },
    )
    .unwrap();
    assert_eq!(read_only.tree_head(CHAIN).unwrap().root, expected);
    drop(read_only);

    let ledger = common::open(dir.path());
    assert_eq!(ledger.tree_head(CHAIN).unwrap().root, expected);
    let proof = ledger
        .inclusion_proof(CHAIN, Position::new(4_321), 5_000)
        .unwrap();
    let leaves = hashes(&all_events(&ledger));
    assert!(verify_inclusion(
        &leaves[4_321],
        4_321,
        5_000,
        &proof,
        &expected
    ));
}

#[test]
fn checkpoints_every_n_events() {
    let (_keys_dir, keys) = new_keys();
    let dir = tempfile::tempdir().unwrap();
    let ledger =
        EmbeddedLedger::open(dir.path(), options(&keys, 100, Duration::from_secs(3600))).unwrap();
    for batch in 0..150 {
        append(&ledger, batch * 7, 7);
    }
    ledger.close();

    let ledger = common::open(dir.path());
    let events = all_events(&ledger);
    let positions = checked_checkpoints(&events, &keys);

    // 1,050 events in batches of 7 give a checkpoint after the batch that reaches 100
    // uncovered events: 15 batches of 7 (105 events) and the checkpoint, then the
    // same again, and the last one when the ledger closed.
    let non_checkpoint = events.len() - positions.len();
    assert_eq!(non_checkpoint, 1_050);
    let mut previous = 0;
    for (index, position) in positions.iter().enumerate() {
        let covered = position - previous;
        if index + 1 < positions.len() {
            assert_eq!(covered, 105, "checkpoint {index} at {position}");
        }
        previous = position + 1;
    }
    assert_eq!(
        *positions.last().unwrap() + 1,
        events.len() as u64,
        "closing checkpoint"
    );
    assert_eq!(
        ledger.last_checkpoint(CHAIN).unwrap(),
        positions.last().map(|p| Position::new(*p))
    );

    let checks = ChainChecks {
        keys: Some(Arc::new(keys.public_keys())),
        saved_checkpoint: None,
    };
    let report = ledger
        .verify_chain_with(CHAIN, Position::ZERO, None, checks, &|_| {})
        .unwrap();
    assert_eq!(report.first_break, None);
}

#[test]
fn checkpoints_after_time_not_idle() {
    let (_keys_dir, keys) = new_keys();
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(
        dir.path(),
        options(&keys, 1_000_000, Duration::from_millis(50)),
    )
    .unwrap();

    append(&ledger, 0, 3);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(4));
    assert_eq!(
        ledger.last_checkpoint(CHAIN).unwrap(),
        Some(Position::new(3))
    );

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ledger.next_position(CHAIN).unwrap(),
        Position::new(4),
        "no checkpoint of a checkpoint"
    );

    append(&ledger, 3, 2);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        ledger.last_checkpoint(CHAIN).unwrap(),
        Some(Position::new(6))
    );
    assert_eq!(checked_checkpoints(&all_events(&ledger), &keys), vec![3, 6]);
}

#[tokio::test]
async fn checkpoint_on_request() {
    let (_keys_dir, keys) = new_keys();
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(
        dir.path(),
        options(&keys, 1_000_000, Duration::from_secs(3600)),
    )
    .unwrap();

    assert_eq!(
        ledger.checkpoint(CHAIN).await.unwrap(),
        None,
        "an empty chain"
    );
    ledger
        .append(AppendRequest::new(
            CHAIN,
            vec![withdrawal(0), withdrawal(1)],
        ))
        .await
        .unwrap();
    assert_eq!(
        ledger.checkpoint(CHAIN).await.unwrap(),
        Some(Position::new(2))
    );
    assert_eq!(
        ledger.checkpoint(CHAIN).await.unwrap(),
        Some(Position::new(2)),
        "already covered"
    );
    assert_eq!(ledger.next_position(CHAIN).unwrap(), Position::new(3));

    let unsigned = tempfile::tempdir().unwrap();
    let plain = common::open(unsigned.path());
    let rejected = plain.checkpoint(CHAIN).await;
    assert!(
        matches!(rejected, Err(LedgerError::NoCheckpointSigner)),
        "{rejected:?}"
    );
}

#[test]
fn verify_rejects_unpublished_key() {
    let (_keys_dir, keys) = new_keys();
    let (_other_dir, other) = new_keys();
    let dir = tempfile::tempdir().unwrap();
    let ledger =
        EmbeddedLedger::open(dir.path(), options(&keys, 10, Duration::from_secs(3600))).unwrap();
    append(&ledger, 0, 25);

    let checks = ChainChecks {
        keys: Some(Arc::new(other.public_keys())),
        saved_checkpoint: None,
    };
    let report = ledger
        .verify_chain_with(CHAIN, Position::ZERO, None, checks, &|_| {})
        .unwrap();
    let found = report.first_break.expect("the checkpoint is rejected");
    assert_eq!(found.position, Position::new(25));
    assert!(
        matches!(found.reason, BreakReason::CheckpointSignature { .. }),
        "{found}"
    );
}
