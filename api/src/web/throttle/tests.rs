//! Tests of the password-guess throttle: delays, resets, networks, parallel and
//! abandoned guesses, and the bounded table.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn token(byte: u8) -> Hash32 {
    Hash32::from_bytes([byte; 32])
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn key(text: &str) -> ThrottleKey {
    ThrottleKey::new(token(1), ip(text))
}

/// Checks and fails one guess, which must be allowed.
fn fail(throttle: &Throttle, key: ThrottleKey, now: Instant) {
    assert_eq!(throttle.check(key, now), Ok(()), "guess should be allowed");
    throttle.record_failure(key, now);
}

#[test]
fn five_guesses_are_free() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..5 {
        fail(&throttle, client, now);
    }
    assert_eq!(
        throttle.check(client, now),
        Err(RetryAfter(Duration::from_secs(1)))
    );
}

#[test]
fn delay_doubles_each_failure() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let mut now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..5 {
        fail(&throttle, client, now);
    }
    for expected_secs in [1, 2, 4, 8, 16, 32] {
        let expected = Duration::from_secs(expected_secs);
        assert_eq!(throttle.check(client, now), Err(RetryAfter(expected)));
        let almost = now + expected - Duration::from_millis(1);
        assert!(throttle.check(client, almost).is_err(), "{expected_secs} s");
        now += expected;
        fail(&throttle, client, now);
    }
}

#[test]
fn delay_capped_at_fifteen_minutes() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let mut now = Instant::now();
    let client = key("192.0.2.1");
    let mut longest = Duration::ZERO;
    for _ in 0..200 {
        match throttle.check(client, now) {
            Ok(()) => throttle.record_failure(client, now),
            Err(RetryAfter(wait)) => {
                assert!(wait <= 15 * MINUTE, "waited {wait:?}");
                longest = longest.max(wait);
                now += wait;
            }
        }
    }
    assert_eq!(longest, 15 * MINUTE);
}

#[test]
fn success_resets_the_key() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..7 {
        let _ = throttle.check(client, now);
        throttle.record_failure(client, now);
    }
    assert!(throttle.check(client, now).is_err());

    throttle.record_success(client);
    assert_eq!(throttle.len(), 0);
    for _ in 0..5 {
        fail(&throttle, client, now);
    }
}

#[test]
fn other_ip_unaffected() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let attacker = key("198.51.100.7");
    for _ in 0..20 {
        let _ = throttle.check(attacker, now);
        throttle.record_failure(attacker, now);
    }
    assert!(throttle.check(attacker, now).is_err());
    assert_eq!(throttle.check(key("192.0.2.1"), now), Ok(()));
    assert_eq!(throttle.check(key("2001:db8::1"), now), Ok(()));
}

#[test]
fn other_token_unaffected() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = ip("192.0.2.1");
    let first = ThrottleKey::new(token(1), client);
    for _ in 0..10 {
        let _ = throttle.check(first, now);
        throttle.record_failure(first, now);
    }
    assert!(throttle.check(first, now).is_err());
    assert_eq!(
        throttle.check(ThrottleKey::new(token(2), client), now),
        Ok(())
    );
}

#[test]
fn ipv6_grouped_by_64() {
    assert_eq!(
        key("2001:db8:1:2::1"),
        key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    );
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));

    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    for host in 1..=5 {
        fail(&throttle, key(&format!("2001:db8:1:2::{host}")), now);
    }
    assert!(throttle.check(key("2001:db8:1:2::99"), now).is_err());
    assert_eq!(throttle.check(key("2001:db8:1:3::99"), now), Ok(()));
}

#[test]
fn ipv4_mapped_is_ipv4() {
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(ThrottleKey::new(token(1), mapped), key("192.0.2.1"));
    assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    assert_eq!(
        client_network(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
}

#[test]
fn parallel_guesses_limited() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..5 {
        assert_eq!(throttle.check(client, now), Ok(()));
    }
    assert!(throttle.check(client, now).is_err(), "sixth parallel guess");

    for _ in 0..5 {
        throttle.record_failure(client, now);
    }
    let later = now + Duration::from_secs(1);
    assert_eq!(throttle.check(client, later), Ok(()));
    assert!(
        throttle.check(client, later).is_err(),
        "second guess in flight"
    );
}

#[test]
fn abandoned_guess_counts_as_failure() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..5 {
        fail(&throttle, client, now);
    }
    let first = now + Duration::from_secs(1);
    assert_eq!(throttle.check(client, first), Ok(()));
    // The request is cancelled and never reports back.
    assert!(
        throttle
            .check(client, first + Duration::from_secs(30))
            .is_err()
    );

    let later = first + 2 * MINUTE;
    assert_eq!(throttle.check(client, later), Ok(()));
    throttle.record_failure(client, later);
    assert_eq!(
        throttle.check(client, later),
        Err(RetryAfter(Duration::from_secs(4))),
        "abandoned guess was the sixth failure, this one the seventh"
    );
}

#[test]
fn idle_key_is_forgotten() {
    let throttle = Throttle::new(ThrottleConfig::default());
    let now = Instant::now();
    let client = key("192.0.2.1");
    for _ in 0..8 {
        let _ = throttle.check(client, now);
        throttle.record_failure(client, now);
    }
    let next_day = now + Duration::from_secs(24 * 60 * 60);
    for _ in 0..5 {
        fail(&throttle, client, next_day);
    }
}

#[test]
fn table_size_is_bounded() {
    let config = ThrottleConfig {
        max_entries: 3,
        ..ThrottleConfig::default()
    };
    let throttle = Throttle::new(config);
    let start = Instant::now();
    for host in 0..10u8 {
        let now = start + Duration::from_secs(u64::from(host));
        throttle.record_failure(key(&format!("192.0.2.{host}")), now);
        assert!(throttle.len() <= 3, "{} entries", throttle.len());
    }
    let table = throttle.lock();
    assert!(table.entries.contains_key(&key("192.0.2.9")));
    assert!(table.entries.contains_key(&key("192.0.2.7")));
    assert!(!table.entries.contains_key(&key("192.0.2.6")));
    assert_eq!(table.by_age.len(), table.entries.len());
}

#[test]
fn forgotten_entries_evicted_first() {
    let config = ThrottleConfig {
        max_entries: 10,
        forget_after: MINUTE,
        ..ThrottleConfig::default()
    };
    let throttle = Throttle::new(config);
    let start = Instant::now();
    for host in 0..5u8 {
        throttle.record_failure(key(&format!("192.0.2.{host}")), start);
    }
    let recent = start + 2 * MINUTE;
    throttle.record_failure(key("198.51.100.1"), recent);
    assert_eq!(throttle.len(), 1);
}

#[test]
fn retry_after_rounds_up() {
    assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
    assert_eq!(RetryAfter(Duration::from_secs(2)).seconds(), 2);
    assert_eq!(RetryAfter(Duration::from_millis(2001)).seconds(), 3);
    assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
}
