//! Helpers of the page tests: a page session opened through the login form with a real
//! HTTP client, the form tokens read from the pages, and a delivery submitted over the
//! JSON API.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::support::{Server, password_of};

/// Returns the value of the `name="NAME" value="..."` input of a page.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Returns the `NAME=VALUE` pair of a cookie in a response's `Set-Cookie` headers, and
/// the whole header.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| {
            (
                value.split(';').next().unwrap().to_owned(),
                value.to_owned(),
            )
        })
}

/// A browser-like page session: the session cookie and the form token of its pages.
pub struct PageSession {
    pub cookie: String,
    pub token: String,
    pub csrf: String,
    /// The `Set-Cookie` header of the session cookie.
    pub set_cookie: String,
}

impl PageSession {
    /// Logs in through `GET /login` and `POST /login`, as a browser does.
    pub async fn login(server: &Server, login: &str) -> Self {
        let form_page = server
            .client
            .get(server.url("/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(form_page.status(), 200);
        let (form_cookie, _) =
            set_cookie(&form_page, "consign_login_form").expect("login form cookie");
        let html = form_page.text().await.unwrap();
        let form_token = hidden_value(&html, "csrf").expect("login form token");

        let response = server
            .client
            .post(server.url("/login"))
            .header("cookie", &form_cookie)
            .form(&[
                ("login", login),
                ("password", &password_of(login)),
                ("csrf", &form_token),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "login of {login}");
        let (cookie, set_cookie_header) =
            set_cookie(&response, "consign_session").expect("session cookie");
        let token = cookie.split_once('=').unwrap().1.to_owned();

        let start = server
            .client
            .get(server.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 303);
        let home = start.headers()["location"].to_str().unwrap().to_owned();
        let html = server
            .client
            .get(server.url(&home))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = hidden_value(&html, "csrf").expect("form token in the logout form");
        Self {
            cookie,
            token,
            csrf,
            set_cookie: set_cookie_header,
        }
    }

    /// Sends `GET path` with the session cookie.
    pub async fn get(&self, server: &Server, path: &str) -> reqwest::Response {
        server
            .client
            .get(server.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// Sends a form `POST path` with the session cookie.
    pub async fn post(
        &self,
        server: &Server,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        server
            .client
            .post(server.url(path))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

/// Submits a delivery of one small document over the JSON API and returns its id.
pub async fn submit_delivery(
    server: &Server,
    token: &str,
    subject: &str,
    extra: serde_json::Value,
) -> String {
    let mut metadata = json!({
        "recipients": ["bob@recipients.test"],
        "subject": subject,
        "billing_code": "LEGAL-7",
    });
    if let (Some(metadata), Some(extra)) = (metadata.as_object_mut(), extra.as_object()) {
        metadata.extend(extra.clone());
    }
    let form = Form::new()
        .part(
            "metadata",
            Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "document",
            Part::bytes(b"The signed contract.".to_vec())
                .file_name("contract.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["delivery"].as_str().unwrap().to_owned()
}
