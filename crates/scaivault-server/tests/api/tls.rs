//! HTTPS with the fixture certificate (self-signed for 127.0.0.1, test use only).

use crate::common;

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

async fn https_get(port: u16, path: &str, token: &str) -> String {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca-cert.pem")).expect("cert") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let app = common::app().await;
    let config =
        scaivault_server::tls_config(&fixture("test-cert.pem"), &fixture("test-key.pem")).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(scaivault_server::serve_tls(listener, app.router.clone(), config, async {
        let _ = stopped.await;
    }));
    let health = https_get(port, "/v1/health", "none").await;
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let who = https_get(port, "/v1/auth/whoami", &app.root).await;
    assert!(who.contains(r#""token_type":"root""#), "{who}");
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    plain.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    stop.send(()).expect("stop");
    server.await.expect("join").expect("serve");
}

#[test]
fn bad_certificate_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    assert!(scaivault_server::tls_config(&empty, &fixture("test-key.pem")).is_err());
    assert!(scaivault_server::tls_config(&fixture("test-cert.pem"), &empty).is_err());
    assert!(scaivault_server::tls_config(&dir.path().join("missing.pem"), &fixture("test-key.pem")).is_err());
}
