//! Delay before the next try of a transiently failed e-mail.
//!
//! The delay is a pure function of the attempt number, without jitter, so the
//! `retry_at` recorded in a `NotificationDeferred` event can be recomputed from the log.

use std::time::Duration;

/// Delay after the first failed attempt.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Upper bound of every delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);

/// Returns how long to wait after attempt number `attempt` failed transiently.
///
/// `attempt` counts from 1, as in `NotificationAttempted::attempt`. The delay starts at
/// 30 s and doubles with each attempt up to 1 h: 30 s, 1 min, 2 min, 4 min, 8 min,
/// 16 min, 32 min, then 1 h for attempt 8 and every later one. Attempt 0 is treated as 1.
pub fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);

    // 2^7 * 30 s already passes the cap, so larger shifts need not be computed.
    if doublings >= 7 {
        return MAX_RETRY_DELAY;
    }
    let delay = FIRST_RETRY_DELAY * (1u32 << doublings);
    delay.min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_then_caps() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let expected = [
            (1, Duration::from_secs(30)),
            (2, minutes(1)),
            (3, minutes(2)),
            (4, minutes(4)),
            (5, minutes(8)),
            (6, minutes(16)),
            (7, minutes(32)),
            (8, minutes(60)),
            (9, minutes(60)),
            (40, minutes(60)),
            (u32::MAX, minutes(60)),
        ];
        for (attempt, delay) in expected {
            assert_eq!(retry_delay(attempt), delay, "attempt {attempt}");
        }
    }

    #[test]
    fn retry_delay_attempt_zero_is_first() {
        assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
    }

    #[test]
    fn retry_delay_never_decreases() {
        for attempt in 1..100 {
            assert!(retry_delay(attempt) <= retry_delay(attempt + 1));
        }
    }
}
