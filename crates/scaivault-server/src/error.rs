use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scaivault_api::{ErrorBody, ErrorCode, ErrorDetail};
use scaivault_core::CoreError;

use crate::middleware::current_request_id;

/// Every error a handler returns. The one place an error becomes a status code.
#[derive(Debug)]
pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

impl From<scaivault_domain::PathError> for ApiError {
    fn from(e: scaivault_domain::PathError) -> Self {
        ApiError(e.into())
    }
}

pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::InvalidPath => StatusCode::BAD_REQUEST,
        ErrorCode::AuthenticationRequired | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        ErrorCode::SecretNotFound | ErrorCode::VersionNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict | ErrorCode::ReadOnlyPath => StatusCode::CONFLICT,
        ErrorCode::SecretExpired => StatusCode::GONE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::BackendError => StatusCode::BAD_GATEWAY,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = status_of(code);
        let request_id = current_request_id();
        if status.is_server_error() {
            // The cause goes to the log only; the client gets an opaque message and the request id.
            tracing::error!(code = code.as_str(), request_id = %request_id, cause = %self.0.detail(), "request failed");
        }
        let message = if status.is_server_error() {
            format!("{} (request {request_id})", self.0)
        } else {
            self.0.to_string()
        };
        let body = ErrorBody { error: ErrorDetail { code, message, request_id } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.0.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
