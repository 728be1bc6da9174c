//! Password changes against a running server and on the command line: an account
//! changes its own password (over the API and on its page), an administrator sets
//! another's, and every session opened with the old password ends.

mod pages_support;
mod support;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use pages_support::{PageSession, set_cookie};
use serde_json::{Value, json};
use support::{Server, chain_heads, open_account, password_of};

/// Sends `body` to `path` with the bearer `token` and returns the status and JSON body.
async fn post_json(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Returns the status of `GET /api/me` with `token`.
async fn me_status(server: &Server, token: &str) -> u16 {
    server
        .client
        .get(server.url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Returns the status of a login with `password`.
async fn login_status(server: &Server, login: &str, password: &str) -> u16 {
    server
        .client
        .post(server.url("/api/login"))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn own_password_change_ends_old_sessions() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let first = server.login("ada").await;
    let second = server.login("ada").await;
    let heads = chain_heads(&server).await;

    // Bad requests change nothing: a wrong current password, a new password that is
    // too short or the same as the current one.
    let wrong =
        json!({ "current_password": "not-the-password-1", "new_password": "a new password 1" });
    let (status, refused) = post_json(&server, &first, "/api/me/password", &wrong).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "current_password", "{refused}");
    let short = json!({ "current_password": password_of("ada"), "new_password": "short" });
    let (status, refused) = post_json(&server, &first, "/api/me/password", &short).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "new_password", "{refused}");
    let same =
        json!({ "current_password": password_of("ada"), "new_password": password_of("ada") });
    let (status, refused) = post_json(&server, &first, "/api/me/password", &same).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "new_password", "{refused}");
    assert_eq!(chain_heads(&server).await, heads, "a refused change wrote");
    assert_eq!(me_status(&server, &first).await, 200);

    // The response to the change carries a new session, and both earlier ones end.
    let change =
        json!({ "current_password": password_of("ada"), "new_password": "a new password 1" });
    let (status, changed) = post_json(&server, &first, "/api/me/password", &change).await;
    assert_eq!(status, 200, "{changed}");
    let third = changed["token"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&server, &first).await, 401);
    assert_eq!(me_status(&server, &second).await, 401);
    assert_eq!(me_status(&server, &third).await, 200);
    assert_eq!(login_status(&server, "ada", &password_of("ada")).await, 401);
    assert_eq!(login_status(&server, "ada", "a new password 1").await, 200);
    server.stop().await;

    // The change is on the ledger: after a restart only the new password works.
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    assert_eq!(login_status(&server, "ada", &password_of("ada")).await, 401);
    assert_eq!(login_status(&server, "ada", "a new password 1").await, 200);
    server.stop().await;
}

#[tokio::test]
async fn admin_sets_password_of_account() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    open_account(&data_dir, "root", Role::Admin).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let ada = server.login("ada").await;
    let root = server.login("root").await;
    let body = json!({ "password": "set by the admin 7" });

    // Only an administrator may set another account's password.
    let (status, refused) = post_json(&server, &ada, "/api/accounts/root/password", &body).await;
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = post_json(&server, &root, "/api/accounts/nobody/password", &body).await;
    assert_eq!(status, 404, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("\"nobody\""), "{message}");
    let blank = json!({ "password": "   " });
    let (status, refused) = post_json(&server, &root, "/api/accounts/ada/password", &blank).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "password", "{refused}");
    let same = json!({ "password": password_of("ada") });
    let (status, refused) = post_json(&server, &root, "/api/accounts/ada/password", &same).await;
    assert_eq!(status, 422, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("is the current password"), "{message}");
    assert_eq!(me_status(&server, &ada).await, 200);

    let (status, set) = post_json(&server, &root, "/api/accounts/ada/password", &body).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["login"], "ada", "{set}");
    assert_eq!(me_status(&server, &ada).await, 401);
    assert_eq!(me_status(&server, &root).await, 200);
    assert_eq!(
        login_status(&server, "ada", "set by the admin 7").await,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn cli_sets_password_while_stopped() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "root", Role::Admin).await;
    let run = |login: &str, password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_consign"))
            .args(["account", "password", "--login", login, "--data-dir"])
            .arg(&data_dir)
            .env("CONSIGN_ACCOUNT_PASSWORD", password)
            .output()
            .unwrap()
    };

    let unknown = run("nobody", "a long enough one 1");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no account has the login \"nobody\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("or open one with `consign account create`"),
        "{stderr}"
    );
    let short = run("root", "short");
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the new password is too short"), "{stderr}");

    let same = run("root", &password_of("root"));
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert_eq!(same.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is the current password of root"),
        "{stderr}"
    );

    let set = run("root", "a long enough one 1");
    let stdout = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(
        stdout.contains("set the password of account root"),
        "{stdout}"
    );

    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    assert_eq!(
        login_status(&server, "root", &password_of("root")).await,
        401
    );
    assert_eq!(
        login_status(&server, "root", "a long enough one 1").await,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn password_page_changes_and_keeps_browser() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "audrey", Role::Auditor).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let browser = PageSession::login(&server, "audrey").await;
    let form = browser.get(&server, "/password").await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains("type=\"password\""), "{html}");

    // A wrong current password shows the error at its input and changes nothing.
    let wrong = browser
        .post(
            &server,
            "/password",
            &[
                ("csrf", &browser.csrf),
                ("current_password", "not the password"),
                ("new_password", "a new password 2"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("current_password is not the account"),
        "{html}"
    );
    assert!(
        !html.contains("a new password 2"),
        "the page repeats a password"
    );

    // A form without the session's form token is rejected.
    let forged = browser
        .post(
            &server,
            "/password",
            &[
                ("current_password", password_of("audrey").as_str()),
                ("new_password", "a new password 2"),
            ],
        )
        .await;
    assert_eq!(forged.status(), 403);

    let changed = browser
        .post(
            &server,
            "/password",
            &[
                ("csrf", &browser.csrf),
                ("current_password", password_of("audrey").as_str()),
                ("new_password", "a new password 2"),
            ],
        )
        .await;
    assert_eq!(changed.status(), 303);
    assert_eq!(changed.headers()["location"], "/password?changed=1");
    let (cookie, _) = set_cookie(&changed, "consign_session").expect("a new session cookie");

    // The old cookie is sent back to the login page; the new one shows the notice.
    let old = browser.get(&server, "/password").await;
    assert_eq!(old.status(), 303);
    let notice = server
        .client
        .get(server.url("/password?changed=1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(notice.status(), 200);
    let html = notice.text().await.unwrap();
    assert!(html.contains("Your password was changed"), "{html}");
    assert_eq!(
        login_status(&server, "audrey", "a new password 2").await,
        200
    );
    server.stop().await;
}
