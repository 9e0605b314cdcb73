//! The typed Genesys Cloud client: OAuth token, SCIM groups and users, within
//! the client-side budget. It implements the engine's [`Directory`].
//!
//! Layout: `budget` (rate, concurrency, `Retry-After` gate), `retry` (waits),
//! `transport` (one call with its retries and metrics), `token` (the cached
//! OAuth token), `scim` (wire shapes), and here the three operations.

mod budget;
mod retry;
mod scim;
mod token;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tracing::warn;

use crate::config::{GenesysEndpoints, GenesysSettings};
use crate::removal::{Directory, DirectoryError, GroupId, GroupSnapshot, MemberId, PatchAnswer};
use crate::telemetry::Metrics;

pub use budget::Budget;
pub use retry::{full_jitter, retry_after};
pub use scim::parse_group;

use scim::{PatchRequest, ScimError, ScimUserRoles};
use token::TokenCache;
use transport::{EarlierTryUnanswered, Operation, Transport, log_upstream_problem};

const SCIM_JSON: &str = "application/scim+json";

/// Past this many cached users, expired entries are swept on insert.
const ROLE_CACHE_SWEEP_AT: usize = 10_000;

pub struct GenesysClient {
    api: String,
    transport: Transport,
    tokens: TokenCache,
    roles: RoleCache,
}

impl GenesysClient {
    /// Builds the client and its one connection pool.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots, for instance).
    pub fn new(
        settings: &GenesysSettings,
        endpoints: &GenesysEndpoints,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<GenesysClient> {
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("scim-removals/", env!("CARGO_PKG_VERSION")))
            .build()?;

        let budget = Budget::new(
            settings.max_requests_per_minute,
            settings.max_burst,
            settings.max_concurrent_requests,
        );
        let transport = Transport {
            http,
            budget,
            retry: settings.retry.clone(),
            metrics,
        };
        let tokens = TokenCache::new(
            &endpoints.login,
            settings.client_id.clone(),
            settings.client_secret.clone(),
        );

        Ok(GenesysClient {
            api: endpoints.api.clone(),
            transport,
            tokens,
            roles: RoleCache::new(Duration::from_secs(settings.role_cache_ttl_s)),
        })
    }

    /// Sends an API call with the bearer token; on a 401, fetches a new token
    /// once and sends the call again. The answer carries
    /// [`EarlierTryUnanswered`] when any earlier try went unanswered.
    async fn call(
        &self,
        operation: Operation,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Response, DirectoryError> {
        let mut refreshed = false;
        let mut unanswered = false;
        loop {
            let token = self.tokens.get(&self.transport).await?;
            let mut response = self
                .transport
                .send(operation, || {
                    build(&self.transport.http, token.expose_secret())
                        .bearer_auth(token.expose_secret())
                })
                .await?;
            unanswered |= response
                .extensions()
                .get::<EarlierTryUnanswered>()
                .is_some();

            match response.status() {
                StatusCode::UNAUTHORIZED if !refreshed => {
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    log_upstream_problem(operation, &response, 1);
                    let status = response.status();
                    return Err(DirectoryError::Auth(format!(
                        "{} answered {status}",
                        operation.as_str()
                    )));
                }
                _ => {
                    if unanswered {
                        response.extensions_mut().insert(EarlierTryUnanswered);
                    }
                    return Ok(response);
                }
            }
        }
    }

    async fn fetch_roles(&self, member: &MemberId) -> Result<Vec<String>, DirectoryError> {
        let url = format!("{}/api/v2/scim/v2/users/{member}", self.api);
        let response = self
            .call(Operation::GetUser, |http, _| {
                http.get(&url)
                    .query(&[("attributes", "roles")])
                    .header("accept", SCIM_JSON)
            })
            .await?;

        match response.status() {
            status if status.is_success() => {
                let user: ScimUserRoles = response.json().await.map_err(unreadable)?;
                Ok(user.names())
            }
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            _ => Err(unexpected(Operation::GetUser, response).await),
        }
    }
}

impl Directory for GenesysClient {
    async fn read_group(&self, group: &GroupId) -> Result<GroupSnapshot, DirectoryError> {
        let url = format!("{}/api/v2/scim/v2/groups/{group}", self.api);
        let response = self
            .call(Operation::GetGroup, |http, _| {
                http.get(&url).header("accept", SCIM_JSON)
            })
            .await?;

        match response.status() {
            status if status.is_success() => {
                let etag = etag_of(&response);
                let body = response.bytes().await.map_err(unreadable)?;
                let group = parse_group(&body, etag, true).map_err(|error| {
                    DirectoryError::Unavailable(format!("unreadable answer: {error}"))
                })?;
                group.ok_or_else(|| {
                    DirectoryError::Unavailable("the group came without a version".into())
                })
            }
            StatusCode::NOT_FOUND => Err(DirectoryError::GroupNotFound),
            _ => Err(unexpected(Operation::GetGroup, response).await),
        }
    }

    async fn roles_of(&self, member: &MemberId) -> Result<Vec<String>, DirectoryError> {
        self.roles
            .get_or_fetch(member, || self.fetch_roles(member))
            .await
    }

    /// A PATCH retried after a timeout or a 5xx is still safe: it carries the
    /// `If-Match` of the version it was planned against, so if the first try
    /// did go through, the version moved and the retry is refused as a
    /// conflict. That conflict is [`DirectoryError::ConflictAfterLostAnswer`]:
    /// the engine then reads the group again, where the members are gone, and
    /// reports them removed from the intent it recorded. A conflict on a PATCH
    /// whose every try was answered is a plain [`DirectoryError::Conflict`]:
    /// nothing of it was applied.
    async fn remove_members(
        &self,
        group: &GroupId,
        version: &str,
        members: &[MemberId],
    ) -> Result<PatchAnswer, DirectoryError> {
        if members.is_empty() {
            return Err(DirectoryError::Rejected(
                "refusing a PATCH that names no member".into(),
            ));
        }
        let url = format!("{}/api/v2/scim/v2/groups/{group}", self.api);
        let body = PatchRequest::remove(members);
        let response = self
            .call(Operation::PatchGroup, |http, _| {
                http.patch(&url)
                    .header("if-match", version)
                    .header("accept", SCIM_JSON)
                    .json(&body)
            })
            .await?;

        let status = response.status();
        if status.is_success() {
            let etag = etag_of(&response);
            let bytes = response.bytes().await.map_err(unreadable)?;
            let answer = parse_group(&bytes, etag, false).ok().flatten();
            return Ok(answer.map_or(PatchAnswer::Accepted, PatchAnswer::Group));
        }

        if status == StatusCode::NOT_FOUND {
            return Err(DirectoryError::GroupNotFound);
        }
        let after_lost_answer = response
            .extensions()
            .get::<EarlierTryUnanswered>()
            .is_some();
        let correlation = correlation_of(&response);
        let error: ScimError = response.json().await.unwrap_or_default();
        let scim_type = error.scim_type.as_deref().unwrap_or("");
        let stale = matches!(
            status,
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
        ) || (status == StatusCode::BAD_REQUEST
            && (scim_type.eq_ignore_ascii_case("invalidVers")
                || scim_type.eq_ignore_ascii_case("noTarget")));

        let detail = format!(
            "{status} {scim_type} {}",
            error.detail.as_deref().unwrap_or_default()
        );
        if stale {
            self.transport.metrics.version_conflicts.inc();
            let detail = detail.trim().to_string();
            return Err(if after_lost_answer {
                DirectoryError::ConflictAfterLostAnswer(detail)
            } else {
                DirectoryError::Conflict(detail)
            });
        }
        warn!(
            status = status.as_u16(),
            scim_type,
            correlation_id = correlation,
            "patch refused"
        );
        Err(DirectoryError::Rejected(detail.trim().to_string()))
    }
}

fn etag_of(response: &Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn correlation_of(response: &Response) -> String {
    response
        .headers()
        .get("inin-correlation-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn unreadable(error: reqwest::Error) -> DirectoryError {
    DirectoryError::Unavailable(format!("unreadable answer: {error}"))
}

/// An answer none of the operations expects: logged with its correlation id.
async fn unexpected(operation: Operation, response: Response) -> DirectoryError {
    log_upstream_problem(operation, &response, 1);
    DirectoryError::Unavailable(format!(
        "{} answered {}",
        operation.as_str(),
        response.status()
    ))
}

/// Roles by user, kept for `role_cache_ttl_s`. Each user has its own async
/// lock, so concurrent look-ups of one user share a single upstream call.
struct RoleCache {
    ttl: Duration,
    entries: Mutex<HashMap<MemberId, Arc<tokio::sync::Mutex<Option<CachedRoles>>>>>,
}

struct CachedRoles {
    fetched_at: Instant,
    roles: Vec<String>,
}

impl RoleCache {
    fn new(ttl: Duration) -> RoleCache {
        RoleCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    async fn get_or_fetch<F, Fut>(
        &self,
        member: &MemberId,
        fetch: F,
    ) -> Result<Vec<String>, DirectoryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<String>, DirectoryError>>,
    {
        let entry = {
            let mut entries = self.entries.lock().expect("role cache lock");
            if entries.len() >= ROLE_CACHE_SWEEP_AT {
                let ttl = self.ttl;
                entries.retain(|_, entry| {
                    entry.try_lock().map_or(true, |cached| {
                        cached
                            .as_ref()
                            .is_some_and(|c| c.fetched_at.elapsed() < ttl)
                    })
                });
            }
            entries.entry(member.clone()).or_default().clone()
        };

        let mut cached = entry.lock().await;
        if let Some(hit) = cached
            .as_ref()
            .filter(|c| c.fetched_at.elapsed() < self.ttl)
        {
            return Ok(hit.roles.clone());
        }
        let roles = fetch().await?;
        *cached = Some(CachedRoles {
            fetched_at: Instant::now(),
            roles: roles.clone(),
        });
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn member() -> MemberId {
        MemberId::parse("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01").unwrap()
    }

    #[tokio::test]
    async fn concurrent_look_ups_of_one_user_share_one_call() {
        let cache = RoleCache::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(vec!["Employee".to_string()])
        };

        let id = member();
        let (a, b) = tokio::join!(
            cache.get_or_fetch(&id, fetch),
            cache.get_or_fetch(&id, fetch)
        );

        assert_eq!(a.unwrap(), vec!["Employee"]);
        assert_eq!(b.unwrap(), vec!["Employee"]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn roles_are_asked_again_after_the_ttl() {
        let cache = RoleCache::new(Duration::from_millis(10));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        };

        let id = member();
        cache.get_or_fetch(&id, fetch).await.unwrap();
        cache.get_or_fetch(&id, fetch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.get_or_fetch(&id, fetch).await.unwrap();

        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_look_up_is_not_cached() {
        let cache = RoleCache::new(Duration::from_secs(60));
        let id = member();

        let failed = cache
            .get_or_fetch(&id, || async {
                Err(DirectoryError::Unavailable("503".into()))
            })
            .await;
        let later = cache
            .get_or_fetch(&id, || async { Ok(vec!["A".to_string()]) })
            .await;

        assert!(failed.is_err());
        assert_eq!(later.unwrap(), vec!["A"]);
    }
}
