//! JWT callers over HTTP: a JWKS served on loopback, tokens minted with the issuer's key, mapped to
//! principals that policies and tenancy then govern like any other caller.

use crate::common;

use axum::http::StatusCode;
use common::TestApp;
use jsonwebtoken::Header;
use scaivault_core::{JwtIssuer, VaultConfig};
use scaivault_crypto::JwtSigningKey;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISS: &str = "https://scaikey.example.test";

struct Idp {
    _server: MockServer,
    key: JwtSigningKey,
}

async fn app_with_idp() -> (TestApp, Idp) {
    let server = MockServer::start().await;
    let key = JwtSigningKey::generate_es256().expect("key");
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [key.public_jwk("k1")]})))
        .mount(&server)
        .await;
    let issuer = JwtIssuer {
        issuer: ISS.into(),
        jwks_url: format!("{}/jwks", server.uri()),
        audience: Some("scaivault".into()),
    };
    let app =
        common::app_with_config(VaultConfig { jwt_issuers: vec![issuer], ..VaultConfig::default() }).await;
    (app, Idp { _server: server, key })
}

fn mint(app: &TestApp, idp: &Idp, claims: Value) -> String {
    let now = scaivault_core::Clock::now(app.clock.as_ref()).timestamp();
    let mut all = json!({"iss": ISS, "aud": "scaivault", "exp": now + 3600, "iat": now});
    for (k, v) in claims.as_object().expect("claims") {
        all[k] = v.clone();
    }
    let mut header = Header::new(idp.key.algorithm());
    header.kid = Some("k1".into());
    idp.key.sign(&header, &all).expect("sign")
}

#[tokio::test]
async fn a_service_account_jwt_reads_what_its_policy_allows() {
    let (app, idp) = app_with_idp().await;
    app.put("integrations/salesforce/oauth", json!({"data": {"client_secret": "s"}})).await;
    app.put("integrations/salesforce/other", json!({"data": {"k": "v"}})).await;
    app.policy(
        "reporting",
        json!([{"path_pattern": "integrations/salesforce/oauth", "permissions": ["read"]}]),
        &[("service_account", "sa:reporting-service")],
    )
    .await;
    let token =
        mint(&app, &idp, json!({"sub": "sa:reporting-service", "scope": "secrets:read secrets:write"}));
    assert!(token.starts_with("eyJ"));
    let who = app.as_token(&token, "GET", "/v1/auth/whoami", None).await;
    assert_eq!(who.status, StatusCode::OK, "{:?}", who.body);
    assert_eq!(who.body["token_type"], "jwt");
    assert_eq!(who.body["identity_type"], "service_account");
    assert_eq!(who.body["identity_id"], "sa:reporting-service");
    assert_eq!(who.body["tenant_id"], "tnt_default");
    assert_eq!(who.body["scopes"], json!(["secrets:read", "secrets:write"]));
    assert_eq!(who.body["policies"], json!(["reporting"]), "the policies bound to its identity");
    let r = app.as_token(&token, "GET", "/v1/secrets/integrations/salesforce/oauth", None).await;
    assert_eq!(r.body["data"]["client_secret"], "s");
    assert_eq!(
        app.as_token(&token, "GET", "/v1/secrets/integrations/salesforce/other", None).await.code(),
        "access_denied"
    );
    // Scopes from the token, policies from the server: write scope without a write rule is denied.
    let r = app
        .as_token(&token, "PUT", "/v1/secrets/integrations/salesforce/oauth", Some(json!({"data": {}})))
        .await;
    assert_eq!(r.code(), "access_denied");
}

#[tokio::test]
async fn bad_jwts_answer_token_expired() {
    let (app, idp) = app_with_idp().await;
    let now = scaivault_core::Clock::now(app.clock.as_ref()).timestamp();
    let other_key = JwtSigningKey::generate_es256().expect("key");
    let mut header = Header::new(other_key.algorithm());
    header.kid = Some("k1".into());
    let forged = other_key
        .sign(&header, &json!({"iss": ISS, "aud": "scaivault", "exp": now + 60, "sub": "sa:x"}))
        .expect("sign");
    let good = mint(&app, &idp, json!({"sub": "sa:x"}));
    let mut tampered: Vec<&str> = good.split('.').collect();
    let admin_payload = base64_url(
        &json!({"iss": ISS, "aud": "scaivault", "exp": now + 60, "sub": "root", "scope": "admin"}),
    );
    tampered[1] = &admin_payload;
    let tampered = tampered.join(".");
    let none = format!(
        "{}.{}.",
        base64_url(&json!({"alg": "none", "typ": "JWT"})),
        base64_url(&json!({"iss": ISS, "aud": "scaivault", "exp": now + 60, "sub": "x"}))
    );
    for (what, token) in [
        ("expired", mint(&app, &idp, json!({"sub": "sa:x", "exp": now - 3600}))),
        ("not yet valid", mint(&app, &idp, json!({"sub": "sa:x", "nbf": now + 3600}))),
        ("wrong issuer", mint(&app, &idp, json!({"sub": "sa:x", "iss": "https://evil.example"}))),
        ("wrong audience", mint(&app, &idp, json!({"sub": "sa:x", "aud": "other"}))),
        ("string exp", mint(&app, &idp, json!({"sub": "sa:x", "exp": (now + 60).to_string()}))),
        ("unknown tenant", mint(&app, &idp, json!({"sub": "sa:x", "tenant_id": "tnt_nowhere"}))),
        ("forged", forged),
        ("tampered", tampered),
        ("alg none", none),
        ("garbage", "eyJnot.a.jwt".to_owned()),
    ] {
        let r = app.as_token(&token, "GET", "/v1/auth/whoami", None).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "token_expired"), "{what}: {:?}", r.body);
        assert!(!String::from_utf8_lossy(&r.raw).contains(&token), "{what}: the token was echoed");
    }
    assert_eq!(app.as_token(&good, "GET", "/v1/auth/whoami", None).await.status, StatusCode::OK);
}

fn base64_url(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_partner_admin_jwt_acts_as_its_partners_tenants() {
    let (app, idp) = app_with_idp().await;
    let partner = app.root("POST", "/v1/identity/partners", Some(json!({"name": "Acme"}))).await.body["id"]
        .as_str()
        .expect("partner")
        .to_owned();
    for id in ["tnt_acme_dev", "tnt_acme_prod"] {
        app.root("POST", "/v1/identity/tenants", Some(json!({"id": id, "name": id, "partner_id": partner})))
            .await;
    }
    let token = mint(
        &app,
        &idp,
        json!({"sub": "alice", "tenant_id": "tnt_acme_dev", "partner_id": partner, "roles": ["partner_admin", "astronaut"], "scp": ["secrets:write", "secrets:read"]}),
    );
    let who = app.as_token(&token, "GET", "/v1/t/tnt_acme_prod/auth/whoami", None).await;
    assert_eq!(who.body["tenant_id"], "tnt_acme_prod", "{:?}", who.body);
    assert_eq!(who.body["roles"], json!(["partner_admin"]));
    let r = app
        .as_token(&token, "PUT", "/v1/t/tnt_acme_prod/secrets/app/key", Some(json!({"data": {"k": "v"}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        app.as_token(&token, "GET", "/v1/t/tnt_default/secrets/app/key", None).await.code(),
        "access_denied"
    );
    // A partner claim that is not the tenant's partner is refused.
    let lying = mint(
        &app,
        &idp,
        json!({"sub": "mallory", "tenant_id": "tnt_default", "partner_id": partner, "roles": ["partner_admin"]}),
    );
    assert_eq!(app.as_token(&lying, "GET", "/v1/auth/whoami", None).await.code(), "token_expired");
}

#[tokio::test]
async fn an_unreachable_issuer_answers_503_with_retry_after() {
    let issuer = JwtIssuer {
        issuer: ISS.into(),
        jwks_url: "http://127.0.0.1:9/jwks".into(),
        audience: Some("scaivault".into()),
    };
    let app =
        common::app_with_config(VaultConfig { jwt_issuers: vec![issuer], ..VaultConfig::default() }).await;
    let key = JwtSigningKey::generate_es256().expect("key");
    let idp = Idp { _server: MockServer::start().await, key };
    let token = mint(&app, &idp, json!({"sub": "sa:x"}));
    let r = app.as_token(&token, "GET", "/v1/auth/whoami", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"));
    assert!(r.headers.contains_key("retry-after"));
}
