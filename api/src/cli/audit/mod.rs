//! `consign audit replay`: a delivery's state as it stood at an earlier point, rebuilt
//! from the ledger while the server is stopped.
//!
//! The delivery's events come from the audit view, caught up first, or with `--scan`
//! from a read of the delivery's chain. The events up to the cut-off go through the
//! tracking view's own apply code in memory, so the replayed state is what the tracking
//! view showed once it had applied exactly those events.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use consign_ledger::workload::chain_for_delivery;
use consign_ledger::{EmbeddedLedger, StoredEvent};
use consign_projections::audit::{self, Audit};
use consign_projections::tracking;
use consign_schemas::{ChainId, DeliveryId, DocumentId, Event, Position, Timestamp};
use serde_json::{Value, json};

use super::{DataDirArgs, Outcome};
use crate::progress;

mod replayed;

use replayed::{Replayed, rfc3339};

/// Events read per ledger call when scanning a chain.
const SCAN_BATCH: usize = 4096;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print a delivery's state as of a position in its chain or a time, rebuilt from
    /// the ledger.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// The delivery's id.
    #[arg(long, value_name = "ID")]
    pub delivery: String,

    /// Cut-off: a position in the delivery's chain (the events at or before it count),
    /// an RFC 3339 time such as 2026-12-04T10:00:00Z (the events whose sequencer time
    /// is at or before it count), or `now`.
    #[arg(long, value_name = "POSITION|TIME")]
    pub as_of: String,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Find the delivery's events by reading its chain from position zero, without the
    /// audit view.
    #[arg(long)]
    pub scan: bool,
}

/// Runs one `consign audit` command.
///
/// # Errors
///
/// An invalid delivery id or cut-off, a data directory in use by the server, an
/// unknown delivery, a cut-off before the submission, and failures to read the ledger
/// or the view store.
pub fn run(command: AuditCommand) -> anyhow::Result<Outcome> {
    match command {
        AuditCommand::Replay(args) => replay(&args),
    }
}

/// The point in the delivery's chain up to which events count.
#[derive(Clone, Copy, Debug)]
enum Cutoff {
    Position(Position),
    Time(Timestamp),
}

impl Cutoff {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text == "now" {
            return Ok(Cutoff::Time(Timestamp::now()));
        }
        if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
            let position = text.parse::<u64>().with_context(|| {
                format!("--as-of {text:?} is too large for a position; give a smaller number")
            })?;
            return Ok(Cutoff::Position(Position::new(position)));
        }
        match text.parse::<jiff::Timestamp>() {
            Ok(time) => Ok(Cutoff::Time(Timestamp::from_micros(time.as_microsecond()))),
            Err(error) => bail!(
                "--as-of {text:?} is neither a position (a whole number such as 42), an RFC \
                 3339 time (such as 2026-12-04T10:00:00Z) nor now: {error}"
            ),
        }
    }

    /// Returns whether `event` is at or before the cut-off.
    fn counts(self, event: &StoredEvent) -> bool {
        match self {
            Cutoff::Position(position) => event.position() <= position,
            Cutoff::Time(time) => event.envelope.time <= time,
        }
    }

    fn describe(self) -> String {
        match self {
            Cutoff::Position(position) => format!("position {position}"),
            Cutoff::Time(time) => rfc3339(time),
        }
    }

    fn to_json(self) -> Value {
        match self {
            Cutoff::Position(position) => json!({ "position": position.get() }),
            Cutoff::Time(time) => json!({ "time": rfc3339(time) }),
        }
    }
}

fn replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let delivery: DeliveryId = args.delivery.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "--delivery {:?} is not a delivery id; give the UUID that the submission \
             returned, such as 0192e0a4-7b1c-7000-8000-000000000001",
            args.delivery
        )
    })?;
    let cutoff = Cutoff::parse(&args.as_of)?;
    let data_dir = &args.data.data_dir;
    let ledger = super::projections::open_ledger_read_only(&args.data, "audit replay")?;
    let chain = chain_for_delivery(delivery, ledger.chain_count());
    let head = ledger
        .next_position(chain)
        .with_context(|| format!("cannot read the head of chain {chain}"))?;
    let events = if args.scan {
        events_from_scan(&ledger, delivery, chain, head, cutoff)?
    } else {
        events_from_audit_view(&ledger, data_dir, delivery)?
    };
    let Some(submitted) = events
        .iter()
        .find(|event| matches!(event.envelope.event, Event::DeliverySubmitted(_)))
    else {
        bail!(
            "delivery {delivery} is not in the ledger in {}: chain {chain} has no submission \
             of it; check the id, for example with `consign ledger dump --chain {chain}`",
            data_dir.display()
        );
    };
    if let Cutoff::Position(position) = cutoff
        && position >= head
    {
        bail!(
            "--as-of position {position} is past the end of chain {chain}, which holds \
             delivery {delivery} and ends at position {}; give a smaller position",
            head.get().saturating_sub(1)
        );
    }
    if !cutoff.counts(submitted) {
        bail!(
            "--as-of {} is before delivery {delivery} existed: it was submitted at position \
             {} of chain {chain}, at {}; give that position or time, or a later one",
            cutoff.describe(),
            submitted.position(),
            rfc3339(submitted.envelope.time)
        );
    }

    let counted: Vec<&StoredEvent> = events.iter().filter(|event| cutoff.counts(event)).collect();
    let tracking = tracking::delivery_as_of(counted.iter().copied(), delivery)?.context(
        "the counted events include the submission, but the tracking fold has no delivery",
    )?;
    let state = Replayed::new(delivery, chain, cutoff, &counted, tracking);

    let mut out = std::io::stdout().lock();
    super::printed(if args.json {
        writeln!(out, "{}", state.to_json())
    } else {
        state.print(&mut out)
    })
}

/// Reads the delivery's events at the positions the audit view lists, after catching
/// the audit view up to the ledger head.
fn events_from_audit_view(
    ledger: &EmbeddedLedger,
    data_dir: &Path,
    delivery: DeliveryId,
) -> anyhow::Result<Vec<StoredEvent>> {
    let store = super::projections::open_view_store(data_dir, ledger)?;
    super::projections::catch_up_with_bar(ledger, &store, &[&Audit])?;
    let entries = audit::history(&store, delivery).context("cannot read the audit view")?;

    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        let event = ledger
            .read(entry.chain, entry.position, 1)?
            .into_iter()
            .next()
            .filter(|event| event.position() == entry.position);
        match event {
            Some(event) if event.hash == entry.hash => events.push(event),
            _ => bail!(
                "the audit view lists an event of delivery {delivery} at position {} of \
                 chain {} that the ledger does not have with hash {}; rebuild the view \
                 with `consign projections rebuild --view audit`, or replay with --scan",
                entry.position,
                entry.chain,
                entry.hash
            ),
        }
    }
    Ok(events)
}

/// Reads the delivery's chain from position zero and returns the events that name the
/// delivery and the uploads of its documents, in chain order.
///
/// The read stops once it has found the submission and passed the cut-off, since later
/// events do not count.
fn events_from_scan(
    ledger: &EmbeddedLedger,
    delivery: DeliveryId,
    chain: ChainId,
    head: Position,
    cutoff: Cutoff,
) -> anyhow::Result<Vec<StoredEvent>> {
    let bar = progress::bar(head.get(), "events");
    bar.set_message(format!("reading chain {chain}"));
    // Uploads come before the submission that lists them, so their positions are kept
    // until the submission names its documents.
    let mut uploads: HashMap<DocumentId, Position> = HashMap::new();
    let mut documents: Option<Vec<DocumentId>> = None;
    let mut events = Vec::new();

    let mut next = Position::ZERO;
    while next < head {
        let batch = ledger.read(chain, next, SCAN_BATCH)?;
        let Some(last) = batch.last() else {
            break;
        };
        next = last.position().next();
        let passed_cutoff = !cutoff.counts(last);
        for event in batch {
            match &event.envelope.event {
                Event::DocumentUploaded(uploaded) if documents.is_none() => {
                    uploads.insert(uploaded.document, event.position());
                }
                Event::DeliverySubmitted(submitted)
                    if submitted.delivery == delivery && documents.is_none() =>
                {
                    documents = Some(submitted.documents.clone());
                    events.push(event);
                }
                other if other.delivery() == Some(delivery) => events.push(event),
                _ => {}
            }
        }
        bar.set_position(next.get());
        if documents.is_some() && passed_cutoff {
            break;
        }
    }
    bar.finish_and_clear();

    for document in documents.unwrap_or_default() {
        let Some(&position) = uploads.get(&document) else {
            continue;
        };
        events.extend(ledger.read(chain, position, 1)?);
    }
    events.sort_by_key(StoredEvent::position);
    Ok(events)
}
