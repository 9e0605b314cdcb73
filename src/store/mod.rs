//! Durable state: removals (queue and audit trail in one table),
//! idempotency keys, and the webhook outbox.
//!
//! SQLite is the default backend, for one process; PostgreSQL serves several
//! replicas on one database. The rest of the service sees only [`Store`] and
//! the types here, never a database type. SQL lives with each backend, as the
//! two differ where it matters (locking, clocks, JSON).

mod outbox;
mod postgres;
mod sqlite;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::removal::{GroupId, MemberId, Progress, Removal, Status};

pub use outbox::{
    AttemptOutcome, Backlog, Delivery, DeliveryFilter, DeliveryPage, DeliveryStatus, DueDelivery,
    NewDelivery,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("cannot prepare the store: {0}")]
    Setup(String),
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
    /// The worker's lease ran out and another worker took the removal over:
    /// this one must stop before it sends anything more to Genesys.
    #[error("removal {0} is no longer claimed by this worker")]
    ClaimLost(uuid::Uuid),
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
    Postgres(PgStore),
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
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Ok(Store::Postgres(PgStore::open(url).await?));
        }
        Err(StoreError::Setup(
            "store.url must start with sqlite:, postgres: or postgresql:".into(),
        ))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.ping().await,
            Store::Postgres(store) => store.ping().await,
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
            Store::Postgres(store) => store.insert(removal, key, retention_h).await,
        }
    }

    pub async fn get(&self, id: uuid::Uuid) -> Result<Option<Removal>, StoreError> {
        match self {
            Store::Sqlite(store) => store.get(id).await,
            Store::Postgres(store) => store.get(id).await,
        }
    }

    pub async fn list(&self, filter: &RemovalFilter) -> Result<Page, StoreError> {
        match self {
            Store::Sqlite(store) => store.list(filter).await,
            Store::Postgres(store) => store.list(filter).await,
        }
    }

    pub async fn cancel(&self, id: uuid::Uuid) -> Result<Cancelled, StoreError> {
        match self {
            Store::Sqlite(store) => store.cancel(id).await,
            Store::Postgres(store) => store.cancel(id).await,
        }
    }

    pub async fn count_queued(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.count_with_status(&["queued"]).await,
            Store::Postgres(store) => store.count_with_status(&["queued"]).await,
        }
    }

    /// Queued plus running removals.
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.count_with_status(&["queued", "running"]).await,
            Store::Postgres(store) => store.count_with_status(&["queued", "running"]).await,
        }
    }

    /// Claims the oldest removal that may run now: the first unfinished one
    /// of its group, whose group nobody else is working on. On PostgreSQL
    /// this holds across every replica on the database.
    pub async fn claim_next(
        &self,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        match self {
            Store::Sqlite(store) => store.claim_next(worker, lease).await,
            Store::Postgres(store) => store.claim_next(worker, lease).await,
        }
    }

    /// Saves progress and extends the worker's lease.
    ///
    /// # Errors
    /// On PostgreSQL, [`StoreError::ClaimLost`] when another worker has taken
    /// the removal over: the engine saves progress before each PATCH, so this
    /// stops a worker that outlived its lease from patching next to the new
    /// one.
    pub async fn save_progress(
        &self,
        id: uuid::Uuid,
        worker: &str,
        progress: &Progress,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.save_progress(id, worker, progress, lease).await,
            Store::Postgres(store) => store.save_progress(id, worker, progress, lease).await,
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
            Store::Postgres(store) => store.renew_lease(id, worker, lease).await,
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
            Store::Postgres(store) => store.finish(removal, event).await,
        }
    }

    /// Hands a claimed removal back to the queue, keeping its progress.
    pub async fn release(&self, id: uuid::Uuid, worker: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.release(id, worker).await,
            Store::Postgres(store) => store.release(id, worker).await,
        }
    }

    /// Deletes idempotency keys and, when asked, finished removals past their
    /// retention. Returns how many rows went.
    pub async fn prune(&self, key_retention_h: u64, audit_days: u64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.prune(key_retention_h, audit_days).await,
            Store::Postgres(store) => store.prune(key_retention_h, audit_days).await,
        }
    }
}

/// Cuts rows fetched newest first with one more than `limit` into a page
/// and, when there is more, the position the next page starts after. `read`
/// gives each row's position and item.
fn page_of<R, T>(
    rows: &[R],
    limit: u32,
    read: impl Fn(&R) -> Result<(i64, T), StoreError>,
) -> Result<(Vec<T>, Option<i64>), StoreError> {
    let limit = limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last = None;
    for row in rows.iter().take(limit) {
        let (position, item) = read(row)?;
        last = Some(position);
        items.push(item);
    }
    Ok((items, if rows.len() > limit { last } else { None }))
}

fn to_doc(removal: &Removal) -> Result<String, StoreError> {
    serde_json::to_string(removal).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn parse_doc(doc: &str) -> Result<Removal, StoreError> {
    serde_json::from_str(doc).map_err(|error| StoreError::Corrupt(format!("removal: {error}")))
}

/// Timestamps as stored: fixed width, so that text order is time order (on
/// SQLite), and RFC 3339, which PostgreSQL reads as a `timestamptz`.
fn stored_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn lease_end(lease: std::time::Duration) -> i64 {
    Utc::now().timestamp_millis() + lease_ms(lease)
}

/// A lease's length in milliseconds, kept far from overflow.
fn lease_ms(lease: std::time::Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(row: &i64) -> Result<(i64, String), StoreError> {
        Ok((*row, format!("item {row}")))
    }

    #[test]
    fn a_row_beyond_the_limit_means_a_next_page_after_the_last_item() {
        let (items, next) = page_of(&[9, 8, 7], 2, read).unwrap();

        assert_eq!(items, vec!["item 9", "item 8"]);
        assert_eq!(next, Some(8));
    }

    #[test]
    fn the_last_page_has_no_next() {
        let (items, next) = page_of(&[9, 8], 2, read).unwrap();

        assert_eq!(items.len(), 2);
        assert_eq!(next, None);
    }
}
