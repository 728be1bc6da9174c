//! The persisted views through the API: a sender reads its own submission at once with
//! `after`, watches a recipient's status change live over server-sent events, billing
//! exports CSV and JSON (also as of an earlier position), and an auditor reads the
//! history with verified links.

mod support;

use std::time::Duration;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use support::{Server, links_in, open_account, wait_for_messages};

async fn submit(server: &Server, token: &str, billing_code: &str) -> serde_json::Value {
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Views",
        "billing_code": billing_code,
        "receipt": true,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part("document", Part::bytes(vec![7u8; 1000]).file_name("a.bin"));
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

fn after_of(submitted: &serde_json::Value) -> String {
    format!("{}:{}", submitted["chain"], submitted["position"])
}

async fn get_json(server: &Server, token: &str, path: &str) -> (u16, serde_json::Value) {
    let response = server
        .client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_serve_senders_billing_and_auditors() {
    let work = tempfile::tempdir().unwrap();
    for (login, role) in [
        ("ada", Role::Sender),
        ("bill", Role::Billing),
        ("audrey", Role::Auditor),
    ] {
        open_account(work.path(), login, role).await;
    }
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let ada = server.login("ada").await;

    // The sender's own submission is in the tracking view as soon as `after` returns.
    let submitted = submit(&server, &ada, "LEGAL-7").await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let path = format!("/api/tracking/deliveries?after={}", after_of(&submitted));
    let (status, list) = get_json(&server, &ada, &path).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["deliveries"][0]["delivery"], delivery.as_str());

    // A live stream receives the recipient's download. It takes no query parameters,
    // so one given is rejected instead of being ignored.
    let stream_with_query = format!("/api/tracking/deliveries/{delivery}/events?after=-1");
    let (status, refused) = get_json(&server, &ada, &stream_with_query).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "query", "{refused}");
    let events_url = server.url(&format!("/api/tracking/deliveries/{delivery}/events"));
    let response = server
        .client
        .get(&events_url)
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: tracking"));

    let outbox = work.path().join("outbox");
    let messages = wait_for_messages(&outbox, 1, Duration::from_secs(10)).await;
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
    assert_eq!(document.bytes().await.unwrap().len(), 1000);

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("downloaded") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);

    // Billing: JSON and CSV state the positions they reflect; as-of an earlier
    // position reproduces the export from before the second submission.
    let bill = server.login("bill").await;
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let usage_path = format!(
        "/api/billing/usage?from={month}&to={month}&after={}",
        after_of(&submitted)
    );
    let (status, before) = get_json(&server, &bill, &usage_path).await;
    assert_eq!(status, 200, "{before}");
    assert!(before["ledger_positions"].is_array(), "{before}");

    let second = submit(&server, &ada, "LEGAL-7").await;
    let path = format!(
        "/api/billing/usage?from={month}&to={month}&after={}",
        after_of(&second)
    );
    let (_, after) = get_json(&server, &bill, &path).await;
    assert_ne!(before["rows"], after["rows"]);

    let as_of: Vec<String> = submitted_positions(&before);
    let path = format!(
        "/api/billing/usage?from={month}&to={month}&as_of={}",
        as_of.join(",")
    );
    let (status, reproduced) = get_json(&server, &bill, &path).await;
    assert_eq!(status, 200, "{reproduced}");
    assert_eq!(reproduced["rows"], before["rows"]);

    // A billing code filter is trimmed as submissions trim the code; a blank one is
    // rejected.
    let coded = format!("/api/billing/usage?from={month}&to={month}&billing_code=");
    let (status, exact) = get_json(&server, &bill, &format!("{coded}LEGAL-7")).await;
    assert_eq!(status, 200, "{exact}");
    assert!(!exact["rows"].as_array().unwrap().is_empty(), "{exact}");
    let (status, padded) = get_json(&server, &bill, &format!("{coded}%20LEGAL-7%20")).await;
    assert_eq!(status, 200, "{padded}");
    assert_eq!(padded["rows"], exact["rows"]);
    let (status, blank) = get_json(&server, &bill, &format!("{coded}%20")).await;
    assert_eq!(status, 422, "{blank}");
    assert_eq!(blank["field"], "billing_code", "{blank}");

    let csv = server
        .client
        .get(server.url(&format!(
            "/api/billing/usage?from={month}&to={month}&format=csv"
        )))
        .bearer_auth(&bill)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.contains("LEGAL-7"), "{csv}");

    let (status, _) = get_json(
        &server,
        &ada,
        &format!("/api/billing/usage?from={month}&to={month}"),
    )
    .await;
    assert_eq!(status, 403);

    // A query string without `to` is refused with the JSON error naming the query,
    // and only after the role check.
    let incomplete = format!("/api/billing/usage?from={month}");
    let (status, _) = get_json(&server, &ada, &incomplete).await;
    assert_eq!(status, 403);
    let (status, refused) = get_json(&server, &bill, &incomplete).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "query", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("missing field `to`"),
        "{refused}"
    );

    // A period that ends before it starts is rejected with 422 instead of an empty report.
    let reversed = "/api/billing/usage?from=2026-12&to=2026-11";
    let (status, refused) = get_json(&server, &bill, reversed).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "to", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("to 2026-11 is before from 2026-12"),
        "{refused}"
    );

    // The plain list takes no filter. A filter given there is rejected with the route
    // that filters, instead of being ignored.
    let (status, refused) = get_json(&server, &ada, "/api/deliveries?status=bogus").await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "query", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("/api/tracking/deliveries"),
        "{refused}"
    );
    let (status, listed) = get_json(&server, &ada, "/api/deliveries").await;
    assert_eq!(status, 200, "{listed}");

    // A parameter that does not parse is named in the error.
    let path = "/api/tracking/deliveries?status=bogus";
    let (status, refused) = get_json(&server, &ada, path).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "status", "{refused}");
    let path = "/api/tracking/deliveries?limit=abc";
    let (status, refused) = get_json(&server, &ada, path).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "limit", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid query parameter limit: "),
        "{message}"
    );
    assert!(!message.contains("deserialize"), "{message}");

    // A page size outside 1 to 500 is rejected, not changed.
    for limit in ["0", "501"] {
        let path = format!("/api/tracking/deliveries?limit={limit}");
        let (status, refused) = get_json(&server, &ada, &path).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["field"], "limit", "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("from 1 to 500"),
            "{refused}"
        );
    }

    // Audit: the history with verified links, and search by recipient. The receipt
    // e-mail to the sender follows the download.
    let audrey = server.login("audrey").await;
    wait_for_messages(&outbox, 2, Duration::from_secs(10)).await;
    let history_path = format!("/api/audit/deliveries/{delivery}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let history = loop {
        let (status, history) = get_json(&server, &audrey, &history_path).await;
        assert_eq!(status, 200, "{history}");
        let events = history["events"].as_array().unwrap();
        if events.iter().any(|event| event["type"] == "ReceiptSent") {
            break history;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ReceiptSent in {history}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events = history["events"].as_array().unwrap();
    assert!(events.len() >= 5, "{history}");
    assert!(
        events.iter().all(|event| event["link_verified"] == true),
        "{history}"
    );
    assert_eq!(events[0]["type"], "DocumentUploaded");

    // Each row names the recipient and the document it concerns, read from the event.
    let of_type = |kind: &str| -> &serde_json::Value {
        events.iter().find(|event| event["type"] == kind).unwrap()
    };
    assert_eq!(of_type("DocumentUploaded")["document"], "a.bin");
    assert_eq!(
        of_type("DocumentUploaded")["recipient"],
        serde_json::Value::Null
    );
    assert_eq!(
        of_type("DocumentUploaded")["detail"],
        "1000 bytes, application/octet-stream"
    );
    let submitted_detail = of_type("DeliverySubmitted")["detail"].as_str().unwrap();
    assert!(
        submitted_detail.starts_with("to bob@recipients.test;"),
        "{submitted_detail}"
    );
    assert_eq!(
        of_type("DeliveryOpened")["recipient"],
        "bob@recipients.test"
    );
    let downloaded = of_type("DocumentDownloaded");
    assert_eq!(downloaded["recipient"], "bob@recipients.test");
    assert_eq!(downloaded["document"], "a.bin");
    assert_eq!(downloaded["detail"], "1000 bytes");
    let receipt = of_type("ReceiptSent");
    assert_eq!(receipt["recipient"], "bob@recipients.test");
    assert!(
        receipt["detail"]
            .as_str()
            .unwrap()
            .starts_with("Message-ID "),
        "{receipt}"
    );
    assert_eq!(
        of_type("DeliveryReleased")["detail"],
        serde_json::Value::Null
    );

    // Each row names its ETSI EN 319 522 event, or null where none matches.
    let etsi_of = |kind: &str| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|event| event["type"] == kind)
            .map(|event| event["etsi"].clone())
            .collect()
    };
    assert!(
        events.iter().all(|event| event.get("etsi").is_some()),
        "{history}"
    );
    assert_eq!(etsi_of("DocumentUploaded"), [serde_json::Value::Null]);
    assert_eq!(etsi_of("DeliverySubmitted"), ["SubmissionAcceptance"]);
    assert_eq!(etsi_of("DeliveryReleased"), ["ContentConsignment"]);
    // The link e-mail is a consignment notification. The receipt e-mail, whose
    // NotificationSent comes right before its ReceiptSent, is not.
    let receipt_sent = events
        .iter()
        .find(|event| event["type"] == "ReceiptSent")
        .unwrap();
    let receipt_position = receipt_sent["position"].as_u64().unwrap() - 1;
    let (receipt_outcome, link_outcomes): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        events
            .iter()
            .filter(|event| event["type"] == "NotificationSent")
            .partition(|event| event["position"] == receipt_position);
    assert_eq!(receipt_outcome.len(), 1, "{history}");
    assert_eq!(receipt_outcome[0]["etsi"], serde_json::Value::Null);
    assert_eq!(link_outcomes.len(), 1, "{history}");
    assert_eq!(link_outcomes[0]["etsi"], "ConsignmentNotification");
    assert_eq!(etsi_of("ReceiptSent"), [serde_json::Value::Null]);
    assert_eq!(etsi_of("DeliveryOpened"), ["ContentAccessTracking"]);
    assert_eq!(etsi_of("DocumentDownloaded"), ["ContentHandover"]);
    assert!(
        etsi_of("NotificationAttempted")
            .iter()
            .all(serde_json::Value::is_null),
        "{history}"
    );

    let jsonl = server
        .client
        .get(server.url(&format!("/api/audit/deliveries/{delivery}?format=jsonl")))
        .bearer_auth(&audrey)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), events.len(), "{jsonl}");
    for (line, event) in lines.iter().zip(events) {
        assert_eq!(line["etsi"], event["etsi"], "{line}");
    }
    let submitted_line = lines
        .iter()
        .find(|line| line["type"] == "DeliverySubmitted")
        .unwrap();
    assert_eq!(submitted_line["etsi"], "SubmissionAcceptance");
    let downloaded_line = lines
        .iter()
        .find(|line| line["type"] == "DocumentDownloaded")
        .unwrap();
    assert_eq!(downloaded_line["etsi"], "ContentHandover");

    let (status, found) = get_json(
        &server,
        &audrey,
        "/api/audit/search?recipient=BOB@recipients.test",
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["deliveries"].as_array().unwrap().len(), 2, "{found}");
    assert_eq!(found["next_cursor"], serde_json::Value::Null, "{found}");

    // Pages of one delivery: the first carries a cursor, the second the other
    // delivery and none.
    let search = "/api/audit/search?recipient=bob@recipients.test&limit=1";
    let (status, first) = get_json(&server, &audrey, search).await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (status, second) = get_json(&server, &audrey, &format!("{search}&cursor={cursor}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["next_cursor"], serde_json::Value::Null, "{second}");
    let mut paged = vec![
        first["deliveries"][0].as_str().unwrap(),
        second["deliveries"][0].as_str().unwrap(),
    ];
    paged.sort_unstable();
    let mut all: Vec<&str> = found["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(paged, all);
    for bad in [
        format!("from=2026-01-01T00:00:00Z&cursor={cursor}"),
        "recipient=bob@recipients.test&cursor=zz".to_owned(),
    ] {
        let (status, rejected) =
            get_json(&server, &audrey, &format!("/api/audit/search?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {rejected}");
        assert_eq!(rejected["field"], "cursor", "{bad}: {rejected}");
    }
    let (status, _) = get_json(&server, &ada, &format!("/api/audit/deliveries/{delivery}")).await;
    assert_eq!(status, 403);
    for (query, field) in [
        (
            "from=2026-12-31T00:00:00Z&before=2026-12-01T00:00:00Z",
            "before",
        ),
        ("from=2026-12-01T00:00:00%2B24:00", "from"),
    ] {
        let (status, rejected) =
            get_json(&server, &audrey, &format!("/api/audit/search?{query}")).await;
        assert_eq!(status, 422, "{query}: {rejected}");
        assert_eq!(rejected["field"], field, "{query}: {rejected}");
    }

    // While serving, the views report their positions and digests.
    let (status, views) = get_json(&server, &audrey, "/api/views/status").await;
    assert_eq!(status, 200, "{views}");
    let names: Vec<&str> = views["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| view["view"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tracking", "billing", "audit", "schedule"]);

    server.stop().await;
}

/// Turns the `ledger_positions` of a JSON export into `CHAIN:NEXT_POSITION` items.
fn submitted_positions(export: &serde_json::Value) -> Vec<String> {
    export["ledger_positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| format!("{}:{}", item["chain"], item["next_position"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rates_price_the_usage() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    open_account(work.path(), "bill", Role::Billing).await;
    let rates = work.path().join("rates.json");
    std::fs::write(
        &rates,
        r#"{"per_delivery": 100, "per_recipient": 25, "per_gib": 1000, "per_normal_priority": 0,
            "per_high_priority": 50, "per_urgent_priority": 200, "per_postmark": 30}"#,
    )
    .unwrap();
    let server = Server::start(
        work.path(),
        Clock::system(),
        &["--rates", rates.to_str().unwrap()],
    )
    .await;
    let ada = server.login("ada").await;
    let submitted = submit(&server, &ada, "LEGAL-7").await;

    let bill = server.login("bill").await;
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let path = format!(
        "/api/billing/usage?from={month}&to={month}&after={}",
        after_of(&submitted)
    );
    let (status, usage) = get_json(&server, &bill, &path).await;

    assert_eq!(status, 200, "{usage}");
    let row = &usage["rows"][0];
    assert_eq!(row["usage"]["deliveries"], 1, "{usage}");
    // One delivery (100) to one recipient (25), 1,000 bytes (0 cents), normal priority.
    assert_eq!(row["amounts"]["total"], 125, "{usage}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rates_file_stops_the_start() {
    let work = tempfile::tempdir().unwrap();
    let rates = work.path().join("rates.json");
    let too_high = serde_json::json!({
        "per_delivery": 150, "per_recipient": 20, "per_gib": u64::MAX,
        "per_normal_priority": 0, "per_high_priority": 50, "per_urgent_priority": 200,
        "per_postmark": 30,
    });
    let cases = [
        (
            r#"{"per_delivery": "one dollar"}"#.to_owned(),
            "per_delivery",
        ),
        (
            too_high.to_string(),
            "per_gib is 18446744073709551615 cents, above the maximum",
        ),
        (
            r#"{"per_delivery": 1, "per_recipient": 1, "per_gib": 1, "per_normal_priority": 1,
                "per_high_priority": 1, "per_urgent_priority": 1, "per_postmark": 1,
                "per_recipeint": 2}"#
                .to_owned(),
            "unknown field `per_recipeint`",
        ),
    ];
    for (text, problem) in cases {
        std::fs::write(&rates, &text).unwrap();
        let argv = [
            "consign",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rates",
            rates.to_str().unwrap(),
            "--data-dir",
            work.path().to_str().unwrap(),
        ];
        let consign_api::cli::Command::Serve(args) =
            <consign_api::cli::Cli as clap::Parser>::parse_from(argv).command
        else {
            unreachable!("the arguments name the serve subcommand");
        };

        let error = consign_api::serve::run(args, Clock::system(), None, std::future::pending())
            .await
            .unwrap_err();

        let message = format!("{error:#}");
        assert!(message.contains("invalid rates file"), "{text}: {message}");
        assert!(message.contains(problem), "{text}: {message}");
    }
}
