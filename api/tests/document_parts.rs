//! The document parts of `POST /api/deliveries` against a running server: Content-Type
//! parameters, a file name given in `filename*`, two documents with one file name,
//! invisible characters in a file name, and how a rejected file name appears in the
//! error message. Each rejection is a 422 whose JSON names the field, and leaves every
//! chain head, `blobs/objects` and `blobs/tmp` as they were.

mod support;

use std::path::Path;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::{Value, json};
use support::{Server, Snapshot, open_account, snapshot};

/// Boundary of every hand-built multipart body.
const BOUNDARY: &str = "consign-document-parts-4b7f2e";

/// A document part with its header values exactly as they go on the wire.
struct DocumentPart {
    disposition: String,
    content_type: String,
    content: Vec<u8>,
}

/// Returns a document part named `file_name`, of type `application/pdf`.
fn named(file_name: &str) -> DocumentPart {
    DocumentPart {
        disposition: format!("form-data; name=\"document\"; filename=\"{file_name}\""),
        content_type: "application/pdf".to_owned(),
        content: format!("%PDF-1.7 {file_name}").into_bytes(),
    }
}

/// Returns a document part named `typed.txt` with this Content-Type.
fn typed(content_type: &str) -> DocumentPart {
    DocumentPart {
        content_type: content_type.to_owned(),
        ..named("typed.txt")
    }
}

/// Returns a document part with this Content-Disposition.
fn disposed(disposition: &str) -> DocumentPart {
    DocumentPart {
        disposition: disposition.to_owned(),
        ..named("unused.pdf")
    }
}

/// Builds a multipart body of a valid metadata part followed by `documents`.
fn multipart_body(documents: &[DocumentPart]) -> Vec<u8> {
    let metadata = json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
    });
    let mut body = format!(
        "--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n\
         {metadata}\r\n"
    )
    .into_bytes();
    for document in documents {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\n\
                 Content-Disposition: {}\r\n\
                 Content-Type: {}\r\n\r\n",
                document.disposition, document.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(&document.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Submits `documents` and returns the status and the response body as text.
async fn submit(server: &Server, token: &str, documents: &[DocumentPart]) -> (u16, String) {
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart_body(documents))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Submits `documents`, checks for a 422 on `field` that wrote nothing since
/// `before`, and returns the error message.
async fn assert_rejected(
    server: &Server,
    token: &str,
    case: &str,
    documents: &[DocumentPart],
    field: &str,
    before: &Snapshot,
) -> String {
    let (status, text) = submit(server, token, documents).await;
    assert_eq!(status, 422, "{case}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{case}: the body is not JSON ({error}): {text}"));
    assert_eq!(body["error"], "invalid_field", "{case}: {body}");
    assert_eq!(body["field"], field, "{case}: {body}");
    assert_eq!(
        &snapshot(server).await,
        before,
        "{case}: the server wrote something"
    );
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no message in {body}"))
        .to_owned()
}

/// Submits `documents`, checks for a 201, and returns the response body.
async fn assert_accepted(
    server: &Server,
    token: &str,
    case: &str,
    documents: &[DocumentPart],
) -> Value {
    let (status, text) = submit(server, token, documents).await;
    assert_eq!(status, 201, "{case}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn start(work: &Path) -> (Server, String) {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let token = server.login("ada").await;
    (server, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parameters_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let cases = [
        (
            "text/plain; charset",
            r#"the parameter "charset" without a value"#,
        ),
        (
            "text/plain; charset=",
            r#"the parameter "charset" without a value"#,
        ),
        ("text/plain;", "an empty parameter"),
        ("text/plain; charset=utf-8;", "an empty parameter"),
        ("text/plain; ; charset=utf-8", "an empty parameter"),
        (
            "text/plain; =utf-8",
            r#"a parameter without a name ("=utf-8")"#,
        ),
        (
            "text/plain; char set=utf-8",
            r#"invalid parameter name "char set""#,
        ),
        (
            "text/plain; charset =utf-8",
            r#"invalid parameter name "charset ""#,
        ),
        (
            "text/plain; charset=\"utf-8",
            r#"invalid value for the parameter "charset""#,
        ),
        (
            "text/plain; name=my file.txt",
            r#"invalid value for the parameter "name""#,
        ),
        (
            "text/plain; charset=utf/8",
            r#"invalid value for the parameter "charset""#,
        ),
    ];
    for (content_type, problem) in cases {
        let message = assert_rejected(
            &server,
            &token,
            content_type,
            &[typed(content_type)],
            "documents[0].content_type",
            &before,
        )
        .await;
        assert!(message.contains(problem), "{content_type}: {message}");
        assert!(
            message.contains(&format!("\"{content_type}\"")),
            "{content_type}: the message does not show the value: {message}"
        );
        assert!(
            message.contains("such as text/plain;"),
            "{content_type}: no example in {message}"
        );
    }

    // A bad second part after a stored first document: the first is deleted again.
    let documents = [named("fine.pdf"), typed("text/plain; charset")];
    assert_rejected(
        &server,
        &token,
        "second document",
        &documents,
        "documents[1].content_type",
        &before,
    )
    .await;

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_media_types_stored_unchanged() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;

    let content_types = [
        "text/plain; charset=utf-8",
        "text/plain; charset=\"utf-8\"",
        "application/pdf",
        "text/plain;charset=utf-8",
        "text/plain; charset=utf-8 ; format=flowed",
        "text/plain; name=\"a; b=c \\\"quoted\\\".txt\"",
        "application/octet-stream; name*=UTF-8''M%C3%A4rz.bin",
    ];
    for content_type in content_types {
        let submitted =
            assert_accepted(&server, &token, content_type, &[typed(content_type)]).await;
        assert_eq!(
            submitted["documents"][0]["media_type"], content_type,
            "{submitted}"
        );

        let delivery = submitted["delivery"].as_str().unwrap();
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
        assert_eq!(
            detail["documents"][0]["media_type"], content_type,
            "{detail}"
        );
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_file_name_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let dispositions = [
        (
            "filename* alone",
            "form-data; name=\"document\"; filename*=UTF-8''Vertrag%20M%C3%A4rz.pdf",
        ),
        (
            "filename* in capitals",
            "form-data; name=\"document\"; FILENAME*=UTF-8''Vertrag.pdf",
        ),
        (
            "filename* before filename",
            "form-data; name=\"document\"; filename*=UTF-8''Vertrag.pdf; filename=\"Vertrag.pdf\"",
        ),
        (
            "filename* and an empty filename",
            "form-data; name=\"document\"; filename=\"\"; filename*=UTF-8''Vertrag.pdf",
        ),
        (
            "filename before filename*",
            "form-data; name=\"document\"; filename=\"Vertrag.pdf\"; filename*=UTF-8''M%C3%A4rz.pdf",
        ),
        (
            "filename before filename* in mixed case",
            "form-data; name=\"document\"; filename=\"Vertrag.pdf\"; FileName*=UTF-8''M%C3%A4rz.pdf",
        ),
    ];
    for (case, disposition) in dispositions {
        let message = assert_rejected(
            &server,
            &token,
            case,
            &[named("first.pdf"), disposed(disposition)],
            "documents[1].file_name",
            &before,
        )
        .await;
        assert!(message.contains("filename*"), "{case}: {message}");
        assert!(
            message.contains("RFC 7578 section 4.2"),
            "{case}: {message}"
        );
        assert!(
            message.contains(r#"filename="Vertrag März.pdf""#),
            "{case}: no example in {message}"
        );
        assert!(!message.contains("is missing"), "{case}: {message}");
    }

    // The same parts with the name in filename= alone are stored.
    let plain = disposed("form-data; name=\"document\"; filename=\"März.pdf\"");
    let submitted = assert_accepted(
        &server,
        &token,
        "filename alone",
        &[named("first.pdf"), plain],
    )
    .await;
    assert_eq!(submitted["documents"][1]["file_name"], "März.pdf");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_file_names_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let cases = [
        ("same name", ["a.pdf", "b.pdf", "a.pdf"], 2, 0),
        (
            "names differing in case",
            ["Same.txt", "b.pdf", "same.txt"],
            2,
            0,
        ),
        (
            "composed and decomposed name",
            ["b.pdf", "M\u{E4}rz.txt", "Ma\u{308}rz.txt"],
            2,
            1,
        ),
        (
            "decomposed name in capitals",
            ["Ma\u{308}rz.txt", "MA\u{308}RZ.TXT", "b.pdf"],
            1,
            0,
        ),
        (
            "same name after trimming",
            ["a.pdf", " a.pdf ", "b.pdf"],
            1,
            0,
        ),
        (
            "same name in another script",
            ["b.pdf", "合同.pdf", "合同.pdf"],
            2,
            1,
        ),
    ];
    for (case, names, index, earlier) in cases {
        let documents: Vec<DocumentPart> = names.iter().map(|name| named(name)).collect();
        let message = assert_rejected(
            &server,
            &token,
            case,
            &documents,
            &format!("documents[{index}].file_name"),
            &before,
        )
        .await;
        assert!(
            message.contains(&format!("documents[{earlier}]")),
            "{case}: the message does not name the earlier document: {message}"
        );
        assert!(
            message.contains(&format!("\"{}\"", names[earlier].trim())),
            "{case}: the message does not show the name: {message}"
        );
    }

    // Names that differ in a letter are two names, and each is stored as sent.
    let documents = [named("Ma\u{308}rz.txt"), named("Marz.txt")];
    let submitted = assert_accepted(&server, &token, "different names", &documents).await;
    assert_eq!(submitted["documents"][0]["file_name"], "Ma\u{308}rz.txt");
    assert_eq!(submitted["documents"][1]["file_name"], "Marz.txt");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_name_escaped_once() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let (status, text) = submit(&server, &token, &[named("a\\b.pdf")]).await;
    assert_eq!(status, 422, "{text}");
    // The JSON text escapes the backslash once, as JSON must.
    assert!(text.contains(r#"\"a\\b.pdf\""#), "{text}");
    assert!(!text.contains(r#"a\\\\b"#), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["field"], "documents[0].file_name");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(r#""a\b.pdf""#), "{message}");
    assert_eq!(snapshot(&server).await, before);

    // Characters a reader could not see are shown by code point.
    let cases = [
        ("tab", "contract\t.pdf", "\"contract<U+0009>.pdf\""),
        (
            "next line",
            "contract\u{85}.pdf",
            "\"contract<U+0085>.pdf\"",
        ),
        (
            "right-to-left override",
            "invoice\u{202E}fdp.exe",
            "\"invoice<U+202E>fdp.exe\"",
        ),
    ];
    for (case, name, shown) in cases {
        let message = assert_rejected(
            &server,
            &token,
            case,
            &[named(name)],
            "documents[0].file_name",
            &before,
        )
        .await;
        assert!(message.contains(shown), "{case}: {message}");
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_characters_rejected() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = start(work.path()).await;
    let before = snapshot(&server).await;

    let cases = [
        ("left-to-right mark", '\u{200E}', "bidirectional control"),
        ("right-to-left mark", '\u{200F}', "bidirectional control"),
        ("Arabic letter mark", '\u{061C}', "bidirectional control"),
        ("zero-width space", '\u{200B}', "invisible character"),
        ("byte order mark", '\u{FEFF}', "invisible character"),
        ("line separator", '\u{2028}', "invisible character"),
        ("paragraph separator", '\u{2029}', "invisible character"),
    ];
    for (case, c, kind) in cases {
        let code_point = format!("<U+{:04X}>", u32::from(c));
        let message = assert_rejected(
            &server,
            &token,
            case,
            &[named("first.pdf"), named(&format!("report{c}.pdf"))],
            "documents[1].file_name",
            &before,
        )
        .await;
        assert!(
            message.contains(&format!("{kind} {code_point}")),
            "{case}: {message}"
        );
        assert!(
            message.contains(&format!("\"report{code_point}.pdf\"")),
            "{case}: {message}"
        );
        assert!(message.contains("remove it"), "{case}: {message}");
    }

    // A name in a right-to-left script needs none of these characters.
    let documents = [named("first.pdf"), named("عقد.pdf")];
    let submitted = assert_accepted(&server, &token, "Arabic name", &documents).await;
    assert_eq!(submitted["documents"][1]["file_name"], "عقد.pdf");

    server.stop().await;
}
