//! Tenants and partners: isolation, partner administrators acting as their tenants through the
//! `/v1/t/{tenant}` prefix or `X-Tenant-ID`, and refusals for everyone else.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, app};
use serde_json::{Value, json};

async fn setup() -> (TestApp, String) {
    let app = app().await;
    let r = app.root("POST", "/v1/identity/partners", Some(json!({"name": "Acme"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let partner = r.body["id"].as_str().expect("id").to_owned();
    assert!(partner.starts_with("prt_"));
    for (id, partner) in
        [("tnt_acme_dev", Some(partner.as_str())), ("tnt_acme_prod", Some(&partner)), ("tnt_other", None)]
    {
        let r = app
            .root("POST", "/v1/identity/tenants", Some(json!({"id": id, "name": id, "partner_id": partner})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    (app, partner)
}

async fn issue(app: &TestApp, body: Value) -> String {
    let r = app.root("POST", "/v1/auth/tokens", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn system_admins_manage_partners_and_tenants() {
    let (app, partner) = setup().await;
    assert_eq!(
        app.root("POST", "/v1/identity/partners", Some(json!({"name": "Acme"}))).await.code(),
        "conflict"
    );
    let r =
        app.root("POST", "/v1/identity/tenants", Some(json!({"id": "tnt_acme_dev", "name": "again"}))).await;
    assert_eq!(r.code(), "conflict");
    for bad in [
        json!({"id": "acme", "name": "x"}),
        json!({"id": "tnt_ACME", "name": "x"}),
        json!({"id": "tnt_", "name": "x"}),
        json!({"name": " padded"}),
        json!({"name": ""}),
    ] {
        assert_eq!(
            app.root("POST", "/v1/identity/tenants", Some(bad.clone())).await.code(),
            "invalid_request",
            "{bad}"
        );
    }
    let r =
        app.root("POST", "/v1/identity/tenants", Some(json!({"name": "x", "partner_id": "prt_none"}))).await;
    assert_eq!(r.code(), "not_found");
    let r = app.root("GET", "/v1/identity/tenants", None).await;
    let ids: Vec<_> =
        r.body["tenants"].as_array().expect("tenants").iter().map(|t| t["id"].clone()).collect();
    assert_eq!(
        ids,
        vec![json!("tnt_acme_dev"), json!("tnt_acme_prod"), json!("tnt_default"), json!("tnt_other")]
    );
    let r = app.root("GET", "/v1/identity/partners", None).await;
    assert_eq!(r.body["partners"][0]["id"], partner.as_str());
    // An admin-scoped token that is not a system administrator may not.
    let (_, admin) = app.token(&["admin"], "1h").await;
    assert_eq!(
        app.as_token(&admin, "POST", "/v1/identity/partners", Some(json!({"name": "B"}))).await.code(),
        "access_denied"
    );
    assert_eq!(app.as_token(&admin, "GET", "/v1/identity/tenants", None).await.code(), "access_denied");
}

#[tokio::test]
async fn a_partner_admin_acts_as_its_tenants_and_no_others() {
    let (app, partner) = setup().await;
    let padmin = issue(
        &app,
        json!({"tenant_id": "tnt_acme_dev", "roles": ["partner_admin"], "identity_id": "alice@acme", "scopes": ["admin"]}),
    )
    .await;
    let who = app.as_token(&padmin, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(
        (who.body["tenant_id"].as_str(), who.body["partner_id"].as_str()),
        (Some("tnt_acme_dev"), Some(partner.as_str()))
    );
    // Through the prefix.
    let r = app
        .as_token(
            &padmin,
            "PUT",
            "/v1/t/tnt_acme_prod/secrets/app/db/password",
            Some(json!({"data": {"pw": "prod"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app.as_token(&padmin, "GET", "/v1/t/tnt_acme_prod/secrets/app/db/password", None).await;
    assert_eq!(r.body["data"]["pw"], "prod");
    let who = app.as_token(&padmin, "GET", "/v1/t/tnt_acme_prod/auth/whoami", None).await;
    assert_eq!(
        (who.body["tenant_id"].as_str(), who.body["acting_as_tenant"].as_bool()),
        (Some("tnt_acme_prod"), Some(true))
    );
    // The policy test tells the truth about the read that just succeeded: the root policy allows it.
    let test = json!({"path": "app/db/password", "permission": "read"});
    let r = app.as_token(&padmin, "POST", "/v1/t/tnt_acme_prod/policies/test", Some(test)).await;
    assert_eq!(
        (r.body["allowed"].as_bool(), r.body["decided_by"]["policy_name"].as_str()),
        (Some(true), Some("root")),
        "{:?}",
        r.body
    );
    // A system administrator of no partner, acting as a partner's tenant, is in that partner.
    let sysadmin =
        issue(&app, json!({"roles": ["system_admin"], "identity_id": "ops@vault", "scopes": ["admin"]}))
            .await;
    let who = app.as_token(&sysadmin, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(who.body["partner_id"], Value::Null, "{:?}", who.body);
    let who = app.as_token(&sysadmin, "GET", "/v1/t/tnt_acme_prod/auth/whoami", None).await;
    assert_eq!(
        (who.body["tenant_id"].as_str(), who.body["partner_id"].as_str()),
        (Some("tnt_acme_prod"), Some(partner.as_str())),
        "{:?}",
        who.body
    );
    // Through the header.
    let req = axum::http::Request::builder()
        .uri("/v1/secrets/app/db/password")
        .header("authorization", format!("Bearer {padmin}"))
        .header("x-tenant-id", "tnt_acme_prod")
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.send_request(req).await.body["data"]["pw"], "prod");
    // Its own tenant does not see the other tenant's secret; the answer is that of a missing one.
    let r = app.as_token(&padmin, "GET", "/v1/secrets/app/db/password", None).await;
    assert_eq!(r.code(), "access_denied", "no policy in its own tenant");
    assert_eq!(app.root("GET", "/v1/secrets/app/db/password", None).await.code(), "secret_not_found");
    // Refused alike for a tenant of no partner, another partner's, the default, and one that does not exist.
    for tenant in ["tnt_other", "tnt_default", "tnt_missing"] {
        let r = app.as_token(&padmin, "GET", &format!("/v1/t/{tenant}/secrets/app/db/password"), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "access_denied"), "{tenant}");
        assert_eq!(r.body["error"]["message"], "this token may not act as that tenant", "{tenant}");
    }
    // The refusals are in the partner admin's own tenant's audit trail, as denied.
    let r = app.root("GET", "/v1/t/tnt_acme_dev/audit?outcome=denied", None).await;
    let denied = r.body["logs"].as_array().expect("logs");
    assert!(denied.len() >= 3, "{:?}", r.body);
    assert!(denied.iter().all(|l| l["identity_id"] == "alice@acme" && l["status_code"] == 403));
    // Listing tenants shows the partner's own only.
    let r = app.as_token(&padmin, "GET", "/v1/identity/tenants", None).await;
    let ids: Vec<_> =
        r.body["tenants"].as_array().expect("tenants").iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, vec![json!("tnt_acme_dev"), json!("tnt_acme_prod")]);
    // It may issue tokens for its tenants, never for others, and never grant roles.
    let r = app
        .as_token(
            &padmin,
            "POST",
            "/v1/auth/tokens",
            Some(json!({"tenant_id": "tnt_acme_prod", "scopes": ["secrets:read"]})),
        )
        .await;
    assert_eq!((r.status, r.body["tenant_id"].as_str()), (StatusCode::CREATED, Some("tnt_acme_prod")));
    let r = app
        .as_token(
            &padmin,
            "POST",
            "/v1/auth/tokens",
            Some(json!({"tenant_id": "tnt_other", "scopes": ["secrets:read"]})),
        )
        .await;
    assert_eq!(r.code(), "access_denied");
    let r = app
        .as_token(
            &padmin,
            "POST",
            "/v1/auth/tokens",
            Some(json!({"roles": ["system_admin"], "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(r.code(), "access_denied");
    // Disagreeing prefix and header are refused.
    let req = axum::http::Request::builder()
        .uri("/v1/t/tnt_acme_prod/auth/whoami")
        .header("authorization", format!("Bearer {padmin}"))
        .header("x-tenant-id", "tnt_acme_dev")
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.send_request(req).await.code(), "invalid_request");
}

#[tokio::test]
async fn tenants_are_isolated_for_ordinary_tokens() {
    let (app, _) = setup().await;
    app.put("shared/name", json!({"data": {"v": "default"}})).await;
    let r =
        app.root("PUT", "/v1/t/tnt_other/secrets/shared/name", Some(json!({"data": {"v": "other"}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "the root token may act as any tenant");
    let r = app
        .root(
            "POST",
            "/v1/t/tnt_other/policies",
            Some(json!({"name": "all", "rules": [{"path_pattern": "**", "permissions": ["read", "list"]}]})),
        )
        .await;
    let policy = r.body["id"].as_str().expect("policy").to_owned();
    app.root(
        "POST",
        &format!("/v1/t/tnt_other/policies/{policy}/bindings"),
        Some(json!({"identity_type": "service_account", "identity_id": "sa:x"})),
    )
    .await;
    let other = issue(&app, json!({"tenant_id": "tnt_other", "identity_type": "service_account", "identity_id": "sa:x", "scopes": ["secrets:read", "secrets:list"]})).await;
    assert_eq!(app.as_token(&other, "GET", "/v1/secrets/shared/name", None).await.body["data"]["v"], "other");
    let r = app.as_token(&other, "GET", "/v1/secrets", None).await;
    assert_eq!(r.body["secrets"].as_array().expect("list").len(), 1);
    // Its "all" policy lives in its tenant only; the default tenant's sa:x has nothing.
    let same_name = issue(
        &app,
        json!({"identity_type": "service_account", "identity_id": "sa:x", "scopes": ["secrets:read"]}),
    )
    .await;
    assert_eq!(
        app.as_token(&same_name, "GET", "/v1/secrets/shared/name", None).await.code(),
        "access_denied"
    );
    // An ordinary token cannot step into another tenant.
    for tenant in ["tnt_default", "tnt_acme_dev"] {
        let r = app.as_token(&other, "GET", &format!("/v1/t/{tenant}/secrets/shared/name"), None).await;
        assert_eq!(r.code(), "access_denied", "{tenant}");
    }
    assert_eq!(app.root("GET", "/v1/secrets/shared/name", None).await.body["data"]["v"], "default");
}

#[tokio::test]
async fn partner_secrets_are_shared_by_the_partners_tenants() {
    let (app, _) = setup().await;
    let padmin =
        issue(&app, json!({"tenant_id": "tnt_acme_dev", "roles": ["partner_admin"], "scopes": ["admin"]}))
            .await;
    let r = app
        .as_token(
            &padmin,
            "PUT",
            "/v1/partner/secrets/shared/ca",
            Some(json!({"data": {"pem": "trust-anchor"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        app.as_token(&padmin, "GET", "/v1/partner/secrets/shared/ca", None).await.body["data"]["pem"],
        "trust-anchor"
    );
    // Partner secrets are not tenant secrets.
    assert_eq!(
        app.root("GET", "/v1/t/tnt_acme_prod/secrets/shared/ca", None).await.code(),
        "secret_not_found"
    );

    // A tenant of the partner reads under its own policies, which see the path as partner/….
    let bind = json!({"identity_type": "service_account", "identity_id": "sa:svc"});
    let mk = |name: &str, pattern: &str, perms: &[&str]| json!({"name": name, "rules": [{"path_pattern": pattern, "permissions": perms}]});
    let reader = issue(
        &app,
        json!({"tenant_id": "tnt_acme_prod", "identity_type": "service_account", "identity_id": "sa:svc",
            "scopes": ["secrets:read", "secrets:list", "secrets:write"]}),
    )
    .await;
    assert_eq!(
        app.as_token(&reader, "GET", "/v1/partner/secrets/shared/ca", None).await.code(),
        "access_denied"
    );
    let tenant_only = app
        .root("POST", "/v1/t/tnt_acme_prod/policies", Some(mk("tenant-shared", "shared/**", &["read"])))
        .await;
    let id = tenant_only.body["id"].as_str().expect("id").to_owned();
    app.root("POST", &format!("/v1/t/tnt_acme_prod/policies/{id}/bindings"), Some(bind.clone())).await;
    assert_eq!(
        app.as_token(&reader, "GET", "/v1/partner/secrets/shared/ca", None).await.code(),
        "access_denied",
        "a tenant pattern does not reach partner secrets"
    );
    let partner_read = app
        .root(
            "POST",
            "/v1/t/tnt_acme_prod/policies",
            Some(mk("partner-shared", "partner/shared/**", &["read", "list", "write"])),
        )
        .await;
    let id = partner_read.body["id"].as_str().expect("id").to_owned();
    app.root("POST", &format!("/v1/t/tnt_acme_prod/policies/{id}/bindings"), Some(bind.clone())).await;
    assert_eq!(
        app.as_token(&reader, "GET", "/v1/partner/secrets/shared/ca", None).await.body["data"]["pem"],
        "trust-anchor"
    );
    // A partner path must stay a path under `partner/`, as tenants see it: one segment and eight
    // bytes short of a tenant path's limits, so nothing is written that no tenant could read.
    let deep = |n: usize| format!("shared/{}", vec!["d"; n - 1].join("/"));
    let long = format!("shared{}/{}", format!("/{}", "l".repeat(99)).repeat(4), "l".repeat(97));
    assert_eq!(long.len(), 504);
    for (path, status) in [
        (deep(32), StatusCode::BAD_REQUEST),
        (format!("{long}x"), StatusCode::BAD_REQUEST),
        (deep(31), StatusCode::CREATED),
        (long.clone(), StatusCode::CREATED),
    ] {
        let uri = format!("/v1/partner/secrets/{path}");
        let r = app.as_token(&padmin, "PUT", &uri, Some(json!({"data": {"v": "x"}}))).await;
        assert_eq!(r.status, status, "{} bytes: {:?}", path.len(), r.body);
        if status == StatusCode::CREATED {
            assert_eq!(
                app.as_token(&reader, "GET", &uri, None).await.body["data"]["v"],
                "x",
                "{} bytes",
                path.len()
            );
        } else {
            assert_eq!(r.code(), "invalid_path");
        }
    }
    let r = app.as_token(&reader, "GET", "/v1/partner/secrets", None).await;
    assert_eq!(r.body["secrets"][0]["path"], "shared/ca");
    // Only partner administrators write, whatever a tenant's policies say.
    let r = app
        .as_token(&reader, "PUT", "/v1/partner/secrets/shared/ca", Some(json!({"data": {"pem": "evil"}})))
        .await;
    assert_eq!(r.code(), "access_denied");
    assert_eq!(
        app.as_token(&reader, "DELETE", "/v1/partner/secrets/shared/ca", None).await.code(),
        "access_denied"
    );
    // A tenant of no partner has no partner space; the root token reaches it by acting as a tenant.
    assert_eq!(app.root("GET", "/v1/partner/secrets/shared/ca", None).await.code(), "access_denied");
    let r = app.root("GET", "/v1/t/tnt_acme_dev/partner/secrets/shared/ca", None).await;
    assert_eq!(r.body["data"]["pem"], "trust-anchor");
    assert_eq!(
        app.root("GET", "/v1/t/tnt_other/partner/secrets/shared/ca", None).await.code(),
        "access_denied"
    );
    // Versions and metadata work the same way.
    let r = app.as_token(&padmin, "GET", "/v1/partner/secrets/shared/ca/versions", None).await;
    assert_eq!(r.body["current_version"], 1);
}
