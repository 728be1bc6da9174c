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
/// The data directory does not exist, or the key folder cannot be written.
pub fn generate(args: GenerateArgs) -> anyhow::Result<Outcome> {
    // A mistyped --data-dir would otherwise get a key folder of its own, and the real
    // server would never see the new key.
    if args.data.keys_dir.is_none() && !args.data.data_dir.is_dir() {
        anyhow::bail!(
            "no data directory at {} (--data-dir); give the data directory of the server \
             whose key to replace, or its key folder with --keys-dir",
            args.data.data_dir.display()
        );
    }
    let dir = args.data.keys_dir()?.join("postmark");
    let id = PostmarkKeys::generate(&dir)?;
    println!(
        "new postmark signing key {id} in {}; restart the server to sign with it",
        dir.display()
    );
    Ok(Outcome::Success)
}
