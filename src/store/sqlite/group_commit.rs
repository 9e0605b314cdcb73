//! Group commit: removals stored without an idempotency key are written
//! together, several rows in one `INSERT`, by one task in front of the
//! writer connection.
//!
//! A POST may answer 202 only once its removal is committed. With one commit
//! per POST, the writer connection bounded the accept rate: every commit is
//! a round trip to the connection's thread and a WAL append of each page the
//! row touched (the table and four indexes). The task takes every insert
//! waiting when the previous write ends (at most [`MAX_ROWS`]), writes them
//! in one statement, which SQLite commits atomically, and only then answers
//! each one. Under light load a batch holds one row and nothing waits longer
//! than before; under heavy load batches grow and share the commit.

use sqlx::{Executor, QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Rows per `INSERT` at most: seven parameters each, far below SQLite's
/// limit on parameters, and few enough that one batch stays short.
const MAX_ROWS: usize = 64;

/// Inserts that may wait for the task; beyond this, a POST waits to hand its
/// row over, which slows callers down instead of growing memory.
const WAITING: usize = 1024;

/// A removal's columns, as stored.
pub(super) struct RemovalRow {
    pub id: String,
    pub group_id: String,
    pub status: &'static str,
    pub client: String,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub doc: String,
}

struct Pending {
    row: RemovalRow,
    committed: oneshot::Sender<Result<(), StoreError>>,
}

pub(super) struct GroupCommit {
    waiting: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the task; it ends when this handle is dropped.
    pub fn start(writer: SqlitePool) -> GroupCommit {
        let (waiting, rows) = mpsc::channel(WAITING);
        tokio::spawn(write_batches(writer, rows));
        GroupCommit { waiting }
    }

    /// Returns once `row` is committed.
    ///
    /// # Errors
    /// The store's error for this row, or `PoolClosed` when the task is gone.
    pub async fn insert(&self, row: RemovalRow) -> Result<(), StoreError> {
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let (committed, answer) = oneshot::channel();
        self.waiting
            .send(Pending { row, committed })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn write_batches(writer: SqlitePool, mut rows: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_ROWS);
    while rows.recv_many(&mut batch, MAX_ROWS).await > 0 {
        let all: Vec<&RemovalRow> = batch.iter().map(|pending| &pending.row).collect();
        if insert_rows(&writer, &all).await.is_ok() {
            for pending in batch.drain(..) {
                // A caller that went away no longer needs the answer; its
                // removal is stored all the same, as it would have been
                // had it been written alone.
                let _ = pending.committed.send(Ok(()));
            }
            continue;
        }
        // Nothing of the batch was stored. Write each row alone, so that a
        // row SQLite refuses fails its own request and no other.
        for pending in batch.drain(..) {
            let alone = insert_rows(&writer, &[&pending.row]).await;
            let _ = pending.committed.send(alone);
        }
    }
}

/// One `INSERT` of `rows`: all of them are stored, or none.
pub(super) async fn insert_rows<'c, E>(executor: E, rows: &[&RemovalRow]) -> Result<(), StoreError>
where
    E: Executor<'c, Database = Sqlite>,
{
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO removals (id, group_id, status, client, created_at, completed_at, doc) ",
    );
    query.push_values(rows, |mut values, row| {
        values
            .push_bind(row.id.as_str())
            .push_bind(row.group_id.as_str())
            .push_bind(row.status)
            .push_bind(row.client.as_str())
            .push_bind(row.created_at.as_str())
            .push_bind(row.completed_at.as_deref())
            .push_bind(row.doc.as_str());
    });
    query.build().execute(executor).await?;
    Ok(())
}
