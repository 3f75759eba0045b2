use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_api::CreateTokenRequest;
use serde::Deserialize;

use crate::audit::AuditDetail;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
}

/// `POST /v1/auth/tokens`
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<Response, ApiError> {
    let t = state.vault.create_token(&caller, req).await?;
    let detail = AuditDetail::created(&t.id).subject(&t.identity_type, &t.identity_id);
    Ok((StatusCode::CREATED, detail, Json(t)).into_response())
}

/// `GET /v1/auth/tokens`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_tokens(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `DELETE /v1/auth/tokens/{id}`
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.revoke_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/auth/whoami`
pub(crate) async fn whoami(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.whoami(&caller).await?).into_response())
}
