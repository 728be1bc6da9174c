//! Durable append and verify throughput of the embedded ledger, each next to its
//! baseline measured in the same run:
//!
//! - appends through consign against raw RocksDB writes of values of the same size,
//!   one record per write, `sync = true`, from the same number of concurrent writers
//!   (RocksDB group-commits concurrent synced writes itself);
//! - verification against hashing the same stored bytes with BLAKE3 alone;
//! - appends with signed checkpoints (every 1,000 events or 1 s) against the same
//!   appends without them, in alternating rounds.
//!
//! Run with `cargo bench -p consign-ledger --bench append`. Set `CONSIGN_BENCH_SECONDS`
//! to change the duration of each append measurement (default 3),
//! `CONSIGN_BENCH_WORKERS` to change the appenders' runtime threads (default 2),
//! `CONSIGN_BENCH_PAYLOADS` and `CONSIGN_BENCH_APPENDERS` (comma lists) to measure only
//! some configurations, and `CONSIGN_BENCH_APPENDS_ONLY` to skip the checkpoint and
//! verify measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions, NewEvent};
use consign_schemas::events::{DeliveryWithdrawn, Event};
use consign_schemas::{AccountId, Actor, ChainId, DeliveryId, Position, hash_stored_event};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};

const CHAIN: ChainId = ChainId::new(0);
const VERIFY_EVENTS: u64 = 1_000_000;

/// Builds an event whose payload carries `payload_bytes` bytes of reason text.
fn event(payload_bytes: usize, index: u64) -> NewEvent {
    let account = AccountId::from_bytes([3; 16]);
    let mut reason = format!("{index:020}");
    reason.extend(std::iter::repeat_n(
        'x',
        payload_bytes.saturating_sub(reason.len()),
    ));
    NewEvent {
        actor: Actor::Account(account),
        event: Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery: DeliveryId::random(),
            by: account,
            reason,
        }),
    }
}

/// Returns the number of runtime threads for the appenders: `CONSIGN_BENCH_WORKERS`, by
/// default 2.
fn runtime_workers() -> usize {
    std::env::var("CONSIGN_BENCH_WORKERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2)
}

fn seconds() -> Duration {
    let seconds = std::env::var("CONSIGN_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

/// Appends from `appenders` tasks for the bench duration; returns events per second and
/// the size of one stored value.
fn consign_appends(appenders: usize, payload_bytes: usize) -> (f64, usize) {
    consign_appends_with(appenders, payload_bytes, None)
}

fn consign_appends_with(
    appenders: usize,
    payload_bytes: usize,
    checkpoints: Option<CheckpointPolicy>,
) -> (f64, usize) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let mut options = EmbeddedOptions {
        checkpoints,
        ..EmbeddedOptions::default()
    };
    if let Some(micros) = std::env::var("CONSIGN_BENCH_GROUP_WAIT_US")
        .ok()
        .and_then(|text| text.parse().ok())
    {
        options.group_wait = Duration::from_micros(micros);
    }
    let ledger = Arc::new(EmbeddedLedger::open(dir.path(), options).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_workers())
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..appenders as u64 {
            let ledger = Arc::clone(&ledger);
            let stop = Arc::clone(&stop);
            let count = Arc::clone(&count);
            tasks.push(tokio::spawn(async move {
                let mut index = task << 40;
                while !stop.load(Ordering::Relaxed) {
                    let request = AppendRequest::new(CHAIN, vec![event(payload_bytes, index)]);
                    ledger.append(request).await.unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    index += 1;
                }
            }));
        }
        tokio::time::sleep(seconds()).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();

    let sample = ledger.read_raw(CHAIN, Position::ZERO, 1).unwrap();
    let value_size = 32 + sample[0].bytes.len();
    (count.load(Ordering::Relaxed) as f64 / elapsed, value_size)
}

/// Raw RocksDB: `writers` threads, each writing one `value_size` record per synced write.
fn rocksdb_writes(writers: usize, value_size: usize) -> f64 {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_max_background_jobs(2);
    options.set_write_buffer_size(64 << 20);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = Arc::new(DB::open(&options, dir.path()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let threads: Vec<_> = (0..writers as u64)
        .map(|writer| {
            let db = Arc::clone(&db);
            let stop = Arc::clone(&stop);
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut write_options = WriteOptions::default();
                write_options.set_sync(true);
                let mut index = writer << 40;
                let mut value = vec![0u8; value_size];
                while !stop.load(Ordering::Relaxed) {
                    value[..8].copy_from_slice(&index.to_be_bytes());
                    let mut key = [0u8; 12];
                    key[4..].copy_from_slice(&index.to_be_bytes());
                    let mut batch = WriteBatch::default();
                    batch.put(key, &value);
                    db.write_opt(batch, &write_options).unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    index += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(seconds());
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Returns the comma-separated numbers of the variable `name`, or `default` when unset.
fn list_from_env(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .split(',')
            .map(|item| {
                item.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?}: expected numbers such as 1,8,64"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("CONSIGN_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

fn verify_throughput() -> (f64, f64) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    let mut index = 0;
    while index < VERIFY_EVENTS {
        let events = (index..index + 1000).map(|i| event(100, i)).collect();
        ledger
            .append_blocking(AppendRequest::new(CHAIN, events))
            .unwrap();
        index += 1000;
    }

    let started = Instant::now();
    let report = ledger
        .verify_chain(CHAIN, Position::ZERO, None, &|_| {})
        .unwrap();
    let verify_rate = report.verified as f64 / started.elapsed().as_secs_f64();
    assert_eq!(report.first_break, None);
    assert_eq!(report.verified, VERIFY_EVENTS);

    // Baseline: BLAKE3 alone over the same stored bytes, already in memory.
    let raws = ledger
        .read_raw(CHAIN, Position::ZERO, VERIFY_EVENTS as usize)
        .unwrap();
    let started = Instant::now();
    let mut xor = 0u8;
    for raw in &raws {
        xor ^= hash_stored_event(&raw.bytes).as_bytes()[0];
    }
    let hash_rate = raws.len() as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(xor);
    (verify_rate, hash_rate)
}

/// Median events/s with and without checkpoints at 64 appenders and 100-byte payloads,
/// over `rounds` alternating rounds.
fn checkpoint_cost(rounds: usize) -> (f64, f64) {
    let keys_dir = tempfile::tempdir_in(bench_dir()).unwrap();
    PostmarkKeys::generate(keys_dir.path()).unwrap();
    let signer = Arc::new(PostmarkKeys::load(keys_dir.path()).unwrap());
    let policy = CheckpointPolicy {
        every_events: 1000,
        every: Duration::from_secs(1),
        signer,
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..rounds {
        without.push(consign_appends_with(64, 100, None).0);
        with.push(consign_appends_with(64, 100, Some(policy.clone())).0);
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    (median(&mut without), median(&mut with))
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    println!(
        "durable appends, {} s per measurement",
        seconds().as_secs_f64()
    );
    println!(
        "{:>9} {:>9} {:>12} {:>16} {:>16} {:>7}",
        "payload", "appenders", "value bytes", "consign ev/s", "rocksdb ev/s", "ratio"
    );
    let payloads = list_from_env("CONSIGN_BENCH_PAYLOADS", &[100, 1024]);
    let appender_counts = list_from_env("CONSIGN_BENCH_APPENDERS", &[1, 8, 64]);
    for &payload_bytes in &payloads {
        for &appenders in &appender_counts {
            let (consign, value_size) = consign_appends(appenders, payload_bytes);
            let raw = rocksdb_writes(appenders, value_size);
            println!(
                "{:>9} {:>9} {:>12} {:>16.0} {:>16.0} {:>7.2}",
                payload_bytes,
                appenders,
                value_size,
                consign,
                raw,
                consign / raw
            );
        }
    }

    if std::env::var_os("CONSIGN_BENCH_APPENDS_ONLY").is_some() {
        return;
    }
    let (without, with) = checkpoint_cost(3);
    println!(
        "64 appenders, 100-byte payloads, median of 3 alternating rounds: without checkpoints \
         {without:.0} events/s, with checkpoints every 1000 events or 1 s {with:.0} events/s; \
         cost {:.1}%",
        (1.0 - with / without) * 100.0
    );

    let (verify_rate, hash_rate) = verify_throughput();
    println!(
        "verify {VERIFY_EVENTS} events (100-byte payloads): {verify_rate:.0} events/s; \
         BLAKE3 alone, one thread: {hash_rate:.0} events/s; ratio {:.2}",
        verify_rate / hash_rate
    );
}
