//! Downloads against a running server. A piece of a document is not recorded as a
//! download, but the piece that completes the document, together with the pieces the
//! same recipient fetched before, is recorded once and sends the sender's receipt. A
//! whole download clears earlier pieces, an empty document's download is recorded, a
//! download running at a withdrawal is cut short, and an unknown document id gets a
//! 404 page.

mod support;

use std::time::Duration;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{Server, links_in, open_account, wait_for_messages};

/// Bytes of the test document.
const SIZE: usize = 100_000;

/// Starts a server with the sender `ada`, submits one document of [`SIZE`] bytes with
/// receipts to one recipient, and returns the server, ada's token, the document's
/// content, the delivery id and the document's download URL.
async fn submitted(work: &std::path::Path) -> (Server, String, Vec<u8>, String, String) {
    submitted_of(work, SIZE).await
}

/// Does what [`submitted`] does, with a document of `size` bytes.
async fn submitted_of(
    work: &std::path::Path,
    size: usize,
) -> (Server, String, Vec<u8>, String, String) {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let token = server.login("ada").await;

    let content: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
    let metadata = json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
        "receipt": true,
    });
    let form = Form::new()
        .part(
            "metadata",
            Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "document",
            Part::bytes(content.clone())
                .file_name("contract.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let delivery = body["delivery"].as_str().unwrap().to_owned();
    let document = body["documents"][0]["document"].as_str().unwrap();

    let outbox = server.data_dir.join("outbox");
    let messages = wait_for_messages(&outbox, 1, Duration::from_secs(30)).await;
    let link = links_in(&messages[0], &server.base).remove(0);
    let url = format!("{link}/documents/{document}");
    (server, token, content, delivery, url)
}

/// Fetches `range` of `url` and checks for a 206 with `content_range`.
async fn piece(server: &Server, url: &str, range: &str, content_range: &str) -> Vec<u8> {
    let response = server
        .client
        .get(url)
        .header("range", range)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206, "{range}");
    assert_eq!(
        response.headers()["content-range"],
        content_range,
        "{range}"
    );
    response.bytes().await.unwrap().to_vec()
}

/// Returns the downloads recorded for the first recipient of a delivery.
async fn recorded_downloads(server: &Server, token: &str, delivery: &str) -> Vec<Value> {
    let detail: Value = server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    detail["recipients"][0]["downloads"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piece_and_whole_download() {
    let work = tempfile::tempdir().unwrap();
    let (server, ada, content, delivery, url) = submitted(work.path()).await;

    let first = piece(&server, &url, "bytes=0-9", "bytes 0-9/100000").await;
    assert_eq!(first, &content[..10]);

    let beyond = server
        .client
        .get(&url)
        .header("range", "bytes=999999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */100000");

    assert_eq!(
        recorded_downloads(&server, &ada, &delivery).await,
        Vec::<Value>::new()
    );

    // A document id that the delivery does not have gets a page, because a browser requested it.
    let link = url.split("/documents/").next().unwrap();
    for id in ["00000000-0000-4000-8000-000000000000", "not-an-id"] {
        let unknown = server
            .client
            .get(format!("{link}/documents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404, "{id}");
        let content_type = unknown.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{id}: {content_type}"
        );
        let page = unknown.text().await.unwrap();
        assert!(page.contains("Document not found"), "{id}: {page}");
    }

    // A complete download is recorded before its last byte is sent, so the record is
    // visible as soon as the body has arrived.
    let full = server.client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap(), content);
    let downloads = recorded_downloads(&server, &ada, &delivery).await;
    assert_eq!(downloads.len(), 1, "{downloads:?}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_completing_document_recorded() {
    let work = tempfile::tempdir().unwrap();
    let (server, ada, content, delivery, url) = submitted(work.path()).await;

    // Out of order and overlapping, as a download manager with several connections
    // may fetch them.
    let last = piece(&server, &url, "bytes=-40000", "bytes 60000-99999/100000").await;
    let first = piece(&server, &url, "bytes=0-29999", "bytes 0-29999/100000").await;
    assert_eq!(
        recorded_downloads(&server, &ada, &delivery).await,
        Vec::<Value>::new(),
        "recorded before the pieces covered the document"
    );
    let middle = piece(
        &server,
        &url,
        "bytes=20000-69999",
        "bytes 20000-69999/100000",
    )
    .await;

    let mut joined = first;
    joined.extend_from_slice(&middle[10_000..40_000]);
    joined.extend_from_slice(&last);
    assert_eq!(joined, content);

    let downloads = recorded_downloads(&server, &ada, &delivery).await;
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    let document = url.rsplit('/').next().unwrap();
    assert_eq!(downloads[0]["document"], document, "{downloads:?}");

    // The receipt goes to the sender after the link e-mail.
    let outbox = server.data_dir.join("outbox");
    let messages = wait_for_messages(&outbox, 2, Duration::from_secs(30)).await;
    let receipt = String::from_utf8_lossy(&messages[1]).into_owned();
    assert!(receipt.contains("ada@consign.test"), "{receipt}");

    // A further piece starts a new download rather than recording another.
    piece(&server, &url, "bytes=0-9", "bytes 0-9/100000").await;
    let downloads = recorded_downloads(&server, &ada, &delivery).await;
    assert_eq!(downloads.len(), 1, "{downloads:?}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_download_clears_pieces() {
    let work = tempfile::tempdir().unwrap();
    let (server, ada, content, delivery, url) = submitted(work.path()).await;

    piece(&server, &url, "bytes=0-0", "bytes 0-0/100000").await;
    let full = server.client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap(), content);
    assert_eq!(recorded_downloads(&server, &ada, &delivery).await.len(), 1);

    // Byte 0 was fetched before the whole download, so it does not complete this one.
    piece(&server, &url, "bytes=1-", "bytes 1-99999/100000").await;
    assert_eq!(recorded_downloads(&server, &ada, &delivery).await.len(), 1);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_document_download_recorded() {
    let work = tempfile::tempdir().unwrap();
    let (server, ada, _, delivery, url) = submitted_of(work.path(), 0).await;

    let full = server.client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert!(full.bytes().await.unwrap().is_empty());

    let downloads = recorded_downloads(&server, &ada, &delivery).await;
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    let outbox = server.data_dir.join("outbox");
    let messages = wait_for_messages(&outbox, 2, Duration::from_secs(30)).await;
    let receipt = String::from_utf8_lossy(&messages[1]).into_owned();
    assert!(receipt.contains("ada@consign.test"), "{receipt}");

    server.stop().await;
}

/// A download still running when the sender withdraws the delivery is cut short and not
/// recorded, because the documents are unavailable from the withdrawal on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_aborts_running_download() {
    const LARGE: usize = 32 << 20;
    let work = tempfile::tempdir().unwrap();
    let (server, ada, _, delivery, url) = submitted_of(work.path(), LARGE).await;

    let mut running = server.client.get(&url).send().await.unwrap();
    assert_eq!(running.status(), 200);
    let first = running.chunk().await.unwrap().expect("a first chunk");
    let mut received = first.len();

    let withdrawn = server
        .client
        .post(server.url(&format!("/api/deliveries/{delivery}/withdraw")))
        .bearer_auth(&ada)
        .json(&json!({ "reason": "sent by mistake" }))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);

    let outcome = loop {
        match running.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    assert!(
        outcome.is_err(),
        "the download completed after the withdrawal ({received} bytes)"
    );
    assert!(received < LARGE, "{received} bytes arrived");
    assert_eq!(
        recorded_downloads(&server, &ada, &delivery).await,
        Vec::<Value>::new()
    );

    server.stop().await;
}

/// Starts a download of `url`, withdraws `delivery` once the first chunk arrived, and
/// reads on at `rate` bytes per second. Returns whether the download failed, the
/// bytes that arrived after the withdrawal, and the time until the download ended.
async fn read_past_withdrawal(
    server: &Server,
    ada: &str,
    delivery: &str,
    url: &str,
    rate: f64,
) -> (bool, usize, Duration) {
    let mut running = server.client.get(url).send().await.unwrap();
    assert_eq!(running.status(), 200);
    running.chunk().await.unwrap().expect("a first chunk");

    let withdrawn = server
        .client
        .post(server.url(&format!("/api/deliveries/{delivery}/withdraw")))
        .bearer_auth(ada)
        .json(&json!({ "reason": "sent to the wrong firm" }))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    let withdrawn_at = std::time::Instant::now();

    let mut after = 0;
    let failed = loop {
        match running.chunk().await {
            Ok(Some(chunk)) => {
                after += chunk.len();
                tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate)).await;
            }
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    (failed, after, withdrawn_at.elapsed())
}

/// A slow download is cut within seconds of the withdrawal, not at its end, so the
/// recipient does not go on receiving a document that is no longer available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_cuts_slow_download_promptly() {
    const LARGE: usize = 64 << 20;
    let work = tempfile::tempdir().unwrap();
    let (server, ada, _, delivery, url) = submitted_of(work.path(), LARGE).await;

    // Reading at 8 MiB/s, the whole document would take 8 s.
    let (failed, after, elapsed) =
        read_past_withdrawal(&server, &ada, &delivery, &url, 8.0 * 1024.0 * 1024.0).await;
    assert!(failed, "the download completed after the withdrawal");
    assert!(
        after < LARGE / 2,
        "{after} of {LARGE} bytes arrived after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "cut after {elapsed:?}");

    server.stop().await;
}

/// A client reading 200 KB/s gets little after a withdrawal: the server queues at most
/// about 128 KiB unsent in the kernel, so it reads its next chunk, and checks for the
/// withdrawal, within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_cuts_very_slow_download() {
    const LARGE: usize = 16 << 20;
    let work = tempfile::tempdir().unwrap();
    let (server, ada, _, delivery, url) = submitted_of(work.path(), LARGE).await;

    let (failed, after, elapsed) =
        read_past_withdrawal(&server, &ada, &delivery, &url, 200_000.0).await;
    assert!(failed, "the download completed after the withdrawal");
    assert!(after < 2_000_000, "{after} bytes arrived after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "cut after {elapsed:?}");

    server.stop().await;
}

/// A `HEAD` request on the delivery page gets its status and records no opening; the
/// `GET` that follows records one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_request_records_no_opening() {
    let work = tempfile::tempdir().unwrap();
    let (server, ada, _, delivery, url) = submitted_of(work.path(), 1000).await;
    let link = url.split("/documents/").next().unwrap().to_owned();
    let opened_at = || async {
        let detail: Value = server
            .client
            .get(server.url(&format!("/api/deliveries/{delivery}")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        detail["recipients"][0]["opened_at"].clone()
    };

    let head = server.client.head(&link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(opened_at().await, Value::Null);

    let get = server.client.get(&link).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_ne!(opened_at().await, Value::Null);

    server.stop().await;
}
