//! The time source of the sequencer, the scheduler and the notifier.
//!
//! Production runs on [`Clock::system`]. Tests build a [`ManualClock`] and move it
//! forward by hand, so that delivery dates, expiries and retries fall due without real
//! waiting. Waiters wake when a manual clock is advanced, and also wake on their own
//! within a short real interval, so a loop that sleeps "until the next due time" never
//! misses an advance.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use consign_schemas::Timestamp;
use tokio::sync::Notify;

/// A shared clock: the system clock, or a manual one that tests move.
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<ManualState>),
}

struct ManualState {
    micros: AtomicI64,
    advanced: Notify,
}

impl Clock {
    /// Returns the operating system's UTC clock.
    pub fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    /// Reads the current time.
    pub fn now(&self) -> Timestamp {
        match &self.source {
            Source::System => Timestamp::now(),
            Source::Manual(state) => Timestamp::from_micros(state.micros.load(Ordering::SeqCst)),
        }
    }

    /// True for a clock that only moves when a test moves it.
    pub fn is_manual(&self) -> bool {
        matches!(self.source, Source::Manual(_))
    }

    /// Sleeps until `deadline` or at most `max`, whichever comes first; a manual clock
    /// also wakes the sleeper when it is advanced. Callers re-read [`Clock::now`] after
    /// waking, because a wake-up does not mean the deadline passed.
    pub async fn sleep_until(&self, deadline: Timestamp, max: Duration) {
        match &self.source {
            Source::System => {
                let remaining = deadline.as_micros().saturating_sub(self.now().as_micros());
                let wait = Duration::from_micros(u64::try_from(remaining).unwrap_or(0)).min(max);
                tokio::time::sleep(wait).await;
            }
            Source::Manual(state) => {
                let advanced = state.advanced.notified();
                if self.now() >= deadline {
                    return;
                }
                let _ = tokio::time::timeout(max, advanced).await;
            }
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(_) => write!(f, "Clock::Manual({})", self.now().as_micros()),
        }
    }
}

/// A clock for tests that moves forward only when the test advances it.
#[derive(Clone)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            state: Arc::new(ManualState {
                micros: AtomicI64::new(start.as_micros()),
                advanced: Notify::new(),
            }),
        }
    }

    /// Returns a [`Clock`] that reads this manual clock.
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(Arc::clone(&self.state)),
        }
    }

    /// Moves the clock forward by `by` and wakes every sleeper.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).expect("advance fits in i64 microseconds");
        self.state.micros.fetch_add(micros, Ordering::SeqCst);
        self.state.advanced.notify_waiters();
    }

    /// Sets the clock to `to`, which must not be earlier than now, and wakes every
    /// sleeper.
    ///
    /// # Panics
    ///
    /// Panics if `to` is earlier than the current reading: time never goes back.
    pub fn set(&self, to: Timestamp) {
        let previous = self.state.micros.swap(to.as_micros(), Ordering::SeqCst);
        assert!(
            previous <= to.as_micros(),
            "a manual clock never goes back: {previous} µs to {} µs",
            to.as_micros()
        );
        self.state.advanced.notify_waiters();
    }

    /// Moves the clock forward to `at` and wakes every sleeper. A clock that already
    /// reads `at` or later stays where it is.
    pub fn advance_to(&self, at: Timestamp) {
        let previous = self
            .state
            .micros
            .fetch_max(at.as_micros(), Ordering::SeqCst);
        if previous < at.as_micros() {
            self.state.advanced.notify_waiters();
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.state.micros.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({})", self.now().as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let manual = ManualClock::new(Timestamp::from_micros(1_000));
        let clock = manual.clock();
        assert_eq!(clock.now(), Timestamp::from_micros(1_000));

        manual.advance(Duration::from_millis(2));
        assert_eq!(clock.now(), Timestamp::from_micros(3_000));
        assert!(clock.is_manual());
        assert!(!Clock::system().is_manual());
    }

    #[tokio::test]
    async fn advancing_wakes_a_sleeper_before_its_real_timeout() {
        let manual = ManualClock::new(Timestamp::from_micros(0));
        let clock = manual.clock();
        let sleeper = tokio::spawn(async move {
            let started = std::time::Instant::now();
            clock
                .sleep_until(Timestamp::from_micros(60_000_000), Duration::from_secs(30))
                .await;
            started.elapsed()
        });

        tokio::time::sleep(Duration::from_millis(50)).await;
        manual.advance(Duration::from_secs(60));
        let slept = sleeper.await.unwrap();

        assert!(slept < Duration::from_secs(5), "slept {slept:?}");
    }

    #[test]
    fn advancing_to_an_earlier_time_keeps_the_reading() {
        let manual = ManualClock::new(Timestamp::from_micros(10));

        manual.advance_to(Timestamp::from_micros(25));
        manual.advance_to(Timestamp::from_micros(20));

        assert_eq!(manual.now(), Timestamp::from_micros(25));
    }

    #[test]
    #[should_panic(expected = "never goes back")]
    fn setting_a_manual_clock_back_panics() {
        let manual = ManualClock::new(Timestamp::from_micros(10));
        manual.set(Timestamp::from_micros(5));
    }
}
