//! Electronic postmarks through the API: a submission that asks for one gets a
//! receipt whose Ed25519 signature verifies offline with the published public key,
//! over the exact submission event; after a key rotation, old postmarks still verify
//! with the old key, which stays published. The same receipt as an HTML page shows
//! every signed value and escapes the sender's document names.

mod support;

use consign_ledger::Clock;
use consign_ledger::postmark::PostmarkKeys;
use consign_schemas::events::Role;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::multipart::{Form, Part};
use support::{Server, open_account};

async fn submit_postmarked(server: &Server, token: &str) -> serde_json::Value {
    submit_documents(server, token, &[("a.txt", b"first"), ("b.txt", b"second")]).await
}

/// Submits a postmarked delivery of `documents`, given as file name and content.
async fn submit_documents(
    server: &Server,
    token: &str,
    documents: &[(&str, &[u8])],
) -> serde_json::Value {
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Postmarked",
        "postmark": true,
    });
    let mut form = Form::new().part("metadata", Part::text(metadata.to_string()));
    for (name, content) in documents {
        form = form.part(
            "document",
            Part::bytes(content.to_vec()).file_name(name.to_string()),
        );
    }
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

async fn get_json(server: &Server, token: Option<&str>, path: &str) -> serde_json::Value {
    let mut request = server.client.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Verifies a receipt with the public key published under its key id.
fn verify_receipt(receipt: &serde_json::Value, published: &serde_json::Value) {
    let key_id = receipt["key_id"].as_str().unwrap();
    let public = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["key_id"] == key_id)
        .unwrap_or_else(|| panic!("key {key_id} is not published: {published}"));
    let public: [u8; 32] = hex::decode(public["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = hex::decode(receipt["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let message = hex::decode(receipt["signed_message"].as_str().unwrap()).unwrap();

    let key = VerifyingKey::from_bytes(&public).unwrap();
    assert!(
        key.verify(&message, &Signature::from_bytes(&signature))
            .is_ok()
    );

    let mut altered = message.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(
        key.verify(&altered, &Signature::from_bytes(&signature))
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_verifies_before_and_after_rotation() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;

    let submitted = submit_postmarked(&server, &token).await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let receipt = get_json(
        &server,
        Some(&token),
        &format!("/api/deliveries/{delivery}/postmark"),
    )
    .await;
    let published = get_json(&server, None, "/.well-known/consign-postmark-keys.json").await;

    verify_receipt(&receipt, &published);
    assert_eq!(receipt["submission"]["hash"], submitted["hash"]);
    assert_eq!(receipt["submission"]["position"], submitted["position"]);
    assert_eq!(
        receipt["document_hashes"][0],
        submitted["documents"][0]["blake3"]
    );
    assert_eq!(
        receipt["document_hashes"][1],
        submitted["documents"][1]["blake3"]
    );
    let signed = hex::decode(receipt["signed_message"].as_str().unwrap()).unwrap();
    let submission_hash = hex::decode(submitted["hash"].as_str().unwrap()).unwrap();
    assert!(
        signed.windows(32).any(|window| window == submission_hash),
        "the signed message holds the submission hash"
    );

    // A key that another server sharing the key folder generates is published at once,
    // before this server restarts, so that checkpoints it signs verify here.
    let new_key = PostmarkKeys::generate(&work.path().join("keys").join("postmark")).unwrap();
    let published = get_json(&server, None, "/.well-known/consign-postmark-keys.json").await;
    let ids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["key_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&new_key.as_str()), "{published}");
    assert_eq!(published["current"], receipt["key_id"], "{published}");
    server.stop().await;

    // After a restart, new postmarks use the new key, and the old one still verifies.
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let second = submit_postmarked(&server, &token).await;
    let second_id = second["delivery"].as_str().unwrap();
    let new_receipt = get_json(
        &server,
        Some(&token),
        &format!("/api/deliveries/{second_id}/postmark"),
    )
    .await;
    let published = get_json(&server, None, "/.well-known/consign-postmark-keys.json").await;

    assert_eq!(new_receipt["key_id"], new_key.as_str());
    assert_eq!(published["current"], new_key.as_str());
    assert_ne!(receipt["key_id"], new_receipt["key_id"]);
    verify_receipt(&receipt, &published);
    verify_receipt(&new_receipt, &published);
    server.stop().await;
}

/// A document name that breaks out of HTML element content and attributes unless
/// escaped. It has no `/` because the server rejects that in file names.
const HOSTILE_NAME: &str = "<img src=x onerror=\"alert(1)\"> & 'q'.txt";
const HOSTILE_NAME_ESCAPED: &str =
    "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &#39;q&#39;.txt";

async fn get_page(
    server: &Server,
    token: &str,
    path: &str,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut request = server.client.get(server.url(path)).bearer_auth(token);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_page_shows_receipt_escaped() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;

    let submitted = submit_documents(
        &server,
        &token,
        &[(HOSTILE_NAME, b"first"), ("plain.txt", b"second")],
    )
    .await;
    assert_eq!(
        submitted["documents"][0]["file_name"], HOSTILE_NAME,
        "{submitted}"
    );
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let path = format!("/api/deliveries/{delivery}/postmark");
    let receipt = get_json(&server, Some(&token), &path).await;

    let response = get_page(&server, &token, &format!("{path}?format=html"), None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "private, no-store");
    assert_eq!(headers["vary"], "accept");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = response.text().await.unwrap();

    // The receipt's values, each in the page.
    let submission = &receipt["submission"];
    let expected_rows = [
        format!("<td><code>{delivery}</code></td>"),
        format!("<td>{}</td>", submission["chain"]),
        format!("<td>{}</td>", submission["position"]),
        format!(
            "<td><code>{}</code></td>",
            submission["hash"].as_str().unwrap()
        ),
        format!(
            "<time datetime=\"{}\">",
            submission["time_utc"].as_str().unwrap()
        ),
        format!("({} microseconds since 1970-01-01 UTC)", submission["time"]),
        format!(
            "<td><code>{}</code></td>",
            receipt["key_id"].as_str().unwrap()
        ),
        format!(
            "<td><code>{}</code></td>",
            receipt["public_key"].as_str().unwrap()
        ),
        format!(
            "<td><code>{}</code></td>",
            receipt["signature"].as_str().unwrap()
        ),
        format!(
            "<td><code>{}</code></td>",
            receipt["signed_message"].as_str().unwrap()
        ),
        format!(
            "<tr><td>{HOSTILE_NAME_ESCAPED}</td><td><code>{}</code></td></tr>",
            receipt["document_hashes"][0].as_str().unwrap()
        ),
        format!(
            "<tr><td>plain.txt</td><td><code>{}</code></td></tr>",
            receipt["document_hashes"][1].as_str().unwrap()
        ),
        format!("<a href=\"{path}?format=json\">"),
        "<a href=\"/.well-known/consign-postmark-keys.json\">".to_owned(),
    ];
    for row in &expected_rows {
        assert!(page.contains(row.as_str()), "{row} is missing from {page}");
    }
    assert!(page.contains("UTC</time>"), "{page}");

    // Nothing of the hostile name reaches the markup unescaped, and there is no script.
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("onerror=\"alert"), "{page}");
    assert!(!page.contains("<script"), "{page}");

    // A browser's Accept header gets the same page; JSON stays the default.
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let from_browser = get_page(&server, &token, &path, Some(browser_accept)).await;
    assert_eq!(
        from_browser.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(from_browser.text().await.unwrap(), page);
    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("application/json, text/html;q=0.5"),
    ] {
        let response = get_page(&server, &token, &path, accept).await;
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "Accept {accept:?}"
        );
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap(),
            receipt,
            "Accept {accept:?}"
        );
    }
    let forced_json = get_page(
        &server,
        &token,
        &format!("{path}?format=json"),
        Some(browser_accept),
    )
    .await;
    assert_eq!(
        forced_json.json::<serde_json::Value>().await.unwrap(),
        receipt
    );
    let unknown = get_page(&server, &token, &format!("{path}?format=xml"), None).await;
    assert_eq!(unknown.status(), 422);
    assert!(unknown.text().await.unwrap().contains("not json or html"));

    // Another sender gets 404 for the page, as for a missing receipt.
    server.stop().await;
    open_account(work.path(), "eve", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let eve = server.login("eve").await;
    let hidden = get_page(&server, &eve, &format!("{path}?format=html"), None).await;
    assert_eq!(hidden.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_postmark_says_why() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Plain",
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"plain".to_vec()).file_name("plain.txt"),
        );
    let submitted: serde_json::Value = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = submitted["delivery"].as_str().unwrap();

    let response = server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}/postmark")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 404);
    let error: serde_json::Value = response.json().await.unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("did not ask for one"), "{message}");
    server.stop().await;
}
