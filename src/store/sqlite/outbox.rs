//! The webhook outbox on SQLite. Every statement that changes a delivery is a
//! single statement, so SQLite runs it atomically and no lock is held while
//! an attempt is on the wire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use crate::store::outbox::{
    AttemptOutcome, Backlog, Delivery, DeliveryFilter, DeliveryPage, DeliveryStatus, DueDelivery,
    NewDelivery,
};
use crate::store::{StoreError, stored_time};

/// The columns [`delivery_from`] reads, in its order.
const DELIVERY_COLUMNS: &str = "id, webhook_id, removal_id, type, status, attempts, last_error, \
     next_attempt_at, created_at";

/// Writes `event` inside the caller's transaction (the one that finishes its
/// removal). A removal that already has its event keeps the first one.
pub(super) async fn insert_delivery(
    tx: &mut SqliteConnection,
    event: &NewDelivery,
) -> Result<(), StoreError> {
    let created_at = stored_time(event.created_at);
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, removal_id, type, payload, status,
             attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $7)
         ON CONFLICT (removal_id) DO NOTHING",
    )
    .bind(event.id.to_string())
    .bind(&event.webhook_id)
    .bind(event.removal_id.to_string())
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(event.created_at.timestamp_millis())
    .bind(created_at)
    .execute(tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub async fn claim_due_deliveries(
        &self,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now_ms = Utc::now().timestamp_millis();
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX / 2);

        // Claiming is pushing the due time past the attempt: whoever looks
        // next sees the delivery as not due, and a process that dies
        // mid-attempt leaves it to be tried again once the hold has passed.
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1
             WHERE seq IN (
                 SELECT seq FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, seq
                 LIMIT $3)
             RETURNING id, webhook_id, payload, attempts",
        )
        .bind(now_ms.saturating_add(hold_ms))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
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
        // A delivered attempt keeps the last error met before it: operators
        // see that the receiver had trouble, and what it was.
        let (status, error, next) = match outcome {
            AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, None),
            AttemptOutcome::Retry { error, at } => (
                DeliveryStatus::Pending,
                Some(error.as_str()),
                Some(at.timestamp_millis()),
            ),
            AttemptOutcome::Dead { error } => (DeliveryStatus::Dead, Some(error.as_str()), None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries
             SET status = $1, attempts = attempts + 1, last_error = COALESCE($2, last_error),
                 next_attempt_at = $3, updated_at = $4
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(next)
        .bind(stored_time(Utc::now()))
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<DeliveryPage, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT seq, {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE 1 = 1"
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
        let now = Utc::now();
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries
             SET status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $2
             WHERE id = $3
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(now.timestamp_millis())
        .bind(stored_time(now))
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await?;
        row.map(|row| delivery_from(&row, 0)).transpose()
    }

    pub async fn webhook_backlog(&self) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        let pending = u64::try_from(row.get::<i64, _>(0)).unwrap_or(0);
        let oldest = row
            .get::<Option<String>, _>(1)
            .as_deref()
            .map(parse_time)
            .transpose()?;
        Ok(Backlog { pending, oldest })
    }

    pub async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1",
        )
        .bind(stored_time(before))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(pruned)
    }
}

/// Reads [`DELIVERY_COLUMNS`], starting at column `first`.
fn delivery_from(row: &SqliteRow, first: usize) -> Result<Delivery, StoreError> {
    let status: String = row.get(first + 4);
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
    let next_attempt_at = row
        .get::<Option<i64>, _>(first + 7)
        .map(|ms| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery due at {ms}")))
        })
        .transpose()?;
    Ok(Delivery {
        id: parse_uuid(&row.get::<String, _>(first))?,
        webhook_id: row.get(first + 1),
        removal_id: parse_uuid(&row.get::<String, _>(first + 2))?,
        event_type: row.get(first + 3),
        status,
        attempts: attempts_of(row.get(first + 5)),
        last_error: row.get(first + 6),
        next_attempt_at,
        created_at: parse_time(&row.get::<String, _>(first + 8))?,
    })
}

fn attempts_of(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(u32::MAX)
}

fn parse_uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(raw).map_err(|_| StoreError::Corrupt(format!("delivery id {raw:?}")))
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("delivery time {raw:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::removal::{GroupId, MemberId, Mode, Removal, RemovalRequest, Status};

    /// A store on a file of its own (an in-memory URL would leave a lock
    /// file named after sqlx's shared-cache name in the working directory).
    async fn store() -> SqliteStore {
        let dir = std::env::temp_dir().join(format!("scim-removals-outbox-{}", Uuid::new_v4()));
        SqliteStore::open(&format!("sqlite://{}/outbox.db", dir.display()))
            .await
            .unwrap()
    }

    /// A removal saved as finished, with its event in the outbox.
    async fn finished_with_event(store: &SqliteStore) -> (Removal, NewDelivery) {
        let request = RemovalRequest {
            group_id: GroupId::parse("0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01").unwrap(),
            members: vec![MemberId::parse("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01").unwrap()],
            mode: Mode::AllOrNothing,
            dry_run: false,
            client: "governance".into(),
            requested_by: None,
            reason: None,
        };
        let mut removal = Removal::new(request, Utc::now());
        store.insert(&removal, None, 24).await.unwrap();
        removal.status = Status::Succeeded;
        removal.completed_at = Some(Utc::now());
        let event = crate::webhook::event_for(&removal).unwrap().unwrap();
        store.finish(&removal, Some(&event)).await.unwrap();
        (removal, event)
    }

    async fn only_delivery(store: &SqliteStore) -> Delivery {
        let filter = DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        };
        let mut page = store.list_deliveries(&filter).await.unwrap();
        assert_eq!(page.items.len(), 1);
        page.items.remove(0)
    }

    #[tokio::test]
    async fn finishing_a_removal_with_an_event_leaves_one_pending_delivery_due_now() {
        let store = store().await;
        let (removal, event) = finished_with_event(&store).await;

        assert_eq!(
            store.get(removal.id).await.unwrap().unwrap().status,
            Status::Succeeded
        );
        let delivery = only_delivery(&store).await;
        assert_eq!(delivery.id, event.id);
        assert_eq!(delivery.removal_id, removal.id);
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 0);
        assert!(delivery.next_attempt_at.unwrap() <= Utc::now());
    }

    #[tokio::test]
    async fn a_removal_saved_twice_keeps_its_first_event_only() {
        let store = store().await;
        let (removal, first) = finished_with_event(&store).await;
        let second = crate::webhook::event_for(&removal).unwrap().unwrap();
        store.finish(&removal, Some(&second)).await.unwrap();

        assert_eq!(only_delivery(&store).await.webhook_id, first.webhook_id);
    }

    #[tokio::test]
    async fn a_claimed_delivery_is_not_claimed_again_while_its_hold_lasts() {
        let store = store().await;
        let (_, event) = finished_with_event(&store).await;

        let claimed = store
            .claim_due_deliveries(8, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].webhook_id, event.webhook_id);
        assert_eq!(claimed[0].payload, event.payload);
        let again = store
            .claim_due_deliveries(8, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(again.is_empty());
    }

    #[tokio::test]
    async fn a_delivery_whose_hold_has_passed_is_claimed_again() {
        let store = store().await;
        finished_with_event(&store).await;

        let first = store.claim_due_deliveries(8, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = store.claim_due_deliveries(8, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_eq!(first[0].id, second[0].id);
    }

    #[tokio::test]
    async fn attempts_are_counted_and_the_outcome_sets_status_error_and_due_time() {
        let store = store().await;
        let (_, event) = finished_with_event(&store).await;
        let retry_at = Utc::now() + chrono::Duration::seconds(30);

        let failed = AttemptOutcome::Retry {
            error: "answered HTTP 500".into(),
            at: retry_at,
        };
        store.record_attempt(event.id, &failed).await.unwrap();
        let delivery = only_delivery(&store).await;
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.last_error.as_deref(), Some("answered HTTP 500"));
        assert_eq!(
            delivery.next_attempt_at.unwrap().timestamp_millis(),
            retry_at.timestamp_millis()
        );
        let not_yet = store
            .claim_due_deliveries(8, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(not_yet.is_empty());

        store
            .record_attempt(event.id, &AttemptOutcome::Delivered)
            .await
            .unwrap();
        let delivery = only_delivery(&store).await;
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(delivery.attempts, 2);
        assert_eq!(delivery.last_error.as_deref(), Some("answered HTTP 500"));
        assert_eq!(delivery.next_attempt_at, None);

        // A settled delivery is not changed by a late record.
        let dead = AttemptOutcome::Dead {
            error: "late".into(),
        };
        store.record_attempt(event.id, &dead).await.unwrap();
        assert_eq!(
            only_delivery(&store).await.status,
            DeliveryStatus::Delivered
        );
    }

    #[tokio::test]
    async fn redelivery_resets_the_attempts_and_keeps_the_webhook_id() {
        let store = store().await;
        let (_, event) = finished_with_event(&store).await;
        let dead = AttemptOutcome::Dead {
            error: "answered HTTP 410 Gone".into(),
        };
        store.record_attempt(event.id, &dead).await.unwrap();

        let delivery = store.redeliver(event.id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.webhook_id, event.webhook_id);
        assert!(delivery.next_attempt_at.unwrap() <= Utc::now());
        let due = store
            .claim_due_deliveries(8, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(due.len(), 1);

        assert!(store.redeliver(Uuid::now_v7()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_list_is_newest_first_in_pages_and_filters_by_status() {
        let store = store().await;
        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(finished_with_event(&store).await.1);
        }
        store
            .record_attempt(events[0].id, &AttemptOutcome::Delivered)
            .await
            .unwrap();

        let first = DeliveryFilter {
            status: None,
            limit: 2,
            after: None,
        };
        let page = store.list_deliveries(&first).await.unwrap();
        let ids: Vec<Uuid> = page.items.iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![events[2].id, events[1].id]);
        let rest = DeliveryFilter {
            after: page.next,
            ..first
        };
        let page = store.list_deliveries(&rest).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, events[0].id);
        assert_eq!(page.next, None);

        let delivered = DeliveryFilter {
            status: Some(DeliveryStatus::Delivered),
            limit: 50,
            after: None,
        };
        let page = store.list_deliveries(&delivered).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, events[0].id);
    }

    #[tokio::test]
    async fn the_backlog_counts_pending_deliveries_and_knows_the_oldest() {
        let store = store().await;
        assert_eq!(store.webhook_backlog().await.unwrap(), Backlog::default());

        let (_, oldest) = finished_with_event(&store).await;
        let (_, newer) = finished_with_event(&store).await;
        let backlog = store.webhook_backlog().await.unwrap();
        assert_eq!(backlog.pending, 2);
        assert_eq!(
            backlog.oldest.map(|at| at.timestamp_micros()),
            Some(oldest.created_at.timestamp_micros())
        );

        store
            .record_attempt(newer.id, &AttemptOutcome::Delivered)
            .await
            .unwrap();
        assert_eq!(store.webhook_backlog().await.unwrap().pending, 1);
    }

    #[tokio::test]
    async fn pruning_keeps_pending_deliveries_whatever_their_age() {
        let store = store().await;
        let (_, settled) = finished_with_event(&store).await;
        finished_with_event(&store).await;
        store
            .record_attempt(settled.id, &AttemptOutcome::Delivered)
            .await
            .unwrap();

        let later = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(store.prune_deliveries(later).await.unwrap(), 1);
        assert_eq!(only_delivery(&store).await.status, DeliveryStatus::Pending);
    }
}
