//! `consign audit replay` as an auditor runs it. A real server records a delivery that
//! the recipient opens and downloads, and then stops. The built binary replays the
//! delivery before the download, before the opening and at the end, by position and by
//! time, with and without the audit view. Bad input gets a message that names the
//! value.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use support::{Server, links_in, open_account, wait_for_messages};

fn replay(data_dir: &Path, delivery: &str, as_of: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consign"))
        .env_remove("CONSIGN_DATA_DIR")
        .env("RUST_LOG", "warn")
        .args(["audit", "replay", "--data-dir", data_dir.to_str().unwrap()])
        .args(["--delivery", delivery, "--as-of", as_of])
        .args(extra)
        .output()
        .expect("consign runs")
}

/// Replays with `--json` and returns the state, failing on any error.
fn replay_json(data_dir: &Path, delivery: &str, as_of: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let output = replay(data_dir, delivery, as_of, &args);
    assert!(
        output.status.success(),
        "replay as of {as_of} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Replays expecting the exit status 2 and returns standard error.
fn replay_error(data_dir: &Path, delivery: &str, as_of: &str) -> String {
    let output = replay(data_dir, delivery, as_of, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "as of {as_of}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "as of {as_of}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// Returns the RFC 3339 form of a sequencer time in microseconds.
fn rfc3339(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .unwrap()
        .to_string()
}

/// Reads the audit history until it has an event of type `kind`.
async fn history_with(server: &Server, token: &str, delivery: &str, kind: &str) -> Vec<Value> {
    let path = format!("/api/audit/deliveries/{delivery}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = server
            .client
            .get(server.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let history: Value = response.json().await.unwrap();
            let events = history["events"].as_array().unwrap().clone();
            if events.iter().any(|event| event["type"] == kind) {
                return events;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} in the history of {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_of<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .find(|event| event["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {events:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_delivery_at_each_cutoff() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path();
    open_account(data_dir, "ada", Role::Sender).await;
    open_account(data_dir, "audrey", Role::Auditor).await;
    let server = Server::start(data_dir, Clock::system(), &[]).await;
    let ada = server.login("ada").await;
    let audrey = server.login("audrey").await;

    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Quarterly report",
        "postmark": true,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(vec![5u8; 3000]).file_name("report.pdf"),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&ada)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let submitted: Value = response.json().await.unwrap();
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();

    // The link e-mail's outcome is recorded before the recipient opens the link, so
    // the cut-off before the opening has a notified recipient.
    let outbox = data_dir.join("outbox");
    let messages = wait_for_messages(&outbox, 1, Duration::from_secs(10)).await;
    history_with(&server, &audrey, &delivery, "NotificationSent").await;
    let link = links_in(&messages[0], &server.base).remove(0);
    let page = server
        .client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The first link of the page is its stylesheet, so find the document link.
    let href = page
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains("/documents/"))
        .unwrap()
        .to_owned();
    let document = server.client.get(server.url(&href)).send().await.unwrap();
    assert_eq!(document.bytes().await.unwrap().len(), 3000);
    let events = history_with(&server, &audrey, &delivery, "DocumentDownloaded").await;
    server.stop().await;

    let submission = event_of(&events, "DeliverySubmitted");
    let opened = event_of(&events, "DeliveryOpened");
    let downloaded = event_of(&events, "DocumentDownloaded");
    let last = events.last().unwrap();
    let submission_position = submission["position"].as_u64().unwrap();
    let download_position = downloaded["position"].as_u64().unwrap();
    let opened_time = opened["time"].as_i64().unwrap();

    // At the end: opened, downloaded, postmarked, and the last event is the history's.
    let end = replay_json(data_dir, &delivery, &last["position"].to_string(), &[]);
    let recipient = &end["recipients"][0];
    assert_eq!(end["delivery"], delivery.as_str());
    assert_eq!(end["subject"], "Quarterly report");
    assert_eq!(end["last_event"]["position"], last["position"]);
    assert_eq!(end["last_event"]["hash"], last["hash"]);
    assert_eq!(
        end["last_event"]["time"],
        rfc3339(last["time"].as_i64().unwrap())
    );
    assert_eq!(end["events_counted"], events.len());
    assert_eq!(recipient["address"], "bob@recipients.test");
    assert_eq!(recipient["status"], "downloaded");
    assert_eq!(recipient["opened_at"], rfc3339(opened_time));
    assert_eq!(recipient["downloads"].as_array().unwrap().len(), 1);
    assert_eq!(
        recipient["downloads"][0]["at"],
        rfc3339(downloaded["time"].as_i64().unwrap())
    );
    assert_eq!(end["documents"][0]["file_name"], "report.pdf");
    assert_eq!(
        end["documents"][0]["blake3"],
        submitted["documents"][0]["blake3"]
    );
    assert_eq!(end["documents"][0]["size"], 3000);
    assert_eq!(end["postmark"]["submission_hash"], submission["hash"]);
    assert_eq!(
        end["postmark"]["key_id"]
            .as_str()
            .map(|id| id.starts_with("ed25519-")),
        Some(true)
    );
    assert_eq!(
        end["released_at"],
        rfc3339(
            event_of(&events, "DeliveryReleased")["time"]
                .as_i64()
                .unwrap()
        )
    );
    assert_eq!(end["withdrawn"], Value::Null);
    assert_eq!(end["expired_at"], Value::Null);

    // The same state by time, and from a read of the chain without the audit view.
    let far_future = replay_json(data_dir, &delivery, "2999-01-01T00:00:00Z", &[]);
    assert_eq!(far_future["recipients"], end["recipients"]);
    assert_eq!(far_future["last_event"], end["last_event"]);
    let now = replay_json(data_dir, &delivery, "now", &[]);
    assert_eq!(now["last_event"], end["last_event"]);
    let scanned = replay_json(
        data_dir,
        &delivery,
        &last["position"].to_string(),
        &["--scan"],
    );
    assert_eq!(scanned, end);

    // Just before the download: opened, nothing downloaded yet.
    let before_download = (download_position - 1).to_string();
    let state = replay_json(data_dir, &delivery, &before_download, &[]);
    let recipient = &state["recipients"][0];
    assert_eq!(recipient["status"], "opened");
    assert_eq!(recipient["opened_at"], rfc3339(opened_time));
    assert_eq!(recipient["downloads"], serde_json::json!([]));
    let counted_before: Vec<&Value> = events
        .iter()
        .filter(|event| event["position"].as_u64().unwrap() < download_position)
        .collect();
    assert_eq!(
        state["last_event"]["position"],
        counted_before.last().unwrap()["position"]
    );
    assert_eq!(state["events_counted"], counted_before.len());
    assert_eq!(
        replay_json(data_dir, &delivery, &before_download, &["--scan"]),
        state
    );

    // A microsecond before the opening: notified, neither opened nor downloaded.
    let before_opening = rfc3339(opened_time - 1);
    let state = replay_json(data_dir, &delivery, &before_opening, &[]);
    let recipient = &state["recipients"][0];
    assert_eq!(recipient["status"], "notified");
    assert_eq!(
        recipient["notified_at"],
        rfc3339(
            event_of(&events, "NotificationSent")["time"]
                .as_i64()
                .unwrap()
        )
    );
    assert_eq!(recipient["opened_at"], Value::Null);
    assert_eq!(recipient["opens"], 0);
    assert_eq!(recipient["downloads"], serde_json::json!([]));
    let last_time: jiff::Timestamp = state["last_event"]["time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last_time.as_microsecond() < opened_time, "{state}");
    assert_eq!(state["as_of"]["time"], before_opening);

    // The text output names the state, the document and the last event.
    let output = replay(data_dir, &delivery, &last["position"].to_string(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!(
            "delivery {delivery} as of position {}",
            last["position"]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("hash {}", last["hash"].as_str().unwrap())),
        "{text}"
    );
    assert!(text.contains("bob@recipients.test: downloaded"), "{text}");
    assert!(text.contains("report.pdf"), "{text}");
    assert!(text.contains("postmark:   issued at position"), "{text}");

    // A reader that closes the pipe before the state is printed, as `| head` does,
    // ends the replay without an error.
    for extra in [&[][..], &["--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_consign"))
            .env_remove("CONSIGN_DATA_DIR")
            .args(["audit", "replay", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--delivery", &delivery, "--as-of", "now"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("consign runs");
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.is_empty(), "{extra:?}: {stderr}");
    }

    // Errors name the value and the fix, and exit with status 2.
    let unknown = "0192e0a4-7b1c-7000-8000-000000000001";
    let stderr = replay_error(data_dir, unknown, "5");
    assert!(
        stderr.contains(&format!("delivery {unknown} is not in the ledger")),
        "{stderr}"
    );
    let stderr = replay_error(data_dir, "not-a-delivery", "5");
    assert!(
        stderr.contains("--delivery \"not-a-delivery\" is not a delivery id"),
        "{stderr}"
    );
    let stderr = replay_error(data_dir, &delivery, "yesterday");
    assert!(
        stderr.contains("--as-of \"yesterday\" is neither a position"),
        "{stderr}"
    );
    assert!(stderr.contains("RFC 3339"), "{stderr}");
    let stderr = replay_error(data_dir, &delivery, "2026-13-45T00:00:00Z");
    assert!(
        stderr.contains("--as-of \"2026-13-45T00:00:00Z\""),
        "{stderr}"
    );
    let stderr = replay_error(data_dir, &delivery, "99999999");
    assert!(
        stderr.contains("--as-of position 99999999 is past the end of chain"),
        "{stderr}"
    );
    let stderr = replay_error(data_dir, &delivery, &(submission_position - 1).to_string());
    assert!(
        stderr.contains(&format!("is before delivery {delivery} existed")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("submitted at position {submission_position}")),
        "{stderr}"
    );
    let before_submission = rfc3339(submission["time"].as_i64().unwrap() - 1);
    let stderr = replay_error(data_dir, &delivery, &before_submission);
    assert!(
        stderr.contains(&format!("--as-of {before_submission} is before delivery")),
        "{stderr}"
    );

    // A running server keeps the data directory locked.
    let server = Server::start(data_dir, Clock::system(), &[]).await;
    let stderr = replay_error(data_dir, &delivery, "2999-01-01T00:00:00Z");
    assert!(
        stderr.contains("is in use by another consign process"),
        "{stderr}"
    );
    assert!(stderr.contains("`consign audit replay`"), "{stderr}");
    server.stop().await;
}
