//! Throttling of password guesses on recipient links.
//!
//! Failures are counted per (link token hash, client network), where the network is
//! the IPv4 address or the IPv6 /64 prefix, because one IPv6 host usually controls a
//! whole /64. After 5 wrong passwords each further guess from that network must wait
//! 1 s, then 2 s, 4 s and so on, up to 15 minutes. Guesses from other networks are not
//! delayed, so an attacker cannot lock the real recipient out of their own link, and a
//! correct password clears the count of its network.
//!
//! An attacker with many networks gets 5 free guesses on each and a slow rate after
//! that, so the password hashing cost and the password strength must carry the rest.
//!
//! The table has a maximum size. When it is full, entries idle for longer than the
//! forget period go first, then the least recently used. Time is passed in by the
//! caller, so tests need not wait.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use consign_schemas::Hash32;

/// Limits of a [`Throttle`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThrottleConfig {
    /// Wrong guesses per key before any delay applies.
    pub(crate) free_guesses: u32,
    /// Delay after the first failure past the free guesses, doubled by each further one.
    pub(crate) base_delay: Duration,
    /// Upper bound of the delay.
    pub(crate) max_delay: Duration,
    /// Idle time after which an entry is dropped and its count starts again at zero.
    pub(crate) forget_after: Duration,
    /// Time after which a guess that was allowed but never reported as a success or a
    /// failure (a cancelled request) counts as a failure.
    pub(crate) abandoned_after: Duration,
    /// Maximum number of keys kept.
    pub(crate) max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_guesses: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(24 * 60 * 60),
            abandoned_after: Duration::from_secs(60),
            // Estimated at 200 to 350 bytes per entry for the map and the index together,
            // so 20 to 35 MB when full.
            max_entries: 100_000,
        }
    }
}

/// Unit of throttling: the link token's hash and the client network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ThrottleKey {
    token_hash: Hash32,
    network: IpAddr,
}

impl ThrottleKey {
    /// Builds the key of a guess on the link with `token_hash` from `client`.
    pub(crate) fn new(token_hash: Hash32, client: IpAddr) -> Self {
        Self {
            token_hash,
            network: client_network(client),
        }
    }
}

/// Maps an address to the network that is throttled as one: an IPv4 address (also
/// when written as an IPv4-mapped IPv6 address) or an IPv6 /64 prefix.
fn client_network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = v6.to_bits() & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from_bits(prefix))
            }
        },
    }
}

/// Time the client must wait before its next guess, for a `Retry-After` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub(crate) Duration);

impl RetryAfter {
    /// Returns the wait in whole seconds, rounded up so a client that waits exactly
    /// this long is allowed, and at least 1.
    pub(crate) fn seconds(&self) -> u64 {
        let whole = self.0.as_secs();
        let rounded = if self.0.subsec_nanos() > 0 {
            whole + 1
        } else {
            whole
        };
        rounded.max(1)
    }
}

/// Failure count of one key.
#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Guesses allowed by [`Throttle::check`] and not yet reported.
    in_flight: u32,
    /// Earliest time of the next guess.
    next_allowed: Instant,
    /// Time of the last check or report, which orders entries for eviction.
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<ThrottleKey, Entry>,
    /// `(last_seen, key)` of every entry, oldest first.
    by_age: BTreeSet<(Instant, ThrottleKey)>,
}

/// Password-guess throttle shared by all requests.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    table: Mutex<Table>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            table: Mutex::new(Table::default()),
        }
    }

    /// Decides whether a guess for `key` may be checked now.
    ///
    /// An allowed guess is counted as in flight until [`Self::record_failure`] or
    /// [`Self::record_success`] reports it. Once the free guesses are used up, only one
    /// guess per key may be in flight, so parallel requests cannot all pass before the
    /// first failure is recorded. A guess never reported counts as a failure after
    /// `abandoned_after`.
    ///
    /// # Errors
    ///
    /// Returns the time to wait when the key must not guess yet.
    pub(crate) fn check(&self, key: ThrottleKey, now: Instant) -> Result<(), RetryAfter> {
        let mut table = self.lock();
        let mut entry = self.current_entry(&table, &key, now);

        if now < entry.next_allowed {
            return Err(RetryAfter(entry.next_allowed - now));
        }
        let counted = entry.failures.saturating_add(entry.in_flight);
        if counted >= self.config.free_guesses && entry.in_flight > 0 {
            // The guess in flight decides the next delay, so the client is asked to
            // retry after the shortest one.
            return Err(RetryAfter(self.config.base_delay));
        }

        entry.in_flight += 1;
        entry.last_seen = now;
        table.store(key, entry, &self.config, now);
        Ok(())
    }

    /// Records a wrong password for `key`, starting or lengthening its delay.
    pub(crate) fn record_failure(&self, key: ThrottleKey, now: Instant) {
        let mut table = self.lock();
        let mut entry = self.current_entry(&table, &key, now);
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.failures = entry.failures.saturating_add(1);
        entry.next_allowed = entry
            .next_allowed
            .max(now + self.delay_after(entry.failures));
        entry.last_seen = now;
        table.store(key, entry, &self.config, now);
    }

    /// Records a correct password for `key`, which clears its count and delay.
    pub(crate) fn record_success(&self, key: ThrottleKey) {
        let mut table = self.lock();
        table.remove(&key);
    }

    /// Number of keys tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Returns the entry of `key` as of `now`: a fresh one if there is none or it was
    /// idle past `forget_after`, with abandoned guesses turned into failures.
    fn current_entry(&self, table: &Table, key: &ThrottleKey, now: Instant) -> Entry {
        let fresh = Entry {
            failures: 0,
            in_flight: 0,
            next_allowed: now,
            last_seen: now,
        };
        let Some(&stored) = table.entries.get(key) else {
            return fresh;
        };
        let mut entry = stored;
        let idle = now.saturating_duration_since(entry.last_seen);
        if entry.in_flight > 0 && idle >= self.config.abandoned_after {
            entry.failures = entry.failures.saturating_add(entry.in_flight);
            entry.in_flight = 0;
            let delay = self.delay_after(entry.failures);
            entry.next_allowed = entry.next_allowed.max(entry.last_seen + delay);
        }
        if entry.in_flight == 0 && idle >= self.config.forget_after && now >= entry.next_allowed {
            return fresh;
        }
        entry
    }

    /// Delay before the next guess once `failures` wrong guesses are recorded: none
    /// within the free guesses, then the base delay doubling with each failure.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(doublings) = failures.checked_sub(self.config.free_guesses) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.config
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.config.max_delay)
            .min(self.config.max_delay)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent even if a holder panicked: every update is a
        // plain insert or remove of both the map entry and its index item.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Inserts or updates `key`, making room first if the table is full.
    fn store(&mut self, key: ThrottleKey, entry: Entry, config: &ThrottleConfig, now: Instant) {
        if let Some(old) = self.entries.get(&key) {
            self.by_age.remove(&(old.last_seen, key));
        } else {
            self.make_room(config, now);
        }
        self.entries.insert(key, entry);
        self.by_age.insert((entry.last_seen, key));
    }

    fn remove(&mut self, key: &ThrottleKey) {
        if let Some(old) = self.entries.remove(key) {
            self.by_age.remove(&(old.last_seen, *key));
        }
    }

    /// Drops forgotten entries, then the least recently used ones, until one more
    /// entry fits.
    fn make_room(&mut self, config: &ThrottleConfig, now: Instant) {
        while let Some(&(last_seen, key)) = self.by_age.first() {
            let idle = now.saturating_duration_since(last_seen);
            let forgotten = idle >= config.forget_after;
            if !forgotten && self.entries.len() < config.max_entries {
                break;
            }
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
