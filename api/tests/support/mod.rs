//! Shared fixtures of the server tests: a consign server running in the test process on
//! a loopback port (with the system clock or a manual one), accounts opened before it
//! starts, and the real SMTP server of the notifier tests (`smtp_server.py`, aiosmtpd)
//! as a child process.
//!
//! When Python 3 or aiosmtpd is missing, starting the SMTP server panics with the
//! install command: the tests fail rather than skip.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use consign_api::app::NewAccount;
use consign_api::cli::{Cli, Command as CliCommand};
use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Password of every account the fixtures open: the login followed by this suffix.
pub const PASSWORD_SUFFIX: &str = "-password-123";

/// Returns the password of a fixture account.
pub fn password_of(login: &str) -> String {
    format!("{login}{PASSWORD_SUFFIX}")
}

/// Opens an account in a data directory that no server has open.
pub async fn open_account(data_dir: &Path, login: &str, role: Role) {
    let data_dir = data_dir.to_path_buf();
    let login = login.to_owned();
    tokio::task::spawn_blocking(move || open_account_blocking(&data_dir, &login, role))
        .await
        .unwrap();
}

fn open_account_blocking(data_dir: &Path, login: &str, role: Role) {
    let account = NewAccount {
        login: login.to_owned(),
        display_name: format!("{login} (test)"),
        email: format!("{login}@consign.test"),
        role,
        password: password_of(login),
    };
    consign_api::cli::account::open_account(data_dir, &account).unwrap();
}

/// A consign server running in this test process.
pub struct Server {
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// Starts `consign serve` on 127.0.0.1 port 0 with `extra` options.
    pub async fn start(data_dir: &Path, clock: Clock, extra: &[&str]) -> Self {
        let mut argv: Vec<String> = ["consign", "serve", "--listen", "127.0.0.1:0", "--data-dir"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        argv.push(data_dir.display().to_string());
        argv.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let CliCommand::Serve(args) = Cli::parse_from(argv).command else {
            unreachable!("the arguments name the serve subcommand");
        };

        let (bound_sender, bound) = oneshot::channel::<SocketAddr>();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(consign_api::serve::run(
            args,
            clock,
            Some(bound_sender),
            async {
                let _ = stop.await;
            },
        ));
        let address = match tokio::time::timeout(Duration::from_secs(30), bound).await {
            Ok(Ok(address)) => address,
            _ => {
                let outcome = task.await.unwrap();
                panic!("the server did not start: {outcome:?}");
            }
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base: format!("http://{address}"),
            data_dir: data_dir.to_path_buf(),
            client,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits until the ledger is closed.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        // The follower tasks release the database when they are next polled after
        // their abort; give the runtime a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, login: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/login"))
            .json(&serde_json::json!({ "login": login, "password": password_of(login) }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login of {login}");
        let body: serde_json::Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Counts the files below `dir`, or 0 when it does not exist.
pub fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// Returns the `chains` array of `GET /healthz`: each chain's next position and head.
pub async fn chain_heads(server: &Server) -> Value {
    let health: Value = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["chains"].clone()
}

/// What the server has written: every chain's next position and the number of files
/// under `blobs/objects` and `blobs/tmp`. A refused request leaves it unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub heads: Vec<Value>,
    pub objects: usize,
    pub tmp: usize,
}

pub async fn snapshot(server: &Server) -> Snapshot {
    let heads = chain_heads(server)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|chain| chain["next_position"].clone())
        .collect();
    Snapshot {
        heads,
        objects: count_files(&server.data_dir.join("blobs/objects")),
        tmp: count_files(&server.data_dir.join("blobs/tmp")),
    }
}

/// Reads every `.eml` file of a folder, sorted by name.
pub fn read_messages(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// Waits until `dir` contains at least `count` messages.
pub async fn wait_for_messages(dir: &Path, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let messages = read_messages(dir);
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages arrived in {} within {timeout:?}",
            messages.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the private links (`BASE/d/TOKEN`) in a message's text body.
pub fn links_in(message: &[u8], base: &str) -> Vec<String> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let prefix = format!("{base}/d/");
    text.split_whitespace()
        .filter(|word| word.starts_with(&prefix))
        .map(|word| word.trim_end_matches(['.', ',', ')', '>']).to_owned())
        .collect()
}

/// `notifier/tests/smtp_server.py` as a child process on 127.0.0.1.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub messages_dir: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        let work_dir = tempfile::tempdir().unwrap();
        let messages_dir = work_dir.path().join("messages");
        std::fs::create_dir(&messages_dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../notifier/tests/smtp_server.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let log = std::fs::File::create(work_dir.path().join("server.log")).unwrap();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("0")
            .arg(&messages_dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {python}: {error}; install Python 3 and `python3 -m pip install aiosmtpd`")
            });
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
        else {
            let log =
                std::fs::read_to_string(work_dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "the SMTP server did not start (stdout {line:?}); install aiosmtpd with \
                 `python3 -m pip install aiosmtpd`. Its log:\n{log}"
            );
        };
        Self {
            child,
            port,
            messages_dir,
            _work_dir: work_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
