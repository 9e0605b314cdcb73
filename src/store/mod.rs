//! Durable state: removals (queue and audit trail in one table),
//! idempotency keys, and the webhook outbox.
//!
//! SQLite is the default backend. The rest of the service sees only [`Store`]
//! and the types here, never a database type.

mod outbox;
mod sqlite;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::removal::{GroupId, MemberId, Progress, Removal, Status};

pub use outbox::{
    AttemptOutcome, Backlog, Delivery, DeliveryFilter, DeliveryPage, DeliveryStatus, DueDelivery,
    NewDelivery,
};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("cannot prepare the store: {0}")]
    Setup(String),
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
}

/// An idempotency key with what it was first used for.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub client: String,
    pub key: String,
    /// The group and the parsed body, as canonical JSON: a replay must match.
    pub fingerprint: String,
}

/// What became of an insert.
#[derive(Debug)]
pub enum Inserted {
    Created(Removal),
    /// The key was used before for the same request: here is its removal.
    Replayed(Removal),
    /// The key was used before for another group or body.
    KeyReused,
}

#[derive(Debug, Clone, Default)]
pub struct RemovalFilter {
    pub group_id: Option<GroupId>,
    pub member: Option<MemberId>,
    pub status: Option<Status>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
    /// Continue after this position (from the previous page's cursor).
    pub after: Option<i64>,
}

#[derive(Debug)]
pub struct Page {
    pub items: Vec<Removal>,
    /// Where the next page starts, when there is one.
    pub next: Option<i64>,
}

/// A removal a worker has claimed, with the progress it resumes from.
#[derive(Debug)]
pub struct Claimed {
    pub removal: Removal,
    pub progress: Progress,
}

#[derive(Debug)]
pub enum Cancelled {
    Cancelled(Removal),
    /// Running or finished: left unchanged.
    NotQueued(Removal),
    NotFound,
}

/// Which backend holds the state.
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the store `url` names and brings its schema up to date.
    ///
    /// # Errors
    /// An unsupported URL, a store another process holds, or a database that
    /// cannot be opened or migrated.
    pub async fn open(url: &SecretString) -> Result<Store, StoreError> {
        let url = url.expose_secret();
        if url.starts_with("sqlite:") {
            return Ok(Store::Sqlite(SqliteStore::open(url).await?));
        }
        Err(StoreError::Setup(
            "only sqlite: store URLs are supported by this build (see the README's limitations)"
                .into(),
        ))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.ping().await,
        }
    }

    /// Stores a new removal, or finds the one its idempotency key names.
    pub async fn insert(
        &self,
        removal: &Removal,
        key: Option<&IdempotencyKey>,
        retention_h: u64,
    ) -> Result<Inserted, StoreError> {
        match self {
            Store::Sqlite(store) => store.insert(removal, key, retention_h).await,
        }
    }

    pub async fn get(&self, id: uuid::Uuid) -> Result<Option<Removal>, StoreError> {
        match self {
            Store::Sqlite(store) => store.get(id).await,
        }
    }

    pub async fn list(&self, filter: &RemovalFilter) -> Result<Page, StoreError> {
        match self {
            Store::Sqlite(store) => store.list(filter).await,
        }
    }

    pub async fn cancel(&self, id: uuid::Uuid) -> Result<Cancelled, StoreError> {
        match self {
            Store::Sqlite(store) => store.cancel(id).await,
        }
    }

    pub async fn count_queued(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.count_with_status(&["queued"]).await,
        }
    }

    /// Queued plus running removals.
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.count_with_status(&["queued", "running"]).await,
        }
    }

    /// Claims the oldest removal that may run now: the first unfinished one
    /// of its group, whose group nobody else is working on.
    pub async fn claim_next(
        &self,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        match self {
            Store::Sqlite(store) => store.claim_next(worker, lease).await,
        }
    }

    /// Saves progress and extends the worker's lease.
    pub async fn save_progress(
        &self,
        id: uuid::Uuid,
        worker: &str,
        progress: &Progress,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.save_progress(id, worker, progress, lease).await,
        }
    }

    /// Keeps a long-running claim (waiting out a `Retry-After`, say) from
    /// being taken over while its worker is alive.
    pub async fn renew_lease(
        &self,
        id: uuid::Uuid,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.renew_lease(id, worker, lease).await,
        }
    }

    /// Saves a finished removal (or a dry run, planned synchronously) and,
    /// in the same transaction, its webhook event when it has one.
    pub async fn finish(
        &self,
        removal: &Removal,
        event: Option<&NewDelivery>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.finish(removal, event).await,
        }
    }

    /// Hands a claimed removal back to the queue, keeping its progress.
    pub async fn release(&self, id: uuid::Uuid, worker: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.release(id, worker).await,
        }
    }

    /// Deletes idempotency keys and, when asked, finished removals past their
    /// retention. Returns how many rows went.
    pub async fn prune(&self, key_retention_h: u64, audit_days: u64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.prune(key_retention_h, audit_days).await,
        }
    }
}

/// Timestamps as stored: fixed width, so that text order is time order.
fn stored_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn lease_end(lease: std::time::Duration) -> i64 {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    Utc::now().timestamp_millis() + lease_ms
}
