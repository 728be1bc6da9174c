//! The recipient's password form with bodies that no browser sends from the page: each
//! gets the form again with a reason, as HTML with the page headers, and grants
//! nothing.

mod support;

use std::time::Duration;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use support::{Server, links_in, open_account, wait_for_messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_password_forms_get_the_form() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let token = server.login("ada").await;
    let metadata = json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Contract",
        "password": "correct horse 42",
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"signed".to_vec()).file_name("contract.txt"),
        );
    let submitted = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let messages = wait_for_messages(&data_dir.join("outbox"), 1, Duration::from_secs(30)).await;
    let link = links_in(&messages[0], &server.base).remove(0);

    let cases: [(&str, &str, Vec<u8>, u16); 3] = [
        (
            "a field twice",
            "application/x-www-form-urlencoded",
            b"password=a&password=b".to_vec(),
            422,
        ),
        (
            "JSON",
            "application/json",
            br#"{"password":"correct horse 42"}"#.to_vec(),
            415,
        ),
        (
            "a body over the limit",
            "application/x-www-form-urlencoded",
            vec![b'a'; 3 << 20],
            413,
        ),
    ];
    for (case, content_type, body, status) in cases {
        let response = server
            .client
            .post(&link)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{case}");
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{case}: {headers:?}"
        );
        assert!(
            headers.contains_key("content-security-policy"),
            "{case}: {headers:?}"
        );
        assert!(
            html.contains("The form could not be read"),
            "{case}: {html}"
        );
        assert!(!html.contains("Failed to"), "{case}: {html}");
        assert!(
            !headers.contains_key("set-cookie"),
            "{case}: a grant was given"
        );
    }
    server.stop().await;
}
