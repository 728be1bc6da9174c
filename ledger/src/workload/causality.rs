//! Test support: checks that requests are in causal order, per delivery and per
//! account, as a projection replaying them in this order would need.

use std::collections::{HashMap, HashSet};

use consign_schemas::events::{DenialReason, NotificationKind};
use consign_schemas::{AccountId, DeliveryId, DocumentId, Event, NotificationId, RecipientId};

use crate::AppendRequest;

/// Returns the first causal violation in `requests`, naming the request index.
pub(super) fn check_causal_order(requests: &[AppendRequest]) -> Result<(), String> {
    let mut checker = Checker::default();
    for (index, request) in requests.iter().enumerate() {
        for new_event in &request.events {
            checker.apply(&new_event.event).map_err(|violation| {
                format!("request {index}: {violation}: {:?}", new_event.event)
            })?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Checker {
    accounts: HashSet<AccountId>,
    uploaded: HashSet<DocumentId>,
    deliveries: HashMap<DeliveryId, DeliveryState>,
}

#[derive(Default)]
struct DeliveryState {
    documents: HashSet<DocumentId>,
    recipients: HashSet<RecipientId>,
    released: bool,
    withdrawn: bool,
    expired: bool,
    purged: bool,
    /// Recipients whose link e-mail went out.
    notified: HashSet<RecipientId>,
    opened: HashSet<RecipientId>,
    downloaded: HashSet<RecipientId>,
    notifications: HashMap<NotificationId, NotificationState>,
}

struct NotificationState {
    kind: NotificationKind,
    recipient: RecipientId,
    attempt: u32,
    /// Outcome of the latest attempt, if recorded.
    outcome: Option<Outcome>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Sent,
    Deferred,
    Failed,
}

impl DeliveryState {
    fn ended(&self) -> bool {
        self.withdrawn || self.expired || self.purged
    }

    fn record_outcome(
        &mut self,
        notification: NotificationId,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<&NotificationState, String> {
        let state = self
            .notifications
            .get_mut(&notification)
            .ok_or("outcome without a prior attempt")?;
        if state.attempt != attempt {
            return Err(format!(
                "outcome of attempt {attempt}, latest is {}",
                state.attempt
            ));
        }
        if let Some(previous) = state.outcome {
            return Err(format!("second outcome after {previous:?}"));
        }
        state.outcome = Some(outcome);
        Ok(state)
    }
}

impl Checker {
    fn apply(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::AccountOpened(opened) => {
                if !self.accounts.insert(opened.account) {
                    return Err("account opened twice".into());
                }
            }
            Event::CredentialChanged(changed) => self.require_account(changed.account)?,
            Event::MailingListDefined(defined) => self.require_account(defined.account)?,
            Event::DocumentUploaded(upload) => {
                self.require_account(upload.account)?;
                self.uploaded.insert(upload.document);
            }
            Event::DeliverySubmitted(submitted) => {
                self.require_account(submitted.sender)?;
                if self.deliveries.contains_key(&submitted.delivery) {
                    return Err("delivery submitted twice".into());
                }
                if let Some(missing) = submitted
                    .documents
                    .iter()
                    .find(|d| !self.uploaded.contains(d))
                {
                    return Err(format!("document {missing} submitted before upload"));
                }
                let state = DeliveryState {
                    documents: submitted.documents.iter().copied().collect(),
                    recipients: submitted.recipients.iter().map(|r| r.recipient).collect(),
                    ..DeliveryState::default()
                };
                self.deliveries.insert(submitted.delivery, state);
            }
            Event::CheckpointSigned(_) => {}
            delivery_event => {
                let delivery = delivery_event.delivery().ok_or("event without delivery")?;
                let state = self
                    .deliveries
                    .get_mut(&delivery)
                    .ok_or("delivery event before DeliverySubmitted")?;
                apply_to_delivery(state, delivery_event)?;
            }
        }
        Ok(())
    }

    fn require_account(&self, account: AccountId) -> Result<(), String> {
        if self.accounts.contains(&account) {
            Ok(())
        } else {
            Err(format!("account {account} used before AccountOpened"))
        }
    }
}

fn apply_to_delivery(state: &mut DeliveryState, event: &Event) -> Result<(), String> {
    match event {
        Event::PostmarkIssued(_) => {}
        Event::DeliveryReleased(_) => {
            if state.released || state.ended() {
                return Err("release after release or end".into());
            }
            state.released = true;
        }
        Event::NotificationAttempted(attempted) => {
            if !state.released || state.ended() {
                return Err("attempt before release or after end".into());
            }
            if !state.recipients.contains(&attempted.recipient) {
                return Err("attempt for an unknown recipient".into());
            }
            if attempted.kind == NotificationKind::Receipt
                && !state.downloaded.contains(&attempted.recipient)
            {
                return Err("receipt before the recipient downloaded".into());
            }
            match state.notifications.get_mut(&attempted.notification) {
                None if attempted.attempt == 1 => {
                    state.notifications.insert(
                        attempted.notification,
                        NotificationState {
                            kind: attempted.kind,
                            recipient: attempted.recipient,
                            attempt: 1,
                            outcome: None,
                        },
                    );
                }
                None => return Err("first attempt numbered above 1".into()),
                Some(previous) => {
                    if previous.outcome != Some(Outcome::Deferred)
                        || attempted.attempt != previous.attempt + 1
                        || attempted.kind != previous.kind
                    {
                        return Err("retry without a deferral of the previous attempt".into());
                    }
                    previous.attempt = attempted.attempt;
                    previous.outcome = None;
                }
            }
        }
        Event::NotificationSent(sent) => {
            let notification =
                state.record_outcome(sent.notification, sent.attempt, Outcome::Sent)?;
            if notification.kind != NotificationKind::Consignment {
                return Err("NotificationSent for a receipt".into());
            }
            state.notified.insert(sent.recipient);
        }
        Event::NotificationDeferred(deferred) => {
            state.record_outcome(deferred.notification, deferred.attempt, Outcome::Deferred)?;
        }
        Event::NotificationFailed(failed) => {
            state.record_outcome(failed.notification, failed.attempt, Outcome::Failed)?;
        }
        Event::ReceiptSent(receipt) => {
            let attempt = state
                .notifications
                .get(&receipt.notification)
                .map(|n| n.attempt)
                .ok_or("ReceiptSent without a prior attempt")?;
            let notification =
                state.record_outcome(receipt.notification, attempt, Outcome::Sent)?;
            if notification.kind != NotificationKind::Receipt
                || notification.recipient != receipt.recipient
            {
                return Err("ReceiptSent does not match its attempt".into());
            }
        }
        Event::DeliveryOpened(opened) => {
            if !state.notified.contains(&opened.recipient) || state.ended() {
                return Err("opened before the link e-mail went out or after end".into());
            }
            state.opened.insert(opened.recipient);
        }
        Event::AccessDenied(denied) => {
            if !state.notified.contains(&denied.recipient) {
                return Err("denied before the link e-mail went out".into());
            }
            let consistent = match denied.reason {
                DenialReason::WrongPassword | DenialReason::Throttled => !state.ended(),
                DenialReason::NotYetReleased => !state.released,
                DenialReason::Expired => state.expired,
                DenialReason::Withdrawn => state.withdrawn,
                DenialReason::Purged => state.purged,
            };
            if !consistent {
                return Err("denial reason does not match the delivery's state".into());
            }
        }
        Event::DocumentDownloaded(downloaded) => {
            if !state.opened.contains(&downloaded.recipient) || state.ended() {
                return Err("download before opening or after end".into());
            }
            if !state.documents.contains(&downloaded.document) {
                return Err("download of a document not in the delivery".into());
            }
            state.downloaded.insert(downloaded.recipient);
        }
        Event::DeliveryExpired(_) => {
            if !state.released || state.withdrawn || state.expired {
                return Err("expiry before release, after withdrawal or twice".into());
            }
            state.expired = true;
        }
        Event::DeliveryWithdrawn(_) => {
            if state.withdrawn || state.expired {
                return Err("withdrawal after withdrawal or expiry".into());
            }
            state.withdrawn = true;
        }
        Event::DocumentsPurged(purged) => {
            if state.purged {
                return Err("purged twice".into());
            }
            let documents: HashSet<DocumentId> = purged.documents.iter().copied().collect();
            if documents != state.documents {
                return Err("purge does not name the delivery's documents".into());
            }
            state.purged = true;
        }
        other => return Err(format!("unexpected {} in a delivery", other.kind().name())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use consign_schemas::EventKind;

    use super::*;
    use crate::workload::{Workload, WorkloadConfig};

    fn run() -> Vec<AppendRequest> {
        let config = WorkloadConfig {
            deliveries: 100,
            ..WorkloadConfig::default()
        };
        Workload::new(config).unwrap().collect()
    }

    /// Moves the first request holding `kind` to just before the first request of the
    /// same delivery.
    fn move_to_delivery_start(requests: &mut Vec<AppendRequest>, kind: EventKind) {
        let from = requests
            .iter()
            .position(|r| r.events.iter().any(|e| e.event.kind() == kind))
            .unwrap_or_else(|| panic!("no {} in the run", kind.name()));
        let delivery = requests[from].events[0].event.delivery().unwrap();
        let to = requests
            .iter()
            .position(|r| {
                r.events
                    .iter()
                    .any(|e| e.event.delivery() == Some(delivery))
            })
            .unwrap();
        let moved = requests.remove(from);
        requests.insert(to, moved);
    }

    #[test]
    fn generated_run_passes() {
        assert_eq!(check_causal_order(&run()), Ok(()));
    }

    #[test]
    fn opening_before_submission_fails() {
        let mut requests = run();
        move_to_delivery_start(&mut requests, EventKind::DeliveryOpened);

        let violation = check_causal_order(&requests).unwrap_err();
        assert!(
            violation.contains("before DeliverySubmitted"),
            "{violation}"
        );
    }

    #[test]
    fn outcome_before_attempt_fails() {
        let mut requests = run();
        let (sent, notification) = requests
            .iter()
            .enumerate()
            .find_map(|(index, r)| match &r.events[0].event {
                Event::NotificationSent(sent) if sent.attempt == 1 => {
                    Some((index, sent.notification))
                }
                _ => None,
            })
            .expect("the run sends link e-mails");
        let attempt = requests
            .iter()
            .position(|r| match &r.events[0].event {
                Event::NotificationAttempted(attempted) => attempted.notification == notification,
                _ => false,
            })
            .unwrap();
        let moved = requests.remove(sent);
        requests.insert(attempt, moved);

        let violation = check_causal_order(&requests).unwrap_err();
        assert!(violation.contains("without a prior attempt"), "{violation}");
    }

    #[test]
    fn download_after_expiry_fails() {
        let mut requests = run();
        let downloaded_before_expiry = |expired: usize| {
            let delivery = requests[expired].events[0].event.delivery();
            requests[..expired].iter().rposition(|r| {
                r.events[0].event.kind() == EventKind::DocumentDownloaded
                    && r.events[0].event.delivery() == delivery
            })
        };
        let (expired, download) = (0..requests.len())
            .filter(|&i| requests[i].events[0].event.kind() == EventKind::DeliveryExpired)
            .find_map(|expired| downloaded_before_expiry(expired).map(|d| (expired, d)))
            .expect("some expired delivery was downloaded");
        let moved = requests.remove(download);
        requests.insert(expired, moved);

        let violation = check_causal_order(&requests).unwrap_err();
        assert!(violation.contains("after end"), "{violation}");
    }
}
