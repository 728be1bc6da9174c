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
use consign_projections::tracking::{self, DeliveryTracking, RecipientTracking};
use consign_schemas::events::{DeliveryWithdrawn, DocumentUploaded, PostmarkIssued};
use consign_schemas::{ChainId, DeliveryId, DocumentId, Event, Position, Timestamp};
use serde_json::{Value, json};

use super::{DataDirArgs, Outcome};
use crate::progress;

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
    /// or an RFC 3339 time such as 2026-12-04T10:00:00Z (the events whose sequencer
    /// time is at or before it count).
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
        if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
            let position = text.parse::<u64>().with_context(|| {
                format!("--as-of {text:?} is too large for a position; give a smaller number")
            })?;
            return Ok(Cutoff::Position(Position::new(position)));
        }
        match text.parse::<jiff::Timestamp>() {
            Ok(time) => Ok(Cutoff::Time(Timestamp::from_micros(time.as_microsecond()))),
            Err(error) => bail!(
                "--as-of {text:?} is neither a position (a whole number such as 42) nor an \
                 RFC 3339 time (such as 2026-12-04T10:00:00Z): {error}"
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
    let ledger = super::projections::open_ledger_read_only(data_dir, "audit replay")?;
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
    if args.json {
        writeln!(out, "{}", state.to_json())?;
    } else {
        state.print(&mut out)?;
    }
    Ok(Outcome::Success)
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

/// A delivery's state rebuilt from the events up to the cut-off.
struct Replayed<'a> {
    delivery: DeliveryId,
    chain: ChainId,
    cutoff: Cutoff,
    counted: usize,
    last: &'a StoredEvent,
    tracking: DeliveryTracking,
    /// Uploads of the delivery's documents, in the delivery's order.
    documents: Vec<&'a DocumentUploaded>,
    postmark: Option<(&'a PostmarkIssued, &'a StoredEvent)>,
    withdrawal: Option<&'a DeliveryWithdrawn>,
}

impl<'a> Replayed<'a> {
    fn new(
        delivery: DeliveryId,
        chain: ChainId,
        cutoff: Cutoff,
        counted: &[&'a StoredEvent],
        tracking: DeliveryTracking,
    ) -> Self {
        let mut uploads = HashMap::new();
        let mut postmark = None;
        let mut withdrawal = None;
        for event in counted {
            match &event.envelope.event {
                Event::DocumentUploaded(uploaded) => {
                    uploads.insert(uploaded.document, uploaded);
                }
                Event::PostmarkIssued(issued) if postmark.is_none() => {
                    postmark = Some((issued, *event));
                }
                Event::DeliveryWithdrawn(withdrawn) if withdrawal.is_none() => {
                    withdrawal = Some(withdrawn);
                }
                _ => {}
            }
        }
        let documents = tracking
            .summary
            .documents
            .iter()
            .filter_map(|document| uploads.get(document).copied())
            .collect();
        Self {
            delivery,
            chain,
            cutoff,
            counted: counted.len(),
            last: counted.last().expect("the submission is counted"),
            tracking,
            documents,
            postmark,
            withdrawal,
        }
    }

    fn document_name(&self, document: DocumentId) -> String {
        self.documents
            .iter()
            .find(|uploaded| uploaded.document == document)
            .map_or_else(
                || document.to_string(),
                |uploaded| uploaded.file_name.clone(),
            )
    }

    fn to_json(&self) -> Value {
        let summary = &self.tracking.summary;
        let documents: Vec<Value> = self
            .documents
            .iter()
            .map(|uploaded| {
                json!({
                    "document": uploaded.document,
                    "file_name": uploaded.file_name,
                    "media_type": uploaded.media_type,
                    "size": uploaded.size,
                    "blake3": uploaded.content_hash,
                })
            })
            .collect();
        let recipients: Vec<Value> = self
            .tracking
            .recipients
            .iter()
            .zip(&summary.recipients)
            .map(|(record, listed)| recipient_json(record, &listed.status))
            .collect();
        let postmark = self.postmark.map(|(issued, event)| {
            json!({
                "position": event.position(),
                "time": rfc3339(event.envelope.time),
                "key_id": issued.key_id,
                "signature": hex::encode(&issued.signature),
                "submission_position": issued.submission_position,
                "submission_hash": issued.submission_hash,
                "submission_time": rfc3339(issued.time),
            })
        });
        let withdrawn = summary.withdrawn_at.map(|at| {
            json!({
                "at": rfc3339(at),
                "by": self.withdrawal.map(|withdrawn| withdrawn.by),
                "reason": self.withdrawal.map(|withdrawn| withdrawn.reason.as_str()),
            })
        });
        json!({
            "delivery": self.delivery,
            "chain": self.chain,
            "as_of": self.cutoff.to_json(),
            "events_counted": self.counted,
            "last_event": {
                "position": self.last.position(),
                "hash": self.last.hash,
                "time": rfc3339(self.last.envelope.time),
                "type": self.last.envelope.event.kind().name(),
            },
            "sender": summary.sender,
            "subject": summary.subject,
            "billing_code": summary.billing_code,
            "submitted_at": rfc3339(summary.submitted_at),
            "deliver_at": summary.deliver_at.map(rfc3339),
            "released_at": summary.released_at.map(rfc3339),
            "expires_at": summary.expires_at.map(rfc3339),
            "expired_at": summary.expired_at.map(rfc3339),
            "withdrawn": withdrawn,
            "purged_at": summary.purged_at.map(rfc3339),
            "postmark": postmark,
            "documents": documents,
            "recipients": recipients,
        })
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let summary = &self.tracking.summary;
        let last = self.last;
        writeln!(
            out,
            "delivery {} as of {} (chain {})",
            self.delivery,
            self.cutoff.describe(),
            self.chain
        )?;
        writeln!(
            out,
            "last event counted: position {}, {}, {}, hash {} ({} events counted)",
            last.position(),
            last.envelope.event.kind().name(),
            rfc3339(last.envelope.time),
            last.hash,
            self.counted
        )?;
        writeln!(out)?;
        writeln!(out, "subject:    {}", summary.subject)?;
        writeln!(out, "sender:     {}", summary.sender)?;
        if let Some(code) = &summary.billing_code {
            writeln!(out, "billing:    {code}")?;
        }
        writeln!(out, "submitted:  {}", rfc3339(summary.submitted_at))?;
        if let Some(deliver_at) = summary.deliver_at {
            writeln!(out, "deliver at: {}", rfc3339(deliver_at))?;
        }
        writeln!(out, "released:   {}", or_dash(summary.released_at))?;
        match summary.expires_at {
            Some(expires_at) => writeln!(
                out,
                "expires:    {} (expired: {})",
                rfc3339(expires_at),
                summary.expired_at.map_or_else(|| "no".to_owned(), rfc3339)
            )?,
            None => writeln!(out, "expires:    never")?,
        }
        match (summary.withdrawn_at, self.withdrawal) {
            (Some(at), Some(withdrawn)) => writeln!(
                out,
                "withdrawn:  {} by {}: {}",
                rfc3339(at),
                withdrawn.by,
                withdrawn.reason
            )?,
            (at, _) => writeln!(out, "withdrawn:  {}", or_dash(at))?,
        }
        writeln!(out, "purged:     {}", or_dash(summary.purged_at))?;
        match self.postmark {
            Some((issued, event)) => writeln!(
                out,
                "postmark:   issued at position {}, {}, key {}, signature {}",
                event.position(),
                rfc3339(event.envelope.time),
                issued.key_id,
                hex::encode(&issued.signature)
            )?,
            None => writeln!(out, "postmark:   -")?,
        }

        writeln!(out)?;
        writeln!(out, "documents:")?;
        for uploaded in &self.documents {
            writeln!(
                out,
                "  {}  {}  {} bytes  blake3 {}",
                uploaded.file_name, uploaded.media_type, uploaded.size, uploaded.content_hash
            )?;
        }

        writeln!(out)?;
        writeln!(out, "recipients:")?;
        for (record, listed) in self.tracking.recipients.iter().zip(&summary.recipients) {
            self.print_recipient(out, record, &listed.status)?;
        }
        Ok(())
    }

    fn print_recipient(
        &self,
        out: &mut impl Write,
        record: &RecipientTracking,
        status: &tracking::TrackingStatus,
    ) -> std::io::Result<()> {
        let via = record
            .via_list
            .as_ref()
            .map(|list| format!(" (list {list})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {}{via}: {}",
            record.mailbox.address,
            status_name(status)
        )?;
        writeln!(
            out,
            "    link e-mail:  first attempt {}, {} attempt(s), sent {}",
            or_dash(record.first_attempt_at),
            record.attempts,
            or_dash(record.notified_at)
        )?;
        if let Some(deferral) = &record.deferral {
            writeln!(
                out,
                "    deferred:     {} (attempt {}): {}; retry at {}",
                rfc3339(deferral.at),
                deferral.attempt,
                deferral.reason,
                rfc3339(deferral.retry_at)
            )?;
        }
        if let Some(failure) = &record.failure {
            writeln!(
                out,
                "    failed:       {} (attempt {}): {}",
                rfc3339(failure.at),
                failure.attempt,
                failure.reason
            )?;
        }
        writeln!(
            out,
            "    opened:       {} ({} time(s)); refused visits: {}",
            or_dash(record.opened_at),
            record.opens,
            record.denials
        )?;
        if record.downloads.is_empty() {
            writeln!(out, "    downloaded:   -")?;
        }
        for download in &record.downloads {
            writeln!(
                out,
                "    downloaded:   {} at {}",
                self.document_name(download.document),
                rfc3339(download.at)
            )?;
        }
        writeln!(out, "    receipt sent: {}", or_dash(record.receipt_sent_at))
    }
}

fn recipient_json(record: &RecipientTracking, status: &tracking::TrackingStatus) -> Value {
    json!({
        "recipient": record.recipient,
        "address": record.mailbox.address,
        "display_name": record.mailbox.display_name,
        "via_list": record.via_list,
        "status": status,
        "notification": record.notification,
        "attempts": record.attempts,
        "first_attempt_at": record.first_attempt_at.map(rfc3339),
        "notified_at": record.notified_at.map(rfc3339),
        "deferral": record.deferral.as_ref().map(|deferral| json!({
            "at": rfc3339(deferral.at),
            "attempt": deferral.attempt,
            "reason": deferral.reason,
            "retry_at": rfc3339(deferral.retry_at),
        })),
        "failure": record.failure.as_ref().map(|failure| json!({
            "at": rfc3339(failure.at),
            "attempt": failure.attempt,
            "reason": failure.reason,
        })),
        "opened_at": record.opened_at.map(rfc3339),
        "opens": record.opens,
        "denials": record.denials,
        "downloads": record.downloads.iter().map(|download| json!({
            "document": download.document,
            "at": rfc3339(download.at),
        })).collect::<Vec<_>>(),
        "receipt_sent_at": record.receipt_sent_at.map(rfc3339),
    })
}

/// Returns the status as the tracking API spells it, such as `downloaded`.
fn status_name(status: &tracking::TrackingStatus) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(name)) => name,
        _ => format!("{status:?}"),
    }
}

/// Formats a sequencer time as RFC 3339 in UTC with its exact microseconds.
fn rfc3339(time: Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(time.as_micros()) {
        Ok(instant) => instant.to_string(),
        Err(_) => format!("{} microseconds since 1970-01-01 UTC", time.as_micros()),
    }
}

fn or_dash(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "-".to_owned(), rfc3339)
}
