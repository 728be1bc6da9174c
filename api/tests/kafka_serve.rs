//! Two `consign serve` processes on one Kafka topic, each sequencing one of its two
//! chains, take submissions concurrently: every acknowledged submission is in the
//! topic exactly once, whichever process took it, and every chain verifies.
//!
//! The broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test command sets
//! after starting one; under CI a missing broker fails the test.
//! `CONSIGN_KAFKA_SOAK_SECONDS` sets how long the processes take submissions
//! (default 60).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consign_ledger::kafka::{KafkaOptions, open_kafka_ledger};
use consign_ledger::{EmbeddedOptions, StoredEvent};
use consign_schemas::events::Event;
use consign_schemas::{ChainId, Position};
use reqwest::multipart::{Form, Part};

const BIN: &str = env!("CARGO_BIN_EXE_consign");

fn kafka_brokers() -> Option<String> {
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

fn unique_topic() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("consign.test.serve.{nanos:x}.events")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `consign serve` child process, stopped with SIGTERM when dropped.
struct ServeProcess {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl ServeProcess {
    fn start(data_dir: &Path, brokers: &str, topic: &str, sequence: &str) -> Self {
        let port = free_port();
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--chains", "2", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--kafka",
                brokers,
                "--kafka-topic",
                topic,
                "--kafka-sequence",
                sequence,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log_path,
        }
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.base, self.log_text());
            }
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{} did not become healthy:\n{}", self.base, self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// Logs in, waiting until the server's copy contains the account.
async fn login(client: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .post(format!("{base}/api/login"))
            .json(&serde_json::json!({ "login": "ada", "password": "ada-password-123" }))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: serde_json::Value = response.json().await.unwrap();
            return body["token"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "login at {base}: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits for `duration` and returns the delivery ids that were acknowledged, and
/// the number of 503 responses.
async fn submit_for(
    base: String,
    token: String,
    worker: u32,
    duration: Duration,
) -> (Vec<String>, u32) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + duration;
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    let mut index = 0u32;
    while Instant::now() < deadline {
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
        let response = client
            .post(format!("{base}/api/deliveries"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("soak-{worker}-{index}"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => {
                let body: serde_json::Value = response.json().await.unwrap();
                acknowledged.push(body["delivery"].as_str().unwrap().to_owned());
            }
            503 => unavailable += 1,
            status => panic!(
                "submission answered {status}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    (acknowledged, unavailable)
}

fn all_events(ledger: &consign_ledger::EmbeddedLedger, chain: ChainId) -> Vec<StoredEvent> {
    ledger.read(chain, Position::ZERO, usize::MAX).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_record_every_acknowledged_submission_once() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let seconds: u64 = std::env::var("CONSIGN_KAFKA_SOAK_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    let topic = unique_topic();
    let work = tempfile::tempdir().unwrap();

    let client = reqwest::Client::new();
    let mut first = ServeProcess::start(&work.path().join("first"), &brokers, &topic, "0");
    let mut second = ServeProcess::start(&work.path().join("second"), &brokers, &topic, "1");
    first.wait_healthy(&client).await;
    second.wait_healthy(&client).await;
    // The account is opened through Kafka: the command hands it to the server that
    // sequences the account chain.
    let mut create = Command::new(BIN)
        .args(["account", "create", "--login", "ada", "--role", "sender"])
        .args([
            "--email",
            "ada@consign.test",
            "--password-stdin",
            "--kafka",
            &brokers,
        ])
        .args(["--kafka-topic", &topic, "--data-dir"])
        .arg(work.path().join("admin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"ada-password-123\n")
        .unwrap();
    assert!(create.wait().unwrap().success(), "account create failed");

    let first_token = login(&client, &first.base).await;
    let second_token = login(&client, &second.base).await;

    let duration = Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..4u32 {
        let (base, token) = if worker % 2 == 0 {
            (first.base.clone(), first_token.clone())
        } else {
            (second.base.clone(), second_token.clone())
        };
        workers.push(tokio::spawn(submit_for(base, token, worker, duration)));
    }
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    for worker in workers {
        let (ids, refused) = worker.await.unwrap();
        acknowledged.extend(ids);
        unavailable += refused;
    }
    drop(first);
    drop(second);
    eprintln!(
        "{} submissions acknowledged in {seconds} s, {unavailable} answered 503",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > 20,
        "only {} acknowledged",
        acknowledged.len()
    );

    // The topic verifies on its own.
    let verify = Command::new(BIN)
        .args([
            "ledger",
            "verify",
            "--kafka",
            &brokers,
            "--kafka-topic",
            &topic,
            "--data-dir",
        ])
        .arg(work.path().join("verify"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("is intact"), "{report}");

    // A fresh copy contains every acknowledged submission exactly once.
    let options = KafkaOptions {
        brokers: brokers.clone(),
        topic: topic.clone(),
        sequence: Some(Vec::new()),
    };
    let (copy, status) = open_kafka_ledger(
        &work.path().join("copy"),
        EmbeddedOptions::default(),
        &options,
    )
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
    for delivery in &acknowledged {
        assert_eq!(submitted.get(delivery), Some(&1), "delivery {delivery}");
    }
    assert!(per_chain.iter().all(|count| *count > 0), "{per_chain:?}");
    copy.close();
}
