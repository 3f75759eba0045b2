use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use scaivault_api::{DestroyRequest, PatchMetadataRequest, WriteSecretRequest};
use scaivault_core::{CoreError, Principal, Space};
use scaivault_domain::Version;
use serde::Deserialize;

use crate::audit::AuditSlot;
use crate::extract::{ApiJson, ApiQuery, Caller, OptionalJson, SecretTarget};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    version: Option<String>,
    /// `/versions` only.
    limit: Option<u32>,
    /// `/versions` only.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    tag: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/secrets/{path}` and `GET /v1/secrets/{path}/versions`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
    ApiQuery(query): ApiQuery<ReadQuery>,
    audit: Option<Extension<AuditSlot>>,
) -> Result<Response, ApiError> {
    if let Some(path) = target.before("versions") {
        if query.version.is_some() {
            return Err(CoreError::InvalidRequest("version does not apply to /versions".into()).into());
        }
        let versions = state
            .vault
            .secret_versions(&caller, target.space(), &path?, query.limit, query.cursor.as_deref())
            .await?;
        return Ok(Json(versions).into_response());
    }
    if query.limit.is_some() || query.cursor.is_some() {
        return Err(
            CoreError::InvalidRequest("limit and cursor apply to lists, not to a secret".into()).into()
        );
    }
    let path = target.path()?;
    let version = query
        .version
        .map(|v| v.parse::<Version>())
        .transpose()
        .map_err(|e| CoreError::InvalidRequest(format!("version: {e}")))?;
    let secret = state.vault.read_secret(&caller, target.space(), &path, version).await?;
    if let Some(Extension(slot)) = audit {
        slot.version(secret.version);
    }
    Ok(Json(secret).into_response())
}

/// `PUT /v1/secrets/{path}`: `201` for the first version, `200` after.
pub(crate) async fn put(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
    audit: Option<Extension<AuditSlot>>,
    ApiJson(req): ApiJson<WriteSecretRequest>,
) -> Result<Response, ApiError> {
    let path = target.path()?;
    let write_audit = audit.as_ref().and_then(|Extension(slot)| slot.write_audit());
    let (written, created) =
        state.vault.write_secret(&caller, target.space(), &path, req, write_audit).await?;
    if let Some(Extension(slot)) = audit {
        slot.version(written.version);
        slot.recorded();
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(written)).into_response())
}

/// `DELETE /v1/secrets/{path}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_secret(&caller, target.space(), &target.path()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /v1/secrets/{path}/metadata`
pub(crate) async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
    ApiJson(req): ApiJson<PatchMetadataRequest>,
) -> Result<Response, ApiError> {
    let path = target.before("metadata").ok_or(CoreError::NotFound("route"))??;
    Ok(Json(state.vault.update_metadata(&caller, target.space(), &path, req).await?).into_response())
}

/// `POST /v1/secrets/{path}/undelete|destroy|rotate`
pub(crate) async fn post(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
    OptionalJson(body): OptionalJson<DestroyRequest>,
) -> Result<Response, ApiError> {
    if let Some(path) = target.before("undelete") {
        return Ok(Json(state.vault.undelete_secret(&caller, target.space(), &path?).await?).into_response());
    }
    if let Some(path) = target.before("destroy") {
        return Ok(
            Json(state.vault.destroy_versions(&caller, target.space(), &path?, body).await?).into_response()
        );
    }
    if let Some(path) = target.before("rotate") {
        let due = state.vault.rotate_secret(&caller, target.space(), &path?).await?;
        return Ok((StatusCode::ACCEPTED, Json(due)).into_response());
    }
    Err(CoreError::NotFound("route").into())
}

/// `GET /v1/secrets?prefix=&tag=&limit=&cursor=`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    list_in(state, caller, q, Space::Tenant).await
}

/// `GET /v1/partner/secrets?prefix=&tag=&limit=&cursor=`
pub(crate) async fn list_partner(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    list_in(state, caller, q, Space::Partner).await
}

async fn list_in(
    state: AppState,
    caller: Principal,
    q: ListQuery,
    space: Space,
) -> Result<Response, ApiError> {
    let list = state
        .vault
        .list_secrets(&caller, space, q.prefix.as_deref(), q.tag.as_deref(), q.limit, q.cursor.as_deref())
        .await?;
    Ok(Json(list).into_response())
}
