use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::Metrics;

tokio::task_local! {
    static REQUEST_ID: String;
}

const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID: usize = 128;

/// The id of the request being served (for error bodies), or `unknown` outside one.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "unknown".into())
}

fn client_request_id(req: &Request) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok =
        !value.is_empty() && value.len() <= MAX_REQUEST_ID && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_owned())
}

/// The route template a response came from, put there by [`record_route`].
#[derive(Clone)]
struct RouteTemplate(String);

/// Runs inside routing, where the matched template is known, and hands it to the outer layer.
pub(crate) async fn record_route(req: Request, next: Next) -> Response {
    let template = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(t) = template {
        response.extensions_mut().insert(RouteTemplate(t));
    }
    response
}

/// Gives every request an id (the client's `X-Request-ID` if sane), echoes it, and records the
/// request's metrics and one log line (debug level). Never logs headers, bodies or query strings.
pub(crate) async fn request_context(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let id = client_request_id(&req).unwrap_or_else(|| {
        scaivault_crypto::random_id("req_").unwrap_or_else(|_| format!("req_{}", std::process::id()))
    });
    let method = req.method().clone();
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    let route = response.extensions().get::<RouteTemplate>().map_or("unmatched", |r| r.0.as_str()).to_owned();
    let status = response.status().as_u16();
    // Methods are a client-chosen token: only the standard ones become labels, so no client can
    // grow the metrics without bound.
    let method_label = match method {
        Method::GET
        | Method::PUT
        | Method::POST
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS => method.as_str(),
        _ => "other",
    };
    metrics.observe_request(method_label, &route, status, elapsed);
    // At debug: a line per request costs a sixth of a cached read, and the audit trail already
    // records every request that touches something audited.
    tracing::debug!(
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %id,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
