//! Helpers of the hostile-input tests. Multipart bodies are built byte by byte, so that
//! any file name or header goes on the wire exactly as written. A rejection is checked
//! to be a 4xx naming its field or limit, with nothing written by the server.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::{Value, json};

use crate::support::{Server, Snapshot, open_account, snapshot};

/// Boundary of every hand-built multipart body.
pub const BOUNDARY: &str = "consign-test-boundary-5c1e9a";

/// Text that tries to end a header line and start a `Bcc` header.
pub const INJECTION: &str = "\r\nBcc: x@evil.test";

/// One part of a hand-built multipart body. Building the bytes by hand, rather than
/// with reqwest, puts any file name on the wire exactly as written.
pub enum Part {
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

pub fn metadata(value: &Value) -> Part {
    Part::Metadata(value.to_string())
}

pub fn document(file_name: &str) -> Part {
    Part::Document {
        file_name: Some(file_name.to_owned()),
        content: b"%PDF-1.7 test document".to_vec(),
    }
}

pub fn multipart_body(parts: &[Part]) -> Vec<u8> {
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

pub async fn submit(server: &Server, token: &str, parts: &[Part]) -> reqwest::Response {
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
pub fn valid_metadata() -> Value {
    json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
        "message": "Please sign.",
    })
}

pub fn with(key: &str, value: Value) -> Value {
    let mut metadata = valid_metadata();
    metadata[key] = value;
    metadata
}

/// The expected rejection: HTTP status, and the JSON key (`field` or `limit`) with
/// its value.
pub struct Rejection {
    pub status: u16,
    pub key: &'static str,
    pub value: String,
}

pub fn field(status: u16, name: &str) -> Rejection {
    Rejection {
        status,
        key: "field",
        value: name.to_owned(),
    }
}

pub fn limit(status: u16, name: &str) -> Rejection {
    Rejection {
        status,
        key: "limit",
        value: name.to_owned(),
    }
}

/// Checks a response against `expected` and that nothing changed since `before`, and
/// returns the JSON body for further checks.
pub async fn assert_rejected(
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

pub async fn start(work: &Path, extra: &[&str]) -> (Server, String) {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), extra).await;
    let token = server.login("ada").await;
    (server, token)
}
