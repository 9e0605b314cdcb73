//! The OAuth client-credentials token, cached and refreshed by one caller at a
//! time.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::info;

use super::scim::{TokenAnswer, TokenError};
use super::transport::{Operation, Transport, log_upstream_problem};
use crate::removal::DirectoryError;

/// Used when the token answer has no `expires_in`: the shortest lifetime
/// Genesys lets an OAuth client configure.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);

/// Refresh this long before expiry, at most: long enough that a call started
/// with the old token still finishes with it.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

pub struct TokenCache {
    url: String,
    client_id: String,
    client_secret: SecretString,
    /// The lock is held across a refresh, so concurrent callers wait for the
    /// one refresh instead of each starting their own (single flight).
    current: Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    value: SecretString,
    refresh_at: Instant,
    expires_at: Instant,
}

impl TokenCache {
    pub fn new(login_base: &str, client_id: String, client_secret: SecretString) -> TokenCache {
        TokenCache {
            url: format!("{login_base}/oauth/token"),
            client_id,
            client_secret,
            current: Mutex::new(None),
        }
    }

    /// A token valid for a while yet, fetched when needed.
    ///
    /// # Errors
    /// [`DirectoryError::Auth`] when the login host refuses the credentials
    /// (never retried), [`DirectoryError::Unavailable`] when it cannot be
    /// reached.
    pub async fn get(&self, transport: &Transport) -> Result<SecretString, DirectoryError> {
        let mut current = self.current.lock().await;
        let now = Instant::now();
        if let Some(token) = current.as_ref().filter(|token| now < token.refresh_at) {
            return Ok(token.value.clone());
        }

        match self.fetch(transport).await {
            Ok(token) => {
                let value = token.value.clone();
                *current = Some(token);
                Ok(value)
            }
            // A refresh ahead of expiry that failed leaves the old token
            // usable until it really expires.
            Err(error) => match current.as_ref().filter(|token| now < token.expires_at) {
                Some(token) => Ok(token.value.clone()),
                None => Err(error),
            },
        }
    }

    /// Forgets `rejected` after the API answered 401 to it, unless another
    /// caller already replaced it.
    pub async fn invalidate(&self, rejected: &SecretString) {
        let mut current = self.current.lock().await;
        let same = current
            .as_ref()
            .is_some_and(|token| token.value.expose_secret() == rejected.expose_secret());
        if same {
            *current = None;
        }
    }

    async fn fetch(&self, transport: &Transport) -> Result<Token, DirectoryError> {
        let response = transport
            .send(Operation::Token, || {
                transport
                    .http
                    .post(&self.url)
                    .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;

        let status = response.status();
        if !status.is_success() {
            log_upstream_problem(Operation::Token, &response, 1);
            let body: TokenError = response.json().await.unwrap_or_default();
            let reason = body
                .error_description
                .or(body.description)
                .or(body.error)
                .unwrap_or_else(|| "no reason given".into());
            let detail = format!("the token endpoint answered {status}: {reason}");
            return Err(match status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    DirectoryError::Auth(detail)
                }
                _ => DirectoryError::Unavailable(detail),
            });
        }

        let answer: TokenAnswer = response.json().await.map_err(|error| {
            DirectoryError::Unavailable(format!("unreadable token answer: {error}"))
        })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(FALLBACK_LIFETIME);
        let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
        let now = Instant::now();
        info!(
            expires_in_s = lifetime.as_secs(),
            "fetched a Genesys Cloud token"
        );

        Ok(Token {
            value: SecretString::from(answer.access_token),
            refresh_at: now + lifetime - margin,
            expires_at: now + lifetime,
        })
    }
}
