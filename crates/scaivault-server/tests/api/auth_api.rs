//! Tokens over HTTP: missing, malformed, unknown, expired and revoked tokens; scopes on every route.

use crate::common;

use axum::http::StatusCode;
use chrono::TimeDelta;
use common::app;
use serde_json::json;

#[tokio::test]
async fn missing_or_malformed_credentials() {
    let app = app().await;
    let r = app.send("GET", "/v1/secrets/a/b", None, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "authentication_required"));
    let req = axum::http::Request::builder()
        .uri("/v1/secrets/a/b")
        .header("authorization", format!("Basic {}", app.root))
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.send_request(req).await.code(), "authentication_required");
    // The scheme is case-insensitive; a scheme that only starts like it is not the scheme.
    for (header, status) in [
        (format!("BEARER {}", app.root), StatusCode::NOT_FOUND),
        (format!("bEaReR {}", app.root), StatusCode::NOT_FOUND),
        (format!("Bearerx{}", app.root), StatusCode::UNAUTHORIZED),
        ("Bearer".to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        let req = axum::http::Request::builder()
            .uri("/v1/secrets/a/b")
            .header("authorization", &header)
            .body(axum::body::Body::empty())
            .expect("request");
        assert_eq!(app.send_request(req).await.status, status, "{}", &header[..7.min(header.len())]);
    }
    // Adversarial tokens: none is accepted, none is echoed back.
    let long = "skt_".to_owned() + &"A".repeat(10_000);
    let last = if app.root.ends_with('x') { 'y' } else { 'x' };
    let near = format!("{}{last}", &app.root[..app.root.len() - 1]);
    for bad in [
        "nope",
        "skt_",
        "skt_short",
        long.as_str(),
        near.as_str(),
        "eyJhbGciOiJub25lIn0.e30.",
        "skt_ä",
        "' OR 1=1 --",
    ] {
        let r = app.send("GET", "/v1/secrets/a/b", Some(bad), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "token_expired"), "{bad}");
        assert!(!String::from_utf8_lossy(&r.raw).contains(bad), "token echoed: {bad}");
    }
    // Health needs no token.
    assert_eq!(app.send("GET", "/v1/health", None, None).await.status, StatusCode::OK);
    assert_eq!(app.send("GET", "/v1/health/ready", None, None).await.status, StatusCode::OK);
    assert_eq!(app.send("GET", "/metrics", None, None).await.code(), "authentication_required");
}

#[tokio::test]
async fn scopes_limit_each_route() {
    let app = app().await;
    app.put("app/db", json!({"data": {"pw": "x"}})).await;
    // Every permission on app/** for the root user: scopes alone now decide.
    app.policy(
        "everything-on-app",
        json!([{"path_pattern": "app/**", "permissions": ["read", "write", "delete", "list", "rotate"]}]),
        &[("user", "root")],
    )
    .await;
    let (_, reader) = app.token(&["secrets:read"], "1h").await;
    assert_eq!(app.as_token(&reader, "GET", "/v1/secrets/app/db", None).await.status, StatusCode::OK);
    for (method, uri, body) in [
        ("PUT", "/v1/secrets/app/db", Some(json!({"data": {"pw": "y"}}))),
        ("DELETE", "/v1/secrets/app/db", None),
        ("GET", "/v1/secrets", None),
        ("GET", "/v1/secrets/app/db/versions", None),
        ("POST", "/v1/secrets/app/db/rotate", None),
        ("POST", "/v1/auth/tokens", Some(json!({"scopes": ["admin"]}))),
        ("GET", "/v1/auth/tokens", None),
        ("GET", "/v1/sys/key-status", None),
        ("POST", "/v1/sys/rotate-master-key", None),
    ] {
        let r = app.as_token(&reader, method, uri, body).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "access_denied"), "{method} {uri}");
    }
    assert_eq!(app.root("GET", "/v1/secrets/app/db", None).await.body["data"]["pw"], "x", "nothing changed");
    let (_, writer) = app.token(&["secrets:write", "secrets:list"], "1h").await;
    assert_eq!(
        app.as_token(&writer, "PUT", "/v1/secrets/app/db", Some(json!({"data": {"pw": "y"}}))).await.status,
        StatusCode::OK
    );
    assert_eq!(app.as_token(&writer, "GET", "/v1/secrets/app/db", None).await.code(), "access_denied");
    assert_eq!(app.as_token(&writer, "GET", "/v1/secrets", None).await.status, StatusCode::OK);
    let r = app.as_token(&writer, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(r.body["scopes"], json!(["secrets:write", "secrets:list"]));
    assert_eq!(r.body["token_type"], "personal_access_token");
    // A non-root admin may issue tokens but may not rotate master keys.
    let (_, admin) = app.token(&["admin"], "1h").await;
    assert_eq!(app.as_token(&admin, "GET", "/v1/auth/tokens", None).await.status, StatusCode::OK);
    assert_eq!(app.as_token(&admin, "POST", "/v1/sys/rotate-master-key", None).await.code(), "access_denied");
}

#[tokio::test]
async fn issue_list_revoke_and_expire() {
    let app = app().await;
    let r = app
        .root(
            "POST",
            "/v1/auth/tokens",
            Some(json!({"name": "ci", "identity_type": "service_account", "identity_id": "sa:ci",
                "scopes": ["secrets:read"], "groups": ["ops"], "ttl": "1h"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let token = r.body["token"].as_str().expect("token").to_owned();
    assert!(id.starts_with("tok_") && token.starts_with("skt_") && token.len() >= 4 + 43);
    assert_eq!(r.body["identity_id"], "sa:ci");
    let who = app.as_token(&token, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.body["identity_type"], "service_account");
    assert_eq!(who.body["tenant_id"], "tnt_default");
    assert_eq!(who.body["groups"], json!(["ops"]));
    assert_eq!(who.body["policies"], json!([]));
    // The policies of its identity and of its groups, each once; a policy bound elsewhere is not.
    let rules = json!([{"path_pattern": "ci/**", "permissions": ["read"]}]);
    app.policy("ci-reader", rules.clone(), &[("service_account", "sa:ci"), ("group", "ops")]).await;
    app.policy("ops-reader", rules.clone(), &[("group", "ops")]).await;
    app.policy("unrelated", rules, &[("group", "dev"), ("service_account", "sa:other")]).await;
    let who = app.as_token(&token, "GET", "/v1/auth/whoami", None).await;
    let mut held: Vec<String> = serde_json::from_value(who.body["policies"].clone()).expect("names");
    held.sort();
    assert_eq!(held, ["ci-reader", "ops-reader"]);
    let list = app.root("GET", "/v1/auth/tokens", None).await;
    let listed = list.body["tokens"].as_array().expect("tokens");
    assert_eq!(listed.len(), 2, "root and the new one");
    assert!(!String::from_utf8_lossy(&list.raw).contains(&token), "lists never show tokens");
    assert!(!String::from_utf8_lossy(&list.raw).contains(&app.root));
    // Expiry follows the clock.
    app.clock.advance(TimeDelta::minutes(61));
    assert_eq!(app.as_token(&token, "GET", "/v1/auth/whoami", None).await.code(), "token_expired");
    // Revocation is effective on the very next request.
    let (id2, token2) = app.token(&["secrets:read"], "90d").await;
    assert_eq!(app.as_token(&token2, "GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    assert_eq!(
        app.root("DELETE", &format!("/v1/auth/tokens/{id2}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.as_token(&token2, "GET", "/v1/auth/whoami", None).await.code(), "token_expired");
    assert_eq!(app.root("DELETE", "/v1/auth/tokens/tok_missing", None).await.code(), "not_found");
    // Default ttl is 90 days.
    let r = app.root("POST", "/v1/auth/tokens", Some(json!({"scopes": ["secrets:read"]}))).await;
    let created = chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().expect("t")).expect("t");
    let expires = chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().expect("t")).expect("t");
    assert_eq!(expires - created, TimeDelta::days(90));
    let _ = id;
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = app().await;
    for body in [
        json!({"scopes": ["secrets:reed"]}),
        json!({"scopes": ["admin"], "ttl": "forever"}),
        json!({"scopes": ["admin"], "ttl": "0s"}),
        json!({"scopes": ["admin"], "identity_type": "group"}),
        json!({"scopes": ["admin"], "identity_type": "robot"}),
        json!({"scopes": ["admin"], "name": ""}),
        json!({"name": "no scopes"}),
    ] {
        let r = app.root("POST", "/v1/auth/tokens", Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    }
    assert_eq!(app.root("GET", "/v1/auth/tokens", None).await.body["tokens"].as_array().expect("t").len(), 1);
}

#[tokio::test]
async fn root_whoami() {
    let app = app().await;
    let r = app.root("GET", "/v1/auth/whoami", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_type"], "root");
    assert_eq!(r.body["scopes"], json!(["admin"]));
    assert_eq!(r.body["policies"], json!(["root"]));
    assert_eq!(r.body["expires_at"], json!(null));
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_and_retry_after_works() {
    use scaivault_core::{RateLimit, RateLimits, VaultConfig};
    let limits = RateLimits {
        per_token: Some(RateLimit { per_second: 1.0, burst: 3.0 }),
        per_tenant: Some(RateLimit { per_second: 100.0, burst: 5.0 }),
    };
    let app = common::app_with_config(VaultConfig { rate_limits: limits, ..VaultConfig::default() }).await;
    let (_, other) = app.token(&["admin"], "1h").await;
    for _ in 0..2 {
        assert_eq!(app.root("GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    }
    let r = app.root("GET", "/v1/auth/whoami", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let wait: i64 = r.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(wait >= 1);
    // Another token of the tenant has its own bucket, until the tenant's runs dry too.
    assert_eq!(app.as_token(&other, "GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    let tenant_dry = app.as_token(&other, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(tenant_dry.code(), "rate_limited", "the tenant bucket (burst 5) is spent");
    // Honouring Retry-After succeeds.
    app.clock.advance(TimeDelta::seconds(wait));
    assert_eq!(app.root("GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    // Unauthenticated health checks are never limited.
    assert_eq!(app.send("GET", "/v1/health", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn administrators_keys_are_kept_from_tenant_admins() {
    let app = app().await;
    let who = app.root("GET", "/v1/auth/whoami", None).await;
    let root_id = who.body["token_id"].as_str().expect("root token id").to_owned();
    let (_, admin) = app.token(&["admin"], "1h").await;
    let r = app.as_token(&admin, "DELETE", &format!("/v1/auth/tokens/{root_id}"), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "access_denied"));
    assert_eq!(app.root("GET", "/v1/auth/whoami", None).await.status, StatusCode::OK, "root still works");
    // A token issued by a short-lived credential does not outlive it.
    let r = app
        .as_token(
            &admin,
            "POST",
            "/v1/auth/tokens",
            Some(json!({"scopes": ["secrets:read"], "ttl": "36500d"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let issued =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().expect("expiry")).expect("t");
    let created = chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().expect("t")).expect("t");
    assert!(issued - created <= TimeDelta::hours(1), "{issued} vs {created}");
    // Other tokens of the tenant it may revoke.
    let (plain_id, _) = app.token(&["secrets:read"], "1h").await;
    let r = app.as_token(&admin, "DELETE", &format!("/v1/auth/tokens/{plain_id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// Revoking a token revokes what it issued, down the tree (as Vault's token hierarchy); tokens the
/// root token issued are independent of each other, so revoking one admin key leaves the others.
#[tokio::test]
async fn revoking_a_token_revokes_the_tokens_it_issued() {
    let app = app().await;
    let (admin_id, admin) = app.token(&["admin", "secrets:read"], "1d").await;
    let (_, other_admin) = app.token(&["admin"], "1d").await;
    let issue = |by: String| {
        let app = &app;
        async move {
            let r = app
                .as_token(
                    &by,
                    "POST",
                    "/v1/auth/tokens",
                    Some(json!({"scopes": ["admin", "secrets:read"], "ttl": "1h"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body["token"].as_str().expect("token").to_owned()
        }
    };
    let child = issue(admin.clone()).await;
    let grandchild = issue(child.clone()).await;
    let unrelated = issue(other_admin.clone()).await;
    for t in [&admin, &child, &grandchild, &unrelated] {
        assert_eq!(app.as_token(t, "GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    }
    let r = app.root("DELETE", &format!("/v1/auth/tokens/{admin_id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for t in [&admin, &child, &grandchild] {
        assert_eq!(app.as_token(t, "GET", "/v1/auth/whoami", None).await.code(), "token_expired");
    }
    for t in [&other_admin, &unrelated] {
        assert_eq!(app.as_token(t, "GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
    }
    assert_eq!(app.root("GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_second_authorization_or_tenant_header_is_refused() {
    use axum::body::Body;
    use axum::http::Request;
    let app = app().await;
    let (_, reader) = app.token(&["secrets:read"], "1h").await;
    let twice = |headers: Vec<(&'static str, String)>| {
        let mut req = Request::builder().method("GET").uri("/v1/auth/whoami");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body(Body::empty()).expect("request")
    };
    let root = format!("Bearer {}", app.root);
    for headers in [
        vec![("authorization", format!("Bearer {reader}")), ("authorization", root.clone())],
        vec![("authorization", root.clone()), ("authorization", root.clone())],
        vec![
            ("authorization", root.clone()),
            ("x-tenant-id", "tnt_default".into()),
            ("x-tenant-id", "tnt_x".into()),
        ],
    ] {
        let r = app.send_request(twice(headers)).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains(&reader) && !raw.contains(&app.root), "a token was echoed: {raw}");
    }
    let r = app.send_request(twice(vec![("authorization", root)])).await;
    assert_eq!(r.status, StatusCode::OK);
}
