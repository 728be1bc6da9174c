//! The plan of one delivery: every request from its submission to its expiry,
//! withdrawal or purge, each due at a simulated time.
//!
//! A plan is drawn in one go when the generator admits the delivery. Each recipient's
//! story (link e-mail attempts and outcomes, visits, downloads, receipt) is drawn on a
//! timeline of its own in which every step is later than the step it depends on. The
//! steps are then sorted by time and cut where the delivery ends, so the plan is in
//! causal order. An e-mail attempt and its outcome form a group that the cut keeps or
//! drops whole, because the notifier records the outcome of an attempt it started even
//! when the delivery ends meanwhile.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use consign_schemas::events::{
    AccessDenied, DeliveryExpired, DeliveryOpened, DeliveryOptions, DeliveryReleased,
    DeliverySubmitted, DeliveryWithdrawn, DenialReason, DocumentDownloaded, DocumentUploaded,
    DocumentsPurged, NotificationAttempted, NotificationDeferred, NotificationFailed,
    NotificationKind, NotificationSent, PostmarkIssued, ReceiptSent, RecipientEntry,
};
use consign_schemas::{
    AccountId, Actor, ChainId, CommandId, DeliveryId, DocumentId, Event, Hash32, IdempotencyKey,
    NotificationId, Position, RecipientId, SystemComponent, Timestamp,
};

use super::catalog::{self, DAY, HOUR, MINUTE, SECOND};
use super::chain_for_delivery;
use super::submission::{Ending, draw_ending, draw_options, draw_recipients, draw_uploads};
use super::world::World;
use crate::{AppendRequest, NewEvent};

// Rates in percent. They are estimates for a practice that sends contracts, HR letters
// and invoices, not measurements of a real service.

/// Of link e-mails: deferred (4xx) one to three times before the final outcome.
const DEFERRAL_PERCENT: u32 = 12;
/// Of link e-mails: rejected permanently (5xx), possibly after deferrals.
const PERMANENT_FAILURE_PERCENT: u32 = 5;
/// Of receipt e-mails: deferred once before they go out.
const RECEIPT_DEFERRAL_PERCENT: u32 = 5;

/// Of notified recipients: open the delivery at least once.
const OPEN_PERCENT: u32 = 82;
/// Of documents, per visit: downloaded.
const DOWNLOAD_PERCENT: u32 = 92;
/// Of recipients who opened: come back later and download again.
const SECOND_VISIT_PERCENT: u32 = 8;
/// Of notified recipients: try the link after the delivery ended, and are turned away.
const LATE_VISIT_PERCENT: u32 = 10;

/// Simulated download speed, in bytes per second.
const DOWNLOAD_BYTES_PER_SECOND: i64 = 4 << 20;

/// One request of a plan and the simulated time it is due.
#[derive(Debug)]
pub(super) struct Step {
    pub at: Timestamp,
    pub request: AppendRequest,
}

/// The generator's part of a new delivery.
#[derive(Debug)]
pub(super) struct Admission {
    pub submitted_at: Timestamp,
    pub chains: u32,
    pub idempotency_key: IdempotencyKey,
}

/// Draws the plan of one delivery, its steps in causal order and due times never
/// decreasing.
pub(super) fn plan_delivery(rng: &mut StdRng, world: &World, admission: Admission) -> Vec<Step> {
    let submitted_at = admission.submitted_at.as_micros();
    let delivery = DeliveryId::from_bytes(catalog::uuid_bytes(rng));
    let sender = world.pick_sender(rng);
    let options = draw_options(rng, world, sender, submitted_at);
    let uploads = draw_uploads(rng, sender.id, options.encrypt_at_rest);
    let recipients = draw_recipients(rng, world, sender.id);
    let ending = draw_ending(rng, submitted_at, &options);

    let release_at = options
        .deliver_at
        .as_ref()
        .map_or(submitted_at, |deliver_at| deliver_at.instant.as_micros());
    let mut planner = Planner {
        rng,
        delivery,
        chain: chain_for_delivery(delivery, admission.chains),
        sender: sender.id,
        documents: uploads.iter().map(|u| (u.document, u.size)).collect(),
        options,
        drafts: Vec::new(),
        group_count: 0,
    };
    planner.submit(
        submitted_at,
        admission.idempotency_key,
        uploads,
        &recipients,
    );
    if planner.options.deliver_at.is_some() {
        let released = Event::DeliveryReleased(DeliveryReleased { delivery });
        planner.push(release_at, scheduler(), released);
    }

    let mut sent_groups = Vec::with_capacity(recipients.len());
    for recipient in &recipients {
        let sent_group = planner.plan_recipient(recipient.recipient, release_at);
        sent_groups.push((recipient.recipient, sent_group));
    }

    planner.finish(ending, &sent_groups)
}

/// A request being planned, before command ids are drawn.
struct Draft {
    /// Simulated time in microseconds since the Unix epoch.
    at: i64,
    /// Drafts of one group are kept or dropped together when the delivery ends.
    group: u32,
    idempotency_key: Option<IdempotencyKey>,
    events: Vec<NewEvent>,
}

struct Planner<'r> {
    rng: &'r mut StdRng,
    delivery: DeliveryId,
    chain: ChainId,
    sender: AccountId,
    /// Each document with its size in bytes.
    documents: Vec<(DocumentId, u64)>,
    options: DeliveryOptions,
    drafts: Vec<Draft>,
    group_count: u32,
}

impl Planner<'_> {
    /// Drafts the submission command: the uploads, the submission, the postmark when
    /// requested, and the release when there is no delivery date.
    fn submit(
        &mut self,
        at: i64,
        idempotency_key: IdempotencyKey,
        uploads: Vec<DocumentUploaded>,
        recipients: &[RecipientEntry],
    ) {
        let sender = Actor::Account(self.sender);
        let document_hashes: Vec<Hash32> = uploads.iter().map(|u| u.content_hash).collect();
        let mut events: Vec<NewEvent> = uploads
            .into_iter()
            .map(|upload| NewEvent {
                actor: sender.clone(),
                event: Event::DocumentUploaded(upload),
            })
            .collect();

        let submitted = DeliverySubmitted {
            delivery: self.delivery,
            sender: self.sender,
            recipients: recipients.to_vec(),
            documents: self
                .documents
                .iter()
                .map(|(document, _)| *document)
                .collect(),
            subject: catalog::SUBJECTS
                .choose(self.rng)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            message: catalog::MESSAGES
                .choose(self.rng)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            options: self.options.clone(),
        };
        events.push(NewEvent {
            actor: sender.clone(),
            event: Event::DeliverySubmitted(submitted),
        });

        if self.options.postmark {
            // NOTE: the submission's position and hash exist only once the ledger has
            // appended it, so this postmark carries position 0 and a zero hash, and its
            // signature is random bytes of the right length.
            let postmark = PostmarkIssued {
                delivery: self.delivery,
                submission_chain: self.chain,
                submission_position: Position::ZERO,
                submission_hash: Hash32::from_bytes([0; 32]),
                time: Timestamp::from_micros(at),
                document_hashes,
                key_id: catalog::PLACEHOLDER_KEY_ID.to_owned(),
                signature: catalog::random_bytes(self.rng, catalog::SIGNATURE_LEN),
            };
            events.push(NewEvent {
                actor: Actor::System(SystemComponent::Sequencer),
                event: Event::PostmarkIssued(postmark),
            });
        }

        if self.options.deliver_at.is_none() {
            let released = DeliveryReleased {
                delivery: self.delivery,
            };
            events.push(NewEvent {
                actor: sender,
                event: Event::DeliveryReleased(released),
            });
        }

        let group = self.new_group();
        self.drafts.push(Draft {
            at,
            group,
            idempotency_key: Some(idempotency_key),
            events,
        });
    }

    /// Drafts one recipient's story after the release: the link e-mail and, when it
    /// went out, the visits. Returns the group of the `NotificationSent`, if any.
    fn plan_recipient(&mut self, recipient: RecipientId, release_at: i64) -> Option<u32> {
        let first_attempt = release_at + self.rng.random_range(2 * SECOND..30 * SECOND);
        let (sent_at, sent_group) =
            self.plan_notification(NotificationKind::Consignment, recipient, first_attempt)?;

        if self.rng.random_ratio(OPEN_PERCENT, 100) {
            self.plan_visits(recipient, sent_at);
        }
        Some(sent_group)
    }

    /// Drafts the attempts of one e-mail and their outcomes, each attempt in one group
    /// with its outcome. Returns when the e-mail went out and the group of that
    /// outcome, or `None` when it failed permanently.
    fn plan_notification(
        &mut self,
        kind: NotificationKind,
        recipient: RecipientId,
        first_attempt_at: i64,
    ) -> Option<(i64, u32)> {
        let notification = NotificationId::from_bytes(catalog::uuid_bytes(self.rng));
        let message_id = catalog::message_id(notification);
        let (deferral_percent, failure_percent) = match kind {
            NotificationKind::Consignment => (DEFERRAL_PERCENT, PERMANENT_FAILURE_PERCENT),
            NotificationKind::Receipt => (RECEIPT_DEFERRAL_PERCENT, 0),
        };
        let deferrals = match self.rng.random_ratio(deferral_percent, 100) {
            true if kind == NotificationKind::Consignment => self.rng.random_range(1..=3),
            true => 1,
            false => 0,
        };
        let fails = self.rng.random_ratio(failure_percent, 100);

        let mut at = first_attempt_at;
        for attempt in 1..=deferrals + 1 {
            let attempted = NotificationAttempted {
                notification,
                delivery: self.delivery,
                recipient,
                kind,
                message_id: message_id.clone(),
                attempt,
            };
            let group = self.push(at, notifier(), Event::NotificationAttempted(attempted));
            let outcome_at = at + self.rng.random_range(SECOND / 4..4 * SECOND);

            if attempt <= deferrals {
                // Backoff of 5, 15 and 45 minutes.
                let retry_at = outcome_at + 5 * MINUTE * 3_i64.pow(attempt - 1);
                let deferred = NotificationDeferred {
                    notification,
                    delivery: self.delivery,
                    recipient,
                    attempt,
                    reason: catalog::pick_text(self.rng, catalog::TEMPORARY_FAILURES),
                    retry_at: Timestamp::from_micros(retry_at),
                };
                self.push_to_group(group, outcome_at, Event::NotificationDeferred(deferred));
                at = retry_at;
                continue;
            }

            if fails {
                let reason = if self.options.require_tls && self.rng.random_bool(0.5) {
                    catalog::TLS_UNAVAILABLE.to_owned()
                } else {
                    catalog::pick_text(self.rng, catalog::PERMANENT_FAILURES)
                };
                let failed = NotificationFailed {
                    notification,
                    delivery: self.delivery,
                    recipient,
                    attempt,
                    reason,
                };
                self.push_to_group(group, outcome_at, Event::NotificationFailed(failed));
                return None;
            }

            let outcome = match kind {
                NotificationKind::Consignment => Event::NotificationSent(NotificationSent {
                    notification,
                    delivery: self.delivery,
                    recipient,
                    attempt,
                    server_reply: catalog::accepted_reply(self.rng),
                }),
                NotificationKind::Receipt => Event::ReceiptSent(ReceiptSent {
                    delivery: self.delivery,
                    recipient,
                    notification,
                    message_id: message_id.clone(),
                }),
            };
            self.push_to_group(group, outcome_at, outcome);
            return Some((outcome_at, group));
        }
        unreachable!("the last attempt always records a final outcome")
    }

    /// Drafts the visits of a recipient who got the link, and the receipt to the
    /// sender after the recipient's first download when the sender asked for one.
    fn plan_visits(&mut self, recipient: RecipientId, sent_at: i64) {
        let mut at = sent_at + self.open_delay();
        at = self.plan_password_entry(recipient, at);
        let first_download = self.plan_visit(recipient, &mut at);

        if self.rng.random_ratio(SECOND_VISIT_PERCENT, 100) {
            at += self.rng.random_range(HOUR..2 * DAY);
            self.plan_visit(recipient, &mut at);
        }

        if self.options.receipt_requested
            && let Some(first_download) = first_download
        {
            let attempt_at = first_download + self.rng.random_range(2 * SECOND..20 * SECOND);
            self.plan_notification(NotificationKind::Receipt, recipient, attempt_at);
        }
    }

    /// Draws how long a recipient takes to open the link after the e-mail went out.
    fn open_delay(&mut self) -> i64 {
        match self.rng.random_range(0..100) {
            0..40 => self.rng.random_range(MINUTE..30 * MINUTE),
            40..75 => self.rng.random_range(30 * MINUTE..8 * HOUR),
            _ => self.rng.random_range(8 * HOUR..5 * DAY),
        }
    }

    /// Drafts the wrong passwords typed before the right one, on deliveries with a
    /// password. Returns when the recipient gets in.
    fn plan_password_entry(&mut self, recipient: RecipientId, mut at: i64) -> i64 {
        if self.options.access_password_hash.is_none() {
            return at;
        }

        let (wrong_passwords, throttled) = match self.rng.random_range(0..100) {
            0..70 => (0, false),
            70..92 => (self.rng.random_range(1..=2), false),
            _ => (3, true),
        };
        for _ in 0..wrong_passwords {
            self.push_denial(at, recipient, DenialReason::WrongPassword);
            at += self.rng.random_range(20 * SECOND..90 * SECOND);
        }
        if throttled {
            self.push_denial(at, recipient, DenialReason::Throttled);
            at += self.rng.random_range(15 * MINUTE..30 * MINUTE);
        }
        at
    }

    /// Drafts one visit: the opening and a download of most documents. Moves `at` past
    /// the visit and returns when the first download finished, if any did.
    fn plan_visit(&mut self, recipient: RecipientId, at: &mut i64) -> Option<i64> {
        let opened = DeliveryOpened {
            delivery: self.delivery,
            recipient,
        };
        let actor = self.recipient_actor(recipient);
        self.push(*at, actor.clone(), Event::DeliveryOpened(opened));

        let mut first_download = None;
        for index in 0..self.documents.len() {
            if !self.rng.random_ratio(DOWNLOAD_PERCENT, 100) {
                continue;
            }
            let (document, size) = self.documents[index];
            // Sizes stay below 64 MiB, so the product fits in an i64.
            let transfer = size as i64 * SECOND / DOWNLOAD_BYTES_PER_SECOND;
            *at += self.rng.random_range(2 * SECOND..20 * SECOND) + transfer;

            let downloaded = DocumentDownloaded {
                delivery: self.delivery,
                recipient,
                document,
                bytes: size,
            };
            self.push(*at, actor.clone(), Event::DocumentDownloaded(downloaded));
            first_download.get_or_insert(*at);
        }
        first_download
    }

    /// Sorts the drafts, cuts them where the delivery ends, drafts the ending and the
    /// late visits, and draws the command ids.
    fn finish(
        mut self,
        ending: Option<Ending>,
        sent_groups: &[(RecipientId, Option<u32>)],
    ) -> Vec<Step> {
        self.drafts.sort_by_key(|draft| draft.at);
        if let Some(ending) = ending {
            self.end(ending, sent_groups);
        }

        let mut steps = Vec::with_capacity(self.drafts.len());
        for draft in self.drafts {
            let command = CommandId::from_bytes(catalog::uuid_bytes(self.rng));
            steps.push(Step {
                at: Timestamp::from_micros(draft.at),
                request: AppendRequest {
                    chain: self.chain,
                    command,
                    idempotency_key: draft.idempotency_key,
                    events: draft.events,
                },
            });
        }
        steps
    }

    /// Drops the groups that start at or after the end, then drafts the ending after
    /// the last kept step and the late visits of some notified recipients.
    fn end(&mut self, ending: Ending, sent_groups: &[(RecipientId, Option<u32>)]) {
        let cut = match ending {
            Ending::Withdrawn { at } | Ending::Expired { at } | Ending::RetentionPurge { at } => at,
        };
        // The drafts are sorted, so the first draft of a group decides for the group.
        let mut group_kept: Vec<Option<bool>> = vec![None; self.group_count as usize];
        self.drafts
            .retain(|draft| *group_kept[draft.group as usize].get_or_insert(draft.at < cut));
        let end_at = match self.drafts.last() {
            Some(last) => cut.max(last.at + SECOND),
            None => cut,
        };

        let purged = Event::DocumentsPurged(DocumentsPurged {
            delivery: self.delivery,
            documents: self
                .documents
                .iter()
                .map(|(document, _)| *document)
                .collect(),
        });
        let denial = match ending {
            Ending::Withdrawn { .. } => {
                let withdrawn = DeliveryWithdrawn {
                    delivery: self.delivery,
                    by: self.sender,
                    reason: catalog::pick_text(self.rng, catalog::WITHDRAWAL_REASONS),
                };
                let sender = Actor::Account(self.sender);
                self.push(end_at, sender, Event::DeliveryWithdrawn(withdrawn));
                self.push(end_at + HOUR, scheduler(), purged);
                DenialReason::Withdrawn
            }
            Ending::Expired { .. } => {
                let expired = DeliveryExpired {
                    delivery: self.delivery,
                };
                self.push(end_at, scheduler(), Event::DeliveryExpired(expired));
                self.push(end_at + HOUR, scheduler(), purged);
                DenialReason::Expired
            }
            Ending::RetentionPurge { .. } => {
                self.push(end_at, scheduler(), purged);
                DenialReason::Purged
            }
        };

        for &(recipient, sent_group) in sent_groups {
            let notified = sent_group.is_some_and(|group| group_kept[group as usize] == Some(true));
            if notified && self.rng.random_ratio(LATE_VISIT_PERCENT, 100) {
                let at = end_at + self.rng.random_range(2 * HOUR..3 * DAY);
                self.push_denial(at, recipient, denial);
            }
        }
        // Late visits were drawn in recipient order, not in time order.
        self.drafts.sort_by_key(|draft| draft.at);
    }

    fn new_group(&mut self) -> u32 {
        self.group_count += 1;
        self.group_count - 1
    }

    /// Drafts a request of one event in a new group and returns the group.
    fn push(&mut self, at: i64, actor: Actor, event: Event) -> u32 {
        let group = self.new_group();
        self.drafts.push(Draft {
            at,
            group,
            idempotency_key: None,
            events: vec![NewEvent { actor, event }],
        });
        group
    }

    /// Drafts a notifier request of one event in an existing group.
    fn push_to_group(&mut self, group: u32, at: i64, event: Event) {
        self.drafts.push(Draft {
            at,
            group,
            idempotency_key: None,
            events: vec![NewEvent {
                actor: notifier(),
                event,
            }],
        });
    }

    fn push_denial(&mut self, at: i64, recipient: RecipientId, reason: DenialReason) {
        let denied = AccessDenied {
            delivery: self.delivery,
            recipient,
            reason,
        };
        let actor = self.recipient_actor(recipient);
        self.push(at, actor, Event::AccessDenied(denied));
    }

    fn recipient_actor(&self, recipient: RecipientId) -> Actor {
        Actor::Recipient {
            delivery: self.delivery,
            recipient,
        }
    }
}

fn notifier() -> Actor {
    Actor::System(SystemComponent::Notifier)
}

fn scheduler() -> Actor {
    Actor::System(SystemComponent::Scheduler)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use consign_schemas::EventKind;
    use consign_schemas::events::Priority;

    use super::*;
    use crate::workload::WorkloadConfig;

    fn bare_options() -> DeliveryOptions {
        DeliveryOptions {
            priority: Priority::Normal,
            encrypt_at_rest: false,
            receipt_requested: false,
            expires_at: None,
            deliver_at: None,
            billing_code: None,
            access_password_hash: None,
            require_tls: false,
            postmark: false,
        }
    }

    fn planner(rng: &mut StdRng) -> Planner<'_> {
        Planner {
            rng,
            delivery: DeliveryId::from_bytes([1; 16]),
            chain: ChainId::new(0),
            sender: AccountId::from_bytes([2; 16]),
            documents: vec![(DocumentId::from_bytes([3; 16]), 1_000)],
            options: bare_options(),
            drafts: Vec::new(),
            group_count: 0,
        }
    }

    /// Any single event: the cut looks only at times and groups.
    fn marker() -> Event {
        Event::DeliveryReleased(DeliveryReleased {
            delivery: DeliveryId::from_bytes([1; 16]),
        })
    }

    fn seconds(steps: &[Step]) -> Vec<i64> {
        steps
            .iter()
            .map(|step| step.at.as_micros() / SECOND)
            .collect()
    }

    fn kinds(steps: &[Step]) -> Vec<EventKind> {
        steps
            .iter()
            .map(|step| step.request.events[0].event.kind())
            .collect()
    }

    #[test]
    fn cut_keeps_outcome_of_started_attempt() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut planner = planner(&mut rng);
        let attempt = planner.push(10 * SECOND, notifier(), marker());
        planner.push_to_group(attempt, 12 * SECOND, marker());
        planner.push(20 * SECOND, notifier(), marker());

        let steps = planner.finish(Some(Ending::Withdrawn { at: 11 * SECOND }), &[]);

        // The outcome at 12 s stays with its attempt, and the withdrawal follows it.
        assert_eq!(seconds(&steps), [10, 12, 13, 13 + 3_600]);
        assert_eq!(
            kinds(&steps)[2..],
            [EventKind::DeliveryWithdrawn, EventKind::DocumentsPurged]
        );
    }

    #[test]
    fn cut_drops_step_due_at_end() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut planner = planner(&mut rng);
        planner.push(5 * SECOND, scheduler(), marker());
        planner.push(30 * SECOND, scheduler(), marker());

        let steps = planner.finish(Some(Ending::Expired { at: 30 * SECOND }), &[]);

        assert_eq!(seconds(&steps), [5, 30, 30 + 3_600]);
        assert_eq!(
            kinds(&steps)[1..],
            [EventKind::DeliveryExpired, EventKind::DocumentsPurged]
        );
    }

    #[test]
    fn retention_purge_ends_without_expiry() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut planner = planner(&mut rng);
        planner.push(5 * SECOND, scheduler(), marker());

        let steps = planner.finish(Some(Ending::RetentionPurge { at: 60 * SECOND }), &[]);

        assert_eq!(seconds(&steps), [5, 60]);
        assert_eq!(kinds(&steps)[1], EventKind::DocumentsPurged);
    }

    #[test]
    fn plan_starts_with_keyed_submission_in_time_order() {
        let config = WorkloadConfig::default();
        let mut rng = StdRng::seed_from_u64(4);
        let (world, _) = World::build(&mut rng, &config);

        for index in 0..200 {
            let admission = Admission {
                submitted_at: config.start,
                chains: 3,
                idempotency_key: IdempotencyKey::new(format!("test-{index}")).unwrap(),
            };
            let steps = plan_delivery(&mut rng, &world, admission);
            let first = &steps[0].request;

            assert_eq!(steps[0].at, config.start);
            assert!(first.idempotency_key.is_some());
            assert!(
                first
                    .events
                    .iter()
                    .any(|e| e.event.kind() == EventKind::DeliverySubmitted)
            );
            assert!(
                steps[1..]
                    .iter()
                    .all(|step| step.request.idempotency_key.is_none())
            );
            assert!(steps.windows(2).all(|pair| pair[0].at <= pair[1].at));
            assert!(steps.iter().all(|step| step.request.chain == first.chain));
        }
    }
}
