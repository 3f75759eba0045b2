//! `GET /v1/openapi.json`, built from the route table below and the wire types' derived JSON
//! schemas. A test walks the table against the router, so a route cannot be documented without
//! existing.

use scaivault_api as api;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

#[derive(Clone, Copy)]
pub(crate) struct Operation {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) scope: Option<&'static str>,
    pub(crate) status: u16,
    pub(crate) request: Option<SchemaFn>,
    pub(crate) response: Option<SchemaFn>,
    pub(crate) query: &'static [(&'static str, &'static str)],
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    scope: Option<&'static str>,
) -> Operation {
    Operation { method, path, summary, scope, status: 200, request: None, response: None, query: &[] }
}

/// Every operation; the partner space mirrors the tenant's secrets routes verb for verb.
pub(crate) fn operations() -> Vec<Operation> {
    let mut all = tenant_operations();
    let partner: Vec<Operation> = all
        .iter()
        .filter_map(|o| {
            let path = PARTNER_PATHS.iter().find(|(tenant, _)| *tenant == o.path)?.1;
            Some(Operation { path, ..*o })
        })
        .collect();
    all.extend(partner);
    all
}

/// Tenant secret routes and their partner-space twins (static strings: the document borrows them).
const PARTNER_PATHS: &[(&str, &str)] = &[
    ("/v1/secrets", "/v1/partner/secrets"),
    ("/v1/secrets/{path}", "/v1/partner/secrets/{path}"),
    ("/v1/secrets/{path}/versions", "/v1/partner/secrets/{path}/versions"),
    ("/v1/secrets/{path}/metadata", "/v1/partner/secrets/{path}/metadata"),
    ("/v1/secrets/{path}/undelete", "/v1/partner/secrets/{path}/undelete"),
    ("/v1/secrets/{path}/destroy", "/v1/partner/secrets/{path}/destroy"),
    ("/v1/secrets/{path}/rotate", "/v1/partner/secrets/{path}/rotate"),
];

/// Groups operations in the document by the first path segment after `/v1`.
fn tag(path: &str) -> &str {
    match path.strip_prefix("/v1/") {
        Some(rest) if rest.starts_with("partner/") => "partner secrets",
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => "operations",
    }
}

const W: Option<&str> = Some("subscriptions:write");
const R: Option<&str> = Some("subscriptions:read");
const WH: &str = "/v1/webhooks/{id}";
const A: Option<&str> = Some("admin");
const ROT: &str = "/v1/rotation/policies/{id}";
const FED: &str = "/v1/federation/backends/{id}";
const FW: Option<&str> = Some("federation:write");
const FR: Option<&str> = Some("federation:read");
const PAGE: &[(&str, &str)] = &[("limit", "1-1000"), ("cursor", "opaque")];

fn tenant_operations() -> Vec<Operation> {
    vec![
        Operation { response: Some(schema::<api::Health>), ..op("get", "/v1/health", "Liveness", None) },
        Operation {
            response: Some(schema::<api::Health>),
            ..op("get", "/v1/health/ready", "Readiness: storage answers and keys are loaded", None)
        },
        op("get", "/metrics", "Prometheus metrics", Some("any")),
        op("get", "/v1/openapi.json", "This document", Some("any")),
        Operation {
            response: Some(schema::<api::SecretList>),
            query: &[
                ("prefix", "plain string prefix"),
                ("tag", "tag"),
                ("limit", "1-1000"),
                ("cursor", "opaque"),
            ],
            ..op("get", "/v1/secrets", "List secrets the caller may list", Some("secrets:list"))
        },
        Operation {
            request: Some(schema::<api::WriteSecretRequest>),
            response: Some(schema::<api::SecretWritten>),
            status: 201,
            ..op(
                "put",
                "/v1/secrets/{path}",
                "Write a new version (201 first, 200 later)",
                Some("secrets:write"),
            )
        },
        Operation {
            response: Some(schema::<api::SecretResponse>),
            query: &[("version", "a version number")],
            ..op("get", "/v1/secrets/{path}", "Read the current or a given version", Some("secrets:read"))
        },
        Operation {
            status: 204,
            ..op("delete", "/v1/secrets/{path}", "Soft-delete", Some("secrets:delete"))
        },
        Operation {
            response: Some(schema::<api::SecretVersions>),
            query: PAGE,
            ..op("get", "/v1/secrets/{path}/versions", "Version history, newest first", Some("secrets:list"))
        },
        Operation {
            request: Some(schema::<api::PatchMetadataRequest>),
            response: Some(schema::<api::SecretListItem>),
            ..op("patch", "/v1/secrets/{path}/metadata", "Replace metadata fields", Some("secrets:write"))
        },
        Operation {
            response: Some(schema::<api::SecretListItem>),
            ..op(
                "post",
                "/v1/secrets/{path}/undelete",
                "Restore a soft-deleted secret",
                Some("secrets:delete"),
            )
        },
        Operation {
            request: Some(schema::<api::DestroyRequest>),
            response: Some(schema::<api::DestroyResponse>),
            ..op(
                "post",
                "/v1/secrets/{path}/destroy",
                "Erase versions' ciphertext for good",
                Some("secrets:delete"),
            )
        },
        Operation {
            status: 202,
            response: Some(schema::<api::RotationAssignment>),
            ..op("post", "/v1/secrets/{path}/rotate", "Make rotation due now", Some("secrets:rotate"))
        },
        Operation {
            request: Some(schema::<api::CreateTokenRequest>),
            response: Some(schema::<api::CreatedToken>),
            status: 201,
            ..op("post", "/v1/auth/tokens", "Issue a personal access token (shown once)", Some("admin"))
        },
        Operation {
            response: Some(schema::<api::TokenList>),
            query: &[("limit", "1-1000"), ("cursor", "opaque")],
            ..op("get", "/v1/auth/tokens", "List token records", Some("admin"))
        },
        Operation {
            status: 204,
            ..op("delete", "/v1/auth/tokens/{id}", "Revoke a token at once", Some("admin"))
        },
        Operation {
            response: Some(schema::<api::WhoAmI>),
            ..op("get", "/v1/auth/whoami", "The caller", Some("any"))
        },
        Operation {
            request: Some(schema::<api::PolicyRequest>),
            response: Some(schema::<api::PolicyResponse>),
            status: 201,
            ..op("post", "/v1/policies", "Create a policy", Some("policies:write"))
        },
        Operation {
            response: Some(schema::<api::PolicyList>),
            query: &[("limit", "1-1000"), ("cursor", "opaque")],
            ..op("get", "/v1/policies", "List policies by name", Some("policies:read"))
        },
        Operation {
            request: Some(schema::<api::PolicyTestRequest>),
            response: Some(schema::<api::PolicyTestResponse>),
            ..op(
                "post",
                "/v1/policies/test",
                "Explain the decision for a path and permission",
                Some("policies:read"),
            )
        },
        Operation {
            response: Some(schema::<api::PolicyResponse>),
            ..op("get", "/v1/policies/{id}", "Read a policy", Some("policies:read"))
        },
        Operation {
            request: Some(schema::<api::PolicyRequest>),
            response: Some(schema::<api::PolicyResponse>),
            ..op("put", "/v1/policies/{id}", "Replace a policy", Some("policies:write"))
        },
        Operation {
            status: 204,
            ..op("delete", "/v1/policies/{id}", "Delete a policy and its bindings", Some("policies:write"))
        },
        Operation {
            request: Some(schema::<api::BindingRequest>),
            response: Some(schema::<api::BindingResponse>),
            status: 201,
            ..op(
                "post",
                "/v1/policies/{id}/bindings",
                "Bind to a service account, user or group",
                Some("policies:write"),
            )
        },
        Operation {
            response: Some(schema::<api::BindingList>),
            query: PAGE,
            ..op("get", "/v1/policies/{id}/bindings", "List a policy's bindings", Some("policies:read"))
        },
        Operation {
            response: Some(schema::<api::BindingResponse>),
            ..op("get", "/v1/policies/{id}/bindings/{binding_id}", "Read a binding", Some("policies:read"))
        },
        Operation {
            status: 204,
            ..op(
                "delete",
                "/v1/policies/{id}/bindings/{binding_id}",
                "Remove a binding",
                Some("policies:write"),
            )
        },
        Operation {
            response: Some(schema::<api::AuditList>),
            query: &[
                ("identity_id", "exact identity id"),
                ("path", "exact secret path"),
                ("action", "dotted action, e.g. secret.read"),
                ("outcome", "success, denied or error"),
                ("start", "RFC 3339"),
                ("end", "RFC 3339"),
                ("limit", "1-1000"),
                ("cursor", "opaque"),
            ],
            ..op("get", "/v1/audit", "Audit records, newest first", Some("audit:read"))
        },
        Operation {
            response: Some(schema::<api::AuditList>),
            query: &[("limit", "1-1000"), ("cursor", "opaque")],
            ..op(
                "get",
                "/v1/audit/secrets/{path}",
                "One secret's audit history, oldest first",
                Some("audit:read"),
            )
        },
        Operation {
            query: &[("start", "RFC 3339"), ("end", "RFC 3339")],
            ..op("get", "/v1/audit/export", "Every record as JSON lines, streamed", Some("audit:export"))
        },
        Operation {
            response: Some(schema::<api::AuditVerification>),
            ..op(
                "get",
                "/v1/audit/verify",
                "Check the tenant's hash chain and its signed head",
                Some("audit:read"),
            )
        },
        Operation {
            request: Some(schema::<api::CreateWebhookRequest>),
            response: Some(schema::<api::WebhookResponse>),
            status: 201,
            ..op("post", "/v1/webhooks", "Register a webhook (its generated secret is shown once)", W)
        },
        Operation {
            response: Some(schema::<api::WebhookList>),
            query: PAGE,
            ..op("get", "/v1/webhooks", "List webhooks", R)
        },
        Operation { response: Some(schema::<api::WebhookResponse>), ..op("get", WH, "A webhook", R) },
        Operation {
            request: Some(schema::<api::UpdateWebhookRequest>),
            response: Some(schema::<api::WebhookResponse>),
            ..op("patch", WH, "Change a webhook; a new secret is rolled in with an overlap", W)
        },
        Operation { status: 204, ..op("delete", WH, "Delete a webhook and its delivery log", W) },
        Operation {
            response: Some(schema::<api::WebhookTestResult>),
            ..op("post", "/v1/webhooks/{id}/test", "Deliver a webhook.test event now", W)
        },
        Operation {
            request: Some(schema::<api::RotateWebhookSecretRequest>),
            response: Some(schema::<api::WebhookResponse>),
            ..op("post", "/v1/webhooks/{id}/rotate-secret", "Roll the signing secret with an overlap", W)
        },
        Operation {
            response: Some(schema::<api::DeliveryList>),
            query: PAGE,
            ..op("get", "/v1/webhooks/{id}/deliveries", "Deliveries, newest first, with attempts", R)
        },
        Operation {
            status: 202,
            ..op(
                "post",
                "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
                "Send a delivery again now, with a fresh retry schedule",
                W,
            )
        },
        Operation {
            request: Some(schema::<api::CreateSubscriptionRequest>),
            response: Some(schema::<api::SubscriptionResponse>),
            status: 201,
            ..op("post", "/v1/subscriptions", "Subscribe a webhook to paths (globs)", W)
        },
        Operation {
            response: Some(schema::<api::SubscriptionList>),
            query: PAGE,
            ..op("get", "/v1/subscriptions", "List subscriptions", R)
        },
        Operation {
            response: Some(schema::<api::SubscriptionResponse>),
            ..op("get", "/v1/subscriptions/{id}", "A subscription", R)
        },
        Operation { status: 204, ..op("delete", "/v1/subscriptions/{id}", "Delete a subscription", W) },
        Operation {
            query: &[("paths", "comma-separated globs"), ("events", "comma-separated event types")],
            ..op(
                "get",
                "/v1/events/stream",
                "Server-Sent Events of the tenant's changes on paths the caller may list",
                R,
            )
        },
        Operation {
            request: Some(schema::<api::RotationPolicyRequest>),
            response: Some(schema::<api::RotationPolicyResponse>),
            status: 201,
            ..op("post", "/v1/rotation/policies", "Create a rotation policy (id rot_<name>)", A)
        },
        Operation {
            response: Some(schema::<api::RotationPolicyList>),
            query: PAGE,
            ..op("get", "/v1/rotation/policies", "List rotation policies", A)
        },
        Operation {
            response: Some(schema::<api::RotationPolicyResponse>),
            ..op("get", ROT, "A rotation policy", A)
        },
        Operation {
            request: Some(schema::<api::UpdateRotationPolicyRequest>),
            response: Some(schema::<api::RotationPolicyResponse>),
            ..op("patch", ROT, "Change a rotation policy", A)
        },
        Operation { status: 204, ..op("delete", ROT, "Delete a rotation policy and its assignments", A) },
        Operation {
            request: Some(schema::<api::AssignRotationRequest>),
            response: Some(schema::<api::RotationAssignment>),
            status: 201,
            ..op(
                "post",
                "/v1/rotation/policies/{id}/secrets",
                "Assign a secret (due one interval from now)",
                A,
            )
        },
        Operation {
            response: Some(schema::<api::RotationAssignmentList>),
            query: PAGE,
            ..op("get", "/v1/rotation/policies/{id}/secrets", "Assigned secrets and their state", A)
        },
        Operation {
            status: 204,
            ..op("delete", "/v1/rotation/policies/{id}/secrets/{path}", "Unassign a secret", A)
        },
        Operation {
            response: Some(schema::<api::StaleReaders>),
            ..op(
                "get",
                "/v1/rotation/policies/{id}/secrets/{path}/readers",
                "Identities still reading a superseded version",
                Some("audit:read"),
            )
        },
        Operation {
            request: Some(schema::<api::ForceRotationRequest>),
            response: Some(schema::<api::ForceRotationResponse>),
            status: 202,
            ..op(
                "post",
                "/v1/rotation/policies/{id}/rotate",
                "Make rotation due now (all, or the named secrets)",
                A,
            )
        },
        Operation {
            request: Some(schema::<api::FederationBackendRequest>),
            response: Some(schema::<api::FederationBackendResponse>),
            status: 201,
            ..op("post", "/v1/federation/backends", "Front an external secret store (proxy or sync mode)", FW)
        },
        Operation {
            response: Some(schema::<api::FederationBackendList>),
            query: PAGE,
            ..op("get", "/v1/federation/backends", "List federation backends", FR)
        },
        Operation {
            response: Some(schema::<api::FederationBackendResponse>),
            ..op("get", FED, "A federation backend", FR)
        },
        Operation {
            request: Some(schema::<api::UpdateFederationBackendRequest>),
            response: Some(schema::<api::FederationBackendResponse>),
            ..op("patch", FED, "Change a federation backend", FW)
        },
        Operation { status: 204, ..op("delete", FED, "Stop fronting a backend", FW) },
        Operation {
            response: Some(schema::<api::FederationStatus>),
            ..op(
                "get",
                "/v1/federation/backends/{id}/status",
                "Ask the backend now: state, latency, last sync",
                FR,
            )
        },
        Operation {
            response: Some(schema::<api::SyncReport>),
            ..op("post", "/v1/federation/backends/{id}/sync", "Sync a sync-mode backend now and report", FW)
        },
        Operation {
            response: Some(schema::<api::SyncConflictList>),
            ..op("get", "/v1/federation/backends/{id}/conflicts", "Paths flagged by a manual conflict", FR)
        },
        Operation {
            request: Some(schema::<api::ResolveConflictRequest>),
            status: 204,
            ..op(
                "post",
                "/v1/federation/backends/{id}/conflicts/resolve",
                "Settle a flagged path: the local or the backend's value wins",
                FW,
            )
        },
        Operation {
            request: Some(schema::<api::PartnerRequest>),
            response: Some(schema::<api::PartnerResponse>),
            status: 201,
            ..op(
                "post",
                "/v1/identity/partners",
                "Create a partner (system administrators)",
                Some("identity:admin"),
            )
        },
        Operation {
            response: Some(schema::<api::PartnerList>),
            query: &[("limit", "1-1000"), ("cursor", "opaque")],
            ..op(
                "get",
                "/v1/identity/partners",
                "List partners (system administrators)",
                Some("identity:read"),
            )
        },
        Operation {
            request: Some(schema::<api::TenantRequest>),
            response: Some(schema::<api::TenantResponse>),
            status: 201,
            ..op(
                "post",
                "/v1/identity/tenants",
                "Create a tenant (system administrators)",
                Some("identity:admin"),
            )
        },
        Operation {
            response: Some(schema::<api::TenantList>),
            query: &[("limit", "1-1000"), ("cursor", "opaque")],
            ..op(
                "get",
                "/v1/identity/tenants",
                "List tenants (all, or a partner administrator's)",
                Some("identity:read"),
            )
        },
        Operation {
            response: Some(schema::<api::KeyStatusResponse>),
            ..op(
                "post",
                "/v1/sys/rotate-master-key",
                "New master key version; re-wrap data keys",
                Some("admin"),
            )
        },
        Operation {
            response: Some(schema::<api::KeyStatusResponse>),
            ..op("get", "/v1/sys/key-status", "Master key versions and re-wrap progress", Some("admin"))
        },
    ]
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

pub(crate) fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = schema::<api::ErrorBody>(&mut generator);
    let mut paths = Map::new();
    for o in operations() {
        let mut params = path_params(o.path);
        params.extend(o.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
        }));
        let mut operation = json!({
            "summary": o.summary,
            "tags": [tag(o.path)],
            "parameters": params,
            "responses": {
                o.status.to_string(): match o.response {
                    Some(f) => json!({"description": "success", "content": {"application/json": {"schema": f(&mut generator)}}}),
                    None => json!({"description": "success"}),
                },
                "default": {"description": "error", "content": {"application/json": {"schema": error.clone()}}},
            },
        });
        if let Some(f) = o.request {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": f(&mut generator)}}});
        }
        match o.scope {
            None => operation["security"] = json!([]),
            Some(scope) => operation["x-scaivault-scope"] = json!(scope),
        }
        let entry = paths.entry(o.path).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "ScaiVault", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": generator.take_definitions(true),
        },
    })
}
