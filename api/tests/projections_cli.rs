//! The `consign projections` commands as an operator runs them: the real binary on
//! generated ledgers, the printed digests and positions, the exit codes, and views that
//! reach the same state after repeated SIGKILLs as after one clean rebuild.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod fs_support;

use fs_support::copy_tree;

const VIEWS: [&str; 4] = ["tracking", "billing", "audit", "schedule"];

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
        "consign {} failed: {}",
        args.join(" "),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn generate(dir: &Path, deliveries: u32, chains: u32) {
    run_ok(&[
        "ledger",
        "generate",
        "--data-dir",
        dir.to_str().unwrap(),
        "--deliveries",
        &deliveries.to_string(),
        "--chains",
        &chains.to_string(),
        "--no-sync",
    ]);
}

/// One row of the table that `rebuild`, `catch-up` and `status` print.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    view: String,
    chain: u32,
    position: u64,
    head: u64,
    lag: u64,
    entries: u64,
    state: String,
}

/// Parses the table after its header line; lines before the header are skipped.
fn parse_table(stdout: &str) -> Vec<Row> {
    let mut lines = stdout.lines().skip_while(|line| !line.starts_with("VIEW "));
    let header = lines.next().expect("output has a table header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "VIEW", "CHAIN", "POSITION", "HEAD", "LAG", "ENTRIES", "STATE"
        ]
    );
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 7, "table row {line:?}");
            Row {
                view: cells[0].to_owned(),
                chain: cells[1].parse().unwrap(),
                position: cells[2].parse().unwrap(),
                head: cells[3].parse().unwrap(),
                lag: cells[4].parse().unwrap(),
                entries: cells[5].parse().unwrap(),
                state: cells[6].to_owned(),
            }
        })
        .collect()
}

/// Returns each view's state digest from table rows.
fn digests(rows: &[Row]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|row| (row.view.clone(), row.state.clone()))
        .collect()
}

fn rebuild(dir: &Path, view: Option<&str>) -> String {
    let mut args = vec![
        "projections",
        "rebuild",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    if let Some(view) = view {
        args.extend(["--view", view]);
    }
    run_ok(&args)
}

fn status_table(dir: &Path) -> Vec<Row> {
    parse_table(&run_ok(&[
        "projections",
        "status",
        "--data-dir",
        dir.to_str().unwrap(),
    ]))
}

fn status_json(dir: &Path) -> Vec<serde_json::Value> {
    run_ok(&[
        "projections",
        "status",
        "--json",
        "--data-dir",
        dir.to_str().unwrap(),
    ])
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

/// Reads each chain's head from `consign ledger verify`, independently of the views.
fn ledger_heads(dir: &Path) -> BTreeMap<u32, u64> {
    let stdout = run_ok(&["ledger", "verify", "--data-dir", dir.to_str().unwrap()]);
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

/// Appends one event to the ledger by opening an account.
fn open_account(dir: &Path) {
    let output = consign()
        .args([
            "account",
            "create",
            "--data-dir",
            dir.to_str().unwrap(),
            "--login",
            "late-sender",
            "--role",
            "sender",
            "--email",
            "late-sender@consign.test",
        ])
        .env("CONSIGN_ACCOUNT_PASSWORD", "late-sender-password-1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn rebuild_then_status_agree() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 300, 3);
    let heads = ledger_heads(dir.path());
    assert_eq!(heads.len(), 3, "ledger verify lists every chain");

    let rebuilt = parse_table(&rebuild(dir.path(), None));
    assert_eq!(rebuilt.len(), VIEWS.len() * 3, "one row per view and chain");
    for row in &rebuilt {
        assert_eq!(row.position, heads[&row.chain], "{row:?}");
        assert_eq!(row.head, heads[&row.chain], "{row:?}");
        assert_eq!(row.lag, 0, "{row:?}");
        assert_eq!(row.state.len(), 64, "{row:?}");
    }

    assert_eq!(status_table(dir.path()), rebuilt);

    let lines = status_json(dir.path());
    let views: Vec<&str> = lines
        .iter()
        .map(|line| line["view"].as_str().unwrap())
        .collect();
    assert_eq!(views, VIEWS);
    let rebuilt_digests = digests(&rebuilt);
    for line in &lines {
        let view = line["view"].as_str().unwrap();
        assert_eq!(line["state"], rebuilt_digests[view].as_str(), "{view}");
        assert_eq!(line["lag"], 0, "{view}");
        for chain in line["chains"].as_array().unwrap() {
            let head = heads[&(chain["chain"].as_u64().unwrap() as u32)];
            assert_eq!(chain["position"], head, "{view}: {chain}");
            assert_eq!(chain["head"], head, "{view}: {chain}");
            assert_eq!(chain["lag"], 0, "{view}: {chain}");
        }
    }
}

#[test]
fn second_rebuild_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 300, 2);

    let first = digests(&parse_table(&rebuild(dir.path(), None)));
    let second = digests(&parse_table(&rebuild(dir.path(), None)));
    assert_eq!(first.len(), VIEWS.len());
    assert_eq!(second, first);
}

#[test]
fn rebuild_one_view_only() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 200, 1);
    let before = parse_table(&rebuild(dir.path(), None));
    let head = before[0].head;

    // One more event, so that a rebuilt view ends one position past the others.
    open_account(dir.path());
    let stdout = rebuild(dir.path(), Some("billing"));
    let summary = stdout.lines().next().unwrap();
    let expected = format!(
        "rebuilt billing from position zero: {} events applied",
        head + 1
    );
    assert!(summary.starts_with(&expected), "{summary}");
    let rebuilt = parse_table(&stdout);
    assert_eq!(rebuilt.len(), 1, "only billing is printed");
    assert_eq!(rebuilt[0].view, "billing");
    assert_eq!(rebuilt[0].position, head + 1);

    let after = status_table(dir.path());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.view, old.view);
        if new.view == "billing" {
            assert_eq!(new.position, head + 1);
            assert_eq!(new.lag, 0);
        } else {
            assert_eq!(new.position, old.position, "{} moved", new.view);
            assert_eq!(new.state, old.state, "{} changed", new.view);
            assert_eq!(new.lag, 1, "{}", new.view);
        }
    }
}

#[test]
fn catch_up_applies_only_new_events() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 200, 1);
    rebuild(dir.path(), None);
    open_account(dir.path());

    let stdout = run_ok(&[
        "projections",
        "catch-up",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let summary = stdout.lines().next().unwrap();
    assert!(
        summary.starts_with("caught up tracking, billing, audit and schedule: 1 event applied"),
        "{summary}"
    );
    for row in parse_table(&stdout) {
        assert_eq!(row.lag, 0, "{row:?}");
    }

    let rebuilt = digests(&parse_table(&rebuild(dir.path(), None)));
    assert_eq!(digests(&parse_table(&stdout)), rebuilt);
}

#[test]
fn unknown_view_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 20, 1);

    let output = run(&[
        "projections",
        "rebuild",
        "--view",
        "invoices",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("view \"invoices\" does not exist"),
        "{stderr}"
    );
    for view in VIEWS {
        assert!(stderr.contains(view), "{view} missing from: {stderr}");
    }
    assert!(
        !dir.path().join("views").exists(),
        "the view store was created"
    );

    // Before any rebuild, status names the command that builds the views and creates
    // nothing.
    let output = run(&[
        "projections",
        "status",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no view has been built"), "{stderr}");
    assert!(stderr.contains("consign projections rebuild"), "{stderr}");
    assert!(
        !dir.path().join("views").exists(),
        "status created the view store"
    );
}

#[test]
fn locked_data_dir_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // A generator that does not finish keeps the data directory locked, as a server does.
    let mut holder = consign()
        .args([
            "ledger",
            "generate",
            "--data-dir",
            data,
            "--deliveries",
            "100000000",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let lock = dir.path().join("consign.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != holder.id().to_string() {
        assert!(Instant::now() < deadline, "generator never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let rebuild = run(&["projections", "rebuild", "--data-dir", data]);
    let status = run(&["projections", "status", "--data-dir", data]);
    holder.kill().unwrap();
    holder.wait().unwrap();

    let pid = format!("(pid {})", holder.id());
    for (command, output) in [("rebuild", rebuild), ("status", status)] {
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains(&pid), "{command}: {stderr}");
        assert!(stderr.contains("stop it first"), "{command}: {stderr}");
    }
}

/// Returns the seed of the kill delays: `CONSIGN_TEST_SEED` when set, else the clock.
fn kill_seed() -> u64 {
    match std::env::var("CONSIGN_TEST_SEED") {
        Ok(seed) => seed.parse().expect("CONSIGN_TEST_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

#[test]
fn killed_rebuilds_resume_exactly() {
    use std::os::unix::process::ExitStatusExt;

    const ROUNDS: usize = 20;
    let seed = kill_seed();
    println!("kill delay seed {seed}; set CONSIGN_TEST_SEED={seed} to repeat the delays");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 4000, 4);

    // One uninterrupted rebuild gives the reference digests and the time a kill may
    // land in, measured on this machine under its current load.
    let started = Instant::now();
    let reference = digests(&parse_table(&rebuild(&data, None)));
    let full_run = started.elapsed();
    println!("full rebuild took {full_run:?}");

    let mut interrupted = 0;
    let mut lagging = 0;
    for round in 0..ROUNDS {
        let delay = Duration::from_millis(rng.random_range(0..=full_run.as_millis() as u64));
        let mut child = consign()
            .args([
                "projections",
                "rebuild",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SIGKILL: no destructor runs and the batch in flight is cut off.
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        match output.status.signal() {
            Some(9) => interrupted += 1,
            _ => assert!(
                output.status.success(),
                "round {round}: rebuild failed before the kill: {}",
                text(&output.stderr)
            ),
        }

        let rows = status_table(&data);
        assert_eq!(rows.len(), VIEWS.len() * 4, "round {round}");
        for row in &rows {
            assert!(row.position <= row.head, "round {round}: {row:?}");
        }
        let behind: u64 = rows.iter().map(|row| row.lag).sum();
        if behind > 0 {
            lagging += 1;
        }
        println!("round {round}: killed after {delay:?}, views {behind} events behind in total");
    }
    println!("{interrupted} of {ROUNDS} kills cut a rebuild short, {lagging} left views behind");
    assert!(lagging > 0, "no kill left a view behind the ledger head");

    let copy = dir.path().join("copy");
    copy_tree(&data, &copy);
    let clean = digests(&parse_table(&rebuild(&copy, None)));
    assert_eq!(
        clean, reference,
        "a clean rebuild differs from the first one"
    );

    let resumed = parse_table(&run_ok(&[
        "projections",
        "catch-up",
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    for row in &resumed {
        assert_eq!(row.lag, 0, "{row:?}");
    }
    assert_eq!(digests(&resumed), clean);
}

#[test]
fn damaged_view_store_names_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    generate(dir, 300, 1);
    rebuild(dir, None);
    let healthy = digests(&status_table(dir));

    // Move the views into table files, then damage the largest one.
    let views = dir.join("views");
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &views).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &views, &families).unwrap();
    for family in &families {
        db.flush_cf(db.cf_handle(family).unwrap()).unwrap();
    }
    drop(db);
    let largest = std::fs::read_dir(&views)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sst"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("the views have table files");
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 4;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    std::fs::write(&largest, bytes).unwrap();

    let damaged = run(&["projections", "status", "--data-dir", dir.to_str().unwrap()]);
    let stderr = text(&damaged.stderr);
    assert_eq!(damaged.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("its files are damaged"), "{stderr}");
    assert!(
        stderr.contains("delete the view store directory"),
        "{stderr}"
    );

    // The fix the message names works.
    std::fs::remove_dir_all(&views).unwrap();
    run_ok(&[
        "projections",
        "catch-up",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(digests(&status_table(dir)), healthy);
}
