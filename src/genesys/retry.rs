//! How long to wait before trying an upstream call again.
//!
//! Transient failures (5xx, timeouts, resets) back off exponentially with full
//! jitter: each wait is drawn uniformly between zero and the exponential cap,
//! so removals that failed together do not come back in lockstep. A 429 waits
//! exactly as long as Genesys asks, up to a ceiling.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use crate::config::RetrySettings;

/// The waits of one call's retries.
pub struct Schedule {
    caps: backon::ExponentialBackoff,
}

impl Schedule {
    pub fn new(settings: &RetrySettings) -> Schedule {
        // backon supplies the growing cap; the jitter below is drawn over the
        // whole of it, which backon's own jitter does not do.
        let caps = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(settings.base_delay_ms.max(1)))
            .with_max_delay(Duration::from_millis(settings.max_delay_ms.max(1)))
            .with_factor(2.0)
            .without_max_times()
            .build();
        Schedule { caps }
    }

    /// The wait before the next try.
    pub fn next_backoff(&mut self) -> Duration {
        let cap = self.caps.next().unwrap_or(Duration::from_secs(1));
        full_jitter(cap, &mut rand::rng())
    }
}

/// A wait drawn uniformly from zero to `cap`.
pub fn full_jitter(cap: Duration, rng: &mut impl Rng) -> Duration {
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=cap_ms))
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date
/// (a date in the past asks for no wait).
pub fn retry_after(header: &str, now: SystemTime) -> Option<Duration> {
    let header = header.trim();
    if let Ok(seconds) = header.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(header).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn retry_after_takes_seconds() {
        let now = SystemTime::now();
        assert_eq!(retry_after("42", now), Some(Duration::from_secs(42)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        let now = httpdate::parse_http_date("Thu, 03 Dec 2026 10:00:00 GMT").unwrap();
        let wait = retry_after("Thu, 03 Dec 2026 10:00:30 GMT", now);
        assert_eq!(wait, Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn an_unreadable_retry_after_is_ignored() {
        assert_eq!(retry_after("soon", SystemTime::now()), None);
        assert_eq!(retry_after("-5", SystemTime::now()), None);
    }

    #[test]
    fn full_jitter_stays_within_the_cap_and_spreads_out() {
        let mut rng = StdRng::seed_from_u64(7);
        let cap = Duration::from_millis(1000);
        let waits: Vec<Duration> = (0..200).map(|_| full_jitter(cap, &mut rng)).collect();

        assert!(waits.iter().all(|wait| *wait <= cap));
        assert!(waits.iter().any(|wait| *wait < Duration::from_millis(250)));
        assert!(waits.iter().any(|wait| *wait > Duration::from_millis(750)));
    }

    #[test]
    fn the_cap_grows_to_the_maximum_and_stays_there() {
        let settings = RetrySettings {
            max_attempts: 6,
            base_delay_ms: 100,
            max_delay_ms: 400,
            max_retry_after_s: 120,
            max_conflict_retries: 5,
        };
        let mut schedule = Schedule::new(&settings);
        let waits: Vec<Duration> = (0..6).map(|_| schedule.next_backoff()).collect();

        assert!(waits.iter().all(|wait| *wait <= Duration::from_millis(400)));
    }
}
