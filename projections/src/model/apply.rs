//! Applying one stored event to the model.

use std::collections::BTreeMap;

use consign_ledger::StoredEvent;
use consign_schemas::Event;
use consign_schemas::events::NotificationKind;

use super::types::{
    Account, Delivery, Document, EventRef, Notification, NotificationStatus, PostmarkRecord,
    Recipient, Withdrawal,
};
use super::{Model, ModelError};

impl Model {
    /// Applies the next event of its chain.
    ///
    /// Returns `Ok(false)` and changes nothing for an event before the chain's next
    /// position, so replaying an overlap is harmless.
    ///
    /// # Errors
    ///
    /// [`ModelError::Gap`] for an event after the chain's next position: an event in
    /// between was never applied.
    pub fn apply(&mut self, stored: &StoredEvent) -> Result<bool, ModelError> {
        let envelope = &stored.envelope;
        let expected = self.next_position(envelope.chain);
        if envelope.position < expected {
            return Ok(false);
        }
        if envelope.position > expected {
            return Err(ModelError::Gap {
                chain: envelope.chain,
                position: envelope.position,
                expected,
            });
        }
        self.next.insert(envelope.chain, envelope.position.next());

        let at = EventRef {
            chain: envelope.chain,
            position: envelope.position,
            hash: stored.hash,
            time: envelope.time,
        };
        self.apply_event(&envelope.event, at);
        Ok(true)
    }

    fn apply_event(&mut self, event: &Event, at: EventRef) {
        let time = at.time;
        match event {
            Event::AccountOpened(opened) => {
                self.logins
                    .insert(Self::login_key(&opened.login), opened.account);
                self.accounts.insert(
                    opened.account,
                    Account {
                        id: opened.account,
                        login: opened.login.clone(),
                        display_name: opened.display_name.clone(),
                        email: opened.email.clone(),
                        role: opened.role,
                        password_hash: opened.password_hash.clone(),
                        opened_at: time,
                    },
                );
            }
            Event::CredentialChanged(changed) => {
                if let Some(account) = self.accounts.get_mut(&changed.account) {
                    account.password_hash.clone_from(&changed.password_hash);
                }
            }
            Event::MailingListDefined(list) if list.members.is_empty() => {
                self.lists.remove(&(list.account, list.name.clone()));
            }
            Event::MailingListDefined(list) => {
                self.lists
                    .insert((list.account, list.name.clone()), list.members.clone());
            }
            Event::DocumentUploaded(uploaded) => {
                self.documents.insert(
                    uploaded.document,
                    Document {
                        id: uploaded.document,
                        account: uploaded.account,
                        file_name: uploaded.file_name.clone(),
                        media_type: uploaded.media_type.clone(),
                        size: uploaded.size,
                        content_hash: uploaded.content_hash,
                        storage_key: uploaded.storage_key.clone(),
                        encryption: uploaded.encryption.clone(),
                        purged: false,
                    },
                );
            }
            Event::DeliverySubmitted(submitted) => {
                let recipients = submitted
                    .recipients
                    .iter()
                    .map(|entry| Recipient {
                        id: entry.recipient,
                        mailbox: entry.mailbox.clone(),
                        via_list: entry.via_list.clone(),
                        token_hash: entry.access_token_hash,
                        consignment: None,
                        receipt: None,
                        first_opened_at: None,
                        opens: 0,
                        denials: 0,
                        downloads: BTreeMap::new(),
                        receipt_sent_at: None,
                    })
                    .collect::<Vec<_>>();
                for recipient in &recipients {
                    self.by_token
                        .insert(recipient.token_hash, (submitted.delivery, recipient.id));
                }
                self.by_sender
                    .entry(submitted.sender)
                    .or_default()
                    .push(submitted.delivery);
                self.deliveries.insert(
                    submitted.delivery,
                    Delivery {
                        id: submitted.delivery,
                        sender: submitted.sender,
                        subject: submitted.subject.clone(),
                        message: submitted.message.clone(),
                        options: submitted.options.clone(),
                        documents: submitted.documents.clone(),
                        recipients,
                        submitted: at,
                        released_at: None,
                        expired_at: None,
                        withdrawn: None,
                        purged: false,
                        postmark: None,
                    },
                );
            }
            Event::PostmarkIssued(issued) => {
                if let Some(delivery) = self.deliveries.get_mut(&issued.delivery) {
                    delivery.postmark.get_or_insert(PostmarkRecord {
                        event: issued.clone(),
                        at,
                    });
                }
            }
            Event::CheckpointSigned(_) => {}
            Event::DeliveryReleased(released) => {
                if let Some(delivery) = self.deliveries.get_mut(&released.delivery) {
                    delivery.released_at.get_or_insert(time);
                }
            }
            Event::NotificationAttempted(attempted) => {
                let Some(recipient) = self.recipient_mut(attempted.delivery, attempted.recipient)
                else {
                    return;
                };
                let slot = match attempted.kind {
                    NotificationKind::Consignment => &mut recipient.consignment,
                    NotificationKind::Receipt => &mut recipient.receipt,
                };
                let notification = slot.get_or_insert_with(|| Notification {
                    id: attempted.notification,
                    kind: attempted.kind,
                    message_id: attempted.message_id.clone(),
                    attempts: 0,
                    status: NotificationStatus::Attempted,
                });
                notification.attempts = notification.attempts.max(attempted.attempt);
                notification.status = NotificationStatus::Attempted;
            }
            Event::NotificationSent(sent) => {
                self.set_status(sent.delivery, sent.recipient, sent.notification, || {
                    NotificationStatus::Sent { at: time }
                });
            }
            Event::NotificationDeferred(deferred) => {
                self.set_status(
                    deferred.delivery,
                    deferred.recipient,
                    deferred.notification,
                    || NotificationStatus::Deferred {
                        reason: deferred.reason.clone(),
                        retry_at: deferred.retry_at,
                    },
                );
            }
            Event::NotificationFailed(failed) => {
                self.set_status(
                    failed.delivery,
                    failed.recipient,
                    failed.notification,
                    || NotificationStatus::Failed {
                        reason: failed.reason.clone(),
                    },
                );
            }
            Event::DeliveryOpened(opened) => {
                if let Some(recipient) = self.recipient_mut(opened.delivery, opened.recipient) {
                    recipient.first_opened_at.get_or_insert(time);
                    recipient.opens += 1;
                }
            }
            Event::AccessDenied(denied) => {
                if let Some(recipient) = self.recipient_mut(denied.delivery, denied.recipient) {
                    recipient.denials += 1;
                }
            }
            Event::DocumentDownloaded(downloaded) => {
                if let Some(recipient) =
                    self.recipient_mut(downloaded.delivery, downloaded.recipient)
                {
                    recipient
                        .downloads
                        .entry(downloaded.document)
                        .or_insert(time);
                }
            }
            Event::ReceiptSent(receipt) => {
                if let Some(recipient) = self.recipient_mut(receipt.delivery, receipt.recipient) {
                    recipient.receipt_sent_at.get_or_insert(time);
                }
            }
            Event::DeliveryExpired(expired) => {
                if let Some(delivery) = self.deliveries.get_mut(&expired.delivery) {
                    delivery.expired_at.get_or_insert(time);
                }
            }
            Event::DeliveryWithdrawn(withdrawn) => {
                if let Some(delivery) = self.deliveries.get_mut(&withdrawn.delivery) {
                    delivery.withdrawn.get_or_insert(Withdrawal {
                        at: time,
                        by: withdrawn.by,
                        reason: withdrawn.reason.clone(),
                    });
                }
            }
            Event::DocumentsPurged(purged) => {
                if let Some(delivery) = self.deliveries.get_mut(&purged.delivery) {
                    delivery.purged = true;
                }
                for id in &purged.documents {
                    if let Some(document) = self.documents.get_mut(id) {
                        document.purged = true;
                    }
                }
            }
        }
    }

    fn recipient_mut(
        &mut self,
        delivery: consign_schemas::DeliveryId,
        recipient: consign_schemas::RecipientId,
    ) -> Option<&mut Recipient> {
        self.deliveries.get_mut(&delivery)?.recipient_mut(recipient)
    }

    /// Sets the status of the notification `id` of a recipient, whichever kind it is.
    fn set_status(
        &mut self,
        delivery: consign_schemas::DeliveryId,
        recipient: consign_schemas::RecipientId,
        id: consign_schemas::NotificationId,
        status: impl FnOnce() -> NotificationStatus,
    ) {
        let Some(recipient) = self.recipient_mut(delivery, recipient) else {
            return;
        };
        let notification = [&mut recipient.consignment, &mut recipient.receipt]
            .into_iter()
            .flatten()
            .find(|notification| notification.id == id);
        if let Some(notification) = notification {
            notification.status = status();
        }
    }
}
