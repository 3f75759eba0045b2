//! A router over a real store, driven with `oneshot`: no socket, real SQLite or PostgreSQL.

#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use scaivault_core::{KeyConfig, ManualClock, Vault, VaultConfig};
use scaivault_crypto::RootKey;
use scaivault_server::{AppState, router};
use scaivault_store::Store;
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub root: String,
    pub clock: Arc<ManualClock>,
    pub vault: Arc<Vault>,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(scaivault_store_sqlite::SqliteStore::open_file(&dir.join("t.db")).await.expect("sqlite"))
}

pub async fn app() -> TestApp {
    app_with(KeyConfig::default()).await
}

pub async fn app_with(keys: KeyConfig) -> TestApp {
    app_with_config(VaultConfig { keys, ..VaultConfig::default() }).await
}

pub async fn app_with_config(config: VaultConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(dir.path()).await;
    app_on_config(store, config, dir).await
}

pub async fn app_on(store: Arc<dyn Store>, keys: KeyConfig, dir: tempfile::TempDir) -> TestApp {
    app_on_config(store, VaultConfig { keys, ..VaultConfig::default() }, dir).await
}

pub async fn app_on_config(store: Arc<dyn Store>, config: VaultConfig, dir: tempfile::TempDir) -> TestApp {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time")));
    let opened =
        Vault::open(store.clone(), RootKey::from_bytes(&[3u8; 32]).expect("key"), clock.clone(), config)
            .await
            .expect("open");
    let root = String::from_utf8(opened.root_token.expect("root token").expose().to_vec()).expect("utf8");
    let vault = Arc::new(opened.vault);
    TestApp { router: router(AppState::new(vault.clone())), root, clock, vault, store, _dir: dir }
}

impl TestApp {
    pub async fn send(&self, method: &str, uri: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        self.send_request(req).await
    }

    pub async fn send_request(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let raw = res.into_body().collect().await.expect("body").to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply { status, headers, body, raw }
    }

    pub async fn root(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(method, uri, Some(&self.root.clone()), body.map(|b| b.to_string().into_bytes())).await
    }

    pub async fn as_token(&self, token: &str, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(method, uri, Some(token), body.map(|b| b.to_string().into_bytes())).await
    }

    /// Issues a token for a named identity; returns the token.
    pub async fn token_for(
        &self,
        identity_type: &str,
        identity_id: &str,
        groups: &[&str],
        scopes: &[&str],
    ) -> String {
        let r = self
            .root(
                "POST",
                "/v1/auth/tokens",
                Some(serde_json::json!({"identity_type": identity_type, "identity_id": identity_id,
                    "groups": groups, "scopes": scopes, "ttl": "1h"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a policy and binds it; returns the policy id.
    pub async fn policy(&self, name: &str, rules: Value, bind: &[(&str, &str)]) -> String {
        let r =
            self.root("POST", "/v1/policies", Some(serde_json::json!({"name": name, "rules": rules}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        for (identity_type, identity_id) in bind {
            let r = self
                .root(
                    "POST",
                    &format!("/v1/policies/{id}/bindings"),
                    Some(serde_json::json!({"identity_type": identity_type, "identity_id": identity_id})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        }
        id
    }

    /// Issues a token with the given scopes and ttl; returns (id, token).
    pub async fn token(&self, scopes: &[&str], ttl: &str) -> (String, String) {
        let r = self
            .root(
                "POST",
                "/v1/auth/tokens",
                Some(serde_json::json!({"name": "t", "scopes": scopes, "ttl": ttl})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (r.body["id"].as_str().expect("id").to_owned(), r.body["token"].as_str().expect("token").to_owned())
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.root("PUT", &format!("/v1/secrets/{path}"), Some(body)).await
    }

    pub async fn secret_count(&self) -> usize {
        let r = self.root("GET", "/v1/secrets?limit=1000", None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body["secrets"].as_array().expect("secrets").len()
    }
}

/// A router over a fresh PostgreSQL schema, or `None` (with a notice) when no test database is
/// configured outside CI. Under `CI=true` a missing or unreachable database fails the test.
pub async fn pg_app() -> Option<TestApp> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let Ok(url) = std::env::var("SCAIVAULT_TEST_POSTGRES_URL") else {
        assert!(!ci, "SCAIVAULT_TEST_POSTGRES_URL must be set under CI");
        eprintln!("notice: SCAIVAULT_TEST_POSTGRES_URL is not set; skipping the PostgreSQL variant");
        return None;
    };
    let schema = format!("conf_api_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
    let store =
        scaivault_store_postgres::PostgresStore::connect_in_schema(&url, &schema).await.expect("PostgreSQL");
    Some(app_on(Arc::new(store), KeyConfig::default(), tempfile::tempdir().expect("tempdir")).await)
}

/// The SQLite app and, when configured, the PostgreSQL one.
pub async fn both_stores() -> Vec<(&'static str, TestApp)> {
    let mut apps = vec![("sqlite", app().await)];
    if let Some(pg) = pg_app().await {
        apps.push(("postgres", pg));
    }
    apps
}
