//! Health, metrics, the OpenAPI document, and master-key rotation over HTTP.

use crate::common;

use axum::http::StatusCode;
use common::{app, app_with};
use scaivault_core::KeyConfig;
use serde_json::json;

#[tokio::test]
async fn health_and_metrics() {
    let app = app().await;
    let r = app.send("GET", "/v1/health", None, None).await;
    assert_eq!(r.body["status"], "ok");
    assert!(r.body["version"].is_string());
    app.put("m/x", json!({"data": {"a": "b"}})).await;
    app.root("GET", "/v1/secrets/m/x", None).await;
    app.root("GET", "/v1/secrets/m/none", None).await;
    let r = app.root("GET", "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // The exposition is OpenMetrics (it ends with `# EOF`), and says so, so a scraper parses it as such.
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = String::from_utf8(r.raw).expect("utf8");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains(
            r#"scaivault_http_requests_total{method="PUT",route="/v1/secrets/{*path}",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="/v1/secrets/{*path}",status="404"} 1"#), "{text}");
    assert!(text.contains("scaivault_http_request_duration_seconds_bucket"));
    // One process owns an embedded store: its caches are always in use.
    assert!(text.lines().any(|l| l == "scaivault_caches_enabled 1"), "{text}");
    assert!(!text.contains("m/x"), "metrics are by route template, never by secret path");
}

#[tokio::test]
async fn openapi_documents_every_route_and_every_route_exists() {
    let app = app().await;
    let r = app.root("GET", "/v1/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.0.3");
    let paths = r.body["paths"].as_object().expect("paths");
    assert!(r.body["components"]["schemas"]["WriteSecretRequest"].is_object());
    let mut count = 0;
    for (path, ops) in paths {
        for method in ops.as_object().expect("ops").keys() {
            count += 1;
            let uri = path
                .replace("{path}", "doc/check")
                .replace("{id}", "tok_doc")
                .replace("{binding_id}", "bnd_doc")
                .replace("{delivery_id}", "dlv_doc");
            // The live stream would never end; a bad filter answers at once, from the real route.
            let uri = if path == "/v1/events/stream" { format!("{uri}?events=doc") } else { uri };
            let res = app.root(&method.to_uppercase(), &uri, None).await;
            // The fallback answers not_found with "route" in the message; a real route never does.
            let msg = res.body["error"]["message"].as_str().unwrap_or("");
            assert!(!msg.contains("route"), "{method} {path} is documented but not routed: {msg}");
        }
    }
    assert!(count >= 29, "{count} operations documented");
}

#[tokio::test]
async fn master_key_rotations_keep_every_version_readable() {
    let app = app().await;
    for i in 0..5 {
        app.put("k/a", json!({"data": {"v": format!("a{i}")}})).await;
        app.put(&format!("k/b{i}"), json!({"data": {"v": format!("b{i}")}})).await;
    }
    for round in 2..=4u64 {
        let r = app.root("POST", "/v1/sys/rotate-master-key", None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["current_key_version"], round);
        assert_eq!(r.body["rewrap_pending"], 0);
        app.put("k/a", json!({"data": {"v": format!("round{round}")}})).await;
    }
    let r = app.root("GET", "/v1/sys/key-status", None).await;
    let versions = r.body["key_versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[3]["data_keys"], 13);
    assert!(versions.iter().all(|v| v["wraps"].as_u64().is_some_and(|w| w >= 1)));
    for i in 0..5u64 {
        let r = app.root("GET", &format!("/v1/secrets/k/a?version={}", i + 1), None).await;
        assert_eq!(r.body["data"]["v"], format!("a{i}"));
        let r = app.root("GET", &format!("/v1/secrets/k/b{i}"), None).await;
        assert_eq!(r.body["data"]["v"], format!("b{i}"));
    }
}

#[tokio::test]
async fn an_interrupted_rotation_can_run_again_and_finishes() {
    let app = app_with(KeyConfig { rewrap_batch: 2, ..KeyConfig::default() }).await;
    for i in 0..9 {
        app.put(&format!("r/{i}"), json!({"data": {"v": i.to_string()}})).await;
    }
    // What a crash leaves: a new version made, and only one batch re-wrapped.
    app.vault.add_master_key_version().await.expect("new version");
    assert_eq!(app.vault.resume_rewrap(Some(1)).await.expect("one batch"), 2);
    let r = app.root("GET", "/v1/sys/key-status", None).await;
    assert_eq!(r.body["rewrap_pending"], 7);
    // Everything still reads in between.
    for i in 0..9 {
        assert_eq!(
            app.root("GET", &format!("/v1/secrets/r/{i}"), None).await.body["data"]["v"],
            i.to_string()
        );
    }
    let r = app.root("POST", "/v1/sys/rotate-master-key", None).await;
    assert_eq!(
        (r.body["current_key_version"].as_u64(), r.body["rewrap_pending"].as_u64()),
        (Some(3), Some(0))
    );
    for i in 0..9 {
        assert_eq!(
            app.root("GET", &format!("/v1/secrets/r/{i}"), None).await.body["data"]["v"],
            i.to_string()
        );
    }
}

#[tokio::test]
async fn a_master_key_is_retired_before_its_wrap_limit() {
    let app = app_with(KeyConfig { reserve_block: 4, wrap_limit: 10, rewrap_batch: 256 }).await;
    for i in 0..30 {
        let r = app.put(&format!("w/{i}"), json!({"data": {"v": i.to_string()}})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.root("GET", "/v1/sys/key-status", None).await;
    let versions = r.body["key_versions"].as_array().expect("versions");
    assert!(versions.len() >= 3, "{:?}", r.body);
    for v in versions {
        // A version is retired once its durable count passes the limit; it never wraps past the last block.
        assert!(v["wraps"].as_u64().expect("wraps") <= 10 + 4, "{v}");
        assert!(v["data_keys"].as_u64().expect("keys") <= 10, "{v}");
    }
    for i in 0..30 {
        assert_eq!(
            app.root("GET", &format!("/v1/secrets/w/{i}"), None).await.body["data"]["v"],
            i.to_string()
        );
    }
}

#[tokio::test]
async fn odd_methods_do_not_become_metric_labels() {
    let app = app().await;
    for m in ["FOO", "BAR1", "BAZ2"] {
        let r = app.send(m, "/v1/health", None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let text = String::from_utf8(app.root("GET", "/metrics", None).await.raw).expect("utf8");
    assert!(!text.contains("FOO") && !text.contains("BAR1"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
}
