//! Bearer-token check for admin routes.

use crate::api::ApiError;
use axum::http::HeaderMap;

/// Compares in constant time, so the token cannot be guessed byte by byte from timings.
fn token_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Ok` when `headers` carry `Authorization: Bearer <expected>`. With no token
/// configured, admin routes are refused outright rather than left open.
pub fn require_admin(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin routes are disabled: no admin token configured (TRUSTY_ADMIN_TOKEN)",
        )
        .retryable(false));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if token_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized().retryable(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn checks_bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(require_admin(&h, Some("s3cret")).unwrap_err().status, 401);
        h.insert("authorization", HeaderValue::from_static("Bearer wrong"));
        assert_eq!(require_admin(&h, Some("s3cret")).unwrap_err().status, 401);
        h.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert!(require_admin(&h, Some("s3cret")).is_ok());
        assert_eq!(require_admin(&h, None).unwrap_err().status, 403);
    }
}
