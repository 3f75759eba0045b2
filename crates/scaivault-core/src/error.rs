use scaivault_api::ErrorCode;
use scaivault_crypto::{CryptoError, CryptoErrorKind};
use scaivault_store::{StoreError, StoreErrorKind};
use thiserror::Error;

/// What a use case can answer instead of a result. Messages are safe to show a client: they never
/// carry a secret value or a token. Internal causes are kept for the log only.
#[derive(Debug, Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    AuthenticationRequired,
    #[error("{0}")]
    TokenExpired(&'static str),
    #[error("{0}")]
    AccessDenied(String),
    #[error("secret not found")]
    SecretNotFound,
    #[error("version {0} not found")]
    VersionNotFound(u64),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// A change to a path a proxy-mode federation backend serves.
    #[error("{0}")]
    ReadOnlyPath(String),
    /// A federation backend answered with an error (or its configuration cannot work).
    #[error("{0}")]
    BackendError(String),
    /// A federation backend did not answer.
    #[error("{0}")]
    BackendUnavailable(String),
    #[error("version {0} has expired: its grace period is over")]
    SecretExpired(u64),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests: retry after {0} s")]
    RateLimited(u64),
    #[error("storage is unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            CoreError::InvalidPath(_) => ErrorCode::InvalidPath,
            CoreError::AuthenticationRequired => ErrorCode::AuthenticationRequired,
            CoreError::TokenExpired(_) => ErrorCode::TokenExpired,
            CoreError::AccessDenied(_) => ErrorCode::AccessDenied,
            CoreError::SecretNotFound => ErrorCode::SecretNotFound,
            CoreError::VersionNotFound(_) => ErrorCode::VersionNotFound,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::ReadOnlyPath(_) => ErrorCode::ReadOnlyPath,
            CoreError::BackendError(_) => ErrorCode::BackendError,
            CoreError::BackendUnavailable(_) => ErrorCode::ServiceUnavailable,
            CoreError::SecretExpired(_) => ErrorCode::SecretExpired,
            CoreError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            CoreError::RateLimited(_) => ErrorCode::RateLimited,
            CoreError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            CoreError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// Seconds a client should wait before trying again, for `429` and `503` answers.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            CoreError::RateLimited(secs) => Some(*secs),
            CoreError::Unavailable(_) | CoreError::BackendUnavailable(_) => Some(5),
            _ => None,
        }
    }

    /// The cause to log; for client-facing variants it is the message itself.
    pub fn detail(&self) -> String {
        match self {
            CoreError::Unavailable(d) | CoreError::Internal(d) => d.clone(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SecretNotFound => CoreError::SecretNotFound,
            StoreError::VersionNotFound(v) => CoreError::VersionNotFound(v),
            StoreError::NotFound => CoreError::NotFound("resource"),
            StoreError::CasMismatch { current } => {
                CoreError::Conflict(format!("check-and-set failed: the current version is {current}"))
            }
            StoreError::AlreadyExists => CoreError::Conflict("already exists".into()),
            StoreError::TypeChanged { current } => CoreError::Conflict(format!(
                "the secret's type changed to {current} while this write was checked; send it again"
            )),
            StoreError::MountTaken { id, mount } => {
                CoreError::Conflict(format!("mount overlaps federation backend {id}'s mount '{mount}'"))
            }
            e @ StoreError::LimitReached { .. } => CoreError::Conflict(e.to_string()),
            StoreError::Seal(c) => c.into(),
            other => match other.kind() {
                StoreErrorKind::Unavailable => CoreError::Unavailable(other.to_string()),
                _ => CoreError::Internal(other.to_string()),
            },
        }
    }
}

/// Metadata and descriptions over their limits: the message names the field, never its text.
impl From<scaivault_domain::MetadataError> for CoreError {
    fn from(e: scaivault_domain::MetadataError) -> Self {
        CoreError::InvalidRequest(e.to_string())
    }
}

impl From<CryptoError> for CoreError {
    fn from(e: CryptoError) -> Self {
        match e.kind() {
            CryptoErrorKind::Integrity => CoreError::Internal(format!("integrity check failed: {e}")),
            CryptoErrorKind::Config | CryptoErrorKind::Internal => CoreError::Internal(e.to_string()),
        }
    }
}
