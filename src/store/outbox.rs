//! The webhook outbox: one delivery per event, written in the same
//! transaction as the finished removal it reports (see [`Store::finish`]),
//! then claimed, attempted and recorded by the webhook task.
//!
//! A delivery is `pending` until an attempt is answered 2xx (`delivered`) or
//! the retry schedule runs out (`dead`). While an attempt is in flight its
//! `next_attempt_at` is pushed past the attempt's timeout: that is what keeps
//! a second claim, in this process or another, from sending it again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// An event about to enter the outbox with its removal.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    /// `webhook-id` on every attempt.
    pub webhook_id: String,
    pub removal_id: Uuid,
    pub event_type: String,
    /// The exact body every attempt sends and signs.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

/// A delivery as operators see it (the payload left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: String,
    pub removal_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the next attempt is due; `None` once delivered or dead.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: Uuid,
    pub webhook_id: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// Failed, and the schedule has run out.
    Dead {
        error: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub limit: u32,
    /// Continue after this position (from the previous page's cursor).
    pub after: Option<i64>,
}

#[derive(Debug)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Where the next page starts, when there is one.
    pub next: Option<i64>,
}

/// What is still waiting to be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: u64,
    /// When the oldest pending event was written.
    pub oldest: Option<DateTime<Utc>>,
}

impl Store {
    /// Claims up to `limit` pending deliveries that are due, and marks them
    /// in flight for `hold` (longer than an attempt can take).
    pub async fn claim_due_deliveries(
        &self,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        match self {
            Store::Sqlite(store) => store.claim_due_deliveries(limit, hold).await,
            Store::Postgres(store) => store.claim_due_deliveries(limit, hold).await,
        }
    }

    /// Counts an attempt and records what it came to. A delivery that is no
    /// longer pending is left as it is.
    pub async fn record_attempt(
        &self,
        id: Uuid,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.record_attempt(id, outcome).await,
            Store::Postgres(store) => store.record_attempt(id, outcome).await,
        }
    }

    /// Deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<DeliveryPage, StoreError> {
        match self {
            Store::Sqlite(store) => store.list_deliveries(filter).await,
            Store::Postgres(store) => store.list_deliveries(filter).await,
        }
    }

    /// Makes a delivery pending again, due now, with its attempts reset and
    /// its `webhook_id` kept. `None` when there is no such delivery.
    pub async fn redeliver(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        match self {
            Store::Sqlite(store) => store.redeliver(id).await,
            Store::Postgres(store) => store.redeliver(id).await,
        }
    }

    pub async fn webhook_backlog(&self) -> Result<Backlog, StoreError> {
        match self {
            Store::Sqlite(store) => store.webhook_backlog().await,
            Store::Postgres(store) => store.webhook_backlog().await,
        }
    }

    /// Deletes delivered and dead deliveries written before `before`.
    /// Returns how many went.
    pub async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(store) => store.prune_deliveries(before).await,
            Store::Postgres(store) => store.prune_deliveries(before).await,
        }
    }
}
