use scaivault_api::ErrorCode;

/// What a call can fail with. An answer from the server carries the contract's error `code`, its
/// message and the request id to quote in a support ticket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message} ({code}, HTTP {status}, request {request_id})", code = code.as_str())]
    Api { status: u16, code: ErrorCode, message: String, request_id: String, retry_after: Option<u64> },
    /// The server could not be reached (or the connection broke).
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server answered something that is not the contract's JSON.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client was configured wrongly (bad URL, bad token characters).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The contract's error code, for answers from the server.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The request id of the failed call, when the server answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api { request_id, .. } => Some(request_id),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: rate limited, unavailable, or unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable(_))
            || matches!(self.code(), Some(ErrorCode::RateLimited | ErrorCode::ServiceUnavailable))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::SecretNotFound | ErrorCode::VersionNotFound | ErrorCode::NotFound)
        )
    }
}
