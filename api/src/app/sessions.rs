//! Login sessions: random bearer tokens kept in memory, only as hashes.
//!
//! Each session is bound to the password its account had at login. After a
//! `CredentialChanged` event the model contains another hash, and every session opened
//! before it ends, on every server that follows the ledger.
//!
//! NOTE: sessions live in memory, so a restart of the server logs everyone out. They
//! are not evidence and never enter the ledger.

use std::time::Duration;

use consign_projections::model::{Account, Model};
use consign_schemas::AccountId;

use super::tokens::TokenTable;

/// Key derivation context of a session's credential fingerprint.
const CREDENTIAL_CONTEXT: &str = "consign 2026-12-06 session credential v1";

/// Lifetime of a session from its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Maximum number of live sessions; the oldest are dropped beyond it.
const MAX_SESSIONS: usize = 100_000;

/// The account of a session and a fingerprint of the password hash it logged in with.
#[derive(Clone, Copy, Debug)]
struct SessionOwner {
    account: AccountId,
    credential: [u8; 32],
}

/// Returns the fingerprint of an account's Argon2id PHC string.
fn credential_of(password_hash: &str) -> [u8; 32] {
    blake3::derive_key(CREDENTIAL_CONTEXT, password_hash.as_bytes())
}

/// The live sessions, keyed by the BLAKE3 hash of their token.
#[derive(Debug)]
pub struct Sessions {
    table: TokenTable<SessionOwner>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            table: TokenTable::new(SESSION_LIFETIME, MAX_SESSIONS),
        }
    }
}

impl Sessions {
    /// Opens a session for `account` with its current password and returns its token:
    /// 256 random bits in URL-safe base64.
    pub fn open(&self, account: &Account) -> String {
        self.table.issue(SessionOwner {
            account: account.id,
            credential: credential_of(&account.password_hash),
        })
    }

    /// Returns the account of a live session as `model` has it. A session whose
    /// account's password changed since its login is closed, and gives `None`.
    pub fn account(&self, token: &str, model: &Model) -> Option<Account> {
        let owner = self.table.get(token)?;
        let account = model.account(owner.account)?;
        if credential_of(&account.password_hash) != owner.credential {
            self.table.remove(token);
            return None;
        }
        Some(account.clone())
    }

    /// Ends a session; an unknown token is ignored.
    pub fn close(&self, token: &str) {
        self.table.remove(token);
    }
}

#[cfg(test)]
mod tests {
    use consign_schemas::events::{AccountOpened, CredentialChanged, Role};
    use consign_schemas::{Actor, ChainId, Envelope, Event, EventId, Position, Timestamp};

    use super::*;

    /// Applies `event` to `model` at `position` of the account chain.
    fn apply(model: &mut Model, position: u64, event: Event) {
        let envelope = Envelope {
            schema_version: consign_schemas::SCHEMA_VERSION,
            event_id: EventId::random(),
            chain: ChainId::new(0),
            position: Position::new(position),
            previous: consign_schemas::genesis_hash(ChainId::new(0)),
            time: Timestamp::from_micros(0),
            command: consign_schemas::CommandId::random(),
            idempotency_key: None,
            actor: Actor::System(consign_schemas::SystemComponent::Administration),
            event,
        };
        let stored = consign_ledger::StoredEvent {
            envelope,
            hash: consign_schemas::genesis_hash(ChainId::new(0)),
            bytes: Vec::new(),
        };
        model.apply(&stored).unwrap();
    }

    fn model_with_account(account: AccountId) -> Model {
        let mut model = Model::new();
        let opened = AccountOpened {
            account,
            login: "ada".to_owned(),
            display_name: "Ada".to_owned(),
            email: "ada@consign.test".to_owned(),
            role: Role::Sender,
            password_hash: "first hash".to_owned(),
        };
        apply(&mut model, 0, Event::AccountOpened(opened));
        model
    }

    #[test]
    fn opened_session_resolves_until_closed() {
        let sessions = Sessions::default();
        let id = AccountId::random();
        let model = model_with_account(id);
        let token = sessions.open(model.account(id).unwrap());

        assert_eq!(
            sessions.account(&token, &model).map(|found| found.id),
            Some(id)
        );
        assert!(sessions.account("not-a-token", &model).is_none());
        sessions.close(&token);
        assert!(sessions.account(&token, &model).is_none());
    }

    #[test]
    fn password_change_ends_earlier_sessions() {
        let sessions = Sessions::default();
        let id = AccountId::random();
        let mut model = model_with_account(id);
        let before = sessions.open(model.account(id).unwrap());
        let changed = CredentialChanged {
            account: id,
            password_hash: "second hash".to_owned(),
        };
        apply(&mut model, 1, Event::CredentialChanged(changed));
        let after = sessions.open(model.account(id).unwrap());

        assert!(sessions.account(&before, &model).is_none());
        assert_eq!(
            sessions.account(&after, &model).map(|found| found.id),
            Some(id)
        );
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let sessions = Sessions::default();
        let id = AccountId::random();
        let model = model_with_account(id);
        let first = sessions.open(model.account(id).unwrap());
        let second = sessions.open(model.account(id).unwrap());

        assert_eq!(first.len(), 43);
        assert_ne!(first, second);
    }
}
