//! Every error the API answers, turned into RFC 9457 problem details here and
//! nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::SubmitError;
use crate::store::StoreError;

/// Seconds a client is asked to wait before trying again after a 429 or 503.
const RETRY_AFTER_S: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("the token lacks the scope {0}")]
    Forbidden(&'static str),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QueueFull(String),
    #[error("the service is shutting down; try another replica or again shortly")]
    ShuttingDown,
    #[error("the store does not answer; try again shortly")]
    StoreUnavailable,
    #[error("an unexpected error occurred")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown | ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable last segment of the problem's `type` URI.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Invalid(_) => "invalid-request",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::QueueFull(_) => "queue-full",
            ApiError::ShuttingDown => "shutting-down",
            ApiError::StoreUnavailable => "store-unavailable",
            ApiError::Internal => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::BadRequest(_) => "Bad request",
            ApiError::Invalid(_) => "Invalid request",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::QueueFull(_) => "Too many queued removals",
            ApiError::ShuttingDown => "Shutting down",
            ApiError::StoreUnavailable => "Store unavailable",
            ApiError::Internal => "Internal error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({
            "type": format!("urn:scim-removals:problem:{}", self.kind()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        let mut response = (status, body.to_string()).into_response();

        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %cause, "store unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Setup(cause) | StoreError::Corrupt(cause) => {
                tracing::error!(error = %cause, "store failure");
                ApiError::Internal
            }
            // Only the worker saves progress; no request should meet this.
            StoreError::ClaimLost(id) => {
                tracing::error!(removal_id = %id, "a request met a lost claim");
                ApiError::Internal
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::QueueFull(count) => {
                ApiError::QueueFull(format!("{count} removals are already waiting"))
            }
            SubmitError::KeyReused => ApiError::Invalid(
                "this Idempotency-Key was used for a different group or body".into(),
            ),
            SubmitError::Store(error) => error.into(),
        }
    }
}
