//! The persisted views while `consign serve` follows the ledger live and is killed with
//! SIGKILL in the middle of submissions and withdrawals, 20 times. After a catch-up the
//! views must equal a clean rebuild of the same ledger, which shows that no kill made the
//! live follower skip an event or apply one twice. Every acknowledged submission and
//! withdrawal must be in the ledger.
//!
//! Everything runs through the real binary: `ledger generate` creates a ledger of
//! three chains, `account create` opens the sender, each round starts `serve` on a
//! free loopback port, and the checks use `projections status`, `catch-up` and
//! `rebuild`, `ledger verify` and `ledger dump`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::multipart::{Form, Part};

mod fs_support;

use fs_support::copy_tree;

const ROUNDS: usize = 20;
/// Concurrent submission loops per round.
const SUBMITTERS: usize = 3;
/// Chains of the ledger, so that the follower interleaves several subscriptions.
const CHAINS: u32 = 3;
/// Range of the time a round runs before its kill, in milliseconds.
const ROUND_MILLIS: std::ops::RangeInclusive<u64> = 300..=2000;
const VIEWS: [&str; 4] = ["tracking", "billing", "audit", "schedule"];
const LOGIN: &str = "ada";
const PASSWORD: &str = "ada-password-for-kill-rounds";
const RECIPIENTS: [&str; 5] = [
    "bob@recipients.test",
    "chloe@recipients.test",
    "dmitri@recipients.test",
    "eve@recipients.test",
    "farid@recipients.test",
];
const BILLING_CODES: [&str; 3] = ["LEGAL-7", "OPS-2", "HR-11"];
const PRIORITIES: [&str; 3] = ["normal", "high", "urgent"];

fn consign() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consign"));
    command
        .env_remove("CONSIGN_DATA_DIR")
        .env("RUST_LOG", "warn");
    command
}

fn run(args: &[&str]) -> Output {
    consign().args(args).output().expect("consign runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed and returns its standard output.
fn run_ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "consign {} failed with {}: {}",
        args.join(" "),
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Returns the seed of the random choices: `CONSIGN_TEST_SEED` when set, else the clock.
fn test_seed() -> u64 {
    match std::env::var("CONSIGN_TEST_SEED") {
        Ok(seed) => seed.parse().expect("CONSIGN_TEST_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// Creates the ledger with [`CHAINS`] chains and opens the sender account.
fn create_ledger(data: &Path) {
    // Besides `serve`, only `ledger generate` sets the chain count of a new ledger. With
    // no deliveries it appends only the accounts of its workload.
    run_ok(&[
        "ledger",
        "generate",
        "--data-dir",
        data.to_str().unwrap(),
        "--deliveries",
        "0",
        "--chains",
        &CHAINS.to_string(),
    ]);
    let output = consign()
        .args([
            "account",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
            "--login",
            LOGIN,
            "--role",
            "sender",
            "--email",
            "ada@example.org",
        ])
        .env("CONSIGN_ACCOUNT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "account create failed: {}",
        text(&output.stderr)
    );
}

/// One line of `consign projections status --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ViewLine {
    view: String,
    state: String,
    entries: u64,
    lag: u64,
    chains: BTreeMap<u32, ChainLine>,
}

/// One view's chain in `consign projections status --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChainLine {
    /// Next position the view applies.
    position: u64,
    /// Next position the ledger appends.
    head: u64,
    lag: u64,
}

fn status_json(data: &Path) -> Vec<ViewLine> {
    run_ok(&[
        "projections",
        "status",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .lines()
    .map(|line| {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("status line {line:?} is not JSON: {error}"));
        let chains = value["chains"]
            .as_array()
            .unwrap_or_else(|| panic!("status line without chains: {line}"))
            .iter()
            .map(|chain| {
                (
                    chain["chain"].as_u64().unwrap() as u32,
                    ChainLine {
                        position: chain["position"].as_u64().unwrap(),
                        head: chain["head"].as_u64().unwrap(),
                        lag: chain["lag"].as_u64().unwrap(),
                    },
                )
            })
            .collect();
        ViewLine {
            view: value["view"].as_str().unwrap().to_owned(),
            state: value["state"].as_str().unwrap().to_owned(),
            entries: value["entries"].as_u64().unwrap(),
            lag: value["lag"].as_u64().unwrap(),
            chains,
        }
    })
    .collect()
}

/// Reads each chain's head from `consign ledger verify`, which must exit 0.
fn ledger_heads(data: &Path) -> BTreeMap<u32, u64> {
    let output = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "ledger verify: {stdout}{}",
        text(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| {
            let chain = line
                .strip_prefix("chain ")?
                .split(':')
                .next()?
                .parse()
                .ok()?;
            let head = line
                .split("head at ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((chain, head))
        })
        .collect()
}

/// Returns an unused loopback port. Another process may take it before the server
/// binds it, which [`start_server`] handles by trying another port.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `consign serve` child process and where it listens.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave a server holding the temporary folder.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `consign serve` and waits until `GET /healthz` returns 200. Its standard
/// error goes to `log`, so that a full pipe never blocks it.
async fn start_server(client: &reqwest::Client, data: &Path, log: &Path) -> Server {
    for _ in 0..3 {
        let port = free_port();
        let child = consign()
            .args([
                "serve",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                let log = server.log_text();
                if log.contains("in use") {
                    break;
                }
                panic!("consign serve exited with {status} before it was healthy: {log}");
            }
            let health = client
                .get(format!("{}/healthz", server.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "consign serve was not healthy within 30 s: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("three free ports were taken before consign serve could bind them");
}

async fn login(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({ "login": LOGIN, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login of {LOGIN}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// What the requests of every round observed.
#[derive(Debug, Default)]
struct Tally {
    /// Delivery ids of submissions that returned 201, in the order of the responses.
    submitted: Vec<String>,
    /// Delivery ids whose withdrawal returned 200.
    withdrawn: BTreeSet<String>,
    /// Delivery ids whose withdrawal returned 409, because a request whose response a
    /// kill cut off had withdrawn them already, or because they had expired.
    conflicted: BTreeSet<String>,
    /// Requests that got no complete response because the server was killed.
    cut_off: usize,
    /// Unexpected response statuses, and transport errors before the kill.
    unexpected: Vec<String>,
}

/// Builds a random small submission: one to three recipients, one or two documents of
/// up to 4 KiB, and random options. Some get a delivery date or an expiry a few seconds
/// ahead, so that the scheduler appends releases and expiries during the rounds.
fn random_submission(rng: &mut StdRng) -> Form {
    let count = rng.random_range(1..=3);
    let mut recipients: Vec<&str> = Vec::new();
    while recipients.len() < count {
        let address = RECIPIENTS[rng.random_range(0..RECIPIENTS.len())];
        if !recipients.contains(&address) {
            recipients.push(address);
        }
    }
    let mut metadata = serde_json::json!({
        "recipients": recipients,
        "subject": format!("Kill round document {}", rng.random::<u32>()),
        "receipt": rng.random_bool(0.5),
        "encrypt": rng.random_bool(0.3),
        "priority": PRIORITIES[rng.random_range(0..PRIORITIES.len())],
    });
    if rng.random_bool(0.7) {
        metadata["billing_code"] = BILLING_CODES[rng.random_range(0..BILLING_CODES.len())].into();
    }
    let now = jiff::Timestamp::now();
    let mut release = now;
    if rng.random_bool(0.2) {
        release = now + jiff::SignedDuration::from_millis(rng.random_range(5_000..15_000));
        metadata["deliver_at"] = release.to_string().into();
    }
    if rng.random_bool(0.2) {
        let expiry = release + jiff::SignedDuration::from_millis(rng.random_range(5_000..25_000));
        metadata["expires_at"] = expiry.to_string().into();
    }

    let mut form = Form::new().part("metadata", Part::text(metadata.to_string()));
    for index in 0..rng.random_range(1..=2) {
        let size = rng.random_range(1..=4096);
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes[..]);
        form = form.part(
            "document",
            Part::bytes(bytes).file_name(format!("document-{index}.bin")),
        );
    }
    form
}

/// Submits until a request fails because the server is gone.
async fn submit_until_killed(
    client: reqwest::Client,
    base: String,
    token: String,
    seed: u64,
    killed: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let sent = client
            .post(format!("{base}/api/deliveries"))
            .bearer_auth(&token)
            .multipart(random_submission(&mut rng))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                record_failure(&tally, &killed, "submission", &error);
                return;
            }
        };
        let status = response.status().as_u16();
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => {
                record_failure(&tally, &killed, "submission", &error);
                return;
            }
        };
        let mut tally = tally.lock().unwrap();
        if status != 201 {
            tally
                .unexpected
                .push(format!("submission returned {status}: {body}"));
            continue;
        }
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        let delivery = created["delivery"].as_str().unwrap().to_owned();
        tally.submitted.push(delivery);
    }
}

/// Withdraws random acknowledged deliveries, one every 20 to 200 ms, until a request
/// fails because the server is gone.
async fn withdraw_until_killed(
    client: reqwest::Client,
    base: String,
    token: String,
    seed: u64,
    killed: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
        let candidate = {
            let tally = tally.lock().unwrap();
            let open: Vec<&String> = tally
                .submitted
                .iter()
                .filter(|delivery| {
                    !tally.withdrawn.contains(*delivery) && !tally.conflicted.contains(*delivery)
                })
                .collect();
            if open.is_empty() {
                None
            } else {
                Some(open[rng.random_range(0..open.len())].clone())
            }
        };
        let Some(delivery) = candidate else {
            if killed.load(Ordering::SeqCst) {
                return;
            }
            continue;
        };

        let mut request = client
            .post(format!("{base}/api/deliveries/{delivery}/withdraw"))
            .bearer_auth(&token);
        if rng.random_bool(0.5) {
            request = request.json(&serde_json::json!({ "reason": "sent to the wrong office" }));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                record_failure(&tally, &killed, "withdrawal", &error);
                return;
            }
        };
        let status = response.status().as_u16();
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => {
                record_failure(&tally, &killed, "withdrawal", &error);
                return;
            }
        };
        let mut tally = tally.lock().unwrap();
        match status {
            200 => {
                tally.withdrawn.insert(delivery);
            }
            409 => {
                tally.conflicted.insert(delivery);
            }
            _ => tally.unexpected.push(format!(
                "withdrawal of {delivery} returned {status}: {body}"
            )),
        }
    }
}

/// Counts a transport error as cut off by the kill, or as unexpected before it.
fn record_failure(
    tally: &Mutex<Tally>,
    killed: &AtomicBool,
    request: &str,
    error: &reqwest::Error,
) {
    let mut tally = tally.lock().unwrap();
    if killed.load(Ordering::SeqCst) {
        tally.cut_off += 1;
    } else {
        tally
            .unexpected
            .push(format!("{request} failed before the kill: {error:#}"));
    }
}

/// Returns the text of `consign ledger dump` for every chain.
fn dump_all(data: &Path, chains: u32) -> String {
    let mut dump = String::new();
    for chain in 0..chains {
        dump.push_str(&run_ok(&[
            "ledger",
            "dump",
            "--data-dir",
            data.to_str().unwrap(),
            "--chain",
            &chain.to_string(),
        ]));
    }
    dump
}

/// Returns the delivery of every event of type `kind` in a dump.
fn deliveries_of_kind(dump: &str, kind: &str) -> BTreeSet<String> {
    dump.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["type"] == kind)
        .map(|event| event["payload"]["delivery"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_views_survive_kills() {
    let seed = test_seed();
    println!("seed {seed}; set CONSIGN_TEST_SEED={seed} to repeat the round lengths and requests");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_ledger(&data);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut lagging = 0;
    for round in 0..ROUNDS {
        let log = dir.path().join(format!("serve-{round}.log"));
        let mut server = start_server(&client, &data, &log).await;
        let token = login(&client, &server.base).await;
        let killed = Arc::new(AtomicBool::new(false));
        let acknowledged_before = tally.lock().unwrap().submitted.len();
        let cut_off_before = tally.lock().unwrap().cut_off;

        let mut tasks = Vec::new();
        for _ in 0..SUBMITTERS {
            tasks.push(tokio::spawn(submit_until_killed(
                client.clone(),
                server.base.clone(),
                token.clone(),
                rng.random(),
                Arc::clone(&killed),
                Arc::clone(&tally),
            )));
        }
        tasks.push(tokio::spawn(withdraw_until_killed(
            client.clone(),
            server.base.clone(),
            token.clone(),
            rng.random(),
            Arc::clone(&killed),
            Arc::clone(&tally),
        )));

        let run_for = Duration::from_millis(rng.random_range(ROUND_MILLIS));
        tokio::time::sleep(run_for).await;
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "round {round}: consign serve exited with {status} before the kill: {}",
                server.log_text()
            );
        }
        // SIGKILL: no destructor runs, and the appends and view batches in flight are
        // cut off wherever they are.
        killed.store(true, Ordering::SeqCst);
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for task in tasks {
            task.await.unwrap();
        }

        let lines = status_json(&data);
        for line in &lines {
            for (chain, status) in &line.chains {
                // The lag saturates at 0, so only the positions show a view past the head.
                assert!(
                    status.position <= status.head,
                    "round {round}: {} chain {chain} is past the ledger head: {status:?}",
                    line.view
                );
            }
        }
        let behind: u64 = lines.iter().map(|line| line.lag).sum();
        if behind > 0 {
            lagging += 1;
        }
        let tally = tally.lock().unwrap();
        println!(
            "round {round}: killed after {run_for:?}, {} submissions acknowledged, {} requests \
             cut off, views {behind} events behind in total",
            tally.submitted.len() - acknowledged_before,
            tally.cut_off - cut_off_before,
        );
    }
    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    println!(
        "{ROUNDS} rounds in {:?}: {} submissions and {} withdrawals acknowledged, {} \
         withdrawals returned 409, {} requests cut off by kills, {lagging} kills left views \
         behind",
        started.elapsed(),
        tally.submitted.len(),
        tally.withdrawn.len(),
        tally.conflicted.len(),
        tally.cut_off,
    );
    assert!(
        tally.unexpected.is_empty(),
        "unexpected responses:\n{}",
        tally.unexpected.join("\n")
    );
    assert!(
        tally.cut_off > 0,
        "no request was cut off by a kill, so no kill hit the server under load"
    );
    assert!(
        !tally.submitted.is_empty(),
        "no submission was acknowledged"
    );

    // The views may lag after the last kill, and a catch-up brings them to every head.
    let phase = Instant::now();
    let before = status_json(&data);
    assert_eq!(before.len(), VIEWS.len(), "status prints one line per view");
    let behind: u64 = before.iter().map(|line| line.lag).sum();
    println!("after the last kill the views were {behind} events behind in total");
    run_ok(&[
        "projections",
        "catch-up",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let caught_up = status_json(&data);
    println!("status, catch-up and status took {:?}", phase.elapsed());
    let phase = Instant::now();
    let heads = ledger_heads(&data);
    assert_eq!(
        heads.len(),
        CHAINS as usize,
        "ledger verify lists every chain"
    );
    println!("ledger verify took {:?}", phase.elapsed());
    let names: Vec<&str> = caught_up.iter().map(|line| line.view.as_str()).collect();
    assert_eq!(names, VIEWS);
    for line in &caught_up {
        assert_eq!(line.lag, 0, "{} after catch-up: {line:?}", line.view);
        for (chain, status) in &line.chains {
            assert_eq!(status.lag, 0, "{} chain {chain} after catch-up", line.view);
            assert_eq!(
                status.position, heads[chain],
                "{} chain {chain} after catch-up",
                line.view
            );
            assert_eq!(
                status.head, heads[chain],
                "{} chain {chain}: status and ledger verify disagree on the head",
                line.view
            );
        }
    }

    // A rebuild from position zero of a copy of the same ledger is the reference.
    let phase = Instant::now();
    let copy = dir.path().join("copy");
    copy_tree(&data, &copy);
    run_ok(&[
        "projections",
        "rebuild",
        "--data-dir",
        copy.to_str().unwrap(),
    ]);
    let rebuilt = status_json(&copy);
    println!("copy, rebuild and status took {:?}", phase.elapsed());
    assert_eq!(rebuilt.len(), VIEWS.len());
    for (live, clean) in caught_up.iter().zip(&rebuilt) {
        assert_eq!(live.view, clean.view);
        assert_eq!(
            live.chains, clean.chains,
            "{}: positions of the live views and of the rebuild differ",
            live.view
        );
        assert_eq!(
            live.entries, clean.entries,
            "{}: entry count of the live view differs from a clean rebuild",
            live.view
        );
        assert_eq!(
            live.state, clean.state,
            "{}: state digest of the live view differs from a clean rebuild",
            live.view
        );
    }

    // Every acknowledged submission and withdrawal is in the ledger.
    let phase = Instant::now();
    let dump = dump_all(&data, CHAINS);
    // Every quoted string of the dump, so that looking up thousands of ids stays linear
    // in the dump's length.
    let quoted: HashSet<&str> = dump.split('"').collect();
    for delivery in &tally.submitted {
        assert!(
            quoted.contains(delivery.as_str()),
            "acknowledged delivery {delivery} is missing from the ledger dump"
        );
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in dump.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = event["type"].as_str().unwrap_or("undecodable").to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    println!("events in the ledger by type: {kinds:?}");
    let submitted = deliveries_of_kind(&dump, "DeliverySubmitted");
    for delivery in &tally.submitted {
        assert!(
            submitted.contains(delivery),
            "acknowledged delivery {delivery} has no DeliverySubmitted event"
        );
    }
    let withdrawn = deliveries_of_kind(&dump, "DeliveryWithdrawn");
    let expired = deliveries_of_kind(&dump, "DeliveryExpired");
    for delivery in &tally.withdrawn {
        assert!(
            withdrawn.contains(delivery),
            "acknowledged withdrawal of {delivery} has no DeliveryWithdrawn event"
        );
    }
    for delivery in &tally.conflicted {
        assert!(
            withdrawn.contains(delivery) || expired.contains(delivery),
            "withdrawal of {delivery} returned 409 but the delivery has no \
             DeliveryWithdrawn or DeliveryExpired event"
        );
    }
    println!(
        "ledger dump and its checks took {:?}; whole test {:?}",
        phase.elapsed(),
        started.elapsed()
    );

    // A start removes documents that a kill left stored without their submission, so
    // afterwards every stored document belongs to a DocumentUploaded event.
    let log = dir.path().join("serve-final.log");
    let server = start_server(&client, &data, &log).await;
    drop(server);
    let objects = count_files(&data.join("blobs").join("objects"));
    assert_eq!(
        objects,
        kinds.get("DocumentUploaded").copied().unwrap_or(0),
        "stored documents against DocumentUploaded events after a restart"
    );
}

/// Counts the files below `dir`.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| if path.is_dir() { count_files(&path) } else { 1 })
        .sum()
}
