//! The webhook task: drains the outbox into `webhook.url`.
//!
//! One loop owns every store write; the attempts themselves run as separate
//! tasks (at most [`MAX_IN_FLIGHT`] at once) that only speak HTTP, with a
//! client of their own. So a slow or failing receiver holds no store lock,
//! takes none of the Genesys client's connections or budget, and never
//! delays a removal: the worst it can do is fill this task's slots.
//!
//! The loop wakes when a removal finishes with an event (or an operator asks
//! for a redelivery), when an attempt ends, when a retry it scheduled falls
//! due, and every [`POLL_EVERY`] in any case, which is how deliveries left
//! pending by an earlier process (or another replica) are picked up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use uuid::Uuid;

use super::schedule::retry_delay;
use super::signature::{InvalidSecret, Signer};
use crate::config::WebhookSettings;
use crate::store::{AttemptOutcome, DueDelivery, Store};
use crate::telemetry::Metrics;

/// Attempts on the wire at once.
pub const MAX_IN_FLIGHT: usize = 8;

/// How often the store is asked for due deliveries when nothing else wakes
/// the task.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Added to the attempt timeout while a delivery is claimed: recording the
/// outcome must fit in it, or another claim could send the delivery again.
/// It is also how long a delivery whose process died mid-attempt waits
/// (beyond the timeout) before it is tried again.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// `last_error` is kept short: it is for operators, not a log.
const MAX_ERROR_CHARS: usize = 300;

/// Why the webhook task cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Secret(#[from] InvalidSecret),
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The webhook task, ready to run.
pub struct Deliverer {
    /// Shared with the attempts in flight.
    sender: Arc<Sender>,
    schedule_ms: Vec<u64>,
    metrics: Arc<Metrics>,
}

/// Everything an attempt needs, and nothing of the store.
#[derive(Debug)]
struct Sender {
    /// Our own client: its timeout is `webhook.timeout_ms`, and a receiver
    /// that hangs ties up none of the Genesys client's connections.
    client: reqwest::Client,
    url: String,
    signer: Signer,
    timeout: Duration,
}

/// A finished attempt, handed back to the loop to be recorded.
struct Attempted {
    delivery: DueDelivery,
    /// `Err` holds what went wrong, as `last_error` shows it.
    result: Result<(), String>,
}

impl Deliverer {
    /// The task for `settings`, or `None` when no `webhook.url` is set (the
    /// outbox then stays empty, and anything already pending waits).
    ///
    /// # Errors
    /// A malformed secret, or a client that cannot be built.
    pub fn new(
        settings: &WebhookSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Deliverer>, SetupError> {
        if settings.url.is_empty() {
            return Ok(None);
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A receiver's answer is the answer: a redirect is not a 2xx.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scim-removals/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let sender = Sender {
            client,
            url: settings.url.clone(),
            signer: Signer::new(&settings.secret)?,
            timeout,
        };
        Ok(Some(Deliverer {
            sender: Arc::new(sender),
            schedule_ms: settings.retry_schedule_ms.clone(),
            metrics,
        }))
    }

    /// Delivers until `shutdown`, then lets the attempts in flight finish
    /// (they end within the timeout) and records them.
    pub async fn run(self, store: &Store, wake: &Notify, shutdown: CancellationToken) {
        let mut sending: JoinSet<Attempted> = JoinSet::new();
        // Ids on the wire now: a claim that returns one of them again (its
        // hold ran out while the store was slow) must not send it twice.
        let mut in_flight: HashSet<Uuid> = HashSet::new();
        // Retries this process scheduled, so it wakes when each falls due
        // rather than at the next poll.
        let mut retries: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
        info!(max_in_flight = MAX_IN_FLIGHT, "webhook task started");

        while !shutdown.is_cancelled() {
            self.update_gauges(store).await;
            self.start_due(store, &mut sending, &mut in_flight).await;

            let now = Instant::now();
            while retries.peek().is_some_and(|Reverse(at)| *at <= now) {
                retries.pop();
            }
            let next_retry = retries.peek().map(|Reverse(at)| *at);
            let wake_at = next_retry.map_or(now + POLL_EVERY, |at| at.min(now + POLL_EVERY));

            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                Some(joined) = sending.join_next() => {
                    if let Some(retry_at) = self.record(store, joined, &mut in_flight).await {
                        retries.push(Reverse(retry_at));
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }

        self.drain(store, sending, &mut in_flight).await;
        self.update_gauges(store).await;
        info!("webhook task stopped");
    }

    /// Claims what is due, up to the free slots, and starts an attempt for
    /// each.
    async fn start_due(
        &self,
        store: &Store,
        sending: &mut JoinSet<Attempted>,
        in_flight: &mut HashSet<Uuid>,
    ) {
        let free = MAX_IN_FLIGHT.saturating_sub(sending.len());
        if free == 0 {
            return;
        }
        let hold = self.sender.timeout + CLAIM_MARGIN;
        let due = match store.claim_due_deliveries(free as u32, hold).await {
            Ok(due) => due,
            Err(error) => {
                warn!(%error, "could not claim webhook deliveries");
                return;
            }
        };
        for delivery in due {
            if !in_flight.insert(delivery.id) {
                continue;
            }
            let sender = self.sender.clone();
            let span = info_span!(
                "webhook_attempt",
                webhook_id = %delivery.webhook_id,
                attempt = delivery.attempts + 1
            );
            sending.spawn(
                async move {
                    let result = sender.send(&delivery).await;
                    Attempted { delivery, result }
                }
                .instrument(span),
            );
        }
    }

    /// Records an ended attempt and counts it. Returns when the retry it
    /// scheduled is due, if it scheduled one.
    async fn record(
        &self,
        store: &Store,
        joined: Result<Attempted, tokio::task::JoinError>,
        in_flight: &mut HashSet<Uuid>,
    ) -> Option<Instant> {
        // An attempt that panicked or was aborted leaves its delivery
        // claimed; it is tried again once the claim's hold has passed.
        let Attempted { delivery, result } = match joined {
            Ok(attempted) => attempted,
            Err(error) => {
                warn!(%error, "a webhook attempt did not finish");
                return None;
            }
        };
        in_flight.remove(&delivery.id);

        let attempts = delivery.attempts.saturating_add(1);
        let spread = rand::rng().random_range(-1.0..=1.0);
        let (outcome, retry_in) = match result {
            Ok(()) => (AttemptOutcome::Delivered, None),
            Err(error) => match retry_delay(&self.schedule_ms, attempts, spread) {
                Some(delay) => {
                    let at = Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    (AttemptOutcome::Retry { error, at }, Some(delay))
                }
                None => (AttemptOutcome::Dead { error }, None),
            },
        };

        let webhook_id = delivery.webhook_id.as_str();
        let label = match &outcome {
            AttemptOutcome::Delivered => {
                info!(webhook_id, attempts, "webhook delivered");
                "delivered"
            }
            AttemptOutcome::Retry { error, .. } => {
                let retry_in_ms = retry_in.map_or(0, |delay| delay.as_millis());
                warn!(webhook_id, attempts, %error, retry_in_ms, "webhook attempt failed");
                "failed_attempt"
            }
            AttemptOutcome::Dead { error } => {
                warn!(webhook_id, attempts, %error, "webhook delivery is dead");
                "dead"
            }
        };
        self.metrics
            .webhook_deliveries
            .with_label_values(&[label])
            .inc();

        if let Err(error) = store.record_attempt(delivery.id, &outcome).await {
            // The claim's hold still stands, so the delivery is tried again
            // after it: at least once, possibly twice.
            warn!(webhook_id, %error, "could not record a webhook attempt");
        }
        retry_in.map(|delay| Instant::now() + delay)
    }

    /// Waits for the attempts in flight (each ends within the timeout) and
    /// records them, so a restart does not send them again needlessly.
    async fn drain(
        &self,
        store: &Store,
        mut sending: JoinSet<Attempted>,
        in_flight: &mut HashSet<Uuid>,
    ) {
        if sending.is_empty() {
            return;
        }
        debug!(in_flight = sending.len(), "webhook task draining");
        let deadline = Instant::now() + self.sender.timeout + Duration::from_secs(1);
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, sending.join_next()).await {
            self.record(store, joined, in_flight).await;
        }
        // Anything still running past its own timeout is stuck: its claim's
        // hold brings it back after a restart.
        sending.abort_all();
    }

    async fn update_gauges(&self, store: &Store) {
        match store.webhook_backlog().await {
            Ok(backlog) => {
                let pending = i64::try_from(backlog.pending).unwrap_or(i64::MAX);
                let age = backlog
                    .oldest
                    .map_or(0, |oldest| (Utc::now() - oldest).num_seconds().max(0));
                self.metrics.webhook_pending.set(pending);
                self.metrics.webhook_oldest_pending_age.set(age);
            }
            Err(error) => warn!(%error, "could not measure the webhook backlog"),
        }
    }
}

impl Sender {
    /// One attempt, signed with this attempt's own timestamp.
    async fn send(&self, delivery: &DueDelivery) -> Result<(), String> {
        let timestamp = Utc::now().timestamp();
        let signature = self
            .signer
            .sign(&delivery.webhook_id, timestamp, &delivery.payload);

        let response = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;

        match response {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered HTTP {}", response.status())),
            Err(error) => Err(self.describe(error)),
        }
    }

    /// What went wrong, by its root cause (reqwest's own text is a
    /// generic "error sending request"), never with the URL, which may
    /// carry a receiver's token.
    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {} ms", self.timeout.as_millis());
        }
        let kind = if error.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let error = error.without_url();
        let mut root: &dyn std::error::Error = &error;
        while let Some(inner) = root.source() {
            root = inner;
        }
        let text = format!("{kind}: {root}");
        text.chars().take(MAX_ERROR_CHARS).collect()
    }
}
