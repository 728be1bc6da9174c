//! Command-line interface: the subcommands of `consign` and their options.

pub mod account;
mod audit;
pub(crate) mod backend;
mod evidence;
mod kafka_verify;
mod keys;
mod ledger;
mod projections;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Result of a command that ran to completion, telling a failed check apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The check found a problem (exit status 1).
    CheckFailed,
}

/// Ends a command whose result is what it prints. A reader that closes the pipe early,
/// as `| head` does, has taken what it wanted, so a broken pipe is no error there.
/// Checks such as `ledger verify` write through [`CheckOutput`] instead, since their
/// exit status is their result.
fn printed(result: std::io::Result<()>) -> anyhow::Result<Outcome> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        other => other.map(|()| Outcome::Success).map_err(Into::into),
    }
}

/// Standard output of a check whose exit status is its result. Once the reader has
/// closed the pipe, as `| head` does, later output is dropped, so that the check still
/// runs to its end and exits with its outcome.
pub(crate) struct CheckOutput {
    out: std::io::StdoutLock<'static>,
    closed: bool,
}

impl CheckOutput {
    pub(crate) fn new() -> Self {
        Self {
            out: std::io::stdout().lock(),
            closed: false,
        }
    }
}

impl std::io::Write for CheckOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.out.flush() {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// consign: certified electronic delivery on a hash-chained event ledger.
///
/// Exit status: 0 on success, 1 when a check such as `ledger verify` finds a
/// problem, 2 when the command could not run.
#[derive(Debug, Parser)]
#[command(name = "consign", version)]
pub struct Cli {
    /// Log line format on standard error.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "CONSIGN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up, so the size of the serve options costs nothing"
)]
pub enum Command {
    /// Run the HTTP server, on the embedded ledger or, with --kafka, on Kafka.
    Serve(crate::serve::ServeArgs),
    /// Inspect, check and generate ledgers.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Manage accounts. On the embedded ledger, run it while the server is stopped.
    /// On Kafka, run it while a server runs, because that server records the account,
    /// and give it its own --data-dir.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage the postmark signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Rebuild, catch up and inspect the persisted views while the server is stopped.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Replay a delivery's state as of an earlier point, from the ledger, while the
    /// server is stopped.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Export a delivery's evidence bundle, or verify one offline.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key and make it current; earlier keys stay for verifying.
    Generate(keys::GenerateArgs),
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Open an account with a role.
    Create(account::CreateArgs),
    /// Set the password of an account, ending its sessions.
    Password(account::PasswordArgs),
}

/// Location of the embedded ledger.
#[derive(Debug, clap::Args)]
pub struct DataDirArgs {
    /// Data directory of the embedded store, or of this process's copy of the ledger
    /// with --kafka.
    #[arg(
        long,
        env = "CONSIGN_DATA_DIR",
        default_value = "./consign-data",
        value_parser = Utf8Path
    )]
    pub data_dir: PathBuf,

    /// Folder of the link, document and postmark keys, which must exist. Defaults to
    /// DATA_DIR/keys. Servers on one Kafka topic need the same keys: point them at one
    /// folder (or copies of it). The first server to start creates the keys under a
    /// lock on the folder, and the others load them.
    #[arg(long, env = "CONSIGN_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,

    /// Apache Kafka brokers, HOST:PORT[,HOST:PORT...]: the ledger lives in Kafka, one
    /// chain per partition of --kafka-topic. Without it, the ledger is the embedded
    /// store in the data directory.
    #[arg(long, env = "CONSIGN_KAFKA", value_parser = parse_brokers)]
    pub kafka: Option<String>,

    /// Kafka topic of the events, with --kafka.
    #[arg(long, env = "CONSIGN_KAFKA_TOPIC", default_value = consign_ledger::kafka::EVENTS_TOPIC)]
    pub kafka_topic: String,
}

/// Parses a data directory, whose path must be UTF-8: the RocksDB binding turns paths into
/// text, replacing bytes that are not UTF-8, so it would open another folder than the one
/// consign creates. Rejecting such a path here creates nothing.
#[derive(Clone)]
struct Utf8Path;

impl clap::builder::TypedValueParser for Utf8Path {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PathBuf, clap::Error> {
        if let Some(text) = value.to_str() {
            return Ok(PathBuf::from(text));
        }
        let option = argument.and_then(clap::Arg::get_long).unwrap_or("data-dir");
        let message = format!(
            "invalid value {:?} for '--{option}': the path is not valid UTF-8, which the ledger's \
             store needs; choose a folder whose path is UTF-8\n",
            value.to_string_lossy()
        );
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(command))
    }
}

/// Checks a broker list: `HOST:PORT` items separated by commas.
fn parse_brokers(text: &str) -> Result<String, String> {
    for broker in text.split(',') {
        let valid = broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.trim().is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if !valid {
            return Err(format!(
                "{broker:?} is not HOST:PORT; give the brokers as HOST:PORT[,HOST:PORT...], \
                 such as 127.0.0.1:9092"
            ));
        }
    }
    Ok(text.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every chain link, hash and position; exit 1 at the first break.
    Verify(ledger::VerifyArgs),
    /// Print events as JSON lines.
    Dump(ledger::DumpArgs),
    /// Write a realistic workload through the normal append path.
    Generate(ledger::GenerateArgs),
    /// Print and check the proof that an event is in the chain's Merkle tree.
    Proof(evidence::ProofArgs),
    /// Print and check the proof that a later tree of a chain extends an earlier one.
    Consistency(evidence::ConsistencyArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write a delivery's evidence bundle while the server is stopped.
    Export(evidence::ExportArgs),
    /// Check a bundle offline and print each check; exit 1 if any fails.
    Verify(evidence::VerifyArgs),
}

/// Runs the parsed command.
///
/// # Errors
///
/// Any failure that kept the command from completing, with its cause chain.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(crate::serve::serve(args))?;
            Ok(Outcome::Success)
        }
        Command::Ledger(LedgerCommand::Verify(args)) => ledger::verify(args),
        Command::Ledger(LedgerCommand::Dump(args)) => ledger::dump(args),
        Command::Ledger(LedgerCommand::Generate(args)) => ledger::generate(args),
        Command::Ledger(LedgerCommand::Proof(args)) => evidence::proof(args),
        Command::Ledger(LedgerCommand::Consistency(args)) => evidence::consistency(args),
        Command::Evidence(EvidenceCommand::Export(args)) => evidence::export(args),
        Command::Evidence(EvidenceCommand::Verify(args)) => evidence::verify(args),
        Command::Account(AccountCommand::Create(args)) => account::create(args),
        Command::Account(AccountCommand::Password(args)) => account::set_password(args),
        Command::Keys(KeysCommand::Generate(args)) => keys::generate(args),
        Command::Projections(command) => projections::run(command),
        Command::Audit(command) => audit::run(command),
    }
}
