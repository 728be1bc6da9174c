//! The steps the dispatcher runs as tasks: recording an attempt, sending an e-mail and
//! recording its outcome, and recording a failure without sending.
//!
//! Every append carries an idempotency key derived from what it records, so two
//! dispatchers, or one restarted after a crash, never record the same step twice:
//!
//! | step | key |
//! | --- | --- |
//! | first attempt | `notify/{delivery}/{recipient}/{kind}` |
//! | later attempt | `notify/{notification}/{attempt}/attempt` |
//! | outcome of an attempt | `notify/{notification}/{attempt}/outcome` |
//! | end of a deferred notification | `notify/{notification}/{attempt}/abandon` |

use std::sync::Arc;

use consign_ledger::{AppendRequest, Clock, EmbeddedLedger, NewEvent};
use consign_schemas::events::{
    NotificationDeferred, NotificationFailed, NotificationKind, NotificationSent, ReceiptSent,
};
use consign_schemas::{
    Actor, ChainId, DeliveryId, Event, IdempotencyKey, NotificationId, Position, RecipientId,
    SystemComponent,
};

use super::DispatchError;
use super::notice::{Deadline, add_duration};
use crate::compose::{ComposeError, OutgoingEmail};
use crate::mailer::{Mailer, SendOutcome};
use crate::retry::retry_delay;
use crate::text::format_utc;

/// Shared state of every task: the ledger to record in, the mailer and the clock.
#[derive(Debug)]
pub(crate) struct Context {
    pub ledger: Arc<EmbeddedLedger>,
    pub mailer: Mailer,
    pub clock: Clock,
}

/// Identity of a piece of work, so that no notification is worked on twice at once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum WorkKey {
    First {
        delivery: DeliveryId,
        recipient: RecipientId,
        kind: NotificationKind,
    },
    Notification(NotificationId),
}

/// A finished task and the place of the last event it appended. The work stays in
/// progress until the fold has passed that event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finished {
    pub key: WorkKey,
    pub chain: ChainId,
    pub position: Position,
    /// The attempt this task recorded, as notification and attempt number; `None` when
    /// it recorded none or the ledger already had it.
    pub own_attempt: Option<(NotificationId, u32)>,
}

/// The notification attempt a task works on, for its events and log lines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub chain: ChainId,
    pub delivery: DeliveryId,
    pub recipient: RecipientId,
    pub notification: NotificationId,
    pub kind: NotificationKind,
    pub attempt: u32,
}

/// A recorded attempt to send: the composed e-mail, or why composing failed.
#[derive(Debug)]
pub(crate) struct SendJob {
    pub target: Target,
    pub message_id: String,
    pub email: Result<OutgoingEmail, ComposeError>,
    pub deadline: Deadline,
}

pub(crate) fn first_attempt_key(
    delivery: DeliveryId,
    recipient: RecipientId,
    kind: NotificationKind,
) -> IdempotencyKey {
    idempotency_key(format!("notify/{delivery}/{recipient}/{}", kind_name(kind)))
}

pub(crate) fn retry_key(notification: NotificationId, attempt: u32) -> IdempotencyKey {
    idempotency_key(format!("notify/{notification}/{attempt}/attempt"))
}

pub(crate) fn outcome_key(notification: NotificationId, attempt: u32) -> IdempotencyKey {
    idempotency_key(format!("notify/{notification}/{attempt}/outcome"))
}

pub(crate) fn abandon_key(notification: NotificationId, attempt: u32) -> IdempotencyKey {
    idempotency_key(format!("notify/{notification}/{attempt}/abandon"))
}

/// Wraps a key built above, which has at most 92 bytes: two 36-character ids and short
/// words, far below the limit of [`IdempotencyKey::MAX_LEN`].
fn idempotency_key(text: String) -> IdempotencyKey {
    IdempotencyKey::new(text).expect("notification keys are far below the length limit")
}

pub(crate) fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Consignment => "consignment",
        NotificationKind::Receipt => "receipt",
    }
}

/// Appends one `NotificationAttempted` event.
pub(crate) async fn record_attempt(
    context: Arc<Context>,
    key: WorkKey,
    target: Target,
    event: Event,
    idempotency: IdempotencyKey,
) -> Result<Finished, DispatchError> {
    let appended = append(&context, &target, vec![event], idempotency).await?;
    if appended.replayed {
        tracing::info!(
            delivery = %target.delivery,
            recipient = %target.recipient,
            attempt = target.attempt,
            kind = kind_name(target.kind),
            "attempt was already recorded, by another dispatcher or before a restart"
        );
    } else {
        tracing::debug!(
            delivery = %target.delivery,
            recipient = %target.recipient,
            notification = %target.notification,
            attempt = target.attempt,
            kind = kind_name(target.kind),
            "recorded a notification attempt"
        );
    }
    let mut finished = finished(key, target.chain, &appended);
    if !appended.replayed {
        finished.own_attempt = Some((target.notification, target.attempt));
    }
    Ok(finished)
}

/// Sends the e-mail of a recorded attempt and records the outcome.
///
/// A sent e-mail gets `NotificationSent`, together with `ReceiptSent` in the same append
/// for a receipt. A transient failure gets `NotificationDeferred`. `NotificationFailed`
/// follows a permanent failure, an e-mail that could not be composed, and a transient
/// failure whose next retry would come after the deadline.
pub(crate) async fn send(context: Arc<Context>, job: SendJob) -> Result<Finished, DispatchError> {
    let target = job.target;
    let key = WorkKey::Notification(target.notification);
    let outcome_key = outcome_key(target.notification, target.attempt);

    let email = match job.email {
        Ok(email) => email,
        Err(error) => {
            let reason = format!("the e-mail could not be composed: {error}");
            return record_failure(&context, key, target, reason, outcome_key).await;
        }
    };

    tracing::info!(
        delivery = %target.delivery,
        recipient = %target.recipient,
        notification = %target.notification,
        attempt = target.attempt,
        kind = kind_name(target.kind),
        "sending a notification"
    );
    match context.mailer.send(email).await {
        SendOutcome::Sent { server_reply } => {
            let mut events = vec![Event::NotificationSent(NotificationSent {
                notification: target.notification,
                delivery: target.delivery,
                recipient: target.recipient,
                attempt: target.attempt,
                server_reply: server_reply.clone(),
            })];
            if target.kind == NotificationKind::Receipt {
                events.push(Event::ReceiptSent(ReceiptSent {
                    delivery: target.delivery,
                    recipient: target.recipient,
                    notification: target.notification,
                    message_id: job.message_id,
                }));
            }
            let appended = append(&context, &target, events, outcome_key).await?;
            tracing::info!(
                delivery = %target.delivery,
                recipient = %target.recipient,
                notification = %target.notification,
                attempt = target.attempt,
                kind = kind_name(target.kind),
                reply = %server_reply,
                "notification sent"
            );
            Ok(finished(key, target.chain, &appended))
        }
        SendOutcome::Transient { reason, .. } => {
            let retry_at = add_duration(context.clock.now(), retry_delay(target.attempt));
            if retry_at >= job.deadline.instant() {
                let reason = give_up_reason(&reason, retry_at, job.deadline);
                return record_failure(&context, key, target, reason, outcome_key).await;
            }
            let event = Event::NotificationDeferred(NotificationDeferred {
                notification: target.notification,
                delivery: target.delivery,
                recipient: target.recipient,
                attempt: target.attempt,
                reason: reason.clone(),
                retry_at,
            });
            let appended = append(&context, &target, vec![event], outcome_key).await?;
            tracing::warn!(
                delivery = %target.delivery,
                recipient = %target.recipient,
                notification = %target.notification,
                attempt = target.attempt,
                kind = kind_name(target.kind),
                reason = %reason,
                retry_at = %format_utc(retry_at),
                "notification deferred after a transient failure"
            );
            Ok(finished(key, target.chain, &appended))
        }
        SendOutcome::Permanent { reason, .. } => {
            let reason = format!("permanent failure: {reason}");
            record_failure(&context, key, target, reason, outcome_key).await
        }
    }
}

/// Records `NotificationFailed` for a notification whose delivery was withdrawn or
/// expired, without sending.
pub(crate) async fn abandon(
    context: Arc<Context>,
    target: Target,
    reason: String,
    idempotency: IdempotencyKey,
) -> Result<Finished, DispatchError> {
    let key = WorkKey::Notification(target.notification);
    record_failure(&context, key, target, reason, idempotency).await
}

async fn record_failure(
    context: &Context,
    key: WorkKey,
    target: Target,
    reason: String,
    idempotency: IdempotencyKey,
) -> Result<Finished, DispatchError> {
    let event = Event::NotificationFailed(NotificationFailed {
        notification: target.notification,
        delivery: target.delivery,
        recipient: target.recipient,
        attempt: target.attempt,
        reason: reason.clone(),
    });
    let appended = append(context, &target, vec![event], idempotency).await?;
    tracing::warn!(
        delivery = %target.delivery,
        recipient = %target.recipient,
        notification = %target.notification,
        attempt = target.attempt,
        kind = kind_name(target.kind),
        reason = %reason,
        "notification failed"
    );
    Ok(finished(key, target.chain, &appended))
}

/// Words the failure of a transient error whose retry would come too late.
fn give_up_reason(
    reason: &str,
    retry_at: consign_schemas::Timestamp,
    deadline: Deadline,
) -> String {
    match deadline {
        Deadline::Expiry(expires_at) => format!(
            "{reason}; not retried because the delivery expires at {} before the next \
             retry at {}",
            format_utc(expires_at),
            format_utc(retry_at)
        ),
        Deadline::GiveUp(give_up_at) => format!(
            "{reason}; not retried because the retry period ends at {} before the next \
             retry at {}",
            format_utc(give_up_at),
            format_utc(retry_at)
        ),
    }
}

async fn append(
    context: &Context,
    target: &Target,
    events: Vec<Event>,
    idempotency: IdempotencyKey,
) -> Result<consign_ledger::Appended, DispatchError> {
    let event_name = events[0].kind().name();
    let events = events
        .into_iter()
        .map(|event| NewEvent {
            actor: Actor::System(SystemComponent::Notifier),
            event,
        })
        .collect();
    let request = AppendRequest::new(target.chain, events).with_idempotency_key(idempotency);
    context
        .ledger
        .append(request)
        .await
        .map_err(|source| DispatchError::Append {
            event: event_name,
            delivery: target.delivery,
            recipient: target.recipient,
            source,
        })
}

fn finished(key: WorkKey, chain: ChainId, appended: &consign_ledger::Appended) -> Finished {
    let position = appended
        .events
        .last()
        .expect("an append of at least one event returns its position")
        .position;
    Finished {
        key,
        chain,
        position,
        own_attempt: None,
    }
}
