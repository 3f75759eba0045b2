//! The HTTP surface of ScaiVault: an axum router whose handlers parse the request, make one call
//! into `scaivault-core`, and map the result. Errors become HTTP here and nowhere else.
//!
//! This crate never authorises (core does, once per call), never touches SQL or ciphers, and never
//! logs a request body, a secret value or a token.

mod audit;
mod error;
mod extract;
mod handlers;
mod metrics;
mod middleware;
mod openapi;
mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use scaivault_core::Vault;

pub use error::ApiError;
pub use metrics::Metrics;
pub use tls::{serve_tls, tls_config};

/// Request bodies above this are refused with `413 payload_too_large`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub metrics: Arc<Metrics>,
    /// Benchmark-only: skip the audit write, to measure what auditing costs. Never in production.
    pub skip_audit_for_benchmark: bool,
    /// When the server begins to stop: responses that never end by themselves (event streams) end
    /// then, so the graceful drain can finish.
    pub stopping: Stopping,
}

impl AppState {
    pub fn new(vault: Arc<Vault>) -> AppState {
        AppState {
            vault,
            metrics: Arc::new(Metrics::new()),
            skip_audit_for_benchmark: false,
            stopping: Stopping::never(),
        }
    }
}

/// The server's "stopping now" signal, as long-lived responses see it.
#[derive(Debug, Clone)]
pub struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// A signal, and what fires it (send `true`).
    pub fn channel() -> (tokio::sync::watch::Sender<bool>, Stopping) {
        let (fire, seen) = tokio::sync::watch::channel(false);
        (fire, Stopping(seen))
    }

    /// A signal that never fires (a router nobody stops, as in tests).
    pub fn never() -> Stopping {
        Stopping::channel().1
    }

    /// Resolves once the server is stopping; never, when nothing is left that could stop it.
    pub async fn wait(mut self) {
        if self.0.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    use handlers::{
        audit as audit_routes, federation, identity, policies, rotation, secrets, sys, tokens, webhooks,
    };
    let inner = Router::new()
        .route("/v1/health", get(sys::health))
        .route("/v1/health/ready", get(sys::ready))
        .route("/metrics", get(sys::metrics))
        .route("/v1/openapi.json", get(sys::openapi))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{*path}",
            get(secrets::get)
                .put(secrets::put)
                .delete(secrets::delete)
                .patch(secrets::patch)
                .post(secrets::post),
        )
        .route("/v1/partner/secrets", get(secrets::list_partner))
        .route(
            "/v1/partner/secrets/{*path}",
            get(secrets::get)
                .put(secrets::put)
                .delete(secrets::delete)
                .patch(secrets::patch)
                .post(secrets::post),
        )
        .route("/v1/auth/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/auth/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/v1/auth/whoami", get(tokens::whoami))
        .route("/v1/policies", post(policies::create).get(policies::list))
        .route("/v1/policies/test", post(policies::test))
        .route("/v1/policies/{id}", get(policies::get).put(policies::update).delete(policies::delete))
        .route("/v1/policies/{id}/bindings", post(policies::bind).get(policies::bindings))
        .route("/v1/policies/{id}/bindings/{binding_id}", get(policies::binding).delete(policies::unbind))
        .route("/v1/identity/partners", post(identity::create_partner).get(identity::list_partners))
        .route("/v1/identity/tenants", post(identity::create_tenant).get(identity::list_tenants))
        .route("/v1/audit", get(audit_routes::query))
        .route("/v1/audit/secrets/{*path}", get(audit_routes::secret))
        .route("/v1/audit/export", get(audit_routes::export))
        .route("/v1/audit/verify", get(audit_routes::verify))
        .route("/v1/sys/rotate-master-key", post(sys::rotate_master_key))
        .route("/v1/sys/key-status", get(sys::key_status))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", post(webhooks::redeliver))
        .route("/v1/subscriptions", post(webhooks::create_subscription).get(webhooks::list_subscriptions))
        .route(
            "/v1/subscriptions/{id}",
            get(webhooks::get_subscription).delete(webhooks::delete_subscription),
        )
        .route("/v1/events/stream", get(webhooks::stream))
        .route("/v1/rotation/policies", post(rotation::create).get(rotation::list))
        .route(
            "/v1/rotation/policies/{id}",
            get(rotation::get).patch(rotation::update).delete(rotation::delete),
        )
        .route("/v1/rotation/policies/{id}/secrets", post(rotation::assign).get(rotation::assignments))
        .route(
            "/v1/rotation/policies/{id}/secrets/{*path}",
            get(rotation::assignment).delete(rotation::assignment),
        )
        .route("/v1/rotation/policies/{id}/rotate", post(rotation::rotate))
        .route("/v1/federation/backends", post(federation::create).get(federation::list))
        .route(
            "/v1/federation/backends/{id}",
            get(federation::get).patch(federation::update).delete(federation::delete),
        )
        .route("/v1/federation/backends/{id}/status", get(federation::status))
        .route("/v1/federation/backends/{id}/sync", post(federation::sync))
        .route("/v1/federation/backends/{id}/conflicts", get(federation::conflicts))
        .route("/v1/federation/backends/{id}/conflicts/resolve", post(federation::resolve))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit_layer))
        .route_layer(axum::middleware::from_fn(middleware::record_route))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), middleware::request_context))
        .with_state(state);
    // The tenant prefix is taken off before routing, so `/v1/t/{tenant}/…` reaches the same routes.
    Router::new().fallback_service(tower::ServiceExt::map_request(inner, tenant_prefix))
}

const TENANT_PREFIX: &str = "/v1/t/";

/// Rewrites `/v1/t/{tenant_id}/rest` to `/v1/rest`, remembering the tenant for [`extract::Caller`].
fn tenant_prefix(mut req: axum::extract::Request) -> axum::extract::Request {
    let Some(rest) = req.uri().path().strip_prefix(TENANT_PREFIX) else { return req };
    let Some((tenant, tail)) = rest.split_once('/') else { return req };
    if tenant.is_empty() {
        return req;
    }
    let tenant = tenant.to_owned();
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/v1/{tail}?{q}"),
        None => format!("/v1/{tail}"),
    };
    let mut parts = req.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return req,
    }
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        req.extensions_mut().insert(extract::ActingTenant(tenant));
    }
    req
}
