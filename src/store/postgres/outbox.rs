//! The webhook outbox on PostgreSQL. Claims lock the rows they take and skip
//! rows another replica holds, so one delivery goes to one replica at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::PgStore;
use crate::store::outbox::{
    AttemptOutcome, Backlog, Delivery, DeliveryFilter, DeliveryPage, DeliveryStatus, DueDelivery,
    NewDelivery,
};
use crate::store::{StoreError, stored_time};

/// The columns [`delivery_from`] reads, in its order; times as Unix
/// milliseconds, so no date type crosses the driver.
const DELIVERY_COLUMNS: &str = "id::text, webhook_id, removal_id::text, type, status, attempts, \
     last_error, (EXTRACT(EPOCH FROM next_attempt_at) * 1000)::bigint, \
     (EXTRACT(EPOCH FROM created_at) * 1000)::bigint";

/// Writes `event` inside the caller's transaction (the one that finishes its
/// removal). A removal that already has its event keeps the first one.
pub(super) async fn insert_delivery(
    tx: &mut PgConnection,
    event: &NewDelivery,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, removal_id, type, payload, status,
             attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1::uuid, $2, $3::uuid, $4, $5, 'pending', 0, $6::timestamptz, $6::timestamptz,
             $6::timestamptz)
         ON CONFLICT (removal_id) DO NOTHING",
    )
    .bind(event.id.to_string())
    .bind(&event.webhook_id)
    .bind(event.removal_id.to_string())
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(stored_time(event.created_at))
    .execute(tx)
    .await?;
    Ok(())
}

impl PgStore {
    pub async fn claim_due_deliveries(
        &self,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // The outer conditions repeat the inner ones on purpose: a row whose
        // claim committed while this statement waited is re-checked against
        // its new due time and left alone.
        let rows = sqlx::query(
            "UPDATE webhook_deliveries
             SET next_attempt_at = clock_timestamp() + $1 * interval '1 millisecond'
             WHERE seq IN (
                 SELECT seq FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                 ORDER BY next_attempt_at, seq
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
               AND status = 'pending' AND next_attempt_at <= clock_timestamp()
             RETURNING id::text, webhook_id, payload, attempts",
        )
        .bind(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX / 2) as f64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;

        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    id: parse_uuid(&row.get::<String, _>(0))?,
                    webhook_id: row.get(1),
                    payload: row.get(2),
                    attempts: attempts_of(row.get(3)),
                })
            })
            .collect()
    }

    pub async fn record_attempt(
        &self,
        id: Uuid,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let (status, error, next) = match outcome {
            AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, None),
            AttemptOutcome::Retry { error, at } => (
                DeliveryStatus::Pending,
                Some(error.as_str()),
                Some(stored_time(*at)),
            ),
            AttemptOutcome::Dead { error } => (DeliveryStatus::Dead, Some(error.as_str()), None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries
             SET status = $1, attempts = attempts + 1, last_error = COALESCE($2, last_error),
                 next_attempt_at = $3::timestamptz, updated_at = clock_timestamp()
             WHERE id = $4::uuid AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(next)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<DeliveryPage, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT seq, {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE TRUE"
        ));
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(after) = filter.after {
            query.push(" AND seq < ").push_bind(after);
        }
        // One more than asked tells whether there is a next page.
        query
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);

        let rows = query.build().fetch_all(&self.pool).await?;
        let (items, next) = crate::store::page_of(&rows, filter.limit, |row| {
            Ok((row.get::<i64, _>(0), delivery_from(row, 1)?))
        })?;
        Ok(DeliveryPage { items, next })
    }

    pub async fn redeliver(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries
             SET status = 'pending', attempts = 0, next_attempt_at = clock_timestamp(),
                 updated_at = clock_timestamp()
             WHERE id = $1::uuid
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| delivery_from(&row, 0)).transpose()
    }

    pub async fn webhook_backlog(&self) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), (EXTRACT(EPOCH FROM MIN(created_at)) * 1000)::bigint
             FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        let pending = u64::try_from(row.get::<i64, _>(0)).unwrap_or(0);
        let oldest = row.get::<Option<i64>, _>(1).map(from_millis).transpose()?;
        Ok(Backlog { pending, oldest })
    }

    pub async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned = sqlx::query(
            "DELETE FROM webhook_deliveries
             WHERE status <> 'pending' AND created_at < $1::timestamptz",
        )
        .bind(stored_time(before))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(pruned)
    }
}

/// Reads [`DELIVERY_COLUMNS`], starting at column `first`.
fn delivery_from(row: &PgRow, first: usize) -> Result<Delivery, StoreError> {
    let status: String = row.get(first + 4);
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
    Ok(Delivery {
        id: parse_uuid(&row.get::<String, _>(first))?,
        webhook_id: row.get(first + 1),
        removal_id: parse_uuid(&row.get::<String, _>(first + 2))?,
        event_type: row.get(first + 3),
        status,
        attempts: attempts_of(row.get(first + 5)),
        last_error: row.get(first + 6),
        next_attempt_at: row
            .get::<Option<i64>, _>(first + 7)
            .map(from_millis)
            .transpose()?,
        created_at: from_millis(row.get(first + 8))?,
    })
}

fn attempts_of(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("delivery time {ms}")))
}

fn parse_uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(raw).map_err(|_| StoreError::Corrupt(format!("delivery id {raw:?}")))
}
