//! The org's HTTP face: Genesys's OAuth token endpoint and the SCIM group
//! and user endpoints, on one router.
//!
//! Every request passes through [`inject_faults`] first (log, latency, rate
//! limit, random 429 and 5xx, correlation and rate-limit headers), then, for
//! `/api/v2/...`, through [`require_bearer`], and only then reaches a handler.
//! A request the faults answer never reaches a handler, so a 429 or a 5xx
//! never changes a group.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, ETAG, HOST, IF_MATCH, IF_NONE_MATCH, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::knobs::{ConflictStyle, Knobs, PatchAnswer, roll};
use super::org::{Budget, Group, MemberKind, Org, PatchOutcome, User, entity_tag_names};
use super::patch::{PatchRejection, parse_patch};

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Where Genesys serves SCIM v2.
const SCIM_PREFIX: &str = "/api/v2/scim/v2";

const CORRELATION_ID: HeaderName = HeaderName::from_static("inin-correlation-id");
const RATE_LIMIT_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
const RATE_LIMIT_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
const RATE_LIMIT_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

/// The id Genesys support would ask for: sent as `ININ-Correlation-Id` on
/// every answer and as `contextId` in platform error bodies.
#[derive(Clone, Copy, Debug)]
struct CorrelationId(Uuid);

/// Builds the router serving `org`.
pub(crate) fn router(org: Org) -> Router {
    let api = Router::new()
        .route(&format!("{SCIM_PREFIX}/groups"), get(list_groups))
        .route(
            &format!("{SCIM_PREFIX}/groups/{{group_id}}"),
            get(get_group).patch(patch_group),
        )
        .route(&format!("{SCIM_PREFIX}/users/{{user_id}}"), get(get_user))
        .route_layer(middleware::from_fn_with_state(org.clone(), require_bearer));

    // The fault layer goes on last so that it wraps the fallback too: an
    // unknown path is logged and rate-limited like any request.
    Router::new()
        .route("/oauth/token", post(issue_token))
        .merge(api)
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(org.clone(), inject_faults))
        .with_state(org)
}

/// Logs the request, then plays the knobs: latency, the org's own budget, a
/// random 429, a random 5xx. Adds the correlation and rate-limit headers to
/// whatever is answered and logs its status.
async fn inject_faults(State(org): State<Org>, mut request: Request, next: Next) -> Response {
    let correlation_id = CorrelationId(Uuid::new_v4());
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |target| target.as_str().to_owned(),
    );
    let if_match = header_text(request.headers(), &IF_MATCH).map(str::to_owned);
    let sequence = org.log_arrival(&method, &path, if_match);

    // One read of the knobs per request, so a change mid-request cannot mix
    // two configurations.
    let knobs = org.knobs();
    if knobs.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    }

    let budget = knobs
        .rate_limit_per_minute
        .map(|limit| org.spend_budget(limit));
    let over_budget = budget.is_some_and(|budget| !budget.admitted);
    let mut response = if over_budget || roll(knobs.error_429_rate) {
        rate_limited(knobs.retry_after_s, correlation_id)
    } else if roll(knobs.error_5xx_rate) {
        server_error(correlation_id)
    } else {
        // Handlers read the same knobs through the request's extensions.
        request.extensions_mut().insert(correlation_id);
        let drop_rate = knobs.drop_connection_rate;
        request.extensions_mut().insert(knobs);
        let handled = next.run(request).await;
        if roll(drop_rate) {
            // Logged as never answered: status 0.
            tracing::debug!(method, path, "the sandbox org drops the connection");
            return dropped_connection();
        }
        handled
    };

    add_platform_headers(response.headers_mut(), correlation_id, budget);
    let status = response.status().as_u16();
    org.log_answer(sequence, status);
    tracing::debug!(method, path, status, "the sandbox org answered");
    response
}

fn add_platform_headers(
    headers: &mut HeaderMap,
    correlation_id: CorrelationId,
    budget: Option<Budget>,
) {
    if let Ok(value) = HeaderValue::from_str(&correlation_id.0.to_string()) {
        headers.insert(CORRELATION_ID, value);
    }
    if let Some(budget) = budget {
        headers.insert(RATE_LIMIT_ALLOWED, HeaderValue::from(budget.allowed));
        headers.insert(RATE_LIMIT_COUNT, HeaderValue::from(budget.count));
        headers.insert(RATE_LIMIT_RESET, HeaderValue::from(budget.reset_s));
    }
}

/// Lets `/api/v2/...` through only with a bearer token the org issued and
/// that has not expired.
async fn require_bearer(
    State(org): State<Org>,
    Extension(correlation_id): Extension<CorrelationId>,
    request: Request,
    next: Next,
) -> Response {
    let token = header_text(request.headers(), &AUTHORIZATION)
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());

    let (code, message) = match token {
        Some(token) if org.token_is_valid(&token) => return next.run(request).await,
        Some(_) => ("bad.credentials", "Invalid login credentials."),
        None => (
            "authentication.required",
            "No authentication bearer token specified in authorization header.",
        ),
    };

    let mut response = platform_error(StatusCode::UNAUTHORIZED, code, message, correlation_id);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
}

/// `POST /oauth/token`: the client-credentials grant, with the client
/// authenticated by HTTP Basic as Genesys requires.
async fn issue_token(
    State(org): State<Org>,
    Extension(knobs): Extension<Knobs>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let authenticated = basic_credentials(&headers)
        .is_some_and(|(client_id, secret)| org.credentials_match(&client_id, &secret));
    if !authenticated {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: send Authorization: Basic base64(id:secret)",
        );
    }

    let grant_type = match form {
        Ok(Form(form)) => form.grant_type,
        Err(rejection) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("expected a form body grant_type=client_credentials: {rejection}"),
            );
        }
    };
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant type {other:?} is not supported; use client_credentials"),
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }

    let expires_in = knobs.token_ttl_s;
    let access_token = org.issue_token(expires_in);
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": expires_in,
    });
    (StatusCode::OK, [(CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Reads `Authorization: Basic base64(id:secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, encoded) = header_text(headers, &AUTHORIZATION)?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }

    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (client_id, secret) = decoded.split_once(':')?;
    Some((client_id.to_owned(), secret.to_owned()))
}

/// `GET /api/v2/scim/v2/groups`: every group, paged by SCIM's 1-based
/// `startIndex` and `count` when given.
async fn list_groups(
    State(org): State<Org>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let groups = org.groups();
    let total = groups.len();
    let start_index = query
        .get("startIndex")
        .and_then(|index| index.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let count = query
        .get("count")
        .and_then(|count| count.parse::<usize>().ok())
        .unwrap_or(total);

    let base = base_url(&headers);
    let resources: Vec<Value> = groups
        .iter()
        .skip(start_index - 1)
        .take(count)
        .map(|group| group_json(group, &base))
        .collect();
    let body = json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    });
    Json(body).into_response()
}

/// `GET /api/v2/scim/v2/groups/{id}`: the group with its version as `ETag`,
/// or 304 when `If-None-Match` names the current version.
async fn get_group(
    State(org): State<Org>,
    Path(group_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let group_id = group_id.to_ascii_lowercase();
    let Some(group) = org.group(&group_id) else {
        return group_not_found(&group_id);
    };

    let etag = etag_of(group.version);
    let unchanged = header_text(&headers, &IF_NONE_MATCH)
        .is_some_and(|tags| entity_tag_names(tags, group.version));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response();
    }
    (
        StatusCode::OK,
        [(ETAG, etag)],
        Json(group_json(&group, &base_url(&headers))),
    )
        .into_response()
}

/// `PATCH /api/v2/scim/v2/groups/{id}`: applies a PatchOp, all of it or none,
/// when `If-Match` names the version the group has once other
/// administrators (the hook and `version_bump_rate`) have had their turn.
async fn patch_group(
    State(org): State<Org>,
    Extension(knobs): Extension<Knobs>,
    Path(group_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let group_id = group_id.to_ascii_lowercase();
    if org.version(&group_id).is_none() {
        return group_not_found(&group_id);
    }

    let Some(if_match) = header_text(&headers, &IF_MATCH).map(str::to_owned) else {
        return scim_error(
            StatusCode::BAD_REQUEST,
            None,
            "If-Match with the group's version is required",
        );
    };
    let changes = match parse_patch(&body) {
        Ok(changes) => changes,
        Err(rejection) => return patch_rejected(&rejection),
    };

    // Other administrators act between the client's read and this check. The
    // hook runs without the org's lock held, since it calls back into the org.
    if let Some(hook) = org.before_patch_hook() {
        hook(&org, &group_id);
    }
    if roll(knobs.version_bump_rate) {
        org.bump_version(&group_id);
    }

    match org.apply_patch(&group_id, &if_match, &changes) {
        PatchOutcome::Applied(group) => {
            tracing::info!(
                group_id,
                version = group.version,
                changes = changes.len(),
                "the sandbox org applied a PATCH"
            );
            let etag = etag_of(group.version);
            match knobs.patch_answer {
                PatchAnswer::GroupBody => {
                    let body = group_json(&group, &base_url(&headers));
                    (StatusCode::OK, [(ETAG, etag)], Json(body)).into_response()
                }
                PatchAnswer::NoContent => (StatusCode::NO_CONTENT, [(ETAG, etag)]).into_response(),
            }
        }
        PatchOutcome::NotFound => group_not_found(&group_id),
        PatchOutcome::StaleVersion { current } => {
            version_conflict(knobs.conflict_style, &if_match, current)
        }
        PatchOutcome::Rejected(rejection) => patch_rejected(&rejection),
    }
}

fn patch_rejected(rejection: &PatchRejection) -> Response {
    scim_error(
        StatusCode::BAD_REQUEST,
        Some(rejection.scim_type),
        &rejection.detail,
    )
}

fn version_conflict(style: ConflictStyle, if_match: &str, current: u64) -> Response {
    let detail = format!(
        "Version does not match current version: If-Match {if_match} but the group is at {}",
        etag_of(current)
    );
    match style {
        ConflictStyle::InvalidVers400 => {
            scim_error(StatusCode::BAD_REQUEST, Some("invalidVers"), &detail)
        }
        ConflictStyle::Conflict409 => scim_error(StatusCode::CONFLICT, None, &detail),
        ConflictStyle::PreconditionFailed412 => {
            scim_error(StatusCode::PRECONDITION_FAILED, None, &detail)
        }
    }
}

#[derive(Deserialize)]
struct UserQuery {
    attributes: Option<String>,
}

/// `GET /api/v2/scim/v2/users/{id}`: the user, trimmed to `attributes` when
/// given (`id` and `schemas` always come back, as RFC 7644 wants).
async fn get_user(
    State(org): State<Org>,
    Path(user_id): Path<String>,
    Query(query): Query<UserQuery>,
    headers: HeaderMap,
) -> Response {
    let user_id = user_id.to_ascii_lowercase();
    let Some(user) = org.user(&user_id) else {
        return scim_error(
            StatusCode::NOT_FOUND,
            None,
            &format!("User {user_id} not found"),
        );
    };

    let body = user_json(&user, query.attributes.as_deref(), &base_url(&headers));
    Json(body).into_response()
}

/// Anything else under the org's address.
async fn unknown_route(Extension(correlation_id): Extension<CorrelationId>) -> Response {
    platform_error(
        StatusCode::NOT_FOUND,
        "not.found",
        "The requested resource was not found.",
        correlation_id,
    )
}

fn group_json(group: &Group, base: &str) -> Value {
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|member| {
            let collection = match member.kind {
                MemberKind::User => "users",
                MemberKind::Group => "groups",
            };
            json!({
                "value": member.value,
                "$ref": format!("{base}{SCIM_PREFIX}/{collection}/{}", member.value),
                "type": member.kind.scim_type(),
            })
        })
        .collect();

    json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": group.created.to_rfc3339_opts(SecondsFormat::Millis, true),
            "lastModified": group.last_modified.to_rfc3339_opts(SecondsFormat::Millis, true),
            "version": etag_of(group.version),
            "location": format!("{base}{SCIM_PREFIX}/groups/{}", group.id),
        },
    })
}

fn user_json(user: &User, attributes: Option<&str>, base: &str) -> Value {
    // Attributes may be plain ("roles") or fully qualified
    // ("urn:ietf:params:scim:schemas:core:2.0:User:roles").
    let wanted = |name: &str| {
        attributes.is_none_or(|list| {
            list.split(',')
                .filter_map(|attribute| attribute.trim().rsplit(':').next())
                .any(|attribute| attribute.eq_ignore_ascii_case(name))
        })
    };

    let mut body = Map::new();
    body.insert("schemas".into(), json!([USER_SCHEMA]));
    body.insert("id".into(), json!(user.id));
    if wanted("userName") {
        body.insert("userName".into(), json!(user.user_name));
    }
    if wanted("displayName") {
        body.insert("displayName".into(), json!(user.display_name));
    }
    if wanted("active") {
        body.insert("active".into(), json!(true));
    }
    if wanted("roles") {
        let roles: Vec<Value> = user
            .roles
            .iter()
            .map(|role| json!({ "value": role }))
            .collect();
        body.insert("roles".into(), Value::Array(roles));
    }
    if attributes.is_none() {
        let location = format!("{base}{SCIM_PREFIX}/users/{}", user.id);
        body.insert(
            "meta".into(),
            json!({ "resourceType": "User", "location": location }),
        );
    }
    Value::Object(body)
}

fn group_not_found(group_id: &str) -> Response {
    scim_error(
        StatusCode::NOT_FOUND,
        None,
        &format!("Group {group_id} not found"),
    )
}

/// A SCIM error (RFC 7644 §3.12), as the SCIM endpoints answer.
fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let (Some(scim_type), Some(fields)) = (scim_type, body.as_object_mut()) {
        fields.insert("scimType".into(), json!(scim_type));
    }
    (status, Json(body)).into_response()
}

/// A Genesys platform error, as its gateway answers 401, 404, 429 and 5xx.
fn platform_error(
    status: StatusCode,
    code: &str,
    message: &str,
    correlation_id: CorrelationId,
) -> Response {
    let body = json!({
        "message": message,
        "code": code,
        "status": status.as_u16(),
        "contextId": correlation_id.0,
    });
    (status, Json(body)).into_response()
}

fn rate_limited(retry_after_s: u64, correlation_id: CorrelationId) -> Response {
    let message =
        format!("Rate limit exceeded the maximum. Retry the request in [{retry_after_s}] seconds");
    let mut response = platform_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too.many.requests.retry.after",
        &message,
        correlation_id,
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// An answer that never arrives: its body fails before anything is written,
/// so hyper closes the connection without sending the status line, and the
/// client sees the connection closed mid-request.
fn dropped_connection() -> Response {
    let lost = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the sandbox org dropped the connection",
        ))
    });
    Response::new(axum::body::Body::from_stream(lost))
}

/// Mostly 503, sometimes 500 or 504, as Genesys's transient failures go.
fn server_error(correlation_id: CorrelationId) -> Response {
    let draw = rand::random::<f64>();
    let (status, code, message) = if draw < 0.8 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service.unavailable",
            "The service is unavailable.",
        )
    } else if draw < 0.9 {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal.server.error",
            "An internal error occurred.",
        )
    } else {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "gateway.timeout",
            "The request timed out upstream.",
        )
    };
    platform_error(status, code, message, correlation_id)
}

/// An OAuth error as Genesys's login service answers it.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({
        "error": error,
        "description": description,
        "error_description": description,
    });
    (status, Json(body)).into_response()
}

fn etag_of(version: u64) -> String {
    format!("\"{version}\"")
}

/// `http://<Host>` for `$ref` and `meta.location`; relative links when the
/// request has no usable Host.
fn base_url(headers: &HeaderMap) -> String {
    header_text(headers, &HOST)
        .map(|host| format!("http://{host}"))
        .unwrap_or_default()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}
