use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use scaivault_api::{
    AssignRotationRequest, ForceRotationRequest, RotationPolicyRequest, UpdateRotationPolicyRequest,
};
use scaivault_core::CoreError;
use scaivault_domain::SecretPath;

use crate::audit::AuditDetail;
use crate::audit::AuditSlot;
use crate::extract::{ApiJson, ApiPath, ApiQuery, AssignmentTarget, Caller, OptionalJson};
use crate::handlers::tokens::PageQuery;
use crate::{ApiError, AppState};

/// `POST /v1/rotation/policies`
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<RotationPolicyRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_rotation_policy(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/rotation/policies`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_rotation_policies(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `GET /v1/rotation/policies/{id}`
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_rotation_policy(&caller, &id).await?).into_response())
}

/// `PATCH /v1/rotation/policies/{id}`
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateRotationPolicyRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.update_rotation_policy(&caller, &id, req).await?).into_response())
}

/// `DELETE /v1/rotation/policies/{id}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_rotation_policy(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/rotation/policies/{id}/secrets`
pub(crate) async fn assign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AssignRotationRequest>,
) -> Result<Response, ApiError> {
    let a = state.vault.assign_rotation(&caller, &id, req).await?;
    let detail = AuditDetail { secret_path: Some(a.secret_path.clone()), ..AuditDetail::default() };
    Ok((StatusCode::CREATED, detail, Json(a)).into_response())
}

/// `GET /v1/rotation/policies/{id}/secrets`
pub(crate) async fn assignments(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let list = state.vault.list_rotation_assignments(&caller, &id, q.limit, q.cursor.as_deref()).await?;
    Ok(Json(list).into_response())
}

/// `DELETE /v1/rotation/policies/{id}/secrets/{path}` and
/// `GET /v1/rotation/policies/{id}/secrets/{path}/readers`.
pub(crate) async fn assignment(
    State(state): State<AppState>,
    Caller(caller): Caller,
    method: axum::http::Method,
    AssignmentTarget { policy_id: id, raw_path: rest }: AssignmentTarget,
) -> Result<Response, ApiError> {
    let parse = |p: &str| SecretPath::parse(p).map_err(CoreError::from);
    match (method.as_str(), rest.strip_suffix("/readers")) {
        ("GET", Some(path)) => {
            Ok(Json(state.vault.stale_readers(&caller, &id, &parse(path)?).await?).into_response())
        }
        ("DELETE", _) => {
            state.vault.unassign_rotation(&caller, &id, &parse(&rest)?).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(CoreError::NotFound("route").into()),
    }
}

/// `POST /v1/rotation/policies/{id}/rotate`
pub(crate) async fn rotate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    audit: Option<Extension<AuditSlot>>,
    OptionalJson(req): OptionalJson<ForceRotationRequest>,
) -> Result<Response, ApiError> {
    let request = audit.as_ref().map(|Extension(slot)| slot.request());
    let done = state.vault.force_rotation(&caller, &id, req.secret_paths, request.as_ref()).await?;
    Ok((StatusCode::ACCEPTED, Json(done)).into_response())
}
