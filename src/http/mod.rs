//! The HTTP API: router, middleware, and the operational endpoints.
//!
//! Layers, outermost first: request id (set, then echoed), then one
//! middleware that opens the request's span, answers 503 while shutting
//! down, and counts the request by route template.

mod auth;
mod paging;
mod problem;
mod removals;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::{Instrument, debug, info_span, warn};
use utoipa::OpenApi;

use crate::service::RemovalService;

pub use auth::{ApiClients, token_sha256};
pub use problem::ApiError;
pub use removals::parse_removal_body;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<RemovalService>,
    pub clients: Arc<ApiClients>,
}

/// Routes that keep answering while the service shuts down.
const ALWAYS_SERVED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The whole API.
pub fn router(service: Arc<RemovalService>) -> Router {
    let clients = Arc::new(ApiClients::new(&service.settings.api.clients));
    let state = AppState { service, clients };

    Router::new()
        .route("/groups/{group_id}/removals", post(removals::submit))
        .route("/removals", get(removals::list))
        .route("/removals/{id}", get(removals::get_one))
        .route("/removals/{id}/cancel", post(removals::cancel))
        .route("/webhooks/deliveries", get(webhooks::list))
        .route(
            "/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Opens the request span, turns requests away while shutting down, and
/// counts each request by method, route template and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let span = info_span!("http_request", %method, %route, %request_id);

    let response = async {
        if state.service.is_shutting_down() && !ALWAYS_SERVED.contains(&route.as_str()) {
            return ApiError::ShuttingDown.into_response();
        }
        let response = next.run(request).await;
        let status = response.status();
        if status.is_server_error() {
            warn!(status = status.as_u16(), "request failed");
        } else {
            debug!(status = status.as_u16(), "request answered");
        }
        response
    }
    .instrument(span)
    .await;

    let metrics = &state.service.metrics;
    let status = response.status().as_u16().to_string();
    metrics
        .http_requests
        .with_label_values(&[&method, &route, &status])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this route does not take that method".into())
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200)), tag = "operations")]
async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
}

/// The store answers and the service is not shutting down. Genesys is left
/// out on purpose: a credential failure is an alert, not a reason to take
/// every replica out of the load balancer.
#[utoipa::path(
    get,
    path = "/readyz",
    responses((status = 200), (status = 503)),
    tag = "operations"
)]
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if state.service.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    state
        .service
        .store
        .ping()
        .await
        .map_err(|_| ApiError::StoreUnavailable)?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ready"})),
    ))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200)), tag = "operations")]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    (
        [(header::CONTENT_TYPE, content_type)],
        state.service.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scim-removals",
        description = "Removes members from Genesys Cloud SCIM groups safely: every rule is \
            checked before anything changes, and each removal is one atomic PATCH guarded by \
            the group's version. Errors are RFC 9457 problem details."
    ),
    paths(
        removals::submit,
        removals::get_one,
        removals::cancel,
        removals::list,
        webhooks::list,
        webhooks::redeliver,
        healthz,
        readyz,
        metrics,
    ),
    components(schemas(
        removals::RemovalBody,
        removals::RemovalPage,
        crate::removal::Removal,
        crate::removal::Status,
        crate::removal::Mode,
        crate::removal::Rule,
        crate::removal::Blocked,
        crate::removal::Violation,
        crate::removal::Failure,
        crate::removal::FailureCode,
        webhooks::DeliveryOut,
        webhooks::DeliveryPage,
        webhooks::DeliveryState,
        crate::webhook::WebhookEvent,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "removals"),
        (
            name = "webhooks",
            description = "Each finished removal (not dry runs, not cancelled ones) is \
                delivered at least once to `webhook.url` as a `WebhookEvent`, with Standard \
                Webhooks headers `webhook-id` (the same on every attempt), `webhook-timestamp` \
                and `webhook-signature` (one `v1,` entry per configured secret). Any 2xx \
                answer means delivered; failures are retried on `webhook.retry_schedule_ms` \
                with up to 20% jitter, then the delivery is dead."
        ),
        (name = "operations")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
