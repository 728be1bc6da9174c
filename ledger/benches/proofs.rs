//! Merkle proofs on a chain of 10,000,000 events: the time to build and to check an
//! inclusion proof, and to build a consistency proof, each next to its baseline
//! measured in the same run:
//!
//! - building a proof against one raw RocksDB point read of a random event of the same
//!   ledger (the store reads a few dozen subtree roots and at most two blocks of 64
//!   event hashes per proof);
//! - checking a proof against BLAKE3 alone over the same number of node inputs.
//!
//! The chain is built once in `CONSIGN_BENCH_DIR` (default: the system's temporary
//! folder) under `consign-proofs-10m` and reused by later runs. Run with
//! `cargo bench -p consign-ledger --bench proofs`; `CONSIGN_BENCH_EVENTS` changes the
//! chain length.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use consign_ledger::merkle::{self, verify_inclusion};
use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, NewEvent};
use consign_schemas::events::{DeliveryWithdrawn, Event};
use consign_schemas::{AccountId, Actor, ChainId, DeliveryId, Hash32, Position};
use rand::{Rng, SeedableRng};

const CHAIN: ChainId = ChainId::new(0);
const SAMPLES: usize = 10_000;
const BATCH: u64 = 10_000;

fn event_count() -> u64 {
    std::env::var("CONSIGN_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000_000)
}

fn event(index: u64) -> NewEvent {
    let account = AccountId::from_bytes([3; 16]);
    let mut reason = format!("{index:020}");
    reason.extend(std::iter::repeat_n('x', 80));
    NewEvent {
        actor: Actor::Account(account),
        event: Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery: DeliveryId::random(),
            by: account,
            reason,
        }),
    }
}

fn chain_dir(events: u64) -> PathBuf {
    let base: PathBuf = std::env::var_os("CONSIGN_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("consign-proofs-{}m", events / 1_000_000))
}

/// Opens the bench chain, appending until it has `events` events.
fn open_chain(events: u64) -> EmbeddedLedger {
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(chain_dir(events), options).unwrap();
    let mut next = ledger.next_position(CHAIN).unwrap().get();
    if next < events {
        println!(
            "building a chain of {events} events in {}",
            chain_dir(events).display()
        );
        let started = Instant::now();
        while next < events {
            let count = BATCH.min(events - next);
            let batch = (next..next + count).map(event).collect();
            ledger
                .append_blocking(AppendRequest::new(CHAIN, batch))
                .unwrap();
            next += count;
        }
        println!(
            "built in {:.1} s ({:.0} events/s)",
            started.elapsed().as_secs_f64(),
            events as f64 / started.elapsed().as_secs_f64()
        );
    }
    ledger
}

/// Mean and 99th percentile of `samples`, in microseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64;
    let p99 = samples[samples.len() * 99 / 100].as_secs_f64();
    (mean * 1e6, p99 * 1e6)
}

fn main() {
    let events = event_count();
    let ledger = open_chain(events);
    let tree_size = ledger.next_position(CHAIN).unwrap().get();
    let root = ledger.tree_root(CHAIN, tree_size).unwrap();
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    let positions: Vec<u64> = (0..SAMPLES)
        .map(|_| random.random_range(0..tree_size))
        .collect();
    println!("chain of {tree_size} events, {SAMPLES} random positions");

    // Inclusion proofs: build, then check.
    let mut build = Vec::with_capacity(SAMPLES);
    let mut proofs = Vec::with_capacity(SAMPLES);
    for &position in &positions {
        let started = Instant::now();
        let proof = ledger
            .inclusion_proof(CHAIN, Position::new(position), tree_size)
            .unwrap();
        build.push(started.elapsed());
        proofs.push(proof);
    }
    let leaves: Vec<Hash32> = positions
        .iter()
        .map(|&position| {
            ledger.read_raw(CHAIN, Position::new(position), 1).unwrap()[0]
                .recorded_hash
                .unwrap()
        })
        .collect();
    let mut check = Vec::with_capacity(SAMPLES);
    for ((&position, proof), leaf) in positions.iter().zip(&proofs).zip(&leaves) {
        let started = Instant::now();
        let valid = verify_inclusion(leaf, position, tree_size, proof, &root);
        check.push(started.elapsed());
        assert!(valid, "the proof of {position} verifies");
    }

    // Consistency proofs from a random earlier size to the whole chain.
    let mut consistency = Vec::with_capacity(SAMPLES);
    for &old in &positions {
        let started = Instant::now();
        let proof = ledger.consistency_proof(CHAIN, old + 1, tree_size).unwrap();
        consistency.push(started.elapsed());
        std::hint::black_box(proof);
    }

    // Baselines: one raw point read of a random event through RocksDB, and BLAKE3 over
    // as many 65-byte node inputs as a proof has nodes.
    ledger.close();
    let mut db_options = rocksdb::Options::default();
    db_options.create_if_missing(false);
    let db = rocksdb::DB::open_cf_for_read_only(
        &db_options,
        chain_dir(events).join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
        false,
    )
    .unwrap();
    let family = db.cf_handle("events").unwrap();
    let mut reads = Vec::with_capacity(SAMPLES);
    for &position in &positions {
        let mut key = CHAIN.get().to_be_bytes().to_vec();
        key.extend_from_slice(&position.to_be_bytes());
        let started = Instant::now();
        let value = db.get_cf(family, &key).unwrap();
        reads.push(started.elapsed());
        assert!(value.is_some());
    }
    let nodes = proofs[0].len();
    let mut hashes = Vec::with_capacity(SAMPLES);
    let input = [7u8; 65];
    for _ in 0..SAMPLES {
        let started = Instant::now();
        for _ in 0..=nodes {
            std::hint::black_box(blake3::hash(std::hint::black_box(&input)));
        }
        hashes.push(started.elapsed());
    }

    let (build_mean, build_p99) = summary(&mut build);
    let (check_mean, check_p99) = summary(&mut check);
    let (consistency_mean, consistency_p99) = summary(&mut consistency);
    let (read_mean, read_p99) = summary(&mut reads);
    let (hash_mean, hash_p99) = summary(&mut hashes);
    println!("{:<36} {:>10} {:>10}", "operation", "mean µs", "p99 µs");
    println!(
        "{:<36} {build_mean:>10.1} {build_p99:>10.1}",
        "build inclusion proof"
    );
    println!(
        "{:<36} {read_mean:>10.1} {read_p99:>10.1}",
        "baseline: raw RocksDB point read"
    );
    println!(
        "{:<36} {check_mean:>10.1} {check_p99:>10.1}",
        "check inclusion proof"
    );
    println!(
        "{:<36} {hash_mean:>10.1} {hash_p99:>10.1}",
        format!("baseline: BLAKE3 of {} nodes", nodes + 1)
    );
    println!(
        "{:<36} {consistency_mean:>10.1} {consistency_p99:>10.1}",
        "build consistency proof"
    );
    println!(
        "ratios (mean): build / raw read {:.1}, check / BLAKE3 alone {:.2}; proof length {nodes}",
        build_mean / read_mean,
        check_mean / hash_mean
    );
    std::hint::black_box(merkle::empty_root());
}
