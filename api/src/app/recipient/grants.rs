//! Access grants: after a recipient enters the right password, a random cookie lets the
//! same browser open the page and download for a while without entering it again.

use std::time::Duration;

use consign_schemas::{DeliveryId, RecipientId};

use crate::app::tokens::TokenTable;

/// Lifetime of a grant.
pub const GRANT_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Maximum number of live grants; the oldest are dropped beyond it.
const MAX_GRANTS: usize = 100_000;

/// Name of the grant cookie.
pub const GRANT_COOKIE: &str = "consign_access";

/// Live grants, keyed by the BLAKE3 hash of their cookie value.
#[derive(Debug)]
pub struct Grants {
    table: TokenTable<(DeliveryId, RecipientId)>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            table: TokenTable::new(GRANT_LIFETIME, MAX_GRANTS),
        }
    }
}

impl Grants {
    /// Issues a grant and returns its cookie value, 256 random bits.
    pub fn issue(&self, delivery: DeliveryId, recipient: RecipientId) -> String {
        self.table.issue((delivery, recipient))
    }

    /// Checks that `value` is a live grant for this recipient of this delivery.
    pub fn allows(&self, value: &str, delivery: DeliveryId, recipient: RecipientId) -> bool {
        self.table.get(value) == Some((delivery, recipient))
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
