//! `consign serve` on a damaged or mismatched data directory: a ledger folder without
//! its CURRENT file, a key folder that did not sign the ledger's checkpoints, and a
//! ledger write that failed on a full disk. Each is refused or reported instead of
//! being papered over.

mod cli_support;
mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cli_support::{SmallDisk, consign, file_digests, generate, run, text};
use consign_ledger::Clock;
use consign_schemas::events::Role;
use support::{Server, open_account};

/// Runs `consign serve` on `data` with `extra` options until it exits, and returns its
/// output. A server that does start is killed after 20 s, so the caller's checks fail.
fn rejected_serve(data: &Path, extra: &[&str]) -> Output {
    let mut child = consign()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ledger_without_current_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 5);
    std::fs::remove_file(data.join("ledger/CURRENT")).unwrap();
    let before = file_digests(&data.join("ledger"));

    let served = rejected_serve(&data, &[]);
    let stderr = text(&served.stderr);
    assert_eq!(served.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("but no CURRENT file"), "{stderr}");
    assert!(
        stderr.contains("restore the directory from a backup"),
        "{stderr}"
    );
    assert_eq!(
        file_digests(&data.join("ledger")),
        before,
        "the refused start changed the ledger folder"
    );

    // verify names the damage instead of advising a new ledger.
    let verified = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    let output = format!("{}{}", text(&verified.stdout), text(&verified.stderr));
    assert_ne!(verified.status.code(), Some(0), "{output}");
    assert!(output.contains("but no CURRENT file"), "{output}");
}

#[test]
fn key_folder_of_another_ledger_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let other = work.path().join("other");
    generate(&data, 5);
    generate(&other, 5);

    // A key folder that lost the keys, and the key folder of another ledger.
    let empty = work.path().join("empty-keys");
    std::fs::create_dir(&empty).unwrap();
    let other_keys = other.join("keys");
    for keys in [&empty, &other_keys] {
        let served = rejected_serve(&data, &["--keys-dir", keys.to_str().unwrap()]);
        let stderr = text(&served.stderr);
        assert_eq!(served.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("has checkpoints signed with"), "{stderr}");
        assert!(stderr.contains("give --keys-dir this ledger's"), "{stderr}");
    }
    let created: Vec<_> = std::fs::read_dir(&empty).unwrap().collect();
    assert!(created.is_empty(), "the refused start created keys");
}

/// Returns the status and body of `GET /healthz`.
async fn health(server: &Server) -> (u16, serde_json::Value) {
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_failed_ledger_write() {
    let disk = SmallDisk::mount("16m");
    let data = disk.path.join("data");
    open_account(&data, "ada", Role::Sender).await;
    let server = Server::start(&data, Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");

    // Fill the disk, then define mailing lists until a ledger write fails.
    let filler = disk.path.join("filler");
    assert!(std::fs::write(&filler, vec![0u8; 32 << 20]).is_err());
    let members: Vec<String> = (0..1000)
        .map(|index| format!("member{index}@recipients.test"))
        .collect();
    let mut failed = false;
    for round in 0..50 {
        let response = server
            .client
            .put(server.url(&format!("/api/lists/list{round}")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "members": members }))
            .send()
            .await
            .unwrap();
        if response.status().is_server_error() {
            failed = true;
            break;
        }
    }
    assert!(failed, "no ledger write failed on the full disk");

    // The failure stays until a restart, also once space is free again.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("until consign is restarted"), "{reason}");
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await;
}
