//! When a failed delivery is tried again: `webhook.retry_schedule_ms` holds
//! the delay before each further attempt, so N entries allow N + 1 attempts.

use std::time::Duration;

/// Each delay moves by up to this fraction either way, so that deliveries
/// that failed together (a receiver outage) do not all come back together.
pub const JITTER_FRACTION: f64 = 0.2;

/// The delay before the next attempt, after `attempts` attempts (counting
/// the one that just failed), or `None` when the schedule has run out and
/// the delivery is dead.
///
/// `spread` is where the jitter falls, from -1.0 (20% earlier) to 1.0 (20%
/// later); values outside that range act as their nearest bound.
pub fn retry_delay(schedule_ms: &[u64], attempts: u32, spread: f64) -> Option<Duration> {
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let base = *schedule_ms.get(index)? as f64;
    let spread = if spread.is_nan() {
        0.0
    } else {
        spread.clamp(-1.0, 1.0)
    };
    let jittered = base * (1.0 + JITTER_FRACTION * spread);
    Some(Duration::from_millis(jittered.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: &[u64] = &[100, 200, 300];

    #[test]
    fn each_failed_attempt_waits_its_entry_of_the_schedule() {
        assert_eq!(
            retry_delay(SCHEDULE, 1, 0.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            retry_delay(SCHEDULE, 2, 0.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            retry_delay(SCHEDULE, 3, 0.0),
            Some(Duration::from_millis(300))
        );
    }

    #[test]
    fn the_attempt_after_the_last_entry_is_the_last_one() {
        assert_eq!(retry_delay(SCHEDULE, 4, 0.0), None);
        assert_eq!(retry_delay(&[], 1, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_either_way() {
        assert_eq!(
            retry_delay(SCHEDULE, 2, -1.0),
            Some(Duration::from_millis(160))
        );
        assert_eq!(
            retry_delay(SCHEDULE, 2, 1.0),
            Some(Duration::from_millis(240))
        );
        assert_eq!(
            retry_delay(SCHEDULE, 2, 7.0),
            Some(Duration::from_millis(240))
        );
        assert_eq!(
            retry_delay(SCHEDULE, 2, f64::NAN),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn no_attempt_yet_means_no_retry_delay() {
        assert_eq!(retry_delay(SCHEDULE, 0, 0.0), None);
    }
}
