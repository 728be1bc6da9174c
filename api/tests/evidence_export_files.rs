//! The file that `consign evidence export --out` writes: a full disk leaves nothing
//! behind, and a file beside the target that only shares its name is left alone.

mod cli_support;

use std::path::Path;

use cli_support::{SmallDisk, generate, run, text};

/// Returns the id of the first delivery submitted in the ledger of `data`.
fn first_delivery(data: &Path) -> String {
    let dump = run(&["ledger", "dump", "--data-dir", data.to_str().unwrap()]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    text(&dump.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["type"] == "DeliverySubmitted")
        .and_then(|event| event["payload"]["delivery"].as_str().map(str::to_owned))
        .expect("the generated ledger has a submission")
}

fn export(data: &Path, delivery: &str, out: &Path) -> std::process::Output {
    run(&[
        "evidence",
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--delivery",
        delivery,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn export_keeps_similar_named_file() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 20);
    let delivery = first_delivery(&data);

    let neighbour = work.path().join("evidence.partial");
    std::fs::write(&neighbour, "notes of the auditor").unwrap();
    let out = work.path().join("evidence.json");
    let exported = export(&data, &delivery, &out);
    assert!(exported.status.success(), "{}", text(&exported.stderr));

    assert!(out.is_file());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o644,
        "the bundle is for third parties to read"
    );
    let neighbour_text = std::fs::read_to_string(&neighbour).unwrap();
    assert_eq!(neighbour_text, "notes of the auditor");
    let names: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("consign-evidence"))
        .collect();
    assert_eq!(names, Vec::<String>::new(), "a temporary file was left");
}

#[test]
fn full_disk_leaves_no_file() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 20);
    let delivery = first_delivery(&data);

    let disk = SmallDisk::mount("1m");
    let filler = disk.path.join("filler");
    let written = std::fs::write(&filler, vec![0u8; 2 << 20]);
    assert!(written.is_err(), "the filler fits on the small disk");

    let out = disk.path.join("evidence.json");
    let exported = export(&data, &delivery, &out);
    let stderr = text(&exported.stderr);
    assert_eq!(exported.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");

    let names: Vec<String> = std::fs::read_dir(&disk.path)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["filler".to_owned()]);
}
