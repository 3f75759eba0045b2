use serde::{Deserialize, Serialize};

/// The stable error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidPath,
    AuthenticationRequired,
    TokenExpired,
    AccessDenied,
    SecretNotFound,
    VersionNotFound,
    NotFound,
    Conflict,
    ReadOnlyPath,
    SecretExpired,
    PayloadTooLarge,
    RateLimited,
    BackendError,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::AuthenticationRequired => "authentication_required",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::SecretNotFound => "secret_not_found",
            ErrorCode::VersionNotFound => "version_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ReadOnlyPath => "read_only_path",
            ErrorCode::SecretExpired => "secret_expired",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BackendError => "backend_error",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

/// `{"error": {"code", "message", "request_id"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
}
