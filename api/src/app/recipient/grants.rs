//! Access grants: after a recipient enters the right password, a random cookie lets the
//! same browser open the page and download for a while without entering it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consign_schemas::{DeliveryId, RecipientId};

/// Lifetime of a grant.
pub const GRANT_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Maximum number of live grants; the oldest are dropped beyond it.
const MAX_GRANTS: usize = 100_000;

/// Name of the grant cookie.
pub const GRANT_COOKIE: &str = "consign_access";

/// Live grants, keyed by the BLAKE3 hash of their cookie value.
#[derive(Debug, Default)]
pub struct Grants {
    live: Mutex<HashMap<[u8; 32], Grant>>,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    delivery: DeliveryId,
    recipient: RecipientId,
    expires: Instant,
}

impl Grants {
    /// Issues a grant and returns its cookie value, 256 random bits.
    pub fn issue(&self, delivery: DeliveryId, recipient: RecipientId) -> String {
        let value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut live = self.live.lock().expect("the grant lock is never poisoned");
        live.retain(|_, grant| grant.expires > now);
        if live.len() >= MAX_GRANTS {
            let oldest = live.iter().min_by_key(|(_, grant)| grant.expires).map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(
            *blake3::hash(value.as_bytes()).as_bytes(),
            Grant {
                delivery,
                recipient,
                expires: now + GRANT_LIFETIME,
            },
        );
        value
    }

    /// Checks that `value` is a live grant for this recipient of this delivery.
    pub fn allows(&self, value: &str, delivery: DeliveryId, recipient: RecipientId) -> bool {
        let live = self.live.lock().expect("the grant lock is never poisoned");
        live.get(blake3::hash(value.as_bytes()).as_bytes())
            .is_some_and(|grant| {
                grant.delivery == delivery
                    && grant.recipient == recipient
                    && grant.expires > Instant::now()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_is_bound_to_its_recipient() {
        let grants = Grants::default();
        let delivery = DeliveryId::random();
        let recipient = RecipientId::random();
        let value = grants.issue(delivery, recipient);

        assert!(grants.allows(&value, delivery, recipient));
        assert!(!grants.allows(&value, delivery, RecipientId::random()));
        assert!(!grants.allows(&value, DeliveryId::random(), recipient));
        assert!(!grants.allows("forged", delivery, recipient));
    }
}
