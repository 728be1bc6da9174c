//! [`RateTable`]: prices in integer cents that turn [`Usage`] into [`Amounts`].

use serde::{Deserialize, Serialize};

use super::Usage;

/// Bytes in one GiB, the unit of the storage price.
const GIB: u128 = 1 << 30;

/// Prices in integer cents of the billing currency. A key that is not a price, such as
/// a misspelt one, is rejected rather than ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateTable {
    pub per_delivery: u64,
    pub per_recipient: u64,
    /// Price of one GiB (2^30 bytes) of documents submitted.
    pub per_gib: u64,
    /// Price per delivery sent with normal priority, on top of `per_delivery`.
    pub per_normal_priority: u64,
    pub per_high_priority: u64,
    pub per_urgent_priority: u64,
    /// Price per delivery with an electronic postmark requested.
    pub per_postmark: u64,
}

/// The price of one usage row in integer cents, by item.
///
/// Each amount saturates at `u64::MAX` cents instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    pub deliveries: u64,
    pub recipients: u64,
    /// The storage price, `bytes × per_gib / 2^30` rounded half up to a whole cent.
    pub storage: u64,
    pub priority: u64,
    pub postmarks: u64,
    pub total: u64,
}

/// Highest price of one item that a rate table may set, in cents: 10,000,000.00 in
/// the billing currency.
///
/// Below it, a usage row prices without reaching the saturation at `u64::MAX` unless
/// its counts (with GiB for storage) add up to more than `u64::MAX / MAX_RATE_CENTS`,
/// about 18 billion.
pub const MAX_RATE_CENTS: u64 = 1_000_000_000;

impl RateTable {
    /// Returns the name and value of the first price above [`MAX_RATE_CENTS`], which
    /// would price large usage rows at the saturated `u64::MAX`.
    pub fn first_out_of_range(&self) -> Option<(&'static str, u64)> {
        [
            ("per_delivery", self.per_delivery),
            ("per_recipient", self.per_recipient),
            ("per_gib", self.per_gib),
            ("per_normal_priority", self.per_normal_priority),
            ("per_high_priority", self.per_high_priority),
            ("per_urgent_priority", self.per_urgent_priority),
            ("per_postmark", self.per_postmark),
        ]
        .into_iter()
        .find(|(_, cents)| *cents > MAX_RATE_CENTS)
    }

    /// Prices one usage row.
    pub fn price(&self, usage: &Usage) -> Amounts {
        let deliveries = times(usage.deliveries, self.per_delivery);
        let recipients = times(usage.recipients, self.per_recipient);
        let storage_cents = (u128::from(usage.bytes) * u128::from(self.per_gib) + GIB / 2) / GIB;
        let storage = u64::try_from(storage_cents).unwrap_or(u64::MAX);
        let priority = times(usage.normal_priority, self.per_normal_priority)
            .saturating_add(times(usage.high_priority, self.per_high_priority))
            .saturating_add(times(usage.urgent_priority, self.per_urgent_priority));
        let postmarks = times(usage.postmarks, self.per_postmark);
        let total = [deliveries, recipients, storage, priority, postmarks]
            .into_iter()
            .fold(0u64, u64::saturating_add);
        Amounts {
            deliveries,
            recipients,
            storage,
            priority,
            postmarks,
            total,
        }
    }
}

fn times(count: u64, cents: u64) -> u64 {
    count.saturating_mul(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_above_max_named() {
        let mut rates = RateTable {
            per_postmark: MAX_RATE_CENTS,
            ..RateTable::default()
        };
        assert_eq!(rates.first_out_of_range(), None);

        rates.per_gib = MAX_RATE_CENTS + 1;
        rates.per_urgent_priority = u64::MAX;
        assert_eq!(
            rates.first_out_of_range(),
            Some(("per_gib", MAX_RATE_CENTS + 1))
        );
    }

    fn rates() -> RateTable {
        RateTable {
            per_delivery: 50,
            per_recipient: 10,
            per_gib: 200,
            per_normal_priority: 0,
            per_high_priority: 25,
            per_urgent_priority: 100,
            per_postmark: 30,
        }
    }

    #[test]
    fn price_adds_every_item() {
        let usage = Usage {
            deliveries: 4,
            recipients: 9,
            documents: 5,
            bytes: 3 << 29,
            normal_priority: 2,
            high_priority: 1,
            urgent_priority: 1,
            postmarks: 3,
            encrypted: 1,
            password_protected: 2,
        };

        let amounts = rates().price(&usage);

        assert_eq!(amounts.deliveries, 200);
        assert_eq!(amounts.recipients, 90);
        assert_eq!(amounts.storage, 300);
        assert_eq!(amounts.priority, 125);
        assert_eq!(amounts.postmarks, 90);
        assert_eq!(amounts.total, 805);
    }

    #[test]
    fn storage_rounds_half_up() {
        // At 256 cents per GiB, 2^21 bytes cost exactly half a cent.
        let rates = RateTable {
            per_gib: 256,
            ..RateTable::default()
        };
        let half_cent = Usage {
            bytes: 1 << 21,
            ..Usage::default()
        };
        let just_below = Usage {
            bytes: (1 << 21) - 1,
            ..Usage::default()
        };

        assert_eq!(rates.price(&half_cent).storage, 1);
        assert_eq!(rates.price(&just_below).storage, 0);
    }

    #[test]
    fn price_saturates() {
        let usage = Usage {
            deliveries: u64::MAX,
            bytes: u64::MAX,
            ..Usage::default()
        };
        let rates = RateTable {
            per_gib: u64::MAX,
            ..rates()
        };

        let amounts = rates.price(&usage);

        assert_eq!(amounts.deliveries, u64::MAX);
        assert_eq!(amounts.storage, u64::MAX);
        assert_eq!(amounts.total, u64::MAX);
    }
}
