//! Crash safety: a child process appends from many tasks and is killed with SIGKILL at
//! a random moment. After each restart every acknowledged append is present with the
//! hash it was acknowledged with, and the chain verifies.
//!
//! The child is this test binary again, started with `CONSIGN_CRASH_CHILD_DIR` set, so
//! that it runs `crash_child` instead of the parent's test. It prints one line per
//! acknowledged event: `chain position hash`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consign_ledger::{AppendRequest, EmbeddedLedger, EmbeddedOptions};
use consign_schemas::{ChainId, Position};
use rand::Rng;

const CHILD_DIR_VARIABLE: &str = "CONSIGN_CRASH_CHILD_DIR";
const CHAINS: u32 = 2;
const ROUNDS: usize = 20;

#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VARIABLE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = EmbeddedOptions {
            chains: Some(CHAINS),
            ..EmbeddedOptions::default()
        };
        let ledger = Arc::new(EmbeddedLedger::open(&dir, options).unwrap());
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();

        for task in 0..32u64 {
            let ledger = Arc::clone(&ledger);
            let sender = sender.clone();
            tokio::spawn(async move {
                let chain = ChainId::new((task % u64::from(CHAINS)) as u32);
                for round in 0u64.. {
                    let size = 1 + (round % 3);
                    let events = (0..size)
                        .map(|index| common::withdrawal(task * 1_000_000 + round * 10 + index))
                        .collect();
                    let appended = ledger
                        .append(AppendRequest::new(chain, events))
                        .await
                        .unwrap();
                    for event in appended.events {
                        let line = format!("{} {} {}", chain, event.position, event.hash);
                        if sender.send(line).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(sender);

        println!("ready");
        let mut stdout = std::io::stdout().lock();
        while let Some(line) = receiver.recv().await {
            writeln!(stdout, "{line}").unwrap();
            stdout.flush().unwrap();
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var_os(CHILD_DIR_VARIABLE).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acknowledged: HashMap<(u32, u64), String> = HashMap::new();

    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VARIABLE, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

        loop {
            // The test harness prints `test crash_child ... ` without a newline first.
            let line = lines.next().expect("child prints ready").unwrap();
            if line.ends_with("ready") {
                break;
            }
        }
        let run_for = Duration::from_millis(rng.random_range(50..600));
        let started = Instant::now();
        let mut seen_this_round = 0;
        while started.elapsed() < run_for {
            let Some(Ok(line)) = lines.next() else { break };
            record(&mut acknowledged, &line);
            seen_this_round += 1;
        }

        // SIGKILL: no destructor, no flush, no chance to finish the group in flight.
        child.kill().unwrap();
        for line in lines.map_while(Result::ok) {
            record(&mut acknowledged, &line);
            seen_this_round += 1;
        }
        child.wait().unwrap();
        assert!(
            seen_this_round > 0,
            "round {round}: child acknowledged nothing"
        );

        check_restart(dir.path(), &acknowledged, round);
    }
}

fn record(acknowledged: &mut HashMap<(u32, u64), String>, line: &str) {
    let mut parts = line.split(' ');
    let chain: u32 = parts.next().unwrap().parse().unwrap();
    let position: u64 = parts.next().unwrap().parse().unwrap();
    let hash = parts.next().unwrap().to_owned();
    let previous = acknowledged.insert((chain, position), hash.clone());
    assert!(
        previous.is_none_or(|old| old == hash),
        "position {chain}/{position} acknowledged twice with different hashes"
    );
}

fn check_restart(dir: &std::path::Path, acknowledged: &HashMap<(u32, u64), String>, round: usize) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    for chain in ledger.chains() {
        let report = ledger
            .verify_chain(chain, Position::ZERO, None, &|_| {})
            .unwrap();
        assert_eq!(
            report.first_break, None,
            "round {round}: chain {chain} is broken"
        );
    }
    for (&(chain, position), hash) in acknowledged {
        let chain = ChainId::new(chain);
        let stored = ledger.read(chain, Position::new(position), 1).unwrap();
        assert_eq!(
            stored.len(),
            1,
            "round {round}: acknowledged event {chain}/{position} is missing"
        );
        assert_eq!(stored[0].position(), Position::new(position));
        assert_eq!(
            &stored[0].hash.to_hex(),
            hash,
            "round {round}: event {chain}/{position} changed"
        );
    }
}
