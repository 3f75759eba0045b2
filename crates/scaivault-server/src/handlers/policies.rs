use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_api::{BindingRequest, PolicyRequest, PolicyTestRequest};

use crate::audit::AuditDetail;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::handlers::tokens::PageQuery;
use crate::{ApiError, AppState};

/// `POST /v1/policies`
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_policy(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/policies`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_policies(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `GET /v1/policies/{id}`
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_policy(&caller, &id).await?).into_response())
}

/// `PUT /v1/policies/{id}`
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.update_policy(&caller, &id, req).await?).into_response())
}

/// `DELETE /v1/policies/{id}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_policy(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/policies/test`
pub(crate) async fn test(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<PolicyTestRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.test_policy(&caller, req).await?).into_response())
}

/// `POST /v1/policies/{id}/bindings`
pub(crate) async fn bind(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<BindingRequest>,
) -> Result<Response, ApiError> {
    let b = state.vault.create_binding(&caller, &id, req).await?;
    let detail =
        AuditDetail::created(&format!("{}/{}", b.policy_id, b.id)).subject(&b.identity_type, &b.identity_id);
    Ok((StatusCode::CREATED, detail, Json(b)).into_response())
}

/// `GET /v1/policies/{id}/bindings`
pub(crate) async fn bindings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_bindings(&caller, &id, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `GET /v1/policies/{id}/bindings/{binding_id}`
pub(crate) async fn binding(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, binding_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_binding(&caller, &id, &binding_id).await?).into_response())
}

/// `DELETE /v1/policies/{id}/bindings/{binding_id}`
pub(crate) async fn unbind(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, binding_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_binding(&caller, &id, &binding_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
