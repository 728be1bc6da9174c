//! The page flows that the browser test does not cover, with a real HTTP client
//! against a server on loopback: editing and using mailing lists, withdrawing, the
//! billing report as of earlier ledger positions, and the auditor's search errors and
//! pages of results.

mod pages_support;
mod support;

use consign_ledger::Clock;
use consign_schemas::events::Role;
use pages_support::{PageSession, hidden_value, submit_delivery};
use serde_json::json;
use support::{Server, open_account};

async fn start(work: &tempfile::TempDir) -> Server {
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    open_account(&data_dir, "bill", Role::Billing).await;
    open_account(&data_dir, "audrey", Role::Auditor).await;
    Server::start(&data_dir, Clock::system(), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailing_list_created_edited_and_used() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let sender = PageSession::login(&server, "ada").await;

    let created = sender
        .post(
            &server,
            "/lists",
            &[
                ("csrf", &sender.csrf),
                ("name", "Board"),
                (
                    "members",
                    "Bob <bob@recipients.test>\ncarol@recipients.test",
                ),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    assert_eq!(created.headers()["location"], "/lists?saved=Board");
    let index = sender.get(&server, "/lists").await.text().await.unwrap();
    assert!(index.contains("Board"), "the list is listed");
    assert!(
        index.contains("href=\"/compose?list=Board\""),
        "the list can be used"
    );

    let edit = sender
        .get(&server, "/lists/edit?name=Board")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        edit.contains("Bob &lt;bob@recipients.test&gt;\ncarol@recipients.test"),
        "the form shows the members: {edit}"
    );
    assert_eq!(
        hidden_value(&edit, "name").as_deref(),
        Some("Board"),
        "the name is kept when editing"
    );
    let edited = sender
        .post(
            &server,
            "/lists",
            &[
                ("csrf", &sender.csrf),
                ("existing", "true"),
                ("name", "Board"),
                ("members", "dan@recipients.test"),
            ],
        )
        .await;
    assert_eq!(edited.status(), 303);
    let lists: serde_json::Value = server
        .client
        .get(server.url("/api/lists"))
        .bearer_auth(server.login("ada").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        lists["lists"][0]["members"],
        json!([{ "address": "dan@recipients.test", "name": null }])
    );

    let compose = sender
        .get(&server, "/compose?list=Board")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        compose.contains("name=\"lists\" type=\"checkbox\" value=\"Board\" checked"),
        "the list is preselected"
    );
    let missing = sender.get(&server, "/lists/edit?name=Nope").await;
    assert_eq!(missing.status(), 404);

    let index = sender.get(&server, "/lists").await.text().await.unwrap();
    assert!(
        index.contains("action=\"/lists/remove\""),
        "each list has a remove button"
    );
    let removed = sender
        .post(
            &server,
            "/lists/remove",
            &[("csrf", &sender.csrf), ("name", "Board")],
        )
        .await;
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()["location"], "/lists?removed=Board");
    let index = sender
        .get(&server, "/lists?removed=Board")
        .await
        .text()
        .await
        .unwrap();
    assert!(index.contains("The list Board was removed."), "{index}");
    assert!(index.contains("You have no mailing lists yet."), "{index}");
    let again = sender
        .post(
            &server,
            "/lists/remove",
            &[("csrf", &sender.csrf), ("name", "Board")],
        )
        .await;
    assert_eq!(again.status(), 404);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_from_the_page() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let delivery = submit_delivery(&server, &api_token, "Contract", json!({})).await;
    let sender = PageSession::login(&server, "ada").await;

    let page = sender
        .get(&server, &format!("/sent/{delivery}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("action=\"/sent/{delivery}/withdraw\"")),
        "the page offers withdrawal"
    );
    let withdrawn = sender
        .post(
            &server,
            &format!("/sent/{delivery}/withdraw"),
            &[("csrf", &sender.csrf), ("reason", "wrong annexe")],
        )
        .await;
    assert_eq!(withdrawn.status(), 303);
    let status: serde_json::Value = server
        .client
        .get(server.url(&format!("/api/deliveries/{delivery}")))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "withdrawn");
    let page = sender
        .get(&server, &format!("/sent/{delivery}?withdrawn=1"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("wrong annexe"), "the reason is shown");
    assert!(
        !page.contains("/withdraw\""),
        "no second withdrawal is offered"
    );

    let again = sender
        .post(
            &server,
            &format!("/sent/{delivery}/withdraw"),
            &[("csrf", &sender.csrf)],
        )
        .await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("already withdrawn"));

    server.stop().await;
}

/// Reads a page until it contains `needle`, because the views follow the ledger a
/// moment after a submission.
async fn wait_for_page(server: &Server, session: &PageSession, path: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = session.get(server, path).await.text().await.unwrap();
        if page.contains(needle) {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} did not show {needle:?} within 10 s: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Returns the positions a billing page states.
fn report_positions(html: &str) -> String {
    let marker = "<code id=\"report-positions\">";
    let start = html.find(marker).expect("the page states its positions") + marker.len();
    let end = html[start..].find('<').unwrap();
    html[start..start + end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_report_as_of_earlier_positions() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    submit_delivery(
        &server,
        &api_token,
        "First",
        json!({ "billing_code": "LEGAL-7" }),
    )
    .await;
    let billing = PageSession::login(&server, "bill").await;

    let one_delivery = "<td data-label=\"Deliveries\" class=\"number\">1</td>";
    let first = wait_for_page(
        &server,
        &billing,
        "/billing?billing_code=LEGAL-7",
        one_delivery,
    )
    .await;
    let positions = report_positions(&first);
    // The page's CSV link is pinned to the positions the page shows.
    let marker = "id=\"csv-download\" href=\"";
    let start = first.find(marker).expect("a CSV link") + marker.len();
    let end = start + first[start..].find('"').unwrap();
    let csv_link = first[start..end].replace("&amp;", "&");
    let pinned = positions.replace(':', "%3A").replace(',', "%2C");
    assert!(
        csv_link.ends_with(&format!("&as_of={pinned}")),
        "{csv_link}"
    );
    submit_delivery(
        &server,
        &api_token,
        "Second",
        json!({ "billing_code": "LEGAL-7" }),
    )
    .await;
    submit_delivery(
        &server,
        &api_token,
        "Other",
        json!({ "billing_code": "TAX-1" }),
    )
    .await;

    wait_for_page(&server, &billing, "/billing", "<option value=\"TAX-1\">").await;

    // The current CSV counts both LEGAL-7 deliveries; the one as of the first page
    // counts one, as that page did.
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let current = billing
        .get(
            &server,
            &format!("/billing/usage.csv?from={month}&to={month}&billing_code=LEGAL-7"),
        )
        .await;
    assert_eq!(current.status(), 200);
    assert!(
        current.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let current = current.text().await.unwrap();
    let as_of = billing
        .get(
            &server,
            &format!(
                "/billing/usage.csv?from={month}&to={month}&billing_code=LEGAL-7&as_of={positions}"
            ),
        )
        .await
        .text()
        .await
        .unwrap();
    let deliveries_of = |csv: &str| -> Vec<String> {
        csv.lines()
            .skip(2)
            .map(|line| line.split(',').nth(3).unwrap().to_owned())
            .collect()
    };
    assert_eq!(deliveries_of(&current), ["2"], "{current}");
    assert_eq!(deliveries_of(&as_of), ["1"], "{as_of}");
    let from_link = billing.get(&server, &csv_link).await.text().await.unwrap();
    assert_eq!(deliveries_of(&from_link), ["1"], "{from_link}");
    assert!(
        as_of.starts_with(&format!(
            "# ledger positions (chain:next position): {}",
            positions.replace(',', " ")
        )),
        "{as_of}"
    );

    // The picker lists every code of the period.
    let page = billing.get(&server, "/billing").await.text().await.unwrap();
    assert!(page.contains("<option value=\"LEGAL-7\">"), "{page}");
    assert!(page.contains("<option value=\"TAX-1\">"), "{page}");

    // Bad input names the field.
    let bad = billing.get(&server, "/billing?from=December").await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("id=\"from-error\""));
    let bad = billing.get(&server, "/billing?as_of=zero").await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("id=\"as_of-error\""));
    // A period that ends before it starts is an error, as in the API, not an empty one.
    let bad = billing
        .get(&server, "/billing?from=2026-12&to=2026-01")
        .await;
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains("id=\"to-error\""), "{page}");
    assert!(page.contains("to 2026-01 is before from 2026-12"), "{page}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_by_each_criterion() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work).await;
    let api_token = server.login("ada").await;
    let delivery = submit_delivery(&server, &api_token, "Contract", json!({})).await;
    let auditor = PageSession::login(&server, "audrey").await;
    let document_hash = blake3::hash(b"The signed contract.").to_hex().to_string();
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();

    for query in [
        "sender=ada".to_owned(),
        "recipient=bob@recipients.test".to_owned(),
        format!("document={document_hash}"),
        format!("from={today}"),
    ] {
        let link = format!("href=\"/audit/deliveries/{delivery}\"");
        wait_for_page(&server, &auditor, &format!("/audit?{query}"), &link).await;
    }

    let two = auditor
        .get(&server, "/audit?sender=ada&recipient=bob@recipients.test")
        .await;
    assert_eq!(two.status(), 422);
    assert!(two.text().await.unwrap().contains("fill in only one"));
    let unknown = auditor.get(&server, "/audit?sender=nobody").await;
    assert_eq!(unknown.status(), 422);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("id=\"sender-error\"")
    );
    let found = auditor.get(&server, "/audit?sender=ada").await;
    assert!(found.text().await.unwrap().contains("1 delivery found."));

    let inverted = auditor
        .get(&server, "/audit?from=2026-12-05&before=2026-12-01")
        .await;
    assert_eq!(inverted.status(), 422);
    let html = inverted.text().await.unwrap();
    assert!(html.contains("id=\"before-error\""), "{html}");
    assert!(
        html.contains("before 2026-12-01 is not after from 2026-12-05"),
        "{html}"
    );
    let garbled = auditor.get(&server, "/audit?from=garbage").await;
    assert_eq!(garbled.status(), 422);
    let html = garbled.text().await.unwrap();
    assert!(html.contains("give one such as 2026-12-01"), "{html}");
    assert!(!html.contains("T00:00:00Z"), "{html}");

    let sender = PageSession::login(&server, "ada").await;
    assert_eq!(
        sender.get(&server, "/audit").await.status(),
        403,
        "a sender is no auditor"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_pages_through_results() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_consign"))
        .env_remove("CONSIGN_DATA_DIR")
        .args(["ledger", "generate", "--deliveries", "250", "--no-sync"])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    open_account(&data_dir, "audrey", Role::Auditor).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let auditor = PageSession::login(&server, "audrey").await;

    // The generated deliveries are all submitted after 2026-01-01: 200 on the first
    // page, which links to the other 50.
    let first = wait_for_page(
        &server,
        &auditor,
        "/audit?from=2026-01-01",
        "200 deliveries on this page, and more match.",
    )
    .await;
    let marker = "href=\"/audit?cursor=";
    let start = first.find(marker).expect("a link to the next page") + "href=\"".len();
    let end = start + first[start..].find('"').unwrap();
    let link = first[start..end].replace("&amp;", "&");
    assert!(link.ends_with("&from=2026%2D01%2D01"), "{link}");
    let second = auditor.get(&server, &link).await;
    assert_eq!(second.status(), 200);
    let second = second.text().await.unwrap();
    assert!(
        second.contains("50 deliveries on this page, the last."),
        "{second}"
    );
    assert!(!second.contains(marker), "{second}");

    let delivery_links = |html: &str| -> std::collections::BTreeSet<String> {
        html.match_indices("href=\"/audit/deliveries/")
            .map(|(at, _)| html[at..at + 60].to_owned())
            .collect()
    };
    let (first_links, second_links) = (delivery_links(&first), delivery_links(&second));
    assert_eq!(first_links.len(), 200);
    assert_eq!(second_links.len(), 50);
    assert!(first_links.is_disjoint(&second_links));

    let foreign = auditor
        .get(
            &server,
            &link.replace("from=2026%2D01%2D01", "sender=audrey"),
        )
        .await;
    assert_eq!(foreign.status(), 422);
    let html = foreign.text().await.unwrap();
    assert!(html.contains("invalid list cursor"), "{html}");
    server.stop().await;
}
