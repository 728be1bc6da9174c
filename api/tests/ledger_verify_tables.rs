//! `consign ledger verify` on a ledger whose table file is damaged inside a data
//! block: RocksDB reports the file, and verify names the events that file holds.

mod cli_support;

use std::io::{Seek, SeekFrom, Write};

use cli_support::{generate, run, text};

#[test]
fn damaged_table_names_its_events() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 500);
    // A ledger this small still has its events in the write-ahead log only.
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        data.join("ledger"),
        ["events", "idempotency", "meta", "merkle"],
    )
    .unwrap();
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
