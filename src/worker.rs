//! The worker: claims queued removals from the store and runs them through the
//! engine, one removal per group at a time, several groups at once.
//!
//! Ordering lives in the claim: the store hands out only the earliest
//! unfinished removal of a group, and only while no live lease holds that
//! group. Removals left running by a process that died are taken over once
//! their lease ends (at once on SQLite, which one process owns).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::removal::{Journal, Progress};
use crate::service::RemovalService;
use crate::store::{Claimed, Store};

/// How often the store is asked for work when nothing wakes the worker:
/// removals queued by other replicas, and leases that ran out.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// How often, at most, the queue-depth gauge is refreshed. Every POST wakes
/// the worker; a store query on every wake-up would add one per POST.
const GAUGE_EVERY: Duration = Duration::from_millis(500);

/// How often housekeeping (retention) runs.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

pub struct Worker {
    service: Arc<RemovalService>,
    /// Names this process's claims in the store.
    id: String,
}

impl Worker {
    pub fn new(service: Arc<RemovalService>) -> Worker {
        Worker {
            service,
            id: format!("worker-{}", Uuid::new_v4()),
        }
    }

    /// Runs until `shutdown`, then gives in-flight removals `grace` to finish
    /// and hands the rest back to the store.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let slots = Arc::new(Semaphore::new(
            self.service.settings.worker.max_concurrent_groups,
        ));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut in_flight: Vec<(Uuid, tokio::task::AbortHandle)> = Vec::new();
        let mut last_prune = tokio::time::Instant::now() - PRUNE_EVERY;
        let mut last_gauge = tokio::time::Instant::now() - GAUGE_EVERY;
        info!(worker = %self.id, "worker started");

        while !shutdown.is_cancelled() {
            if last_gauge.elapsed() >= GAUGE_EVERY {
                last_gauge = tokio::time::Instant::now();
                self.update_queue_depth().await;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }

            // Fill every free slot with a removal that may run now.
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                let lease = self.lease();
                match self.service.store.claim_next(&self.id, lease).await {
                    Ok(Some(claimed)) => {
                        let id = claimed.removal.id;
                        let task = run_removal(self.service.clone(), self.id.clone(), claimed);
                        let handle = running.spawn(async move {
                            task.await;
                            drop(slot);
                        });
                        in_flight.push((id, handle));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        warn!(%error, "could not claim a removal");
                        break;
                    }
                }
            }

            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.service.queued.notified() => {}
                Some(_) = running.join_next() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
            in_flight.retain(|(_, handle)| !handle.is_finished());
        }

        self.drain(running, in_flight, grace).await;
    }

    async fn drain(
        &self,
        mut running: JoinSet<()>,
        in_flight: Vec<(Uuid, tokio::task::AbortHandle)>,
        grace: Duration,
    ) {
        let pending = in_flight
            .iter()
            .filter(|(_, handle)| !handle.is_finished())
            .count();
        info!(pending, grace_s = grace.as_secs(), "worker stopping");

        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return;
        }

        // Past the grace period: stop what is left and hand it back. Its
        // recorded intent lets whoever resumes it settle a PATCH in flight.
        running.abort_all();
        while running.join_next().await.is_some() {}
        // Releasing a removal that did finish changes nothing: only running
        // claims of this worker are released.
        for (id, _) in in_flight {
            if let Err(error) = self.service.store.release(id, &self.id).await {
                warn!(removal_id = %id, %error, "could not hand a removal back");
            }
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.service.settings.worker.lease_s)
    }

    async fn update_queue_depth(&self) {
        match self.service.store.queue_depth().await {
            Ok(depth) => self.service.metrics.queue_depth.set(depth as i64),
            Err(error) => warn!(%error, "could not count the queue"),
        }
    }

    async fn prune(&self) {
        let store = &self.service.settings.store;
        match self
            .service
            .store
            .prune(store.idempotency_retention_h, store.audit_retention_days)
            .await
        {
            Ok(0) => {}
            Ok(rows) => info!(rows, "pruned rows past their retention"),
            Err(error) => warn!(%error, "could not prune"),
        }

        // Delivered and dead webhook events carry the removal too, so they
        // go with the audit trail; pending ones stay until they are settled.
        if store.audit_retention_days > 0 {
            let days = i64::try_from(store.audit_retention_days)
                .unwrap_or(i64::MAX)
                .min(1_000_000);
            let before = chrono::Utc::now() - chrono::Duration::days(days);
            match self.service.store.prune_deliveries(before).await {
                Ok(0) => {}
                Ok(rows) => info!(rows, "pruned webhook deliveries past their retention"),
                Err(error) => warn!(%error, "could not prune webhook deliveries"),
            }
        }
    }
}

/// Runs one claimed removal to its end and saves it.
async fn run_removal(service: Arc<RemovalService>, worker: String, claimed: Claimed) {
    let Claimed {
        mut removal,
        progress,
    } = claimed;
    let span = info_span!("removal", removal_id = %removal.id, group_id = %removal.group_id);

    async move {
        let lease = Duration::from_secs(service.settings.worker.lease_s);
        let journal = StoreJournal {
            store: &service.store,
            id: removal.id,
            worker: &worker,
            lease,
        };

        // Renew the lease while the engine works, so a long Retry-After does
        // not let another worker take the removal over.
        let renewing = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(error) = service.store.renew_lease(removal.id, &worker, lease).await {
                    warn!(%error, "could not renew the lease");
                }
            }
        };
        let outcome = tokio::select! {
            outcome = service.engine.run(&removal, progress, &journal) => outcome,
            _ = renewing => unreachable!("the renewal loop never ends"),
        };

        match outcome {
            Ok(outcome) => {
                if let Err(error) = service.conclude(&mut removal, outcome).await {
                    error!(%error, "could not save a finished removal; it will run again");
                    let _ = service.store.release(removal.id, &worker).await;
                }
            }
            Err(error) => {
                error!(%error, "could not record progress; handing the removal back");
                let _ = service.store.release(removal.id, &worker).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// The engine's journal: progress goes to the removal's row.
struct StoreJournal<'a> {
    store: &'a Store,
    id: Uuid,
    worker: &'a str,
    lease: Duration,
}

impl Journal for StoreJournal<'_> {
    async fn save_progress(&self, progress: &Progress) -> Result<(), anyhow::Error> {
        self.store
            .save_progress(self.id, self.worker, progress, self.lease)
            .await?;
        Ok(())
    }
}
