//! Shared fixtures of the Kafka server tests. They start `consign serve` child
//! processes on one topic, open a sender account through Kafka, run clients that
//! submit until stopped, and start local Kafka clusters that a test may break. The
//! final check confirms that every acknowledged submission is in the topic exactly
//! once and that every chain verifies.
//!
//! The tests run only where a broker was started for them: `CONSIGN_KAFKA_BROKERS`
//! names it, and the README's test command sets it. Under CI a missing broker fails
//! the test.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use consign_ledger::kafka::{KafkaOptions, open_kafka_ledger, testing};

pub use consign_ledger::kafka::testing::brokers as kafka_brokers;
use consign_ledger::{EmbeddedOptions, StoredEvent};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, Position};
use reqwest::multipart::{Form, Part};

pub const BIN: &str = env!("CARGO_BIN_EXE_consign");

/// Login and password of the sender that the tests open.
pub const LOGIN: &str = "ada";
pub const PASSWORD: &str = "ada-password-123";

/// Returns an events topic name no other test uses.
pub fn unique_topic(kind: &str) -> String {
    format!("{}.events", testing::unique_topic(kind))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `consign serve` child process with two chains, stopped with SIGTERM when dropped.
pub struct ServeProcess {
    child: Child,
    pub base: String,
    port: u16,
    data_dir: PathBuf,
    brokers: String,
    topic: String,
    sequence: String,
    /// Further arguments of `consign serve`.
    extra: Vec<String>,
    log: PathBuf,
    /// Length of the log when the current run started.
    run_start: usize,
}

impl ServeProcess {
    /// Starts a server that sequences the chains in `sequence` (a comma list), or, when
    /// `sequence` is `balance`, the chains its consumer group assigns to it.
    pub fn start(data_dir: &Path, brokers: &str, topic: &str, sequence: &str) -> Self {
        Self::start_with(data_dir, brokers, topic, sequence, &[])
    }

    /// As [`ServeProcess::start`], with further arguments of `consign serve`.
    pub fn start_with(
        data_dir: &Path,
        brokers: &str,
        topic: &str,
        sequence: &str,
        extra: &[String],
    ) -> Self {
        let port = free_port();
        let log = data_dir.with_extension("log");
        let child = spawn_serve(data_dir, port, brokers, topic, sequence, extra, &log);
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir: data_dir.to_owned(),
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            sequence: sequence.to_owned(),
            extra: extra.to_vec(),
            log,
            run_start: 0,
        }
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let _ = self.child.wait();
    }

    /// Starts the process again on the same data directory and port.
    pub fn restart(&mut self) {
        let _ = self.child.try_wait();
        self.run_start = self.log_text().len();
        self.child = spawn_serve(
            &self.data_dir,
            self.port,
            &self.brokers,
            &self.topic,
            &self.sequence,
            &self.extra,
            &self.log,
        );
    }

    /// Waits until `/healthz` returns 200 and, for a server that sequences fixed
    /// chains, lists each of them as ready.
    pub async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.base, self.log_text());
            }
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await
                && response.status() == 200
                && let Ok(health) = response.json::<serde_json::Value>().await
                && self.sequencers_ready(&health)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{} did not become healthy:\n{}", self.base, self.log_text());
    }

    /// Returns true when the health report lists every chain of `--kafka-sequence` as
    /// ready. A balanced server gets its chains later, from the group.
    fn sequencers_ready(&self, health: &serde_json::Value) -> bool {
        if self.sequence == "balance" {
            return true;
        }
        let ready: Vec<u64> = health["kafka"]["ready"]
            .as_array()
            .map(|chains| {
                chains
                    .iter()
                    .filter_map(serde_json::Value::as_u64)
                    .collect()
            })
            .unwrap_or_default();
        self.sequence
            .split(',')
            .map(|chain| chain.parse::<u64>().unwrap())
            .all(|chain| ready.contains(&chain))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Returns the next position of `chain` in this server's copy, from `/healthz`, or
    /// `None` while the server does not respond.
    pub async fn next_position(&self, client: &reqwest::Client, chain: u32) -> Option<u64> {
        let response = client
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .ok()?;
        let health: serde_json::Value = response.json().await.ok()?;
        health["chains"]
            .as_array()?
            .iter()
            .find(|entry| entry["chain"] == chain)?["next_position"]
            .as_u64()
    }

    /// Waits until `chain` in this server's copy grows past `from`, and returns false
    /// when it did not within `timeout`.
    pub async fn wait_growth(
        &self,
        client: &reqwest::Client,
        chain: u32,
        from: u64,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .next_position(client, chain)
                .await
                .is_some_and(|next| next > from)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Returns the next positions of `chains` once they have stayed the same for
    /// `quiet`, so that checkpoints and downloads still being recorded do not count as
    /// writes of a later step. Panics when they keep moving for a minute.
    pub async fn settled_heads(
        &self,
        client: &reqwest::Client,
        chains: &[u32],
        quiet: Duration,
    ) -> Vec<Option<u64>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut heads = Vec::new();
        let mut since = Instant::now();
        loop {
            let mut now = Vec::with_capacity(chains.len());
            for &chain in chains {
                now.push(self.next_position(client, chain).await);
            }
            if now != heads {
                heads = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return heads;
            }
            assert!(
                Instant::now() < deadline,
                "chains {chains:?} kept growing for a minute: {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Returns the last `lines` lines of the log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log_text();
        let all: Vec<&str> = log.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "last lines of the log of {}:\n{}",
            self.base,
            all[start..].join("\n")
        )
    }

    /// Returns the chains that the consumer group assigns to this process now, from
    /// the assignments and moves in the log of its current run.
    pub fn owned_chains(&self) -> BTreeSet<u32> {
        let mut owned = BTreeSet::new();
        let log = self.log_text();
        for line in log.get(self.run_start..).unwrap_or_default().lines() {
            let Some(chain) = chain_field(line) else {
                continue;
            };
            if line.contains("the group assigned this chain") {
                owned.insert(chain);
            } else if line.contains("the group moved this chain") {
                owned.remove(&chain);
            }
        }
        owned
    }

    /// Waits until the group assigns this process exactly `count` chains, and returns
    /// them.
    pub async fn wait_owned(&self, count: usize, timeout: Duration) -> BTreeSet<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let owned = self.owned_chains();
            if owned.len() == count {
                return owned;
            }
            assert!(
                Instant::now() < deadline,
                "{} owns chains {owned:?}, not {count}:\n{}",
                self.base,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn spawn_serve(
    data_dir: &Path,
    port: u16,
    brokers: &str,
    topic: &str,
    sequence: &str,
    extra: &[String],
    log: &Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--chains", "2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--kafka", brokers, "--kafka-topic", topic])
        .args(chain_arguments(sequence))
        .args(extra);
    // The servers of one topic share a key folder, as the README requires, unless the
    // test gives its own.
    if !extra.iter().any(|argument| argument == "--keys-dir") {
        let keys = data_dir
            .parent()
            .expect("a data directory inside the test's folder")
            .join(format!("keys-{topic}"));
        std::fs::create_dir_all(&keys).unwrap();
        command.arg("--keys-dir").arg(keys);
    }
    command.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// Returns the value of the `chain=` field of a log line.
fn chain_field(line: &str) -> Option<u32> {
    let start = line.find(" chain=")? + " chain=".len();
    line[start..].split_whitespace().next()?.parse().ok()
}

/// Returns the arguments that choose the chains a server sequences.
fn chain_arguments(sequence: &str) -> Vec<&str> {
    if sequence == "balance" {
        vec!["--kafka-balance"]
    } else {
        vec!["--kafka-sequence", sequence]
    }
}

/// Opens the sender account through Kafka: the command hands it to the server that
/// sequences the account chain, so one of the servers must be running.
pub fn create_sender(work: &Path, brokers: &str, topic: &str) {
    let output = run_create_sender(work, brokers, topic);
    assert!(
        output.status.success(),
        "account create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `account create --kafka` for the sender and returns what it printed.
pub fn run_create_sender(work: &Path, brokers: &str, topic: &str) -> std::process::Output {
    let mut create = Command::new(BIN)
        .args(["account", "create", "--login", LOGIN, "--role", "sender"])
        .args(["--email", "ada@consign.test", "--password-stdin"])
        .args(["--kafka", brokers, "--kafka-topic", topic, "--data-dir"])
        .arg(work.join("admin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = create.stdin.take().unwrap();
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    drop(stdin);
    create.wait_with_output().unwrap()
}

/// Logs in, waiting until the server's copy contains the account.
pub async fn login(client: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .post(format!("{base}/api/login"))
            .json(&serde_json::json!({ "login": LOGIN, "password": PASSWORD }))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 200
        {
            let body: serde_json::Value = response.json().await.unwrap();
            return body["token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "cannot log in at {base}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one submission got.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 201 with this delivery id.
    Acknowledged(String),
    /// 503: the ledger could not confirm the submission.
    Unavailable,
    /// No HTTP response: the server is down.
    NoAnswer,
}

/// The outcomes of one client, with the time each response arrived.
pub type Record = Vec<(Instant, Outcome)>;

/// Submits one small delivery after another to `base` until `stop` is set, logging in
/// again when the server lost the session (after a restart). Any status other than
/// 201, 503 or 401 fails the test.
pub async fn submit_until(base: String, worker: u32, stop: Arc<AtomicBool>) -> Record {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut token = login(&client, &base).await;
    let mut record = Vec::new();
    let mut index = 0u32;
    while !stop.load(Ordering::Relaxed) {
        index += 1;
        let subject = format!("worker {worker} submission {index}");
        let metadata =
            serde_json::json!({ "recipients": ["bob@recipients.test"], "subject": subject });
        let form = Form::new()
            .part("metadata", Part::text(metadata.to_string()))
            .part(
                "document",
                Part::bytes(subject.clone().into_bytes()).file_name("a.txt"),
            );
        let sent = client
            .post(format!("{base}/api/deliveries"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("load-{worker}-{index}"))
            .multipart(form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(_) => {
                record.push((Instant::now(), Outcome::NoAnswer));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match response.status().as_u16() {
            201 => {
                let body: serde_json::Value = response.json().await.unwrap();
                let id = body["delivery"].as_str().unwrap().to_owned();
                record.push((Instant::now(), Outcome::Acknowledged(id)));
            }
            503 => {
                record.push((Instant::now(), Outcome::Unavailable));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            401 => token = login(&client, &base).await,
            status => panic!(
                "submission to {base} returned {status}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    record
}

/// Clients that submit to servers until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Record>>,
}

impl Load {
    /// Starts `per_server` clients for each base URL.
    pub fn start(bases: &[&str], per_server: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for (server, base) in bases.iter().enumerate() {
            for client in 0..per_server {
                let worker = u32::try_from(server).unwrap() * per_server + client;
                workers.push(tokio::spawn(submit_until(
                    (*base).to_owned(),
                    worker,
                    Arc::clone(&stop),
                )));
            }
        }
        Self { stop, workers }
    }

    /// Stops the clients and returns each one's record, in start order.
    pub async fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut records = Vec::new();
        for worker in self.workers {
            records.push(worker.await.unwrap());
        }
        records
    }
}

/// Returns the acknowledged delivery ids of some records.
pub fn acknowledged<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<String> {
    records
        .into_iter()
        .flatten()
        .filter_map(|(_, outcome)| match outcome {
            Outcome::Acknowledged(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Counts the outcomes of some records that match `expected` and arrived in `[from, to)`.
pub fn count_between<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    from: Instant,
    to: Instant,
    expected: fn(&Outcome) -> bool,
) -> usize {
    records
        .into_iter()
        .flatten()
        .filter(|(at, outcome)| *at >= from && *at < to && expected(outcome))
        .count()
}

/// Checks the topic after a run: `consign ledger verify --kafka` passes, and a fresh
/// copy filled from the topic alone contains every acknowledged delivery exactly once
/// and events on every chain. The servers of these tests sign with keys of their own
/// data directories, not a shared key folder, so verify leaves the signatures out.
pub async fn check_topic(work: &Path, brokers: &str, topic: &str, acknowledged: &[String]) {
    let verify = Command::new(BIN)
        .args([
            "ledger",
            "verify",
            "--kafka",
            brokers,
            "--kafka-topic",
            topic,
            "--without-signatures",
        ])
        .arg("--data-dir")
        .arg(work.join("verify"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(report.contains("is intact"), "{report}");

    let options = KafkaOptions {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        sequence: Some(Vec::new()),
        balance: false,
    };
    let (copy, status) =
        open_kafka_ledger(&work.join("copy"), EmbeddedOptions::default(), &options)
            .await
            .unwrap();
    assert!(status.catch_up(Duration::from_secs(120)).await.unwrap());
    let mut submitted: HashMap<String, usize> = HashMap::new();
    let mut per_chain = Vec::new();
    for chain in copy.chains() {
        let events = all_events(&copy, chain);
        per_chain.push(events.len());
        for event in events {
            if let Event::DeliverySubmitted(submission) = &event.envelope.event {
                *submitted
                    .entry(submission.delivery.to_string())
                    .or_default() += 1;
            }
        }
    }
    for delivery in acknowledged {
        assert_eq!(submitted.get(delivery), Some(&1), "delivery {delivery}");
    }
    assert!(
        submitted.values().all(|count| *count == 1),
        "a submission is in the topic twice"
    );
    assert!(per_chain.iter().all(|count| *count > 0), "{per_chain:?}");
    copy.close();
}

fn all_events(ledger: &consign_ledger::EmbeddedLedger, chain: ChainId) -> Vec<StoredEvent> {
    ledger.read(chain, Position::ZERO, usize::MAX).unwrap()
}

/// A Kafka cluster of its own on loopback ports, which a test may stop and start node
/// by node with `scripts/kafka/node.sh`. Stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub brokers: String,
}

impl Cluster {
    /// Starts `nodes` nodes whose client ports begin at `port`.
    pub fn start(nodes: u32, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(script("start.sh"))
            .args(["--brokers", &nodes.to_string(), "--dir"])
            .arg(dir.path())
            .env("CONSIGN_KAFKA_PORT", port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(output.status.success(), "scripts/kafka/start.sh failed");
        let brokers = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned();
        Self { dir, brokers }
    }

    /// Runs `node.sh` with `action` (stop, kill or start) on node `node`.
    pub fn node(&self, node: i32, action: &str) {
        let status = Command::new(script("node.sh"))
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--node", &node.to_string(), action])
            .status()
            .unwrap();
        assert!(status.success(), "node.sh {action} of node {node} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("stop.sh"))
            .arg("--dir")
            .arg(self.dir.path())
            .status();
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/kafka")
        .join(name)
}

/// Runs `command`, a `consign serve` that must refuse to start, and returns its
/// standard error. A server that still runs after a minute is killed and fails the test.
pub async fn refused_start(mut command: Command) -> String {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server started: {command:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}
