//! Webhook routes over the router: validation, scopes, secret rolls with their overlap, `410 Gone`,
//! and webhook secrets that survive master-key rotation.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, app_with_config};
use scaivault_core::{EventConfig, VaultConfig};
use scaivault_events::verify_scaivault;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

async fn app() -> TestApp {
    app_with_config(VaultConfig {
        events: EventConfig { allow_private: true, ..EventConfig::default() },
        ..VaultConfig::default()
    })
    .await
}

async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status)).mount(&server).await;
    server
}

async fn hook(app: &TestApp, url: &str, secret: &str) -> String {
    let r = app
        .root(
            "POST",
            "/v1/webhooks",
            Some(json!({"name": format!("h{}", rand_suffix()), "url": url, "secret": secret})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

fn rand_suffix() -> String {
    scaivault_crypto::random_id("").expect("id")
}

async fn test_delivery(app: &TestApp, id: &str) -> serde_json::Value {
    let r = app.root("POST", &format!("/v1/webhooks/{id}/test"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn header(r: &Request, name: &str) -> String {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn verifies(secret: &str, r: &Request) -> bool {
    let ts = header(r, "x-scaivault-timestamp");
    let now: i64 = ts.parse().expect("timestamp");
    verify_scaivault(secret, &ts, &header(r, "x-scaivault-signature"), &r.body, now, 300).is_ok()
}

#[tokio::test]
async fn requests_are_validated_and_secrets_never_echoed() {
    let app = app().await;
    let secret = "never-echo-this-secret";
    for body in [
        json!({"name": "x", "url": "https://93.184.216.34/h", "events": ["secret.exploded"]}),
        json!({"name": "x", "url": "https://93.184.216.34/h", "filters": {"paths": ["a//b"]}}),
        json!({"name": "x", "url": "https://93.184.216.34/h", "secret": "short"}),
        json!({"name": "", "url": "https://93.184.216.34/h"}),
        json!({"name": "x", "url": "https://93.184.216.34/h", "colour": "red"}),
        json!({"name": "x", "url": "mailto:a@b.c", "secret": secret}),
    ] {
        let r = app.root("POST", "/v1/webhooks", Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
        assert!(!String::from_utf8_lossy(&r.raw).contains(secret));
    }
    let r = app
        .root("POST", "/v1/webhooks", Some(json!({"name": "dup", "url": "https://93.184.216.34/h"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "generated and shown once");
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = app.root("GET", &format!("/v1/webhooks/{id}"), None).await;
    assert!(r.body.get("secret").is_none());
    let r = app
        .root("POST", "/v1/webhooks", Some(json!({"name": "dup", "url": "https://93.184.216.34/h"})))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    for (m, uri) in [
        ("GET", "/v1/webhooks/wh_none"),
        ("DELETE", "/v1/webhooks/wh_none"),
        ("GET", "/v1/webhooks/wh_none/deliveries"),
        ("POST", "/v1/webhooks/wh_none/deliveries/dlv_x/redeliver"),
        ("GET", "/v1/subscriptions/sub_none"),
    ] {
        let r = app.root(m, uri, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{m} {uri}");
    }
    let r = app.root("POST", &format!("/v1/webhooks/{id}/deliveries/dlv_x/redeliver"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A webhook is not a subscription.
    assert_eq!(app.root("GET", &format!("/v1/subscriptions/{id}"), None).await.status, StatusCode::NOT_FOUND);
    let r = app.root("GET", "/v1/webhooks?limit=1", None).await;
    assert_eq!(r.body["webhooks"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.root("DELETE", &format!("/v1/webhooks/{id}"), None).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn scopes_decide_who_reads_and_who_changes_webhooks() {
    let app = app().await;
    let id = hook(&app, "https://93.184.216.34/h", "a-webhook-secret").await;
    let reader = app.token_for("service_account", "sa:reader", &[], &["subscriptions:read"]).await;
    let writer = app.token_for("service_account", "sa:writer", &[], &["subscriptions:write"]).await;
    let other = app.token_for("service_account", "sa:other", &[], &["secrets:read"]).await;
    assert_eq!(app.send("GET", "/v1/webhooks", Some(&reader), None).await.status, StatusCode::OK);
    assert_eq!(
        app.send("GET", &format!("/v1/webhooks/{id}/deliveries"), Some(&reader), None).await.status,
        StatusCode::OK
    );
    let create = br#"{"name": "w", "url": "https://93.184.216.34/x"}"#.to_vec();
    assert_eq!(
        app.send("POST", "/v1/webhooks", Some(&reader), Some(create.clone())).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send("POST", "/v1/webhooks", Some(&writer), Some(create)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.send("GET", "/v1/webhooks", Some(&other), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.send("GET", "/v1/events/stream", Some(&other), None).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_rolled_secret_signs_beside_the_old_one_until_the_overlap_ends() {
    let app = app().await;
    let rx = receiver(200).await;
    let old = "the-old-webhook-secret";
    let id = hook(&app, &rx.uri(), old).await;
    for overlap in ["8d", "169h", "forever"] {
        let r = app
            .root("POST", &format!("/v1/webhooks/{id}/rotate-secret"), Some(json!({"overlap": overlap})))
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{overlap}");
    }
    let r =
        app.root("POST", &format!("/v1/webhooks/{id}/rotate-secret"), Some(json!({"overlap": "1h"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new = r.body["secret"].as_str().expect("generated secret shown once").to_owned();
    assert!(r.body["previous_secret_expires_at"].is_string());
    assert_eq!(test_delivery(&app, &id).await["status"], "success");
    app.clock.advance(chrono::TimeDelta::hours(2));
    assert_eq!(test_delivery(&app, &id).await["status"], "success");
    let got = rx.received_requests().await.expect("requests");
    assert_eq!(got.len(), 2);
    // During the overlap both secrets verify (two signatures in each header); after it, only the new.
    assert_eq!(header(&got[0], "x-scaivault-signature").split(' ').count(), 2);
    assert_eq!(header(&got[0], "webhook-signature").split(' ').count(), 2);
    assert!(verifies(old, &got[0]) && verifies(&new, &got[0]));
    assert!(verifies(&new, &got[1]) && !verifies(old, &got[1]));
    // A roll through PATCH with a given secret.
    let r = app
        .root(
            "PATCH",
            &format!("/v1/webhooks/{id}"),
            Some(json!({"secret": "a-third-secret", "secret_overlap": "0s"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body.get("secret").is_none());
    test_delivery(&app, &id).await;
    let got = rx.received_requests().await.expect("requests");
    assert!(verifies("a-third-secret", &got[2]) && !verifies(&new, &got[2]));
}

#[tokio::test]
async fn a_receiver_answering_410_disables_its_webhook_until_reenabled() {
    let app = app().await;
    let rx = receiver(410).await;
    let id = hook(&app, &rx.uri(), "gone-receiver-secret").await;
    let r = test_delivery(&app, &id).await;
    assert_eq!((r["status"].as_str(), r["response_code"].as_u64()), (Some("failed"), Some(410)));
    let w = app.root("GET", &format!("/v1/webhooks/{id}"), None).await.body;
    assert_eq!(w["active"], false);
    assert!(w["disabled_reason"].as_str().is_some_and(|s| s.contains("410")));
    let r = app.root("PATCH", &format!("/v1/webhooks/{id}"), Some(json!({"active": true}))).await;
    assert_eq!((r.body["active"].as_bool(), r.body.get("disabled_reason")), (Some(true), None));
}

#[tokio::test]
async fn webhook_secrets_survive_master_key_rotation() {
    let app = app().await;
    let rx = receiver(200).await;
    let secret = "survives-key-rotation";
    let id = hook(&app, &rx.uri(), secret).await;
    let r =
        app.root("POST", &format!("/v1/webhooks/{id}/rotate-secret"), Some(json!({"overlap": "1h"}))).await;
    let new = r.body["secret"].as_str().expect("secret").to_owned();
    for _ in 0..2 {
        let r = app.root("POST", "/v1/sys/rotate-master-key", None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["rewrap_pending"], 0);
    }
    let r = app.root("GET", "/v1/sys/key-status", None).await;
    let versions = r.body["key_versions"].as_array().expect("versions");
    assert_eq!(versions[0]["data_keys"], 0, "old versions wrap nothing: {:?}", r.body);
    assert_eq!(versions[2]["data_keys"], 2, "both webhook secrets: {:?}", r.body);
    assert_eq!(test_delivery(&app, &id).await["status"], "success");
    let got = rx.received_requests().await.expect("requests");
    assert!(verifies(secret, &got[0]) && verifies(&new, &got[0]));
}
