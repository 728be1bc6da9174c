//! End to end on real components: a consign server on loopback, a real SMTP server
//! (aiosmtpd) and a real HTTP client. A sender submits two documents, one over 100 MB,
//! to three recipients with a password, a billing code and receipts; each recipient
//! follows the link from its e-mail, enters the password and downloads; the sender
//! gets one receipt per recipient; the ledger verifies and the events are in order.

mod support;

use std::io::Write;
use std::time::Duration;

use consign_ledger::{Clock, EmbeddedLedger, EmbeddedOptions};
use consign_schemas::events::Role;
use consign_schemas::{Event, EventKind, Position};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use support::{Server, SmtpServer, links_in, open_account, wait_for_messages};

/// Size of the large document: just over 100 MiB.
const LARGE_BYTES: usize = 100 * 1024 * 1024 + 12_345;

const ACCESS_PASSWORD: &str = "correct horse 42";

/// Writes `len` pseudo-random bytes to a file and returns their BLAKE3 hash.
fn write_document(path: &std::path::Path, len: usize, seed: u64) -> blake3::Hash {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = blake3::Hasher::new();
    let mut state = seed;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for byte in &mut chunk {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *byte = (state >> 56) as u8;
        }
        let take = left.min(chunk.len());
        file.write_all(&chunk[..take]).unwrap();
        hasher.update(&chunk[..take]);
        left -= take;
    }
    file.flush().unwrap();
    hasher.finalize()
}

/// Returns the value of the grant cookie in a `Set-Cookie` header.
fn grant_cookie(response: &reqwest::Response) -> String {
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .expect("a grant cookie after the right password")
        .to_str()
        .unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Downloads a URL with a cookie and returns its BLAKE3 hash and length, streaming.
async fn download(client: &reqwest::Client, url: &str, cookie: &str) -> (blake3::Hash, u64) {
    let response = client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let mut hasher = blake3::Hasher::new();
    let mut length = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        length += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hasher.finalize(), length)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_reach_three_recipients_with_receipts() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let smtp = SmtpServer::start();
    let server = Server::start(&data_dir, Clock::system(), &["--smtp", &smtp.url()]).await;
    let token = server.login("ada").await;

    let large_path = work.path().join("large.bin");
    let large_hash = write_document(&large_path, LARGE_BYTES, 7);
    let small_path = work.path().join("small.txt");
    let small_hash = write_document(&small_path, 20_000, 8);
    let metadata = serde_json::json!({
        "recipients": [
            "bob@recipients.test",
            { "address": "chloe@recipients.test", "name": "Chloé Dupré" },
            { "address": "dmitri@recipients.test", "name": "Дмитрий Петров" },
        ],
        "subject": "Signed contract – 契約書",
        "message": "Hello,\nthe signed contract is attached.",
        "password": ACCESS_PASSWORD,
        "billing_code": "LEGAL-7",
        "receipt": true,
        "priority": "high",
    });
    let large = tokio::fs::File::open(&large_path).await.unwrap();
    let large_part = Part::stream_with_length(
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(large)),
        LARGE_BYTES as u64,
    )
    .file_name("Grand livre 2026.bin")
    .mime_str("application/octet-stream")
    .unwrap();
    let small_part = Part::bytes(std::fs::read(&small_path).unwrap())
        .file_name("Приложение.txt")
        .mime_str("text/plain")
        .unwrap();
    let form = Form::new()
        .part(
            "metadata",
            Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part("document", large_part)
        .part("document", small_part);
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let submitted: serde_json::Value = response.json().await.unwrap();
    assert_eq!(submitted["status"], "released");
    assert_eq!(
        submitted["documents"][0]["blake3"],
        large_hash.to_hex().as_str()
    );
    assert_eq!(
        submitted["documents"][1]["blake3"],
        small_hash.to_hex().as_str()
    );
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();

    // One link e-mail per recipient, each with its own link and no password.
    let messages = wait_for_messages(&smtp.messages_dir, 3, Duration::from_secs(30)).await;
    let mut links = Vec::new();
    for message in &messages {
        let text = String::from_utf8_lossy(message);
        assert!(
            !text.contains(ACCESS_PASSWORD),
            "an e-mail contains the access password"
        );
        let found = links_in(message, &server.base);
        assert_eq!(found.len(), 1, "{text}");
        links.push(found[0].clone());
    }
    links.sort();
    links.dedup();
    assert_eq!(links.len(), 3, "the recipients share a link");

    for link in &links {
        let form_page = server.client.get(link).send().await.unwrap();
        assert_eq!(form_page.status(), 200);
        assert!(
            form_page
                .text()
                .await
                .unwrap()
                .contains("type=\"password\"")
        );

        let wrong = server
            .client
            .post(link)
            .form(&[("password", "not it")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);

        let right = server
            .client
            .post(link)
            .form(&[("password", ACCESS_PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 303);
        let cookie = grant_cookie(&right);

        let page = server
            .client
            .get(link)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(
            html.contains(large_hash.to_hex().as_str()),
            "the page shows the BLAKE3 hash"
        );
        let hrefs: Vec<String> = html
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|href| href.contains("/documents/"))
            .map(|href| server.url(href))
            .collect();
        assert_eq!(hrefs.len(), 2, "{html}");

        let (hash, length) = download(&server.client, &hrefs[0], &cookie).await;
        assert_eq!(length, LARGE_BYTES as u64);
        assert_eq!(hash, large_hash);
        let (hash, _) = download(&server.client, &hrefs[1], &cookie).await;
        assert_eq!(hash, small_hash);
    }

    // One receipt per recipient to the sender, after the three link e-mails.
    let messages = wait_for_messages(&smtp.messages_dir, 6, Duration::from_secs(30)).await;
    let receipts: Vec<_> = messages[3..]
        .iter()
        .map(|message| String::from_utf8_lossy(message).into_owned())
        .collect();
    assert_eq!(receipts.len(), 3);
    for receipt in &receipts {
        assert!(receipt.contains("ada@consign.test"), "{receipt}");
    }

    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_ledger(&data_dir, &delivery);
}

/// Verifies every chain and checks the order of the delivery's events.
fn check_ledger(data_dir: &std::path::Path, delivery: &str) {
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(data_dir, options).unwrap();
    let mut kinds = Vec::new();
    for chain in ledger.chains() {
        let report = ledger
            .verify_chain(chain, Position::new(0), None, &|_| {})
            .unwrap();
        assert!(report.first_break.is_none(), "chain {chain}: {report:?}");
        for stored in ledger.read(chain, Position::new(0), usize::MAX).unwrap() {
            let of_delivery = stored.envelope.event.delivery().map(|id| id.to_string());
            let uploaded = matches!(stored.envelope.event, Event::DocumentUploaded(_));
            if of_delivery.as_deref() == Some(delivery) || uploaded {
                kinds.push(stored.envelope.event.kind());
            }
        }
    }

    let count = |kind: EventKind| kinds.iter().filter(|candidate| **candidate == kind).count();
    assert_eq!(
        &kinds[..4],
        &[
            EventKind::DocumentUploaded,
            EventKind::DocumentUploaded,
            EventKind::DeliverySubmitted,
            EventKind::DeliveryReleased,
        ]
    );
    assert_eq!(count(EventKind::NotificationAttempted), 6, "{kinds:?}");
    assert_eq!(count(EventKind::NotificationSent), 6, "{kinds:?}");
    assert_eq!(count(EventKind::AccessDenied), 3, "{kinds:?}");
    assert_eq!(count(EventKind::DeliveryOpened), 3, "{kinds:?}");
    assert_eq!(count(EventKind::DocumentDownloaded), 6, "{kinds:?}");
    assert_eq!(count(EventKind::ReceiptSent), 3, "{kinds:?}");
    let first_download = kinds
        .iter()
        .position(|kind| *kind == EventKind::DocumentDownloaded)
        .unwrap();
    let first_receipt = kinds
        .iter()
        .position(|kind| *kind == EventKind::ReceiptSent)
        .unwrap();
    assert!(first_download < first_receipt, "{kinds:?}");
}
