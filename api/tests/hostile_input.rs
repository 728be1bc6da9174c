//! Hostile submissions against a running server: header injection, path-like and
//! malformed file names, media types, limits, an upload cut off mid-body, and malformed
//! metadata. Each is rejected with a 4xx whose JSON names the field or the limit, and
//! leaves every chain head, `blobs/objects` and `blobs/tmp` as they were.

mod hostile_support;
mod support;

use std::time::{Duration, Instant};

use hostile_support::{
    BOUNDARY, INJECTION, Part, assert_rejected, document, field, limit, metadata, start, submit,
    valid_metadata, with,
};
use serde_json::json;
use support::{count_files, snapshot};
use tokio::io::AsyncWriteExt;

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
