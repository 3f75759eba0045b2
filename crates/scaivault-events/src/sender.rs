//! One webhook delivery attempt over HTTP. Retries, scheduling and persistence belong to the caller;
//! this only makes the request safely and reports what happened.
//!
//! Safety: redirects are never followed (a redirect could point anywhere, including the metadata
//! service), proxies from the environment are ignored (the guard must see the real destination), every
//! DNS answer goes through [`GuardedResolver`], and IP-literal URLs, which skip DNS, are checked here.
//! Nothing from the request headers or body, and no response body, ends up in an error message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use thiserror::Error;

use crate::url_guard::{GuardedResolver, UrlError, host_ip, is_forbidden_ip, parse_webhook_url};

/// SPEC §7: a delivery succeeds on any 2xx within 10 s.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting gets at most this much of the delivery timeout, so an unreachable host fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this much of a response body is read (then discarded): receivers answer with a status, and
/// a huge or endless body must not hold a delivery worker.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// The `User-Agent` of deliveries, so receivers and their firewalls can recognise them.
pub const USER_AGENT: &str = concat!("scaivault-webhooks/", env!("CARGO_PKG_VERSION"));

/// The sender could not be built.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What one attempt did, as stored with the delivery and returned by `POST /v1/webhooks/{id}/test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when the receiver answered at all.
    pub response_code: Option<u16>,
    /// Why the attempt failed (`None` on success); never contains headers, bodies or secrets.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The receiver answered `410 Gone`: the caller may disable the webhook instead of retrying.
    pub gone: bool,
}

impl Attempt {
    /// Any 2xx is a success (SPEC §7).
    pub fn succeeded(&self) -> bool {
        self.response_code.is_some_and(|c| (200..300).contains(&c))
    }

    fn failed(error: String, started: Instant) -> Attempt {
        Attempt { response_code: None, error: Some(error), duration_ms: elapsed_ms(started), gone: false }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A reqwest error as one line: its message and its sources, without the URL (which may carry a
/// token in its query) and without anything from the request.
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

/// The webhook HTTP client. Cheap to share: one per process.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// `allow_private` is the server's `--webhook-allow-private`; `timeout` bounds a whole attempt
    /// (normally [`DELIVERY_TIMEOUT`]).
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Sender, SendError> {
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(USER_AGENT)
            .no_proxy()
            .build()
            .map_err(SendError::Client)?;
        Ok(Sender { client, allow_private })
    }

    /// Makes one `POST` of `body` with `headers` (from `sign_delivery`) to `url`, and reports the
    /// outcome; it never fails otherwise.
    pub async fn send(&self, url: &str, headers: &[(&'static str, String)], body: Vec<u8>) -> Attempt {
        let started = Instant::now();
        let url = match parse_webhook_url(url) {
            Ok(url) => url,
            Err(e) => return Attempt::failed(format!("refused: {e}"), started),
        };
        if !self.allow_private && host_ip(&url).is_some_and(is_forbidden_ip) {
            let host = url.host_str().unwrap_or_default().to_owned();
            return Attempt::failed(format!("refused: {}", UrlError::ForbiddenAddress { host }), started);
        }

        let mut request = self.client.post(url);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let mut response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return Attempt::failed(describe(e), started),
        };
        let code = response.status().as_u16();
        let duration_ms = elapsed_ms(started);

        // Read a bounded amount so the connection closes cleanly, then drop it; a read error after
        // the status arrived does not change the outcome.
        let mut read = 0usize;
        while read < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }

        let error = match code {
            200..=299 => None,
            300..=399 => Some("redirect not followed".to_owned()),
            _ => Some(format!("receiver answered HTTP {code}")),
        };
        Attempt { response_code: Some(code), error, duration_ms, gone: code == 410 }
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::{check_webhook_url, sign_delivery, verify_scaivault};

    const BODY: &[u8] = br#"{"event_id":"evt_1"}"#;

    fn headers() -> Vec<(&'static str, String)> {
        sign_delivery(&["s3cret"], "evt_1", "webhook.test", "dlv_1", 1_700_000_000, BODY)
    }

    #[tokio::test]
    async fn delivers_to_a_2xx_receiver_with_signed_headers() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .and(header("content-type", "application/json"))
            .and(header("x-scaivault-event-id", "evt_1"))
            .and(header("webhook-id", "evt_1"))
            .and(header("user-agent", USER_AGENT))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
        let sender = Sender::new(true, DELIVERY_TIMEOUT).unwrap();
        let attempt = sender.send(&format!("{}/hook", server.uri()), &headers(), BODY.to_vec()).await;
        assert!(attempt.succeeded(), "{attempt:?}");
        assert_eq!(attempt.response_code, Some(204));
        assert_eq!(attempt.error, None);
        assert!(!attempt.gone);

        let received = &server.received_requests().await.unwrap()[0];
        assert_eq!(received.body, BODY);
        let ts = received.headers.get("x-scaivault-timestamp").unwrap().to_str().unwrap();
        let sig = received.headers.get("x-scaivault-signature").unwrap().to_str().unwrap();
        assert_eq!(verify_scaivault("s3cret", ts, sig, &received.body, 1_700_000_000, 300), Ok(()));
    }

    #[tokio::test]
    async fn loopback_is_refused_without_a_connection() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
        let sender = Sender::new(false, DELIVERY_TIMEOUT).unwrap();
        for url in [format!("{}/hook", server.uri()), server.uri().replace("127.0.0.1", "localhost")] {
            let attempt = sender.send(&url, &headers(), BODY.to_vec()).await;
            assert!(!attempt.succeeded());
            assert_eq!(attempt.response_code, None);
            let error = attempt.error.unwrap();
            assert!(error.contains("refused"), "{error}");
            assert!(!error.contains("s3cret") && !error.contains("evt_1"), "{error}");
        }
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let server = MockServer::start().await;
        Mock::given(path("/a"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{}/b", server.uri())))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/b")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
        let sender = Sender::new(true, DELIVERY_TIMEOUT).unwrap();
        let attempt = sender.send(&format!("{}/a", server.uri()), &headers(), BODY.to_vec()).await;
        assert!(!attempt.succeeded());
        assert_eq!(attempt.response_code, Some(302));
        assert_eq!(attempt.error.as_deref(), Some("redirect not followed"));
    }

    #[tokio::test]
    async fn gone_and_errors_are_reported() {
        let server = MockServer::start().await;
        Mock::given(path("/gone")).respond_with(ResponseTemplate::new(410)).mount(&server).await;
        Mock::given(path("/boom"))
            .respond_with(ResponseTemplate::new(500).set_body_bytes(vec![b'x'; 200 * 1024]))
            .mount(&server)
            .await;
        Mock::given(path("/slow"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let sender = Sender::new(true, Duration::from_millis(300)).unwrap();

        let gone = sender.send(&format!("{}/gone", server.uri()), &headers(), BODY.to_vec()).await;
        assert!(gone.gone && !gone.succeeded());
        assert_eq!(gone.response_code, Some(410));

        let boom = sender.send(&format!("{}/boom", server.uri()), &headers(), BODY.to_vec()).await;
        assert_eq!((boom.response_code, boom.gone), (Some(500), false));
        assert_eq!(boom.error.as_deref(), Some("receiver answered HTTP 500"));

        let slow = sender.send(&format!("{}/slow", server.uri()), &headers(), BODY.to_vec()).await;
        assert_eq!(slow.response_code, None);
        assert_eq!(slow.error.as_deref(), Some("timed out"));
    }

    #[tokio::test]
    async fn connection_errors_do_not_leak_the_url() {
        // Bind and drop a listener to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let sender = Sender::new(true, DELIVERY_TIMEOUT).unwrap();
        let attempt =
            sender.send(&format!("http://127.0.0.1:{port}/hook?token=abc"), &headers(), BODY.to_vec()).await;
        let error = attempt.error.unwrap();
        assert!(error.contains("connect"), "{error}");
        assert!(!error.contains("token=abc") && !error.contains("/hook"), "{error}");
        assert_eq!(attempt.response_code, None);
    }

    #[tokio::test]
    async fn adversarial_urls_are_refused_and_public_literals_accepted() {
        let refused = [
            "http://127.0.0.1/",
            "http://localhost./",
            "http://localhost/",
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://user@127.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://[fd00:ec2::254]/",
            "http://[64:ff9b::7f00:1]/",
            "ftp://example.com/",
        ];
        for raw in refused {
            let outcome = match parse_webhook_url(raw) {
                Ok(url) => check_webhook_url(&url, false).await,
                Err(e) => Err(e),
            };
            assert!(outcome.is_err(), "{raw} was accepted");
        }
        for raw in ["https://93.184.216.34/hook", "https://[2606:4700::1]/"] {
            let url = parse_webhook_url(raw).unwrap();
            assert_eq!(check_webhook_url(&url, false).await, Ok(()), "{raw}");
        }
    }
}
