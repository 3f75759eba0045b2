//! The Vault adapter's side of the wire, against a stand-in built from Vault's HTTP API
//! documentation: the namespace header, AppRole login and re-login, and error answers.

use scaivault_federation::{Backend, FederationError, VaultAuth, VaultBackend, VaultConnection};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn approle() -> VaultAuth {
    VaultAuth::from_secret(
        "approle",
        json!({"role_id": "role-1", "secret_id": "sid-secret"}).as_object().unwrap(),
    )
    .unwrap()
}

fn login(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"auth": {"client_token": token, "lease_duration": 3600}}))
}

fn kv2(password: &str, version: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": {"data": {"password": password}, "metadata": {
        "version": version, "created_time": "2026-11-01T10:00:00Z", "custom_metadata": null,
        "deletion_time": "", "destroyed": false}}}))
}

#[tokio::test]
async fn approle_logs_in_once_sends_the_namespace_and_logs_in_again_when_refused() {
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/approle/login"))
        .and(header("X-Vault-Namespace", "team-a"))
        .and(body_json(json!({"role_id": "role-1", "secret_id": "sid-secret"})))
        .respond_with(login("tok-1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&vault)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/approle/login"))
        .respond_with(login("tok-2"))
        .expect(1)
        .mount(&vault)
        .await;
    // tok-1 reads version 4 twice, then is refused (revoked); tok-2 reads again.
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app/db"))
        .and(header("X-Vault-Token", "tok-1"))
        .and(header("X-Vault-Namespace", "team-a"))
        .and(query_param("version", "4"))
        .respond_with(kv2("v4-pass", 4))
        .up_to_n_times(2)
        .expect(2)
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app/db"))
        .and(header("X-Vault-Token", "tok-1"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": ["permission denied"]})))
        .mount(&vault)
        .await;
    // Vault no longer knows tok-1 (revoked), which is what makes a new login worth it.
    Mock::given(method("GET"))
        .and(path("/v1/auth/token/lookup-self"))
        .and(header("X-Vault-Token", "tok-1"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": ["permission denied"]})))
        .expect(1)
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app/db"))
        .and(header("X-Vault-Token", "tok-2"))
        .respond_with(kv2("v5-pass", 5))
        .expect(1)
        .mount(&vault)
        .await;

    let backend = VaultBackend::new(VaultConnection {
        address: vault.uri(),
        namespace: Some("team-a".into()),
        auth: approle(),
        ca_pem: None,
    })
    .unwrap();
    for _ in 0..2 {
        assert_eq!(backend.read("secret/data/app/db", Some(4)).await.unwrap().version, Some(4));
    }
    let s = backend.read("secret/data/app/db", None).await.unwrap();
    assert_eq!((s.data["password"].as_str(), s.version), (Some("v5-pass"), Some(5)));
}

#[tokio::test]
async fn a_path_the_approles_policy_refuses_does_not_log_in_again() {
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/approle/login"))
        .respond_with(login("tok-1"))
        .expect(1)
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/forbidden"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": ["permission denied"]})))
        .expect(3)
        .mount(&vault)
        .await;
    // The token is alive: the 403 is the policy's, not the token's.
    Mock::given(method("GET"))
        .and(path("/v1/auth/token/lookup-self"))
        .and(header("X-Vault-Token", "tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"ttl": 3000}})))
        .mount(&vault)
        .await;
    let backend = VaultBackend::new(VaultConnection {
        address: vault.uri(),
        namespace: None,
        auth: approle(),
        ca_pem: None,
    })
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            backend.read("secret/data/forbidden", None).await.unwrap_err(),
            FederationError::Denied { status: 403 }
        );
    }
}

#[tokio::test]
async fn error_answers_are_cut_to_vaults_first_error_and_never_quote_a_body() {
    let vault = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/a"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"errors": [
            format!("internal error: storage failure\nsecond line with value hunter2 {}", "x".repeat(500))
        ]})))
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/b"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<html>sealed hunter2</html>"))
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/c"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"not\": \"kv hunter2\""))
        .mount(&vault)
        .await;
    let backend = VaultBackend::new(VaultConnection {
        address: vault.uri(),
        namespace: None,
        auth: VaultAuth::from_secret("token", json!({"token": "t"}).as_object().unwrap()).unwrap(),
        ca_pem: None,
    })
    .unwrap();
    let e = backend.read("secret/data/a", None).await.unwrap_err();
    assert_eq!(
        e,
        FederationError::Backend { status: 500, message: "internal error: storage failure".into() }
    );
    let e = backend.read("secret/data/b", None).await.unwrap_err();
    assert_eq!(e, FederationError::Backend { status: 503, message: "Service Unavailable".into() });
    let e = backend.read("secret/data/c", None).await.unwrap_err();
    assert!(
        matches!(e, FederationError::Backend { status: 200, .. }) && !e.to_string().contains("hunter2"),
        "{e}"
    );
}
