//! The client-side budget every upstream call passes through.
//!
//! Genesys Cloud gives an OAuth client one shared budget (about 300 calls a
//! minute) and answers 429 beyond it. Three things keep us inside it:
//! a gate that holds every call while a `Retry-After` runs, a semaphore that
//! bounds calls in flight, and a GCRA rate limiter (`governor`) that spaces
//! them out.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

pub struct Budget {
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    /// No call may start before this instant: the latest `Retry-After`.
    not_before: Mutex<Option<Instant>>,
}

impl Budget {
    /// At most `per_minute` calls in any minute plus `burst`, and at most
    /// `concurrent` at once. Zeroes are treated as one.
    pub fn new(per_minute: u32, burst: u32, concurrent: usize) -> Budget {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);

        Budget {
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(concurrent.max(1)),
            not_before: Mutex::new(None),
        }
    }

    /// Waits until a call may go out; the call must be sent at once and the
    /// permit held until its answer arrives.
    pub async fn admit(&self) -> SemaphorePermit<'_> {
        loop {
            self.wait_for_gate().await;

            // The semaphore comes before the limiter: a call that took a cell
            // of the rate and then queued for a slot could go out later in a
            // bunch with others and overshoot the minute.
            let permit = self
                .in_flight
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.limiter.until_ready().await;

            // A 429 may have arrived while this call waited for its turn.
            if self.gate_deadline().is_none() {
                return permit;
            }
            drop(permit);
        }
    }

    /// Holds every call until `wait` has passed (a `Retry-After`).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut not_before = self.not_before.lock().expect("gate lock");
        if not_before.is_none_or(|current| current < until) {
            *not_before = Some(until);
        }
    }

    fn gate_deadline(&self) -> Option<Instant> {
        let mut not_before = self.not_before.lock().expect("gate lock");
        match *not_before {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                *not_before = None;
                None
            }
            None => None,
        }
    }

    async fn wait_for_gate(&self) {
        while let Some(until) = self.gate_deadline() {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_call_is_admitted_while_a_retry_after_runs() {
        let budget = Budget::new(6000, 10, 4);
        budget.pause_for(Duration::from_millis(150));

        let started = Instant::now();
        let _permit = budget.admit().await;

        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn the_burst_goes_out_at_once_and_the_rest_is_spaced() {
        // 600 a minute is one every 100 ms after a burst of 3.
        let budget = Budget::new(600, 3, 8);
        let started = Instant::now();

        for _ in 0..5 {
            drop(budget.admit().await);
        }

        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test]
    async fn calls_in_flight_are_bounded() {
        let budget = Budget::new(60_000, 100, 2);
        let first = budget.admit().await;
        let _second = budget.admit().await;

        let third = tokio::time::timeout(Duration::from_millis(50), budget.admit()).await;
        assert!(third.is_err(), "a third call waits for a slot");

        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), budget.admit()).await;
        assert!(third.is_ok());
    }
}
