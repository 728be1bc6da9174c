//! Electronic postmarks through the API: a submission that asks for one gets a
//! receipt whose Ed25519 signature verifies offline with the published public key,
//! over the exact submission event; after a key rotation, old postmarks still verify
//! with the old key, which stays published.

mod support;

use consign_ledger::Clock;
use consign_ledger::postmark::PostmarkKeys;
use consign_schemas::events::Role;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::multipart::{Form, Part};
use support::{Server, open_account};

async fn submit_postmarked(server: &Server, token: &str) -> serde_json::Value {
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Postmarked",
        "postmark": true,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part("document", Part::bytes(b"first".to_vec()).file_name("a.txt"))
        .part("document", Part::bytes(b"second".to_vec()).file_name("b.txt"));
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
    let public: [u8; 32] = hex::decode(public["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let signature: [u8; 64] = hex::decode(receipt["signature"].as_str().unwrap()).unwrap().try_into().unwrap();
    let message = hex::decode(receipt["signed_message"].as_str().unwrap()).unwrap();

    let key = VerifyingKey::from_bytes(&public).unwrap();
    assert!(key.verify(&message, &Signature::from_bytes(&signature)).is_ok());

    let mut altered = message.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(key.verify(&altered, &Signature::from_bytes(&signature)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_verifies_before_and_after_rotation() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;

    let submitted = submit_postmarked(&server, &token).await;
    let delivery = submitted["delivery"].as_str().unwrap().to_owned();
    let receipt = get_json(&server, Some(&token), &format!("/api/deliveries/{delivery}/postmark")).await;
    let published = get_json(&server, None, "/.well-known/consign-postmark-keys.json").await;

    verify_receipt(&receipt, &published);
    assert_eq!(receipt["submission"]["hash"], submitted["hash"]);
    assert_eq!(receipt["submission"]["position"], submitted["position"]);
    assert_eq!(receipt["document_hashes"][0], submitted["documents"][0]["blake3"]);
    assert_eq!(receipt["document_hashes"][1], submitted["documents"][1]["blake3"]);
    let signed = hex::decode(receipt["signed_message"].as_str().unwrap()).unwrap();
    let submission_hash = hex::decode(submitted["hash"].as_str().unwrap()).unwrap();
    assert!(signed.windows(32).any(|window| window == submission_hash), "the signed message holds the submission hash");
    server.stop().await;

    // Rotate, restart: new postmarks use the new key, the old one still verifies.
    let new_key = PostmarkKeys::generate(&work.path().join("keys").join("postmark")).unwrap();
    let server = Server::start(work.path(), Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let second = submit_postmarked(&server, &token).await;
    let second_id = second["delivery"].as_str().unwrap();
    let new_receipt = get_json(&server, Some(&token), &format!("/api/deliveries/{second_id}/postmark")).await;
    let published = get_json(&server, None, "/.well-known/consign-postmark-keys.json").await;

    assert_eq!(new_receipt["key_id"], new_key.as_str());
    assert_eq!(published["current"], new_key.as_str());
    assert_ne!(receipt["key_id"], new_receipt["key_id"]);
    verify_receipt(&receipt, &published);
    verify_receipt(&new_receipt, &published);
    server.stop().await;
}
