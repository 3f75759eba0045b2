//! Policies and bindings over HTTP: the seed flows, deny over allow, `policies/test`, list filtering,
//! strict names and identities, and changes taking effect at once.

use crate::common;

use axum::http::StatusCode;
use common::{app, both_stores};
use serde_json::{Value, json};

#[tokio::test]
async fn a_service_account_bound_to_one_path_reads_it_and_nothing_else() {
    for (store, app) in both_stores().await {
        app.put("integrations/salesforce/oauth", json!({"data": {"client_id": "c", "client_secret": "s"}}))
            .await;
        app.put("integrations/salesforce/other", json!({"data": {"k": "v"}})).await;
        app.policy(
            "reporting-service-salesforce",
            json!([{"path_pattern": "integrations/salesforce/oauth", "permissions": ["read"]}]),
            &[("service_account", "sa:reporting-service")],
        )
        .await;
        let sa = app.token_for("service_account", "sa:reporting-service", &[], &["secrets:read"]).await;
        let r = app.as_token(&sa, "GET", "/v1/secrets/integrations/salesforce/oauth", None).await;
        assert_eq!(
            (r.status, r.body["data"]["client_secret"].as_str()),
            (StatusCode::OK, Some("s")),
            "{store}"
        );
        for neighbour in ["integrations/salesforce/other", "integrations/salesforce/missing", "a/b"] {
            let r = app.as_token(&sa, "GET", &format!("/v1/secrets/{neighbour}"), None).await;
            // Existing or not, the answer is the same: no existence leak.
            assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "access_denied"), "{store} {neighbour}");
        }
        let r = app
            .as_token(&sa, "PUT", "/v1/secrets/integrations/salesforce/oauth", Some(json!({"data": {}})))
            .await;
        assert_eq!(r.code(), "access_denied", "{store}: read scope and read policy do not write");
    }
}

#[tokio::test]
async fn a_group_binding_reads_below_billing_and_nothing_in_staging() {
    let app = app().await;
    for p in [
        "environments/production/billing/db",
        "environments/production/billing/stripe/key",
        "environments/staging/billing/db",
    ] {
        app.put(p, json!({"data": {"v": p}})).await;
    }
    app.policy(
        "billing-prod-reader",
        json!([{"path_pattern": "environments/production/billing/**", "permissions": ["read", "list"]}]),
        &[("group", "billing-team")],
    )
    .await;
    let member = app
        .token_for("service_account", "sa:billing-prod", &["billing-team"], &["secrets:read", "secrets:list"])
        .await;
    let outsider = app
        .token_for("service_account", "sa:other", &["other-team"], &["secrets:read", "secrets:list"])
        .await;
    for p in ["environments/production/billing/db", "environments/production/billing/stripe/key"] {
        assert_eq!(
            app.as_token(&member, "GET", &format!("/v1/secrets/{p}"), None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.as_token(&outsider, "GET", &format!("/v1/secrets/{p}"), None).await.code(),
            "access_denied"
        );
    }
    let r = app.as_token(&member, "GET", "/v1/secrets/environments/staging/billing/db", None).await;
    assert_eq!(r.code(), "access_denied");
    // Lists show only what the caller may list.
    let r = app.as_token(&member, "GET", "/v1/secrets?prefix=environments/", None).await;
    let paths: Vec<_> =
        r.body["secrets"].as_array().expect("list").iter().map(|s| s["path"].clone()).collect();
    assert_eq!(
        paths,
        vec![
            json!("environments/production/billing/db"),
            json!("environments/production/billing/stripe/key")
        ]
    );
    let r = app.as_token(&outsider, "GET", "/v1/secrets", None).await;
    assert_eq!(r.body["secrets"], json!([]));
    // A small page still fills from later matches.
    let r = app.as_token(&member, "GET", "/v1/secrets?limit=1", None).await;
    assert_eq!(r.body["secrets"][0]["path"], "environments/production/billing/db");
    let cursor = r.body["next_cursor"].as_str().expect("more").to_owned();
    let r = app.as_token(&member, "GET", &format!("/v1/secrets?limit=1&cursor={cursor}"), None).await;
    assert_eq!(r.body["secrets"][0]["path"], "environments/production/billing/stripe/key");
}

#[tokio::test]
async fn deny_beats_allow_and_policies_test_explains() {
    let app = app().await;
    app.put("app/public", json!({"data": {"v": "1"}})).await;
    app.put("app/secret/key", json!({"data": {"v": "2"}})).await;
    let allow = app
        .policy(
            "app-reader",
            json!([{"path_pattern": "app/**", "permissions": ["read"]}]),
            &[("group", "devs")],
        )
        .await;
    let deny = app
        .policy(
            "no-secrets",
            json!([{"path_pattern": "x/*", "permissions": ["read"]}, {"path_pattern": "app/secret/*", "permissions": ["read"], "effect": "deny"}]),
            &[("service_account", "sa:app")],
        )
        .await;
    let sa = app.token_for("service_account", "sa:app", &["devs"], &["secrets:read"]).await;
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/app/public", None).await.status, StatusCode::OK);
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/app/secret/key", None).await.code(), "access_denied");

    let test = |path: &str| json!({"path": path, "permission": "read", "identity_type": "service_account", "identity_id": "sa:app", "groups": ["devs"]});
    let r = app.root("POST", "/v1/policies/test", Some(test("app/secret/key"))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["allowed"], false);
    assert_eq!(r.body["decided_by"]["policy_id"], deny.as_str());
    assert_eq!(r.body["decided_by"]["policy_name"], "no-secrets");
    assert_eq!(r.body["decided_by"]["rule_index"], 1);
    assert_eq!(r.body["decided_by"]["effect"], "deny");
    assert!(r.body["explanation"].as_str().expect("text").contains("no-secrets"));
    let evaluated = r.body["evaluated"].as_array().expect("evaluated");
    assert_eq!(evaluated.len(), 3);
    assert!(evaluated.iter().any(|e| e["bound_via"] == "group:devs" && e["matched"] == true));
    let r = app.root("POST", "/v1/policies/test", Some(test("app/public"))).await;
    assert_eq!(
        (r.body["allowed"].as_bool(), r.body["decided_by"]["policy_id"].as_str()),
        (Some(true), Some(allow.as_str()))
    );
    let r = app.root("POST", "/v1/policies/test", Some(test("other/thing"))).await;
    assert_eq!((r.body["allowed"].as_bool(), &r.body["decided_by"]), (Some(false), &json!(null)));
    assert!(r.body["explanation"].as_str().expect("text").contains("no rule"));
    // Without the group, the allow never applies.
    let r = app
        .root("POST", "/v1/policies/test", Some(json!({"path": "app/public", "permission": "read", "identity_type": "service_account", "identity_id": "sa:app"})))
        .await;
    assert_eq!(r.body["allowed"], false);
    // The caller itself, by default.
    let r = app
        .as_token(&sa, "POST", "/v1/policies/test", Some(json!({"path": "app/public", "permission": "read"})))
        .await;
    assert_eq!(r.code(), "access_denied", "policies/test needs policies:read");
    let reader = app.token_for("service_account", "sa:app", &["devs"], &["policies:read"]).await;
    let r = app
        .as_token(
            &reader,
            "POST",
            "/v1/policies/test",
            Some(json!({"path": "app/public", "permission": "read"})),
        )
        .await;
    assert_eq!(r.body["allowed"], true);
    let r = app
        .root("POST", "/v1/policies/test", Some(json!({"path": "any/thing", "permission": "delete"})))
        .await;
    assert_eq!(
        (r.body["allowed"].as_bool(), r.body["decided_by"]["policy_name"].as_str()),
        (Some(true), Some("root"))
    );
    for bad in [json!({"path": "../x", "permission": "read"}), json!({"path": "a", "permission": "admin"})] {
        assert_eq!(app.root("POST", "/v1/policies/test", Some(bad)).await.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn changes_apply_at_once() {
    let app = app().await;
    app.put("team/a", json!({"data": {"v": "1"}})).await;
    let sa = app.token_for("service_account", "sa:t", &[], &["secrets:read"]).await;
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/team/a", None).await.code(), "access_denied");
    let id = app
        .policy(
            "team",
            json!([{"path_pattern": "team/*", "permissions": ["read"]}]),
            &[("service_account", "sa:t")],
        )
        .await;
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/team/a", None).await.status, StatusCode::OK);
    let r = app
        .root(
            "PUT",
            &format!("/v1/policies/{id}"),
            Some(json!({"name": "team", "rules": [{"path_pattern": "team/b", "permissions": ["read"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/team/a", None).await.code(), "access_denied");
    let r = app
        .root(
            "PUT",
            &format!("/v1/policies/{id}"),
            Some(json!({"name": "team", "rules": [{"path_pattern": "team/**", "permissions": ["read"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/team/a", None).await.status, StatusCode::OK);
    let bindings = app.root("GET", &format!("/v1/policies/{id}/bindings"), None).await;
    let bnd = bindings.body["bindings"][0]["id"].as_str().expect("binding").to_owned();
    let r = app.root("GET", &format!("/v1/policies/{id}/bindings/{bnd}"), None).await;
    assert_eq!(r.body["identity_id"], "sa:t");
    assert_eq!(
        app.root("DELETE", &format!("/v1/policies/{id}/bindings/{bnd}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.as_token(&sa, "GET", "/v1/secrets/team/a", None).await.code(), "access_denied");
    assert_eq!(app.root("DELETE", &format!("/v1/policies/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.root("GET", &format!("/v1/policies/{id}"), None).await.code(), "not_found");
    assert_eq!(app.root("GET", &format!("/v1/policies/{id}/bindings"), None).await.code(), "not_found");
}

#[tokio::test]
async fn names_and_identities_are_exact() {
    let app = app().await;
    app.put("x/y", json!({"data": {"v": "1"}})).await;
    let rules = json!([{"path_pattern": "x/*", "permissions": ["read"]}]);
    app.policy("reader", rules.clone(), &[("service_account", "sa:svc")]).await;
    let r = app.root("POST", "/v1/policies", Some(json!({"name": "reader", "rules": rules}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    // Case is significant; spaces, look-alikes, and the root name are refused.
    assert_eq!(
        app.root("POST", "/v1/policies", Some(json!({"name": "Reader", "rules": rules}))).await.status,
        StatusCode::CREATED
    );
    for name in [" reader", "reader ", "rеader", "root", "ROOT", "", "a/b"] {
        let r = app.root("POST", "/v1/policies", Some(json!({"name": name, "rules": rules}))).await;
        assert_eq!(r.code(), "invalid_request", "{name:?}");
    }
    // Identities that differ by case, spaces or look-alike letters never match.
    for other in ["SA:svc", "sa:svc ", " sa:svc", "sa:ѕvc", "sa:svc\u{200b}"] {
        let token = app
            .root("POST", "/v1/auth/tokens", Some(json!({"identity_type": "service_account", "identity_id": other, "scopes": ["secrets:read"]})))
            .await;
        if other.trim() != other {
            // Refused, as a binding would refuse it: no binding could ever name it.
            assert_eq!(token.code(), "invalid_request", "{other:?}");
            continue;
        }
        assert_eq!(token.status, StatusCode::CREATED, "{other:?}");
        let t = token.body["token"].as_str().expect("token");
        assert_eq!(
            app.as_token(t, "GET", "/v1/secrets/x/y", None).await.code(),
            "access_denied",
            "{other:?}"
        );
    }
    let svc = app.token_for("service_account", "sa:svc", &[], &["secrets:read"]).await;
    assert_eq!(app.as_token(&svc, "GET", "/v1/secrets/x/y", None).await.status, StatusCode::OK);
    // Tokens take the identities and groups bindings take: up to 256 bytes, no surrounding spaces.
    let long = "g".repeat(256);
    for (id, groups, ok) in [
        (long.as_str(), json!([]), true),
        ("sa:svc", json!([long]), true),
        (&*format!("{long}g"), json!([]), false),
        ("sa:svc", json!([format!("{long}g")]), false),
        ("sa:svc", json!([" ops"]), false),
    ] {
        let body = json!({"identity_type": "service_account", "identity_id": id, "groups": groups, "scopes": ["secrets:read"]});
        let r = app.root("POST", "/v1/auth/tokens", Some(body)).await;
        assert_eq!(r.status == StatusCode::CREATED, ok, "{} {groups}: {:?}", id.len(), r.body);
    }
    // A user and a service account with the same id are different identities.
    let user = app.token_for("user", "sa:svc", &[], &["secrets:read"]).await;
    assert_eq!(app.as_token(&user, "GET", "/v1/secrets/x/y", None).await.code(), "access_denied");
    // A group named like the service account does not grant it either.
    let grouped = app.token_for("user", "someone", &["sa:svc"], &["secrets:read"]).await;
    assert_eq!(app.as_token(&grouped, "GET", "/v1/secrets/x/y", None).await.code(), "access_denied");
}

#[tokio::test]
async fn policy_requests_are_validated() {
    let app = app().await;
    for body in [
        json!({"name": "p", "rules": []}),
        json!({"name": "p", "rules": [{"path_pattern": "a/**b", "permissions": ["read"]}]}),
        json!({"name": "p", "rules": [{"path_pattern": "a", "permissions": []}]}),
        json!({"name": "p", "rules": [{"path_pattern": "a", "permissions": ["sudo"]}]}),
        json!({"name": "p", "rules": [{"path_pattern": "a", "permissions": ["read"], "effect": "maybe"}]}),
        json!({"name": "p"}),
        json!({"rules": [{"path_pattern": "a", "permissions": ["read"]}]}),
    ] {
        let r = app.root("POST", "/v1/policies", Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    }
    let id =
        app.policy("p", json!([{"path_pattern": "a", "permissions": ["read", "read", "list"]}]), &[]).await;
    let r = app.root("GET", &format!("/v1/policies/{id}"), None).await;
    assert_eq!(
        r.body["rules"],
        json!([{"path_pattern": "a", "permissions": ["read", "list"], "effect": "allow"}])
    );
    for body in [
        json!({"identity_type": "robot", "identity_id": "x"}),
        json!({"identity_type": "user", "identity_id": ""}),
    ] {
        let r = app.root("POST", &format!("/v1/policies/{id}/bindings"), Some(body.clone())).await;
        assert_eq!(r.code(), "invalid_request", "{body}");
    }
    let bind = json!({"identity_type": "user", "identity_id": "u"});
    assert_eq!(
        app.root("POST", &format!("/v1/policies/{id}/bindings"), Some(bind.clone())).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.root("POST", &format!("/v1/policies/{id}/bindings"), Some(bind.clone())).await.code(),
        "conflict"
    );
    assert_eq!(app.root("POST", "/v1/policies/pol_none/bindings", Some(bind)).await.code(), "not_found");
    let r = app.root("GET", "/v1/policies?limit=1", None).await;
    assert_eq!(r.body["policies"][0]["name"], "p");
    let writer = app.token(&["policies:read"], "1h").await.1;
    let r = app
        .as_token(
            &writer,
            "POST",
            "/v1/policies",
            Some(json!({"name": "q", "rules": [{"path_pattern": "a", "permissions": ["read"]}]})),
        )
        .await;
    assert_eq!(r.code(), "access_denied");
    assert_eq!(app.as_token(&writer, "GET", "/v1/policies", None).await.status, StatusCode::OK);
}

/// The record of each change names what changed: the auditor's "which policy was bound to whom".
#[tokio::test]
async fn audit_records_name_the_policy_binding_token_and_webhook_changed() {
    use scaivault_core::{EventConfig, VaultConfig};
    let events = EventConfig { allow_private: true, ..EventConfig::default() };
    let app = common::app_with_config(VaultConfig { events, ..VaultConfig::default() }).await;
    let record = |action: &'static str| {
        let app = &app;
        async move {
            let r = app.root("GET", &format!("/v1/audit?action={action}"), None).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body["logs"][0].clone()
        }
    };
    let policy =
        app.policy("ci-reader", json!([{"path_pattern": "ci/**", "permissions": ["read"]}]), &[]).await;
    let r = app
        .root(
            "POST",
            &format!("/v1/policies/{policy}/bindings"),
            Some(json!({"identity_type": "service_account", "identity_id": "sa:ci"})),
        )
        .await;
    let binding = r.body["id"].as_str().expect("binding id").to_owned();
    let (token_id, token) = app.token(&["secrets:read"], "1h").await;
    let r = app.as_token(&token, "DELETE", &format!("/v1/policies/{policy}"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.root("DELETE", &format!("/v1/policies/{policy}/bindings/{binding}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.root("DELETE", &format!("/v1/auth/tokens/{token_id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app
        .root(
            "POST",
            "/v1/webhooks",
            Some(json!({"name": "n", "url": "http://127.0.0.1:9/hook", "events": ["secret.created"], "secret": "whsec-audit-test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let webhook = r.body["id"].as_str().expect("webhook id").to_owned();

    let created = record("policy.create").await;
    assert_eq!(created["resource_id"], json!(policy));
    assert!(created.get("subject").is_none());
    let bound = record("policy.bind").await;
    assert_eq!(bound["resource_id"], json!(format!("{policy}/{binding}")));
    assert_eq!(bound["subject"], "service_account:sa:ci");
    assert_eq!(record("policy.unbind").await["resource_id"], json!(format!("{policy}/{binding}")));
    let denied = record("policy.delete").await;
    assert_eq!(
        (denied["outcome"].as_str(), denied["resource_id"].as_str()),
        (Some("denied"), Some(policy.as_str()))
    );
    let issued = record("token.create").await;
    assert_eq!(issued["resource_id"], json!(token_id));
    assert_eq!(record("token.revoke").await["resource_id"], json!(token_id));
    let hooked = record("webhook.create").await;
    assert_eq!(hooked["resource_id"], json!(webhook));
    for bogus in ["bogus", "Success", ""] {
        let r = app.root("GET", &format!("/v1/audit?outcome={bogus}"), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{bogus:?}");
    }
    // A token mistaken for its id is not found, and is not written into the trail.
    let (_, other) = app.token(&["secrets:read"], "1h").await;
    let r = app.root("DELETE", &format!("/v1/auth/tokens/{other}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&r.raw).contains(&other));
    assert_eq!(record("token.revoke").await["resource_id"], "[redacted]");
    let all = app.root("GET", "/v1/audit/export", None).await;
    let text = String::from_utf8_lossy(&all.raw);
    assert!(
        !text.contains(&token) && !text.contains(&other) && !text.contains("whsec-audit-test"),
        "no token or webhook secret in the trail"
    );
}

#[tokio::test]
async fn bindings_are_paged_and_one_is_read_by_id() {
    let app = app().await;
    let ids: Vec<(&str, &str)> =
        vec![("service_account", "sa:a"), ("service_account", "sa:b"), ("group", "ops")];
    let policy = app.policy("paged", json!([{"path_pattern": "x/**", "permissions": ["read"]}]), &ids).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/v1/policies/{policy}/bindings?limit=2&cursor={c}"),
            None => format!("/v1/policies/{policy}/bindings?limit=2"),
        };
        let r = app.root("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let page = r.body["bindings"].as_array().expect("bindings").clone();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|b| b["id"].as_str().expect("id").to_owned()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "each binding once, in id order");
    let r = app.root("GET", &format!("/v1/policies/{policy}/bindings/{}", seen[1]), None).await;
    assert_eq!(r.body["id"], json!(seen[1]));
    let r = app.root("GET", &format!("/v1/policies/{policy}/bindings/bnd_missing"), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app.root("GET", "/v1/policies/pol_missing/bindings", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // A cursor is good for its own list only.
    let first = app.root("GET", &format!("/v1/policies/{policy}/bindings?limit=1"), None).await;
    let cursor = first.body["next_cursor"].as_str().expect("cursor").to_owned();
    for other in ["/v1/policies", "/v1/auth/tokens", "/v1/secrets", "/v1/webhooks"] {
        let r = app.root("GET", &format!("{other}?cursor={cursor}"), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{other}");
    }
}

/// A filtered list still pages: every page holds at most `limit` paths, and following the cursors
/// shows each path the caller may list exactly once, whatever the hidden paths between them.
#[tokio::test]
async fn a_filtered_list_pages_within_its_limit() {
    let app = app().await;
    let shown = ["a/1", "a/3", "a/4", "a/5", "a/8", "a/9"];
    for i in 0..10 {
        app.put(&format!("a/{i}"), json!({"data": {"v": "x"}})).await;
    }
    let rules: Vec<_> = shown.iter().map(|p| json!({"path_pattern": p, "permissions": ["list"]})).collect();
    app.policy("some", json!(rules), &[("service_account", "sa:lister")]).await;
    let token = app.token_for("service_account", "sa:lister", &[], &["secrets:list"]).await;
    for limit in 1..=4 {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let uri = match &cursor {
                Some(c) => format!("/v1/secrets?prefix=a/&limit={limit}&cursor={c}"),
                None => format!("/v1/secrets?prefix=a/&limit={limit}"),
            };
            let r = app.as_token(&token, "GET", &uri, None).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            let page = r.body["secrets"].as_array().expect("secrets").clone();
            assert!(page.len() <= limit, "limit {limit}: a page of {}", page.len());
            seen.extend(page.iter().map(|s| s["path"].as_str().expect("path").to_owned()));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, shown, "limit {limit}");
    }
}

/// A caller who may see few of many paths does not make one request scan the whole tenant: a
/// request reads at most a bounded number of paths and answers a short page (here an empty one)
/// with the cursor to go on from; following the cursors still finds every visible path once.
#[tokio::test]
async fn a_sparse_list_answers_short_pages_with_a_cursor() {
    let app = app().await;
    let hidden: Vec<String> = (0..1_001).map(|i| format!("h/{i:05}")).collect();
    for chunk in hidden.chunks(100) {
        let writes = chunk.iter().map(|p| app.put(p, json!({"data": {"v": "x"}})));
        for r in futures_util::future::join_all(writes).await {
            assert!(r.status.is_success(), "{:?}", r.body);
        }
    }
    app.put("z/visible", json!({"data": {"v": "x"}})).await;
    let rule = json!([{"path_pattern": "z/visible", "permissions": ["list"]}]);
    app.policy("sparse", rule, &[("service_account", "sa:sparse")]).await;
    let token = app.token_for("service_account", "sa:sparse", &[], &["secrets:list"]).await;

    let r = app.as_token(&token, "GET", "/v1/secrets?limit=1", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["secrets"], json!([]), "{:?}", r.body);
    let cursor = r.body["next_cursor"].as_str().expect("a cursor after a short page").to_owned();
    // The cursor stands after a path this caller may not see: it must not tell which, and a
    // cursor made up to start anywhere is refused.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(&cursor).expect("base64url");
    assert!(
        !raw.windows(4).any(|w| w == b"h/00"),
        "the cursor shows a hidden path: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let forged = b64.encode("secrets:h/00500");
    let r = app.as_token(&token, "GET", &format!("/v1/secrets?limit=1&cursor={forged}"), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{:?}", r.body);
    let r = app.as_token(&token, "GET", &format!("/v1/secrets?limit=1&cursor={cursor}"), None).await;
    assert_eq!(r.body["secrets"][0]["path"], "z/visible", "{:?}", r.body);
    assert_eq!(r.body["next_cursor"], Value::Null, "{:?}", r.body);
    // The root token sees them all, a full page at a time.
    let r = app.root("GET", "/v1/secrets?limit=1000", None).await;
    assert_eq!(r.body["secrets"].as_array().map(Vec::len), Some(1000));
}

/// An id in a route that is not UTF-8 or holds a control character (NUL, which PostgreSQL's text
/// cannot hold, among them) is refused in the error envelope on both stores, never a 500 or a
/// plain-text answer; a secret path under a rotation policy is refused as under `/v1/secrets/`.
#[tokio::test]
async fn malformed_ids_in_routes_are_refused_in_the_envelope() {
    for (store, app) in both_stores().await {
        for bad in ["%00", "%FF", "pol_%0A", "a%00b"] {
            for (method, uri) in [
                ("GET", format!("/v1/policies/{bad}")),
                ("DELETE", format!("/v1/policies/{bad}/bindings/bnd_x")),
                ("DELETE", format!("/v1/auth/tokens/{bad}")),
                ("GET", format!("/v1/webhooks/{bad}")),
                ("GET", format!("/v1/rotation/policies/{bad}")),
                ("GET", format!("/v1/federation/backends/{bad}")),
            ] {
                let r = app.root(method, &uri, None).await;
                assert_eq!(
                    (r.status, r.code()),
                    (StatusCode::BAD_REQUEST, "invalid_request"),
                    "{store} {method} {uri}: {:?}",
                    r.raw
                );
            }
        }
        let r = app.root("DELETE", "/v1/rotation/policies/rot_x/secrets/a%FFb", None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_path"), "{store}: {:?}", r.raw);
        for bad in ["rot%00", "rot_%FF"] {
            let r = app.root("DELETE", &format!("/v1/rotation/policies/{bad}/secrets/a/b"), None).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{store}: {:?}",
                r.raw
            );
        }
        let r = app.root("DELETE", "/v1/rotation/policies/rot_none/secrets/a/b", None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{store}: {:?}", r.raw);
        let r = app.root("GET", "/v1/policies/pol_nothing", None).await;
        assert_eq!(r.code(), "not_found", "{store}");
    }
}

/// A query parameter or cursor holding a control character is refused on both stores (on
/// PostgreSQL a NUL would otherwise reach the database and come back as a 500).
#[tokio::test]
async fn control_characters_in_query_parameters_and_cursors_are_refused() {
    use base64::Engine as _;
    let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"secrets:a\0b");
    for (store, app) in both_stores().await {
        for uri in [
            "/v1/secrets?prefix=%00".to_owned(),
            "/v1/secrets?tag=a%00".to_owned(),
            // No tag is empty, so an empty one would filter to nothing: refused instead.
            "/v1/secrets?tag=".to_owned(),
            "/v1/secrets?prefix=a%0Ab".to_owned(),
            format!("/v1/secrets?cursor={cursor}"),
            "/v1/audit?identity_id=%00".to_owned(),
            "/v1/policies?cursor=%00".to_owned(),
        ] {
            let r = app.root("GET", &uri, None).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{store} {uri}: {:?}",
                r.raw
            );
        }
        let r = app.root("GET", "/v1/secrets?prefix=app/", None).await;
        assert_eq!(r.status, StatusCode::OK, "{store}");
    }
}
