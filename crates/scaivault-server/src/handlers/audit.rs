use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use scaivault_core::{AuditQuery, CoreError};
use serde::Deserialize;

use crate::extract::{ApiQuery, Caller, SecretTarget};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    identity_id: Option<String>,
    path: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/audit`
pub(crate) async fn query(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let q = AuditQuery {
        identity_id: p.identity_id,
        path: p.path,
        action: p.action,
        outcome: p.outcome,
        start: p.start,
        end: p.end,
        limit: p.limit,
        cursor: p.cursor,
    };
    Ok(Json(state.vault.query_audit(&caller, q).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/audit/secrets/{path}`
pub(crate) async fn secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    target: SecretTarget,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    let path = target.path()?;
    Ok(Json(state.vault.secret_audit(&caller, &path, p.limit, p.cursor.as_deref()).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportParams {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// `GET /v1/audit/export`: JSON lines, streamed page by page, so memory stays flat for any size.
pub(crate) async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    // The first page is fetched here so that a refusal is an ordinary error answer.
    let first = state.vault.export_audit_page(&caller, p.start, p.end, None).await?;
    let seed = (state, caller, p.start, p.end, Ok(first));
    let stream = futures_util::stream::unfold(Some(seed), |seed| async move {
        let (state, caller, start, end, page) = seed?;
        let (records, last) = match page {
            Ok(page) => page,
            Err(e) => {
                // Ending with an error breaks the transfer, so a client never mistakes a cut-off
                // export for a complete one.
                tracing::error!(error = %CoreError::detail(&e), "audit export stopped");
                return Some((Err(std::io::Error::other("the audit export stopped")), None));
            }
        };
        if records.is_empty() {
            return None;
        }
        let mut chunk = Vec::new();
        for r in &records {
            if serde_json::to_writer(&mut chunk, r).is_err() {
                return Some((Err(std::io::Error::other("encoding")), None));
            }
            chunk.push(b'\n');
        }
        let next = state.vault.export_audit_page(&caller, start, end, last).await;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), Some((state, caller, start, end, next))))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

/// `GET /v1/audit/verify`
pub(crate) async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.vault.verify_audit(&caller).await?).into_response())
}
