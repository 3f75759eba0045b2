//! The audit layer: every authenticated request to an audited route leaves a record in its tenant's
//! chain before the answer leaves the server. If the record cannot be written, the answer is replaced
//! by `503 service_unavailable` and whatever the handler produced (a secret value, say) is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use scaivault_core::{AuditEvent, Principal, RequestInfo, WriteAudit};
use scaivault_domain::SecretPath;

use crate::middleware::current_request_id;
use crate::{ApiError, AppState};

#[derive(Debug, Default)]
struct Note {
    principal: Option<Principal>,
    version: Option<u64>,
    action: &'static str,
    secret_path: Option<String>,
    request: RequestInfo,
    /// The handler's core call already wrote the record, in its own transaction.
    recorded: bool,
}

/// Shared between the audit layer and the extractors and handlers of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<Note>>);

impl AuditSlot {
    fn note(&self) -> std::sync::MutexGuard<'_, Note> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn principal(&self, principal: &Principal) {
        self.note().principal = Some(principal.clone());
    }

    pub(crate) fn version(&self, version: u64) {
        self.note().version = Some(version);
    }

    /// What core needs to write a secret write's record inside the write's transaction.
    pub(crate) fn write_audit(&self) -> Option<WriteAudit> {
        let note = self.note();
        Some(WriteAudit {
            request: note.request.clone(),
            action: note.action.into(),
            secret_path: note.secret_path.clone()?,
            status_created: StatusCode::CREATED.as_u16(),
            status_updated: StatusCode::OK.as_u16(),
        })
    }

    /// What the layer knows of the request, for records core writes beside the request's own.
    pub(crate) fn request(&self) -> RequestInfo {
        self.note().request.clone()
    }

    /// The record was committed with the change; the layer must not write a second one.
    pub(crate) fn recorded(&self) {
        self.note().recorded = true;
    }
}

/// What a handler adds to its request's record, carried out on the response: the id of what it
/// created (the route names only its parent), whom a binding or token is for, and the secret a
/// body named.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditDetail {
    pub(crate) resource_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) secret_path: Option<String>,
}

impl AuditDetail {
    pub(crate) fn created(id: &str) -> Self {
        AuditDetail { resource_id: Some(id.to_owned()), ..Self::default() }
    }

    pub(crate) fn subject(mut self, identity_type: &str, identity_id: &str) -> Self {
        self.subject = Some(format!("{identity_type}:{identity_id}"));
        self
    }
}

impl IntoResponseParts for AuditDetail {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// Longest id taken from a request path into a record; ids we issue are far shorter.
const MAX_RESOURCE_ID_CHARS: usize = 128;

/// What stands in a record for an id segment that holds a token: someone who mistook a token for
/// its id (`DELETE /v1/auth/tokens/skt_…`) must not have it written into the trail.
const REDACTED: &str = "[redacted]";

/// Whether a path segment has the shape of a token (ours, or a JWT's base64 `{"`), not of an id.
fn token_shaped(segment: &str) -> bool {
    segment.starts_with(scaivault_crypto::TOKEN_PREFIX) || segment.starts_with("eyJ")
}

/// The object a route names by id: `{id}`, then `/{binding_id}` or `/{delivery_id}` below it.
fn resource_of(route: &str, path: &str) -> Option<String> {
    let mut ids = route.split('/').zip(path.split('/')).filter_map(|(r, p)| match r {
        "{id}" | "{binding_id}" | "{delivery_id}" => Some(if token_shaped(p) { REDACTED } else { p }),
        _ => None,
    });
    let first = ids.next()?;
    let joined = ids.fold(first.to_owned(), |acc, id| format!("{acc}/{id}"));
    Some(joined.chars().take(MAX_RESOURCE_ID_CHARS).collect())
}

const SECRET_SUFFIXES: [&str; 5] = ["versions", "metadata", "undelete", "destroy", "rotate"];

/// The operation a request makes on a secret: its method and, for the sub-resources, the path's
/// last segment.
fn secret_op(method: &Method, path: &str) -> &'static str {
    let last = path.rsplit_once('/').map_or(path, |(_, last)| last);
    let suffix = SECRET_SUFFIXES.iter().copied().find(|s| *s == last);
    match (method.as_str(), suffix) {
        ("GET" | "HEAD", Some("versions")) => "versions",
        ("GET" | "HEAD", _) => "read",
        ("PUT", _) => "write",
        ("DELETE", _) => "delete",
        ("PATCH", _) => "metadata",
        ("POST", Some(s)) => s,
        _ => "unknown",
    }
}

/// `secret.{op}`, or `partner_secret.{op}` for the partner API; spelled out so no request
/// allocates its action.
fn secret_action(partner: bool, op: &'static str) -> &'static str {
    let (tenant, partner_action) = match op {
        "read" => ("secret.read", "partner_secret.read"),
        "versions" => ("secret.versions", "partner_secret.versions"),
        "write" => ("secret.write", "partner_secret.write"),
        "delete" => ("secret.delete", "partner_secret.delete"),
        "metadata" => ("secret.metadata", "partner_secret.metadata"),
        "undelete" => ("secret.undelete", "partner_secret.undelete"),
        "destroy" => ("secret.destroy", "partner_secret.destroy"),
        "rotate" => ("secret.rotate", "partner_secret.rotate"),
        _ => ("secret.unknown", "partner_secret.unknown"),
    };
    if partner { partner_action } else { tenant }
}

/// The dotted action of a request, or `None` for routes that touch nothing audited.
fn action_for(method: &Method, route: &str, path: &str) -> Option<&'static str> {
    let m = method.as_str();
    let action = match (route, m) {
        ("/v1/secrets/{*path}", _) => secret_action(false, secret_op(method, path)),
        ("/v1/partner/secrets/{*path}", _) => secret_action(true, secret_op(method, path)),
        ("/v1/secrets", _) => "secret.list",
        ("/v1/partner/secrets", _) => "partner_secret.list",
        ("/v1/policies", "POST") => "policy.create",
        ("/v1/policies", _) => "policy.list",
        ("/v1/policies/test", _) => "policy.test",
        ("/v1/policies/{id}", "PUT") => "policy.update",
        ("/v1/policies/{id}", "DELETE") => "policy.delete",
        ("/v1/policies/{id}", _) => "policy.read",
        ("/v1/policies/{id}/bindings", "POST") => "policy.bind",
        ("/v1/policies/{id}/bindings", _) => "policy.bindings",
        ("/v1/policies/{id}/bindings/{binding_id}", "DELETE") => "policy.unbind",
        ("/v1/policies/{id}/bindings/{binding_id}", _) => "policy.binding",
        ("/v1/auth/tokens", "POST") => "token.create",
        ("/v1/auth/tokens", _) => "token.list",
        ("/v1/auth/tokens/{id}", _) => "token.revoke",
        ("/v1/sys/rotate-master-key", _) => "key.rotate",
        ("/v1/sys/key-status", _) => "key.status",
        ("/v1/identity/partners", "POST") => "partner.create",
        ("/v1/identity/partners", _) => "partner.list",
        ("/v1/identity/tenants", "POST") => "tenant.create",
        ("/v1/identity/tenants", _) => "tenant.list",
        ("/v1/audit", _) => "audit.query",
        ("/v1/audit/secrets/{*path}", _) => "audit.secret",
        ("/v1/audit/export", _) => "audit.export",
        ("/v1/audit/verify", _) => "audit.verify",
        ("/v1/webhooks", "POST") => "webhook.create",
        ("/v1/webhooks", _) => "webhook.list",
        ("/v1/webhooks/{id}", "PATCH") => "webhook.update",
        ("/v1/webhooks/{id}", "DELETE") => "webhook.delete",
        ("/v1/webhooks/{id}", _) => "webhook.read",
        ("/v1/webhooks/{id}/test", _) => "webhook.test",
        ("/v1/webhooks/{id}/rotate-secret", _) => "webhook.rotate_secret",
        ("/v1/webhooks/{id}/deliveries", _) => "webhook.deliveries",
        ("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", _) => "webhook.redeliver",
        ("/v1/subscriptions", "POST") => "subscription.create",
        ("/v1/subscriptions", _) => "subscription.list",
        ("/v1/subscriptions/{id}", "DELETE") => "subscription.delete",
        ("/v1/subscriptions/{id}", _) => "subscription.read",
        ("/v1/events/stream", _) => "event.stream",
        ("/v1/rotation/policies", "POST") => "rotation.policy.create",
        ("/v1/rotation/policies", _) => "rotation.policy.list",
        ("/v1/rotation/policies/{id}", "PATCH") => "rotation.policy.update",
        ("/v1/rotation/policies/{id}", "DELETE") => "rotation.policy.delete",
        ("/v1/rotation/policies/{id}", _) => "rotation.policy.read",
        ("/v1/rotation/policies/{id}/secrets", "POST") => "rotation.assign",
        ("/v1/rotation/policies/{id}/secrets", _) => "rotation.assignments",
        ("/v1/rotation/policies/{id}/secrets/{*path}", "DELETE") => "rotation.unassign",
        ("/v1/rotation/policies/{id}/secrets/{*path}", _) => "rotation.readers",
        ("/v1/rotation/policies/{id}/rotate", _) => "rotation.force",
        ("/v1/federation/backends", "POST") => "federation.backend.create",
        ("/v1/federation/backends", _) => "federation.backend.list",
        ("/v1/federation/backends/{id}", "PATCH") => "federation.backend.update",
        ("/v1/federation/backends/{id}", "DELETE") => "federation.backend.delete",
        ("/v1/federation/backends/{id}", _) => "federation.backend.read",
        ("/v1/federation/backends/{id}/status", _) => "federation.backend.status",
        ("/v1/federation/backends/{id}/sync", _) => "federation.sync.run",
        ("/v1/federation/backends/{id}/conflicts", _) => "federation.conflict.list",
        ("/v1/federation/backends/{id}/conflicts/resolve", _) => "federation.conflict.resolve",
        _ => return None,
    };
    Some(action)
}

/// The secret a request is about, when its path parses (a refused path is recorded without one).
fn secret_path_of(route: &str, path: &str) -> Option<String> {
    let raw = match route {
        "/v1/secrets/{*path}" => path.strip_prefix("/v1/secrets/")?,
        "/v1/partner/secrets/{*path}" => path.strip_prefix("/v1/partner/secrets/")?,
        "/v1/audit/secrets/{*path}" => path.strip_prefix("/v1/audit/secrets/")?,
        "/v1/rotation/policies/{id}/secrets/{*path}" => {
            let (_, p) = path.strip_prefix("/v1/rotation/policies/")?.split_once("/secrets/")?;
            p.strip_suffix("/readers").unwrap_or(p)
        }
        _ => return None,
    };
    let parsed = SecretPath::parse(raw).ok().or_else(|| {
        let head = SECRET_SUFFIXES.iter().find_map(|s| raw.strip_suffix(s)?.strip_suffix('/'))?;
        SecretPath::parse(head).ok()
    })?;
    // Partner secrets are recorded as `partner/…`, as tenant policies see them, so a tenant secret
    // and a partner secret of the same name never share a history.
    Some(if route.starts_with("/v1/partner/") { format!("partner/{parsed}") } else { parsed.to_string() })
}

fn outcome(status: axum::http::StatusCode) -> &'static str {
    if status.is_success() {
        "success"
    } else if status == axum::http::StatusCode::FORBIDDEN {
        "denied"
    } else {
        "error"
    }
}

pub(crate) async fn audit_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let Some(action) = action_for(req.method(), &route, &path) else {
        return next.run(req).await;
    };
    if state.skip_audit_for_benchmark {
        return next.run(req).await;
    }
    let slot = AuditSlot::default();
    let info = RequestInfo {
        request_id: current_request_id(),
        client_ip: req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    let secret_path = secret_path_of(&route, &path);
    let resource = resource_of(&route, &path);
    {
        let mut note = slot.note();
        note.action = action;
        note.secret_path = secret_path.clone();
        note.request = info.clone();
    }
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    let (principal, version, recorded) = {
        let mut note = slot.note();
        (note.principal.take(), note.version.take(), note.recorded)
    };
    if recorded {
        return response;
    }
    // Requests that never authenticated are not audited (the contract audits authenticated ones).
    let Some(principal) = principal else { return response };
    let status = response.status();
    let detail = response.extensions().get::<AuditDetail>().cloned().unwrap_or_default();
    let event = AuditEvent {
        action: action.into(),
        secret_path: secret_path.or(detail.secret_path),
        version,
        resource_id: detail.resource_id.or(resource),
        subject: detail.subject,
        outcome: outcome(status),
        status_code: status.as_u16(),
    };
    match state.vault.record_audit(&principal, &info, event).await {
        Ok(()) => response,
        Err(e) => ApiError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_paths() {
        let check = |m: Method, route: &str, path: &str, action: Option<&str>, secret: Option<&str>| {
            assert_eq!(action_for(&m, route, path), action, "{m} {path}");
            assert_eq!(secret_path_of(route, path).as_deref(), secret, "{m} {path}");
        };
        let s = "/v1/secrets/{*path}";
        check(Method::GET, s, "/v1/secrets/a/b", Some("secret.read"), Some("a/b"));
        check(Method::GET, s, "/v1/secrets/a/b/versions", Some("secret.versions"), Some("a/b"));
        check(Method::PUT, s, "/v1/secrets/a/b", Some("secret.write"), Some("a/b"));
        check(Method::PATCH, s, "/v1/secrets/a/metadata", Some("secret.metadata"), Some("a"));
        check(Method::POST, s, "/v1/secrets/a/rotate", Some("secret.rotate"), Some("a"));
        check(Method::POST, s, "/v1/secrets/a/destroy", Some("secret.destroy"), Some("a"));
        check(Method::DELETE, s, "/v1/secrets/a/../b", Some("secret.delete"), None);
        check(
            Method::GET,
            "/v1/partner/secrets/{*path}",
            "/v1/partner/secrets/x",
            Some("partner_secret.read"),
            Some("partner/x"),
        );
        check(Method::HEAD, s, "/v1/secrets/a/b", Some("secret.read"), Some("a/b"));
        check(Method::POST, s, "/v1/secrets/a/undelete", Some("secret.undelete"), Some("a"));
        check(Method::POST, s, "/v1/secrets/a/b", Some("secret.unknown"), Some("a/b"));
        let partner = "/v1/partner/secrets/{*path}";
        check(Method::PUT, partner, "/v1/partner/secrets/x", Some("partner_secret.write"), Some("partner/x"));
        check(
            Method::DELETE,
            partner,
            "/v1/partner/secrets/x",
            Some("partner_secret.delete"),
            Some("partner/x"),
        );
        check(
            Method::GET,
            partner,
            "/v1/partner/secrets/x/versions",
            Some("partner_secret.versions"),
            Some("partner/x"),
        );
        check(
            Method::POST,
            partner,
            "/v1/partner/secrets/x/rotate",
            Some("partner_secret.rotate"),
            Some("partner/x"),
        );
        // A segment only names a sub-resource when it is the whole last segment.
        check(Method::GET, s, "/v1/secrets/a/oldversions", Some("secret.read"), Some("a/oldversions"));
        check(Method::POST, "/v1/policies", "/v1/policies", Some("policy.create"), None);
        check(Method::DELETE, "/v1/auth/tokens/{id}", "/v1/auth/tokens/tok_1", Some("token.revoke"), None);
        check(Method::GET, "/v1/auth/whoami", "/v1/auth/whoami", None, None);
        check(Method::GET, "/v1/health", "/v1/health", None, None);
    }

    #[test]
    fn resources_named_by_the_route() {
        assert_eq!(resource_of("/v1/policies/{id}", "/v1/policies/pol_1").as_deref(), Some("pol_1"));
        assert_eq!(
            resource_of("/v1/policies/{id}/bindings/{binding_id}", "/v1/policies/pol_1/bindings/bnd_2")
                .as_deref(),
            Some("pol_1/bnd_2")
        );
        assert_eq!(
            resource_of(
                "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
                "/v1/webhooks/wh_1/deliveries/dlv_2/redeliver"
            )
            .as_deref(),
            Some("wh_1/dlv_2")
        );
        assert_eq!(resource_of("/v1/policies", "/v1/policies"), None);
        assert_eq!(resource_of("/v1/secrets/{*path}", "/v1/secrets/a/b"), None);
        let token = "/v1/auth/tokens/skt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(resource_of("/v1/auth/tokens/{id}", token).as_deref(), Some(REDACTED));
        let jwt = "/v1/auth/tokens/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert_eq!(resource_of("/v1/auth/tokens/{id}", jwt).as_deref(), Some(REDACTED));
        let long = format!("/v1/auth/tokens/{}", "x".repeat(1000));
        assert_eq!(resource_of("/v1/auth/tokens/{id}", &long).map(|r| r.len()), Some(MAX_RESOURCE_ID_CHARS));
    }
}
