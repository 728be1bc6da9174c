//! JSON request bodies against a running server. A wrong value in a known field is a
//! 422 naming the field. A body of another JSON type or with an unknown field is a 400
//! that names no type of the server's code. A body over the limit is a 413 naming the
//! limit. None of them records anything.

mod support;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use serde_json::{Value, json};
use support::{Server, chain_heads, open_account, password_of};

/// Starts a server with an admin account, `root`.
async fn start(work: &std::path::Path) -> Server {
    let data_dir = work.join("data");
    open_account(&data_dir, "root", Role::Admin).await;
    Server::start(&data_dir, Clock::system(), &[]).await
}

/// Posts `body` as JSON to `path`, with `token` when given, and returns the status and
/// the JSON error.
async fn post(server: &Server, path: &str, token: Option<&str>, body: String) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn account(role: &str) -> Value {
    json!({
        "login": "carol",
        "display_name": "Carol",
        "email": "carol@consign.test",
        "role": role,
        "password": password_of("carol"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_bodies_rejected() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let root = server.login("root").await;
    let before = chain_heads(&server).await;

    let (status, error) = post(
        &server,
        "/api/accounts",
        Some(&root),
        account("god").to_string(),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "role", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("`sender`"),
        "{error}"
    );

    let mut missing = account("sender");
    missing.as_object_mut().unwrap().remove("email");
    let (status, error) = post(&server, "/api/accounts", Some(&root), missing.to_string()).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "email", "{error}");

    // serde alone would read an array as the fields in order.
    let routes = [("/api/accounts", Some(root.as_str())), ("/api/login", None)];
    for body in ["[]", "[1, 2]", r#"[{"login": "root"}]"#, "3", " "] {
        for (path, token) in routes {
            let (status, error) = post(&server, path, token, body.to_owned()).await;
            assert_eq!(status, 400, "{path} {body}: {error}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("expected"), "{path} {body}: {error}");
            assert!(message.contains("object"), "{path} {body}: {error}");
            for type_name in ["struct", "NewAccount", "LoginRequest"] {
                assert!(!message.contains(type_name), "{path} {body}: {error}");
            }
        }
    }

    let mut unknown = account("sender");
    unknown["nickname"] = json!("cee");
    let (status, error) = post(&server, "/api/accounts", Some(&root), unknown.to_string()).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("nickname"),
        "{error}"
    );

    // The server reads the rest of a body of a few MiB before it responds, so the client
    // is not cut off while it is still sending, and the connection can be used again.
    let huge = json!({ "login": "root", "password": "x".repeat(5 << 20) }).to_string();
    let response = server
        .client
        .post(server.url("/api/login"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    assert_eq!(status, 413, "{error}");
    assert_eq!(error["limit"], "json_body_bytes", "{error}");

    let response = server
        .client
        .post(server.url("/api/accounts"))
        .bearer_auth(&root)
        .body(account("sender").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json"),
        "{error}"
    );

    // Two Content-Type headers are ambiguous even when one of them is JSON.
    let response = server
        .client
        .post(server.url("/api/accounts"))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .header("content-type", "text/plain")
        .body(account("sender").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("2 Content-Type headers"),
        "{error}"
    );

    assert_eq!(
        chain_heads(&server).await,
        before,
        "a refused body was recorded"
    );
    let (status, _) = post(
        &server,
        "/api/accounts",
        Some(&root),
        account("sender").to_string(),
    )
    .await;
    assert_eq!(status, 201, "the valid account after the refused ones");

    server.stop().await;
}
