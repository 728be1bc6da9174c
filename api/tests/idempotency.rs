//! A submission retried with its `Idempotency-Key` returns the first delivery and
//! stores nothing new, even when a mailing list it names changed since. The same key
//! on a different submission, whether its subject, documents (content or name),
//! recipients (address or name), options or password differ, is rejected with 409
//! naming what differs.

mod support;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use support::{Server, count_files, open_account};

async fn submit(
    server: &Server,
    token: &str,
    subject: &str,
    content: &[u8],
) -> (u16, serde_json::Value) {
    let metadata = serde_json::json!({ "recipients": ["bob@recipients.test"], "subject": subject });
    submit_metadata(server, token, metadata, content).await
}

async fn submit_metadata(
    server: &Server,
    token: &str,
    metadata: serde_json::Value,
    content: &[u8],
) -> (u16, serde_json::Value) {
    submit_file(server, token, metadata, content, "a.txt").await
}

async fn submit_file(
    server: &Server,
    token: &str,
    metadata: serde_json::Value,
    content: &[u8],
    file_name: &str,
) -> (u16, serde_json::Value) {
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(content.to_vec()).file_name(file_name.to_owned()),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .header("Idempotency-Key", "order-2026-0042")
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_submission_replays_the_first() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let objects = work.path().join("blobs").join("objects");

    let (status, first) = submit(&server, &token, "Invoice 42", b"the invoice").await;
    assert_eq!(status, 201, "{first}");
    let stored = count_files(&objects);

    let (status, retry) = submit(&server, &token, "Invoice 42", b"the invoice").await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["replayed"], true);
    assert_eq!(retry["delivery"], first["delivery"]);
    assert_eq!(retry["position"], first["position"]);
    assert_eq!(
        retry["documents"][0]["blake3"],
        first["documents"][0]["blake3"]
    );
    assert_eq!(
        count_files(&objects),
        stored,
        "the retry left a document behind"
    );

    let (status, other) = submit(&server, &token, "Invoice 43", b"another invoice").await;
    assert_eq!(status, 409, "{other}");
    assert!(
        other["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{other}"
    );
    assert_eq!(
        count_files(&objects),
        stored,
        "the rejected submission left a document behind"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_other_options_conflicts() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let metadata = |extra: serde_json::Value| {
        let mut metadata = serde_json::json!({
            "recipients": ["bob@recipients.test"],
            "subject": "Contract",
            "password": "correct horse 42",
        });
        metadata
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        metadata
    };

    let (status, first) =
        submit_metadata(&server, &token, metadata(serde_json::json!({})), b"terms").await;
    assert_eq!(status, 201, "{first}");

    let changed = serde_json::json!({
        "priority": "urgent",
        "deliver_at": "2099-05-01T00:00:00Z",
        "billing_code": "OTHER",
    });
    let (status, rejected) = submit_metadata(&server, &token, metadata(changed), b"terms").await;
    assert_eq!(status, 409, "{rejected}");
    let message = rejected["message"].as_str().unwrap();
    assert!(
        message.contains("(other priority, deliver_at, billing_code)"),
        "{message}"
    );

    let other_password = serde_json::json!({ "password": "another pass 9" });
    let (status, rejected) =
        submit_metadata(&server, &token, metadata(other_password), b"terms").await;
    assert_eq!(status, 409, "{rejected}");
    let message = rejected["message"].as_str().unwrap();
    assert!(message.contains("(other password)"), "{message}");

    let no_password = serde_json::json!({ "password": null });
    let (status, rejected) =
        submit_metadata(&server, &token, metadata(no_password), b"terms").await;
    assert_eq!(status, 409, "{rejected}");

    let (status, retry) =
        submit_metadata(&server, &token, metadata(serde_json::json!({})), b"terms").await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["replayed"], true);
    assert_eq!(retry["delivery"], first["delivery"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_other_names_conflicts() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let named = |name: &str| {
        serde_json::json!({
            "recipients": [{ "address": "bob@recipients.test", "name": name }],
            "subject": "Lease",
        })
    };

    let (status, first) = submit_file(&server, &token, named("Bob"), b"lease", "a.txt").await;
    assert_eq!(status, 201, "{first}");

    let (status, renamed) = submit_file(&server, &token, named("Bob"), b"lease", "b.txt").await;
    assert_eq!(status, 409, "{renamed}");
    let message = renamed["message"].as_str().unwrap();
    assert!(message.contains("(other documents)"), "{message}");

    let (status, other) = submit_file(&server, &token, named("Robert"), b"lease", "a.txt").await;
    assert_eq!(status, 409, "{other}");
    let message = other["message"].as_str().unwrap();
    assert!(message.contains("(other recipients)"), "{message}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_list_change_replays() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let define = |member: &'static str| {
        server
            .client
            .put(server.url("/api/lists/team"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "members": [member] }))
            .send()
    };
    assert_eq!(define("x@recipients.test").await.unwrap().status(), 200);
    let metadata = serde_json::json!({ "lists": ["team"], "subject": "Minutes" });

    let (status, first) = submit_metadata(&server, &token, metadata.clone(), b"minutes").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(define("y@recipients.test").await.unwrap().status(), 200);

    let (status, retry) = submit_metadata(&server, &token, metadata, b"minutes").await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["replayed"], true);
    assert_eq!(retry["delivery"], first["delivery"]);

    let direct = serde_json::json!({ "recipients": ["x@recipients.test"], "subject": "Minutes" });
    let (status, rejected) = submit_metadata(&server, &token, direct, b"minutes").await;
    assert_eq!(status, 409, "{rejected}");

    server.stop().await;
}
