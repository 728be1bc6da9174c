//! Delivery dates and expiration dates on a manual clock: nothing is released early,
//! everything due is released or expired exactly once, also when many fall due
//! together and across a restart, a delivery whose expiration date passed before its
//! release is expired only, and expired documents are unavailable at once.

mod support;

use std::path::Path;
use std::time::Duration;

use consign_ledger::{EmbeddedLedger, EmbeddedOptions, ManualClock};
use consign_notifier::LinkKey;
use consign_schemas::events::Role;
use consign_schemas::{DeliveryId, EventKind, Position, RecipientId, Timestamp};
use reqwest::multipart::{Form, Part};
use support::{Server, open_account, read_messages, wait_for_messages};

/// 2026-10-20T12:00:00Z, the manual clock's start.
const START: Timestamp = Timestamp::from_micros(1_792_497_600_000_000);

const HOUR: Duration = Duration::from_secs(3600);

/// Formats a clock reading plus `offset` as RFC 3339 in UTC.
fn at(offset: Duration) -> String {
    let micros = START.as_micros() + i64::try_from(offset.as_micros()).unwrap();
    jiff::Timestamp::from_microsecond(micros)
        .unwrap()
        .to_string()
}

/// Submits one small document to `recipient` with `options` merged into the metadata.
async fn submit(
    server: &Server,
    token: &str,
    recipient: &str,
    options: serde_json::Value,
) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "recipients": [recipient],
        "subject": "Scheduled delivery",
    });
    for (key, value) in options.as_object().unwrap() {
        metadata[key] = value.clone();
    }
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"scheduled content".to_vec()).file_name("notice.txt"),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// Rebuilds the private link of a recipient from the server's link key.
fn link_of(server: &Server, submitted: &serde_json::Value) -> String {
    let key = LinkKey::load_or_create(&server.data_dir.join("keys/links.key")).unwrap();
    let delivery: DeliveryId = submitted["delivery"].as_str().unwrap().parse().unwrap();
    let recipient: RecipientId = submitted["recipients"][0]["recipient"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    server.url(&format!("/d/{}", key.token(delivery, recipient).as_str()))
}

async fn status_of(server: &Server, token: &str, delivery: &str) -> serde_json::Value {
    server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the delivery's status is `expected`.
async fn wait_for_status(server: &Server, token: &str, delivery: &str, expected: &str) {
    for _ in 0..200 {
        if status_of(server, token, delivery).await["status"] == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("delivery {delivery} never reached status {expected}");
}

/// Counts events of `kind` in a stopped server's ledger.
fn count_events(data_dir: &Path, kind: EventKind) -> usize {
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(data_dir, options).unwrap();
    ledger
        .chains()
        .flat_map(|chain| ledger.read(chain, Position::new(0), usize::MAX).unwrap())
        .filter(|stored| stored.envelope.event.kind() == kind)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_expiry_happen_once_at_their_times() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;

    let submitted = submit(
        &server,
        &token,
        "bob@recipients.test",
        serde_json::json!({ "deliver_at": at(HOUR), "expires_at": at(3 * HOUR) }),
    )
    .await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let link = link_of(&server, &submitted);
    assert_eq!(submitted["status"], "scheduled");

    let early = server.client.get(&link).send().await.unwrap();
    assert_eq!(early.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        read_messages(&data_dir.join("outbox")).is_empty(),
        "an e-mail went out before the delivery date"
    );

    clock.advance(HOUR);
    wait_for_status(&server, &token, &delivery, "released").await;
    wait_for_messages(&data_dir.join("outbox"), 1, Duration::from_secs(10)).await;
    let open = server.client.get(&link).send().await.unwrap();
    assert_eq!(open.status(), 200);

    clock.advance(2 * HOUR);
    let expired = server.client.get(&link).send().await.unwrap();
    assert_eq!(
        expired.status(),
        410,
        "expired documents must be unavailable at once"
    );
    wait_for_status(&server, &token, &delivery, "expired").await;
    server.stop().await;

    // A restart on the same clock finds nothing left to do.
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    assert_eq!(count_events(&data_dir, EventKind::DeliveryReleased), 1);
    assert_eq!(count_events(&data_dir, EventKind::DeliveryExpired), 1);
}

/// A delivery whose delivery date and expiration date both passed while the server was
/// down is expired without being released, and no e-mail goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_passed_during_downtime_skips_release() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;
    let submitted = submit(
        &server,
        &token,
        "bob@recipients.test",
        serde_json::json!({ "deliver_at": at(HOUR), "expires_at": at(2 * HOUR) }),
    )
    .await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    server.stop().await;

    clock.advance(3 * HOUR);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;
    wait_for_status(&server, &token, &delivery, "expired").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;

    assert_eq!(count_events(&data_dir, EventKind::DeliveryReleased), 0);
    assert_eq!(count_events(&data_dir, EventKind::DeliveryExpired), 1);
    assert!(
        read_messages(&data_dir.join("outbox")).is_empty(),
        "an e-mail went out for a delivery that expired before its release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_due_together_are_released_once_each() {
    const DELIVERIES: usize = 40;
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let options = EmbeddedOptions {
        chains: Some(4),
        ..EmbeddedOptions::default()
    };
    drop(EmbeddedLedger::open(&data_dir, options).unwrap());
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;

    let mut deliveries = Vec::new();
    for index in 0..DELIVERIES {
        let recipient = format!("r{index}@recipients.test");
        let options = serde_json::json!({ "deliver_at": at(HOUR) });
        let submitted = submit(&server, &token, &recipient, options).await;
        deliveries.push(submitted["delivery"].as_str().unwrap().to_owned());
    }

    clock.advance(HOUR + Duration::from_secs(1));
    for delivery in &deliveries {
        wait_for_status(&server, &token, delivery, "released").await;
    }
    wait_for_messages(
        &data_dir.join("outbox"),
        DELIVERIES,
        Duration::from_secs(30),
    )
    .await;
    server.stop().await;

    // A second start must not release anything again.
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    assert_eq!(
        count_events(&data_dir, EventKind::DeliveryReleased),
        DELIVERIES
    );
    assert_eq!(
        count_events(&data_dir, EventKind::NotificationSent),
        DELIVERIES
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_times_follow_the_documented_rules() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;

    // 02:30 happens twice in Paris on 2026-10-25; the earlier instant (+02:00) counts.
    let submitted = submit(
        &server,
        &token,
        "bob@recipients.test",
        serde_json::json!({ "deliver_at": "2026-10-25T02:30", "time_zone": "Europe/Paris" }),
    )
    .await;
    let delivery = submitted["delivery"].as_str().unwrap();
    let status = status_of(&server, &token, delivery).await;
    let deliver_at = &status["options"]["deliver_at"];
    let text = deliver_at["text"].as_str().unwrap().to_owned();
    assert!(text.contains("02:30"), "{text}");
    assert!(text.contains("+02:00"), "{text}");
    assert!(text.contains("Europe/Paris"), "{text}");
    // 2026-10-25T00:30:00Z
    assert_eq!(
        deliver_at["instant"], 1_792_888_200_000_000_i64,
        "{deliver_at}"
    );
    assert_eq!(deliver_at["zone"], "Europe/Paris", "{deliver_at}");

    // 02:30 never happens in Paris on 2026-03-29 (but that date is in the past here),
    // so take next year's gap.
    let skipped = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(
            Form::new()
                .part(
                    "metadata",
                    Part::text(
                        serde_json::json!({
                            "recipients": ["bob@recipients.test"],
                            "subject": "Skipped",
                            "deliver_at": "2027-03-28T02:30",
                            "time_zone": "Europe/Paris",
                        })
                        .to_string(),
                    ),
                )
                .part("document", Part::bytes(b"x".to_vec()).file_name("x.txt")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), 422);
    let body: serde_json::Value = skipped.json().await.unwrap();
    assert_eq!(body["field"], "deliver_at", "{body}");
    server.stop().await;
}

/// An expiration date that passes while the documents are still uploading rejects the
/// submission, which would otherwise be recorded already expired, and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_passed_during_upload_rejected() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(receiver));
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Expires during the upload",
        "expires_at": at(HOUR),
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part("document", Part::stream(body).file_name("slow.txt"));
    let request = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(form)
        .send();
    let feeder = async {
        sender.send(Ok(vec![b'a'; 64 * 1024])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock.advance(2 * HOUR);
        sender.send(Ok(vec![b'b'; 64 * 1024])).await.unwrap();
        drop(sender);
    };
    let (response, ()) = tokio::join!(request, feeder);
    let response = response.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "expires_at", "{body}");
    server.stop().await;

    assert_eq!(count_events(&data_dir, EventKind::DeliverySubmitted), 0);
    assert_eq!(count_events(&data_dir, EventKind::DocumentUploaded), 0);
    assert_eq!(support::count_files(&data_dir.join("blobs/objects")), 0);
    assert_eq!(support::count_files(&data_dir.join("blobs/tmp")), 0);
}

/// Turns a channel of chunks into the stream a request body reads.
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

/// A server stopped while it records steps that fell due during its downtime stops at
/// once, and the next start records every step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_due_backlog_completes() {
    const DELIVERIES: usize = 150;
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let clock = ManualClock::new(START);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let token = server.login("ada").await;
    for index in 0..DELIVERIES {
        let submitted = submit(
            &server,
            &token,
            &format!("r{index}@recipients.test"),
            serde_json::json!({ "deliver_at": at(HOUR) }),
        )
        .await;
        assert_eq!(submitted["status"], "scheduled", "{submitted}");
    }
    server.stop().await;

    clock.advance(2 * HOUR);
    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), server.stop()).await;
    assert!(stopped.is_ok(), "the server did not stop within 30 s");

    let server = Server::start(&data_dir, clock.clock(), &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count_scheduled(&server).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every delivery was released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
    assert_eq!(
        count_events(&data_dir, EventKind::DeliveryReleased),
        DELIVERIES
    );
}

/// Returns how many of ada's deliveries the tracking view shows still scheduled.
async fn count_scheduled(server: &Server) -> usize {
    let token = server.login("ada").await;
    let response = server
        .client
        .get(server.url("/api/tracking/deliveries?status=scheduled&limit=500"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    body["deliveries"].as_array().map_or(0, Vec::len)
}
