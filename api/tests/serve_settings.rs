//! `consign serve` checks its settings before it creates anything. Each of these is
//! rejected with a message naming the value: a bad listen address, a port in use, a bad
//! public URL or one with a path, a bad sender address or name, SMTP URL or TLS file, an
//! unusable outbox, or a missing shared folder. The data directory is left uncreated.
//! A corrupt ledger is left as it was, a damaged event stops the start at once, and a
//! ledger is not opened with another chain count than it was created with.

use consign_ledger::Clock;

/// Runs `consign serve` with `extra` arguments on a data directory in `work`, and
/// returns the error message.
async fn serve_error(work: &std::path::Path, extra: &[&str]) -> String {
    serve_error_in(&work.join("data"), extra).await
}

/// Runs `consign serve` with `extra` arguments on `data_dir`, and returns the error
/// message.
async fn serve_error_in(data_dir: &std::path::Path, extra: &[&str]) -> String {
    let mut argv = vec!["consign", "serve", "--data-dir", data_dir.to_str().unwrap()];
    argv.extend_from_slice(extra);
    let consign_api::cli::Command::Serve(args) =
        <consign_api::cli::Cli as clap::Parser>::parse_from(argv).command
    else {
        unreachable!("the arguments name the serve subcommand");
    };

    let error = consign_api::serve::run(args, Clock::system(), None, std::future::pending())
        .await
        .unwrap_err();
    format!("{error:#}")
}

#[tokio::test]
async fn bad_listen_address_creates_nothing() {
    let work = tempfile::tempdir().unwrap();

    let message = serve_error(work.path(), &["--listen", "127.0.0.1:99999"]).await;

    assert!(
        message.contains("--listen \"127.0.0.1:99999\""),
        "{message}"
    );
    assert!(message.contains("such as 127.0.0.1:8080"), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn port_in_use_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let other_server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = other_server.local_addr().unwrap().to_string();

    let message = serve_error(work.path(), &["--listen", &address]).await;

    assert!(message.contains(&address), "{message}");
    assert!(
        message.contains("stop the process that is using it"),
        "{message}"
    );
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn missing_blob_folder_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("share").join("blobs");

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--blob-dir",
            missing.to_str().unwrap(),
        ],
    )
    .await;

    assert!(message.contains(missing.to_str().unwrap()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.exists(), "the shared folder was created");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn missing_key_folder_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("share").join("keys");

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--keys-dir",
            missing.to_str().unwrap(),
        ],
    )
    .await;

    assert!(message.contains(missing.to_str().unwrap()), "{message}");
    assert!(message.contains("--keys-dir"), "{message}");
    assert!(!missing.exists(), "the key folder was created");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn bad_public_url_creates_nothing() {
    let work = tempfile::tempdir().unwrap();

    let message = serve_error(
        work.path(),
        &["--listen", "127.0.0.1:0", "--public-url", "not a url"],
    )
    .await;

    assert!(message.contains("not a url"), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn bad_url_or_sender_name_names_option() {
    let work = tempfile::tempdir().unwrap();

    let message = serve_error(
        work.path(),
        &["--listen", "127.0.0.1:0", "--public-url", "not a url"],
    )
    .await;
    assert!(message.contains("--public-url"), "{message}");

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--mail-from-name",
            "evil\r\nBcc: x@evil.test",
        ],
    )
    .await;
    assert!(message.contains("--mail-from-name"), "{message}");
    assert!(message.contains("U+000D"), "{message}");

    let message = serve_error(
        work.path(),
        &["--listen", "127.0.0.1:0", "--mail-from", "a@b@c"],
    )
    .await;
    assert!(message.contains("--mail-from"), "{message}");
    assert!(!message.contains("--public-url"), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn unusable_outbox_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("outbox-file");
    std::fs::write(&file, "not a folder\n").unwrap();

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--outbox",
            file.to_str().unwrap(),
        ],
    )
    .await;

    assert!(message.contains("--outbox"), "{message}");
    assert!(message.contains("is a file, not a folder"), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );

    // A folder that cannot be created, even by root: /proc takes no new folders.
    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--outbox",
            "/proc/consign-outbox",
        ],
    )
    .await;
    assert!(
        message.contains("cannot create the outbox folder"),
        "{message}"
    );
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

#[tokio::test]
async fn uncreatable_data_dir_names_option() {
    // Even root cannot create folders in /proc.
    let message = serve_error_in(
        std::path::Path::new("/proc/consign-data"),
        &["--listen", "127.0.0.1:0"],
    )
    .await;

    assert!(message.contains("--data-dir"), "{message}");
    assert!(message.contains("/proc/consign-data"), "{message}");
}

#[tokio::test]
async fn bad_smtp_url_creates_nothing() {
    let work = tempfile::tempdir().unwrap();

    for url in [
        "smtp://",
        "smtp://127.0.0.1:99999",
        "smtp://127.0.0.1?tls=bogus",
    ] {
        let message = serve_error(work.path(), &["--listen", "127.0.0.1:0", "--smtp", url]).await;

        assert!(message.contains("SMTP"), "{url}: {message}");
        assert!(
            !work.path().join("data").exists(),
            "{url}: the data directory was created"
        );
    }
}

#[tokio::test]
async fn bad_tls_file_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let not_pem = work.path().join("server.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let path = not_pem.to_str().unwrap();

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            path,
            "--tls-key",
            path,
        ],
    )
    .await;

    assert!(message.contains("no certificate found"), "{message}");
    assert!(message.contains(path), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

/// Returns the paths of every file and folder below `dir`, sorted.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(tree(&path));
        }
        paths.push(path);
    }
    paths.sort();
    paths
}

#[tokio::test]
async fn corrupt_ledger_is_left_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(data_dir.join("ledger")).unwrap();
    std::fs::write(data_dir.join("ledger/CURRENT"), b"junk\n").unwrap();
    let before = tree(&data_dir);

    let message = serve_error_in(&data_dir, &["--listen", "127.0.0.1:0"]).await;

    assert!(message.contains("corrupt"), "{message}");
    assert!(message.contains("restore the directory"), "{message}");
    assert_eq!(tree(&data_dir), before, "the refused start added files");
    assert_eq!(
        std::fs::read(data_dir.join("ledger/CURRENT")).unwrap(),
        b"junk\n"
    );
}

#[tokio::test]
async fn other_chain_count_rejected() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    consign_ledger::EmbeddedLedger::open(&data_dir, consign_ledger::EmbeddedOptions::default())
        .unwrap();
    let before = tree(&data_dir);

    let outbox = work.path().join("outbox-elsewhere");
    let message = serve_error_in(
        &data_dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--chains",
            "4",
            "--outbox",
            outbox.to_str().unwrap(),
        ],
    )
    .await;

    assert!(message.contains("created with 1 chain,"), "{message}");
    assert!(message.contains("but 4 were requested"), "{message}");
    assert!(message.contains("leave out --chains"), "{message}");
    assert_eq!(tree(&data_dir), before, "the refused start added files");
    assert!(!outbox.exists(), "the refused start created the outbox");
}

#[tokio::test]
async fn public_url_with_path_rejected() {
    let work = tempfile::tempdir().unwrap();

    let message = serve_error(
        work.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "https://consign.example.org/base/",
        ],
    )
    .await;

    assert!(message.contains("--public-url"), "{message}");
    assert!(message.contains("\"/base/\""), "{message}");
    assert!(message.contains("without a path"), "{message}");
    assert!(
        !work.path().join("data").exists(),
        "the data directory was created"
    );
}

/// A ledger damaged below what its views already cover stops the start at once,
/// naming the damage, rather than after the model's 30 s wait for progress.
#[tokio::test]
async fn damaged_event_below_views_fails_fast() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let data = data_dir.to_str().unwrap();
    let consign = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_consign"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    consign(&[
        "ledger",
        "generate",
        "--data-dir",
        data,
        "--deliveries",
        "30",
    ]);
    consign(&["projections", "catch-up", "--data-dir", data]);

    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        data_dir.join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap();
    let events = db.cf_handle("events").unwrap();
    let mut key = 0u32.to_be_bytes().to_vec();
    key.extend_from_slice(&100u64.to_be_bytes());
    let mut value = db.get_cf(events, &key).unwrap().unwrap();
    let last = value.len() - 1;
    value[last] ^= 1;
    db.put_cf(events, &key, value).unwrap();
    drop(db);

    let started = std::time::Instant::now();
    let message = serve_error_in(&data_dir, &["--listen", "127.0.0.1:0"]).await;

    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the start failed only after {:?}",
        started.elapsed()
    );
    assert!(message.contains("corrupt"), "{message}");
    assert!(message.contains("position 100"), "{message}");
    assert_eq!(
        message.matches("restore the directory").count(),
        1,
        "the advice is given once: {message}"
    );
}
