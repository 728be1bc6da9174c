//! Login sessions: random bearer tokens kept in memory, only as hashes.
//!
//! NOTE: sessions live in memory, so a restart of the server logs everyone out. They
//! are not evidence and never enter the ledger.

use std::time::Duration;

use consign_schemas::AccountId;

use super::tokens::TokenTable;

/// Lifetime of a session from its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Maximum number of live sessions; the oldest are dropped beyond it.
const MAX_SESSIONS: usize = 100_000;

/// The live sessions, keyed by the BLAKE3 hash of their token.
#[derive(Debug)]
pub struct Sessions {
    table: TokenTable<AccountId>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            table: TokenTable::new(SESSION_LIFETIME, MAX_SESSIONS),
        }
    }
}

impl Sessions {
    /// Opens a session for `account` and returns its token: 256 random bits in
    /// URL-safe base64.
    pub fn open(&self, account: AccountId) -> String {
        self.table.issue(account)
    }

    /// Returns the account of a live session.
    pub fn account(&self, token: &str) -> Option<AccountId> {
        self.table.get(token)
    }

    /// Ends a session; an unknown token is ignored.
    pub fn close(&self, token: &str) {
        self.table.remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_session_resolves_until_closed() {
        let sessions = Sessions::default();
        let account = AccountId::random();
        let token = sessions.open(account);

        assert_eq!(sessions.account(&token), Some(account));
        assert_eq!(sessions.account("not-a-token"), None);
        sessions.close(&token);
        assert_eq!(sessions.account(&token), None);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let sessions = Sessions::default();
        let first = sessions.open(AccountId::random());
        let second = sessions.open(AccountId::random());

        assert_eq!(first.len(), 43);
        assert_ne!(first, second);
    }
}
