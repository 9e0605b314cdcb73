//! API clients and their bearer tokens. Tokens are never stored: the
//! configuration holds the SHA-256 of each, and a request's token is hashed
//! and looked up.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::problem::ApiError;
use crate::config::ApiClientSettings;

/// The client a request came from.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub name: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ApiClients {
    by_hash: HashMap<String, ApiClient>,
}

impl ApiClients {
    pub fn new(clients: &[ApiClientSettings]) -> ApiClients {
        let by_hash = clients
            .iter()
            .map(|client| {
                let entry = ApiClient {
                    name: client.name.clone(),
                    scopes: client.scopes.clone(),
                };
                (client.token_sha256.to_ascii_lowercase(), entry)
            })
            .collect();
        ApiClients { by_hash }
    }

    /// The client whose token the request carries, if it holds `scope`.
    ///
    /// # Errors
    /// 401 for a missing or unknown token, 403 for a missing scope.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        scope: &'static str,
    ) -> Result<ApiClient, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;

        let client = self
            .by_hash
            .get(&token_sha256(token))
            .ok_or(ApiError::Unauthorized)?;
        if !client.scopes.iter().any(|held| held == scope) {
            return Err(ApiError::Forbidden(scope));
        }
        Ok(client.clone())
    }
}

/// The lowercase hex SHA-256 of a token, as `api.clients` holds it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn clients() -> ApiClients {
        ApiClients::new(&[ApiClientSettings {
            name: "governance".into(),
            token_sha256: token_sha256("s3cret"),
            scopes: vec!["removals:read".into()],
        }])
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn the_hash_matches_the_usual_sha256_hex() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_known_token_with_the_scope_is_let_through() {
        let client = clients()
            .authorize(&bearer("s3cret"), "removals:read")
            .unwrap();
        assert_eq!(client.name, "governance");
    }

    #[test]
    fn an_unknown_or_missing_token_is_unauthorized() {
        assert!(matches!(
            clients().authorize(&bearer("guess"), "removals:read"),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            clients().authorize(&HeaderMap::new(), "removals:read"),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn a_token_without_the_scope_is_forbidden() {
        assert!(matches!(
            clients().authorize(&bearer("s3cret"), "removals:write"),
            Err(ApiError::Forbidden("removals:write"))
        ));
    }
}
