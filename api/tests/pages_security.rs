//! Security of the sender, billing and auditor pages, checked with a real HTTP client
//! against a server on loopback. The tests cover the security headers of every page,
//! the form token of every form, the cookie flags over HTTP and HTTPS, URLs without
//! secrets, and escaped user text.

mod pages_support;
mod support;

use std::time::Duration;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use pages_support::{PageSession, hidden_value, set_cookie, submit_delivery};
use reqwest::multipart::{Form, Part};
use serde_json::json;
use support::{Server, links_in, open_account, wait_for_messages};

const WRONG_TOKEN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Opens a sender, a billing and an auditor account and starts a server.
async fn start(work: &tempfile::TempDir) -> Server {
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    open_account(&data_dir, "bill", Role::Billing).await;
    open_account(&data_dir, "audrey", Role::Auditor).await;
    Server::start(&data_dir, Clock::system(), &[]).await
}

fn assert_page_headers(response: &reqwest::Response, what: &str) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("form-action 'self'"), "{what}: {csp}");
    assert!(csp.contains("base-uri 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert!(header("cache-control").contains("no-store"), "{what}");
    assert!(
        header("referrer-policy").contains("no-referrer")
            || header("referrer-policy") == "same-origin",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_security_headers() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let delivery = submit_delivery(
        &server,
        &api_token,
        "Contract",
        json!({ "postmark": true, "password": "open sesame 7" }),
    )
    .await;
    let sender = PageSession::login(&server, "ada").await;
    let billing = PageSession::login(&server, "bill").await;
    let auditor = PageSession::login(&server, "audrey").await;

    let login_page = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    assert_page_headers(&login_page, "/login");
    let sender_pages = [
        "/compose".to_owned(),
        "/sent".to_owned(),
        format!("/sent/{delivery}"),
        "/lists".to_owned(),
        "/lists/new".to_owned(),
    ];
    for path in &sender_pages {
        let response = sender.get(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_page_headers(&response, path);
    }
    for path in ["/billing", "/billing?from=2020-01&to=2020-02"] {
        let response = billing.get(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_page_headers(&response, path);
    }
    for path in [
        "/audit".to_owned(),
        "/audit?sender=ada".to_owned(),
        format!("/audit/deliveries/{delivery}"),
    ] {
        let response = auditor.get(&server, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_page_headers(&response, &path);
    }

    // Error pages, the receipt page and the recipient pages carry them too.
    let not_found = sender.get(&server, "/sent/not-a-delivery").await;
    assert_eq!(not_found.status(), 404);
    assert_page_headers(&not_found, "404 page");
    let wrong_role = billing.get(&server, "/compose").await;
    assert_eq!(wrong_role.status(), 403);
    assert_page_headers(&wrong_role, "403 page");
    let receipt = sender
        .get(
            &server,
            &format!("/api/deliveries/{delivery}/postmark?format=html"),
        )
        .await;
    assert_eq!(receipt.status(), 200);
    assert_page_headers(&receipt, "postmark receipt");
    let messages =
        wait_for_messages(&server.data_dir.join("outbox"), 1, Duration::from_secs(30)).await;
    let link = links_in(&messages[0], &server.base).remove(0);
    let recipient_page = server.client.get(&link).send().await.unwrap();
    assert_eq!(recipient_page.status(), 200);
    assert_page_headers(&recipient_page, "recipient password page");
    let stylesheet = server
        .client
        .get(server.url("/assets/consign.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stylesheet.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert_eq!(stylesheet.headers()["x-content-type-options"], "nosniff");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_reject_missing_or_wrong_token() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let delivery = submit_delivery(&server, &api_token, "Contract", json!({})).await;
    let sender = PageSession::login(&server, "ada").await;

    // The mailing list form.
    for token in [None, Some(WRONG_TOKEN)] {
        let mut fields = vec![("name", "partners"), ("members", "carol@recipients.test")];
        fields.extend(token.map(|token| ("csrf", token)));
        let response = sender.post(&server, "/lists", &fields).await;
        assert_eq!(response.status(), 403, "list form with token {token:?}");
    }
    let lists = sender.get(&server, "/lists").await.text().await.unwrap();
    assert!(
        !lists.contains("partners"),
        "a rejected form saved the list"
    );
    let saved = sender
        .post(
            &server,
            "/lists",
            &[
                ("csrf", &sender.csrf),
                ("name", "partners"),
                ("members", "carol@recipients.test"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);

    // The withdrawal form.
    let withdraw_path = format!("/sent/{delivery}/withdraw");
    for token in [None, Some(WRONG_TOKEN)] {
        let mut fields = vec![("reason", "mistake")];
        fields.extend(token.map(|token| ("csrf", token)));
        let response = sender.post(&server, &withdraw_path, &fields).await;
        assert_eq!(response.status(), 403, "withdrawal with token {token:?}");
    }
    let status = server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        status["status"], "released",
        "a rejected form withdrew the delivery"
    );

    // A form token of another session is wrong too.
    let other = PageSession::login(&server, "ada").await;
    assert_ne!(other.csrf, sender.csrf);
    let crossed = sender
        .post(&server, &withdraw_path, &[("csrf", &other.csrf)])
        .await;
    assert_eq!(crossed.status(), 403);
    let withdrawn = sender
        .post(
            &server,
            &withdraw_path,
            &[("csrf", &sender.csrf), ("reason", "mistake")],
        )
        .await;
    assert_eq!(withdrawn.status(), 303);

    // The compose form, a multipart body: nothing is recorded without the token.
    for token in [None, Some(WRONG_TOKEN)] {
        let mut form = Form::new();
        if let Some(token) = token {
            form = form.text("csrf", token.to_owned());
        }
        let form = form
            .text("recipients", "dan@recipients.test")
            .text("subject", "Forged")
            .part(
                "document",
                Part::bytes(b"x".to_vec())
                    .file_name("x.txt")
                    .mime_str("text/plain")
                    .unwrap(),
            );
        let response = server
            .client
            .post(server.url("/compose"))
            .header("cookie", &sender.cookie)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "compose with token {token:?}");
    }
    let sent = sender.get(&server, "/sent").await.text().await.unwrap();
    assert!(
        !sent.contains("Forged"),
        "a rejected compose form recorded a delivery"
    );

    // The logout form: the session stays open without the token.
    let refused = sender.post(&server, "/logout", &[]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(sender.get(&server, "/sent").await.status(), 200);
    let logged_out = sender
        .post(&server, "/logout", &[("csrf", &sender.csrf)])
        .await;
    assert_eq!(logged_out.status(), 303);
    let after = sender.get(&server, "/sent").await;
    assert_eq!(after.status(), 303, "the session ended");
    assert!(
        after.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );

    // The login form: its double-submit token must match the cookie.
    let form_page = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    let (form_cookie, _) = set_cookie(&form_page, "consign_login_form").unwrap();
    let form_token = hidden_value(&form_page.text().await.unwrap(), "csrf").unwrap();
    let password = support::password_of("ada");
    let cases: [(Option<&str>, Option<&str>); 3] = [
        (None, Some(form_token.as_str())),
        (Some(form_cookie.as_str()), None),
        (Some(form_cookie.as_str()), Some(WRONG_TOKEN)),
    ];
    for (cookie, token) in cases {
        let mut fields = vec![("login", "ada"), ("password", password.as_str())];
        fields.extend(token.map(|token| ("csrf", token)));
        let mut request = server.client.post(server.url("/login")).form(&fields);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            403,
            "login with cookie {cookie:?} and token {token:?}"
        );
        assert!(
            set_cookie(&response, "consign_session").is_none(),
            "a rejected login opened a session"
        );
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_form_rejects_cross_site_post() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    submit_delivery(
        &server,
        &api_token,
        "Contract",
        json!({ "password": "open sesame 7" }),
    )
    .await;
    let messages =
        wait_for_messages(&server.data_dir.join("outbox"), 1, Duration::from_secs(30)).await;
    let link = links_in(&messages[0], &server.base).remove(0);

    let cross_site = server
        .client
        .post(&link)
        .header("sec-fetch-site", "cross-site")
        .form(&[("password", "open sesame 7")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(set_cookie(&cross_site, "consign_access").is_none());

    let same_origin = server
        .client
        .post(&link)
        .header("sec-fetch-site", "same-origin")
        .form(&[("password", "open sesame 7")])
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 303);
    assert!(set_cookie(&same_origin, "consign_access").is_some());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_flags_over_http() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let session = PageSession::login(&server, "ada").await;

    let flags = session.set_cookie.to_ascii_lowercase();
    assert!(flags.contains("httponly"), "{flags}");
    assert!(flags.contains("samesite=strict"), "{flags}");
    assert!(flags.contains("path=/"), "{flags}");
    assert!(
        !flags.contains("secure"),
        "plain HTTP cookie marked Secure: {flags}"
    );

    let form_page = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    let (_, header) = set_cookie(&form_page, "consign_login_form").unwrap();
    let header = header.to_ascii_lowercase();
    assert!(header.contains("httponly"), "{header}");
    assert!(header.contains("samesite=strict"), "{header}");
    assert!(header.contains("path=/login"), "{header}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_over_https() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let (cert, key) = make_certificate(work.path());
    let server = Server::start(
        &data_dir,
        Clock::system(),
        &["--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
    let base = server.base.replace("http://", "https://");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let form_page = client.get(format!("{base}/login")).send().await.unwrap();
    let (form_cookie, form_header) = set_cookie(&form_page, "consign_login_form").unwrap();
    assert!(form_header.contains("; Secure"), "{form_header}");
    let form_token = hidden_value(&form_page.text().await.unwrap(), "csrf").unwrap();
    let password = support::password_of("ada");
    let response = client
        .post(format!("{base}/login"))
        .header("cookie", &form_cookie)
        .form(&[
            ("login", "ada"),
            ("password", password.as_str()),
            ("csrf", form_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (_, session_header) = set_cookie(&response, "consign_session").unwrap();
    assert!(session_header.contains("; Secure"), "{session_header}");
    assert!(session_header.contains("HttpOnly"), "{session_header}");

    server.stop().await;
}

/// Makes a self-signed certificate for 127.0.0.1 with openssl and returns the paths of
/// the certificate and the key.
fn make_certificate(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

/// Returns every `href`, `src` and `action` value of a page.
fn urls_in(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["href=\"", "src=\"", "action=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            urls.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_urls_carry_no_secret() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let delivery =
        submit_delivery(&server, &api_token, "Contract", json!({ "postmark": true })).await;
    let sender = PageSession::login(&server, "ada").await;
    let auditor = PageSession::login(&server, "audrey").await;
    let billing = PageSession::login(&server, "bill").await;

    let pages = [
        (&sender, "/compose".to_owned()),
        (&sender, "/sent".to_owned()),
        (&sender, format!("/sent/{delivery}")),
        (&sender, "/lists".to_owned()),
        (&billing, "/billing".to_owned()),
        (&auditor, format!("/audit/deliveries/{delivery}")),
    ];
    for (session, path) in pages {
        let html = session.get(&server, &path).await.text().await.unwrap();
        let urls = urls_in(&html);
        assert!(!urls.is_empty(), "{path} has links");
        for url in urls {
            assert!(
                !url.contains(&session.token),
                "{path}: the session token is in {url}"
            );
            assert!(
                !url.contains(&session.csrf),
                "{path}: the form token is in {url}"
            );
            assert!(
                !url.contains(&api_token),
                "{path}: a session token is in {url}"
            );
        }
        assert!(
            !html.contains(&session.token),
            "{path} shows the session token"
        );
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_escaped() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let hostile = "<script>alert('x')</script> \"quoted\" & more";
    let delivery = submit_delivery(
        &server,
        &api_token,
        hostile,
        json!({ "message": hostile, "billing_code": "<b>code</b>" }),
    )
    .await;
    let sender = PageSession::login(&server, "ada").await;
    let saved = sender
        .post(
            &server,
            "/lists",
            &[
                ("csrf", &sender.csrf),
                ("name", "<i>list</i>"),
                ("members", "carol@recipients.test"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let auditor = PageSession::login(&server, "audrey").await;
    let billing = PageSession::login(&server, "bill").await;

    let pages = [
        (&sender, "/sent".to_owned()),
        (&sender, format!("/sent/{delivery}")),
        (&sender, "/lists".to_owned()),
        (&sender, "/compose".to_owned()),
        (&auditor, "/audit?sender=ada".to_owned()),
        (&auditor, format!("/audit/deliveries/{delivery}")),
        (&billing, "/billing".to_owned()),
    ];
    for (session, path) in pages {
        let html = session.get(&server, &path).await.text().await.unwrap();
        assert!(!html.contains("<script>alert"), "{path} has raw script");
        assert!(!html.contains("<b>code"), "{path} has raw markup");
        assert!(!html.contains("<i>list"), "{path} has raw markup");
    }
    let sent = sender.get(&server, "/sent").await.text().await.unwrap();
    assert!(
        sent.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "the subject is shown escaped"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_without_session_redirect_to_login() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;

    for path in ["/compose", "/sent", "/lists", "/billing", "/audit", "/"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("/login"),
            "{path} redirects to {location}"
        );
    }
    // A bearer token is not a page session.
    let api_token = server.login("ada").await;
    let response = server
        .client
        .get(server.url("/sent"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_errors_name_the_field() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let sender = PageSession::login(&server, "ada").await;

    let response = sender
        .post(
            &server,
            "/lists",
            &[
                ("csrf", &sender.csrf),
                ("name", "partners"),
                ("members", "carol@recipients.test\nnot an address"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("id=\"members-error\""),
        "the members field carries the error"
    );
    assert!(html.contains("Line 2:"), "the error names the line");
    assert!(html.contains("aria-invalid=\"true\""));

    let form = Form::new()
        .text("csrf", sender.csrf.clone())
        .text("recipients", "dan@recipients.test")
        .text("subject", "Short password")
        .text("password", "short")
        .part(
            "document",
            Part::bytes(b"x".to_vec())
                .file_name("x.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let response = server
        .client
        .post(server.url("/compose"))
        .header("cookie", &sender.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("id=\"password-error\""),
        "the password field carries the error"
    );
    assert!(
        html.contains("at least 8 characters"),
        "the error says the fix"
    );
    assert!(
        html.contains("value=\"Short password\""),
        "the entered subject is kept"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_paths_get_the_usual_errors() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let token = server.login("ada").await;

    for path in [
        "/api/deliveries/%ff",
        "/api/tracking/deliveries/%ff%fe",
        "/api/audit/deliveries/%ff",
    ] {
        let response = server
            .client
            .get(server.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("not UTF-8 text"),
            "{path}: {body}"
        );
    }

    let link = server
        .client
        .get(server.url("/d/%00%ff"))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 404);
    let html = link.text().await.unwrap();
    assert!(html.contains("Link not found"), "{html}");

    let page = server
        .client
        .get(server.url("/sent/%ff"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    server.stop().await;
}
