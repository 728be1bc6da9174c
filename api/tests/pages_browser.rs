//! End to end in headless Chromium, driven over WebDriver by chromedriver. A sender
//! logs in, creates a mailing list and sends two documents with a password to it. A
//! recipient on a phone-sized window follows the link from the e-mail, enters the
//! password and downloads, and the sender's page shows the status change live. The
//! billing department downloads the CSV, and an auditor finds the delivery and reads
//! its timeline.
//!
//! The test starts chromedriver on a free loopback port and stops it at the end, and
//! saves screenshots to the directory it prints (`consign-artifacts/pages/` in the
//! cargo target directory). Without Chromium or chromedriver it is skipped with a
//! message, except under CI (`CI` set), where it fails: `scripts/install-deps.sh`
//! installs the Debian packages `chromium` and `chromium-driver`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consign_ledger::Clock;
use consign_schemas::events::Role;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use support::{Server, links_in, open_account, password_of, wait_for_messages};

const ACCESS_PASSWORD: &str = "correct horse 42";
const DESKTOP: (u32, u32) = (1280, 1000);
const PHONE: (u32, u32) = (390, 844);
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver as a child process on a loopback port, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start(driver: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", driver.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds an executable named `name` on the PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Returns chromedriver and Chromium, or `None` (after saying why) when either is
/// missing outside CI. Under CI a missing one fails the test.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let driver = find_on_path("chromedriver");
    let browser = find_on_path("chromium").or_else(|| find_on_path("chromium-browser"));
    match (driver, browser) {
        (Some(driver), Some(browser)) => Some((driver, browser)),
        (driver, browser) => {
            let message = format!(
                "the browser tests need chromedriver (found: {driver:?}) and Chromium (found: {browser:?}); \
                 install the Debian packages chromium and chromium-driver, as scripts/install-deps.sh does"
            );
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("skipping the browser test: {message}");
            None
        }
    }
}

/// Returns the artifact directory, `consign-artifacts/pages/` in the target directory.
fn artifact_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .unwrap_or(tmp)
        .join("consign-artifacts")
        .join("pages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens a headless Chromium session that saves downloads to `downloads`.
async fn open_browser(
    driver: &ChromeDriver,
    browser: &Path,
    profile: &Path,
    downloads: &Path,
) -> Client {
    std::fs::create_dir_all(downloads).unwrap();
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": browser.display().to_string(),
            "args": [
                "--headless=new",
                // Chromium's sandbox needs user namespaces, which CI's root user lacks.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                format!("--user-data-dir={}", profile.display()),
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("the capabilities are an object");
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot open a Chromium session through chromedriver: {error}")
        })
}

/// Saves a screenshot of the top of the page in a window of `size` as `name`.
async fn screenshot(client: &Client, dir: &Path, name: &str, size: (u32, u32)) {
    client.set_window_size(size.0, size.1).await.unwrap();
    client
        .execute("window.scrollTo(0, 0); return true;", vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Waits until the text of the first element matching `css` satisfies `done`, and
/// returns it.
async fn wait_for_text(client: &Client, css: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if done(&text) {
                return text;
            }
            last = text;
        }
        if Instant::now() >= deadline {
            let saved = save_failure(client).await;
            panic!(
                "{css} did not reach the expected text within {WAIT:?}; last text {last:?}; {saved}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves the window and the page source as `failure.png` and `failure.html` in the
/// artifact directory, and returns where.
async fn save_failure(client: &Client) -> String {
    let dir = artifact_dir();
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join("failure.png"), png);
    }
    if let Ok(html) = client.source().await {
        let _ = std::fs::write(dir.join("failure.html"), html);
    }
    let url = client
        .current_url()
        .await
        .map(|url| url.to_string())
        .unwrap_or_default();
    format!(
        "the page at {url} is saved as failure.png and failure.html in {}",
        dir.display()
    )
}

/// Waits until a file whose name satisfies `matches` is complete in `dir`.
async fn wait_for_download(dir: &Path, matches: impl Fn(&str) -> bool) -> PathBuf {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                matches(&name) && !name.ends_with(".crdownload")
            });
        if let Some(path) = found {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "no matching download in {} within {WAIT:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(client: &Client, css: &str, text: &str) {
    let element = client.find(Locator::Css(css)).await.unwrap();
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Logs in through the login page and waits for the start page.
async fn log_in(client: &Client, server: &Server, login: &str, start: &str) {
    client.goto(&server.url("/login")).await.unwrap();
    fill(client, "#login", login).await;
    fill(client, "#password", &password_of(login)).await;
    click(client, "main button[type=submit]").await;
    client
        .wait()
        .at_most(WAIT)
        .for_url(&url::Url::parse(&server.url(start)).unwrap())
        .await
        .unwrap();
}

async fn log_out(client: &Client) {
    click(client, "header form button").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_recipient_billing_and_auditor_in_chromium() {
    let Some((driver_path, browser_path)) = browser_tools() else {
        return;
    };
    let artifacts = artifact_dir();
    for stale in ["failure.png", "failure.html"] {
        let _ = std::fs::remove_file(artifacts.join(stale));
    }
    println!("page screenshots and downloads: {}", artifacts.display());
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    open_account(&data_dir, "ada", Role::Sender).await;
    open_account(&data_dir, "bill", Role::Billing).await;
    open_account(&data_dir, "audrey", Role::Auditor).await;
    let server = Server::start(&data_dir, Clock::system(), &[]).await;
    let driver = ChromeDriver::start(&driver_path, &artifacts.join("chromedriver.log"));

    let staff_downloads = work.path().join("staff-downloads");
    let recipient_downloads = work.path().join("recipient-downloads");
    let staff = open_browser(
        &driver,
        &browser_path,
        &work.path().join("staff-profile"),
        &staff_downloads,
    )
    .await;
    let recipient = open_browser(
        &driver,
        &browser_path,
        &work.path().join("recipient-profile"),
        &recipient_downloads,
    )
    .await;

    // The sender logs in and creates a mailing list.
    staff.goto(&server.url("/login")).await.unwrap();
    screenshot(&staff, &artifacts, "01-login-desktop.png", DESKTOP).await;
    screenshot(&staff, &artifacts, "01-login-phone.png", PHONE).await;
    staff.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    log_in(&staff, &server, "ada", "/sent").await;
    staff.goto(&server.url("/lists/new")).await.unwrap();
    fill(&staff, "#name", "Counterparties").await;
    fill(
        &staff,
        "#members",
        "Bob Martin <bob@recipients.test>\nchloe@recipients.test",
    )
    .await;
    click(&staff, "main button[type=submit]").await;
    let saved = wait_for_text(&staff, "main .notice", |text| text.contains("saved")).await;
    assert!(saved.contains("Counterparties"), "{saved}");
    screenshot(&staff, &artifacts, "02-lists-desktop.png", DESKTOP).await;

    // It composes a delivery of two documents to the list, with a password.
    let first_path = work.path().join("Contract 2026.txt");
    let second_path = work.path().join("Annexe – tarifs.csv");
    let first = b"The signed contract, version 3.\n".repeat(2_000);
    let second = b"item;price\nsupport;1200\n".to_vec();
    std::fs::write(&first_path, &first).unwrap();
    std::fs::write(&second_path, &second).unwrap();
    click(&staff, "a[href^='/compose?list=']").await;
    let list_box = staff
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#list-0"))
        .await
        .unwrap();
    assert_eq!(
        list_box.prop("checked").await.unwrap().as_deref(),
        Some("true"),
        "the list link preselects the list"
    );
    fill(&staff, "#subject", "Signed contract – Q4").await;
    fill(
        &staff,
        "#message",
        "Hello,\nthe signed contract and its annexe.",
    )
    .await;
    fill(&staff, "#password", ACCESS_PASSWORD).await;
    fill(&staff, "#billing_code", "LEGAL-7").await;
    click(&staff, "#postmark").await;
    let files = format!("{}\n{}", first_path.display(), second_path.display());
    staff
        .find(Locator::Css("#documents"))
        .await
        .unwrap()
        .send_keys(&files)
        .await
        .unwrap();
    let zone = staff
        .find(Locator::Css("#time_zone_shown"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!zone.is_empty(), "the time zone is shown");
    screenshot(&staff, &artifacts, "03-compose-desktop.png", DESKTOP).await;
    screenshot(&staff, &artifacts, "03-compose-phone.png", PHONE).await;
    staff.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    click(&staff, "#compose button[type=submit]").await;
    let status = wait_for_text(&staff, "main .notice", |text| text.contains("submitted")).await;
    assert!(status.contains("private link"), "{status}");
    let url = staff.current_url().await.unwrap();
    let delivery = url.path().trim_start_matches("/sent/").to_owned();
    assert_eq!(delivery.len(), 36, "a delivery id in {url}");
    let page_text = staff
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page_text.contains("Contract 2026.txt"),
        "first document listed"
    );
    assert!(
        page_text.contains("Annexe – tarifs.csv"),
        "second document listed"
    );
    assert!(
        page_text.contains("Access password\nYes") || page_text.contains("Access password Yes"),
        "{page_text}"
    );

    // The link e-mails go to both members; the sender's page shows them sent, live.
    let messages = wait_for_messages(&server.data_dir.join("outbox"), 2, WAIT).await;
    let bob_message = messages
        .iter()
        .find(|message| String::from_utf8_lossy(message).contains("bob@recipients.test"))
        .expect("an e-mail to bob");
    let link = links_in(bob_message, &server.base).remove(0);
    let bob_status = "main [data-recipient-status]";
    staff
        .execute(
            "window.consignMarker = 'not reloaded'; return true;",
            vec![],
        )
        .await
        .unwrap();
    wait_for_text(&staff, bob_status, |text| text == "E-mail sent").await;
    screenshot(&staff, &artifacts, "04-sent-detail-desktop.png", DESKTOP).await;

    // The recipient, on a phone-sized window, opens the link, enters the password and
    // downloads the first document.
    recipient.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    recipient.goto(&link).await.unwrap();
    recipient
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#password"))
        .await
        .unwrap();
    screenshot(
        &recipient,
        &artifacts,
        "05-recipient-password-phone.png",
        PHONE,
    )
    .await;
    fill(&recipient, "#password", ACCESS_PASSWORD).await;
    click(&recipient, "main button[type=submit]").await;
    recipient
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("a[download]"))
        .await
        .unwrap();
    screenshot(
        &recipient,
        &artifacts,
        "06-recipient-delivery-phone.png",
        PHONE,
    )
    .await;
    screenshot(
        &recipient,
        &artifacts,
        "06-recipient-delivery-desktop.png",
        DESKTOP,
    )
    .await;
    let downloads = recipient
        .find_all(Locator::Css("a[download]"))
        .await
        .unwrap();
    assert_eq!(downloads.len(), 2, "two documents to download");
    downloads[0].click().await.unwrap();
    let downloaded = wait_for_download(&recipient_downloads, |name| {
        name.starts_with("Contract 2026")
    })
    .await;
    assert_eq!(
        std::fs::read(&downloaded).unwrap(),
        first,
        "the downloaded document is the uploaded one"
    );

    // The sender's page follows without a reload.
    let live = wait_for_text(&staff, bob_status, |text| {
        text == "Downloaded" || text == "Receipt sent"
    })
    .await;
    let marker = staff
        .execute("return window.consignMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(
        marker,
        json!("not reloaded"),
        "the status changed to {live:?} without a reload"
    );
    let downloads = wait_for_text(&staff, "main [data-recipient-downloads]", |text| {
        text == "1"
    })
    .await;
    assert_eq!(downloads, "1", "the download count follows live");
    screenshot(
        &staff,
        &artifacts,
        "07-sent-detail-live-desktop.png",
        DESKTOP,
    )
    .await;
    staff.goto(&server.url("/sent")).await.unwrap();
    screenshot(&staff, &artifacts, "08-sent-list-desktop.png", DESKTOP).await;
    screenshot(&staff, &artifacts, "08-sent-list-phone.png", PHONE).await;
    staff.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();

    // The billing department finds the delivery's usage and downloads the CSV.
    log_out(&staff).await;
    log_in(&staff, &server, "bill", "/billing").await;
    let usage = wait_for_text(&staff, "#usage", |text| text.contains("LEGAL-7")).await;
    assert!(usage.contains("ada"), "{usage}");
    screenshot(&staff, &artifacts, "09-billing-desktop.png", DESKTOP).await;
    screenshot(&staff, &artifacts, "09-billing-phone.png", PHONE).await;
    staff.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    click(&staff, "#csv-download").await;
    let csv_path = wait_for_download(&staff_downloads, |name| name.ends_with(".csv")).await;
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("# ledger positions"), "{csv}");
    assert!(csv.contains("LEGAL-7"), "{csv}");
    std::fs::copy(&csv_path, artifacts.join("billing.csv")).unwrap();

    // An auditor finds the delivery by its sender and reads its timeline.
    log_out(&staff).await;
    log_in(&staff, &server, "audrey", "/audit").await;
    fill(&staff, "#sender", "ada").await;
    click(&staff, "main form button[type=submit]").await;
    wait_for_text(&staff, "#results", |text| text.contains("Signed contract")).await;
    screenshot(&staff, &artifacts, "10-audit-search-desktop.png", DESKTOP).await;
    click(&staff, &format!("a[href='/audit/deliveries/{delivery}']")).await;
    let chain_status = wait_for_text(&staff, "#chain-status", |text| !text.is_empty()).await;
    assert!(chain_status.contains("Verified"), "{chain_status}");
    let timeline = staff
        .find(Locator::Css("#timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for event in [
        "DeliverySubmitted",
        "DocumentUploaded",
        "DeliveryOpened",
        "DocumentDownloaded",
    ] {
        assert!(
            timeline.contains(event),
            "{event} in the timeline: {timeline}"
        );
    }
    assert!(
        timeline.contains("SubmissionAcceptance"),
        "ETSI names shown"
    );
    // Each row names the recipient and the document it concerns.
    assert!(
        timeline.contains("Recipient: bob@recipients.test"),
        "{timeline}"
    );
    assert!(
        timeline.contains("Document: Contract 2026.txt"),
        "{timeline}"
    );
    let rows = staff
        .find_all(Locator::Css("#timeline tbody tr"))
        .await
        .unwrap();
    assert!(rows.len() >= 8, "{} timeline rows", rows.len());
    screenshot(&staff, &artifacts, "11-audit-timeline-desktop.png", DESKTOP).await;
    screenshot(&staff, &artifacts, "11-audit-timeline-phone.png", PHONE).await;
    staff.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    click(&staff, "#evidence-download").await;
    let bundle = wait_for_download(&staff_downloads, |name| name.starts_with("evidence-")).await;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    assert!(bundle.is_object(), "the evidence bundle is JSON");

    staff.close().await.unwrap();
    recipient.close().await.unwrap();
    drop(driver);
    server.stop().await;
}
