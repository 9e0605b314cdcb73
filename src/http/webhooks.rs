//! The operators' view of the webhook outbox (scope `webhooks:admin`): what
//! was delivered, what is waiting, what died, and a way to send an event
//! again. The receiver's URL and secrets are configuration, never a request.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::problem::ApiError;
use super::{AppState, paging};
use crate::store::{Delivery, DeliveryFilter, DeliveryStatus};

const SCOPE: &str = "webhooks:admin";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt of the retry schedule failed.
    Dead,
}

/// One event in the outbox and how its delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// The delivery's id, for `redeliver`.
    id: Uuid,
    /// The `webhook-id` header: the same on every attempt of this event.
    webhook_id: String,
    removal_id: Uuid,
    /// The event type, e.g. `scim.group.membership.deleted`.
    #[serde(rename = "type")]
    event_type: String,
    status: DeliveryState,
    /// Attempts made since the event was written or last redelivered.
    attempts: u32,
    /// What the last failed attempt met (an HTTP status or a network error).
    last_error: Option<String>,
    /// When the next attempt is due; null once delivered or dead.
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryOut {
    fn from(delivery: Delivery) -> Self {
        let status = match delivery.status {
            DeliveryStatus::Pending => DeliveryState::Pending,
            DeliveryStatus::Delivered => DeliveryState::Delivered,
            DeliveryStatus::Dead => DeliveryState::Dead,
        };
        DeliveryOut {
            id: delivery.id,
            webhook_id: delivery.webhook_id,
            removal_id: delivery.removal_id,
            event_type: delivery.event_type,
            status,
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            next_attempt_at: delivery.next_attempt_at,
            created_at: delivery.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryOut>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    status: Option<String>,
    /// 1 to 200, default 50.
    limit: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// Webhook deliveries, newest first.
#[utoipa::path(
    get,
    path = "/webhooks/deliveries",
    params(DeliveryQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 401, description = "Missing or unknown token"),
        (status = 403, description = "The token lacks webhooks:admin"),
        (status = 422, description = "An invalid status, limit or cursor"),
    ),
    security(("bearer" = ["webhooks:admin"])),
    tag = "webhooks"
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    state.clients.authorize(&headers, SCOPE)?;
    let Query(query) = query.map_err(|error| ApiError::Invalid(error.body_text()))?;

    let filter = delivery_filter(query)?;
    let page = state.service.store.list_deliveries(&filter).await?;
    Ok(Json(DeliveryPage {
        items: page.items.into_iter().map(DeliveryOut::from).collect(),
        next: page.next.map(paging::encode_cursor),
    }))
}

/// Send an event again: the delivery becomes pending, due now, with its
/// attempts reset and the same `webhook-id`, so receivers that already have
/// it can tell. With no `webhook.url` configured it waits until there is one.
#[utoipa::path(
    post,
    path = "/webhooks/deliveries/{id}/redeliver",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Pending again", body = DeliveryOut),
        (status = 401, description = "Missing or unknown token"),
        (status = 403, description = "The token lacks webhooks:admin"),
        (status = 404, description = "No such delivery"),
        (status = 422, description = "The id is not a UUID"),
    ),
    security(("bearer" = ["webhooks:admin"])),
    tag = "webhooks"
)]
pub async fn redeliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    state.clients.authorize(&headers, SCOPE)?;
    let id = paging::path_segment(id, "id")?;
    if !crate::config::is_uuid(&id) {
        return Err(ApiError::Invalid(format!(
            "{id:?} is not a delivery id (a UUID)"
        )));
    }
    let id =
        Uuid::try_parse(&id).map_err(|_| ApiError::Invalid(format!("{id:?} is not a UUID")))?;

    let delivery = state
        .service
        .store
        .redeliver(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook delivery {id}")))?;
    state.service.webhook_ready.notify_one();
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

fn delivery_filter(query: DeliveryQuery) -> Result<DeliveryFilter, ApiError> {
    let status = query
        .status
        .map(|raw| {
            DeliveryStatus::parse(&raw).ok_or_else(|| {
                ApiError::Invalid(format!("status: {raw:?} is not pending, delivered or dead"))
            })
        })
        .transpose()?;
    let limit = paging::limit(query.limit)?;
    let after = paging::decode_cursor(query.after)?;
    Ok(DeliveryFilter {
        status,
        limit,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(status: Option<&str>, limit: Option<&str>, after: Option<&str>) -> DeliveryQuery {
        DeliveryQuery {
            status: status.map(str::to_string),
            limit: limit.map(str::to_string),
            after: after.map(str::to_string),
        }
    }

    #[test]
    fn the_limit_defaults_to_fifty_and_must_lie_between_one_and_two_hundred() {
        assert_eq!(delivery_filter(query(None, None, None)).unwrap().limit, 50);
        assert_eq!(
            delivery_filter(query(None, Some("200"), None))
                .unwrap()
                .limit,
            200
        );
        for bad in ["0", "201", "-1", "ten"] {
            assert!(
                delivery_filter(query(None, Some(bad), None)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_three_delivery_statuses_are_accepted() {
        let filter = delivery_filter(query(Some("dead"), None, None)).unwrap();
        assert_eq!(filter.status, Some(DeliveryStatus::Dead));
        assert!(delivery_filter(query(Some("failed"), None, None)).is_err());
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = paging::encode_cursor(42);
        let filter = delivery_filter(query(None, None, Some(&cursor))).unwrap();
        assert_eq!(filter.after, Some(42));
        assert!(delivery_filter(query(None, None, Some("%%%"))).is_err());
    }
}
