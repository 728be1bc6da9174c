//! The `consign ledger` commands as a user runs them: the real binary, real files,
//! and the messages and exit codes a user gets, including for a locked, unreadable,
//! full or corrupt data directory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod cli_support;
mod fs_support;

use cli_support::{SmallDisk, consign, file_digests, generate, is_root, run, text};
use fs_support::copy_tree;

#[test]
fn generate_then_verify_and_dump() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 40);

    let verify = run(&[
        "ledger",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", text(&verify.stderr));
    assert!(stdout.contains("is intact"), "{stdout}");

    // A chain the ledger does not have is rejected before anything is checked.
    let missing = run(&[
        "ledger",
        "verify",
        "--chain",
        "99",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--chain 99 does not exist"), "{stderr}");
    assert!(missing.stdout.is_empty(), "{}", text(&missing.stdout));

    let dump = run(&[
        "ledger",
        "dump",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--limit",
        "5",
    ]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let lines: Vec<serde_json::Value> = text(&dump.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["position"], 0);
    assert_eq!(lines[1]["previous"], lines[0]["hash"]);
    assert_eq!(lines[0]["type"], "AccountOpened");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines[0]["payload"].is_object());

    let from = run(&[
        "ledger",
        "dump",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--from",
        "3",
        "--limit",
        "1",
    ]);
    let line: serde_json::Value = serde_json::from_str(text(&from.stdout).trim()).unwrap();
    assert_eq!(line["position"], 3);
    assert_eq!(line["hash"], lines[3]["hash"]);

    // Past the end: nothing on standard output, exit 0, and a note saying why.
    let past = run(&[
        "ledger",
        "dump",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--from",
        "100000000",
    ]);
    assert!(past.status.success(), "{}", text(&past.stderr));
    assert!(past.stdout.is_empty(), "{}", text(&past.stdout));
    let note = text(&past.stderr);
    assert!(note.contains("--from 100000000 is past its end"), "{note}");
}

#[test]
fn verify_reports_tampering_with_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 20);

    // Rewrite one event's stored bytes through RocksDB, as an attacker with disk access.
    let db_path = dir.path().join("ledger");
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            &db_path,
            ["events", "idempotency", "meta", "merkle"],
        )
        .unwrap();
        let events = db.cf_handle("events").unwrap();
        let mut key = 0u32.to_be_bytes().to_vec();
        key.extend_from_slice(&7u64.to_be_bytes());
        let mut value = db.get_cf(events, &key).unwrap().unwrap();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        db.put_cf(events, &key, value).unwrap();
    }

    let verify = run(&[
        "ledger",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("BROKEN at chain 0 position 7: hash mismatch"),
        "{stdout}"
    );
    assert!(stdout.contains("7 events before it verified"), "{stdout}");
}

#[test]
fn data_dir_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();

    let output = run(&["ledger", "verify", "--data-dir", file.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used"), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file was changed");
}

#[test]
fn unreadable_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 5);
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Root ignores file modes, so as root the command runs as the unprivileged user
    // `nobody` through setpriv(1) from util-linux.
    let mut command = if is_root() {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_consign"),
        ]);
        command
    } else {
        consign()
    };
    let output = command
        .args(["ledger", "verify", "--data-dir", data.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("setpriv from util-linux is installed");
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    // Verify only reads, so the advice names read access alone.
    assert!(
        stderr.contains("check that it is a directory that this user can read"),
        "{stderr}"
    );
    assert!(!stderr.contains("read and write"), "{stderr}");
}

fn assert_reported_corrupt(dir: &Path) {
    let output = run(&["ledger", "verify", "--data-dir", dir.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("is BROKEN"), "{stdout}");
    assert!(
        stdout.contains("restore the directory from a backup"),
        "{stdout}"
    );
}

#[test]
fn missing_manifest_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5);
    std::fs::write(dir.path().join("ledger/CURRENT"), b"MANIFEST-999999\n").unwrap();
    assert_reported_corrupt(dir.path());
}

#[test]
fn garbled_manifest_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5);
    let current = std::fs::read_to_string(dir.path().join("ledger/CURRENT")).unwrap();
    let manifest = dir.path().join("ledger").join(current.trim());
    let mut bytes = std::fs::read(&manifest).unwrap();
    for byte in bytes.iter_mut().skip(8).step_by(3) {
        *byte ^= 0x5a;
    }
    std::fs::write(&manifest, bytes).unwrap();
    assert_reported_corrupt(dir.path());
}

#[test]
fn second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut holder = consign()
        .args([
            "ledger",
            "generate",
            "--data-dir",
            data,
            "--deliveries",
            "100000000",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let lock = dir.path().join("consign.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != holder.id().to_string() {
        assert!(Instant::now() < deadline, "generator never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let output = run(&["ledger", "verify", "--data-dir", data]);
    holder.kill().unwrap();
    holder.wait().unwrap();

    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!("is in use by another consign process (pid {})", holder.id());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn full_disk_fails_cleanly_and_keeps_acknowledged_events() {
    let disk = SmallDisk::mount("6m");
    let data = disk.path.join("data");

    let output = run(&[
        "ledger",
        "generate",
        "--data-dir",
        data.to_str().unwrap(),
        "--deliveries",
        "1000000",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(stderr.contains("free disk space"), "{stderr}");
    assert!(
        stderr.contains("run it again with a new --data-dir"),
        "{stderr}"
    );

    // Once space is freed, everything that was acknowledged verifies.
    disk.resize("256m");
    let verify = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    let stdout = text(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", text(&verify.stderr));
    assert!(stdout.contains("is intact"), "{stdout}");
}

#[test]
fn verify_and_dump_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 20);
    let before = file_digests(dir.path());

    let verify = run(&[
        "ledger",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let dump = run(&["ledger", "dump", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));

    assert_eq!(file_digests(dir.path()), before);
}

/// `generate` refuses a corrupt ledger and one with events before it adds signing keys
/// or anything else to the data directory.
#[test]
fn refused_generate_changes_nothing() {
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::create_dir(corrupt.path().join("ledger")).unwrap();
    std::fs::write(corrupt.path().join("ledger/CURRENT"), b"junk\n").unwrap();
    let written = tempfile::tempdir().unwrap();
    generate(written.path(), 5);
    std::fs::remove_dir_all(written.path().join("keys")).unwrap();

    for (dir, reason) in [(corrupt.path(), "corrupt"), (written.path(), "already has")] {
        let before = file_digests(dir);
        let data_dir = dir.to_str().unwrap();
        let output = run(&[
            "ledger",
            "generate",
            "--data-dir",
            data_dir,
            "--deliveries",
            "1",
        ]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{reason}: {stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert_eq!(
            file_digests(dir),
            before,
            "{reason}: the data directory changed"
        );
    }
}

#[test]
fn missing_ledger_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo/consign-data");

    let output = run(&["ledger", "verify", "--data-dir", missing.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no ledger in"), "{stderr}");
    assert!(stderr.contains("check --data-dir"), "{stderr}");
    assert!(
        !dir.path().join("typo").exists(),
        "verify created the directory"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = run(&["ledger", "dump", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let entries = std::fs::read_dir(&empty).unwrap().count();
    assert_eq!(entries, 0, "dump wrote into an empty directory");
}

#[test]
fn flipped_byte_in_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 40);
    let log = std::fs::read_dir(dir.path().join("ledger"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("a write-ahead log file");
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(bytes.len() > 10_000, "the log holds the generated events");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();

    // Point-in-time recovery would stop at the damage and drop every later event.
    // The damaged log must instead be reported and left as it is.
    assert_reported_corrupt(dir.path());
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "verify changed the damaged log"
    );
}

#[test]
fn torn_last_log_record_verifies() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 40);
    let log = std::fs::read_dir(dir.path().join("ledger"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("a write-ahead log file");

    // A process killed between two writes of one record leaves its tail cut off.
    let length = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(length - 3)
        .unwrap();

    let output = run(&[
        "ledger",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("corrupt"), "{stderr}");
}

#[test]
fn verify_rejects_invalid_ranges() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5);
    let data = dir.path().to_str().unwrap();

    let reversed = run(&[
        "ledger",
        "verify",
        "--data-dir",
        data,
        "--from",
        "10",
        "--to",
        "5",
    ]);
    let stderr = text(&reversed.stderr);
    assert_eq!(reversed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--to 5 is before --from 10"), "{stderr}");

    let no_events = run(&["ledger", "dump", "--data-dir", data, "--limit", "0"]);
    let stderr = text(&no_events.stderr);
    assert_eq!(no_events.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'0' for '--limit"), "{stderr}");
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    assert!(no_events.stdout.is_empty(), "{}", text(&no_events.stdout));

    let past = run(&["ledger", "verify", "--data-dir", data, "--from", "99999999"]);
    let stderr = text(&past.stderr);
    assert_eq!(past.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is past the head of chain 0"), "{stderr}");

    let no_chains = run(&[
        "ledger",
        "generate",
        "--data-dir",
        data,
        "--deliveries",
        "1",
        "--chains",
        "0",
    ]);
    assert_eq!(
        no_chains.status.code(),
        Some(2),
        "{}",
        text(&no_chains.stderr)
    );
    assert!(
        text(&no_chains.stderr).contains("--chains"),
        "{}",
        text(&no_chains.stderr)
    );
}

#[test]
fn non_utf8_data_dir_creates_nothing() {
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    let output = consign()
        .args(["ledger", "generate", "--deliveries", "1", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'--data-dir'"), "{stderr}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(!data.exists(), "the refused data directory was created");
}

#[test]
fn unparsable_numbers_get_a_tip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger-data");
    let data = data.to_str().unwrap();

    for (option, value, tip) in [
        ("--deliveries", "abc", "give a whole number in digits 0-9"),
        ("--seed", "-1", "give a whole number in digits 0-9"),
        (
            "--seed",
            "99999999999999999999999",
            "larger than this option takes",
        ),
    ] {
        let mut args = vec!["ledger", "generate", "--data-dir", data, option, value];
        if option != "--deliveries" {
            args.extend(["--deliveries", "1"]);
        }
        let output = run(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("'{value}'")),
            "{option} {value}: {stderr}"
        );
        assert!(stderr.contains(tip), "{option} {value}: {stderr}");
    }
    assert!(
        !dir.path().join("ledger-data").exists(),
        "a failed parse created the data directory"
    );
}

#[test]
fn invalid_account_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let long_login = "a".repeat(70);

    for (login, email, field) in [
        ("a b", "ada@example.org", "--login"),
        (long_login.as_str(), "ada@example.org", "--login"),
        ("ada", "not-an-address", "--email"),
    ] {
        let output = consign()
            .args(["account", "create", "--data-dir", data.to_str().unwrap()])
            .args(["--login", login, "--role", "sender", "--email", email])
            .env("CONSIGN_ACCOUNT_PASSWORD", "sender-password-1")
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{login} {email}: {stderr}");
        assert!(stderr.contains(field), "{login} {email}: {stderr}");
        assert!(
            !data.exists(),
            "{login} {email}: the data directory was created"
        );
    }

    for (name, expected) in [
        ("", "--name is empty"),
        ("   ", "--name is empty"),
        ("Bob\nEvil", "--name contains the control character U+000A"),
    ] {
        let output = consign()
            .args(["account", "create", "--data-dir", data.to_str().unwrap()])
            .args([
                "--login",
                "ada",
                "--role",
                "sender",
                "--email",
                "ada@example.org",
            ])
            .args(["--name", name])
            .env("CONSIGN_ACCOUNT_PASSWORD", "sender-password-1")
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name:?}: {stderr}");
        assert!(stderr.contains(expected), "{name:?}: {stderr}");
        assert!(!data.exists(), "{name:?}: the data directory was created");
    }
}

/// `keys generate` only rotates existing keys: a mistyped or unused --data-dir gets no
/// key folder of its own.
#[test]
fn keys_generate_rotates_existing_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    for data_dir in [&missing, &empty] {
        let output = run(&["keys", "generate", "--data-dir", data_dir.to_str().unwrap()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("no postmark keys in"), "{stderr}");
    }
    assert!(!missing.exists(), "the missing data directory was created");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "files in the empty folder"
    );

    let served = dir.path().join("served");
    generate(&served, 2);
    let output = run(&["keys", "generate", "--data-dir", served.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let signing_keys = std::fs::read_dir(served.join("keys").join("postmark"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".key")
        })
        .count();
    assert_eq!(signing_keys, 2);
}

/// A generated history is dated in simulated time: every expiry is recorded at or after
/// the expiration date its submission carries, and the summary counts every event that
/// verify finds, checkpoints included.
#[test]
fn generated_history_is_dated_in_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let generated = run(&[
        "ledger",
        "generate",
        "--data-dir",
        data,
        "--deliveries",
        "60",
    ]);
    let summary = text(&generated.stdout);
    assert!(generated.status.success(), "{}", text(&generated.stderr));

    let verify = run(&["ledger", "verify", "--data-dir", data]);
    let verified = text(&verify.stdout);
    let count = |text: &str, before: &str, after: &str| -> u64 {
        let start = text.find(before).unwrap_or_else(|| panic!("{text}")) + before.len();
        let rest = &text[start..];
        rest[..rest.find(after).unwrap_or_else(|| panic!("{text}"))]
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(&summary, ": ", " events ("),
        count(&verified, "intact: ", " events verified"),
        "{summary}{verified}"
    );

    let dump = run(&["ledger", "dump", "--data-dir", data]);
    let events: Vec<serde_json::Value> = text(&dump.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let micros = |event: &serde_json::Value| -> i64 {
        let time: jiff::Timestamp = event["time"].as_str().unwrap().parse().unwrap();
        time.as_microsecond()
    };
    assert_eq!(events[0]["time"], "2026-03-02T08:00:00.000000Z");
    let mut expiry_dates = std::collections::HashMap::new();
    let mut expiries = 0;
    for event in &events {
        let payload = &event["payload"];
        match event["type"].as_str().unwrap() {
            "DeliverySubmitted" => {
                let date = payload["options"]["expires_at"]["instant"].as_i64();
                expiry_dates.insert(payload["delivery"].clone(), date);
            }
            "DeliveryExpired" => {
                let date = expiry_dates[&payload["delivery"]].expect("an expiration date");
                assert!(micros(event) >= date, "expired before its date: {event}");
                // The driver starts no request more than a minute of simulated time
                // after the earliest one not yet acknowledged.
                assert!(
                    micros(event) - date <= 60_000_000,
                    "expired over a minute after its date: {event}"
                );
                expiries += 1;
            }
            _ => {}
        }
    }
    assert!(
        expiries > 0,
        "no delivery expired in {} events",
        events.len()
    );
}

#[test]
fn generate_refuses_a_non_empty_ledger() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5);
    let before = run(&["ledger", "dump", "--data-dir", dir.path().to_str().unwrap()]);

    let again = run(&[
        "ledger",
        "generate",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--deliveries",
        "5",
    ]);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already has"), "{stderr}");
    assert!(stderr.contains("choose a new --data-dir"), "{stderr}");

    let after = run(&["ledger", "dump", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(
        after.stdout, before.stdout,
        "the refused run changed the ledger"
    );
}

#[test]
fn flipped_byte_in_any_table_file() {
    let original = tempfile::tempdir().unwrap();
    generate(original.path(), 400);
    // Opening the ledger for writing moves the events of the write-ahead log into table
    // files.
    let mut create = consign()
        .args([
            "account",
            "create",
            "--data-dir",
            original.path().to_str().unwrap(),
        ])
        .args([
            "--login",
            "ada",
            "--role",
            "sender",
            "--email",
            "ada@example.org",
        ])
        .args(["--name", "Ada", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"sender-password-1\n")
        .unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    // The role is shown as it is typed on the command line.
    let stdout = text(&created.stdout);
    assert!(stdout.contains("with role sender at position"), "{stdout}");

    let mut tables: Vec<_> = std::fs::read_dir(original.path().join("ledger"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".sst"))
        .collect();
    tables.sort();
    // The events, idempotency, Merkle and meta column families each have a table.
    assert!(tables.len() >= 4, "table files: {tables:?}");

    for table in &tables {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(original.path(), copy.path());
        let path = copy.path().join("ledger").join(table);
        let mut bytes = std::fs::read(&path).unwrap();
        // Byte 20 lies in the first data block, which every table file starts with.
        bytes[20] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();

        assert_reported_corrupt(copy.path());
    }
}
