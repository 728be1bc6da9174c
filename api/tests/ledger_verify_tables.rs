//! `consign ledger verify` on a ledger whose table file is damaged inside a data
//! block: RocksDB reports the file, and verify names the events that file holds. And
//! on a ledger whose chain is intact while an index entry beside it was changed: the
//! verify names the entry and exits with status 1.

mod cli_support;

use std::io::{Seek, SeekFrom, Write};

use cli_support::{generate, run, text};

#[test]
fn damaged_table_names_its_events() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 500);
    // A ledger this small still has its events in the write-ahead log only.
    let db = raw_ledger(&data);
    db.flush_cf(db.cf_handle("events").unwrap()).unwrap();
    drop(db);

    let largest = std::fs::read_dir(data.join("ledger"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sst"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("the generated ledger has table files");
    let size = std::fs::metadata(&largest).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&largest)
        .unwrap();
    // The data blocks come first; the index and footer are at the end.
    file.seek(SeekFrom::Start(size / 4)).unwrap();
    file.write_all(&[0x5a; 16]).unwrap();
    drop(file);

    let verified = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    let stdout = text(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(1),
        "{stdout}{}",
        text(&verified.stderr)
    );
    let name = largest.file_name().unwrap().to_str().unwrap();
    assert!(stdout.contains("is BROKEN"), "{stdout}");
    assert!(stdout.contains("checksum mismatch"), "{stdout}");
    assert!(
        stdout.contains(&format!("{name} holds events 0:")),
        "{stdout}"
    );
}

/// Opens the generated ledger in `data` with RocksDB alone, for a change behind
/// consign's back.
fn raw_ledger(data: &std::path::Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        data.join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap()
}

/// Runs verify on `data`, which must report damage, and returns what it printed.
fn broken_verify(data: &std::path::Path) -> String {
    let verified = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    let stdout = text(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(1),
        "{stdout}{}",
        text(&verified.stderr)
    );
    assert!(stdout.contains("is BROKEN"), "{stdout}");
    assert!(!stdout.contains("intact"), "{stdout}");
    stdout
}

#[test]
fn changed_index_entries_fail_verify() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 200);
    let intact = run(&["ledger", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(intact.status.success(), "{}", text(&intact.stdout));
    let pristine = work.path().join("pristine");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&pristine)
        .status()
        .unwrap();
    assert!(copy.success());

    // A Merkle node: chain 0, level 6, index 1 covers events 64 to 127.
    let mut node = 0u32.to_be_bytes().to_vec();
    node.push(6);
    node.extend_from_slice(&1u64.to_be_bytes());
    let db = raw_ledger(&data);
    let merkle = db.cf_handle("merkle").unwrap();
    let mut value = db
        .get_cf(merkle, &node)
        .unwrap()
        .expect("the node is stored");
    value[0] ^= 1;
    db.put_cf(merkle, &node, value).unwrap();
    drop(db);
    let stdout = broken_verify(&data);
    assert!(
        stdout.contains("Merkle node level 6 index 1 of chain 0 is stored as"),
        "{stdout}"
    );

    // A reader that closes the pipe early does not change the outcome: the check
    // still runs to its end and exits with status 1.
    let mut child = cli_support::consign()
        .args(["ledger", "verify", "--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let stderr = text(&closed.stderr);
    assert_eq!(closed.status.code(), Some(1), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // A second idempotency entry naming the events of an existing one, which only
    // the count over all chains shows.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&pristine, &data).unwrap();
    let db = raw_ledger(&data);
    let idempotency = db.cf_handle("idempotency").unwrap();
    let (_, value) = db
        .iterator_cf(idempotency, rocksdb::IteratorMode::Start)
        .next()
        .expect("the generated requests carry idempotency keys")
        .unwrap();
    db.put_cf(idempotency, b"forged-key", value).unwrap();
    drop(db);
    let stdout = broken_verify(&data);
    assert!(
        stdout.contains("the idempotency entry for \"forged-key\" names"),
        "{stdout}"
    );
}
