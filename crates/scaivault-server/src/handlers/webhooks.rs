use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use scaivault_api::{
    CreateSubscriptionRequest, CreateWebhookRequest, RotateWebhookSecretRequest, UpdateWebhookRequest,
};
use serde::Deserialize;

use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, OptionalJson};
use crate::handlers::tokens::PageQuery;
use crate::{ApiError, AppState};

/// `POST /v1/webhooks`
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_webhook(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/webhooks`
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_webhooks(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `GET /v1/webhooks/{id}`
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_webhook(&caller, &id).await?).into_response())
}

/// `PATCH /v1/webhooks/{id}`
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateWebhookRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.update_webhook(&caller, &id, req).await?).into_response())
}

/// `DELETE /v1/webhooks/{id}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_hook(&caller, false, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/rotate-secret`
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<RotateWebhookSecretRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.rotate_webhook_secret(&caller, &id, req).await?).into_response())
}

/// `POST /v1/webhooks/{id}/test`
pub(crate) async fn test(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.test_webhook(&caller, &id).await?).into_response())
}

/// `GET /v1/webhooks/{id}/deliveries`
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.webhook_deliveries(&caller, &id, q.limit, q.cursor.as_deref()).await?)
        .into_response())
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/redeliver`
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state.vault.redeliver(&caller, &id, &delivery_id).await?;
    let body = serde_json::json!({ "delivery_id": delivery_id, "status": "pending" });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `POST /v1/subscriptions`
pub(crate) async fn create_subscription(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateSubscriptionRequest>,
) -> Result<Response, ApiError> {
    let created = state.vault.create_subscription(&caller, req).await?;
    Ok(super::created(created, |c| &c.id))
}

/// `GET /v1/subscriptions`
pub(crate) async fn list_subscriptions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.list_subscriptions(&caller, q.limit, q.cursor.as_deref()).await?).into_response())
}

/// `GET /v1/subscriptions/{id}`
pub(crate) async fn get_subscription(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.get_subscription(&caller, &id).await?).into_response())
}

/// `DELETE /v1/subscriptions/{id}`
pub(crate) async fn delete_subscription(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete_hook(&caller, true, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    paths: Option<String>,
    events: Option<String>,
}

/// `GET /v1/events/stream`: Server-Sent Events, `id` the event id, `event` its type, `data` the
/// envelope webhooks get.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let events = state.vault.event_stream(&caller, q.paths.as_deref(), q.events.as_deref()).await?;
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let e = events.next().await?;
        let sse = Event::default().id(e.id.as_str()).event(e.event_type.as_str()).data(e.body.as_str());
        Some((Ok::<Event, Infallible>(sse), events))
    });
    // A stop ends the stream (cleanly, at an event boundary), or it would hold the drain open.
    let stream = futures_util::StreamExt::take_until(stream, state.stopping.clone().wait());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
