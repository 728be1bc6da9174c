//! `consign evidence export | verify` and `consign ledger proof | consistency`: evidence
//! bundles and Merkle proofs from the command line.
//!
//! `evidence verify` needs nothing but the bundle file: no data directory and no
//! server. The other commands open the data directory, so the server must be stopped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::evidence::{export_bundle, verify_bundle};
use consign_ledger::merkle::{verify_consistency, verify_inclusion};
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_projections::{ALL_VIEWS, ViewStore, ViewStoreOptions, audit};
use consign_schemas::{ChainId, DeliveryId, Position, hash_stored_event};

use super::{DataDirArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// The delivery whose evidence to export: the UUID that the submission returned.
    #[arg(long, value_parser = parse_delivery_id)]
    pub delivery: DeliveryId,

    /// File to write; it must not exist yet. With `-`, the bundle goes to standard
    /// output and the summary to standard error.
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses `--delivery`, with an error message that shows the form of a delivery id.
fn parse_delivery_id(text: &str) -> Result<DeliveryId, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a delivery id; give the UUID that the submission returned, such \
             as 0192e0a4-7b1c-7000-8000-000000000001"
        )
    })
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle file written by `consign evidence export` or the evidence API, or `-`
    /// to read it from standard input.
    pub bundle: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// The chain of the event.
    #[arg(long)]
    pub chain: u32,

    /// Position of the event to prove.
    #[arg(long)]
    pub position: u64,

    /// Size of the tree to prove it in (default: every event of the chain).
    #[arg(long)]
    pub tree_size: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// The chain whose trees to compare.
    #[arg(long)]
    pub chain: u32,

    /// Size of the earlier tree.
    #[arg(long)]
    pub old_size: u64,

    /// Size of the later tree (default: every event of the chain).
    #[arg(long)]
    pub new_size: Option<u64>,
}

/// Opens the ledger of a stopped server, naming the usual cause of a held lock.
fn open_ledger(
    data: &DataDirArgs,
    options: EmbeddedOptions,
    command: &str,
) -> anyhow::Result<EmbeddedLedger> {
    let data_dir = &data.data_dir;
    if data.kafka.is_some() {
        return super::backend::open_ledger(data, options, super::backend::Role::Follow);
    }
    match EmbeddedLedger::open(data_dir, options) {
        Ok(ledger) => Ok(ledger),
        Err(LedgerError::Locked { dir, .. }) => bail!(
            "data directory {} is in use by another consign process, such as a running \
             server; stop it first, or use the server's API, then run `consign {command}` again",
            dir.display()
        ),
        Err(error) => {
            Err(error).with_context(|| format!("cannot open the ledger in {}", data_dir.display()))
        }
    }
}

/// Runs `consign evidence export`.
///
/// # Errors
///
/// The data directory cannot be opened, the delivery is unknown, or the file cannot
/// be written.
pub fn export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let to_stdout = args.out.as_os_str() == "-";
    if !to_stdout {
        check_out_file(&args.out)?;
    }
    EmbeddedLedger::check_files(&args.data.data_dir)
        .with_context(|| format!("cannot open the ledger in {}", args.data.data_dir.display()))?;
    if !args.data.data_dir.join("ledger").join("CURRENT").is_file() {
        bail!(
            "no ledger in {}; check --data-dir, which must name the data directory of a server",
            args.data.data_dir.display()
        );
    }
    let keys_dir = args.data.postmark_dir()?;
    let keys = PostmarkKeys::load(&keys_dir)
        .with_context(|| format!("cannot load the signing keys in {}", keys_dir.display()))?;
    let public_keys = keys.public_keys();
    let options = EmbeddedOptions {
        checkpoints: Some(CheckpointPolicy {
            every_events: u64::MAX,
            every: Duration::from_secs(u64::from(u32::MAX)),
            signer: Arc::new(keys),
        }),
        ..EmbeddedOptions::default()
    };
    let ledger = open_ledger(&args.data, options, "evidence export")?;

    let views_dir = args.data.data_dir.join("views");
    let store = ViewStore::open(
        &views_dir,
        &ViewStoreOptions::new(ledger.chain_count()),
        &ALL_VIEWS,
    )
    .with_context(|| format!("cannot open the view store in {}", views_dir.display()))?;
    super::projections::catch_up_with_bar(&ledger, &store, &[&audit::Audit])?;
    let entries = audit::history(&store, args.delivery)?;
    let Some(first) = entries.first() else {
        bail!(
            "delivery {} is not in the ledger in {}; check the id with `consign ledger dump`",
            args.delivery,
            args.data.data_dir.display()
        );
    };
    let chain = first.chain;
    let positions: Vec<Position> = entries.iter().map(|entry| entry.position).collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bundle = runtime.block_on(export_bundle(
        &ledger,
        args.delivery,
        chain,
        &positions,
        &public_keys,
    ))?;

    let summary = format!(
        "wrote the evidence of delivery {} to {}: {} events proved into the checkpoint at chain {chain} position {}",
        args.delivery,
        if to_stdout {
            "standard output".to_owned()
        } else {
            args.out.display().to_string()
        },
        bundle.events.len(),
        bundle.checkpoint.position
    );
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&bundle.to_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write the bundle to standard output")?;
        eprintln!("{summary}");
        return Ok(Outcome::Success);
    }

    write_new_file(&args.out, &bundle.to_bytes())?;
    println!("{summary}");
    Ok(Outcome::Success)
}

/// Writes `bytes` to the new file `out` through a uniquely named temporary file in the
/// same folder. A failed write removes that file, so nothing partial is left, and the
/// final step fails rather than replace a file created at `out` in the meantime.
fn write_new_file(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut staged = tempfile::Builder::new()
        .prefix(".consign-evidence-")
        .suffix(".partial")
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a file in {}", folder.display()))?;
    // The bundle is meant for third parties, so it is readable like any written file,
    // not private like the temporary file it starts as.
    staged
        .write_all(bytes)
        .and_then(|()| {
            staged
                .as_file()
                .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        })
        .and_then(|()| staged.as_file().sync_all())
        .with_context(|| format!("cannot write the bundle in {}", folder.display()))?;
    staged
        .persist_noclobber(out)
        .map_err(|error| error.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Checks that `--out` names a new file in an existing folder.
fn check_out_file(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} already exists; choose another --out file",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "the folder {} of --out does not exist; create it or choose another --out file",
            parent.display()
        );
    }
    Ok(())
}

/// Runs `consign evidence verify`: prints every check and fails on any failed one.
///
/// # Errors
///
/// The bundle file cannot be read.
pub fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let bytes = if args.bundle.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the bundle from standard input")?;
        bytes
    } else {
        std::fs::read(&args.bundle)
            .with_context(|| format!("cannot read {}", args.bundle.display()))?
    };
    let report = verify_bundle(&bytes);

    let mut stdout = super::CheckOutput::new();
    for check in &report.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        writeln!(
            stdout,
            "{mark} {:<20} {:<28} {}",
            check.name, check.subject, check.detail
        )?;
    }
    if let Ok(bundle) = consign_ledger::evidence::Bundle::from_bytes(&bytes) {
        for (id, key) in &bundle.public_keys {
            writeln!(stdout, "public key {id}: {}", hex::encode(key.0))?;
        }
    }
    if report.passed() {
        writeln!(
            stdout,
            "bundle {} passed all {} checks: every event it lists is in the tree of the signed \
             checkpoint, unchanged. A bundle can leave events out, which no check can detect.",
            args.bundle.display(),
            report.checks.len()
        )?;
        writeln!(
            stdout,
            "The signatures prove this only with keys you trust: compare the public keys above \
             with the operator's /.well-known/consign-postmark-keys.json or with keys it gave \
             you by another route."
        )?;
        Ok(Outcome::Success)
    } else {
        let failed = report.failures().count();
        writeln!(
            stdout,
            "bundle {} FAILED {failed} of {} checks",
            args.bundle.display(),
            report.checks.len()
        )?;
        Ok(Outcome::CheckFailed)
    }
}

fn checked_chain(ledger: &EmbeddedLedger, chain: u32) -> anyhow::Result<ChainId> {
    if chain >= ledger.chain_count() {
        bail!(
            "--chain {chain} does not exist; this ledger has chains 0 to {}",
            ledger.chain_count() - 1
        );
    }
    Ok(ChainId::new(chain))
}

/// Runs `consign ledger proof`: prints the inclusion proof as JSON and checks it.
///
/// # Errors
///
/// The ledger cannot be opened, or the position or tree size is out of range.
pub fn proof(args: ProofArgs) -> anyhow::Result<Outcome> {
    let ledger = open_ledger(&args.data, super::ledger::read_only(), "ledger proof")?;
    let chain = checked_chain(&ledger, args.chain)?;
    let tree_size = args.tree_size.unwrap_or(ledger.next_position(chain)?.get());
    if args.position >= tree_size {
        bail!(
            "--position {} is not below the tree size {tree_size}; give a smaller position or a larger --tree-size",
            args.position
        );
    }

    let position = Position::new(args.position);
    let proof = ledger.inclusion_proof(chain, position, tree_size)?;
    let root = ledger.tree_root(chain, tree_size)?;
    let raw = ledger.read_raw(chain, position, 1)?;
    let leaf = raw
        .first()
        .filter(|raw| raw.position == position)
        .map(|raw| hash_stored_event(&raw.bytes))
        .with_context(|| format!("chain {chain} has no event at position {position}"))?;

    let verified = verify_inclusion(&leaf, args.position, tree_size, &proof, &root);
    println!(
        "{}",
        serde_json::json!({
            "chain": chain, "position": position, "tree_size": tree_size,
            "leaf": leaf, "root": root, "proof": proof, "verified": verified,
        })
    );
    Ok(if verified {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// Runs `consign ledger consistency`: prints the consistency proof as JSON and checks it.
///
/// # Errors
///
/// The ledger cannot be opened, or a size is out of range.
pub fn consistency(args: ConsistencyArgs) -> anyhow::Result<Outcome> {
    let ledger = open_ledger(&args.data, super::ledger::read_only(), "ledger consistency")?;
    let chain = checked_chain(&ledger, args.chain)?;
    let new_size = args.new_size.unwrap_or(ledger.next_position(chain)?.get());
    if args.old_size > new_size {
        bail!(
            "--old-size {} is larger than the new size {new_size}; give a smaller --old-size",
            args.old_size
        );
    }
    let proof = ledger.consistency_proof(chain, args.old_size, new_size)?;
    let old_root = ledger.tree_root(chain, args.old_size)?;
    let new_root = ledger.tree_root(chain, new_size)?;
    let verified = verify_consistency(args.old_size, new_size, &old_root, &new_root, &proof);
    println!(
        "{}",
        serde_json::json!({
            "chain": chain, "old_size": args.old_size, "new_size": new_size,
            "old_root": old_root, "new_root": new_root, "proof": proof, "verified": verified,
        })
    );
    Ok(if verified {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}
