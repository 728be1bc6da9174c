//! Two `consign serve` processes on one Kafka topic share a document folder
//! (`--blob-dir`) and a key folder (`--keys-dir`). A recipient whose link leads to the
//! server that did not take the upload opens the delivery there, enters the password
//! and downloads the documents, plain and encrypted at rest, byte for byte. One
//! Idempotency-Key sent to both servers at once makes one delivery.
//!
//! The broker comes from `CONSIGN_KAFKA_BROKERS`, which the README's test command sets
//! after starting one; under CI a missing broker fails the test.

mod kafka_support;

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_support::{ServeProcess, create_sender, login};
use reqwest::multipart::{Form, Part};

const ACCESS_PASSWORD: &str = "correct horse battery";

/// Returns `length` bytes that differ from one `seed` to another.
fn document(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Submits one delivery of `content` to one recipient through `base`, and returns its id.
async fn submit(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    recipient: &str,
    content: &[u8],
    encrypt: bool,
) -> String {
    let metadata = serde_json::json!({
        "recipients": [recipient],
        "subject": "Shared store",
        "password": ACCESS_PASSWORD,
        "encrypt": encrypt,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(content.to_vec()).file_name("contract.pdf"),
        );
    let response = client
        .post(format!("{base}/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["delivery"].as_str().unwrap().to_owned()
}

/// Runs `ledger dump` on `topic` with its copy in `data_dir`, and returns its output.
fn dump(brokers: &str, topic: &str, data_dir: &Path) -> std::process::Output {
    std::process::Command::new(kafka_support::BIN)
        .args(["ledger", "dump", "--kafka", brokers, "--kafka-topic", topic])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

/// Submits one small delivery with `Idempotency-Key: key` through `base`, and returns
/// its id and whether the response replayed an earlier submission.
async fn submit_keyed(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
) -> (String, bool) {
    let metadata = serde_json::json!({
        "recipients": ["keyed@recipients.test"],
        "subject": "Keyed",
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"keyed".to_vec()).file_name("a.txt"),
        );
    let response = client
        .post(format!("{base}/api/deliveries"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(status == 201 || status == 200, "{status}: {body}");
    (
        body["delivery"].as_str().unwrap().to_owned(),
        body["replayed"].as_bool().unwrap_or(false),
    )
}

/// Waits for the e-mail to `recipient` in either server's outbox and returns the
/// token of its private link.
async fn link_token(outboxes: &[&Path], recipient: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for outbox in outboxes {
            for message in read_messages(outbox) {
                let parsed = mail_parser::MessageParser::default()
                    .parse(&message)
                    .unwrap();
                let to = parsed
                    .to()
                    .and_then(|to| to.first())
                    .and_then(|to| to.address());
                if to != Some(recipient) {
                    continue;
                }
                let text = parsed.body_text(0).unwrap().into_owned();
                let link = text
                    .split_whitespace()
                    .find(|word| word.contains("/d/"))
                    .unwrap_or_else(|| panic!("no link in the e-mail:\n{text}"));
                return link.rsplit("/d/").next().unwrap().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "no e-mail reached {recipient}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_messages(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// Opens the delivery of `token` on `base`, enters the password and downloads its one
/// document, waiting until `base`'s copy of the ledger has the delivery.
async fn fetch(client: &reqwest::Client, base: &str, token: &str) -> Vec<u8> {
    let link = format!("{base}/d/{token}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let right = loop {
        let response = client
            .post(&link)
            .form(&[("password", ACCESS_PASSWORD)])
            .send()
            .await
            .unwrap();
        if response.status() == 303 {
            break response;
        }
        assert!(
            response.status() == 404 && Instant::now() < deadline,
            "{link} answered {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cookie = right.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let page = client
        .get(&link)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let href = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains("/documents/"))
        .unwrap_or_else(|| panic!("no document link on the page:\n{html}"))
        .to_owned();
    let download = client
        .get(format!("{base}{href}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200, "{href}");
    download.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_serves_shared_documents() {
    let Some(brokers) = kafka_support::kafka_brokers() else {
        return;
    };
    let topic = kafka_support::unique_topic("shared");
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("blobs")).unwrap();
    std::fs::create_dir(work.path().join("keys")).unwrap();
    let shared = vec![
        "--blob-dir".to_owned(),
        work.path().join("blobs").display().to_string(),
        "--keys-dir".to_owned(),
        work.path().join("keys").display().to_string(),
    ];

    // The first server creates the keys; the second loads them.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first_dir = work.path().join("first");
    let second_dir = work.path().join("second");
    let mut first = ServeProcess::start_with(&first_dir, &brokers, &topic, "0", &shared);
    first.wait_healthy(&client).await;
    let mut second = ServeProcess::start_with(&second_dir, &brokers, &topic, "1", &shared);
    second.wait_healthy(&client).await;
    create_sender(work.path(), &brokers, &topic);
    let token = login(&client, &first.base).await;

    // A second account with the login is rejected for the login, not blamed on the
    // servers.
    let again = kafka_support::run_create_sender(work.path(), &brokers, &topic);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is taken"), "{stderr}");
    assert!(!stderr.contains("none recorded it"), "{stderr}");

    let plain = document(300_000, 1);
    let sealed = document(700_000, 2);
    submit(
        &client,
        &first.base,
        &token,
        "plain@recipients.test",
        &plain,
        false,
    )
    .await;
    submit(
        &client,
        &first.base,
        &token,
        "sealed@recipients.test",
        &sealed,
        true,
    )
    .await;
    let outboxes = [first_dir.join("outbox"), second_dir.join("outbox")];
    let outboxes: Vec<&Path> = outboxes.iter().map(|dir| dir.as_path()).collect();

    // Each document is uploaded to the first server and downloaded from the second.
    for (recipient, content) in [
        ("plain@recipients.test", &plain),
        ("sealed@recipients.test", &sealed),
    ] {
        let link = link_token(&outboxes, recipient).await;
        let fetched = fetch(&client, &second.base, &link).await;
        assert_eq!(
            blake3::hash(&fetched),
            blake3::hash(content),
            "{recipient} got other bytes from the second server"
        );
    }

    // The same Idempotency-Key sent to both servers at once makes one delivery: the
    // key maps to one chain, whose sequencer finds the first by its key. Sessions are
    // per server, so the second needs its own login.
    let second_token = login(&client, &second.base).await;
    for round in 0..4 {
        let key = format!("both-servers-{round}");
        let (at_first, at_second) = tokio::join!(
            submit_keyed(&client, &first.base, &token, &key),
            submit_keyed(&client, &second.base, &second_token, &key),
        );
        assert_eq!(at_first.0, at_second.0, "{key} made two deliveries");
        assert!(
            at_first.1 != at_second.1,
            "{key}: exactly one answer replays the other ({at_first:?}, {at_second:?})"
        );
    }

    // At a restart, a shared store keeps every document, even one that no submission
    // in this server's copy refers to (another ledger may), and the temp files of
    // uploads that may be in progress elsewhere. It removes temp files over an hour old.
    let blobs = work.path().join("blobs");
    let recent_part = blobs.join("tmp").join(format!("{}.part", "a".repeat(32)));
    let old_part = blobs.join("tmp").join(format!("{}.part", "d".repeat(32)));
    let unreferenced = blobs.join("objects").join("cc").join("c".repeat(32));
    for path in [&recent_part, &old_part, &unreferenced] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"an upload of another server").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for path in [&old_part, &unreferenced] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    second.kill();
    second.restart();
    second.wait_healthy(&client).await;
    assert!(recent_part.exists(), "a recent temp file was removed");
    assert!(!old_part.exists(), "a temp file over an hour old was kept");
    assert!(
        unreferenced.exists(),
        "a document of the shared folder was removed"
    );
    let link = link_token(&outboxes, "plain@recipients.test").await;
    let fetched = fetch(&client, &second.base, &link).await;
    assert_eq!(blake3::hash(&fetched), blake3::hash(&plain));

    // A server whose key folder is empty would create keys that match nobody's: on a
    // topic with events it refuses to start, and creates no key.
    let empty_keys = work.path().join("empty-keys");
    std::fs::create_dir(&empty_keys).unwrap();
    let rejected = std::process::Command::new(kafka_support::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka",
            &brokers,
            "--kafka-topic",
            &topic,
        ])
        .arg("--data-dir")
        .arg(work.path().join("third"))
        .arg("--keys-dir")
        .arg(&empty_keys)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(!rejected.status.success(), "{stderr}");
    assert!(stderr.contains("already has events"), "{stderr}");
    assert!(stderr.contains("links.key"), "{stderr}");
    for key in ["postmark", "documents.kek", "links.key"] {
        assert!(!empty_keys.join(key).exists(), "{key} was created");
    }

    // A complete key folder of another topic does not match the signatures of this
    // one: the server refuses to start before it writes anything.
    let other_keys = work.path().join("other-keys");
    std::fs::create_dir(&other_keys).unwrap();
    let mut other = ServeProcess::start_with(
        &work.path().join("other"),
        &brokers,
        &kafka_support::unique_topic("other"),
        "0",
        &["--keys-dir".to_owned(), other_keys.display().to_string()],
    );
    other.wait_healthy(&client).await;
    drop(other);
    let heads = first
        .settled_heads(&client, &[0, 1], Duration::from_secs(3))
        .await;
    let mut fourth = std::process::Command::new(kafka_support::BIN);
    fourth
        .args(["serve", "--listen", "127.0.0.1:0", "--kafka", &brokers])
        .args(["--kafka-topic", &topic, "--kafka-sequence", "1"])
        .arg("--data-dir")
        .arg(work.path().join("fourth"))
        .arg("--keys-dir")
        .arg(&other_keys);
    let stderr = kafka_support::refused_start(fourth).await;
    assert!(
        stderr.contains("which the key folder") && stderr.contains("does not have"),
        "{stderr}"
    );
    let after = first
        .settled_heads(&client, &[0, 1], Duration::from_secs(3))
        .await;
    assert_eq!(after, heads, "the rejected server wrote to the topic");

    // Commands that only read do not create a mistyped topic: the second run finds
    // it missing as the first did.
    let typo = kafka_support::unique_topic("typo");
    for _ in 0..2 {
        let dumped = dump(&brokers, &typo, &work.path().join("reader"));
        let stderr = String::from_utf8_lossy(&dumped.stderr);
        assert_eq!(dumped.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot use topic {typo}: it does not exist")),
            "{stderr}"
        );
    }

    // The copy of a two-chain topic opened on a one-chain topic is named as the copy
    // of another ledger, without advice about --chains, which was not given.
    let single = kafka_support::unique_topic("single");
    let generated = std::process::Command::new(kafka_support::BIN)
        .args(["ledger", "generate", "--deliveries", "0", "--chains", "1"])
        .args(["--kafka", &brokers, "--kafka-topic", &single])
        .arg("--data-dir")
        .arg(work.path().join("single"))
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let dumped = dump(&brokers, &single, &work.path().join("other"));
    let stderr = String::from_utf8_lossy(&dumped.stderr);
    assert_eq!(dumped.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("so it is the copy of another ledger"),
        "{stderr}"
    );
    assert!(!stderr.contains("--chains"), "{stderr}");
    drop(first);
}
