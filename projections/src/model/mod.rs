//! The delivery model: accounts, mailing lists, documents and deliveries folded from the
//! ledger into memory.
//!
//! The API server checks every command against this model (is the login taken, may this
//! sender read that delivery, which recipient does a link token belong to, is the
//! delivery released) and the scheduler reads its due releases and expiries from it.
//! It is a pure function of the events applied: each chain is applied in position
//! order, chains independently of each other, and the same events give the same model.
//!
//! NOTE: the model lives in memory and is rebuilt from position zero at every start.
//! That costs one read of the whole ledger per start and memory in proportion to it.

mod apply;
mod types;

use std::collections::{BTreeMap, HashMap};

use consign_schemas::events::Mailbox;
use consign_schemas::{
    AccountId, ChainId, DeliveryId, DocumentId, EventHash, Position, RecipientId, Timestamp,
};
use unicode_normalization::UnicodeNormalization;

pub use types::{
    Account, Availability, Delivery, Document, EventRef, Notification, NotificationStatus,
    PostmarkRecord, Recipient, Withdrawal,
};

/// Errors of applying an event out of order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("event at {chain}:{position} skips ahead; the model expected position {expected} next")]
    Gap {
        chain: ChainId,
        position: Position,
        expected: Position,
    },
}

/// Everything the server needs to decide on a command, folded from the ledger.
#[derive(Debug, Default)]
pub struct Model {
    accounts: HashMap<AccountId, Account>,
    logins: HashMap<String, AccountId>,
    lists: BTreeMap<(AccountId, String), Vec<Mailbox>>,
    documents: HashMap<DocumentId, Document>,
    deliveries: HashMap<DeliveryId, Delivery>,
    /// Deliveries of each sender, in the order they were applied.
    by_sender: HashMap<AccountId, Vec<DeliveryId>>,
    by_token: HashMap<EventHash, (DeliveryId, RecipientId)>,
    /// Next position to apply in each chain.
    next: BTreeMap<ChainId, Position>,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the next position this model expects in `chain`: every event before it
    /// has been applied.
    pub fn next_position(&self, chain: ChainId) -> Position {
        self.next.get(&chain).copied().unwrap_or(Position::new(0))
    }

    /// Normalises a login for lookup: logins compare in Unicode NFC form and without
    /// regard to case.
    pub fn login_key(login: &str) -> String {
        login.trim().nfc().collect::<String>().to_lowercase()
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn account_by_login(&self, login: &str) -> Option<&Account> {
        let id = self.logins.get(&Self::login_key(login))?;
        self.accounts.get(id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Returns the members of the sender's mailing list `name`.
    pub fn mailing_list(&self, account: AccountId, name: &str) -> Option<&[Mailbox]> {
        self.lists
            .get(&(account, name.to_owned()))
            .map(Vec::as_slice)
    }

    /// Returns the names and members of every mailing list of `account`, by name.
    pub fn mailing_lists(&self, account: AccountId) -> impl Iterator<Item = (&str, &[Mailbox])> {
        self.lists
            .range((account, String::new())..)
            .take_while(move |((owner, _), _)| *owner == account)
            .map(|((_, name), members)| (name.as_str(), members.as_slice()))
    }

    /// Returns every document ever uploaded, purged ones included.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.documents.values()
    }

    pub fn document(&self, id: DocumentId) -> Option<&Document> {
        self.documents.get(&id)
    }

    pub fn delivery(&self, id: DeliveryId) -> Option<&Delivery> {
        self.deliveries.get(&id)
    }

    /// Returns the deliveries of `sender`, oldest first.
    pub fn deliveries_of(&self, sender: AccountId) -> impl Iterator<Item = &Delivery> {
        self.by_sender
            .get(&sender)
            .into_iter()
            .flatten()
            .filter_map(|id| self.deliveries.get(id))
    }

    /// Finds the delivery and recipient whose link token has this hash.
    pub fn by_token(&self, token_hash: &EventHash) -> Option<(&Delivery, &Recipient)> {
        let (delivery, recipient) = self.by_token.get(token_hash)?;
        let delivery = self.deliveries.get(delivery)?;
        let recipient = delivery.recipient(*recipient)?;
        Some((delivery, recipient))
    }

    /// Returns the deliveries that asked for a postmark and have none yet.
    pub fn missing_postmarks(&self) -> Vec<DeliveryId> {
        self.deliveries
            .values()
            .filter(|delivery| delivery.options.postmark && delivery.postmark.is_none())
            .map(|delivery| delivery.id)
            .collect()
    }

    /// Returns the deliveries whose delivery date has come by `now` and that are not yet
    /// released, expired or withdrawn.
    pub fn due_releases(&self, now: Timestamp) -> Vec<DeliveryId> {
        self.deliveries
            .values()
            .filter(|delivery| {
                delivery.released_at.is_none()
                    && delivery.expired_at.is_none()
                    && delivery.withdrawn.is_none()
                    && delivery
                        .options
                        .deliver_at
                        .as_ref()
                        .is_some_and(|time| time.instant <= now)
            })
            .map(|delivery| delivery.id)
            .collect()
    }

    /// Returns the deliveries whose expiration date has come by `now` and that are not
    /// yet recorded as expired or withdrawn.
    pub fn due_expiries(&self, now: Timestamp) -> Vec<DeliveryId> {
        self.deliveries
            .values()
            .filter(|delivery| {
                delivery.expired_at.is_none()
                    && delivery.withdrawn.is_none()
                    && delivery
                        .options
                        .expires_at
                        .as_ref()
                        .is_some_and(|time| time.instant <= now)
            })
            .map(|delivery| delivery.id)
            .collect()
    }

    /// Returns the earliest pending delivery date or expiration date after `now`, for the
    /// scheduler's next wake-up.
    pub fn next_due_after(&self, now: Timestamp) -> Option<Timestamp> {
        self.deliveries
            .values()
            .filter(|delivery| delivery.withdrawn.is_none() && delivery.expired_at.is_none())
            .flat_map(|delivery| {
                let release = delivery
                    .options
                    .deliver_at
                    .as_ref()
                    .filter(|_| delivery.released_at.is_none())
                    .map(|time| time.instant);
                let expiry = delivery
                    .options
                    .expires_at
                    .as_ref()
                    .map(|time| time.instant);
                release.into_iter().chain(expiry)
            })
            .filter(|instant| *instant > now)
            .min()
    }
}

#[cfg(test)]
mod tests;
