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

/// A Vault read with the token a login answered, answered with `password`.
async fn kv_read_with(vault: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app/db"))
        .and(header("X-Vault-Token", token))
        .respond_with(kv2("p-1", 1))
        .expect(1)
        .mount(vault)
        .await;
}

fn backend(vault: &MockServer, auth: VaultAuth) -> VaultBackend {
    VaultBackend::new(VaultConnection { address: vault.uri(), namespace: None, auth, ca_pem: None }).unwrap()
}

fn unbase64(v: &serde_json::Value) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn aws_login_signs_get_caller_identity_as_vaults_iam_method_takes_it() {
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/aws-prod/login"))
        .respond_with(login("tok-aws"))
        .expect(1)
        .mount(&vault)
        .await;
    kv_read_with(&vault, "tok-aws").await;
    let credential = json!({"role": "reader", "access_key_id": "AKIAVAULT", "secret_access_key": "do-not-print",
        "server_id": "vault.example.com", "mount": "aws-prod"});
    let auth = VaultAuth::from_secret("aws", credential.as_object().unwrap()).unwrap();
    assert!(!auth.uses_server_identity() && !format!("{auth:?}").contains("do-not-print"));
    backend(&vault, auth).read("secret/data/app/db", None).await.unwrap();

    // What Vault hands on to STS: GetCallerIdentity, signed for the global endpoint.
    let requests = vault.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["role"], "reader");
    assert_eq!(body["iam_http_request_method"], "POST");
    assert_eq!(unbase64(&body["iam_request_url"]), "https://sts.amazonaws.com/");
    assert_eq!(unbase64(&body["iam_request_body"]), "Action=GetCallerIdentity&Version=2011-06-15");
    let headers: serde_json::Value = serde_json::from_str(&unbase64(&body["iam_request_headers"])).unwrap();
    assert_eq!(headers["Host"], json!(["sts.amazonaws.com"]));
    assert_eq!(headers["X-Vault-Aws-Iam-Server-Id"], json!(["vault.example.com"]));
    assert_eq!(headers["Content-Type"], json!(["application/x-www-form-urlencoded; charset=utf-8"]));
    assert!(headers["X-Amz-Date"][0].as_str().is_some_and(|d| d.len() == 16 && d.ends_with('Z')));
    let authorization = headers["Authorization"][0].as_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIAVAULT/")
            && authorization.contains("/us-east-1/sts/aws4_request, ")
            && authorization
                .contains("SignedHeaders=content-type;host;x-amz-date;x-vault-aws-iam-server-id, "),
        "{authorization}"
    );
    assert!(!String::from_utf8_lossy(&requests[0].body).contains("do-not-print"));
}

#[tokio::test]
async fn aws_login_as_the_servers_own_identity_signs_with_its_session() {
    use scaivault_federation::{AwsAuth, AwsLoginKeys, Login, ServerEnvironment};
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/aws/login"))
        .respond_with(login("tok-own"))
        .mount(&vault)
        .await;
    kv_read_with(&vault, "tok-own").await;
    let env = ServerEnvironment::from_pairs([
        ("AWS_ACCESS_KEY_ID", "ASIAOWN"),
        ("AWS_SECRET_ACCESS_KEY", "own-secret"),
        ("AWS_SESSION_TOKEN", "own-session"),
    ])
    .lending_to_loopback(true);
    let auth = VaultAuth::Login {
        mount: "aws".into(),
        method: Login::Aws {
            role: "reader".into(),
            server_id: None,
            keys: Box::new(AwsLoginKeys::new(AwsAuth::ServerIdentity(env), Some("eu-west-1")).unwrap()),
        },
    };
    assert!(auth.uses_server_identity());
    backend(&vault, auth).read("secret/data/app/db", None).await.unwrap();
    let requests = vault.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(unbase64(&body["iam_request_url"]), "https://sts.eu-west-1.amazonaws.com/");
    let headers: serde_json::Value = serde_json::from_str(&unbase64(&body["iam_request_headers"])).unwrap();
    assert_eq!(headers["X-Amz-Security-Token"], json!(["own-session"]));
    let authorization = headers["Authorization"][0].as_str().unwrap();
    assert!(authorization.contains("Credential=ASIAOWN/") && authorization.contains("/eu-west-1/sts/"));
    assert!(authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "));
}

#[tokio::test]
async fn gcp_login_with_a_service_account_key_or_the_metadata_servers_identity_token() {
    use scaivault_federation::{GcpLoginSigner, Login};
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/gcp/login"))
        .respond_with(login("tok-gcp"))
        .mount(&vault)
        .await;
    kv_read_with(&vault, "tok-gcp").await;
    let key = json!({"role": "reader", "client_email": "scaivault@p1.iam.gserviceaccount.com",
        "private_key_id": "kid-1", "private_key": include_str!("../../scaivault-core/tests/fixtures/rsa2048-test-key.pem")});
    let auth = VaultAuth::from_secret("gcp", key.as_object().unwrap()).unwrap();
    assert!(!auth.uses_server_identity() && !format!("{auth:?}").contains("MII"));
    backend(&vault, auth).read("secret/data/app/db", None).await.unwrap();
    // The JWT Vault's `iam` method verifies with the account's public key: for `vault/<role>`,
    // about the account, short-lived, signed by the key it names.
    let requests = vault.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["role"], "reader");
    let jwt = body["jwt"].as_str().unwrap();
    let jwt_header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!((jwt_header.alg, jwt_header.kid.as_deref()), (jsonwebtoken::Algorithm::RS256, Some("kid-1")));
    scaivault_crypto::install_jwt_crypto_provider();
    let public: serde_json::Value = {
        use base64::Engine;
        let pem = include_str!("../../scaivault-core/tests/fixtures/rsa2048-test-key.pem");
        let der = base64::engine::general_purpose::STANDARD
            .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        scaivault_crypto::JwtSigningKey::rs256_from_der(&der).unwrap().public_jwk("k")
    };
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        public["n"].as_str().unwrap(),
        public["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["vault/reader"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &decoding, &validation).unwrap().claims;
    assert_eq!(claims["sub"], "scaivault@p1.iam.gserviceaccount.com");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);

    // The server's own account: the metadata server's identity token for `http://vault/<role>`.
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/identity"))
        .and(header("Metadata-Flavor", "Google"))
        .and(query_param("audience", "http://vault/reader"))
        .and(query_param("format", "full"))
        .respond_with(ResponseTemplate::new(200).set_body_string("eyJ.gce-identity.sig"))
        .expect(1)
        .mount(&metadata)
        .await;
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/gcp/login"))
        .and(body_json(json!({"role": "reader", "jwt": "eyJ.gce-identity.sig"})))
        .respond_with(login("tok-gce"))
        .mount(&vault)
        .await;
    kv_read_with(&vault, "tok-gce").await;
    let url = format!("{}/computeMetadata/v1/instance/service-accounts/default/identity", metadata.uri());
    let auth = VaultAuth::Login {
        mount: "gcp".into(),
        method: Login::Gcp { role: "reader".into(), signer: GcpLoginSigner::Metadata(url.parse().unwrap()) },
    };
    assert!(auth.uses_server_identity());
    backend(&vault, auth).read("secret/data/app/db", None).await.unwrap();
}

#[tokio::test]
async fn a_refused_login_is_not_tried_again_on_every_read() {
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/approle/login"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"errors": ["invalid role or secret ID"]})),
        )
        .expect(1)
        .mount(&vault)
        .await;
    let b = backend(&vault, approle());
    for _ in 0..3 {
        assert_eq!(
            b.read("secret/data/app/db", None).await.unwrap_err(),
            FederationError::Denied { status: 400 }
        );
    }
}

#[tokio::test]
async fn a_login_token_without_a_lease_is_kept() {
    let vault = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/approle/login"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"auth": {"client_token": "tok-forever", "lease_duration": 0}})),
        )
        .expect(1)
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app/db"))
        .and(header("X-Vault-Token", "tok-forever"))
        .respond_with(kv2("p-1", 1))
        .expect(3)
        .mount(&vault)
        .await;
    let b = backend(&vault, approle());
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        b.read("secret/data/app/db", None).await.unwrap();
    }
}

fn token_backend(vault: &MockServer) -> VaultBackend {
    backend(vault, VaultAuth::from_secret("token", json!({"token": "t-1"}).as_object().unwrap()).unwrap())
}

/// Answers Vault's `LIST` of the folders `path` matches (a regex) with `keys`.
async fn mount_listing(vault: &MockServer, path: &str, keys: serde_json::Value) {
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(path))
        .and(query_param("list", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"keys": keys}})))
        .mount(vault)
        .await;
}

/// A hostile or broken Vault cannot keep a sync listing for ever: a key that names its own folder
/// is refused, and endless new folders stop at the limit.
#[tokio::test]
async fn a_listing_that_names_itself_or_never_ends_is_cut_off() {
    let vault = MockServer::start().await;
    mount_listing(&vault, "^/v1/secret/metadata/loop$", json!(["/", "db"])).await;
    mount_listing(&vault, "^/v1/secret/metadata/deep(/a)*$", json!(["a/"])).await;
    mount_listing(&vault, "^/v1/secret/metadata/fine$", json!(["db", "sub/"])).await;
    mount_listing(&vault, "^/v1/secret/metadata/fine/sub$", json!(["cache"])).await;
    let b = token_backend(&vault);
    let e = b.list("secret/data/loop/", 1000).await.expect_err("a self-naming listing");
    assert!(
        matches!(&e, FederationError::Backend { message, .. } if message.contains("listing key")),
        "{e:?}"
    );
    let requests = vault.received_requests().await.expect("requests").len();
    assert_eq!(requests, 1, "the key is refused where it is first seen, not after many passes");
    let e = b.list("secret/data/deep/", 10).await.expect_err("an endless descent");
    assert!(
        matches!(&e, FederationError::Backend { message, .. } if message.contains("does not end")),
        "{e:?}"
    );
    let requests = vault.received_requests().await.expect("requests").len() - 1;
    assert!(requests <= 10 + 100 + 1, "{requests} requests for an endless listing");
    let names = b.list("secret/data/fine/", 1000).await.expect("a proper listing");
    assert_eq!(names, ["secret/data/fine/db", "secret/data/fine/sub/cache"]);
}
