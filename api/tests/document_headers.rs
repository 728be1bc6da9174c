//! Repeated parameters and headers in `POST /api/deliveries` against a running server:
//! a part's parameter sent twice, and two Content-Type or Idempotency-Key headers on the
//! request. Each would leave a choice of value that the client cannot see, so each is
//! rejected naming the field, and leaves every chain head, `blobs/objects` and
//! `blobs/tmp` as they were. The same request with each sent once is stored. The file
//! name is read from `filename` in any letter case, and one that is not UTF-8 is
//! rejected, as is a part in base64 or quoted-printable.

mod support;

use std::path::Path;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::{Value, json};
use support::{Server, Snapshot, open_account, snapshot};

/// Boundary of every hand-built multipart body.
const BOUNDARY: &str = "consign-document-headers-8d2c41";

/// Header lines of a well-formed document part named `file_name`.
fn document(file_name: &str) -> Vec<String> {
    vec![
        format!("Content-Disposition: form-data; name=\"document\"; filename=\"{file_name}\""),
        "Content-Type: application/pdf".to_owned(),
    ]
}

/// Header lines of the metadata part.
fn metadata_headers() -> Vec<String> {
    vec![
        "Content-Disposition: form-data; name=\"metadata\"".to_owned(),
        "Content-Type: application/json".to_owned(),
    ]
}

/// Builds a multipart body of a metadata part with `metadata` as its header lines,
/// followed by one document part for each list of header lines in `documents`. The
/// lines go on the wire exactly as written.
fn body_with(metadata: &[String], documents: &[Vec<String>]) -> Vec<u8> {
    let json = json!({ "recipients": ["bob@recipients.test"], "subject": "Contract" });
    let mut body = Vec::new();
    let parts = std::iter::once((metadata, json.to_string())).chain(
        documents
            .iter()
            .map(|lines| (lines.as_slice(), "%PDF-1.7 x".to_owned())),
    );
    for (lines, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        for line in lines {
            body.extend_from_slice(format!("{line}\r\n").as_bytes());
        }
        body.extend_from_slice(format!("\r\n{content}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Builds a multipart body of the metadata part and `documents`.
fn body(documents: &[Vec<String>]) -> Vec<u8> {
    body_with(&metadata_headers(), documents)
}

/// Sends `body` with the multipart Content-Type and the extra request `headers`, and
/// returns the status and the JSON body.
async fn send(
    server: &Server,
    token: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    // reqwest appends a header that is already set, so a name may occur twice.
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {text}"));
    (status, json)
}

/// Checks that a response has `status` on `field`, that its message contains the fix
/// (sending the header or parameter once), and that nothing changed since `before`.
async fn assert_rejected(
    server: &Server,
    case: &str,
    (status, body): (u16, Value),
    expected: (u16, &str),
    before: &Snapshot,
) {
    assert_eq!(status, expected.0, "{case}: {body}");
    assert_eq!(body["field"], expected.1, "{case}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("once"), "{case}: no fix in {message}");
    assert_eq!(
        &snapshot(server).await,
        before,
        "{case}: the server wrote something"
    );
}

/// Checks a response for a 201 that stored `documents` documents.
fn assert_stored(case: &str, (status, body): (u16, Value), documents: usize) {
    assert_eq!(status, 201, "{case}: {body}");
    assert_eq!(
        body["documents"].as_array().map(Vec::len),
        Some(documents),
        "{case}: {body}"
    );
}

async fn start(work: &Path) -> (Server, String) {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let token = server.login("ada").await;
    (server, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_parameters_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let disposition = "Content-Disposition: form-data; name=\"document\"; filename=\"b.pdf\"";
    let cases = [
        (
            "filename twice",
            vec![
                format!("{disposition}; filename=\"c.exe\""),
                "Content-Type: application/pdf".to_owned(),
            ],
            "documents[1].file_name",
        ),
        (
            "filename twice in different case",
            vec![
                format!("{disposition}; FILENAME=\"c.exe\""),
                "Content-Type: application/pdf".to_owned(),
            ],
            "documents[1].file_name",
        ),
        (
            "charset twice in different case",
            vec![
                disposition.to_owned(),
                "Content-Type: text/plain; charset=utf-8; CHARSET=iso-8859-1".to_owned(),
            ],
            "documents[1].content_type",
        ),
    ];
    for (case, lines, field) in cases {
        let response = send(&server, &token, &[], body(&[document("a.pdf"), lines])).await;
        assert_rejected(&server, case, response, (422, field), &before).await;
    }

    let response = send(
        &server,
        &token,
        &[],
        body(&[document("a.pdf"), document("b.pdf")]),
    )
    .await;
    assert_stored("each header once", response, 2);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_request_headers_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let documents = [document("a.pdf")];
    let response = send(
        &server,
        &token,
        &[("idempotency-key", "first"), ("idempotency-key", "second")],
        body(&documents),
    )
    .await;
    assert_rejected(
        &server,
        "two Idempotency-Key headers",
        response,
        (422, "Idempotency-Key"),
        &before,
    )
    .await;

    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");
    let response = send(
        &server,
        &token,
        &[("content-type", multipart.as_str())],
        body(&documents),
    )
    .await;
    assert_rejected(
        &server,
        "two Content-Type headers",
        response,
        (400, "Content-Type"),
        &before,
    )
    .await;

    let response = send(
        &server,
        &token,
        &[("idempotency-key", "first")],
        body(&documents),
    )
    .await;
    assert_stored("each header once", response, 1);

    server.stop().await;
}

/// The `name` and `filename` parameters are read in any letter case and outside other
/// parameters' quoted values, and a file name that is not UTF-8 is rejected rather than
/// taken as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_name_read_as_written() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;

    let before = snapshot(&server).await;
    let marker = b"LATIN-1-A-UMLAUT";
    let mut latin1 = body_with(&metadata_headers(), &[document("MLATIN-1-A-UMLAUTrz.pdf")]);
    let at = latin1
        .windows(marker.len())
        .position(|window| window == marker)
        .unwrap();
    latin1.splice(at..at + marker.len(), [0xE4]);
    let (status, answer) = send(&server, &token, &[], latin1).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "documents[0].file_name", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("not valid UTF-8"), "{message}");
    assert!(message.contains("send the file name in UTF-8"), "{message}");
    assert_eq!(
        snapshot(&server).await,
        before,
        "the server wrote something"
    );

    let lines = vec![
        "Content-Disposition: form-data; NAME=\"document\"; x=\"y; filename=c.exe\"; \
         FILENAME=\"Vertrag.pdf\""
            .to_owned(),
        "Content-Type: application/pdf".to_owned(),
    ];
    let (status, answer) = send(&server, &token, &[], body(&[lines])).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["documents"][0]["file_name"], "Vertrag.pdf",
        "{answer}"
    );

    server.stop().await;
}

/// A part in base64 or quoted-printable is rejected, because its bytes would be stored
/// still encoded. An encoding that leaves the bytes as they are is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_part_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    for encoding in ["base64", "quoted-printable"] {
        let mut lines = document("a.pdf");
        lines.push(format!("Content-Transfer-Encoding: {encoding}"));
        let (status, answer) = send(&server, &token, &[], body(&[lines])).await;
        assert_eq!(status, 422, "{encoding}: {answer}");
        assert_eq!(answer["field"], "documents[0]", "{encoding}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(encoding), "{encoding}: {message}");
        assert!(
            message.contains("leave the header out"),
            "{encoding}: {message}"
        );
        assert_eq!(
            snapshot(&server).await,
            before,
            "{encoding}: the server wrote something"
        );
    }

    let mut lines = document("a.pdf");
    lines.push("Content-Transfer-Encoding: binary".to_owned());
    let response = send(&server, &token, &[], body(&[lines])).await;
    assert_stored("binary", response, 1);

    server.stop().await;
}
