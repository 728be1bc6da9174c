//! `consign ledger verify` without the public keys of a ledger that has checkpoints.
//! It does not call the ledger intact unless `--without-signatures` is given, and
//! then its last line states that the signatures were not checked.

mod cli_support;

use cli_support::{generate, run, text};

#[test]
fn missing_keys_need_explicit_flag() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 200);
    let data_arg = data.to_str().unwrap();

    let with_keys = run(&["ledger", "verify", "--data-dir", data_arg]);
    assert_eq!(
        with_keys.status.code(),
        Some(0),
        "{}",
        text(&with_keys.stderr)
    );
    let stdout = text(&with_keys.stdout);
    assert!(
        stdout.contains("checkpoint signatures are checked with the keys in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("agree with the events"),
        "the index comparison ran: {stdout}"
    );

    std::fs::rename(data.join("keys"), work.path().join("keys-elsewhere")).unwrap();
    let refused = run(&["ledger", "verify", "--data-dir", data_arg]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stdout));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("checkpoint signatures cannot be checked: no signing key in"),
        "{stderr}"
    );
    assert!(stderr.contains("--without-signatures"), "{stderr}");
    assert!(!text(&refused.stdout).contains("intact"));

    let unsigned = run(&[
        "ledger",
        "verify",
        "--data-dir",
        data_arg,
        "--without-signatures",
    ]);
    assert_eq!(
        unsigned.status.code(),
        Some(0),
        "{}",
        text(&unsigned.stderr)
    );
    let stdout = text(&unsigned.stdout);
    assert!(stdout.contains("checkpoint signatures are NOT checked (--without-signatures)"));
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("is intact (checkpoint signatures not checked)"),
        "{last}"
    );

    let elsewhere = work.path().join("keys-elsewhere");
    let keys_dir = run(&[
        "ledger",
        "verify",
        "--data-dir",
        data_arg,
        "--keys-dir",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(
        keys_dir.status.code(),
        Some(0),
        "{}",
        text(&keys_dir.stderr)
    );
    let last = text(&keys_dir.stdout);
    assert!(!last.contains("not checked"), "{last}");
}
