//! What `consign ledger verify` states it did not check. Without the public keys of a
//! ledger that has checkpoints, it does not call the ledger intact unless
//! `--without-signatures` is given, and then its last line states it. The public keys
//! alone are enough. A verify of one chain or range reports that the indexes were not
//! compared with the events, and a chain that ends before `--from` is skipped with a
//! line that names it.

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
        stdout.contains("checkpoint signatures are checked with the public keys in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("agree with the events"),
        "the index comparison ran: {stdout}"
    );

    std::fs::rename(data.join("keys"), work.path().join("keys-elsewhere")).unwrap();
    let rejected = run(&["ledger", "verify", "--data-dir", data_arg]);
    assert_eq!(
        rejected.status.code(),
        Some(2),
        "{}",
        text(&rejected.stdout)
    );
    let stderr = text(&rejected.stderr);
    assert!(
        stderr.contains("checkpoint signatures cannot be checked: no public key in"),
        "{stderr}"
    );
    assert!(stderr.contains("--without-signatures"), "{stderr}");
    assert!(!text(&rejected.stdout).contains("intact"));

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

    // The public keys alone suffice: a verifier gets no secret key.
    let public_only = work.path().join("public-keys");
    std::fs::create_dir_all(public_only.join("postmark")).unwrap();
    let postmark = work.path().join("keys-elsewhere").join("postmark");
    for entry in std::fs::read_dir(&postmark).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "pub") {
            std::fs::copy(
                &path,
                public_only.join("postmark").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let public = run(&[
        "ledger",
        "verify",
        "--data-dir",
        data_arg,
        "--keys-dir",
        public_only.to_str().unwrap(),
    ]);
    assert_eq!(public.status.code(), Some(0), "{}", text(&public.stdout));
    assert!(!text(&public.stdout).contains("not checked"));

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

#[test]
fn partial_verify_says_indexes_unchecked() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    generate(&data, 20);
    let data_arg = data.to_str().unwrap();

    for partial in [
        &["--chain", "0"][..],
        &["--from", "5"][..],
        &["--to", "5"][..],
    ] {
        let mut args = vec!["ledger", "verify", "--data-dir", data_arg];
        args.extend_from_slice(partial);
        let verified = run(&args);
        let stdout = text(&verified.stdout);
        assert_eq!(verified.status.code(), Some(0), "{partial:?}: {stdout}");
        assert!(
            stdout.contains("indexes: not checked"),
            "{partial:?}: {stdout}"
        );
    }
}

#[test]
fn from_past_short_chain_skips_it() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let generated = run(&[
        "ledger",
        "generate",
        "--data-dir",
        data.to_str().unwrap(),
        "--deliveries",
        "60",
        "--chains",
        "3",
    ]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let data_arg = data.to_str().unwrap();

    let whole = text(&run(&["ledger", "verify", "--data-dir", data_arg]).stdout);
    let heads: Vec<u64> = whole
        .lines()
        .filter_map(|line| line.split("head at ").nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(heads.len(), 3, "{whole}");
    let shortest = *heads.iter().min().unwrap();
    let longest = *heads.iter().max().unwrap();
    assert!(
        shortest < longest,
        "the chains have different lengths: {heads:?}"
    );

    let from = (shortest + 1).to_string();
    let partial = run(&["ledger", "verify", "--data-dir", data_arg, "--from", &from]);
    let stdout = text(&partial.stdout);
    assert_eq!(
        partial.status.code(),
        Some(0),
        "{stdout}{}",
        text(&partial.stderr)
    );
    assert!(stdout.contains("skipped, since its"), "{stdout}");

    let past = (longest + 1).to_string();
    let rejected = run(&["ledger", "verify", "--data-dir", data_arg, "--from", &past]);
    assert_eq!(rejected.status.code(), Some(2));
    assert!(text(&rejected.stderr).contains("is past every chain"));
}
