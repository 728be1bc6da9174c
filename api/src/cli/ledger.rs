//! `consign ledger`: verify, dump and generate, on the embedded store or, with
//! `--kafka`, on the Kafka ledger.

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::Context;
use consign_ledger::workload::{self, AtSimulatedTime, WorkloadConfig};
use consign_ledger::{
    BreakReason, ChainChecks, EmbeddedLedger, EmbeddedOptions, IndexComparison, LedgerError,
    ManualClock, RawEvent,
};
use consign_schemas::{ChainId, Envelope, Position, Timestamp, hash_stored_event};
use serde_json::json;

use super::backend::Role;
use super::{DataDirArgs, Outcome};
use crate::progress;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Verify only this chain.
    #[arg(long)]
    pub chain: Option<u32>,

    /// First position to verify; its link to the event before it is checked too.
    #[arg(long, default_value_t = 0)]
    pub from: u64,

    /// Stop before this position (default: the chain's head, and anything stored past it).
    #[arg(long)]
    pub to: Option<u64>,

    /// A checkpoint saved earlier from `GET /api/ledger/chains/{chain}/checkpoint`: its
    /// chain must still contain the events it covers, with the same Merkle root.
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,

    /// Verify although the public keys are missing, leaving the checkpoint signatures
    /// unchecked: a chain rewritten together with its checkpoints then passes.
    #[arg(long)]
    pub without_signatures: bool,
}

/// A checkpoint as the checkpoint API serves it.
#[derive(Debug, serde::Deserialize)]
struct SavedCheckpoint {
    chain: ChainId,
    checkpoint: consign_ledger::evidence::BundleCheckpoint,
}

fn read_saved_checkpoint(path: &std::path::Path) -> anyhow::Result<SavedCheckpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a saved checkpoint; save the response of GET /api/ledger/chains/CHAIN/checkpoint",
            path.display()
        )
    })
}

/// Loads the published keys of the key folder to check checkpoint signatures with.
/// Without them, verification stops with an error naming both fixes, unless
/// `without_signatures` is set or `has_checkpoints` is false.
pub(super) fn public_keys(
    keys_dir: &std::path::Path,
    without_signatures: bool,
    has_checkpoints: bool,
) -> anyhow::Result<Option<std::sync::Arc<consign_ledger::checkpoint::PublicKeys>>> {
    let dir = keys_dir.join(super::backend::POSTMARK_KEYS);
    let reason = match consign_ledger::postmark::PostmarkKeys::load_public(&dir) {
        Ok(keys) => {
            let _ = writeln!(
                super::CheckOutput::new(),
                "checkpoint signatures are checked with the public keys in {}",
                dir.display()
            );
            return Ok(Some(std::sync::Arc::new(keys)));
        }
        Err(consign_ledger::postmark::PostmarkError::NoKey { dir }) => {
            format!("no public key in {}", dir.display())
        }
        Err(error) => error.to_string(),
    };
    if without_signatures {
        let _ = writeln!(
            super::CheckOutput::new(),
            "checkpoint signatures are NOT checked (--without-signatures): {reason}"
        );
        return Ok(None);
    }
    if !has_checkpoints {
        return Ok(None);
    }
    anyhow::bail!(
        "checkpoint signatures cannot be checked: {reason}; give --keys-dir (or --data-dir) \
         the key folder of the servers, or --without-signatures to verify the chains without \
         them"
    )
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Chain to print.
    #[arg(long, default_value_t = 0)]
    pub chain: u32,

    /// First position to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,

    /// Maximum number of events to print, at least 1 (default: all).
    #[arg(long, value_parser = crate::serve::positive::<u64>)]
    pub limit: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Number of deliveries to generate. With 0, only the accounts, their credentials
    /// and mailing lists are written.
    #[arg(long)]
    pub deliveries: u64,

    /// Seed of the random choices. The same seed gives the same requests; with
    /// --concurrency above 1 their order and times vary within a minute of simulated time.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Number of chains when the ledger is created, 1 to 65536.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub chains: Option<u32>,

    /// Append requests in flight at once, at least 1.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,

    /// Skip the fsync of each group commit: faster, for fixtures only, not durable.
    #[arg(long)]
    pub no_sync: bool,
}

fn open(
    data: &DataDirArgs,
    options: EmbeddedOptions,
    role: Role,
) -> anyhow::Result<EmbeddedLedger> {
    super::backend::open_ledger(data, options, role)
}

/// Options for commands that only read: nothing is created or written.
pub(super) fn read_only() -> EmbeddedOptions {
    EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    }
}

pub(super) fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    if args.data.kafka.is_some() {
        return super::kafka_verify::verify(&args);
    }
    let ledger = match EmbeddedLedger::open(&args.data.data_dir, read_only()) {
        Ok(ledger) => ledger,
        Err(error) if error.is_corruption() => {
            let _ = writeln!(
                super::CheckOutput::new(),
                "ledger in {} is BROKEN: {}",
                args.data.data_dir.display(),
                damage(None, &error)
            );
            return Ok(Outcome::CheckFailed);
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot open the ledger in {}", args.data.data_dir.display())
            });
        }
    };
    let chains: Vec<ChainId> = match args.chain {
        Some(chain) => vec![ChainId::new(chain)],
        None => ledger.chains().collect(),
    };

    if let Some(to) = args.to
        && to < args.from
    {
        anyhow::bail!(
            "--to {to} is before --from {}; give a --to at or after --from",
            args.from
        );
    }

    let saved = args
        .checkpoint
        .as_deref()
        .map(read_saved_checkpoint)
        .transpose()?;
    if let Some(saved) = &saved {
        if saved.chain.get() >= ledger.chain_count() {
            anyhow::bail!(
                "the saved checkpoint is of chain {}, which this ledger does not have",
                saved.chain
            );
        }
        if args.from != 0 || args.to.is_some() {
            anyhow::bail!("--checkpoint checks a chain from its start; leave out --from and --to");
        }
        if let Some(chain) = args.chain
            && chain != saved.chain.get()
        {
            anyhow::bail!(
                "the saved checkpoint is of chain {}, but --chain {chain} was given; leave out \
                 --chain or give --chain {}",
                saved.chain,
                saved.chain
            );
        }
    }
    if let Some(chain) = args.chain
        && chain >= ledger.chain_count()
    {
        anyhow::bail!(
            "--chain {chain} does not exist: the ledger in {} has chains 0 to {}; give \
             --chain of at most {} or leave it out to verify every chain",
            args.data.data_dir.display(),
            ledger.chain_count() - 1,
            ledger.chain_count() - 1
        );
    }
    let mut has_checkpoints = false;
    for number in 0..ledger.chain_count() {
        has_checkpoints |= ledger.last_checkpoint(ChainId::new(number))?.is_some();
    }
    let keys = public_keys(
        &args.data.keys_dir()?,
        args.without_signatures,
        has_checkpoints,
    )?;
    if let Some(saved) = &saved {
        let path = args
            .checkpoint
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        if let Err(problems) = consign_ledger::evidence::check_saved_checkpoint(
            saved.chain,
            &saved.checkpoint,
            keys.as_deref(),
        ) {
            anyhow::bail!(
                "the saved checkpoint {} is damaged, not genuine, or signed with a key that is \
                 not in {} ({}); the ledger was not compared with it, so give --keys-dir the \
                 key folder it was signed with, or fetch the checkpoint again from a copy you \
                 trust",
                path.display(),
                args.data
                    .keys_dir()?
                    .join(super::backend::POSTMARK_KEYS)
                    .display(),
                problems.join("; ")
            );
        }
    }

    // With several chains, --from must be within at least one of them; a chain that
    // ends before it is skipped.
    let mut longest = (chains[0], Position::ZERO);
    for &chain in &chains {
        let head = ledger.next_position(chain)?;
        if head > longest.1 {
            longest = (chain, head);
        }
    }
    if args.from > longest.1.get() {
        let (chain, head) = longest;
        let extent = if chains.len() == 1 {
            "the head of"
        } else {
            "every chain; the longest is"
        };
        anyhow::bail!(
            "--from {} is past {extent} chain {chain}, which has {head} events; give a \
             --from of at most {head}",
            args.from
        );
    }

    // The indexes beside the chains are compared with the events only when the whole
    // ledger is checked, in the same pass as the chains.
    let whole = args.chain.is_none() && args.from == 0 && args.to.is_none();
    let mut comparison = whole.then(|| ledger.compare_indexes()).transpose()?;
    let started = Instant::now();
    let mut total = 0u64;
    let mut stdout = super::CheckOutput::new();
    for chain in chains {
        let head = ledger.next_position(chain)?;
        if args.from > head.get() {
            writeln!(
                stdout,
                "chain {chain}: skipped, since its {head} events all come before --from {}",
                args.from
            )?;
            continue;
        }
        let to = args.to.map(Position::new);
        let expected = to.unwrap_or(head).min(head).get().saturating_sub(args.from);

        let bar = progress::bar(expected, "events");
        bar.set_message(format!("chain {chain}"));
        let checks = ChainChecks {
            keys: keys.clone(),
            saved_checkpoint: saved
                .as_ref()
                .filter(|saved| saved.chain == chain)
                .map(|saved| (saved.checkpoint.tree_size, saved.checkpoint.root)),
        };
        let progress = |checked| bar.set_position(checked);
        let verified = match &mut comparison {
            Some(comparison) => comparison.verify_chain(chain, checks, &progress),
            None => {
                ledger.verify_chain_with(chain, Position::new(args.from), to, checks, &progress)
            }
        };
        let report = match verified {
            Ok(report) => report,
            Err(error) if error.is_corruption() => {
                bar.finish_and_clear();
                writeln!(
                    stdout,
                    "ledger in {} is BROKEN in chain {chain}: {}",
                    ledger.dir().display(),
                    damage(Some(&ledger), &error)
                )?;
                return Ok(Outcome::CheckFailed);
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("verification of chain {chain} could not run"));
            }
        };
        bar.finish_and_clear();
        total += report.verified;

        if let Some(found) = report.first_break {
            writeln!(
                stdout,
                "ledger in {} is BROKEN at {found}",
                ledger.dir().display()
            )?;
            if matches!(found.reason, BreakReason::SavedCheckpointMismatch { .. }) {
                writeln!(
                    stdout,
                    "the links of those {} events verify, so the chain was rewritten consistently \
                     after the change; only the saved checkpoint shows it",
                    report.verified + 1
                )?;
            } else {
                writeln!(stdout, "{} events before it verified", report.verified)?;
            }
            return Ok(Outcome::CheckFailed);
        }
        if let Some(saved) = saved.as_ref().filter(|saved| saved.chain == chain) {
            writeln!(
                stdout,
                "chain {chain}: the saved checkpoint at tree size {} matches (root {})",
                saved.checkpoint.tree_size, saved.checkpoint.root
            )?;
        }
        writeln!(
            stdout,
            "chain {chain}: {} events verified from position {}, head at {head}, last hash {}",
            report.verified, args.from, report.last_hash
        )?;
    }

    match comparison {
        None => writeln!(
            stdout,
            "indexes: not checked; only a verify without --chain, --from and --to checks \
             them against the events"
        )?,
        Some(comparison) => {
            if !check_indexes(&ledger, comparison, &mut stdout)? {
                return Ok(Outcome::CheckFailed);
            }
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    let unsigned = if keys.is_none() && has_checkpoints {
        " (checkpoint signatures not checked)"
    } else {
        ""
    };
    writeln!(
        stdout,
        "ledger in {} is intact{unsigned}: {total} events verified in {seconds:.2} s ({:.0} \
         events/s)",
        ledger.dir().display(),
        total as f64 / seconds.max(1e-9)
    )?;
    Ok(Outcome::Success)
}

/// Reads the indexes with their checksums, then ends the `comparison` of the indexes
/// with the events, and prints the outcome. Returns false when either step found
/// damage.
fn check_indexes(
    ledger: &EmbeddedLedger,
    comparison: IndexComparison<'_>,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let bar = progress::counter("index entries read");
    let read = ledger.check_indexes(&|entries| bar.set_position(entries));
    bar.finish_and_clear();
    let entries = match read {
        Ok(entries) => entries,
        Err(error) => return report_damage(ledger, error, "the index check failed", stdout),
    };

    if let Err(error) = comparison.finish() {
        return report_damage(ledger, error, "the index comparison failed", stdout);
    }
    writeln!(
        stdout,
        "indexes: {entries} entries read, checksums match, and the heads, Merkle nodes, \
         idempotency and checkpoint entries agree with the events"
    )?;
    Ok(true)
}

/// Prints a corruption `error` as damage and returns false, or returns any other
/// error with `context`.
fn report_damage(
    ledger: &EmbeddedLedger,
    error: LedgerError,
    context: &'static str,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    if !error.is_corruption() {
        return Err(error).context(context);
    }
    let dir = ledger.dir().display();
    writeln!(
        stdout,
        "ledger in {dir} is BROKEN: {}",
        damage(Some(ledger), &error)
    )?;
    Ok(false)
}

/// Describes damage found by verify, with the events of a damaged table file and the
/// advice to restore that RocksDB's own corruption messages lack.
fn damage(ledger: Option<&EmbeddedLedger>, error: &LedgerError) -> String {
    let message = error.to_string();
    let within = ledger
        .and_then(|ledger| ledger.damaged_table_events(&message))
        .map(|events| format!(" ({events})"))
        .unwrap_or_default();
    match error {
        LedgerError::Corrupt { .. } => format!("{message}{within}"),
        _ => format!(
            "{message}{within}; restore the directory from a backup, and run `consign ledger \
             verify` on the copy"
        ),
    }
}

pub(super) fn dump(args: DumpArgs) -> anyhow::Result<Outcome> {
    let ledger = open(&args.data, read_only(), Role::Follow)?;
    let chain = ChainId::new(args.chain);
    let limit = args.limit.unwrap_or(u64::MAX);

    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut position = Position::new(args.from);
    let mut printed = 0u64;
    let head = ledger.next_position(chain)?.get();
    let bar = progress::bar(head.saturating_sub(args.from).min(limit), "events");
    bar.set_message(format!("chain {chain}"));
    while printed < limit {
        let batch = (limit - printed).min(4096) as usize;
        let raws = ledger.read_raw(chain, position, batch)?;
        let Some(last) = raws.last() else { break };
        position = last.position.next();

        for raw in &raws {
            let line = dump_line(chain, raw);
            if let Err(error) = writeln!(out, "{line}") {
                // A closed pipe (`consign ledger dump | head`) is a normal end.
                bar.finish_and_clear();
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(Outcome::Success);
                }
                return Err(error.into());
            }
        }
        printed += raws.len() as u64;
        bar.set_position(printed);
    }
    bar.finish_and_clear();
    if printed == 0 && limit > 0 {
        // An empty dump is valid output for a script paging through the chain, so the
        // exit code stays 0, and the reason goes to standard error.
        match ledger.next_position(chain)?.get() {
            0 => eprintln!("chain {chain} has no events yet, so nothing was printed"),
            next => eprintln!(
                "chain {chain} has {next} events (positions 0 to {}); --from {} is past its \
                 end, so nothing was printed",
                next - 1,
                args.from
            ),
        }
    }
    match out.flush() {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(Outcome::Success),
    }
}

/// Renders one JSON line for a stored event. An event that fails its hash check or does not
/// decode is printed with an `error` field instead of its contents.
fn dump_line(chain: ChainId, raw: &RawEvent) -> serde_json::Value {
    let hash = hash_stored_event(&raw.bytes);
    if raw.recorded_hash != Some(hash) {
        return json!({
            "chain": chain,
            "position": raw.position,
            "error": "stored bytes do not match the recorded hash",
            "bytes_hex": hex_string(&raw.bytes),
        });
    }
    match Envelope::decode(&raw.bytes) {
        Ok(envelope) => {
            let kind = envelope.event.kind().name();
            let payload = serde_json::to_value(&envelope.event)
                .ok()
                .and_then(|value| value.get(kind).cloned())
                .unwrap_or(serde_json::Value::Null);
            json!({
                "chain": chain,
                "position": raw.position,
                "hash": hash,
                "previous": envelope.previous,
                "time": format_time(envelope.time),
                "type": kind,
                "event_id": envelope.event_id,
                "command": envelope.command,
                "idempotency_key": envelope.idempotency_key,
                "actor": envelope.actor,
                "schema_version": envelope.schema_version,
                "payload": payload,
            })
        }
        Err(error) => json!({
            "chain": chain,
            "position": raw.position,
            "hash": hash,
            "error": error.to_string(),
            "bytes_hex": hex_string(&raw.bytes),
        }),
    }
}

/// Formats a sequencer time as RFC 3339 in UTC with microseconds.
pub(crate) fn format_time(time: Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(time.as_micros()) {
        Ok(timestamp) => format!("{timestamp:.6}"),
        Err(_) => format!("invalid time ({} µs)", time.as_micros()),
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(super) fn generate(args: GenerateArgs) -> anyhow::Result<Outcome> {
    // A ledger already in the data directory must open and be empty before any key is
    // added beside it.
    if args.data.kafka.is_none() && args.data.data_dir.join("ledger/CURRENT").exists() {
        let existing =
            EmbeddedLedger::open(&args.data.data_dir, read_only()).with_context(|| {
                format!("cannot open the ledger in {}", args.data.data_dir.display())
            })?;
        require_empty(&existing)?;
    }

    // The ledger signs real checkpoints with the data directory's keys, the ones a
    // server started on it later uses too.
    let keys_dir = args.data.postmark_dir()?;
    if !keys_dir.join("current").exists() {
        consign_ledger::postmark::PostmarkKeys::generate(&keys_dir).with_context(|| {
            format!(
                "cannot create the signing keys of {}; give a --data-dir that this user can \
                 create and write in",
                args.data.data_dir.display()
            )
        })?;
    }
    let keys = consign_ledger::postmark::PostmarkKeys::load(&keys_dir)?;
    let config = WorkloadConfig {
        deliveries: args.deliveries,
        seed: args.seed,
        ..WorkloadConfig::default()
    };
    // The sequencer reads the simulated time, so that event times agree with the dates
    // in the payloads, such as expiration dates.
    let clock = ManualClock::new(config.start);
    let options = EmbeddedOptions {
        chains: args.chains,
        sync: !args.no_sync,
        clock: clock.clock(),
        checkpoints: Some(consign_ledger::checkpoint::CheckpointPolicy {
            every_events: 1000,
            every: std::time::Duration::from_secs(1),
            signer: std::sync::Arc::new(keys),
        }),
        ..EmbeddedOptions::default()
    };
    let ledger = open(&args.data, options, Role::Sequence(None))?;
    require_empty(&ledger)?;

    let config = WorkloadConfig {
        chains: ledger.chain_count(),
        ..config
    };
    let start = config.start;

    let bar = progress::counter("events written");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = Instant::now();
    let summary = runtime.block_on(async {
        let appender = AtSimulatedTime {
            ledger: &ledger,
            clock: &clock,
        };
        let summary = workload::generate(&appender, config, args.concurrency as usize, |events| {
            bar.set_position(events)
        })
        .await
        .with_context(|| {
            format!(
                "workload generation stopped, and the events written so far stay in {}; \
                 generate fills only an empty data directory, so run it again with a new \
                 --data-dir",
                ledger.dir().display()
            )
        })?;
        // A checkpoint that covers each whole chain now, rather than when the ledger
        // closes, so that the count below includes it.
        for chain in ledger.chains() {
            ledger
                .checkpoint(chain)
                .await
                .with_context(|| format!("cannot sign the last checkpoint of chain {chain}"))?;
        }
        anyhow::Ok(summary)
    })?;
    bar.finish_and_clear();

    let seconds = started.elapsed().as_secs_f64();
    // The ledger adds its checkpoints to what the workload's requests wrote.
    let total: u64 = ledger
        .chains()
        .map(|chain| ledger.next_position(chain).map(|next| next.get()))
        .sum::<Result<u64, _>>()?;
    println!(
        "generated {} in {}: {total} events ({} from {} requests, {} replayed; {}), dated {} \
         to {}, in {seconds:.2} s ({:.0} events/s)",
        counted(args.deliveries, "delivery", "deliveries"),
        ledger.dir().display(),
        summary.events,
        summary.requests,
        summary.replayed_requests,
        counted(
            total.saturating_sub(summary.events),
            "checkpoint",
            "checkpoints"
        ),
        format_time(start),
        format_time(clock.now()),
        total as f64 / seconds.max(1e-9)
    );
    Ok(Outcome::Success)
}

/// Refuses a ledger that has events. A workload is a history from the start: appended to
/// an existing ledger, its accounts would open twice and its deliveries expire twice.
fn require_empty(ledger: &EmbeddedLedger) -> anyhow::Result<()> {
    let existing: u64 = ledger
        .chains()
        .map(|chain| ledger.next_position(chain).map(|next| next.get()))
        .sum::<Result<u64, _>>()?;
    if existing > 0 {
        anyhow::bail!(
            "ledger in {} already has {existing} events; generate writes a whole history and \
             needs an empty ledger, so choose a new --data-dir",
            ledger.dir().display()
        );
    }
    Ok(())
}

/// Writes `count` with the noun in the singular or the plural.
fn counted(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("1 {singular}")
    } else {
        format!("{count} {plural}")
    }
}
