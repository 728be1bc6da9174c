//! Hostile values in submissions against a running server: invalid addresses and
//! dates are rejected with a 4xx naming the field and leave nothing behind. File names
//! in several scripts survive to the download's `Content-Disposition`, a message with
//! line breaks cannot add e-mail headers, and lists read back unchanged and can be
//! removed.

mod hostile_support;
mod support;

use std::time::Duration;

use hostile_support::{
    INJECTION, Part, assert_rejected, document, field, metadata, start, submit, valid_metadata,
    with,
};
use serde_json::{Value, json};
use support::{links_in, snapshot, wait_for_messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    for address in ["not-an-address", "a@", "@b.test", "a b@c.test", ""] {
        let plain = with("recipients", json!(["ok@recipients.test", address]));
        let response = submit(&server, &token, &[metadata(&plain), document("a.pdf")]).await;
        let case = format!("address {address:?}");
        assert_rejected(
            &server,
            &case,
            response,
            &field(422, "recipients[1]"),
            &before,
        )
        .await;

        let named = with("recipients", json!([{ "address": address, "name": "Bob" }]));
        let response = submit(&server, &token, &[metadata(&named), document("a.pdf")]).await;
        let case = format!("named address {address:?}");
        assert_rejected(
            &server,
            &case,
            response,
            &field(422, "recipients[0]"),
            &before,
        )
        .await;
    }
    let objects = [
        (
            "foreign key",
            json!({ "address": "bob@recipients.test", "display_name": "Bob" }),
        ),
        (
            "misspelt key",
            json!({ "address": "bob@recipients.test", "nmae": "Bob" }),
        ),
        ("no address", json!({ "name": "Bob" })),
        ("number as address", json!({ "address": 7 })),
        (
            "number as name",
            json!({ "address": "bob@recipients.test", "name": 7 }),
        ),
        ("array", json!(["bob@recipients.test"])),
    ];
    for (case, recipient) in objects {
        let metadata_value = with("recipients", json!([recipient]));
        let response = submit(
            &server,
            &token,
            &[metadata(&metadata_value), document("a.pdf")],
        )
        .await;
        let body = assert_rejected(
            &server,
            case,
            response,
            &field(422, "recipients[0]"),
            &before,
        )
        .await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(r#"{"address": "name@example.org""#),
            "{case}: {message}"
        );
    }

    let none = with("recipients", json!([]));
    let response = submit(&server, &token, &[metadata(&none), document("a.pdf")]).await;
    assert_rejected(
        &server,
        "no recipient",
        response,
        &field(422, "recipients"),
        &before,
    )
    .await;

    server.stop().await;
}

/// One-line fields with a character that hides text or reorders it: a bidirectional
/// override or isolate, a zero-width space, a byte order mark or a line separator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    let with = |key: &str, value: serde_json::Value| {
        let mut metadata = valid_metadata();
        metadata[key] = value;
        metadata
    };
    let cases = [
        (
            "override in subject",
            with("subject", json!("Invoice \u{202E}fdp.exe")),
            "subject",
        ),
        (
            "isolate in subject",
            with("subject", json!("a\u{2067}b")),
            "subject",
        ),
        (
            "zero-width space in billing code",
            with("billing_code", json!("LEGAL\u{200B}-7")),
            "billing_code",
        ),
        (
            "byte order mark in billing code",
            with("billing_code", json!("\u{FEFF}LEGAL-7")),
            "billing_code",
        ),
        (
            "override in a recipient's name",
            with(
                "recipients",
                json!([{ "address": "bob@recipients.test", "name": "Bob \u{202E}yrrab" }]),
            ),
            "recipients[0].name",
        ),
    ];
    for (case, metadata_value, expected) in cases {
        let response = submit(
            &server,
            &token,
            &[metadata(&metadata_value), document("a.pdf")],
        )
        .await;
        let body = assert_rejected(&server, case, response, &field(422, expected), &before).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("invisible character"), "{case}: {message}");
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    let dates = |entries: &[(&str, &str)]| {
        let mut metadata = valid_metadata();
        for (key, value) in entries {
            metadata[*key] = json!(value);
        }
        metadata
    };
    let cases = [
        (
            "past delivery date",
            dates(&[("deliver_at", "2020-01-01T09:00:00Z")]),
            "deliver_at",
        ),
        (
            "past expiry date",
            dates(&[("expires_at", "2020-01-01T09:00:00+01:00")]),
            "expires_at",
        ),
        (
            "unparseable",
            dates(&[("deliver_at", "next tuesday at nine")]),
            "deliver_at",
        ),
        (
            "date without time",
            dates(&[("expires_at", "2099-01-01")]),
            "expires_at",
        ),
        (
            "local time without a zone",
            dates(&[("deliver_at", "2099-06-01T09:00")]),
            "deliver_at",
        ),
        (
            "DST gap in 2026",
            dates(&[
                ("deliver_at", "2026-03-29T02:30"),
                ("time_zone", "Europe/Paris"),
            ]),
            "deliver_at",
        ),
        (
            "DST gap in the future",
            dates(&[
                ("deliver_at", "2099-03-29T02:30"),
                ("time_zone", "Europe/Paris"),
            ]),
            "deliver_at",
        ),
        (
            "unknown zone",
            dates(&[
                ("deliver_at", "2099-06-01T09:00"),
                ("time_zone", "Mars/Olympus_Mons"),
            ]),
            "time_zone",
        ),
        (
            "unknown zone without dates",
            dates(&[("time_zone", "Mars/Olympus_Mons")]),
            "time_zone",
        ),
        (
            "offset of 25 hours",
            dates(&[("deliver_at", "2099-01-01T00:00:00+25:00")]),
            "deliver_at",
        ),
        (
            "expiry before delivery",
            dates(&[
                ("deliver_at", "2099-06-02T09:00:00Z"),
                ("expires_at", "2099-06-01T09:00:00Z"),
            ]),
            "expires_at",
        ),
        (
            "expiry equal to delivery",
            dates(&[
                ("deliver_at", "2099-06-01T09:00:00Z"),
                ("expires_at", "2099-06-01T11:00:00+02:00"),
            ]),
            "expires_at",
        ),
    ];
    for (case, metadata_value, expected) in cases {
        let response = submit(
            &server,
            &token,
            &[metadata(&metadata_value), document("a.pdf")],
        )
        .await;
        let body = assert_rejected(&server, case, response, &field(422, expected), &before).await;
        if case == "DST gap in the future" {
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("does not exist"), "{message}");
        }
    }

    server.stop().await;
}

/// Splits a `Content-Disposition` value into its percent-decoded `filename*`.
fn extended_file_name(disposition: &str) -> String {
    let encoded = disposition
        .split("filename*=UTF-8''")
        .nth(1)
        .unwrap_or_else(|| panic!("no filename* in {disposition:?}"));
    percent_encoding::percent_decode_str(encoded.trim())
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_file_names_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;

    let names = [
        "Rechnung März – Übersicht é à ç.pdf",
        "Договор аренды.pdf",
        "Ελληνικά έγγραφα.txt",
        "契約書 第二版.pdf",
        "عقد الإيجار.pdf",
        "📄 notes 🖋️ 👩‍💻.txt",
    ];
    let mut parts = vec![metadata(&valid_metadata())];
    for (index, name) in names.iter().enumerate() {
        parts.push(Part::Document {
            file_name: Some((*name).to_owned()),
            content: format!("document {index}").into_bytes(),
        });
    }
    let response = submit(&server, &token, &parts).await;
    assert_eq!(response.status(), 201);
    let submitted: Value = response.json().await.unwrap();
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    for (index, name) in names.iter().enumerate() {
        assert_eq!(submitted["documents"][index]["file_name"], *name);
    }

    let detail: Value = server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (index, name) in names.iter().enumerate() {
        assert_eq!(detail["documents"][index]["file_name"], *name);
    }

    let messages =
        wait_for_messages(&server.data_dir.join("outbox"), 1, Duration::from_secs(30)).await;
    let link = links_in(&messages[0], &server.base).remove(0);
    for (index, name) in names.iter().enumerate() {
        let id = submitted["documents"][index]["document"].as_str().unwrap();
        let response = server
            .client
            .get(format!("{link}/documents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(disposition.is_ascii(), "{disposition}");
        assert_eq!(extended_file_name(&disposition), *name, "{disposition}");
        let content = response.bytes().await.unwrap();
        assert_eq!(content, format!("document {index}").as_bytes(), "{name}");
    }

    server.stop().await;
}

/// Returns the lower-case header names of a message, in order.
fn header_names(message: &[u8]) -> Vec<String> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .unwrap();
    parsed
        .headers()
        .iter()
        .map(|header| header.name().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_cannot_add_headers() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let outbox = server.data_dir.join("outbox");

    let plain = with("message", json!("Please sign."));
    let response = submit(&server, &token, &[metadata(&plain), document("a.pdf")]).await;
    assert_eq!(response.status(), 201);
    let baseline = wait_for_messages(&outbox, 1, Duration::from_secs(30))
        .await
        .remove(0);

    let hostile = format!(
        "Please sign.{INJECTION}\r\nX-Injected: yes\r\n\r\nBcc: y@evil.test\nSubject: other"
    );
    let response = submit(
        &server,
        &token,
        &[
            metadata(&with("message", json!(hostile))),
            document("a.pdf"),
        ],
    )
    .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let messages = wait_for_messages(&outbox, 2, Duration::from_secs(30)).await;
    let attacked = messages
        .into_iter()
        .find(|message| *message != baseline)
        .unwrap();

    let names = header_names(&attacked);
    assert!(!names.iter().any(|name| name == "bcc"), "{names:?}");
    assert!(!names.iter().any(|name| name == "x-injected"), "{names:?}");
    assert_eq!(
        names.iter().filter(|name| *name == "subject").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names, header_names(&baseline));
    let parsed = mail_parser::MessageParser::default()
        .parse(&attacked)
        .unwrap();
    let recipients: Vec<String> = parsed
        .to()
        .unwrap()
        .iter()
        .filter_map(|address| address.address().map(str::to_owned))
        .collect();
    assert_eq!(recipients, ["bob@recipients.test"]);
    // The text reached the body, where it is harmless.
    let text = parsed.body_text(0).unwrap();
    assert!(text.contains("Bcc: x@evil.test"), "{text}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_read_back_saves_unchanged() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let put = |body: Value| {
        server
            .client
            .put(server.url("/api/lists/team"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let get_members = || async {
        let lists: Value = server
            .client
            .get(server.url("/api/lists"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        lists["lists"][0]["members"].clone()
    };

    let before = snapshot(&server).await;
    let foreign =
        json!({ "members": [{ "address": "bee@recipients.test", "display_name": "Bee" }] });
    let response = put(foreign).await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("display_name"), "{text}");
    assert!(text.contains(r#""field":"members[0]""#), "{text}");
    assert_eq!(
        snapshot(&server).await,
        before,
        "the refused list was written"
    );

    // Addresses that differ only in letter case are one recipient of a delivery.
    let twice = json!({ "members": ["bee@recipients.test", "Bee@Recipients.test"] });
    let response = put(twice).await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains(r#""field":"members[1]""#), "{text}");
    assert!(text.contains("members[0]"), "{text}");
    assert_eq!(
        snapshot(&server).await,
        before,
        "the list with a repeat was written"
    );

    let members = json!([
        { "address": "bee@recipients.test", "name": "Bee" },
        { "address": "cy@recipients.test", "name": null },
    ]);
    let response = put(json!({ "members": members })).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let read = get_members().await;
    assert_eq!(read, members);

    let response = put(json!({ "members": read })).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(get_members().await, members);

    // A removed list is gone; removing it again, or a list never made, is a 404.
    let remove = |name: &str| {
        server
            .client
            .delete(server.url(&format!("/api/lists/{name}")))
            .bearer_auth(&token)
            .send()
    };
    let response = remove("team").await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(get_members().await, Value::Null, "the list is still listed");
    let before = snapshot(&server).await;
    for name in ["team", "never-made"] {
        let response = remove(name).await.unwrap();
        assert_eq!(response.status(), 404, "{name}");
    }
    assert_eq!(
        snapshot(&server).await,
        before,
        "a refused removal was written"
    );

    server.stop().await;
}
