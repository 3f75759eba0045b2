//! The Azure Key Vault and GCP Secret Manager adapters against stand-ins built from the services'
//! public REST documentation (Key Vault 7.4, Secret Manager v1, Microsoft Entra client credentials,
//! Google's JWT bearer grant): tokens fetched once and again after a 401, values and labels or
//! tags, versions, listing across pages, writes, and errors that carry no value or credential.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use scaivault_federation::{
    AzureBackend, AzureClientCertificate, AzureClientSecret, AzureConnection, AzureCredential, Backend,
    FederationError, GcpAuth, GcpBackend, GcpConnection, GcpServiceAccount, ServerEnvironment,
};
use serde_json::{Map, Value, json};
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const RSA_KEY: &str = include_str!("../../scaivault-core/tests/fixtures/rsa2048-test-key.pem");

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn gcp(server: &MockServer) -> GcpBackend {
    let key = map(json!({
        "type": "service_account",
        "project_id": "p1",
        "private_key_id": "kid-1",
        "private_key": RSA_KEY,
        "client_email": "scaivault@p1.iam.gserviceaccount.com",
        "token_uri": format!("{}/token", server.uri()),
    }));
    GcpBackend::new(GcpConnection {
        project_id: "p1".into(),
        endpoint: Some(format!("{}/", server.uri())),
        auth: GcpAuth::ServiceAccountKey(GcpServiceAccount::from_secret(&key).unwrap()),
    })
    .unwrap()
}

fn token(value: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": value, "expires_in": 3599, "token_type": "Bearer"}))
}

/// The claims of the JWT in a token request's `assertion`.
fn assertion_claims(r: &Request) -> Value {
    let form = String::from_utf8_lossy(&r.body).into_owned();
    let assertion = form.split('&').find_map(|kv| kv.strip_prefix("assertion=")).expect("assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a signed JWT");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some("kid-1")));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test]
async fn gcp_reads_versions_labels_and_lists_with_one_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"))
        .respond_with(token("gcp-token-1"))
        .expect(1)
        .mount(&server)
        .await;
    let payload = STANDARD.encode(br#"{"user": "app", "password": "p-3"}"#);
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/latest:access"))
        .and(header("authorization", "Bearer gcp-token-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/123/secrets/db/versions/3", "payload": {"data": payload}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/1:access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/123/secrets/db/versions/1", "payload": {"data": STANDARD.encode([0u8, 1, 255])}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "projects/123/secrets/db", "labels": {"team": "billing"}})),
        )
        .mount(&server)
        .await;
    // Each version's metadata (when it was added), asked once per version read.
    for (number, created) in [(3, "2026-11-03T10:00:00Z"), (1, "2026-11-01T10:00:00.5Z")] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/projects/p1/secrets/db/versions/{number}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "name": format!("projects/123/secrets/db/versions/{number}"), "state": "ENABLED", "createTime": created})))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"versions": [
            {"name": "projects/123/secrets/db/versions/3", "state": "ENABLED", "createTime": "2026-11-03T10:00:00Z"},
            {"name": "projects/123/secrets/db/versions/2", "state": "DESTROYED"},
            {"name": "projects/123/secrets/db/versions/1", "state": "ENABLED", "createTime": "2026-11-01T10:00:00.5Z"}
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets"))
        .and(query_param("pageToken", "page-2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"secrets": [{"name": "projects/123/secrets/app-api"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "secrets": [{"name": "projects/123/secrets/db"}, {"name": "projects/123/secrets/app-db"}],
            "nextPageToken": "page-2"})))
        .mount(&server)
        .await;

    let b = gcp(&server);
    let s = b.read("db", None).await.unwrap();
    assert_eq!(Value::Object(s.data), json!({"user": "app", "password": "p-3"}));
    assert_eq!((s.version, s.custom.get("team").map(String::as_str)), (Some(3), Some("billing")));
    assert_eq!(s.created_at.map(|t| t.to_rfc3339()).as_deref(), Some("2026-11-03T10:00:00+00:00"));
    let again = b.read("db", None).await.unwrap();
    assert_eq!(again.created_at, s.created_at, "remembered, not asked again");
    let first = b.read("db", Some(1)).await.unwrap();
    assert_eq!(Value::Object(first.data), json!({"value_base64": "AAH/"}), "bytes that are not text");
    assert_eq!(first.created_at.map(|t| t.timestamp_millis()), Some(1_793_527_200_500));
    b.check().await.unwrap();
    assert_eq!(b.list("app-", 100).await.unwrap(), ["app-api", "app-db"]);
    assert_eq!(b.list("", 100).await.unwrap().len(), 3);
    assert!(matches!(b.list("", 2).await, Err(FederationError::Unsupported(_))));
    let ids: Vec<String> = b.versions("db").await.unwrap().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["1", "3"], "enabled versions, oldest first");
    assert_eq!(b.read_version("db", "1").await.unwrap().version, Some(1));
    // A name outside GCP's alphabet is never sent.
    assert!(matches!(b.read("../x", None).await, Err(FederationError::NotFound(_))));

    let requests = server.received_requests().await.unwrap();
    let claims = assertion_claims(requests.iter().find(|r| r.url.path() == "/token").unwrap());
    assert_eq!(claims["iss"], "scaivault@p1.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], format!("{}/token", server.uri()));
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
}

#[tokio::test]
async fn gcp_writes_add_versions_creating_the_secret_and_renew_a_refused_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token("t-1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("t-2")).mount(&server).await;
    // The first token is refused once; the adapter fetches the next and tries again.
    Mock::given(header("authorization", "Bearer t-1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "message": "expired"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/p1/secrets/new-key:addVersion"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": {"code": 404, "status": "NOT_FOUND"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/p1/secrets"))
        .and(query_param("secretId", "new-key"))
        .and(body_json(json!({"replication": {"automatic": {}}})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "projects/123/secrets/new-key"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/p1/secrets/new-key:addVersion"))
        .and(header("authorization", "Bearer t-2"))
        .and(body_json(json!({"payload": {"data": STANDARD.encode("plain")}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/123/secrets/new-key/versions/1", "createTime": "2026-11-04T00:00:00Z"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/locked/versions/latest:access"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": 403, "message": "Permission denied"}})),
        )
        .mount(&server)
        .await;
    let b = gcp(&server);
    let written = b.write("new-key", &map(json!({"value": "plain"}))).await.unwrap();
    assert_eq!(written.id, "1");
    assert!(written.created_at.is_some());
    let e = b.read("locked", None).await.unwrap_err();
    assert_eq!(e, FederationError::Denied { status: 403 });
    let text = format!("{e} {b:?}");
    assert!(!text.contains("PRIVATE KEY") && !text.contains("t-2"), "{text}");
}

#[tokio::test]
async fn gcp_credentials_must_be_a_service_account_key() {
    let good = map(
        json!({"client_email": "a@b", "private_key": RSA_KEY, "token_uri": "https://oauth2.googleapis.com/token"}),
    );
    assert!(GcpServiceAccount::from_secret(&good).is_ok());
    for broken in [
        json!({"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----"}),
        json!({"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}),
        json!({"private_key": RSA_KEY}),
        json!({"client_email": "a@b", "private_key": RSA_KEY, "token_uri": "file:///etc/passwd"}),
    ] {
        let e = GcpServiceAccount::from_secret(&map(broken)).unwrap_err();
        assert!(matches!(e, FederationError::Config(_)), "{e}");
        assert!(!e.to_string().contains("MII"), "no key material in {e}");
    }
    let account = GcpServiceAccount::from_secret(&good).unwrap();
    assert!(!format!("{account:?}").contains("MII"));
}

fn azure(server: &MockServer) -> AzureBackend {
    AzureBackend::new(AzureConnection {
        vault_url: server.uri(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        authority_host: Some(format!("{}/", server.uri())),
        credentials: AzureCredential::ClientSecret(
            AzureClientSecret::from_secret(&map(json!({"client_id": "app-1", "client_secret": "cs-secret"})))
                .unwrap(),
        ),
    })
    .unwrap()
}

/// Key Vault's `GET /secrets/db`, answering `s3` (to the bearer token given, if one is).
fn azure_db(server: &MockServer, bearer: Option<&str>) -> Mock {
    let get = Mock::given(method("GET")).and(path("/secrets/db"));
    let get = match bearer {
        Some(b) => get.and(header("authorization", b)),
        None => get,
    };
    get.respond_with(ResponseTemplate::new(200).set_body_json(bundle(
        server,
        "db",
        "v1",
        "s3",
        1_700_000_000,
    )))
}

fn bundle(server: &MockServer, name: &str, version: &str, value: &str, created: i64) -> Value {
    json!({"value": value, "id": format!("{}/secrets/{name}/{version}", server.uri()),
           "attributes": {"enabled": true, "created": created}, "tags": {"owner": "platform"}})
}

#[tokio::test]
async fn azure_reads_lists_versions_and_writes_with_one_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=app-1"))
        .and(body_string_contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"))
        .respond_with(token("az-token"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets/db-password"))
        .and(query_param("api-version", "7.4"))
        .and(header("authorization", "Bearer az-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(
            &server,
            "db-password",
            "v3",
            r#"{"password": "p-3"}"#,
            1_700_000_300,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets/db-password/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(
            &server,
            "db-password",
            "v1",
            "plain-1",
            1_700_000_100,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets/db-password/versions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": format!("{}/secrets/db-password/v3", server.uri()), "attributes": {"enabled": true, "created": 1_700_000_300}},
            {"id": format!("{}/secrets/db-password/v2", server.uri()), "attributes": {"enabled": false, "created": 1_700_000_200}},
            {"id": format!("{}/secrets/db-password/v1", server.uri()), "attributes": {"enabled": true, "created": 1_700_000_100}}
        ], "nextLink": null})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets"))
        .and(query_param("skiptoken", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": format!("{}/secrets/App-Key", server.uri()), "attributes": {"enabled": true}}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": format!("{}/secrets/db-password", server.uri()), "attributes": {"enabled": true}},
            {"id": format!("{}/secrets/app-off", server.uri()), "attributes": {"enabled": false}}],
            "nextLink": format!("{}/secrets?api-version=7.4&skiptoken=2", server.uri())})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/secrets/app-key"))
        .and(body_json(json!({"value": "{\"user\":\"u\"}"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(
            &server,
            "app-key",
            "v9",
            "{\"user\":\"u\"}",
            1_700_000_900,
        )))
        .mount(&server)
        .await;

    let b = azure(&server);
    let s = b.read("db-password", None).await.unwrap();
    assert_eq!(Value::Object(s.data), json!({"password": "p-3"}));
    assert_eq!(s.custom.get("owner").map(String::as_str), Some("platform"));
    assert_eq!(s.created_at.map(|t| t.timestamp()), Some(1_700_000_300));
    assert!(matches!(b.read("db-password", Some(1)).await, Err(FederationError::Unsupported(_))));
    b.check().await.unwrap();
    assert_eq!(
        b.list("", 100).await.unwrap(),
        ["app-key", "db-password"],
        "disabled ones are left out, names in their lowercase form"
    );
    let ids: Vec<String> = b.versions("db-password").await.unwrap().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["v1", "v3"], "enabled versions by creation, the served one last");
    assert_eq!(
        Value::Object(b.read_version("db-password", "v1").await.unwrap().data),
        json!({"value": "plain-1"})
    );
    assert_eq!(b.write("app-key", &map(json!({"user": "u"}))).await.unwrap().id, "v9");
    assert!(matches!(b.read("no/slash", None).await, Err(FederationError::NotFound(_))));
}

#[tokio::test]
async fn azure_refusals_and_foreign_links_carry_no_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided: cs-secret"})))
        .mount(&server)
        .await;
    let b = azure(&server);
    let e = b.read("db", None).await.unwrap_err();
    assert_eq!(e, FederationError::Denied { status: 401 });
    assert!(!format!("{e} {b:?}").contains("cs-secret"));

    let other = MockServer::start().await;
    Mock::given(method("POST")).respond_with(token("az")).mount(&other).await;
    Mock::given(method("GET"))
        .and(path("/secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [],
            "nextLink": "https://elsewhere.example/secrets?api-version=7.4&skiptoken=2"})))
        .mount(&other)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"code": "SecretNotFound", "message": "A secret with (name/id) missing was not found"}})))
        .mount(&other)
        .await;
    let b = azure(&other);
    let e = b.list("", 100).await.unwrap_err();
    assert!(
        matches!(e, FederationError::Backend { .. }),
        "the token never follows a link off the vault: {e}"
    );
    assert_eq!(b.read("missing", None).await.unwrap_err(), FederationError::NotFound("missing".into()));
}

#[tokio::test]
async fn gcp_current_value_skips_a_disabled_newest_version() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("t")).mount(&server).await;
    // `latest` resolves to the newest version whatever its state; GCP refuses to access a
    // disabled one with FAILED_PRECONDITION.
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/latest:access"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400,
            "message": "Secret Version [projects/9/secrets/db/versions/3] is in DISABLED state.",
            "status": "FAILED_PRECONDITION"}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions"))
        .and(query_param("filter", "state:ENABLED"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"versions": [
            {"name": "projects/9/secrets/db/versions/2", "state": "ENABLED", "createTime": "2026-11-02T10:00:00Z"},
            {"name": "projects/9/secrets/db/versions/1", "state": "ENABLED", "createTime": "2026-11-01T10:00:00Z"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/2:access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/9/secrets/db/versions/2", "payload": {"data": STANDARD.encode("v2")}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/3:access"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400,
            "message": "is in DISABLED state.", "status": "FAILED_PRECONDITION"}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"labels": {}})))
        .mount(&server)
        .await;
    let b = gcp(&server);
    let s = b.read("db", None).await.unwrap();
    assert_eq!((Value::Object(s.data), s.version), (json!({"value": "v2"}), Some(2)));
    assert!(matches!(b.read("db", Some(3)).await, Err(FederationError::NotFound(_))), "a disabled version");
}

#[tokio::test]
async fn a_throttled_or_failing_token_endpoint_is_unreachable_not_a_refused_credential() {
    for (status, refused) in [(429, false), (503, false), (400, true), (401, true)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": "invalid_client"})))
            .mount(&server)
            .await;
        let e = azure(&server).read("db-password", None).await.unwrap_err();
        if refused {
            assert_eq!(e, FederationError::Denied { status }, "{status}");
        } else {
            assert!(matches!(e, FederationError::Unreachable(_)), "{status}: {e:?}");
        }
    }
}

const AZURE_CERT: &str = include_str!("fixtures/azure-app-cert.pem");
/// The certificate's `x5t`, computed with openssl (see `fixtures/README.md`).
const AZURE_CERT_X5T: &str = "Rz0NFUt3GZBJ-YAOdj0N5f7Tv-c";

#[tokio::test]
async fn azure_certificate_credentials_sign_a_client_assertion_entra_id_can_verify() {
    let server = MockServer::start().await;
    let token_path = "/contoso.onmicrosoft.com/oauth2/v2.0/token";
    Mock::given(method("POST"))
        .and(path(token_path))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=app-1"))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ))
        .respond_with(token("cert-token"))
        .expect(1)
        .mount(&server)
        .await;
    azure_db(&server, Some("Bearer cert-token")).expect(2).mount(&server).await;
    // The certificate and its key in one PEM, as `az ad sp create-for-rbac --create-cert` writes it.
    let both = format!("{AZURE_CERT}{RSA_KEY}");
    let credential =
        AzureClientCertificate::from_secret(&map(json!({"client_id": "app-1", "certificate": both})))
            .unwrap();
    assert!(!format!("{credential:?}").contains("MII"), "no key material printed");
    let b = AzureBackend::new(AzureConnection {
        vault_url: server.uri(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        authority_host: Some(format!("{}/", server.uri())),
        credentials: AzureCredential::Certificate(credential),
    })
    .unwrap();
    for _ in 0..2 {
        assert_eq!(Value::Object(b.read("db", None).await.unwrap().data), json!({"value": "s3"}));
    }

    // What Entra ID checks of the assertion: RS256 by the certificate's key, found by its `x5t`;
    // for its own token endpoint; issued by and about the application; short-lived and unique.
    let requests = server.received_requests().await.unwrap();
    let form = String::from_utf8_lossy(&requests.iter().find(|r| r.url.path() == token_path).unwrap().body)
        .into_owned();
    let assertion = form.split('&').find_map(|kv| kv.strip_prefix("client_assertion=")).expect("assertion");
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.x5t.as_deref(), Some(AZURE_CERT_X5T));
    scaivault_crypto::install_jwt_crypto_provider();
    let public = scaivault_crypto::JwtSigningKey::rs256_from_der(
        &STANDARD.decode(RSA_KEY.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap(),
    )
    .unwrap()
    .public_jwk("k");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        public["n"].as_str().unwrap(),
        public["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{}{token_path}", server.uri())]);
    validation.set_issuer(&["app-1"]);
    let claims =
        jsonwebtoken::decode::<Value>(assertion, &key, &validation).expect("a valid assertion").claims;
    assert_eq!(claims["sub"], "app-1");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(), 600);

    // The key may stand apart; broken credentials say which field, never its content.
    AzureClientCertificate::from_secret(&map(
        json!({"client_id": "app-1", "certificate": AZURE_CERT, "private_key": RSA_KEY}),
    ))
    .unwrap();
    for (broken, field) in [
        (json!({"client_id": "app-1", "certificate": AZURE_CERT}), "certificate"),
        (json!({"client_id": "app-1", "certificate": RSA_KEY}), "certificate"),
        (json!({"certificate": both}), "client_id"),
        (
            json!({"client_id": "app-1", "certificate": AZURE_CERT, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "private_key",
        ),
    ] {
        let e = AzureClientCertificate::from_secret(&map(broken)).unwrap_err();
        assert!(matches!(&e, FederationError::Config(m) if m.contains(field)), "{field}: {e}");
        assert!(!e.to_string().contains("MII"), "no key material in {e}");
    }
}

fn managed(server: &MockServer, env: ServerEnvironment) -> AzureBackend {
    AzureBackend::new(AzureConnection {
        vault_url: server.uri(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        authority_host: None,
        credentials: AzureCredential::ManagedIdentity(env),
    })
    .unwrap()
}

#[tokio::test]
async fn azure_workload_identity_presents_the_federated_token_and_imds_names_a_user_assigned_identity() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "eyJ.federated.sig\n").unwrap();
    let server = MockServer::start().await;
    // AKS workload identity: the projected token, as a client assertion for the webhook's client id.
    Mock::given(method("POST"))
        .and(path("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"))
        .and(body_string_contains("client_id=wi-app"))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ))
        .and(body_string_contains("client_assertion=eyJ.federated.sig"))
        .respond_with(token("wi-token"))
        .expect(1)
        .mount(&server)
        .await;
    // A user-assigned identity at the instance metadata service.
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(query_param("client_id", "uami-1"))
        .and(header("metadata", "true"))
        .respond_with(token("uami-token"))
        .expect(1)
        .mount(&server)
        .await;
    for bearer in ["Bearer wi-token", "Bearer uami-token"] {
        azure_db(&server, Some(bearer)).expect(1).mount(&server).await;
    }
    let workload = ServerEnvironment::from_pairs([
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.display().to_string()),
        ("AZURE_CLIENT_ID", "wi-app".to_owned()),
        ("AZURE_AUTHORITY_HOST", format!("{}/", server.uri())),
    ])
    .lending_to_loopback(true);
    managed(&server, workload).read("db", None).await.unwrap();
    let user_assigned = ServerEnvironment::from_pairs([
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", server.uri()),
        ("AZURE_CLIENT_ID", "uami-1".to_owned()),
    ])
    .lending_to_loopback(true);
    managed(&server, user_assigned).read("db", None).await.unwrap();
}

#[tokio::test]
async fn a_refused_client_secret_is_not_presented_again_on_every_read() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .expect(1)
        .mount(&server)
        .await;
    let b = azure(&server);
    for _ in 0..3 {
        assert_eq!(b.read("db", None).await.unwrap_err(), FederationError::Denied { status: 401 });
    }
}

#[tokio::test]
async fn gcp_reads_without_the_creation_time_when_the_role_may_only_access_versions() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("gcp")).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/latest:access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/123/secrets/db/versions/4", "payload": {"data": STANDARD.encode("v")}}),
        ))
        .mount(&server)
        .await;
    // An accessor-only role: no labels, no version metadata (asked once, then remembered).
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/4"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}})),
        )
        .mount(&server)
        .await;
    let b = gcp(&server);
    for _ in 0..2 {
        let s = b.read("db", None).await.unwrap();
        assert_eq!((Value::Object(s.data), s.created_at, s.version), (json!({"value": "v"}), None, Some(4)));
    }
}

#[tokio::test]
async fn a_refused_action_is_not_held_back_as_a_refused_credential() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .respond_with(token("az-token"))
        .mount(&server)
        .await;
    // The vault's access policy refuses this one secret: each read asks again (a policy may be
    // fixed any moment), and the token is still good for other secrets.
    Mock::given(method("GET"))
        .and(path("/secrets/forbidden"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {"code": "Forbidden"}})))
        .expect(2)
        .mount(&server)
        .await;
    azure_db(&server, None).expect(1).mount(&server).await;
    let b = azure(&server);
    for _ in 0..2 {
        assert!(matches!(b.read("forbidden", None).await, Err(FederationError::Denied { .. })));
    }
    b.read("db", None).await.unwrap();
}

#[tokio::test]
async fn azure_metadata_service_upgrades_are_waited_out_not_held_against_the_identity() {
    let server = MockServer::start().await;
    // Azure's metadata service while its host upgrades: 410, then the token.
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .respond_with(ResponseTemplate::new(410))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .respond_with(token("mi"))
        .mount(&server)
        .await;
    azure_db(&server, Some("Bearer mi")).mount(&server).await;
    let b = managed(
        &server,
        ServerEnvironment::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", server.uri())])
            .lending_to_loopback(true),
    );
    assert!(matches!(b.read("db", None).await, Err(FederationError::Unreachable(_))));
    b.read("db", None).await.unwrap();
    // A pod whose service account lacks the client-id annotation would otherwise sign in as its
    // node.
    let e = AzureBackend::new(AzureConnection {
        vault_url: server.uri(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        authority_host: None,
        credentials: AzureCredential::ManagedIdentity(
            ServerEnvironment::from_pairs([(
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            )])
            .lending_to_loopback(true),
        ),
    })
    .unwrap_err();
    assert!(matches!(&e, FederationError::Config(m) if m.contains("without AZURE_CLIENT_ID")), "{e}");
}

#[tokio::test]
async fn a_gcp_machine_without_the_service_account_is_refused_not_waited_for() {
    let server = MockServer::start().await;
    // Google's metadata server has no default service account on this machine: 404, which is a
    // verdict (Azure's 404 is a wait), so it is held back rather than asked on every read.
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/token"))
        .and(header("metadata-flavor", "Google"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let b = GcpBackend::new(GcpConnection {
        project_id: "p1".into(),
        endpoint: Some(format!("{}/", server.uri())),
        auth: GcpAuth::WorkloadIdentity(
            ServerEnvironment::from_pairs([("GCE_METADATA_HOST", server.uri())]).lending_to_loopback(true),
        ),
    })
    .unwrap();
    for _ in 0..2 {
        assert_eq!(b.read("db", None).await.unwrap_err(), FederationError::Denied { status: 404 });
    }
}
