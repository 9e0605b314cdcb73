//! The composition root: builds the service once, runs the HTTP API, the
//! worker and the webhook task side by side, and stops them in order on
//! SIGTERM or Ctrl-C.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::service::RemovalService;
use crate::webhook::Deliverer;
use crate::worker::Worker;

/// A service running in the background, as tests and the sandbox use it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub service: Arc<RemovalService>,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningApp {
    /// Starts the service on `settings.server.listen` (port 0 picks one).
    ///
    /// # Errors
    /// A store that cannot be opened, an address that cannot be bound.
    pub async fn start(settings: Settings) -> anyhow::Result<RunningApp> {
        let listener = TcpListener::bind(settings.listen_addr())
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let addr = listener.local_addr()?;
        let service = RemovalService::build(settings).await?;
        let deliverer = Deliverer::new(&service.settings.webhook, service.metrics.clone())
            .context("cannot start webhook delivery")?;
        let shutdown = CancellationToken::new();

        let handle = tokio::spawn(run(listener, service.clone(), deliverer, shutdown.clone()));
        info!(%addr, "scim-removals listening");
        Ok(RunningApp {
            addr,
            service,
            shutdown,
            handle,
        })
    }

    /// Asks the service to stop, as SIGTERM does, and waits until it has.
    ///
    /// # Errors
    /// Whatever stopped the server abnormally.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await.context("the service task panicked")?
    }

    /// Waits for SIGTERM or Ctrl-C, then stops.
    ///
    /// # Errors
    /// Whatever stopped the server abnormally.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown_signal() => info!("shutdown requested"),
            _ = self.shutdown.cancelled() => {}
        }
        self.stop().await
    }
}

/// Serves until `shutdown`, then: new requests get 503 while in-flight
/// removals get the grace period to finish (the rest are handed back) and
/// webhook attempts in flight their timeout, and only then does the listener
/// close.
async fn run(
    listener: TcpListener,
    service: Arc<RemovalService>,
    deliverer: Option<Deliverer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(service.settings.server.shutdown_grace_s);
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(service.clone()).run(worker_stop.clone(), grace));

    // The webhook task stops together with the worker rather than after it,
    // so shutdown stays within the grace period: events written while the
    // worker drains stay in the outbox and go out after the restart.
    let webhooks_stop = CancellationToken::new();
    let webhooks = deliverer.map(|deliverer| {
        let service = service.clone();
        let stop = webhooks_stop.clone();
        tokio::spawn(async move {
            deliverer
                .run(&service.store, &service.webhook_ready, stop)
                .await;
        })
    });

    let stopping = {
        let service = service.clone();
        async move {
            shutdown.cancelled().await;
            service.begin_shutdown();
            worker_stop.cancel();
            webhooks_stop.cancel();
            // Keep answering (503, Retry-After) while the worker drains, so
            // load balancers see a clear answer rather than refused
            // connections.
            let _ = worker.await;
            if let Some(webhooks) = webhooks {
                let _ = webhooks.await;
            }
        }
    };

    serve(listener, crate::http::router(service), stopping).await;
    info!("scim-removals stopped");
    Ok(())
}

/// How long a client may take to send a request's headers: on a new
/// connection, and between requests on a kept-alive one (hyper starts the
/// clock when it waits for a request's first byte, so an idle connection is
/// closed after this long too). Without it, a client that trickles its
/// headers a byte at a time holds a connection and its task for ever.
/// Not configurable: the contract has no key for it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an error that is not one
/// connection's (out of file descriptors, say), rather than spin on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` over HTTP/1.1 until `stopping` resolves, then stops accepting,
/// lets each connection finish the request it is answering, and returns once
/// all are closed.
///
/// This is `axum::serve` plus what it does not offer: hyper's header-read
/// timeout, which needs a timer that axum::serve never sets.
async fn serve(listener: TcpListener, app: Router, stopping: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(stopping);

    loop {
        tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = serve_connection(stream, app.clone(), &http, &closing);
                    connections.spawn(connection);
                }
                Err(error) if is_one_connections(&error) => {
                    debug!(%error, "a connection failed before it was accepted");
                }
                Err(error) => {
                    warn!(%error, "cannot accept connections");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next() => {}
        }
    }

    drop(listener);
    closing.cancel();
    while connections.join_next().await.is_some() {}
}

/// One connection's requests, until the client leaves or `closing` asks it
/// to finish the request in flight and close.
fn serve_connection(
    stream: TcpStream,
    app: Router,
    http: &http1::Builder,
    closing: &CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let closing = closing.clone();

    async move {
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = closing.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        // Clients that leave, send garbage or time out end here; hyper has
        // already answered what deserved an answer.
        if let Err(error) = ended {
            debug!(%error, "connection closed with an error");
        }
    }
}

/// Errors that concern one connection only: the next accept may succeed.
fn is_one_connections(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Settings for `scim-removals sandbox`: the service wired to the simulated
/// org at `genesys`, on a store of its own, with rules that show off the demo
/// data, and one API client whose token is `token`.
pub fn sandbox_settings(mut settings: Settings, genesys: SocketAddr, token: &str) -> Settings {
    use crate::sandbox;

    let url = format!("http://{genesys}");
    settings.genesys.api_base_url = url.clone();
    settings.genesys.login_base_url = url;
    settings.genesys.client_id = sandbox::DEMO_CLIENT_ID.into();
    settings.genesys.client_secret = sandbox::DEMO_CLIENT_SECRET.to_string().into();

    // Keep the demo off the real service's database unless told otherwise.
    use secrecy::ExposeSecret;
    if settings.store.url.expose_secret() == "sqlite://data/scim-removals.db" {
        settings.store.url = "sqlite://data/sandbox.db".to_string().into();
    }

    let constraints = &mut settings.constraints;
    if constraints.protected_roles.is_empty() {
        constraints
            .protected_roles
            .push(sandbox::DEMO_PROTECTED_ROLE.into());
    }
    if constraints.protected_members.is_empty() {
        constraints
            .protected_members
            .push(sandbox::DEMO_USER_BREAK_GLASS.into());
    }
    if constraints.protected_groups.is_empty() {
        constraints
            .protected_groups
            .push(sandbox::DEMO_GROUP_ORG_ADMINS.into());
    }

    settings.api.clients.push(crate::config::ApiClientSettings {
        name: "sandbox".into(),
        token_sha256: crate::http::token_sha256(token),
        scopes: crate::config::SCOPES
            .iter()
            .map(|scope| scope.to_string())
            .collect(),
    });
    settings
}

/// Example requests that work as printed against a sandbox at `service`.
pub fn sandbox_curl_lines(service: SocketAddr, token: &str) -> String {
    use crate::sandbox::{
        DEMO_GROUP_ORG_ADMINS, DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_EDSGER,
    };

    let base = format!("http://{service}");
    let auth = format!("-H 'Authorization: Bearer {token}'");
    let json = "-H 'Content-Type: application/json'";
    format!(
        "\
# Remove ada.lovelace from \"Support Tier 1\" and wait for the result:
curl -s -X POST {base}/groups/{DEMO_GROUP_SUPPORT}/removals {auth} {json} \\
  -H 'Prefer: wait=10' -d '{{\"members\": [\"{DEMO_USER_ADA}\"], \"reason\": \"demo\"}}'

# edsger.dijkstra holds the protected role \"Master Admin\": rejected, rule named:
curl -s -X POST {base}/groups/{DEMO_GROUP_SUPPORT}/removals {auth} {json} \\
  -H 'Prefer: wait=10' -d '{{\"members\": [\"{DEMO_USER_EDSGER}\"]}}'

# A dry run against the protected group \"Org Admins\":
curl -s -X POST {base}/groups/{DEMO_GROUP_ORG_ADMINS}/removals {auth} {json} \\
  -d '{{\"members\": [\"{DEMO_USER_EDSGER}\"], \"dry_run\": true}}'

# The audit trail, newest first:
curl -s {base}/removals {auth}
"
    )
}
