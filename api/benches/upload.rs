//! Upload throughput and server memory, each next to its baseline measured in the same
//! run:
//!
//! - one upload of a large document through `consign serve` (HTTP multipart over
//!   loopback, BLAKE3, fsync, ledger append) against a raw write of the same number of
//!   bytes to a file on the same disk with 1 MiB writes and one fsync, once plain and
//!   once asking the kernel to start writing back each 8 MiB as the server does;
//! - the same upload encrypted at rest, for information;
//! - the server's peak resident memory during ten concurrent uploads of 500 MB each,
//!   against its resident memory just before them. The peak is read from `VmHWM` after
//!   resetting it through `/proc/PID/clear_refs`.
//!
//! The server is the `consign` binary of this build, run as a child process, so its
//! memory is measured apart from the client's. Run with
//! `cargo bench -p consign-api --bench upload`. `CONSIGN_BENCH_DIR` sets the folder of
//! the data directory and the raw file (default: the system temp folder);
//! `CONSIGN_BENCH_UPLOAD_MB` the size of the single upload (default 1024),
//! `CONSIGN_BENCH_CONCURRENT_MB` the size of each concurrent upload (default 500) and
//! `CONSIGN_BENCH_SETTLE_S` the pause after a `sync` before each measurement (default 5).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::multipart::{Form, Part};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;
const PASSWORD: &str = "bench-password-123";
const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("CONSIGN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// Bytes written between two write-back requests, the same step as the server's.
const WRITEBACK_STEP: u64 = 8 * MIB;

/// Writes `bytes` bytes in 1 MiB writes and fsyncs once; returns MB/s (10^6 bytes).
/// With `writeback`, each 8 MiB written is passed to the disk at once with
/// `posix_fadvise` "don't need", the way the server writes documents.
fn raw_write(dir: &Path, bytes: u64, writeback: bool) -> f64 {
    let path = dir.join("raw.bin");
    let buffer: Vec<u8> = (0..MIB).map(|index| (index * 31 % 251) as u8).collect();
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    let mut written = 0;
    let mut written_back = 0;
    while written < bytes {
        let take = (bytes - written).min(MIB) as usize;
        file.write_all(&buffer[..take]).unwrap();
        written += take as u64;
        if writeback && written - written_back >= WRITEBACK_STEP {
            start_writeback(&file, written_back, written - written_back);
            written_back = written;
        }
    }
    file.sync_all().unwrap();
    let elapsed = started.elapsed();
    std::fs::remove_file(&path).unwrap();
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    let advice = rustix::fs::Advice::DontNeed;
    rustix::fs::fadvise(file, offset, std::num::NonZeroU64::new(len), advice).unwrap();
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

/// The server under test, killed when dropped.
struct ServerProcess {
    child: Child,
    base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data_dir: &Path) -> ServerProcess {
    let binary = env!("CARGO_BIN_EXE_consign");
    let created = Command::new(binary)
        .args(["account", "create", "--login", "bench", "--role", "sender"])
        .args(["--email", "bench@consign.test", "--data-dir"])
        .arg(data_dir)
        .env("CONSIGN_ACCOUNT_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--max-document-bytes", "100000000000", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    ServerProcess { child, base }
}

/// Builds a document of `bytes` bytes as a stream of one repeated random chunk, so the
/// client spends no time or memory making it.
fn document(bytes: u64) -> reqwest::Body {
    let chunk = Bytes::from(
        (0..CHUNK)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    );
    let chunks = bytes.div_ceil(CHUNK as u64);
    let stream = futures::stream::iter((0..chunks).map(move |index| {
        let left = bytes - index * CHUNK as u64;
        let take = left.min(CHUNK as u64) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..take))
    }));
    reqwest::Body::wrap_stream(stream)
}

async fn upload(client: &reqwest::Client, base: &str, token: &str, bytes: u64, encrypt: bool) {
    let metadata = serde_json::json!({
        "recipients": ["reader@consign.test"],
        "subject": "Benchmark",
        "encrypt": encrypt,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::stream_with_length(document(bytes), bytes).file_name("bench.bin"),
        );
    let response = client
        .post(format!("{base}/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

async fn login(client: &reqwest::Client, base: &str) -> String {
    let body: serde_json::Value = client
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({ "login": "bench", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Reads a `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn main() {
    let upload_bytes = env_u64("CONSIGN_BENCH_UPLOAD_MB", 1024) * MIB;
    let concurrent_bytes = env_u64("CONSIGN_BENCH_CONCURRENT_MB", 500) * 1_000_000;
    let work = tempfile::tempdir_in(bench_dir()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let server = start_server(&work.path().join("data"));
    let client = reqwest::Client::new();
    let token = runtime.block_on(login(&client, &server.base));
    // A first small upload warms the connection pool and the server's allocator.
    runtime.block_on(upload(&client, &server.base, &token, MIB, false));

    // The four measurements take turns, each round starting one further along, so
    // that none always follows the same one. Before each, a `sync` and a pause give
    // the disk time to finish what the previous one left. Each figure is the median
    // of its rounds.
    let settle = Duration::from_secs(env_u64("CONSIGN_BENCH_SETTLE_S", 5));
    let rate = |started: Instant| upload_bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
    let mut figures: [Vec<f64>; 4] = Default::default();
    for round in 0..ROUNDS {
        for turn in 0..figures.len() {
            let measurement = (round + turn) % figures.len();
            rustix::fs::sync();
            std::thread::sleep(settle);
            let figure = match measurement {
                0 => raw_write(work.path(), upload_bytes, false),
                1 => raw_write(work.path(), upload_bytes, true),
                _ => {
                    let started = Instant::now();
                    let encrypt = measurement == 3;
                    runtime.block_on(upload(&client, &server.base, &token, upload_bytes, encrypt));
                    rate(started)
                }
            };
            figures[measurement].push(figure);
        }
    }
    let [raw, raw_writeback, plain, encrypted] = figures;
    let (raw, raw_writeback) = (median(raw), median(raw_writeback));
    let (plain, encrypted) = (median(plain), median(encrypted));

    println!(
        "upload of {} MiB, median of {ROUNDS} rounds",
        upload_bytes / MIB
    );
    println!("  raw write + fsync                  {raw:8.1} MB/s");
    println!("  raw write with write-back + fsync  {raw_writeback:8.1} MB/s");
    for (name, rate) in [
        ("consign upload", plain),
        ("consign upload, sealed", encrypted),
    ] {
        println!(
            "  {name:<34} {rate:8.1} MB/s   ratio {:.2} to the raw write, {:.2} with write-back",
            rate / raw,
            rate / raw_writeback
        );
    }

    let pid = server.child.id();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .expect("resetting VmHWM needs Linux 4.0 or newer");
    let before = status_kib(pid, "VmRSS:");
    let started = Instant::now();
    runtime.block_on(async {
        let uploads =
            (0..10).map(|_| upload(&client, &server.base, &token, concurrent_bytes, false));
        futures::future::join_all(uploads).await;
    });
    let elapsed = started.elapsed();
    let peak = status_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    println!(
        "ten concurrent uploads of {} MB: {:.1} s, {:.1} MB/s in total",
        concurrent_bytes / 1_000_000,
        elapsed.as_secs_f64(),
        10.0 * concurrent_bytes as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "  server resident memory: {:.1} MiB before, peak {:.1} MiB, growth {growth_mib:.1} MiB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
