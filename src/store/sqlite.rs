//! The SQLite backend: one file, WAL mode, one process at a time.
//!
//! Writes go through a pool of one connection, reads through a pool of
//! several. SQLite admits one writer at a time anyway; with several writing
//! connections, the ones that lose the race for the lock wait in SQLite's
//! busy handler, which sleeps 1, 2, 5, 10, 15, 20 ms... and so turns a
//! burst of POSTs into tens of milliseconds of sleeping. Queued on the
//! writer pool instead, each write starts as soon as the previous one ends.
//! In WAL mode readers never wait for the writer. Removals stored without an
//! idempotency key reach the writer through `group_commit`, several to a
//! commit when many arrive at once.
//!
//! WAL checkpoints (copying committed pages back into the database file)
//! run in the background on a reading connection every half second. Left to
//! SQLite, the writer runs one each time the WAL passes 1,000 pages, inside
//! a commit, and every POST waiting behind that commit waits for the copy
//! too. The writer keeps a backstop at 10,000 pages, should the background
//! checkpoints fall behind.

mod group_commit;

mod outbox;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{
    Cancelled, Claimed, IdempotencyKey, Inserted, NewDelivery, Page, RemovalFilter, StoreError,
    lease_end, parse_doc, stored_time, to_doc,
};
use crate::removal::{Progress, Removal, Status};
use group_commit::{GroupCommit, RemovalRow, insert_rows};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Connections that read (the writer is one more).
const READERS: u32 = 4;

/// How often the background task checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// WAL pages (about 40 MiB) past which the writer checkpoints by itself, a
/// backstop for the background task; SQLite's default is 1,000.
const WRITER_CHECKPOINT_PAGES: &str = "10000";

pub struct SqliteStore {
    /// Reads: `get`, `list`, counts, `ping`.
    pool: SqlitePool,
    /// Every write, one at a time. The same pool as `pool` for an in-memory
    /// database, which lives in its one connection.
    writer: SqlitePool,
    /// Inserts without an idempotency key, committed together.
    inserts: GroupCommit,
    /// The background checkpoints; none for an in-memory database.
    _checkpoints: Option<Checkpoints>,
    /// Held open for the life of the store: its lock keeps a second process
    /// off the same file, where two workers would race each other's claims.
    _lock: Option<File>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `url`,
    /// e.g. `sqlite://data/scim-removals.db?synchronous=full`.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let (url, synchronous) = split_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|error| StoreError::Setup(format!("store.url: {error}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);

        let path = options.get_filename().to_path_buf();
        let in_memory = path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:");
        let lock = if in_memory {
            None
        } else {
            Some(lock_database(&path)?)
        };

        // A SQLite connection cannot be "lost" the way a network one can, so
        // the ping sqlx sends before handing a connection out would only add
        // a round trip to the connection's thread on every query.
        let pool_options = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .test_before_acquire(false)
        };
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES);
        let writer = pool_options(1).connect_with(writer_options).await?;
        MIGRATIONS
            .run(&writer)
            .await
            .map_err(|error| StoreError::Setup(format!("migrating the database: {error}")))?;

        // The file lock proves no other process works on this store, so any
        // lease left in it belongs to a process that is gone.
        sqlx::query(
            "UPDATE removals SET claimed_by = NULL, lease_until = 0 WHERE status = 'running'",
        )
        .execute(&writer)
        .await?;

        let pool = if in_memory {
            writer.clone()
        } else {
            pool_options(READERS).connect_with(options).await?
        };
        let checkpoints = (!in_memory).then(|| Checkpoints::start(pool.clone()));
        Ok(SqliteStore {
            pool,
            inserts: GroupCommit::start(writer.clone()),
            _checkpoints: checkpoints,
            writer,
            _lock: lock,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert(
        &self,
        removal: &Removal,
        key: Option<&IdempotencyKey>,
        retention_h: u64,
    ) -> Result<Inserted, StoreError> {
        let Some(key) = key else {
            // Committed (with others arriving at the same time) before this
            // returns; see `group_commit`.
            self.inserts.insert(removal_row(removal)?).await?;
            return Ok(Inserted::Created(removal.clone()));
        };

        // IMMEDIATE takes the write lock up front, so two requests with one
        // key cannot both read "unused" and then both write.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(
            "SELECT removal_id, fingerprint, created_at FROM idempotency_keys
             WHERE client = $1 AND key = $2",
        )
        .bind(&key.client)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await?;

        let expired_before = Utc::now().timestamp_millis() - hours_ms(retention_h);
        if let Some(row) = existing.filter(|row| row.get::<i64, _>(2) >= expired_before) {
            if row.get::<String, _>(1) != key.fingerprint {
                return Ok(Inserted::KeyReused);
            }
            let id: String = row.get(0);
            let doc: String = sqlx::query_scalar("SELECT doc FROM removals WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
            return Ok(Inserted::Replayed(parse_doc(&doc)?));
        }

        sqlx::query(
            "INSERT INTO idempotency_keys (client, key, removal_id, fingerprint, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client, key) DO UPDATE SET removal_id = excluded.removal_id,
                 fingerprint = excluded.fingerprint, created_at = excluded.created_at",
        )
        .bind(&key.client)
        .bind(&key.key)
        .bind(removal.id.to_string())
        .bind(&key.fingerprint)
        .bind(Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await?;

        insert_rows(&mut *tx, &[&removal_row(removal)?]).await?;
        tx.commit().await?;

        Ok(Inserted::Created(removal.clone()))
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Removal>, StoreError> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM removals WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        doc.as_deref().map(parse_doc).transpose()
    }

    pub async fn list(&self, filter: &RemovalFilter) -> Result<Page, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT seq, doc FROM removals WHERE 1 = 1");
        if let Some(group) = &filter.group_id {
            query
                .push(" AND group_id = ")
                .push_bind(group.as_str().to_string());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(member) = &filter.member {
            query
                .push(
                    " AND EXISTS (SELECT 1 FROM json_each(doc, '$.requested_members') \
                     WHERE json_each.value = ",
                )
                .push_bind(member.as_str().to_string())
                .push(")");
        }
        if let Some(since) = filter.since {
            query
                .push(" AND created_at >= ")
                .push_bind(stored_time(since));
        }
        if let Some(until) = filter.until {
            query
                .push(" AND created_at <= ")
                .push_bind(stored_time(until));
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT status, doc FROM removals WHERE id = $1")
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

        let now = Utc::now();
        removal.status = Status::Cancelled;
        removal.updated_at = now;
        removal.completed_at = Some(now);
        sqlx::query("UPDATE removals SET status = $1, completed_at = $2, doc = $3 WHERE id = $4")
            .bind(Status::Cancelled.as_str())
            .bind(stored_time(now))
            .bind(to_doc(&removal)?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Cancelled::Cancelled(removal))
    }

    /// Removals in `statuses`, which must be `queued` and/or `running`: the
    /// two that the `queue_counts` triggers keep (migration 0003), so that
    /// the count costs one row, not a walk over the queue.
    pub async fn count_with_status(&self, statuses: &[&str]) -> Result<u64, StoreError> {
        debug_assert!(
            statuses
                .iter()
                .all(|status| matches!(*status, "queued" | "running")),
            "only queued and running removals are counted"
        );
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT COALESCE(SUM(removals), 0) FROM queue_counts WHERE status IN (",
        );
        let mut list = query.separated(", ");
        for status in statuses {
            list.push_bind(status.to_string());
        }
        query.push(")");
        let count: i64 = query.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub async fn claim_next(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let now_ms = Utc::now().timestamp_millis();

        // One statement, so SQLite runs it atomically: pick the earliest
        // unfinished removal of a group that no live lease holds, and take it.
        let row = sqlx::query(
            "UPDATE removals
             SET status = 'running', claimed_by = $1, lease_until = $2,
                 doc = json_set(doc, '$.status', 'running')
             WHERE seq = (
                 SELECT r.seq FROM removals r
                 WHERE (r.status = 'queued' OR (r.status = 'running' AND r.lease_until <= $3))
                   AND NOT EXISTS (
                       SELECT 1 FROM removals e
                       WHERE e.group_id = r.group_id AND e.seq < r.seq
                         AND e.status IN ('queued', 'running'))
                   AND NOT EXISTS (
                       SELECT 1 FROM removals b
                       WHERE b.group_id = r.group_id AND b.status = 'running'
                         AND b.lease_until > $3)
                 ORDER BY r.seq
                 LIMIT 1)
             RETURNING doc, progress",
        )
        .bind(worker)
        .bind(lease_end(lease))
        .bind(now_ms)
        .fetch_optional(&self.writer)
        .await?;

        let Some(row) = row else {
            return Ok(None);
        };
        let mut removal = parse_doc(&row.get::<String, _>(0))?;
        removal.status = Status::Running;
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
        sqlx::query(
            "UPDATE removals SET progress = $1, lease_until = $2
             WHERE id = $3 AND claimed_by = $4",
        )
        .bind(progress)
        .bind(lease_end(lease))
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE removals SET lease_until = $1 WHERE id = $2 AND claimed_by = $3")
            .bind(lease_end(lease))
            .bind(id.to_string())
            .bind(worker)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn finish(
        &self,
        removal: &Removal,
        event: Option<&NewDelivery>,
    ) -> Result<(), StoreError> {
        // One transaction: a removal is never finished without its event.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE removals SET status = $1, completed_at = $2, doc = $3,
                 claimed_by = NULL, lease_until = NULL
             WHERE id = $4",
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

    /// Ends the lease at once, so the next claim takes the removal over. It
    /// stays `running` rather than `queued`: a PATCH may already have gone
    /// out, so it is no longer cancellable.
    pub async fn release(&self, id: Uuid, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE removals SET claimed_by = NULL, lease_until = 0
             WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn prune(&self, key_retention_h: u64, audit_days: u64) -> Result<u64, StoreError> {
        let keys_before = Utc::now().timestamp_millis() - hours_ms(key_retention_h);
        let mut pruned = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(keys_before)
            .execute(&self.writer)
            .await?
            .rows_affected();

        if audit_days > 0 {
            let days = i64::try_from(audit_days)
                .unwrap_or(i64::MAX / 2)
                .min(1_000_000);
            let before = Utc::now() - chrono::Duration::days(days);
            pruned += sqlx::query(
                "DELETE FROM removals
                 WHERE completed_at IS NOT NULL AND completed_at < $1
                   AND status NOT IN ('queued', 'running')",
            )
            .bind(stored_time(before))
            .execute(&self.writer)
            .await?
            .rows_affected();
        }
        Ok(pruned)
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] until dropped.
struct Checkpoints(tokio::task::JoinHandle<()>);

impl Checkpoints {
    fn start(readers: SqlitePool) -> Checkpoints {
        Checkpoints(tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // PASSIVE copies what it can without waiting for readers or
                // the writer, and never blocks them.
                let checkpoint = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)");
                if let Err(error) = checkpoint.execute(&readers).await {
                    tracing::warn!(%error, "could not checkpoint the WAL");
                }
            }
        }))
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A new removal's columns.
fn removal_row(removal: &Removal) -> Result<RemovalRow, StoreError> {
    Ok(RemovalRow {
        id: removal.id.to_string(),
        group_id: removal.group_id.as_str().to_string(),
        status: removal.status.as_str(),
        client: removal.client.clone(),
        created_at: stored_time(removal.created_at),
        completed_at: removal.completed_at.map(stored_time),
        doc: to_doc(removal)?,
    })
}

fn hours_ms(hours: u64) -> i64 {
    i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX / 2)
}

/// Takes our own `synchronous` parameter off the URL (sqlx does not know
/// it): NORMAL by default, FULL to survive power loss as well.
fn split_synchronous(url: &str) -> Result<(String, SqliteSynchronous), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), SqliteSynchronous::Normal));
    };
    let mut synchronous = SqliteSynchronous::Normal;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = SqliteSynchronous::from_str(value).map_err(|_| {
                    StoreError::Setup(format!("store.url: synchronous={value} is not known"))
                })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, synchronous))
}

/// Creates the database's folder and locks `<file>.lock` for this process.
fn lock_database(path: &Path) -> Result<File, StoreError> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder).map_err(|error| {
            StoreError::Setup(format!("cannot create {}: {error}", folder.display()))
        })?;
    }

    let mut lock_path = PathBuf::from(path);
    lock_path.as_mut_os_string().push(".lock");
    let file = File::create(&lock_path).map_err(|error| {
        StoreError::Setup(format!("cannot create {}: {error}", lock_path.display()))
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Setup(format!(
            "another process is using {}; SQLite serves one process at a time \
             (use PostgreSQL for several replicas)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(StoreError::Setup(format!(
            "cannot lock {}: {error}",
            lock_path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::removal::{GroupId, MemberId, Mode, RemovalRequest};

    fn temp_url(file: &str) -> String {
        let dir = std::env::temp_dir().join(format!("scim-removals-store-{}", Uuid::new_v4()));
        format!("sqlite://{}/{file}", dir.display())
    }

    #[tokio::test]
    async fn the_database_and_its_folder_are_created_on_first_open() {
        let url = temp_url("nested/first.db");

        let store = SqliteStore::open(&url).await.unwrap();

        store.ping().await.unwrap();
        assert!(Path::new(url.trim_start_matches("sqlite://")).exists());
    }

    #[tokio::test]
    async fn a_second_opener_of_the_same_file_is_refused_with_a_clear_message() {
        let url = temp_url("shared.db");
        let _first = SqliteStore::open(&url).await.unwrap();

        let second = SqliteStore::open(&url).await;

        let Err(StoreError::Setup(message)) = second else {
            panic!("a second store on the same file must be refused");
        };
        assert!(message.contains("another process"), "{message}");
    }

    #[tokio::test]
    async fn synchronous_full_may_be_asked_for_in_the_url() {
        let (url, synchronous) = split_synchronous("sqlite://a.db?synchronous=full").unwrap();
        assert_eq!(url, "sqlite://a.db");
        assert!(matches!(synchronous, SqliteSynchronous::Full));

        let (url, synchronous) = split_synchronous("sqlite://a.db?mode=rwc").unwrap();
        assert_eq!(url, "sqlite://a.db?mode=rwc");
        assert!(matches!(synchronous, SqliteSynchronous::Normal));
        assert!(split_synchronous("sqlite://a.db?synchronous=sometimes").is_err());
    }

    #[tokio::test]
    async fn the_database_runs_in_wal_mode() {
        let store = SqliteStore::open(&temp_url("wal.db")).await.unwrap();

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();

        assert_eq!(mode, "wal");
    }

    const GROUPS: [&str; 3] = [
        "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01",
        "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a02",
        "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a03",
    ];

    fn removal(group: &str, dry_run: bool) -> Removal {
        let request = RemovalRequest {
            group_id: GroupId::parse(group).unwrap(),
            members: vec![MemberId::parse("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01").unwrap()],
            mode: Mode::AllOrNothing,
            dry_run,
            client: "test".into(),
            requested_by: None,
            reason: None,
        };
        let mut removal = Removal::new(request, Utc::now());
        if dry_run {
            removal.status = Status::Running;
        }
        removal
    }

    fn finished(mut removal: Removal, status: Status) -> Removal {
        removal.status = status;
        removal.completed_at = Some(Utc::now());
        removal
    }

    /// (queued, running) as the kept counts say, after checking that they
    /// agree with counting the rows.
    async fn counts(store: &SqliteStore) -> (u64, u64) {
        let mut kept = [0; 2];
        for (slot, status) in kept.iter_mut().zip(["queued", "running"]) {
            *slot = store.count_with_status(&[status]).await.unwrap();
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM removals WHERE status = $1")
                .bind(status)
                .fetch_one(&store.pool)
                .await
                .unwrap();
            assert_eq!(*slot, rows as u64, "{status} removals");
        }
        (kept[0], kept[1])
    }

    #[tokio::test]
    async fn queue_counts_follow_every_change_of_status() {
        let dir = std::env::temp_dir().join(format!("scim-removals-store-{}", Uuid::new_v4()));
        let url = format!("sqlite://{}/test.db", dir.display());
        let store = SqliteStore::open(&url).await.unwrap();

        let queued: Vec<Removal> = GROUPS.iter().map(|group| removal(group, false)).collect();
        for removal in &queued {
            store.insert(removal, None, 24).await.unwrap();
        }
        assert_eq!(counts(&store).await, (3, 0));

        let claimed = store
            .claim_next("w", Duration::from_secs(60))
            .await
            .unwrap();
        let claimed = claimed.expect("a removal to claim").removal;
        assert_eq!(counts(&store).await, (2, 1));

        store.cancel(queued[1].id).await.unwrap();
        assert_eq!(counts(&store).await, (1, 1));

        // A dry run is stored running and finished as planned.
        let dry_run = removal(GROUPS[2], true);
        store.insert(&dry_run, None, 24).await.unwrap();
        assert_eq!(counts(&store).await, (1, 2));
        store
            .finish(&finished(dry_run, Status::Planned), None)
            .await
            .unwrap();
        assert_eq!(counts(&store).await, (1, 1));

        store
            .finish(&finished(claimed, Status::Succeeded), None)
            .await
            .unwrap();
        assert_eq!(counts(&store).await, (1, 0));

        sqlx::query("DELETE FROM removals WHERE status = 'queued'")
            .execute(&store.writer)
            .await
            .unwrap();
        assert_eq!(counts(&store).await, (0, 0));

        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn inserts_arriving_together_are_all_committed_and_a_bad_one_fails_alone() {
        let dir = std::env::temp_dir().join(format!("scim-removals-store-{}", Uuid::new_v4()));
        let url = format!("sqlite://{}/test.db", dir.display());
        let store = SqliteStore::open(&url).await.unwrap();

        // 200 at once, so that they are written in batches, and a repeated
        // id among the last, which SQLite refuses.
        let mut removals: Vec<Removal> = (0..200)
            .map(|n| removal(GROUPS[n % GROUPS.len()], false))
            .collect();
        removals.push(removals[7].clone());
        let answers =
            futures::future::join_all(removals.iter().map(|r| store.insert(r, None, 24))).await;

        let failed: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, answer)| answer.is_err())
            .map(|(index, _)| index)
            .collect();
        assert_eq!(failed, vec![200], "only the repeated id fails");
        assert_eq!(counts(&store).await, (200, 0));

        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_without_the_writer() {
        let dir = std::env::temp_dir().join(format!("scim-removals-store-{}", Uuid::new_v4()));
        let url = format!("sqlite://{}/test.db", dir.display());
        let store = SqliteStore::open(&url).await.unwrap();
        let file_size = || std::fs::metadata(dir.join("test.db")).unwrap().len();
        let before = file_size();

        // Far below the writer's own threshold: only the background task
        // copies these pages into the file.
        for n in 0..300 {
            let removal = removal(GROUPS[n % GROUPS.len()], false);
            store.insert(&removal, None, 24).await.unwrap();
        }
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;

        assert!(file_size() > before, "the WAL was checkpointed");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
