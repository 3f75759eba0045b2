use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use scaivault_api::Health;

use crate::extract::Caller;
use crate::{ApiError, AppState};

/// `GET /v1/health`: the process serves.
pub(crate) async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// `GET /v1/health/ready`: storage answers and the keys are loaded.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.vault.ready().await?;
    Ok(Json(Health { status: "ready".into(), version: env!("CARGO_PKG_VERSION").into() }))
}

/// `GET /metrics` (Prometheus text); any valid token may read it.
pub(crate) async fn metrics(State(state): State<AppState>, _caller: Caller) -> Response {
    state.metrics.sample(&state.vault).await;
    // prometheus-client writes OpenMetrics text (`# EOF`, `_total` counters); Prometheus and other
    // scrapers read it when told so.
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /v1/openapi.json`
pub(crate) async fn openapi(_caller: Caller) -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// `POST /v1/sys/rotate-master-key`
pub(crate) async fn rotate_master_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.rotate_master_key(&caller).await?).into_response())
}

/// `GET /v1/sys/key-status`
pub(crate) async fn key_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.key_status(&caller).await?).into_response())
}
