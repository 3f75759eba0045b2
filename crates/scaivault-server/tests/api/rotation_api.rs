//! Rotation over the router with an injected clock: 200 simulated days of a 90-day policy, automatic
//! generation, grace periods, both failure paths, forced rotations, validation, and the readers
//! still on a superseded version.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use chrono::TimeDelta;
use common::{TestApp, app_with_config};
use scaivault_core::{Clock, EventConfig, VaultConfig};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const DB: &str = "environments/production/billing/database";

async fn app() -> TestApp {
    app_with_config(VaultConfig {
        events: EventConfig { allow_private: true, retry_schedule: Vec::new(), ..EventConfig::default() },
        ..VaultConfig::default()
    })
    .await
}

async fn policy(app: &TestApp, body: Value) -> String {
    let r = app.root("POST", "/v1/rotation/policies", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn assign(app: &TestApp, id: &str, path: &str) {
    let r = app
        .root("POST", &format!("/v1/rotation/policies/{id}/secrets"), Some(json!({"secret_path": path})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

async fn write_db(app: &TestApp) {
    let r = app
        .put(
            DB,
            json!({"secret_type": "json", "data": {"host": "db.internal", "port": 5432, "database": "billing",
                                             "username": "billing_app", "password": "first-password"}}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
}

/// The rotation events of `path` in the outbox: (type, due_now, seconds since `start`).
async fn rotation_events(
    app: &TestApp,
    path: &str,
    start: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, Option<bool>, i64)> {
    let all = app.store.events_after(0, 100_000).await.expect("events");
    all.iter()
        .filter(|e| {
            e.path.as_deref() == Some(path)
                && (e.event_type.starts_with("rotation.") || e.event_type == "secret.rotated")
        })
        .map(|e| {
            let body: Value = serde_json::from_str(&e.body).expect("json");
            (e.event_type.clone(), body["data"]["due_now"].as_bool(), (e.created_at - start).num_seconds())
        })
        .collect()
}

async fn state(app: &TestApp, id: &str) -> String {
    let r = app.root("GET", &format!("/v1/rotation/policies/{id}/secrets"), None).await;
    r.body["secrets"][0]["state"].as_str().expect("state").to_owned()
}

#[tokio::test]
async fn two_hundred_days_of_a_90_day_policy_fire_exactly_the_expected_events() {
    let app = app().await;
    write_db(&app).await;
    let id = policy(
        &app,
        json!({"name": "db-90d", "interval": "90d", "grace_period": "48h", "warn_before": "7d,1d", "auto_generate": true}),
    )
    .await;
    assert_eq!(id, "rot_db-90d");
    let start = app.clock.now();
    assign(&app, &id, DB).await;
    for _ in 0..200 * 24 {
        app.clock.advance(TimeDelta::hours(1));
        app.vault.rotation_tick().await.expect("tick");
    }
    let day = |d: i64| d * 86_400;
    let due = |d: i64, now: bool| ("rotation.due".to_owned(), Some(now), day(d));
    let rotated = |d: i64| ("secret.rotated".to_owned(), None, day(d));
    assert_eq!(
        rotation_events(&app, DB, start).await,
        [
            due(83, false),
            due(89, false),
            due(90, true),
            rotated(90),
            due(173, false),
            due(179, false),
            due(180, true),
            rotated(180)
        ]
    );
    // Two automatic rotations: version 3 is current, and the schedule points at day 270.
    let r = app.root("GET", &format!("/v1/secrets/{DB}/versions"), None).await;
    assert_eq!(r.body["current_version"], 3);
    let r = app.root("GET", &format!("/v1/rotation/policies/{id}/secrets"), None).await;
    let a = &r.body["secrets"][0];
    assert_eq!(a["state"], "scheduled");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(a["next_rotation_at"].clone()).expect("time");
    assert_eq!((next - start).num_seconds(), day(270));
}

#[tokio::test]
async fn auto_generate_replaces_the_password_and_keeps_the_rest_with_a_grace_period() {
    let app = app().await;
    write_db(&app).await;
    let id = policy(
        &app,
        json!({"name": "db-passwords-weekly", "interval": "7d", "grace_period": "24h", "auto_generate": true,
               "generator": {"fields": ["password"], "length": 40, "charset": "alphanumeric"}}),
    )
    .await;
    assign(&app, &id, DB).await;
    let start = app.clock.now();
    let r = app.root("POST", &format!("/v1/secrets/{DB}/rotate"), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    // The answer is the schedule after the new version: rotated now, the next one a week on.
    assert_eq!(r.body["state"], "scheduled", "{:?}", r.body);
    let time =
        |field: &str| r.body[field].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    assert_eq!(time("last_rotated_at"), Some(start), "{:?}", r.body);
    assert_eq!(time("next_rotation_at"), Some(start + TimeDelta::days(7)), "{:?}", r.body);
    let v2 = app.root("GET", &format!("/v1/secrets/{DB}"), None).await.body;
    assert_eq!(v2["version"], 2);
    let data = &v2["data"];
    assert_eq!((data["host"].as_str(), data["port"].as_u64()), (Some("db.internal"), Some(5432)));
    assert_eq!(
        (data["username"].as_str(), data["database"].as_str()),
        (Some("billing_app"), Some("billing"))
    );
    let pw = data["password"].as_str().expect("password");
    assert!(pw.len() == 40 && pw.chars().all(|c| c.is_ascii_alphanumeric()) && pw != "first-password");
    assert_eq!(v2["created_by"], "system:rotation");
    // v1 stays readable for the grace period, then answers 410.
    let r = app.root("GET", &format!("/v1/secrets/{DB}?version=1"), None).await;
    assert_eq!((r.status, r.body["data"]["password"].as_str()), (StatusCode::OK, Some("first-password")));
    app.clock.advance(TimeDelta::hours(25));
    let r = app.root("GET", &format!("/v1/secrets/{DB}?version=1"), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "secret_expired"));
    assert_eq!(state(&app, &id).await, "scheduled");
    // The trail shows the system's rotation write.
    let r = app.root("GET", &format!("/v1/audit/secrets/{DB}"), None).await;
    let actions: Vec<&str> =
        r.body["logs"].as_array().expect("logs").iter().filter_map(|l| l["action"].as_str()).collect();
    assert!(actions.contains(&"secret.rotate"), "{actions:?}");
}

#[tokio::test]
async fn a_rotation_nobody_completes_fails_and_the_next_write_recovers_it() {
    let app = app().await;
    write_db(&app).await;
    let id = policy(&app, json!({"name": "manual", "interval": "30d", "rotation_timeout": "1h"})).await;
    assign(&app, &id, DB).await;
    let start = app.clock.now();
    let r = app
        .root("POST", &format!("/v1/rotation/policies/{id}/rotate"), Some(json!({"secret_paths": [DB]})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["secrets"][0]["state"], "due");
    app.clock.advance(TimeDelta::minutes(59));
    app.vault.rotation_tick().await.expect("tick");
    assert_eq!(state(&app, &id).await, "due");
    app.clock.advance(TimeDelta::minutes(2));
    app.vault.rotation_tick().await.expect("tick");
    assert_eq!(state(&app, &id).await, "failed");
    let metrics = String::from_utf8(app.root("GET", "/metrics", None).await.raw).expect("text");
    assert!(metrics.contains("scaivault_rotation_schedules{state=\"failed\"} 1"), "{metrics}");
    // Failed stays failed: nothing more fires.
    app.clock.advance(TimeDelta::days(60));
    app.vault.rotation_tick().await.expect("tick");
    write_db(&app).await;
    assert_eq!(state(&app, &id).await, "scheduled");
    let events: Vec<String> = rotation_events(&app, DB, start).await.into_iter().map(|e| e.0).collect();
    assert_eq!(events, ["rotation.due", "rotation.failed", "secret.rotated"]);
    let all = app.store.events_after(0, 1000).await.expect("events");
    let failed = all.iter().find(|e| e.event_type == "rotation.failed").expect("failed event");
    let body: Value = serde_json::from_str(&failed.body).expect("json");
    assert_eq!(body["data"]["reason"], "rotation_timeout");
}

#[tokio::test]
async fn undeliverable_due_notifications_fail_the_rotation() {
    let app = app().await;
    write_db(&app).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&receiver).await;
    let r = app
        .root(
            "POST",
            "/v1/webhooks",
            Some(json!({"name": "rotator", "url": receiver.uri(), "events": ["secret.updated"]})),
        )
        .await;
    let hook = r.body["id"].as_str().expect("hook").to_owned();
    let id = policy(&app, json!({"name": "notified", "interval": "30d", "webhook_ids": [hook]})).await;
    assign(&app, &id, DB).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(app.vault.clone().run_delivery_worker(stopped));
    let r = app.root("POST", &format!("/v1/secrets/{DB}/rotate"), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = state(&app, &id).await;
        if seen == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let _ = worker.await;
    assert_eq!(seen, "failed");
    let all = app.store.events_after(0, 1000).await.expect("events");
    let failed = all.iter().find(|e| e.event_type == "rotation.failed").expect("failed event");
    assert!(failed.body.contains("notification_undelivered"));
    // The policy's webhook got the rotation.due although its own filter names other events.
    assert!(!receiver.received_requests().await.expect("requests").is_empty());
}

#[tokio::test]
async fn stale_readers_are_those_still_on_the_superseded_version() {
    let app = app().await;
    write_db(&app).await;
    let id = policy(&app, json!({"name": "readers", "interval": "30d"})).await;
    assign(&app, &id, DB).await;
    let rules = json!([{"path_pattern": "environments/**", "permissions": ["read"]}]);
    app.policy("db-readers", rules, &[("group", "billing")]).await;
    let old = app.token_for("service_account", "sa:billing-old", &["billing"], &["secrets:read"]).await;
    let new = app.token_for("service_account", "sa:billing-new", &["billing"], &["secrets:read"]).await;
    let both = app.token_for("service_account", "sa:billing-both", &["billing"], &["secrets:read"]).await;
    for t in [&old, &both] {
        assert_eq!(app.send("GET", &format!("/v1/secrets/{DB}"), Some(t), None).await.status, StatusCode::OK);
    }
    app.root("POST", &format!("/v1/secrets/{DB}/rotate"), None).await;
    write_db(&app).await;
    for t in [&new, &both] {
        assert_eq!(app.send("GET", &format!("/v1/secrets/{DB}"), Some(t), None).await.status, StatusCode::OK);
    }
    // Each read's audit record was durable before its answer: the trail is complete now.
    let r = app.root("GET", &format!("/v1/rotation/policies/{id}/secrets/{DB}/readers"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["current_version"], 2);
    assert!(r.body["grace_expires_at"].is_string());
    let readers = r.body["readers"].as_array().expect("readers");
    assert_eq!(readers.len(), 1, "{readers:?}");
    assert_eq!(
        (readers[0]["identity_id"].as_str(), readers[0]["last_read_version"].as_u64()),
        (Some("sa:billing-old"), Some(1))
    );
}

#[tokio::test]
async fn policies_are_validated() {
    let app = app().await;
    write_db(&app).await;
    for body in [
        json!({"name": "Bad Name", "interval": "90d"}),
        json!({"name": "x", "interval": "0s"}),
        json!({"name": "x", "interval": "ninety"}),
        json!({"name": "x", "interval": "7d", "warn_before": "7d"}),
        json!({"name": "x", "interval": "7d", "warn_before": ["1d", "x"]}),
        json!({"name": "x", "interval": "7d", "auto_generate": true, "generator": {"length": 2}}),
        json!({"name": "x", "interval": "7d", "generator": {"charset": "emoji"}}),
        json!({"name": "x", "interval": "7d", "webhook_ids": ["wh_missing"]}),
        json!({"name": "x", "interval": "7d", "description": "d".repeat(1025)}),
        json!({"name": "x", "interval": "7d", "description": "bell\u{7}"}),
    ] {
        let r = app.root("POST", "/v1/rotation/policies", Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    }
    let id = policy(
        &app,
        json!({"name": "quarterly", "interval": "90d", "grace_period": "48h", "auto_generate": false}),
    )
    .await;
    let r = app.root("GET", &format!("/v1/rotation/policies/{id}"), None).await;
    assert_eq!((r.body["interval"].as_str(), r.body["grace_period"].as_str()), (Some("90d"), Some("48h")));
    assert_eq!(r.body["rotation_timeout"], "24h");
    let r = app
        .root("POST", "/v1/rotation/policies", Some(json!({"name": "quarterly", "interval": "90d"})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app.root("POST", "/v1/rotation/policies/rot_xyz/secrets", Some(json!({"secret_path": DB}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app
        .root("POST", &format!("/v1/rotation/policies/{id}/secrets"), Some(json!({"secret_path": "no/such"})))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "secret_not_found"));
    assign(&app, &id, DB).await;
    let other = policy(&app, json!({"name": "other", "interval": "30d"})).await;
    let r = app
        .root("POST", &format!("/v1/rotation/policies/{other}/secrets"), Some(json!({"secret_path": DB})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a secret has at most one policy");
    let r = app
        .root("PATCH", &format!("/v1/rotation/policies/{id}"), Some(json!({"warn_before": ["7d", "1d"]})))
        .await;
    assert_eq!((r.status, r.body["warn_before"].as_str()), (StatusCode::OK, Some("7d,1d")));
    let r = app
        .root("PATCH", &format!("/v1/rotation/policies/{id}"), Some(json!({"description": "d".repeat(1025)})))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let r = app.root("GET", &format!("/v1/rotation/policies/{id}"), None).await;
    assert_eq!(r.body["description"], "", "a refused change keeps the policy as it was");
    let r = app.root("POST", "/v1/secrets/environments/other/rotate", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    app.put("plain/secret", json!({"data": {"k": "v"}})).await;
    let r = app.root("POST", "/v1/secrets/plain/secret/rotate", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    // An encoded slash is not a separator: it is refused, and the assignment stays.
    let encoded = DB.replace('/', "%2F");
    for (method, suffix) in [("DELETE", ""), ("GET", "/readers")] {
        let r =
            app.root(method, &format!("/v1/rotation/policies/{id}/secrets/{encoded}{suffix}"), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_path"), "{method}");
    }
    let r = app.root("DELETE", &format!("/v1/rotation/policies/{id}/secrets/{DB}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.root("DELETE", &format!("/v1/rotation/policies/{id}/secrets/{DB}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let secrets_only = app.token_for("service_account", "sa:x", &[], &["secrets:read"]).await;
    assert_eq!(
        app.send("GET", "/v1/rotation/policies", Some(&secrets_only), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.root("DELETE", &format!("/v1/rotation/policies/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_policy_change_moves_waiting_schedules_to_their_new_wake_time() {
    let app = app().await;
    write_db(&app).await;
    let id = policy(&app, json!({"name": "changing", "interval": "30d", "warn_before": "7d"})).await;
    assign(&app, &id, DB).await;
    let start = app.clock.now();
    let r = app.root("PATCH", &format!("/v1/rotation/policies/{id}"), Some(json!({"warn_before": []}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    app.clock.advance(TimeDelta::days(24));
    app.vault.rotation_tick().await.expect("tick");
    let (a, _) = app.store.get_assignment("tnt_default", DB).await.expect("get").expect("assigned");
    assert_eq!(a.wake_at, Some(start + TimeDelta::days(30)), "the removed warning no longer wakes it");
    app.clock.advance(TimeDelta::days(6));
    app.vault.rotation_tick().await.expect("tick");
    let events: Vec<(String, Option<bool>)> =
        rotation_events(&app, DB, start).await.into_iter().map(|(t, now, _)| (t, now)).collect();
    assert_eq!(events, [("rotation.due".to_owned(), Some(true))]);
}

/// A forced rotation that cannot be carried out (an automatic one whose secret is deleted or whose
/// current version is destroyed) is refused before anything changes: the schedule stays as it was
/// and no `rotation.due` goes out. A policy-wide rotation checks every path first, so one bad
/// path refuses the whole request, and a path named twice rotates once.
#[tokio::test]
async fn a_refused_forced_rotation_changes_nothing() {
    let app = app().await;
    let start = app.clock.now();
    let id = policy(
        &app,
        json!({"name": "auto", "interval": "30d", "auto_generate": true,
               "generator": {"fields": ["password"], "length": 20}}),
    )
    .await;
    for p in ["rot/deleted", "rot/destroyed", "rot/fine"] {
        let r = app.put(p, json!({"data": {"password": "first"}})).await;
        assert!(r.status.is_success(), "{:?}", r.body);
        assign(&app, &id, p).await;
    }
    assert_eq!(app.root("DELETE", "/v1/secrets/rot/deleted", None).await.status, StatusCode::NO_CONTENT);
    let r = app.root("POST", "/v1/secrets/rot/destroyed/destroy", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    for p in ["rot/deleted", "rot/destroyed"] {
        let r = app.root("POST", &format!("/v1/secrets/{p}/rotate"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}: {:?}", r.body);
        assert!(rotation_events(&app, p, start).await.is_empty(), "{p}: a refused rotation announced itself");
    }
    let r = app
        .root(
            "POST",
            &format!("/v1/rotation/policies/{id}/rotate"),
            Some(json!({"secret_paths": ["rot/fine", "rot/destroyed"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert!(rotation_events(&app, "rot/fine", start).await.is_empty(), "the good path rotated anyway");
    let v = app.root("GET", "/v1/secrets/rot/fine", None).await.body;
    assert_eq!(v["version"], 1, "{v:?}");

    let r = app
        .root(
            "POST",
            &format!("/v1/rotation/policies/{id}/rotate"),
            Some(json!({"secret_paths": ["rot/fine", "rot/fine"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["secrets"].as_array().map(Vec::len), Some(1), "{:?}", r.body);
    let dues: Vec<_> = rotation_events(&app, "rot/fine", start)
        .await
        .into_iter()
        .filter(|e| e.0 == "rotation.due")
        .collect();
    assert_eq!(dues.len(), 1, "{dues:?}");
    let v = app.root("GET", "/v1/secrets/rot/fine", None).await.body;
    assert_eq!(v["version"], 2, "{v:?}");
}

/// A deleted secret's schedule is paused: the scheduler sends it no `rotation.due` (an automation
/// answering one would bring the secret back with a live credential), a policy-wide forced rotation
/// passes it over instead of refusing the whole policy, naming it is refused, and once it is
/// undeleted the overdue rotation fires.
#[tokio::test]
async fn a_deleted_secrets_rotation_is_paused_until_it_is_undeleted() {
    let app = app().await;
    let start = app.clock.now();
    let id = policy(&app, json!({"name": "paused", "interval": "1d"})).await;
    for p in ["pause/gone", "pause/kept"] {
        let r = app.put(p, json!({"data": {"password": "first"}})).await;
        assert!(r.status.is_success(), "{:?}", r.body);
        assign(&app, &id, p).await;
    }
    assert_eq!(app.root("DELETE", "/v1/secrets/pause/gone", None).await.status, StatusCode::NO_CONTENT);

    let r = app.root("POST", &format!("/v1/rotation/policies/{id}/rotate"), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let rotated: Vec<_> =
        r.body["secrets"].as_array().expect("secrets").iter().map(|s| s["secret_path"].clone()).collect();
    assert_eq!(rotated, [json!("pause/kept")], "{:?}", r.body);
    let r = app
        .root(
            "POST",
            &format!("/v1/rotation/policies/{id}/rotate"),
            Some(json!({"secret_paths": ["pause/gone"]})),
        )
        .await;
    assert_eq!(r.code(), "secret_not_found", "{:?}", r.body);
    assert_eq!(app.root("POST", "/v1/secrets/pause/gone/rotate", None).await.code(), "secret_not_found");

    app.clock.advance(TimeDelta::days(2));
    app.vault.rotation_tick().await.expect("tick");
    assert!(rotation_events(&app, "pause/gone", start).await.is_empty(), "a deleted secret's rotation fired");

    assert_eq!(app.root("POST", "/v1/secrets/pause/gone/undelete", None).await.status, StatusCode::OK);
    app.vault.rotation_tick().await.expect("tick");
    let events: Vec<_> =
        rotation_events(&app, "pause/gone", start).await.into_iter().map(|(t, now, _)| (t, now)).collect();
    assert_eq!(events, [("rotation.due".to_owned(), Some(true))]);
}
