//! Hostile submissions against a running server: header injection, path-like and
//! malformed file names, limits, an upload cut off mid-body, invalid addresses and
//! dates, and malformed metadata. Each is rejected with a 4xx whose JSON names the
//! field or the limit, and leaves every chain head, `blobs/objects` and `blobs/tmp` as
//! they were. The positive side: file names in several scripts survive to the
//! download's `Content-Disposition`, and a message with line breaks cannot add e-mail
//! headers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::{Value, json};
use support::{Server, count_files, links_in, open_account, wait_for_messages};
use tokio::io::AsyncWriteExt;

/// Boundary of every hand-built multipart body.
const BOUNDARY: &str = "consign-test-boundary-5c1e9a";

/// Text that tries to end a header line and start a `Bcc` header.
const INJECTION: &str = "\r\nBcc: x@evil.test";

/// One part of a hand-built multipart body. Building the bytes by hand, rather than
/// with reqwest, puts any file name on the wire exactly as written.
enum Part {
    Metadata(String),
    Document {
        file_name: Option<String>,
        content: Vec<u8>,
    },
    /// A document named `typed.pdf` whose part header states this media type.
    Typed {
        media_type: String,
    },
}

fn metadata(value: &Value) -> Part {
    Part::Metadata(value.to_string())
}

fn document(file_name: &str) -> Part {
    Part::Document {
        file_name: Some(file_name.to_owned()),
        content: b"%PDF-1.7 test document".to_vec(),
    }
}

fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Metadata(json) => {
                body.extend_from_slice(
                    b"Content-Disposition: form-data; name=\"metadata\"\r\n\
                      Content-Type: application/json\r\n\r\n",
                );
                body.extend_from_slice(json.as_bytes());
            }
            Part::Document { file_name, content } => {
                let disposition = match file_name {
                    Some(name) => format!("form-data; name=\"document\"; filename=\"{name}\""),
                    None => "form-data; name=\"document\"".to_owned(),
                };
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: {disposition}\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(content);
            }
            Part::Typed { media_type } => {
                body.extend_from_slice(
                    b"Content-Disposition: form-data; name=\"document\"; filename=\"typed.pdf\"\r\n\
                      Content-Type: ",
                );
                body.extend_from_slice(media_type.as_bytes());
                body.extend_from_slice(b"\r\n\r\n%PDF-1.7 typed");
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn submit(server: &Server, token: &str, parts: &[Part]) -> reqwest::Response {
    server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart_body(parts))
        .send()
        .await
        .unwrap()
}

/// Returns a valid metadata object, which each case changes in one place.
fn valid_metadata() -> Value {
    json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
        "message": "Please sign.",
    })
}

fn with(key: &str, value: Value) -> Value {
    let mut metadata = valid_metadata();
    metadata[key] = value;
    metadata
}

/// What the server has written: every chain's next position and the number of files
/// under `blobs/objects` and `blobs/tmp`.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    heads: Vec<Value>,
    objects: usize,
    tmp: usize,
}

async fn snapshot(server: &Server) -> Snapshot {
    let health: Value = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let heads = health["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chain| chain["next_position"].clone())
        .collect();
    Snapshot {
        heads,
        objects: count_files(&server.data_dir.join("blobs/objects")),
        tmp: count_files(&server.data_dir.join("blobs/tmp")),
    }
}

/// The expected rejection: HTTP status, and the JSON key (`field` or `limit`) with
/// its value.
struct Rejection {
    status: u16,
    key: &'static str,
    value: String,
}

fn field(status: u16, name: &str) -> Rejection {
    Rejection {
        status,
        key: "field",
        value: name.to_owned(),
    }
}

fn limit(status: u16, name: &str) -> Rejection {
    Rejection {
        status,
        key: "limit",
        value: name.to_owned(),
    }
}

/// Checks a response against `expected` and that nothing changed since `before`, and
/// returns the JSON body for further checks.
async fn assert_rejected(
    server: &Server,
    case: &str,
    response: reqwest::Response,
    expected: &Rejection,
    before: &Snapshot,
) -> Value {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected.status, "{case}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{case}: the body is not JSON ({error}): {text}"));
    assert!(body["error"].is_string(), "{case}: no error code in {body}");
    assert!(body["message"].is_string(), "{case}: no message in {body}");
    assert_eq!(
        body[expected.key],
        expected.value.as_str(),
        "{case}: {body}"
    );
    let after = snapshot(server).await;
    assert_eq!(&after, before, "{case}: the server wrote something");
    body
}

async fn start(work: &Path, extra: &[&str]) -> (Server, String) {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), extra).await;
    let token = server.login("ada").await;
    (server, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    for line_break in ["\r\n", "\n", "\r"] {
        let attack = format!("x{line_break}Bcc: x@evil.test");
        let cases = [
            ("subject", with("subject", json!(attack)), "subject"),
            (
                "display name",
                with(
                    "recipients",
                    json!([{ "address": "bob@recipients.test", "name": attack }]),
                ),
                "recipients[0].name",
            ),
            (
                "billing code",
                with("billing_code", json!(attack)),
                "billing_code",
            ),
            (
                "address",
                with(
                    "recipients",
                    json!([format!("bob@recipients.test{line_break}Bcc: x@evil.test")]),
                ),
                "recipients[0]",
            ),
            (
                "list name in a submission",
                with("lists", json!([attack])),
                "lists[0]",
            ),
            (
                "access password, which a recipient could not type",
                with("password", json!(format!("open{line_break}sesame 7"))),
                "password",
            ),
        ];
        for (case, metadata_value, expected) in cases {
            let case = format!("{case} with {line_break:?}");
            let response = submit(
                &server,
                &token,
                &[metadata(&metadata_value), document("a.pdf")],
            )
            .await;
            assert_rejected(&server, &case, response, &field(422, expected), &before).await;
        }
    }

    // The list name is a path segment of PUT /api/lists/{name}, percent-encoded.
    for encoded in ["team%0D%0ABcc:%20x@evil.test", "team%0ABcc:%20x@evil.test"] {
        let response = server
            .client
            .put(server.url(&format!("/api/lists/{encoded}")))
            .bearer_auth(&token)
            .json(&json!({ "members": ["bob@recipients.test"] }))
            .send()
            .await
            .unwrap();
        let case = format!("list name {encoded}");
        assert_rejected(&server, &case, response, &field(422, "name"), &before).await;
    }
    let response = server
        .client
        .put(server.url("/api/lists/team"))
        .bearer_auth(&token)
        .json(&json!({ "members": [format!("bob@recipients.test{INJECTION}")] }))
        .send()
        .await
        .unwrap();
    assert_rejected(
        &server,
        "list member",
        response,
        &field(422, "members[0]"),
        &before,
    )
    .await;

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    let long_ascii = format!("{}.pdf", "a".repeat(252));
    let long_accented = "é".repeat(128);
    let names: Vec<(&str, Option<String>)> = vec![
        ("unix traversal", Some("../../etc/passwd".to_owned())),
        ("windows traversal", Some("..\\..\\boot.ini".to_owned())),
        ("absolute path", Some("/etc/passwd".to_owned())),
        ("parent folder", Some("..".to_owned())),
        ("tab", Some("contract\t.pdf".to_owned())),
        ("C1 control", Some("contract\u{9b}.pdf".to_owned())),
        ("next line", Some("contract\u{85}.pdf".to_owned())),
        (
            "right-to-left override",
            Some("invoice\u{202E}fdp.exe".to_owned()),
        ),
        // CR LF ends the part header inside the quoted name, so the server parses no
        // file name at all, and `Bcc` becomes a header of that part only.
        ("header injection", Some(format!("contract.pdf{INJECTION}"))),
        ("empty", Some(String::new())),
        ("blank", Some("   ".to_owned())),
        ("absent", None),
        ("256 ASCII bytes", Some(long_ascii)),
        ("256 bytes in 128 characters", Some(long_accented)),
    ];
    for (case, name) in names {
        let parts = [
            metadata(&valid_metadata()),
            Part::Document {
                file_name: name,
                content: b"content".to_vec(),
            },
        ];
        let response = submit(&server, &token, &parts).await;
        assert_rejected(
            &server,
            case,
            response,
            &field(422, "documents[0].file_name"),
            &before,
        )
        .await;
    }

    // A bad second name after a stored first document: the first is deleted again.
    let parts = [
        metadata(&valid_metadata()),
        document("fine.pdf"),
        document("../../etc/passwd"),
    ];
    let response = submit(&server, &token, &parts).await;
    let case = "traversal in the second document";
    assert_rejected(
        &server,
        case,
        response,
        &field(422, "documents[1].file_name"),
        &before,
    )
    .await;

    server.stop().await;
}

/// A media type that does not parse is refused, not stored as
/// `application/octet-stream`: the multipart parser drops such a header, which would
/// otherwise look like none given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    for media_type in ["not/a type", "nonsense", "application/", "tëxt/plain"] {
        let parts = [
            metadata(&valid_metadata()),
            Part::Typed {
                media_type: media_type.to_owned(),
            },
        ];
        let response = submit(&server, &token, &parts).await;
        assert_rejected(
            &server,
            media_type,
            response,
            &field(422, "documents[0].content_type"),
            &before,
        )
        .await;
    }

    let parts = [
        metadata(&valid_metadata()),
        Part::Typed {
            media_type: "text/plain; charset=utf-8".to_owned(),
        },
    ];
    let response = submit(&server, &token, &parts).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_rejected() {
    let work = tempfile::tempdir().unwrap();
    let extra = [
        "--max-document-bytes",
        "1000000",
        "--max-documents",
        "2",
        "--max-recipients",
        "3",
    ];
    let (server, token) = start(work.path(), &extra).await;
    let before = snapshot(&server).await;

    let oversized = Part::Document {
        file_name: Some("large.bin".to_owned()),
        content: vec![0x5a; 2 * 1024 * 1024],
    };
    let response = submit(&server, &token, &[metadata(&valid_metadata()), oversized]).await;
    let body = assert_rejected(
        &server,
        "2 MB document",
        response,
        &limit(413, "max_document_bytes"),
        &before,
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(r#"document 1 ("large.bin")"#), "{message}");

    let three = [
        metadata(&valid_metadata()),
        document("one.pdf"),
        document("two.pdf"),
        document("three.pdf"),
    ];
    let response = submit(&server, &token, &three).await;
    let body = assert_rejected(
        &server,
        "three documents",
        response,
        &limit(422, "max_documents"),
        &before,
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(r#"document 3 ("three.pdf")"#), "{message}");
    assert!(message.contains("limit of 2 documents"), "{message}");

    let four = with(
        "recipients",
        json!([
            "a@recipients.test",
            "b@recipients.test",
            "c@recipients.test",
            "d@recipients.test"
        ]),
    );
    let response = submit(&server, &token, &[metadata(&four), document("a.pdf")]).await;
    assert_rejected(
        &server,
        "four recipients",
        response,
        &limit(422, "max_recipients"),
        &before,
    )
    .await;

    // Exactly at every limit is accepted, which shows the cases above fail only by
    // exceeding them.
    let at_limits = with(
        "recipients",
        json!([
            "a@recipients.test",
            "b@recipients.test",
            "c@recipients.test"
        ]),
    );
    let full_size = Part::Document {
        file_name: Some("exact.bin".to_owned()),
        content: vec![0x5a; 1_000_000],
    };
    let response = submit(
        &server,
        &token,
        &[metadata(&at_limits), full_size, document("two.pdf")],
    )
    .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    // An accepted submission changes the snapshot, which shows that it detects writes.
    let after = snapshot(&server).await;
    assert_ne!(after.heads, before.heads);
    assert_eq!(after.objects, 2);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_upload_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;
    let tmp = server.data_dir.join("blobs/tmp");

    let mut body = Vec::new();
    body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Disposition: form-data; name=\"metadata\"\r\n\r\n");
    body.extend_from_slice(valid_metadata().to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Disposition: form-data; name=\"document\"; filename=\"cut.bin\"\r\n\r\n",
    );
    body.extend_from_slice(&vec![0x42; 300 * 1024]);
    let address = server.base.strip_prefix("http://").unwrap().to_owned();
    let head = format!(
        "POST /api/deliveries HTTP/1.1\r\n\
         Host: {address}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: 10000000\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    stream.flush().await.unwrap();

    // The document has started to stream into blobs/tmp before the connection drops.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_files(&tmp) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_files(&tmp), 1, "the upload never reached blobs/tmp");
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(10);
    while count_files(&tmp) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = snapshot(&server).await;
    assert_eq!(after, before);

    server.stop().await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path(), &[]).await;
    let before = snapshot(&server).await;

    let not_json = Part::Metadata("{\"subject\": \"Contract\", recipients".to_owned());
    let response = submit(&server, &token, &[not_json, document("a.pdf")]).await;
    assert_rejected(
        &server,
        "not JSON",
        response,
        &field(400, "metadata"),
        &before,
    )
    .await;

    let not_object = Part::Metadata("[\"bob@recipients.test\"]".to_owned());
    let response = submit(&server, &token, &[not_object, document("a.pdf")]).await;
    assert_rejected(
        &server,
        "not an object",
        response,
        &field(400, "metadata"),
        &before,
    )
    .await;

    let response = submit(
        &server,
        &token,
        &[document("a.pdf"), metadata(&valid_metadata())],
    )
    .await;
    assert_rejected(
        &server,
        "document first",
        response,
        &field(400, "metadata"),
        &before,
    )
    .await;

    let unknown = with("bcc", json!("x@evil.test"));
    let response = submit(&server, &token, &[metadata(&unknown), document("a.pdf")]).await;
    let body = assert_rejected(
        &server,
        "unknown field",
        response,
        &field(400, "metadata"),
        &before,
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("bcc"),
        "the message does not name the unknown field: {message}"
    );

    // A wrong value in a known field is that field's error.
    let cases = [
        (
            "unknown priority",
            with("priority", json!("meh")),
            "priority",
        ),
        (
            "subject of the wrong type",
            with("subject", json!(7)),
            "subject",
        ),
    ];
    for (case, value, expected) in cases {
        let response = submit(&server, &token, &[metadata(&value), document("a.pdf")]).await;
        assert_rejected(&server, case, response, &field(422, expected), &before).await;
    }

    let response = submit(&server, &token, &[metadata(&valid_metadata())]).await;
    assert_rejected(
        &server,
        "no document",
        response,
        &field(422, "documents"),
        &before,
    )
    .await;

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

    server.stop().await;
}
