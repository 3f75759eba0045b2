use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_api::{FederationBackendRequest, ResolveConflictRequest, UpdateFederationBackendRequest};

use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::handlers::tokens::PageQuery;
use crate::{ApiError, AppState};

/// `POST /v1/federation/backends`
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<FederationBackendRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_federation_backend(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/federation/backends`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_federation_backends(&caller, q.limit, q.cursor.as_deref()).await?)
        .into_response())
}

/// `GET /v1/federation/backends/{id}`
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_federation_backend(&caller, &id).await?).into_response())
}

/// `PATCH /v1/federation/backends/{id}`
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateFederationBackendRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.update_federation_backend(&caller, &id, req).await?).into_response())
}

/// `DELETE /v1/federation/backends/{id}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_federation_backend(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/federation/backends/{id}/status`
pub(crate) async fn status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.federation_status(&caller, &id).await?).into_response())
}

/// `POST /v1/federation/backends/{id}/sync`
pub(crate) async fn sync(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.sync_federation_backend(&caller, &id).await?).into_response())
}

/// `GET /v1/federation/backends/{id}/conflicts`
pub(crate) async fn conflicts(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_sync_conflicts(&caller, &id).await?).into_response())
}

/// `POST /v1/federation/backends/{id}/conflicts/resolve`
pub(crate) async fn resolve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ResolveConflictRequest>,
) -> Result<StatusCode, ApiError> {
    state.vault.resolve_sync_conflict(&caller, &id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}
