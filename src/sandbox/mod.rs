//! A simulated Genesys Cloud org, embedded: OAuth client credentials and the
//! SCIM group and user endpoints, served in-process, with knobs for latency,
//! rate limits, transient failures and version conflicts.
//!
//! It speaks what the service sends upstream and nothing more, the way
//! Genesys documents it; where Genesys is silent, RFC 7644 decides. It
//! depends on nothing else of the service, so it imitates Genesys rather than
//! mirroring the service's client, and a misbehaving client meets an error
//! instead of a lenient fake.
//!
//! # Layout
//!
//! - [`Org`] (`org.rs`): the state (groups, users, tokens, the request log)
//!   and what tests do to it: seed it, act as another administrator, inspect
//!   members, versions and requests.
//! - [`Knobs`] (`knobs.rs`): how slow and unreliable the org is.
//! - `routes.rs`: the axum router, the fault layer and the handlers.
//! - `patch.rs`: reading a PatchOp body into member changes.
//! - `seed.rs`: the demo data, whose ids are exported as constants.
//!
//! # Endpoints
//!
//! - `POST /oauth/token`: a bearer token, for `Authorization: Basic
//!   base64(id:secret)` and the form `grant_type=client_credentials`; else 401
//!   `invalid_client`, or 400 `invalid_request` / `unsupported_grant_type`.
//! - `GET /api/v2/scim/v2/groups`: a SCIM ListResponse of every group, paged by
//!   `startIndex` and `count` when given.
//! - `GET /api/v2/scim/v2/groups/{id}`: the group, its version both as
//!   `ETag: "N"` and as `meta.version`; 304 for a matching `If-None-Match`;
//!   404 for an unknown group.
//! - `PATCH /api/v2/scim/v2/groups/{id}`: applies a PatchOp, all of it or
//!   none, when `If-Match` is current; 200 with the group, or 204.
//! - `GET /api/v2/scim/v2/users/{id}`: the user; `attributes=roles` trims it
//!   to `id`, `schemas` and `roles`; 404 for an unknown user.
//!
//! `/api/v2/...` wants `Authorization: Bearer <token>` with a token the org
//! issued and that has not expired, else 401. Group and user ids match in any
//! letter case and come back in lower case.
//!
//! A PATCH is checked in this order: the group exists (404); `If-Match` is
//! present (400); the body is a PatchOp the sandbox understands (400
//! `invalidSyntax`, `invalidPath`, `invalidFilter`, `invalidValue`); the
//! `before_patch` hook and the `version_bump_rate` roll act as other
//! administrators; `If-Match` names the current version (else 400
//! `invalidVers`, 409 or 412 by [`ConflictStyle`]); every operation applies
//! (a filter naming a non-member is 400 `noTarget` and nothing is applied).
//! Success bumps the version.
//!
//! # Faults
//!
//! Each request, the token endpoint's included, is logged, then delayed by
//! `latency_ms`, then counted against `rate_limit_per_minute` (beyond it:
//! 429), then may be answered 429 by `error_429_rate` or 5xx by
//! `error_5xx_rate`, all before a handler runs, so a fault never changes a
//! group. Once a handler has run, `drop_connection_rate` may close the
//! connection instead of answering: the change is made, its answer is lost.
//! Every 429 carries `Retry-After: <retry_after_s>` and Genesys's
//! `too.many.requests.retry.after` body. Every answer carries
//! `ININ-Correlation-Id`, and the `inin-ratelimit-*` headers when a rate limit
//! is set. [`RecordedRequest::status`] is the status actually answered (0 for
//! a dropped connection).
//!
//! # Demo data ([`Org::demo`])
//!
//! Client credentials: `sandbox-client` / `sandbox-secret`.
//!
//! | user id | user name | roles |
//! | --- | --- | --- |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01` | ada.lovelace | Employee |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02` | grace.hopper | Employee |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b03` | alan.turing | Employee, Supervisor |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b04` | edsger.dijkstra | Master Admin (protected role) |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b05` | barbara.liskov | Employee |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b06` | ken.thompson | Employee |
//! | `6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b07` | break.glass | Master Admin (break-glass) |
//!
//! | group id | name | members (users by the id's last two digits) |
//! | --- | --- | --- |
//! | `0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01` | Support Tier 1 | 01, 02, 03, 04, 05 |
//! | `0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a02` | Billing | 05, 06, nested group …5a03 |
//! | `0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a03` | Escalations | 03, 07 |
//! | `0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a04` | Org Admins (to protect) | 04, 07 |
//!
//! Every demo group starts at version 1.
//!
//! # In a test
//!
//! ```ignore
//! let org = Org::demo();
//! let (address, _server) = org.spawn(([127, 0, 0, 1], 0).into()).await?;
//! // Another administrator adds a member between our read and our PATCH:
//! org.set_before_patch(Some(Arc::new(|org: &Org, group_id: &str| {
//!     org.add_member(group_id, Member::user("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b06"));
//! })));
//! ```
//!
//! # What it does not do
//!
//! - Only member changes: `replace`, and paths other than `members`, are
//!   refused with 400. Groups are created only by [`Org::put_group`] and
//!   never deleted.
//! - `GET` ignores `filter`, `attributes` and `excludedAttributes` on groups,
//!   and there is no user listing.
//! - No role grants (`/api/v2/authorization/...`), no 403 for missing
//!   permissions: the one OAuth client may do everything.
//! - One budget for the whole org, counting token requests too, where Genesys
//!   keeps one per token and resource.
//! - `If-Match: *` is not honoured: Genesys wants the version.
//! - Plain HTTP, with `$ref` and `meta.location` built from the `Host` header.

mod knobs;
mod org;
mod patch;
mod routes;
mod seed;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use knobs::{ConflictStyle, Knobs, PatchAnswer};
pub use org::{BeforePatch, Member, MemberKind, Org, RecordedRequest};
pub use seed::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_GROUP_BILLING, DEMO_GROUP_ESCALATIONS,
    DEMO_GROUP_ORG_ADMINS, DEMO_GROUP_SUPPORT, DEMO_PROTECTED_ROLE, DEMO_USER_ADA, DEMO_USER_ALAN,
    DEMO_USER_BARBARA, DEMO_USER_BREAK_GLASS, DEMO_USER_EDSGER, DEMO_USER_GRACE, DEMO_USER_KEN,
};

impl Org {
    /// The org's router: `/oauth/token` and `/api/v2/scim/v2/...` on one
    /// address, as `login` and `api` would be with `api_base_url` and
    /// `login_base_url` pointing at the same place.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Binds `address` (port 0 picks a free one) and serves the org in the
    /// background until the returned task is aborted or the runtime stops.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn spawn(
        &self,
        address: SocketAddr,
    ) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        let router = self.router();

        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the sandbox org stopped serving");
            }
        });
        Ok((bound, server))
    }
}

/// Runs the demo org alone on `listen` with the given knobs: prints its base
/// URL, client credentials and demo groups, then serves until Ctrl-C or
/// SIGTERM.
///
/// # Errors
///
/// When `listen` cannot be bound or serving fails.
pub async fn run_genesys_only(listen: SocketAddr, knobs: Knobs) -> std::io::Result<()> {
    let org = Org::demo();
    org.set_knobs(knobs);

    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    println!("{}", banner(&org, bound));
    tracing::info!(address = %bound, "the sandbox org is serving");

    axum::serve(listener, org.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("the sandbox org stopped");
    Ok(())
}

/// What `run_genesys_only` prints: enough to point a client at the org and to
/// try it with curl.
fn banner(org: &Org, bound: SocketAddr) -> String {
    // A wildcard address is not somewhere a client can connect to; the
    // loopback on the same port is, from this machine.
    let host = if bound.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), bound.port())
    } else {
        bound
    };
    let base_url = format!("http://{host}");

    let mut text = String::new();
    // Writing to a String cannot fail, so the results are ignored.
    let _ = writeln!(text, "Simulated Genesys Cloud org listening on {bound}");
    let _ = writeln!(text, "  base URL (api and login): {base_url}");
    let _ = writeln!(text, "  client id:                {}", org.client_id());
    let _ = writeln!(text, "  client secret:            {}", org.client_secret());
    let _ = writeln!(text, "  demo groups:");
    for group in org.groups() {
        let _ = writeln!(text, "    {}  {}", group.id, group.display_name);
    }
    let _ = writeln!(text, "  try:");
    let _ = writeln!(
        text,
        "    curl -s -u {}:{} -d grant_type=client_credentials {base_url}/oauth/token",
        org.client_id(),
        org.client_secret()
    );
    let _ = write!(
        text,
        "    curl -s -H 'Authorization: Bearer <access_token>' \
         {base_url}/api/v2/scim/v2/groups/{DEMO_GROUP_SUPPORT}"
    );
    text
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            // Without the handler, wait for the other signal instead of
            // shutting down at once.
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
