//! Access control against a running server. Senders see only their own deliveries,
//! and roles guard the admin and submission routes. Every API route except login and
//! the OpenAPI document needs a live session. Withdrawal closes the recipient link.
//! An unknown link takes as long to reject however close it is to a real one.
//! Password guesses are throttled per client address.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consign_ledger::Clock;
use consign_schemas::DeliveryId;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{Server, chain_heads, links_in, open_account, password_of, wait_for_messages};

const ACCESS_PASSWORD: &str = "correct horse 42";

/// Starts a server with two senders (`ada`, `bea`), an admin (`root`), a billing
/// account (`bill`) and an auditor (`audrey`).
async fn start(work: &std::path::Path) -> Server {
    let data_dir = work.join("data");
    for (login, role) in [
        ("ada", Role::Sender),
        ("bea", Role::Sender),
        ("root", Role::Admin),
        ("bill", Role::Billing),
        ("audrey", Role::Auditor),
    ] {
        open_account(&data_dir, login, role).await;
    }
    Server::start(&data_dir, Clock::system(), &[]).await
}

fn document_form(metadata: &Value, content: &[u8]) -> Form {
    Form::new()
        .part(
            "metadata",
            Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "document",
            Part::bytes(content.to_vec())
                .file_name("contract.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
}

/// Submits one document to `bob@recipients.test` and returns the response body.
async fn submit(server: &Server, token: &str, password: Option<&str>, content: &[u8]) -> Value {
    let mut metadata = json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
    });
    if let Some(password) = password {
        metadata["password"] = json!(password);
    }
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(document_form(&metadata, content))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Waits for the one link e-mail of the server's only delivery and returns its link.
async fn only_link(server: &Server) -> String {
    let messages =
        wait_for_messages(&server.data_dir.join("outbox"), 1, Duration::from_secs(30)).await;
    links_in(&messages[0], &server.base).remove(0)
}

async fn get_delivery(server: &Server, token: &str, delivery: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn withdraw(server: &Server, token: &str, delivery: &str) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/api/deliveries/{delivery}/withdraw")))
        .bearer_auth(token)
        .json(&json!({ "reason": "sent by mistake" }))
        .send()
        .await
        .unwrap()
}

/// Reads a 404 body with the delivery id replaced, so that bodies for different ids
/// compare equal when only the id differs.
async fn not_found_body(response: reqwest::Response, id: &str) -> String {
    assert_eq!(response.status(), 404);
    response.text().await.unwrap().replace(id, "ID")
}

fn new_account(login: &str) -> Value {
    json!({
        "login": login,
        "display_name": format!("{login} (opened by test)"),
        "email": format!("{}@consign.test", login.to_lowercase()),
        "role": "sender",
        "password": password_of(login),
    })
}

async fn open_account_via_api(server: &Server, token: &str, login: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("/api/accounts"))
        .bearer_auth(token)
        .json(&new_account(login))
        .send()
        .await
        .unwrap()
}

/// Opens an account whose login would not make a valid address part.
async fn open_account_with_email(
    server: &Server,
    token: &str,
    login: &str,
    email: &str,
) -> reqwest::Response {
    let mut account = new_account(login);
    account["email"] = json!(email);
    server
        .client
        .post(server.url("/api/accounts"))
        .bearer_auth(token)
        .json(&account)
        .send()
        .await
        .unwrap()
}

async fn try_login(server: &Server, login: &str, client: &reqwest::Client) -> reqwest::Response {
    client
        .post(server.url("/api/login"))
        .json(&json!({ "login": login, "password": password_of(login) }))
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sender_gets_not_found() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let ada = server.login("ada").await;
    let bea = server.login("bea").await;
    let delivery = submit(&server, &ada, None, b"secret").await["delivery"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = DeliveryId::random().to_string();

    assert_eq!(get_delivery(&server, &ada, &delivery).await.status(), 200);
    let other = not_found_body(get_delivery(&server, &bea, &delivery).await, &delivery).await;
    let missing = not_found_body(get_delivery(&server, &bea, &unknown).await, &unknown).await;
    assert_eq!(other, missing);

    let other = not_found_body(withdraw(&server, &bea, &delivery).await, &delivery).await;
    let missing = not_found_body(withdraw(&server, &bea, &unknown).await, &unknown).await;
    assert_eq!(other, missing);

    let listed: Value = server
        .client
        .get(server.url("/api/deliveries"))
        .bearer_auth(&bea)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["deliveries"], json!([]));
    let own: Value = get_delivery(&server, &ada, &delivery)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["status"], "released");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_route_needs_admin() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;

    for login in ["ada", "bill", "audrey"] {
        let token = server.login(login).await;
        let response = open_account_via_api(&server, &token, "mallory").await;
        assert_eq!(response.status(), 403, "{login}");
        assert_eq!(error_code(response).await, "forbidden", "{login}");
    }
    let rejected_login = try_login(&server, "mallory", &server.client).await;
    assert_eq!(rejected_login.status(), 401);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_cannot_submit() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let bill = server.login("bill").await;

    let metadata = json!({ "recipients": ["bob@recipients.test"], "subject": "Invoice" });
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&bill)
        .multipart(document_form(&metadata, b"invoice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "forbidden");

    server.stop().await;
}

/// Builds a request for every route under /api that needs a session, each with a body
/// that the route accepts.
fn protected_requests(server: &Server) -> Vec<reqwest::RequestBuilder> {
    let client = &server.client;
    let id = DeliveryId::random();
    let metadata = json!({ "recipients": ["bob@recipients.test"], "subject": "Contract" });
    vec![
        client.post(server.url("/api/logout")),
        client.get(server.url("/api/me")),
        client
            .post(server.url("/api/accounts"))
            .json(&new_account("carol")),
        client.get(server.url("/api/lists")),
        client
            .put(server.url("/api/lists/team"))
            .json(&json!({ "members": ["bob@recipients.test"] })),
        client
            .post(server.url("/api/deliveries"))
            .multipart(document_form(&metadata, b"contract")),
        client.get(server.url("/api/deliveries")),
        client.get(server.url(&format!("/api/deliveries/{id}"))),
        client
            .post(server.url(&format!("/api/deliveries/{id}/withdraw")))
            .json(&json!({})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_need_token() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let forged = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());

    for request in protected_requests(&server) {
        let request = request.build().unwrap();
        let route = format!("{} {}", request.method(), request.url().path());
        let response = server.client.execute(request).await.unwrap();
        assert_eq!(response.status(), 401, "{route} without a token");
        assert_eq!(error_code(response).await, "unauthenticated", "{route}");
    }
    for request in protected_requests(&server) {
        let request = request.bearer_auth(&forged).build().unwrap();
        let route = format!("{} {}", request.method(), request.url().path());
        let response = server.client.execute(request).await.unwrap();
        assert_eq!(response.status(), 401, "{route} with a forged token");
    }

    let login = try_login(&server, "ada", &server.client).await;
    assert_eq!(login.status(), 200);
    let body: Value = login.json().await.unwrap();
    let token = body["token"].as_str().unwrap();

    // Two Authorization headers are rejected in either order, valid token or not.
    for (first, second) in [(token, forged.as_str()), (forged.as_str(), token)] {
        let response = server
            .client
            .get(server.url("/api/deliveries"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "two Authorization headers");
    }

    let openapi = server
        .client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.status(), 200);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_token_rejected() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let token = server.login("ada").await;
    let other = server.login("ada").await;
    let me = |token: String| {
        server
            .client
            .get(server.url("/api/me"))
            .bearer_auth(token)
            .send()
    };

    assert_eq!(me(token.clone()).await.unwrap().status(), 200);
    let logout = server
        .client
        .post(server.url("/api/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(me(token.clone()).await.unwrap().status(), 401);
    // Logging out ends that session only.
    assert_eq!(me(other).await.unwrap().status(), 200);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_opens_account() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let root = server.login("root").await;

    let opened = open_account_via_api(&server, &root, "Carol").await;
    assert_eq!(opened.status(), 201);
    let login = try_login(&server, "Carol", &server.client).await;
    assert_eq!(login.status(), 200);
    let session: Value = login.json().await.unwrap();
    assert_eq!(session["role"], "sender");

    let heads = chain_heads(&server).await;
    for duplicate in ["carol", "CAROL", " Carol "] {
        let response = open_account_via_api(&server, &root, duplicate).await;
        let status = response.status();
        let code = error_code(response).await;
        // A login with spaces is invalid before it could be a duplicate.
        if duplicate.trim() == duplicate {
            assert_eq!(status, 409, "{duplicate:?}");
            assert_eq!(code, "conflict", "{duplicate:?}");
        } else {
            assert_eq!(status, 422, "{duplicate:?}");
        }
    }
    // Logins that read alike through case folding or compatibility forms.
    for (first, lookalike) in [("file", "\u{fb01}le"), ("Stra\u{df}e", "STRASSE")] {
        let opened = open_account_with_email(&server, &root, first, "first@consign.test").await;
        assert_eq!(opened.status(), 201, "{first:?}");
        let heads = chain_heads(&server).await;
        let response =
            open_account_with_email(&server, &root, lookalike, "other@consign.test").await;
        assert_eq!(response.status(), 409, "{lookalike:?}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("reads the same as the existing login"),
            "{body}"
        );
        assert_eq!(
            chain_heads(&server).await,
            heads,
            "{lookalike:?} was recorded"
        );
    }

    // Lookalike logins sent at the same moment: exactly one is recorded.
    let racing = [
        "file-race",
        "\u{fb01}le-race",
        "FILE-RACE",
        "\u{ff46}ile-race",
    ];
    let responses = futures::future::join_all(racing.iter().enumerate().map(|(index, login)| {
        let email = format!("race{index}@consign.test");
        let root = root.clone();
        let server = &server;
        async move { open_account_with_email(server, &root, login, &email).await }
    }))
    .await;
    let statuses: Vec<u16> = responses
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 409).count(),
        3,
        "{statuses:?}"
    );

    // A login typed with a combining accent is kept in NFC form, so the precomposed
    // spelling signs in to it and cannot open a second account.
    let decomposed =
        open_account_with_email(&server, &root, "e\u{301}cole", "ecole@consign.test").await;
    assert_eq!(decomposed.status(), 201);
    let body: Value = decomposed.json().await.unwrap();
    assert_eq!(body["login"], "\u{e9}cole");
    let precomposed =
        open_account_with_email(&server, &root, "\u{e9}cole", "ecole2@consign.test").await;
    assert_eq!(precomposed.status(), 409);
    let signed_in = server
        .client
        .post(server.url("/api/login"))
        .json(&json!({ "login": "\u{e9}cole", "password": password_of("e\u{301}cole") }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);

    let after = chain_heads(&server).await;
    assert_ne!(after, heads);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_closes_link() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let ada = server.login("ada").await;
    let submitted = submit(&server, &ada, None, b"contract text").await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let document = submitted["documents"][0]["document"].as_str().unwrap();
    let link = only_link(&server).await;
    let download = format!("{link}/documents/{document}");

    assert_eq!(server.client.get(&link).send().await.unwrap().status(), 200);
    assert_eq!(
        server.client.get(&download).send().await.unwrap().status(),
        200
    );

    // A body that is not a withdrawal withdraws nothing.
    for (body, content_type, status) in [
        ("[]", "application/json", 400),
        ("[\"by mistake\"]", "application/json", 400),
        ("null", "application/json", 400),
        ("{\"reason\": 5}", "application/json", 422),
        ("by mistake", "text/plain", 400),
    ] {
        let response = server
            .client
            .post(server.url(&format!("/api/deliveries/{delivery}/withdraw")))
            .bearer_auth(&ada)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["message"].as_str().unwrap();
        assert!(!message.contains("WithdrawBody"), "{body}: {message}");
        assert_eq!(
            server.client.get(&link).send().await.unwrap().status(),
            200,
            "{body} withdrew the delivery"
        );
    }

    // The body is optional.
    let first = server
        .client
        .post(server.url(&format!("/api/deliveries/{delivery}/withdraw")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(server.client.get(&link).send().await.unwrap().status(), 410);
    assert_eq!(
        server.client.get(&download).send().await.unwrap().status(),
        410
    );
    let second = withdraw(&server, &ada, &delivery).await;
    assert_eq!(second.status(), 409);
    assert_eq!(error_code(second).await, "conflict");
    let detail: Value = get_delivery(&server, &ada, &delivery)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "withdrawn");

    server.stop().await;
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn timed_get(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    response.bytes().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status, 404, "{url}");
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_link_timing() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let ada = server.login("ada").await;
    submit(&server, &ada, None, b"contract text").await;
    let link = only_link(&server).await;
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert_eq!(token.len(), 43);

    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        .chars()
        .filter(|c| !token.ends_with(*c))
        .collect();
    let near_url = |index: usize| {
        let last = alphabet[index % alphabet.len()];
        server.url(&format!("/d/{}{last}", &token[..42]))
    };
    let unknown_url = || {
        let random = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        server.url(&format!("/d/{random}"))
    };

    let unknown_page = server.client.get(unknown_url()).send().await.unwrap();
    assert_eq!(unknown_page.status(), 404);
    assert_eq!(server.client.get(&link).send().await.unwrap().status(), 200);

    for index in 0..20 {
        timed_get(&server.client, &unknown_url()).await;
        timed_get(&server.client, &near_url(index)).await;
    }
    let mut unknown = Vec::new();
    let mut near = Vec::new();
    for index in 0..200 {
        // Alternating which kind goes first keeps drift out of the comparison.
        if index % 2 == 0 {
            unknown.push(timed_get(&server.client, &unknown_url()).await);
            near.push(timed_get(&server.client, &near_url(index)).await);
        } else {
            near.push(timed_get(&server.client, &near_url(index)).await);
            unknown.push(timed_get(&server.client, &unknown_url()).await);
        }
    }
    let unknown = median(&mut unknown);
    let near = median(&mut near);
    let difference = unknown.abs_diff(near);
    assert!(
        difference < Duration::from_millis(2),
        "median {unknown:?} for unknown tokens, {near:?} for near tokens"
    );

    server.stop().await;
}

async fn guess(client: &reqwest::Client, link: &str, password: &str) -> reqwest::Response {
    client
        .post(link)
        .form(&[("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_throttled_per_client() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path()).await;
    let ada = server.login("ada").await;
    submit(&server, &ada, Some(ACCESS_PASSWORD), b"contract text").await;
    let link = only_link(&server).await;

    for attempt in 1..=5 {
        let response = guess(&server.client, &link, &format!("wrong guess {attempt}")).await;
        assert_eq!(response.status(), 401, "wrong guess {attempt}");
    }
    let sixth = guess(&server.client, &link, "wrong guess 6").await;
    assert_eq!(sixth.status(), 429);
    let retry_after = sixth
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    // The throttled client is rejected even with the right password.
    let right_but_throttled = guess(&server.client, &link, ACCESS_PASSWORD).await;
    assert_eq!(right_but_throttled.status(), 429);

    let other_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let right = guess(&other_client, &link, ACCESS_PASSWORD).await;
    assert_eq!(right.status(), 303);
    let cookie = right.headers().get("set-cookie").expect("a grant cookie");
    assert!(cookie.to_str().unwrap().starts_with("consign_access="));

    server.stop().await;
}
