//! The removal service: the state built once at start (store, engine with its
//! Genesys client and token cache, metrics) and the operations the HTTP layer
//! and the worker share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, broadcast};
use tracing::info;
use uuid::Uuid;

use crate::config::Settings;
use crate::genesys::GenesysClient;
use crate::removal::{
    Engine, EngineSettings, FailureCode, Journal, Outcome, Progress, Removal, RemovalRequest,
    RuleBook, Status,
};
use crate::store::{IdempotencyKey, Inserted, Store, StoreError};
use crate::telemetry::Metrics;
use crate::webhook;

/// How long a dry run may wait on Genesys before it is answered as failed.
const DRY_RUN_LIMIT: Duration = Duration::from_secs(30);

pub struct RemovalService {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub engine: Engine<GenesysClient>,
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when a removal is queued.
    pub queued: Notify,
    /// Wakes the webhook task when an event enters the outbox.
    pub webhook_ready: Notify,
    /// Tells waiting requests (`Prefer: wait`) that a removal finished.
    finished: broadcast::Sender<Uuid>,
    shutting_down: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0} removals are already waiting")]
    QueueFull(u64),
    #[error("the idempotency key was used for another request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A submitted removal, and whether it is a replay of an earlier request.
pub struct Submitted {
    pub removal: Removal,
    pub replayed: bool,
}

impl RemovalService {
    /// Builds the service: opens the store and the Genesys client.
    ///
    /// # Errors
    /// A store that cannot be opened, or settings the client cannot use.
    pub async fn build(settings: Settings) -> anyhow::Result<Arc<RemovalService>> {
        let metrics = Arc::new(Metrics::new());
        let endpoints = settings.genesys_endpoints()?;
        let client = GenesysClient::new(&settings.genesys, &endpoints, metrics.clone())?;
        let engine = Engine::new(
            client,
            RuleBook::new(&settings.constraints),
            EngineSettings {
                max_conflict_retries: settings.genesys.retry.max_conflict_retries,
                max_operations_per_patch: settings.genesys.max_operations_per_patch,
            },
        );
        let store = Store::open(&settings.store.url).await?;
        let (finished, _) = broadcast::channel(1024);

        Ok(Arc::new(RemovalService {
            settings: Arc::new(settings),
            store,
            engine,
            metrics,
            queued: Notify::new(),
            webhook_ready: Notify::new(),
            finished,
            shutting_down: AtomicBool::new(false),
        }))
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Stores a new removal (dry runs are also planned, synchronously), or
    /// finds the one an earlier request with the same idempotency key made.
    ///
    /// # Errors
    /// A full queue, a reused key, or a store that does not answer.
    pub async fn submit(
        &self,
        request: RemovalRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Submitted, SubmitError> {
        let dry_run = request.dry_run;
        if !dry_run {
            let queued = self.store.count_queued().await?;
            if queued >= self.settings.worker.max_queued {
                return Err(SubmitError::QueueFull(queued));
            }
        }

        let mut removal = Removal::new(request, Utc::now());
        if dry_run {
            removal.status = Status::Running;
        }
        let retention = self.settings.store.idempotency_retention_h;
        let mut removal = match self.store.insert(&removal, key.as_ref(), retention).await? {
            Inserted::Created(removal) => removal,
            Inserted::Replayed(removal) => {
                return Ok(Submitted {
                    removal,
                    replayed: true,
                });
            }
            Inserted::KeyReused => return Err(SubmitError::KeyReused),
        };

        if dry_run {
            let outcome = self.plan_dry_run(&removal).await;
            self.conclude(&mut removal, outcome).await?;
        } else {
            self.queued.notify_one();
        }
        Ok(Submitted {
            removal,
            replayed: false,
        })
    }

    async fn plan_dry_run(&self, removal: &Removal) -> Outcome {
        let planned = self
            .engine
            .run(removal, Progress::default(), &DryRunJournal);
        match tokio::time::timeout(DRY_RUN_LIMIT, planned).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => unavailable(format!("dry run could not be planned: {error}")),
            Err(_) => unavailable("Genesys Cloud did not answer within 30 s".into()),
        }
    }

    /// Saves a finished removal with its webhook event (when webhooks are
    /// configured and the removal has one), counts it, and writes its audit
    /// event.
    ///
    /// # Errors
    /// When the store does not answer; the removal is then not finished.
    pub async fn conclude(
        &self,
        removal: &mut Removal,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        removal.finish(outcome, Utc::now());
        let event = if self.settings.webhook.url.is_empty() {
            None
        } else {
            webhook::event_for(removal)
                .map_err(|error| StoreError::Corrupt(format!("webhook event: {error}")))?
        };
        self.store.finish(removal, event.as_ref()).await?;
        if event.is_some() {
            self.webhook_ready.notify_one();
        }

        let metrics = &self.metrics;
        metrics
            .removals
            .with_label_values(&[removal.status.as_str()])
            .inc();
        if !removal.dry_run {
            metrics.members_removed.inc_by(removal.removed.len() as u64);
        }
        let rules = removal
            .blocked
            .iter()
            .map(|b| b.rule)
            .chain(removal.violations.iter().map(|v| v.rule));
        for rule in rules {
            metrics
                .constraint_violations
                .with_label_values(&[rule.as_str()])
                .inc();
        }

        let blocked: Vec<String> = removal
            .blocked
            .iter()
            .map(|b| format!("{}:{}", b.member, b.rule.as_str()))
            .collect();
        let removed: Vec<&str> = removal.removed.iter().map(|m| m.as_str()).collect();
        info!(
            target: "audit",
            removal_id = %removal.id,
            group_id = %removal.group_id,
            client = %removal.client,
            requested_by = removal.requested_by.as_deref().unwrap_or(""),
            reason = removal.reason.as_deref().unwrap_or(""),
            status = removal.status.as_str(),
            dry_run = removal.dry_run,
            removed = ?removed,
            blocked = ?blocked,
            error = removal.error.as_ref().map(|e| format!("{:?}", e.code)).unwrap_or_default(),
            attempts = removal.attempts,
            conflicts = removal.conflicts,
            "removal finished"
        );

        // Nobody listening is fine: no request is waiting for this one.
        let _ = self.finished.send(removal.id);
        Ok(())
    }

    /// Waits up to `limit` for the removal to finish, then returns it as it is.
    pub async fn wait_for(&self, id: Uuid, limit: Duration) -> Result<Option<Removal>, StoreError> {
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + limit;

        loop {
            let removal = self.store.get(id).await?;
            if removal
                .as_ref()
                .is_none_or(|removal| removal.status.is_final())
            {
                return Ok(removal);
            }
            // Another replica may finish it without telling us: look again
            // every second as well.
            let tick = tokio::time::Instant::now() + Duration::from_secs(1);
            let wake = tick.min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = async {
                    while let Ok(done) = finished.recv().await {
                        if done == id { break; }
                    }
                } => {}
            }
            // A waiting request must not hold the shutdown up: it gets the
            // removal as it is, and its Location to follow later.
            if tokio::time::Instant::now() >= deadline || self.is_shutting_down() {
                return self.store.get(id).await;
            }
        }
    }
}

fn unavailable(detail: String) -> Outcome {
    Outcome::failed_untouched(FailureCode::UpstreamUnavailable, detail)
}

/// A dry run sends no PATCH, so it has no progress to keep.
struct DryRunJournal;

impl Journal for DryRunJournal {
    async fn save_progress(&self, _progress: &Progress) -> Result<(), anyhow::Error> {
        anyhow::bail!("a dry run must never patch")
    }
}
