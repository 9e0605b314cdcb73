//! One upstream call, from budget to answer: waits for the budget, sends,
//! counts, and retries 429s, 5xx, timeouts and resets. Every other answer,
//! 4xx included, goes back to the caller to interpret.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reqwest::{RequestBuilder, Response, StatusCode};
use tracing::{debug, warn};

use super::budget::Budget;
use super::retry::{Schedule, retry_after};
use crate::config::RetrySettings;
use crate::removal::DirectoryError;
use crate::telemetry::Metrics;

/// What an upstream call is, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Token,
    GetGroup,
    PatchGroup,
    GetUser,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Token => "token",
            Operation::GetGroup => "get_group",
            Operation::PatchGroup => "patch_group",
            Operation::GetUser => "get_user",
        }
    }
}

/// Put in the extensions of a response when an earlier try of the same call
/// went unanswered (a 5xx, a timeout, a reset): that try may have been
/// carried out, which a PATCH's answer must take into account.
#[derive(Debug, Clone, Copy)]
pub struct EarlierTryUnanswered;

pub struct Transport {
    pub http: reqwest::Client,
    pub budget: Budget,
    pub retry: RetrySettings,
    pub metrics: Arc<Metrics>,
}

impl Transport {
    /// Sends the request `build` makes, as often as transient failures allow.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] once `max_attempts` are spent, or when
    /// Genesys asks for a wait longer than `max_retry_after_s`.
    pub async fn send(
        &self,
        operation: Operation,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, DirectoryError> {
        let mut schedule = Schedule::new(&self.retry);
        let mut last_problem = String::new();
        // A 429 is refused before anything is done; a 5xx or a lost answer
        // may hide a change that was made.
        let mut unanswered = false;

        for attempt in 1..=self.retry.max_attempts {
            let permit = self.budget.admit().await;
            let started = Instant::now();
            let sent = build().send().await;
            let seconds = started.elapsed().as_secs_f64();

            // The permit is held until the answer is read: a 429 must close
            // the gate before the slot goes to a call waiting for it, or that
            // call would go out inside the Retry-After.
            let wait = match sent {
                Ok(response) => {
                    let status = response.status();
                    self.metrics
                        .observe_upstream(operation.as_str(), status.as_str(), seconds);
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.metrics.rate_limited.inc();
                        let asked = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|value| value.to_str().ok())
                            .and_then(|value| retry_after(value, SystemTime::now()));
                        last_problem = "429 Too Many Requests".into();
                        log_upstream_problem(operation, &response, attempt);
                        match asked {
                            Some(wait) if wait.as_secs() > self.retry.max_retry_after_s => {
                                return Err(DirectoryError::Unavailable(format!(
                                    "Genesys Cloud asked to wait {} s, more than the {} s allowed",
                                    wait.as_secs(),
                                    self.retry.max_retry_after_s
                                )));
                            }
                            Some(wait) => {
                                // Every call waits, not just this one: the
                                // budget is the OAuth client's, shared by all.
                                self.budget.pause_for(wait);
                                wait
                            }
                            None => schedule.next_backoff(),
                        }
                    } else if status.is_server_error() {
                        unanswered = true;
                        last_problem = format!("{status}");
                        log_upstream_problem(operation, &response, attempt);
                        schedule.next_backoff()
                    } else {
                        let mut response = response;
                        if unanswered {
                            response.extensions_mut().insert(EarlierTryUnanswered);
                        }
                        return Ok(response);
                    }
                }
                Err(error) => {
                    unanswered = true;
                    self.metrics
                        .observe_upstream(operation.as_str(), "error", seconds);
                    last_problem = describe_transport_error(&error);
                    warn!(
                        operation = operation.as_str(),
                        attempt,
                        error = %last_problem,
                        "upstream call failed"
                    );
                    schedule.next_backoff()
                }
            };
            drop(permit);

            if attempt < self.retry.max_attempts {
                debug!(
                    operation = operation.as_str(),
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }

        Err(DirectoryError::Unavailable(format!(
            "{} failed {} times, last: {last_problem}",
            operation.as_str(),
            self.retry.max_attempts
        )))
    }
}

/// Genesys support asks for the correlation id, so every upstream error
/// carries it in the log.
pub fn log_upstream_problem(operation: Operation, response: &Response, attempt: u32) {
    let correlation_id = response
        .headers()
        .get("inin-correlation-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    warn!(
        operation = operation.as_str(),
        status = response.status().as_u16(),
        attempt,
        correlation_id,
        "upstream answered an error"
    );
}

/// Timeouts, refused connections and resets, without the URL (which holds
/// nothing secret, but is noise) or any header.
fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "answer body unreadable"
    } else {
        "request failed"
    };
    let mut detail = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}
