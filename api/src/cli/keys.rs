//! `consign keys generate`: makes a new postmark signing key current. Earlier keys stay,
//! so the postmarks they signed still verify, and the running server picks the new key
//! up at its next start.

use consign_ledger::postmark::PostmarkKeys;

use super::{DataDirArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// Runs `consign keys generate`.
///
/// # Errors
///
/// The key folder has no keys yet, or it cannot be written.
pub fn generate(args: GenerateArgs) -> anyhow::Result<Outcome> {
    // A mistyped --data-dir would otherwise get a key folder of its own, and the real
    // server would never see the new key. A server creates the first key itself.
    let dir = args.data.postmark_dir()?;
    if !dir.join("current").is_file() {
        anyhow::bail!(
            "no postmark keys in {}; give the data directory (--data-dir) of a server that \
             has started at least once, or its key folder with --keys-dir",
            dir.display()
        );
    }
    // The lock of the key folder, which a starting server also takes, makes runs at the
    // same moment take turns, so each one's new key is current when it reports it.
    let lock = super::backend::lock_key_folder(&args.data.keys_dir()?)?;
    let id = PostmarkKeys::generate(&dir)?;
    drop(lock);
    println!(
        "new postmark signing key {id} in {}; restart the server to sign with it",
        dir.display()
    );
    Ok(Outcome::Success)
}
