//! `consign projections`: rebuild, catch up and inspect the persisted views in
//! `DATA_DIR/views` while the server is stopped.
//!
//! Every command opens the ledger read-only, and the view store with every built-in
//! view, creating the store if it is missing. Each batch of events is written to the
//! view store in one atomic write, so a command that is killed leaves every view at the
//! end of some batch, and `catch-up` or another `rebuild` continues from there.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_projections::{
    ALL_VIEWS, Progress, Projection, ProjectionError, ViewStatus, ViewStore, ViewStoreOptions,
};
use serde_json::json;

use super::{DataDirArgs, Outcome};
use crate::progress;

/// Directory of the view store inside the data directory.
const VIEWS_DIR: &str = "views";

#[derive(Debug, clap::Subcommand)]
pub enum ProjectionsCommand {
    /// Delete a view's state and build it again from position zero of the ledger.
    Rebuild(RebuildArgs),
    /// Apply the events appended since each view's stored position, without a reset.
    CatchUp(CatchUpArgs),
    /// Print each view's positions, lag behind the ledger head and state digest.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Rebuild only this view: tracking, billing, audit or schedule (default: all).
    #[arg(long, value_name = "NAME")]
    pub view: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CatchUpArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Print one JSON object per view instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs one `consign projections` command.
///
/// # Errors
///
/// An unknown view name, a data directory in use by the server, and every failure to
/// open, read or write the ledger or the view store.
pub fn run(command: ProjectionsCommand) -> anyhow::Result<Outcome> {
    match command {
        ProjectionsCommand::Rebuild(args) => rebuild(args),
        ProjectionsCommand::CatchUp(args) => catch_up(args),
        ProjectionsCommand::Status(args) => status(args),
    }
}

fn rebuild(args: RebuildArgs) -> anyhow::Result<Outcome> {
    let views = select_views(args.view.as_deref())?;
    let (ledger, store) = open(&args.data, "rebuild")?;

    for view in &views {
        store
            .reset(*view)
            .with_context(|| format!("cannot reset view {}", view.name()))?;
    }
    let started = Instant::now();
    let done = catch_up_with_bar(&ledger, &store, &views)?;
    let summary = format!(
        "rebuilt {} from position zero: {}",
        join_names(&views, "and"),
        describe_run(done, started)
    );
    super::printed(print_summary(&summary, &report(&ledger, &store, &views)?))
}

fn catch_up(args: CatchUpArgs) -> anyhow::Result<Outcome> {
    let views: Vec<&dyn Projection> = ALL_VIEWS.to_vec();
    let (ledger, store) = open(&args.data, "catch-up")?;

    let started = Instant::now();
    let done = catch_up_with_bar(&ledger, &store, &views)?;
    let summary = format!(
        "caught up {}: {}",
        join_names(&views, "and"),
        describe_run(done, started)
    );
    super::printed(print_summary(&summary, &report(&ledger, &store, &views)?))
}

fn status(args: StatusArgs) -> anyhow::Result<Outcome> {
    let views: Vec<&dyn Projection> = ALL_VIEWS.to_vec();
    let ledger = open_ledger_read_only(&args.data, "projections status")?;
    // A status report reads only: it does not create the view store it reports on.
    let views_dir = args.data.data_dir.join(VIEWS_DIR);
    if !views_dir.exists() {
        bail!(
            "no view has been built in {}: {} does not exist; build the views with `consign \
             projections rebuild --data-dir {}` or by starting `consign serve` on it",
            args.data.data_dir.display(),
            views_dir.display(),
            args.data.data_dir.display()
        );
    }
    let store = open_view_store(&args.data.data_dir, &ledger)?;
    let report = report(&ledger, &store, &views)?;
    super::printed(if args.json {
        print_json(&report)
    } else {
        print_table(&report)
    })
}

/// Returns the view named `name`, or every view when no name is given.
fn select_views(name: Option<&str>) -> anyhow::Result<Vec<&'static dyn Projection>> {
    let Some(name) = name else {
        return Ok(ALL_VIEWS.to_vec());
    };
    match ALL_VIEWS.iter().find(|view| view.name() == name) {
        Some(view) => Ok(vec![*view]),
        None => bail!(
            "view {name:?} does not exist; choose {}",
            join_names(&ALL_VIEWS, "or")
        ),
    }
}

/// Opens the ledger read-only and the view store in its `views` directory.
fn open(data: &DataDirArgs, command: &str) -> anyhow::Result<(EmbeddedLedger, ViewStore)> {
    let ledger = open_ledger_read_only(data, &format!("projections {command}"))?;
    let store = open_view_store(&data.data_dir, &ledger)?;
    Ok((ledger, store))
}

/// Opens the ledger read-only for `consign COMMAND`, naming the process that has it
/// open when it is locked.
pub(super) fn open_ledger_read_only(
    data: &DataDirArgs,
    command: &str,
) -> anyhow::Result<EmbeddedLedger> {
    let data_dir = &data.data_dir;
    let options = EmbeddedOptions {
        read_only: true,
        ..EmbeddedOptions::default()
    };
    if data.kafka.is_some() {
        return super::backend::open_ledger(data, options, super::backend::Role::Follow);
    }
    match EmbeddedLedger::open(data_dir, options) {
        Ok(ledger) => Ok(ledger),
        Err(LedgerError::Locked { dir, holder }) => {
            let holder = holder
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            bail!(
                "data directory {} is in use by another consign process{holder}, such as a \
                 running server; stop it first, then run `consign {command}` again",
                dir.display()
            );
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot open the ledger in {}", data_dir.display()))
        }
    }
}

/// Opens the view store in the `views` directory of `data_dir` with every built-in view,
/// creating it if it is missing.
pub(super) fn open_view_store(
    data_dir: &Path,
    ledger: &EmbeddedLedger,
) -> anyhow::Result<ViewStore> {
    let views_dir = data_dir.join(VIEWS_DIR);
    let store_options = ViewStoreOptions::new(ledger.chain_count());
    ViewStore::open(&views_dir, &store_options, &ALL_VIEWS)
        .map_err(|error| view_store_error(&views_dir, error))
}

/// Explains a failure to open the view store, naming the usual cause of a held lock.
fn view_store_error(dir: &Path, error: ProjectionError) -> anyhow::Error {
    // NOTE: RocksDB 10.4 (rocksdb crate 0.24) reports a held LOCK file only in its
    // message text: "IO error: While lock file: DIR/LOCK: Resource temporarily unavailable".
    if let ProjectionError::Storage { reason, .. } = &error
        && reason.contains("lock file")
    {
        return anyhow::Error::new(error).context(format!(
            "view store in {} is open in another process, such as another `consign \
             projections` command; wait for it to finish, then retry",
            dir.display()
        ));
    }
    anyhow::Error::new(error).context(format!("cannot open the view store in {}", dir.display()))
}

/// Catches `views` up to the ledger head, with a progress bar on a terminal.
pub(super) fn catch_up_with_bar(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
) -> anyhow::Result<Progress> {
    let bar = progress::bar(0, "events");
    bar.set_message("applying");
    let result = consign_projections::catch_up(ledger, store, views, |done| {
        bar.set_length(done.total);
        bar.set_position(done.applied);
    });
    bar.finish_and_clear();
    result.with_context(|| format!("catch-up of {} stopped", join_names(views, "and")))
}

fn describe_run(done: Progress, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64();
    let noun = if done.applied == 1 { "event" } else { "events" };
    format!(
        "{} {noun} applied in {seconds:.2} s ({:.0} events/s)",
        done.applied,
        done.applied as f64 / seconds.max(1e-9)
    )
}

fn report(
    ledger: &EmbeddedLedger,
    store: &ViewStore,
    views: &[&dyn Projection],
) -> anyhow::Result<Vec<ViewStatus>> {
    consign_projections::status(ledger, store, views).context("cannot read the view status")
}

/// Prints the `summary` line of a run, then the status table.
fn print_summary(summary: &str, report: &[ViewStatus]) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{summary}")?;
    print_table(report)
}

/// Prints one row per view and chain, with columns aligned.
fn print_table(report: &[ViewStatus]) -> std::io::Result<()> {
    let mut rows = vec![
        [
            "VIEW", "CHAIN", "POSITION", "HEAD", "LAG", "ENTRIES", "STATE",
        ]
        .map(str::to_owned),
    ];
    for view in report {
        for chain in &view.chains {
            rows.push([
                view.view.clone(),
                chain.chain.get().to_string(),
                chain.position.get().to_string(),
                chain.head.get().to_string(),
                if chain.position > chain.head {
                    format!("AHEAD {}", chain.position.get() - chain.head.get())
                } else {
                    chain.lag.to_string()
                },
                view.entries.to_string(),
                view.state.to_hex(),
            ]);
        }
    }

    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }

    let mut out = std::io::stdout().lock();
    for row in &rows {
        let [view, chain, position, head, lag, entries, state] = row;
        let [w_view, w_chain, w_position, w_head, w_lag, w_entries, _] = widths;
        writeln!(
            out,
            "{view:<w_view$}  {chain:>w_chain$}  {position:>w_position$}  {head:>w_head$}  \
             {lag:>w_lag$}  {entries:>w_entries$}  {state}"
        )?;
    }
    Ok(())
}

/// Prints one JSON object per view: its digest, entry count, total lag and chains.
fn print_json(report: &[ViewStatus]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for view in report {
        let chains: Vec<_> = view
            .chains
            .iter()
            .map(|chain| {
                json!({
                    "chain": chain.chain.get(),
                    "position": chain.position.get(),
                    "head": chain.head.get(),
                    "lag": chain.lag,
                })
            })
            .collect();
        let line = json!({
            "view": view.view,
            "state": view.state.to_hex(),
            "entries": view.entries,
            "lag": view.chains.iter().map(|chain| chain.lag).sum::<u64>(),
            "chains": chains,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Joins view names as "a, b and c", with `conjunction` before the last.
fn join_names(views: &[&dyn Projection], conjunction: &str) -> String {
    let names: Vec<&str> = views.iter().map(|view| view.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}
