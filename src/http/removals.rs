//! The removal endpoints.
//!
//! POST checks in the order the contract promises (401, 403, 415, 413, 400,
//! 422), so it reads the raw request itself instead of stacking extractors
//! whose rejections would come in another order.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::problem::ApiError;
use super::{AppState, paging};
use crate::removal::{GroupId, MemberId, Mode, Removal, RemovalRequest, Status};
use crate::store::{Cancelled, IdempotencyKey, RemovalFilter};

/// `Prefer: wait=N` is clamped to this many seconds.
const MAX_WAIT_S: u64 = 60;
const MAX_REASON_CHARS: usize = 1024;
const MAX_REQUESTED_BY_CHARS: usize = 256;

/// The body of `POST /groups/{groupId}/removals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovalBody {
    /// User ids (UUIDs, any case); duplicates are dropped, keeping the first.
    members: Vec<String>,
    /// Plan only: nothing is changed.
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    mode: Mode,
    /// Why, for the audit trail (at most 1024 characters).
    reason: Option<String>,
    /// Who asked, for the audit trail (at most 256 characters).
    requested_by: Option<String>,
}

/// Submit a removal.
#[utoipa::path(
    post,
    path = "/groups/{groupId}/removals",
    params(
        ("groupId" = String, Path, description = "The SCIM group's id (a UUID)"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 printable ASCII characters"),
        ("Prefer" = Option<String>, Header,
            description = "wait=N: answer when finished, within N s (at most 60)"),
    ),
    request_body = RemovalBody,
    responses(
        (status = 200, body = Removal,
            description = "Finished (a dry run, or within Prefer: wait)"),
        (status = 202, description = "Accepted; follow Location", body = Removal),
        (status = 400, description = "Malformed JSON or Idempotency-Key"),
        (status = 401, description = "Missing or unknown token"),
        (status = 403, description = "The token lacks removals:write"),
        (status = 413, description = "Body too large"),
        (status = 415, description = "Not JSON"),
        (status = 422,
            description = "Invalid field, or an idempotency key reused for another request"),
        (status = 429, description = "Too many removals are waiting"),
        (status = 503, description = "Shutting down, or the store does not answer"),
    ),
    security(("bearer" = ["removals:write"])),
    tag = "removals"
)]
pub async fn submit(
    State(state): State<AppState>,
    group_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let client = state.clients.authorize(&parts.headers, "removals:write")?;
    require_json(&parts.headers)?;
    let bytes = read_body(
        &parts.headers,
        body,
        state.service.settings.server.max_body_bytes,
    )
    .await?;

    let key = idempotency_key(&parts.headers)?;
    let (parsed, raw) = read_removal_body(&bytes)?;

    let group_id = paging::path_segment(group_id, "groupId")?;
    let group_id = GroupId::parse(&group_id)
        .map_err(|error| ApiError::Invalid(format!("groupId: {error}")))?;
    let limit = state
        .service
        .engine
        .rules()
        .for_group(&group_id)
        .max_removals_per_request;
    let request = removal_request(group_id.clone(), parsed, &client.name, limit)?;

    let fingerprint = serde_json::json!({ "group": group_id.as_str(), "body": raw }).to_string();
    let key = key.map(|key| IdempotencyKey {
        client: client.name.clone(),
        key,
        fingerprint,
    });
    let wait = prefer_wait(&parts.headers);

    let submitted = state.service.submit(request, key).await?;
    let mut removal = submitted.removal;
    if let (Some(wait), false) = (wait, removal.status.is_final()) {
        removal = state
            .service
            .wait_for(removal.id, wait)
            .await?
            .unwrap_or(removal);
    }

    let status = if removal.status.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = (status, Json(&removal)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/removals/{}", removal.id)) {
        headers.insert(header::LOCATION, location);
    }
    if submitted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(wait) = wait {
        let applied = format!("wait={}", wait.as_secs());
        if let Ok(value) = HeaderValue::from_str(&applied) {
            headers.insert("preference-applied", value);
        }
    }
    Ok(response)
}

/// Read one removal.
#[utoipa::path(
    get,
    path = "/removals/{id}",
    params(("id" = String, Path, description = "The removal's id")),
    responses(
        (status = 200, body = Removal),
        (status = 404, description = "No such removal"),
    ),
    security(("bearer" = ["removals:read"])),
    tag = "removals"
)]
pub async fn get_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Removal>, ApiError> {
    state.clients.authorize(&headers, "removals:read")?;
    let id = removal_id(&paging::path_segment(id, "id")?)?;

    let removal = state.service.store.get(id).await?;
    removal
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no removal {id}")))
}

/// Cancel a queued removal.
#[utoipa::path(
    post,
    path = "/removals/{id}/cancel",
    params(("id" = String, Path, description = "The removal's id")),
    responses(
        (status = 200, description = "Cancelled", body = Removal),
        (status = 404, description = "No such removal"),
        (status = 409, description = "Running or finished: unchanged"),
    ),
    security(("bearer" = ["removals:write"])),
    tag = "removals"
)]
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Removal>, ApiError> {
    state.clients.authorize(&headers, "removals:write")?;
    let id = removal_id(&paging::path_segment(id, "id")?)?;

    match state.service.store.cancel(id).await? {
        Cancelled::Cancelled(removal) => Ok(Json(removal)),
        Cancelled::NotQueued(removal) => Err(ApiError::Conflict(format!(
            "removal {id} is {} and can no longer be cancelled",
            removal.status.as_str()
        ))),
        Cancelled::NotFound => Err(ApiError::NotFound(format!("no removal {id}"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only removals of this group.
    group_id: Option<String>,
    /// Only removals that requested this user.
    member: Option<String>,
    status: Option<String>,
    /// RFC 3339; bounds `created_at` from below.
    since: Option<String>,
    /// RFC 3339; bounds `created_at` from above.
    until: Option<String>,
    /// 1 to 200, default 50.
    limit: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemovalPage {
    items: Vec<Removal>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

/// The audit trail: removals, newest first.
#[utoipa::path(
    get,
    path = "/removals",
    params(ListQuery),
    responses(
        (status = 200, body = RemovalPage),
        (status = 422, description = "An invalid filter"),
    ),
    security(("bearer" = ["removals:read"])),
    tag = "removals"
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RemovalPage>, ApiError> {
    state.clients.authorize(&headers, "removals:read")?;
    let Query(query) = query.map_err(|error| ApiError::Invalid(error.body_text()))?;

    let filter = list_filter(query)?;
    let page = state.service.store.list(&filter).await?;
    let next = page.next.map(paging::encode_cursor);
    Ok(Json(RemovalPage {
        items: page.items,
        next,
    }))
}

fn list_filter(query: ListQuery) -> Result<RemovalFilter, ApiError> {
    let invalid =
        |name: &str, value: &str| ApiError::Invalid(format!("{name}: {value:?} is not valid"));
    let time = |name: &str, value: Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        value
            .map(|raw| {
                DateTime::parse_from_rfc3339(&raw)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|_| invalid(name, &raw))
            })
            .transpose()
    };

    let limit = paging::limit(query.limit)?;
    let after = paging::decode_cursor(query.after)?;

    Ok(RemovalFilter {
        group_id: query
            .group_id
            .map(|raw| GroupId::parse(&raw).map_err(|_| invalid("group_id", &raw)))
            .transpose()?,
        member: query
            .member
            .map(|raw| MemberId::parse(&raw).map_err(|_| invalid("member", &raw)))
            .transpose()?,
        status: query
            .status
            .map(|raw| Status::parse(&raw).ok_or_else(|| invalid("status", &raw)))
            .transpose()?,
        since: time("since", query.since)?,
        until: time("until", query.until)?,
        limit,
        after,
    })
}

/// A path segment, or a 422 when it cannot even be decoded (`%ff`): axum's
/// own rejection would be plain text, and would come before the 401.
fn removal_id(raw: &str) -> Result<Uuid, ApiError> {
    if !crate::config::is_uuid(raw) {
        return Err(ApiError::Invalid(format!(
            "{raw:?} is not a removal id (a UUID)"
        )));
    }
    Uuid::try_parse(raw).map_err(|_| ApiError::Invalid(format!("{raw:?} is not a UUID")))
}

/// `application/json` or any `+json` type, parameters allowed.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }

    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(error) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::PayloadTooLarge(limit))
            } else {
                Err(ApiError::BadRequest("the body could not be read".into()))
            }
        }
    }
}

/// 1 to 255 printable ASCII characters, or no key at all.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|byte| (0x20..=0x7e).contains(byte));
    if bytes.is_empty() || bytes.len() > 255 || !printable {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The `wait=N` preference, clamped, if the caller stated one.
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"'))
        })
        .find_map(|value| value.parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.min(MAX_WAIT_S)))
}

/// Reads a body into the removal it describes: 400 for bytes that are not
/// JSON, 422 for JSON that is not a removal body. Also returns the body as
/// parsed JSON, which an idempotency key's fingerprint compares.
fn read_removal_body(bytes: &[u8]) -> Result<(RemovalBody, Value), ApiError> {
    let raw: Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::BadRequest(format!("the body is not valid JSON: {error}")))?;
    let parsed: RemovalBody = serde_json::from_value(raw.clone())
        .map_err(|error| ApiError::Invalid(format!("the body does not fit: {error}")))?;
    Ok((parsed, raw))
}

/// The body checks of `POST /groups/{groupId}/removals`, in the handler's
/// order, for a group whose id is valid: 400 for bytes that are not JSON, 422
/// for a body that is not a valid removal of at most `max_members` members.
/// The handler checks the group's id between the two steps.
///
/// Public for the fuzz target `request_body` (see `fuzz/`).
///
/// # Errors
/// [`ApiError::BadRequest`] or [`ApiError::Invalid`], and nothing else.
pub fn parse_removal_body(
    bytes: &[u8],
    group_id: GroupId,
    client: &str,
    max_members: usize,
) -> Result<RemovalRequest, ApiError> {
    let (body, _) = read_removal_body(bytes)?;
    removal_request(group_id, body, client, max_members)
}

fn removal_request(
    group_id: GroupId,
    body: RemovalBody,
    client: &str,
    max_members: usize,
) -> Result<RemovalRequest, ApiError> {
    if body.members.is_empty() {
        return Err(ApiError::Invalid(
            "members: at least one member is required".into(),
        ));
    }
    // One pass with a set, stopping at the first member past the limit: a
    // body of 100,000 distinct ids (an operator may allow large bodies) costs
    // no more than one of `max_members`.
    let mut members: Vec<MemberId> = Vec::new();
    let mut seen: HashSet<MemberId> = HashSet::new();
    for raw in &body.members {
        let member =
            MemberId::parse(raw).map_err(|error| ApiError::Invalid(format!("members: {error}")))?;
        if seen.insert(member.clone()) {
            members.push(member);
        }
        if members.len() > max_members {
            return Err(ApiError::Invalid(format!(
                "members: more than the {max_members} allowed per request for this group"
            )));
        }
    }

    let too_long = |value: &Option<String>, max: usize| {
        value
            .as_ref()
            .is_some_and(|text| text.chars().count() > max)
    };
    if too_long(&body.reason, MAX_REASON_CHARS) {
        return Err(ApiError::Invalid(format!(
            "reason: longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if too_long(&body.requested_by, MAX_REQUESTED_BY_CHARS) {
        return Err(ApiError::Invalid(format!(
            "requested_by: longer than {MAX_REQUESTED_BY_CHARS} characters"
        )));
    }

    Ok(RemovalRequest {
        group_id,
        members,
        mode: body.mode,
        dry_run: body.dry_run,
        client: client.to_string(),
        requested_by: body.requested_by,
        reason: body.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn prefer_wait_is_read_and_clamped() {
        assert_eq!(
            prefer_wait(&headers("prefer", "wait=5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            prefer_wait(&headers("prefer", "respond-async, wait=600")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(prefer_wait(&headers("prefer", "return=minimal")), None);
        assert_eq!(prefer_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(require_json(&headers("content-type", "application/json; charset=utf-8")).is_ok());
        assert!(require_json(&headers("content-type", "application/merge-patch+json")).is_ok());
        assert!(require_json(&headers("content-type", "text/plain")).is_err());
        assert!(require_json(&HeaderMap::new()).is_err());
    }

    #[test]
    fn idempotency_keys_must_be_printable_ascii_of_a_sane_length() {
        assert!(
            idempotency_key(&headers("idempotency-key", "abc-123"))
                .unwrap()
                .is_some()
        );
        assert!(idempotency_key(&headers("idempotency-key", &"k".repeat(256))).is_err());
        assert!(idempotency_key(&headers("idempotency-key", "")).is_err());
        assert!(idempotency_key(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn a_request_past_the_limit_is_refused_however_many_ids_it_holds() {
        let body = |members: Vec<String>| RemovalBody {
            members,
            dry_run: false,
            mode: Mode::AllOrNothing,
            reason: None,
            requested_by: None,
        };
        let id = |n: u32| format!("6f1c2a8e-0b7d-4c39-9a51-{n:012x}");
        let group = GroupId::parse("0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01").unwrap();

        let many = body((0..100_000).map(id).collect());
        let repeated = body(vec![id(1); 100_000]);
        let at_limit = body((0..100).map(id).chain((0..100).map(id)).collect());

        assert!(matches!(
            removal_request(group.clone(), many, "c", 100),
            Err(ApiError::Invalid(_))
        ));
        let one = removal_request(group.clone(), repeated, "c", 100).unwrap();
        assert_eq!(one.members.len(), 1);
        let hundred = removal_request(group, at_limit, "c", 100).unwrap();
        assert_eq!(hundred.members.len(), 100);
    }

    #[test]
    fn duplicate_members_are_dropped_keeping_the_first_and_case_is_lowered() {
        let body = RemovalBody {
            members: vec![
                "6F1C2A8E-0B7D-4C39-9A51-1D2E3F4A5B02".into(),
                "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01".into(),
                "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02".into(),
            ],
            dry_run: false,
            mode: Mode::AllOrNothing,
            reason: None,
            requested_by: None,
        };
        let group = GroupId::parse("0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01").unwrap();
        let request = removal_request(group, body, "c", 100).unwrap();
        let members: Vec<&str> = request.members.iter().map(MemberId::as_str).collect();
        assert_eq!(
            members,
            vec![
                "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02",
                "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01"
            ]
        );
    }
}
