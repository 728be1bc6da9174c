//! The OpenAPI document against the router: every operation it lists reaches a
//! handler of a running server, and every route of the API is listed in it.
//!
//! A request reaches a handler when the response is neither 405 nor the router's own
//! 404. The router's 404 has an empty body, while a handler's 404 is the JSON error
//! object with an `error` code.

mod support;

use consign_ledger::Clock;
use consign_schemas::DeliveryId;
use consign_schemas::events::Role;
use serde_json::{Value, json};
use support::{Server, open_account};

/// The routes under /api that `consign_api::app::router` serves, as in
/// `api/src/app/mod.rs`, with lower-case methods as OpenAPI writes them.
const ROUTES: [(&str, &str); 26] = [
    ("post", "/api/login"),
    ("post", "/api/logout"),
    ("get", "/api/me"),
    ("post", "/api/me/password"),
    ("post", "/api/accounts"),
    ("post", "/api/accounts/{login}/password"),
    ("get", "/api/lists"),
    ("put", "/api/lists/{name}"),
    ("delete", "/api/lists/{name}"),
    ("post", "/api/deliveries"),
    ("get", "/api/deliveries"),
    ("get", "/api/deliveries/{id}"),
    ("post", "/api/deliveries/{id}/withdraw"),
    ("get", "/api/deliveries/{id}/postmark"),
    ("get", "/api/openapi.json"),
    ("get", "/api/tracking/deliveries"),
    ("get", "/api/tracking/deliveries/{id}"),
    ("get", "/api/tracking/deliveries/{id}/events"),
    ("get", "/api/billing/usage"),
    ("get", "/api/audit/deliveries/{id}"),
    ("get", "/api/audit/search"),
    ("get", "/api/audit/deliveries/{id}/evidence"),
    ("get", "/api/ledger/chains/{chain}/checkpoint"),
    ("get", "/api/ledger/chains/{chain}/proofs/inclusion"),
    ("get", "/api/ledger/chains/{chain}/proofs/consistency"),
    ("get", "/api/views/status"),
];

/// Method keys of an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn start(work: &std::path::Path) -> Server {
    let data_dir = work.join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    Server::start(&data_dir, Clock::system(), &[]).await
}

async fn document(server: &Server) -> Value {
    let response = server
        .client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Replaces each `{parameter}` of a path template: `{id}` with a random UUID, any
/// other with a name.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{id}" => DeliveryId::random().to_string(),
            _ if segment.starts_with('{') => "team".to_owned(),
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends `method` to a path template as a logged-in sender, with an empty JSON
/// object as the body of a PUT or POST, and returns the status and body.
async fn send(server: &Server, method: &str, template: &str) -> (u16, String) {
    // A fresh session per request, because the logout operation ends its own.
    let token = server.login("ada").await;
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut request = server
        .client
        .request(method.clone(), server.url(&fill(template)))
        .bearer_auth(token);
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Returns whether a response came from a handler rather than from the router's
/// fallback for unknown paths and methods.
fn reached_handler(status: u16, body: &str) -> bool {
    let error = serde_json::from_str::<Value>(body).ok();
    let message = error
        .as_ref()
        .and_then(|value| value["message"].as_str())
        .unwrap_or("");
    match status {
        405 => false,
        // The API's fallback names the unknown route; a handler's 404 names what it
        // did not find.
        404 => error.is_some() && !message.starts_with("route "),
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_operations_routed() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let document = document(&server).await;
    let paths = document["paths"].as_object().unwrap();

    let mut operations = 0;
    for (template, item) in paths {
        for method in METHODS.iter().filter(|method| item.get(**method).is_some()) {
            let (status, body) = send(&server, method, template).await;
            assert!(
                reached_handler(status, &body),
                "{method} {template}: {status} {body:?}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, ROUTES.len());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_documented() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let document = document(&server).await;

    for (method, template) in ROUTES {
        let operation = &document["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        assert!(
            operation["responses"].is_object(),
            "{method} {template} has no responses"
        );
    }
    // The list matches the router: each entry reaches a handler.
    for (method, template) in ROUTES {
        let (status, body) = send(&server, method, template).await;
        assert!(
            reached_handler(status, &body),
            "{method} {template}: {status} {body:?}"
        );
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_fallback_detected() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;

    let (status, body) = send(&server, "get", "/api/no-such-route").await;
    assert_eq!(status, 404);
    assert!(!reached_handler(status, &body), "{body:?}");
    let unknown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        unknown["error"], "not_found",
        "the fallback answers in JSON"
    );
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("/api/no-such-route"),
        "{unknown}"
    );
    let (status, body) = send(&server, "get", "/api/login").await;
    assert_eq!(status, 405);
    assert!(!reached_handler(status, &body), "{body:?}");
    let wrong_method: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(wrong_method["error"], "method_not_allowed");
    assert!(body.contains("/api/login"), "{body}");
    // A handler's 404 for an unknown delivery counts as reached.
    let (status, body) = send(&server, "get", "/api/deliveries/{id}").await;
    assert_eq!(status, 404);
    assert!(reached_handler(status, &body), "{body:?}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_headers_forbid_sniffing_and_frames() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;

    for path in ["/api/openapi.json", "/api/no-such-route", "/api/me"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert_eq!(response.headers()["x-frame-options"], "DENY", "{path}");
    }

    server.stop().await;
}
