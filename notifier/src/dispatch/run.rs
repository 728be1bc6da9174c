//! The dispatcher's loop: fold the ledger, start the work that is due, and follow the
//! chains for more.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;

use consign_ledger::{Clock, EmbeddedLedger, StoredEvent};
use consign_schemas::events::NotificationAttempted;
use consign_schemas::{ChainId, Event, NotificationId, Position, Timestamp};

use super::DispatchError;
use super::due::DueWork;
use super::notice::Notice;
use super::state::{DispatchState, NotificationStatus};
use super::work::{
    self, Context, Finished, SendJob, Target, WorkKey, abandon_key, first_attempt_key, outcome_key,
    retry_key,
};
use crate::compose::Composer;
use crate::links::LinkKey;
use crate::mailer::Mailer;
use crate::message_id::{MessageIdDomain, new_message_id};

/// Default of [`DispatcherConfig::max_concurrent_sends`].
pub const DEFAULT_MAX_CONCURRENT_SENDS: usize = 4;

/// Default of [`DispatcherConfig::give_up_after`]: 7 days.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Events read per request while folding the ledger at start.
const CATCH_UP_BATCH: usize = 4096;

/// Events folded from the subscriptions before due work is looked at again, so that a
/// busy ledger cannot hold up the work.
const MAX_EVENTS_PER_TURN: usize = 4096;

/// Maximum sleep without an event, a finished task or a due time. It only bounds the
/// wait for an expiry time to pass, which brings no event.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Everything a [`Dispatcher`] works with.
#[derive(Debug)]
pub struct DispatcherConfig {
    pub ledger: Arc<EmbeddedLedger>,
    pub mailer: Mailer,
    pub composer: Composer,
    /// Derives each recipient's link token; the token itself is never logged.
    pub link_key: LinkKey,
    pub message_id_domain: MessageIdDomain,
    /// Source of `retry_at` times and of "now" when deciding what is due.
    pub clock: Clock,
    /// Maximum number of notifications worked on at once, each recording an attempt
    /// or sending and recording the outcome. 0 counts as 1.
    pub max_concurrent_sends: usize,
    /// How long after its first attempt a notification without a delivery expiry is
    /// retried. A link e-mail of a delivery with an expiry is retried until the expiry.
    pub give_up_after: Duration,
    /// How long an attempt without an outcome that another process recorded (or this
    /// one before a restart) is left to its sender before it is sent again. The
    /// default, zero, suits one process. Processes sharing a ledger need more than one
    /// send takes, so that a chain moving between them does not send an e-mail twice.
    pub foreign_attempt_grace: Duration,
}

impl DispatcherConfig {
    /// Builds a configuration with [`DEFAULT_MAX_CONCURRENT_SENDS`] and
    /// [`DEFAULT_GIVE_UP_AFTER`].
    pub fn new(
        ledger: Arc<EmbeddedLedger>,
        mailer: Mailer,
        composer: Composer,
        link_key: LinkKey,
        message_id_domain: MessageIdDomain,
        clock: Clock,
    ) -> Self {
        Self {
            ledger,
            mailer,
            composer,
            link_key,
            message_id_domain,
            clock,
            max_concurrent_sends: DEFAULT_MAX_CONCURRENT_SENDS,
            give_up_after: DEFAULT_GIVE_UP_AFTER,
            foreign_attempt_grace: Duration::ZERO,
        }
    }
}

/// Turns ledger events into e-mails, recording each attempt before it is sent and each
/// outcome after.
#[derive(Debug)]
pub struct Dispatcher {
    context: Arc<Context>,
    composer: Composer,
    link_key: LinkKey,
    message_id_domain: MessageIdDomain,
    max_concurrent_sends: usize,
    give_up_after: Duration,
    foreign_attempt_grace: Duration,
}

impl Dispatcher {
    /// Builds a dispatcher from `config`. Nothing is read or sent before [`Self::run`].
    pub fn new(config: DispatcherConfig) -> Self {
        Self {
            context: Arc::new(Context {
                ledger: config.ledger,
                mailer: config.mailer,
                clock: config.clock,
            }),
            composer: config.composer,
            link_key: config.link_key,
            message_id_domain: config.message_id_domain,
            max_concurrent_sends: config.max_concurrent_sends.max(1),
            give_up_after: config.give_up_after,
            foreign_attempt_grace: config.foreign_attempt_grace,
        }
    }

    /// Runs until `shutdown` completes or an append fails.
    ///
    /// Folds every chain from position 0, then follows all chains and performs the work
    /// that [`DispatchState::due`] lists. A new notification is first recorded as an
    /// attempt, and sent only once the fold has seen that attempt, so every send has a
    /// recorded attempt before it. At shutdown no new work starts, and the sends in
    /// progress finish and record their outcomes before this returns.
    ///
    /// # Errors
    ///
    /// [`DispatchError::Read`] or [`DispatchError::Follow`] when the ledger cannot be
    /// read, [`DispatchError::Append`] when it rejects an append (closed, or failed
    /// until reopened), and [`DispatchError::Task`] for a panic in a task. Work in
    /// progress then still finishes first. Notifications left without an outcome are
    /// resent by the next run under the same Message-ID.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DispatchError> {
        let ledger = Arc::clone(&self.context.ledger);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut state = DispatchState::with_foreign_attempt_grace(self.foreign_attempt_grace);
        let folded = tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("notification dispatcher stopped before it finished folding");
                return Ok(());
            }
            folded = catch_up_all(&ledger, &mut state) => folded?,
        };
        tracing::info!(
            chains = ledger.chain_count(),
            events = folded,
            "notification dispatcher started"
        );

        let mut subscriptions = Vec::new();
        for chain in ledger.chains() {
            let subscription = ledger
                .subscribe(chain, state.next_position(chain))
                .map_err(|source| DispatchError::Read { chain, source })?;
            subscriptions.push(subscription.into_stream().boxed());
        }
        let mut events = futures::stream::select_all(subscriptions);

        let mut tasks: JoinSet<Result<Finished, DispatchError>> = JoinSet::new();
        let mut in_progress = InProgress::default();
        let failure = loop {
            in_progress.release_folded(&state);
            let now = self.context.clock.now();
            let due = state.due(now);
            for work in due.work {
                if tasks.len() >= self.max_concurrent_sends {
                    break;
                }
                self.start(work, &state, &mut tasks, &mut in_progress);
            }
            let wake_at = due.next_due.unwrap_or(Timestamp::from_micros(i64::MAX));

            tokio::select! {
                biased;
                () = &mut shutdown => break None,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    match task_result(joined) {
                        Ok(finished) => {
                            if let Some((notification, attempt)) = finished.own_attempt {
                                state.note_own_attempt(notification, attempt);
                            }
                            in_progress.finish(finished);
                        }
                        Err(error) => break Some(error),
                    }
                }
                item = events.next() => {
                    if let Err(error) = fold_ready(item, &mut events, &mut state) {
                        break Some(error);
                    }
                }
                () = self.context.clock.sleep_until(wake_at, MAX_IDLE) => {}
            }
        };

        if let Some(error) = &failure {
            tracing::error!(
                error = %error,
                tasks = tasks.len(),
                "notification dispatcher failed; finishing the work in progress"
            );
        }
        let remaining = drain(&mut tasks).await;
        tracing::info!("notification dispatcher stopped");
        match failure.or(remaining) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Starts one piece of due work as a task, unless the same work is in progress.
    fn start(
        &self,
        work: DueWork,
        state: &DispatchState,
        tasks: &mut JoinSet<Result<Finished, DispatchError>>,
        in_progress: &mut InProgress,
    ) {
        let context = Arc::clone(&self.context);
        // On Kafka, the process that sequences a delivery's chain does its e-mail work,
        // so that two processes never send the same notification.
        let delivery = match &work {
            DueWork::FirstAttempt { delivery, .. } => Some(*delivery),
            DueWork::Retry { notification, .. }
            | DueWork::Send { notification, .. }
            | DueWork::Abandon { notification, .. } => state
                .notification(*notification)
                .map(|record| record.delivery),
        };
        if let Some(chain) = delivery.and_then(|delivery| state.delivery_chain(delivery))
            && !context.ledger.sequences_here(chain)
        {
            return;
        }
        match work {
            DueWork::FirstAttempt {
                delivery,
                recipient,
                kind,
            } => {
                let key = WorkKey::First {
                    delivery,
                    recipient,
                    kind,
                };
                let Some(chain) = state.delivery_chain(delivery) else {
                    return;
                };
                if !in_progress.claim(key) {
                    return;
                }
                let notification = NotificationId::random();
                let event = Event::NotificationAttempted(NotificationAttempted {
                    notification,
                    delivery,
                    recipient,
                    kind,
                    message_id: new_message_id(notification, &self.message_id_domain),
                    attempt: 1,
                });
                let target = Target {
                    chain,
                    delivery,
                    recipient,
                    notification,
                    kind,
                    attempt: 1,
                };
                let idempotency = first_attempt_key(delivery, recipient, kind);
                tasks.spawn(released_when_unavailable(
                    key,
                    target.chain,
                    work::record_attempt(context, key, target, event, idempotency),
                ));
            }
            DueWork::Retry {
                notification,
                attempt,
            } => {
                let key = WorkKey::Notification(notification);
                let Some(record) = state.notification(notification) else {
                    return;
                };
                if !in_progress.claim(key) {
                    return;
                }
                let event = Event::NotificationAttempted(NotificationAttempted {
                    notification,
                    delivery: record.delivery,
                    recipient: record.recipient,
                    kind: record.kind,
                    message_id: record.message_id.clone(),
                    attempt,
                });
                let target = target_of(state, notification, attempt);
                let idempotency = retry_key(notification, attempt);
                tasks.spawn(released_when_unavailable(
                    key,
                    target.chain,
                    work::record_attempt(context, key, target, event, idempotency),
                ));
            }
            DueWork::Send {
                notification,
                attempt,
            } => {
                let key = WorkKey::Notification(notification);
                let (Some(record), Some(notice), Some(deadline)) = (
                    state.notification(notification),
                    state.notice(notification, &self.link_key),
                    state.deadline(notification, self.give_up_after),
                ) else {
                    return;
                };
                if !in_progress.claim(key) {
                    return;
                }
                let email = match &notice {
                    Notice::Consignment(notice) => self.composer.consignment(notice),
                    Notice::Receipt(notice) => self.composer.receipt(notice),
                };
                let job = SendJob {
                    target: target_of(state, notification, attempt),
                    message_id: record.message_id.clone(),
                    email,
                    deadline,
                };
                let chain = job.target.chain;
                tasks.spawn(released_when_unavailable(
                    key,
                    chain,
                    work::send(context, job),
                ));
            }
            DueWork::Abandon {
                notification,
                attempt,
                reason,
            } => {
                let key = WorkKey::Notification(notification);
                let Some(record) = state.notification(notification) else {
                    return;
                };
                if !in_progress.claim(key) {
                    return;
                }
                // A deferred attempt already has its outcome under the outcome key.
                let idempotency = match record.status {
                    NotificationStatus::Deferred { .. } => abandon_key(notification, attempt),
                    _ => outcome_key(notification, attempt),
                };
                let target = target_of(state, notification, attempt);
                tasks.spawn(released_when_unavailable(
                    key,
                    target.chain,
                    work::abandon(context, target, reason, idempotency),
                ));
            }
        }
    }
}

/// Work in progress: `None` while its task runs, then the event it appended last until
/// the fold has passed that event. Until then the fold may not show the work as done,
/// and the same work would be started again.
#[derive(Debug, Default)]
struct InProgress {
    keys: HashMap<WorkKey, Option<(ChainId, Position)>>,
}

impl InProgress {
    /// Marks `key` as in progress; false when it already was.
    fn claim(&mut self, key: WorkKey) -> bool {
        if self.keys.contains_key(&key) {
            return false;
        }
        self.keys.insert(key, None);
        true
    }

    fn finish(&mut self, finished: Finished) {
        self.keys
            .insert(finished.key, Some((finished.chain, finished.position)));
    }

    fn release_folded(&mut self, state: &DispatchState) {
        self.keys.retain(|_, appended| match appended {
            None => true,
            Some((chain, position)) => state.next_position(*chain) <= *position,
        });
    }
}

fn target_of(state: &DispatchState, notification: NotificationId, attempt: u32) -> Target {
    let record = state
        .notification(notification)
        .expect("due work names a folded notification");
    Target {
        chain: record.chain,
        delivery: record.delivery,
        recipient: record.recipient,
        notification,
        kind: record.kind,
        attempt,
    }
}

/// Folds every chain from the state's positions to its current end, and returns the
/// number of events folded.
async fn catch_up_all(
    ledger: &Arc<EmbeddedLedger>,
    state: &mut DispatchState,
) -> Result<u64, DispatchError> {
    let mut folded = 0;
    for chain in ledger.chains() {
        folded += catch_up(ledger, chain, state).await?;
    }
    Ok(folded)
}

/// Folds `chain` from the state's position to its current end.
async fn catch_up(
    ledger: &Arc<EmbeddedLedger>,
    chain: ChainId,
    state: &mut DispatchState,
) -> Result<u64, DispatchError> {
    let mut folded = 0u64;
    loop {
        let from = state.next_position(chain);
        let reader = Arc::clone(ledger);
        let batch = tokio::task::spawn_blocking(move || reader.read(chain, from, CATCH_UP_BATCH))
            .await
            .map_err(|error| DispatchError::Task {
                reason: error.to_string(),
            })?
            .map_err(|source| DispatchError::Read { chain, source })?;
        if batch.is_empty() {
            return Ok(folded);
        }
        for event in &batch {
            state.apply(event);
        }
        folded += batch.len() as u64;
    }
}

/// Folds `first` and then every event the subscriptions have ready without waiting,
/// up to [`MAX_EVENTS_PER_TURN`].
fn fold_ready<S>(
    first: Option<Result<StoredEvent, consign_ledger::LedgerError>>,
    events: &mut S,
    state: &mut DispatchState,
) -> Result<(), DispatchError>
where
    S: futures::Stream<Item = Result<StoredEvent, consign_ledger::LedgerError>> + Unpin,
{
    let mut item = first;
    let mut folded = 0;
    loop {
        match item {
            Some(Ok(event)) => state.apply(&event),
            Some(Err(source)) => return Err(DispatchError::Follow { source }),
            None => {
                return Err(DispatchError::Follow {
                    source: consign_ledger::LedgerError::Closed,
                });
            }
        }
        folded += 1;
        if folded >= MAX_EVENTS_PER_TURN {
            return Ok(());
        }
        match events.next().now_or_never() {
            Some(next) => item = next,
            None => return Ok(()),
        }
    }
}

/// Runs `work`, and when the ledger could not take its append now (a Kafka sequencer
/// that is restarting or moving), reports it as finished with nothing appended. The
/// claim is then released and the work is done again once it is due and its chain is
/// sequenced here, under the same ids.
async fn released_when_unavailable(
    key: WorkKey,
    chain: ChainId,
    work: impl Future<Output = Result<Finished, DispatchError>>,
) -> Result<Finished, DispatchError> {
    match work.await {
        Err(DispatchError::Append {
            event,
            delivery,
            source: source @ consign_ledger::LedgerError::Unavailable { .. },
            ..
        }) => {
            tracing::warn!(%delivery, event, error = %source, "notification work not recorded now; it is retried");
            Ok(Finished {
                key,
                chain,
                position: Position::ZERO,
                own_attempt: None,
            })
        }
        other => other,
    }
}

fn task_result(
    joined: Result<Result<Finished, DispatchError>, tokio::task::JoinError>,
) -> Result<Finished, DispatchError> {
    joined.map_err(|error| DispatchError::Task {
        reason: error.to_string(),
    })?
}

/// Waits for every task, logs each failure, and returns the first.
async fn drain(tasks: &mut JoinSet<Result<Finished, DispatchError>>) -> Option<DispatchError> {
    let mut first = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = task_result(joined) {
            tracing::error!(error = %error, "notification task failed during shutdown");
            first.get_or_insert(error);
        }
    }
    first
}
