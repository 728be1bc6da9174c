//! The `require_tls` option is accepted only where the server can honour it: e-mail
//! over TLS (or into a local outbox) and https links.

mod support;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use support::{Server, open_account};

/// Submits a delivery with `require_tls` and returns the status and JSON body.
async fn submit_requiring_tls(server: &Server) -> (u16, serde_json::Value) {
    let token = server.login("ada").await;
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Over TLS only",
        "require_tls": true,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"secret".to_vec()).file_name("a.txt"),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_links_reject_require_tls() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;

    let (status, body) = submit_requiring_tls(&server).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "require_tls");
    assert!(
        body["message"].as_str().unwrap().contains("https"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_smtp_rejects_require_tls() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let extra = [
        "--public-url",
        "https://consign.test",
        "--smtp",
        "smtp://127.0.0.1:9",
    ];
    let server = Server::start(work.path(), Clock::system(), &extra).await;

    let (status, body) = submit_requiring_tls(&server).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "require_tls");
    assert!(
        body["message"].as_str().unwrap().contains("without TLS"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_links_and_outbox_accept_require_tls() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(
        work.path(),
        Clock::system(),
        &["--public-url", "https://consign.test"],
    )
    .await;

    let (status, body) = submit_requiring_tls(&server).await;

    assert_eq!(status, 201, "{body}");
    server.stop().await;
}
