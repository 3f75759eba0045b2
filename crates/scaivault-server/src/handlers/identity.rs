use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use scaivault_api::{PartnerRequest, TenantRequest};

use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::handlers::tokens::PageQuery;
use crate::{ApiError, AppState};

/// `POST /v1/identity/partners`
pub(crate) async fn create_partner(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<PartnerRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_partner(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/identity/partners`
pub(crate) async fn list_partners(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_partners(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `POST /v1/identity/tenants`
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<TenantRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_tenant(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/identity/tenants`
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_tenants(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}
