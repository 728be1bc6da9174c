//! Simple events whose stored envelope encodes to a chosen size, for throughput
//! benchmarks that need a fixed payload size instead of a realistic mix.
//!
//! The padded event is a `DeliveryWithdrawn` whose reason is filled with words, and
//! the smallest event is a `DeliveryExpired` by the scheduler. Sizes are measured on a
//! reference envelope, because the ledger fills in the position and time later.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use consign_schemas::events::{DeliveryExpired, DeliveryWithdrawn};
use consign_schemas::{
    AccountId, Actor, ChainId, CommandId, DeliveryId, Envelope, Event, EventId, Hash32, Position,
    SCHEMA_VERSION, SystemComponent, Timestamp,
};

use super::catalog::{self, PADDING_WORDS};
use super::chain_for_delivery;
use crate::{AppendRequest, NewEvent};

/// Position assumed when sizing: a varint of 4 bytes, as for chains of 2 to 268 million
/// events. Other positions change the size by up to 6 bytes.
const REFERENCE_POSITION: u64 = 10_000_000;

/// Time assumed when sizing: 2026-03-02T08:00:00Z, a varint of 8 bytes like any time
/// from 2005 to 2112.
const REFERENCE_TIME: Timestamp = Timestamp::from_micros(1_772_438_400_000_000);

/// Builds one event for a new random delivery whose stored envelope encodes to about
/// `target_bytes`.
///
/// On the reference envelope (position near ten million, a 2026 time, no idempotency
/// key), targets from 119 bytes up are met to within 1 byte. A smaller target gets
/// whichever unpadded event is closer, 101 or 119 bytes, so targets from 92 bytes up
/// are met to within 10%. The ledger's position changes the size by -3 to +6 bytes,
/// which can push targets near 110 bytes outside 10%.
pub fn sized_event(target_bytes: usize, rng: &mut impl Rng) -> NewEvent {
    let delivery = DeliveryId::from_bytes(catalog::uuid_bytes(rng));
    sized_event_for(delivery, target_bytes, rng)
}

/// An endless stream of requests of `events_per_request` sized events each.
///
/// Each request carries the events of one new delivery on that delivery's chain. The
/// stream is for throughput only: its deliveries were never submitted, so replaying it
/// through projections yields withdrawals of unknown deliveries.
#[derive(Debug)]
pub struct SizedRequests {
    rng: StdRng,
    target_bytes: usize,
    events_per_request: usize,
    chains: u32,
}

impl SizedRequests {
    /// Starts the stream.
    ///
    /// # Panics
    ///
    /// Panics if `chains` is zero.
    pub fn new(target_bytes: usize, events_per_request: usize, chains: u32, seed: u64) -> Self {
        assert!(chains > 0, "sized requests need at least one chain");
        SizedRequests {
            rng: StdRng::seed_from_u64(seed),
            target_bytes,
            events_per_request,
            chains,
        }
    }
}

impl Iterator for SizedRequests {
    type Item = AppendRequest;

    fn next(&mut self) -> Option<AppendRequest> {
        let delivery = DeliveryId::from_bytes(catalog::uuid_bytes(&mut self.rng));
        let command = CommandId::from_bytes(catalog::uuid_bytes(&mut self.rng));
        let events = (0..self.events_per_request)
            .map(|_| sized_event_for(delivery, self.target_bytes, &mut self.rng))
            .collect();
        Some(AppendRequest {
            chain: chain_for_delivery(delivery, self.chains),
            command,
            idempotency_key: None,
            events,
        })
    }
}

fn sized_event_for(delivery: DeliveryId, target_bytes: usize, rng: &mut impl Rng) -> NewEvent {
    let sizes = reference_sizes();
    if target_bytes < sizes.unpadded_withdrawal {
        let below = target_bytes.abs_diff(sizes.expiry);
        let above = sizes.unpadded_withdrawal - target_bytes;
        if below <= above {
            return expiry(delivery);
        }
    }

    // The reason's length prefix is a varint, so the prefix grows with the reason.
    let fixed = sizes.unpadded_withdrawal - varint_len(0);
    let mut reason_len = target_bytes.saturating_sub(fixed + 1);
    while reason_len > 0 && fixed + varint_len(reason_len) + reason_len > target_bytes {
        reason_len -= 1;
    }
    withdrawal(delivery, padding(reason_len, rng))
}

/// Encoded sizes of the two unpadded events on the reference envelope.
struct ReferenceSizes {
    expiry: usize,
    /// Size of a withdrawal with an empty reason.
    unpadded_withdrawal: usize,
}

fn reference_sizes() -> &'static ReferenceSizes {
    static SIZES: OnceLock<ReferenceSizes> = OnceLock::new();
    SIZES.get_or_init(|| {
        let delivery = DeliveryId::from_bytes([0x5a; 16]);
        ReferenceSizes {
            expiry: reference_envelope_size(expiry(delivery)),
            unpadded_withdrawal: reference_envelope_size(withdrawal(delivery, String::new())),
        }
    })
}

/// Encodes `event` in an envelope with the reference position and time.
fn reference_envelope_size(event: NewEvent) -> usize {
    let envelope = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::from_bytes([0xa5; 16]),
        chain: ChainId::new(0),
        position: Position::new(REFERENCE_POSITION),
        previous: Hash32::from_bytes([0x3c; 32]),
        time: REFERENCE_TIME,
        command: CommandId::from_bytes([0xc3; 16]),
        idempotency_key: None,
        actor: event.actor,
        event: event.event,
    };
    envelope
        .encode()
        .expect("postcard encodes every envelope of derived types")
        .len()
}

fn expiry(delivery: DeliveryId) -> NewEvent {
    NewEvent {
        actor: Actor::System(SystemComponent::Scheduler),
        event: Event::DeliveryExpired(DeliveryExpired { delivery }),
    }
}

/// Builds a withdrawal by an administrator. Its system actor is 16 bytes shorter than
/// an account actor, which narrows the gap to the unpadded expiry.
fn withdrawal(delivery: DeliveryId, reason: String) -> NewEvent {
    // The withdrawing account is fixed: sized streams model no accounts.
    let by = AccountId::from_bytes([0x11; 16]);
    NewEvent {
        actor: Actor::System(SystemComponent::Administration),
        event: Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery,
            by,
            reason,
        }),
    }
}

/// Builds `len` bytes of ASCII words separated by spaces.
fn padding(len: usize, rng: &mut impl Rng) -> String {
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(PADDING_WORDS.choose(rng).copied().unwrap_or("x"));
    }
    text.truncate(len);
    text
}

/// Returns the number of bytes of `value` as a postcard varint.
fn varint_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits as usize).div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use consign_schemas::EventKind;

    use super::*;

    fn envelope_size(event: &NewEvent, position: u64) -> usize {
        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId::random(),
            chain: ChainId::new(3),
            position: Position::new(position),
            previous: Hash32::from_bytes([7; 32]),
            time: Timestamp::now(),
            command: CommandId::random(),
            idempotency_key: None,
            actor: event.actor.clone(),
            event: event.event.clone(),
        };
        envelope.encode().unwrap().len()
    }

    #[test]
    fn sized_event_within_ten_percent() {
        let mut rng = StdRng::seed_from_u64(1);
        for target in [100, 128, 200, 256, 500, 1_024, 4_096, 65_536] {
            for position in [0, 5_000, REFERENCE_POSITION, u64::from(u32::MAX)] {
                let size = envelope_size(&sized_event(target, &mut rng), position);
                let deviation = size.abs_diff(target) as f64 / target as f64;
                assert!(
                    deviation <= 0.10,
                    "target {target} at position {position}: {size} bytes"
                );
            }
        }
    }

    #[test]
    fn sized_event_sweep_on_reference_envelope() {
        let mut rng = StdRng::seed_from_u64(2);
        let padded_from = reference_sizes().unpadded_withdrawal;
        for target in 92..=3_000 {
            let size = envelope_size(&sized_event(target, &mut rng), REFERENCE_POSITION);
            let deviation = size.abs_diff(target) as f64 / target as f64;

            assert!(deviation <= 0.10, "target {target}: {size} bytes");
            if target >= padded_from {
                // One byte short where the reason's length prefix grows to 2 bytes.
                assert!(size.abs_diff(target) <= 1, "target {target}: {size} bytes");
            }
        }
    }

    #[test]
    fn small_target_gets_expiry() {
        let mut rng = StdRng::seed_from_u64(3);
        let event = sized_event(100, &mut rng);

        assert_eq!(event.event.kind(), EventKind::DeliveryExpired);
        assert_eq!(reference_sizes().expiry, 101);
        assert_eq!(reference_sizes().unpadded_withdrawal, 119);
    }

    #[test]
    fn sized_requests_map_delivery_to_chain() {
        let requests: Vec<AppendRequest> = SizedRequests::new(1_024, 3, 4, 9).take(50).collect();

        for request in &requests {
            let delivery = request.events[0].event.delivery().unwrap();
            assert_eq!(request.events.len(), 3);
            assert_eq!(request.chain, chain_for_delivery(delivery, 4));
            assert!(
                request
                    .events
                    .iter()
                    .all(|e| e.event.delivery() == Some(delivery))
            );
        }
    }

    #[test]
    fn sized_requests_repeat_per_seed() {
        let first: Vec<_> = SizedRequests::new(256, 1, 2, 5).take(5).collect();
        let second: Vec<_> = SizedRequests::new(256, 1, 2, 5).take(5).collect();

        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.command, b.command);
            assert_eq!(a.events, b.events);
        }
    }

    #[test]
    fn varint_len_matches_postcard() {
        for value in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_152] {
            let encoded = postcard_len(value);
            assert_eq!(varint_len(value), encoded, "value {value}");
        }
    }

    fn postcard_len(value: usize) -> usize {
        // A string's length prefix is the same varint as a bare usize.
        let text = "a".repeat(value);
        let event = withdrawal(DeliveryId::from_bytes([0; 16]), text);
        reference_envelope_size(event) - value - reference_sizes().unpadded_withdrawal + 1
    }
}
