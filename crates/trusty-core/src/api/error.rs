//! The one error body every route returns:
//! `{"error": "<code>", "message", "index_id"?, "retryable"}`, plus
//! `Retry-After` on 503s that are worth retrying.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_id: Option<String>,
    pub retryable: bool,
}

/// The `error` code of an [`ApiError`] response, also kept in the response's
/// extensions so middleware (request metrics) can tell answers apart without
/// reading the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode(pub String);

/// An error on its way to becoming an HTTP response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let retryable = status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT;
        ApiError {
            status,
            body: ErrorBody {
                error: code.to_string(),
                message: message.into(),
                index_id: None,
                retryable,
            },
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    pub fn not_found(index_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "index_not_found",
            format!("index {index_id:?} does not exist"),
        )
        .with_index(index_id)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
        e.body.retryable = false;
        e
    }

    pub fn with_index(mut self, index_id: &str) -> Self {
        self.body.index_id = Some(index_id.to_string());
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.body.retryable = retryable;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.body.error, self.body.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode(self.body.error.clone());
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        resp.extensions_mut().insert(code);
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Turns axum's JSON extraction failures into our error body instead of plain text.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        let mut e = ApiError::new(status, code, r.body_text());
        e.body.retryable = false;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_carries_its_error_code_for_middleware() {
        let resp = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_cold", "cold")
            .retry_after(1)
            .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("index_cold".into()))
        );
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
