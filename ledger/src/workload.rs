//! Deterministic, seedable generator of a realistic ledger, for benchmarks, replay
//! fixtures and load tests.
//!
//! The generator has two parts:
//!
//! - [`Workload`] is pure: from a [`WorkloadConfig`] it yields [`AppendRequest`]s, one
//!   per command (a submission, one e-mail attempt, one download...), in the order a
//!   busy service would append them. The same configuration always yields the same
//!   requests, command ids included, each with its simulated time.
//! - [`generate`] drives a `Workload` against any [`Appender`] with a bounded number
//!   of requests in flight. It never puts two requests of the same [`Lane`] (one
//!   delivery, one account) in flight together, so each delivery's events reach its
//!   chain in causal order. [`AtSimulatedTime`] appends each request at its simulated
//!   time.
//!
//! [`sized_event`] and [`SizedRequests`] make simple events of a chosen encoded size,
//! for throughput measurements that need a fixed payload size instead of a realistic
//! mix.
//!
//! Evidence that depends on the ledger's result, such as the postmark over the
//! submission hash and the checkpoint root, is generated with placeholder bytes. The
//! events have the right shape and size, but their signatures do not verify.
//!
//! [`AppendRequest`]: crate::AppendRequest

mod catalog;
mod config;
mod delivery;
mod driver;
mod generator;
mod sized;
mod submission;
mod world;

#[cfg(test)]
mod causality;

use consign_schemas::{ChainId, DeliveryId};

pub use config::{ConfigError, WorkloadConfig};
pub use driver::{
    Appender, AtSimulatedTime, GenerateError, Lane, SIMULATED_TIME_WINDOW, WorkloadSummary,
    generate,
};
pub use generator::Workload;
pub use sized::{SizedRequests, sized_event};

/// Maps a delivery to the chain that stores its events.
///
/// The first 8 bytes of the delivery id, read as a big-endian `u64`, modulo `chains`.
/// The mapping depends only on the id bytes, so it is the same in every process and
/// every version that keeps this function.
///
/// # Panics
///
/// Panics if `chains` is zero.
pub fn chain_for_delivery(delivery: DeliveryId, chains: u32) -> ChainId {
    assert!(chains > 0, "chain_for_delivery needs at least one chain");

    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&delivery.as_bytes()[..8]);
    let chain = u64::from_be_bytes(prefix) % u64::from(chains);
    ChainId::new(u32::try_from(chain).expect("a remainder modulo a u32 fits in a u32"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_mapping_uses_first_eight_bytes() {
        let delivery = DeliveryId::from_bytes([
            0, 0, 0, 0, 0, 0, 0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);

        // 0x0102 is 258, and 258 mod 7 = 6, 258 mod 256 = 2.
        assert_eq!(chain_for_delivery(delivery, 7), ChainId::new(6));
        assert_eq!(chain_for_delivery(delivery, 256), ChainId::new(2));
        assert_eq!(chain_for_delivery(delivery, 1), ChainId::new(0));
    }

    #[test]
    fn chain_mapping_pinned_for_known_id() {
        // A change here moves existing deliveries to other chains.
        let delivery: DeliveryId = "7d3c9a1e-5b2f-4c8d-9e0a-1f2b3c4d5e6f".parse().unwrap();

        assert_eq!(chain_for_delivery(delivery, 16), ChainId::new(0xd));
        assert_eq!(chain_for_delivery(delivery, 1000), ChainId::new(189));
        assert_eq!(
            chain_for_delivery(delivery, u32::MAX),
            ChainId::new(3_630_950_059)
        );
    }

    #[test]
    fn chain_mapping_spreads_over_all_chains() {
        let mut counts = [0u32; 8];
        for index in 0u64..8_000 {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&index.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            let chain = chain_for_delivery(DeliveryId::from_bytes(bytes), 8);
            counts[chain.get() as usize] += 1;
        }

        for (chain, count) in counts.iter().enumerate() {
            assert!(
                (800..1_200).contains(count),
                "chain {chain} got {count} of 8000 deliveries"
            );
        }
    }

    #[test]
    #[should_panic(expected = "at least one chain")]
    fn chain_mapping_rejects_zero_chains() {
        chain_for_delivery(DeliveryId::from_bytes([0; 16]), 0);
    }
}
