pub(crate) mod audit;
pub(crate) mod federation;
pub(crate) mod identity;
pub(crate) mod policies;
pub(crate) mod rotation;
pub(crate) mod secrets;
pub(crate) mod sys;
pub(crate) mod tokens;
pub(crate) mod webhooks;

use scaivault_core::CoreError;

use crate::ApiError;

pub(crate) async fn not_found() -> ApiError {
    ApiError(CoreError::NotFound("route"))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError(CoreError::NotFound("route for this method"))
}
