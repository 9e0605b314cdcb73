//! What the listing endpoints share: page sizes, opaque cursors, and path ids
//! that may arrive percent-encoded.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::problem::ApiError;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

/// `limit`: 1 to 200, 50 when absent.
pub fn limit(raw: Option<String>) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "limit: {raw:?} is not a whole number from 1 to {MAX_LIMIT}"
            ))
        })
}

/// The cursor handed out as `next`: opaque to callers, a position to us.
pub fn encode_cursor(position: i64) -> String {
    URL_SAFE_NO_PAD.encode(position.to_string())
}

/// `after`, as [`encode_cursor`] made it.
pub fn decode_cursor(raw: Option<String>) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| {
        URL_SAFE_NO_PAD
            .decode(&raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| ApiError::Invalid(format!("after: {raw:?} is not a cursor")))
    })
    .transpose()
}

/// A path segment, or a 422 when it is not valid percent-encoded UTF-8 (axum
/// would answer a plain-text 400 before the caller is even authenticated).
pub fn path_segment(
    segment: Result<Path<String>, PathRejection>,
    name: &str,
) -> Result<String, ApiError> {
    segment
        .map(|Path(segment)| segment)
        .map_err(|_| ApiError::Invalid(format!("{name}: not a valid percent-encoded UTF-8 id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = encode_cursor(42);
        assert_eq!(decode_cursor(Some(cursor)).unwrap(), Some(42));
        assert!(decode_cursor(Some("%%%".into())).is_err());
        assert!(decode_cursor(Some(URL_SAFE_NO_PAD.encode("forty"))).is_err());
        assert_eq!(decode_cursor(None).unwrap(), None);
    }

    #[test]
    fn limits_run_from_1_to_200_with_50_by_default() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some("200".into())).unwrap(), 200);
        assert!(limit(Some("0".into())).is_err());
        assert!(limit(Some("201".into())).is_err());
        assert!(limit(Some("ten".into())).is_err());
    }
}
