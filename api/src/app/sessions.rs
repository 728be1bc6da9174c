//! Login sessions: random bearer tokens kept in memory, only as hashes.
//!
//! NOTE: sessions live in memory, so a restart of the server logs everyone out. They
//! are not evidence and never enter the ledger.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consign_schemas::AccountId;

/// Lifetime of a session from its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Maximum number of live sessions; the oldest are dropped beyond it.
const MAX_SESSIONS: usize = 100_000;

/// The live sessions, keyed by the BLAKE3 hash of their token.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    account: AccountId,
    expires: Instant,
}

impl Sessions {
    /// Opens a session for `account` and returns its token: 256 random bits in
    /// URL-safe base64.
    pub fn open(&self, account: AccountId) -> String {
        let bytes: [u8; 32] = rand::random();
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut live = self.live.lock().expect("the session lock is never poisoned");

        live.retain(|_, session| session.expires > now);
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(
            hash(&token),
            Session {
                account,
                expires: now + SESSION_LIFETIME,
            },
        );
        token
    }

    /// Returns the account of a live session.
    pub fn account(&self, token: &str) -> Option<AccountId> {
        let live = self.live.lock().expect("the session lock is never poisoned");
        let session = live.get(&hash(token))?;
        (session.expires > Instant::now()).then_some(session.account)
    }

    /// Ends a session; an unknown token is ignored.
    pub fn close(&self, token: &str) {
        self.live
            .lock()
            .expect("the session lock is never poisoned")
            .remove(&hash(token));
    }
}

fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
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
