pub(crate) mod audit;
pub(crate) mod federation;
pub(crate) mod identity;
pub(crate) mod policies;
pub(crate) mod rotation;
pub(crate) mod secrets;
pub(crate) mod sys;
pub(crate) mod tokens;
pub(crate) mod webhooks;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_core::CoreError;

use crate::ApiError;
use crate::audit::AuditDetail;

/// `201 Created` with the new object, its id noted for the request's audit record.
pub(crate) fn created<T: serde::Serialize>(body: T, id: impl FnOnce(&T) -> &str) -> Response {
    let detail = AuditDetail::created(id(&body));
    (StatusCode::CREATED, detail, Json(body)).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError(CoreError::NotFound("route"))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError(CoreError::NotFound("route for this method"))
}
