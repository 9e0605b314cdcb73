//! The PostgreSQL backend: one database shared by any number of replicas.
//!
//! It keeps the SQLite backend's behaviour; what differs is what several
//! processes on one database need:
//!
//! - Nothing assumes it is alone. Startup resets no lease (another replica
//!   may hold it); a vanished worker's claims are taken over when their
//!   leases end.
//! - The decisions two replicas could take at once are serialised in the
//!   database: claiming (one advisory lock for the claim's transaction), a
//!   group's place in line (a per-group advisory lock while a removal is
//!   inserted) and an idempotency key (its primary key, `ON CONFLICT`).
//! - Leases are in the database's clock, so replicas whose clocks disagree
//!   still agree on when a lease ends.
//!
//! Every transaction runs at READ COMMITTED on purpose: each statement then
//! sees what was committed before it started, which the locking below relies
//! on (REPEATABLE READ would fix the snapshot before the lock is granted).

mod outbox;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use super::{
    Cancelled, Claimed, IdempotencyKey, Inserted, NewDelivery, Page, RemovalFilter, StoreError,
    lease_ms, parse_doc, stored_time, to_doc,
};
use crate::removal::{Progress, Removal, Status};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The key of the advisory lock every claim holds for its transaction
/// ("SCIM_RM1" in ASCII): claims run one at a time across all replicas.
const CLAIM_LOCK: i64 = 0x5343_494d_5f52_4d31;

/// The first half of the two-key advisory lock an insert holds on its group
/// ("SCIM"); the second is the group id's hash. Two-key locks never collide
/// with the one-key [`CLAIM_LOCK`].
const GROUP_LOCK_CLASS: i32 = 0x5343_494d;

/// Connections per replica: the worker's groups, their lease renewals and
/// the HTTP requests share them.
const MAX_CONNECTIONS: u32 = 16;

/// How long a caller waits for a connection before the store counts as not
/// answering (503, `/readyz` failing) rather than hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease a dry run gets while it is planned in the request: longer than
/// the 30 s the service gives the plan, so it is never taken over while its
/// request lives, and short enough that one left behind by a crashed process
/// stops holding up its group soon (a worker then plans it again; a dry run
/// never patches).
const DRY_RUN_LEASE: Duration = Duration::from_secs(120);

const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (e.g.
    /// `postgres://user:pass@host/db?sslmode=require`) and brings its schema
    /// up to date. Replicas starting together are fine: sqlx migrates under
    /// an advisory lock of its own.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Setup(format!("store.url: {error}")))?
            .application_name("scim-removals");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|error| StoreError::Setup(format!("migrating the database: {error}")))?;
        // Unlike SQLite, no lease is reset here: other replicas may be
        // working on this database right now. Claims of a process that is
        // gone are taken over as their leases end.
        Ok(PgStore { pool })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin_with(BEGIN).await?)
    }

    pub async fn insert(
        &self,
        removal: &Removal,
        key: Option<&IdempotencyKey>,
        retention_h: u64,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.begin().await?;

        // Inserts into one group take turns, so a removal's `seq` (its place
        // in line) is drawn only after the group's earlier removal has
        // committed: a claim can never see a later arrival of a group
        // without the earlier ones.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(GROUP_LOCK_CLASS)
            .bind(removal.group_id.as_str())
            .execute(&mut *tx)
            .await?;

        if let Some(key) = key
            && !take_key(&mut tx, key, removal.id, retention_h).await?
        {
            // Nothing was written: dropping the transaction rolls it back and
            // lets the group's lock go.
            return replay(&mut tx, key).await;
        }

        // A dry run arrives already running; its lease is what lets a worker
        // finish it should this process die while planning it.
        let lease = (removal.status == Status::Running).then(|| lease_ms(DRY_RUN_LEASE));
        sqlx::query(
            "INSERT INTO removals
                 (id, group_id, status, client, created_at, completed_at, doc, lease_until)
             VALUES ($1::uuid, $2, $3, $4, $5::timestamptz, $6::timestamptz, $7::jsonb,
                     statement_timestamp() + $8::bigint * interval '1 millisecond')",
        )
        .bind(removal.id.to_string())
        .bind(removal.group_id.as_str())
        .bind(removal.status.as_str())
        .bind(&removal.client)
        .bind(stored_time(removal.created_at))
        .bind(removal.completed_at.map(stored_time))
        .bind(to_doc(removal)?)
        .bind(lease)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        Ok(Inserted::Created(removal.clone()))
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Removal>, StoreError> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc::text FROM removals WHERE id = $1::uuid")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        doc.as_deref().map(parse_doc).transpose()
    }

    pub async fn list(&self, filter: &RemovalFilter) -> Result<Page, StoreError> {
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT seq, doc::text FROM removals WHERE TRUE");
        if let Some(group) = &filter.group_id {
            query
                .push(" AND group_id = ")
                .push_bind(group.as_str().to_string());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(member) = &filter.member {
            // Containment, so the GIN index on the array answers it.
            query
                .push(" AND doc -> 'requested_members' @> jsonb_build_array(")
                .push_bind(member.as_str().to_string())
                .push("::text)");
        }
        if let Some(since) = filter.since {
            query
                .push(" AND created_at >= ")
                .push_bind(stored_time(since))
                .push("::timestamptz");
        }
        if let Some(until) = filter.until {
            query
                .push(" AND created_at <= ")
                .push_bind(stored_time(until))
                .push("::timestamptz");
        }
        if let Some(after) = filter.after {
            query.push(" AND seq < ").push_bind(after);
        }
        // One more than asked tells whether there is a next page.
        query
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);

        let rows = query.build().fetch_all(&self.pool).await?;
        let (items, next) = super::page_of(&rows, filter.limit, |row| {
            Ok((row.get::<i64, _>(0), parse_doc(&row.get::<String, _>(1))?))
        })?;
        Ok(Page { items, next })
    }

    pub async fn cancel(&self, id: Uuid) -> Result<Cancelled, StoreError> {
        let mut tx = self.begin().await?;
        // FOR UPDATE waits for a claim of this row to commit and then reads
        // the claimed version, so a removal is never both claimed and
        // cancelled.
        let row =
            sqlx::query("SELECT status, doc::text FROM removals WHERE id = $1::uuid FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Ok(Cancelled::NotFound);
        };
        let mut removal = parse_doc(&row.get::<String, _>(1))?;
        if row.get::<String, _>(0) != Status::Queued.as_str() {
            return Ok(Cancelled::NotQueued(removal));
        }

        let now = chrono::Utc::now();
        removal.status = Status::Cancelled;
        removal.updated_at = now;
        removal.completed_at = Some(now);
        sqlx::query(
            "UPDATE removals SET status = $1, completed_at = $2::timestamptz, doc = $3::jsonb
             WHERE id = $4::uuid",
        )
        .bind(Status::Cancelled.as_str())
        .bind(stored_time(now))
        .bind(to_doc(&removal)?)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Cancelled::Cancelled(removal))
    }

    pub async fn count_with_status(&self, statuses: &[&str]) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM removals WHERE status = ANY($1)")
            .bind(statuses)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Claims the earliest removal that may run now, for every replica at
    /// once.
    ///
    /// Why this is race-free:
    /// 1. Every claim, in every replica, first takes one transaction-scoped
    ///    advisory lock, so claims run strictly one after another. The lock
    ///    is released only when the claiming transaction has committed.
    /// 2. At READ COMMITTED the UPDATE's snapshot is taken when the UPDATE
    ///    starts, after the lock was granted, so it sees every earlier claim
    ///    (its `running` status and live lease) and never picks a removal, or
    ///    a group, that another worker holds.
    /// 3. Writers that skip the lock only make a removal less claimable
    ///    (cancel, finish, renew) or claimable once its lease is over
    ///    (release). If one of them changes the chosen row after the
    ///    snapshot, the UPDATE waits for it and re-checks its own WHERE
    ///    against the new row, which repeats the status and lease test, so a
    ///    cancelled, finished or renewed removal is not taken.
    /// 4. A group's removals get their `seq` one insert at a time (see
    ///    [`PgStore::insert`]), so "no earlier unfinished removal" really
    ///    means arrival order.
    ///
    /// The critical section is one indexed statement, so serialising claims
    /// costs little next to the Genesys calls each removal makes.
    pub async fn claim_next(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *tx)
            .await?;

        let row = sqlx::query(
            "UPDATE removals
             SET status = 'running', claimed_by = $1,
                 lease_until = statement_timestamp() + $2::bigint * interval '1 millisecond',
                 doc = jsonb_set(doc, '{status}', '\"running\"')
             WHERE seq = (
                 SELECT r.seq FROM removals r
                 WHERE (r.status = 'queued'
                        OR (r.status = 'running' AND r.lease_until <= statement_timestamp()))
                   AND NOT EXISTS (
                       SELECT 1 FROM removals e
                       WHERE e.group_id = r.group_id AND e.seq < r.seq
                         AND e.status IN ('queued', 'running'))
                   AND NOT EXISTS (
                       SELECT 1 FROM removals b
                       WHERE b.group_id = r.group_id AND b.status = 'running'
                         AND b.lease_until > statement_timestamp())
                 ORDER BY r.seq
                 LIMIT 1)
               AND (status = 'queued'
                    OR (status = 'running' AND lease_until <= statement_timestamp()))
             RETURNING doc::text, progress::text",
        )
        .bind(worker)
        .bind(lease_ms(lease))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;

        let Some(row) = row else {
            return Ok(None);
        };
        let removal = parse_doc(&row.get::<String, _>(0))?;
        let progress = serde_json::from_str(&row.get::<String, _>(1))
            .map_err(|error| StoreError::Corrupt(format!("progress: {error}")))?;
        Ok(Some(Claimed { removal, progress }))
    }

    pub async fn save_progress(
        &self,
        id: Uuid,
        worker: &str,
        progress: &Progress,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let progress = serde_json::to_string(progress)
            .map_err(|error| StoreError::Corrupt(format!("progress: {error}")))?;
        let saved = sqlx::query(
            "UPDATE removals
             SET progress = $1::jsonb,
                 lease_until = statement_timestamp() + $2::bigint * interval '1 millisecond'
             WHERE id = $3::uuid AND claimed_by = $4 AND status = 'running'",
        )
        .bind(progress)
        .bind(lease_ms(lease))
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if saved == 0 {
            return Err(StoreError::ClaimLost(id));
        }
        Ok(())
    }

    pub async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE removals
             SET lease_until = statement_timestamp() + $1::bigint * interval '1 millisecond'
             WHERE id = $2::uuid AND claimed_by = $3 AND status = 'running'",
        )
        .bind(lease_ms(lease))
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn finish(
        &self,
        removal: &Removal,
        event: Option<&NewDelivery>,
    ) -> Result<(), StoreError> {
        // One transaction: a removal is never finished without its event.
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE removals SET status = $1, completed_at = $2::timestamptz, doc = $3::jsonb,
                 claimed_by = NULL, lease_until = NULL
             WHERE id = $4::uuid",
        )
        .bind(removal.status.as_str())
        .bind(removal.completed_at.map(stored_time))
        .bind(to_doc(removal)?)
        .bind(removal.id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(event) = event {
            outbox::insert_delivery(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends the lease at once, so the next claim, in any replica, takes the
    /// removal over. It stays `running`: a PATCH may already have gone out.
    pub async fn release(&self, id: Uuid, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE removals SET claimed_by = NULL, lease_until = '-infinity'
             WHERE id = $1::uuid AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn prune(&self, key_retention_h: u64, audit_days: u64) -> Result<u64, StoreError> {
        let mut pruned = sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE created_at < statement_timestamp() - make_interval(hours => $1)",
        )
        .bind(clamp_i32(key_retention_h, MAX_RETENTION_H))
        .execute(&self.pool)
        .await?
        .rows_affected();

        if audit_days > 0 {
            // A pruned removal's idempotency key goes with it (ON DELETE
            // CASCADE), so no key is left naming a removal that is gone.
            pruned += sqlx::query(
                "DELETE FROM removals
                 WHERE completed_at IS NOT NULL
                   AND completed_at < statement_timestamp() - make_interval(days => $1)
                   AND status NOT IN ('queued', 'running')",
            )
            .bind(clamp_i32(audit_days, MAX_RETENTION_DAYS))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(pruned)
    }
}

/// Retention beyond these would reach before the dates PostgreSQL can hold
/// (4713 BC); they are far longer than anyone keeps anything.
const MAX_RETENTION_H: i32 = 10_000_000;
const MAX_RETENTION_DAYS: i32 = 1_000_000;

fn clamp_i32(value: u64, max: i32) -> i32 {
    i32::try_from(value).map_or(max, |value| value.min(max))
}

/// Records `key` as used by `removal_id`, unless a live record of it exists.
/// An expired record is taken over. Returns whether the key is now ours.
///
/// The primary key decides between concurrent users of one key: the loser's
/// `ON CONFLICT` waits for the winner's transaction, then finds its record
/// live and returns no row.
async fn take_key(
    tx: &mut PgConnection,
    key: &IdempotencyKey,
    removal_id: Uuid,
    retention_h: u64,
) -> Result<bool, StoreError> {
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys AS k (client, key, removal_id, fingerprint, created_at)
         VALUES ($1, $2, $3::uuid, $4, statement_timestamp())
         ON CONFLICT (client, key) DO UPDATE
             SET removal_id = excluded.removal_id, fingerprint = excluded.fingerprint,
                 created_at = excluded.created_at
             WHERE k.created_at < statement_timestamp() - make_interval(hours => $5)
         RETURNING 1",
    )
    .bind(&key.client)
    .bind(&key.key)
    .bind(removal_id.to_string())
    .bind(&key.fingerprint)
    .bind(clamp_i32(retention_h, MAX_RETENTION_H))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(taken.is_some())
}

/// The answer for a key already in use: its removal when the request is the
/// same, else [`Inserted::KeyReused`].
async fn replay(tx: &mut PgConnection, key: &IdempotencyKey) -> Result<Inserted, StoreError> {
    // A fresh statement at READ COMMITTED sees the record that made the
    // insert conflict (its transaction has committed), and the conflict left
    // that record locked, so it cannot be pruned meanwhile.
    let row = sqlx::query(
        "SELECT k.fingerprint, r.doc::text
         FROM idempotency_keys k JOIN removals r ON r.id = k.removal_id
         WHERE k.client = $1 AND k.key = $2",
    )
    .bind(&key.client)
    .bind(&key.key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::Corrupt(
            "an idempotency key in use has no removal".into(),
        ));
    };
    if row.get::<String, _>(0) != key.fingerprint {
        return Ok(Inserted::KeyReused);
    }
    Ok(Inserted::Replayed(parse_doc(&row.get::<String, _>(1))?))
}
