use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use scaivault_api::{ErrorBody, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::cache::{Cache, CacheConfig};

/// The longest wait a `Retry-After` may ask for before the client gives up on retrying.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    retries: u32,
    backoff: Duration,
    timeout: Duration,
    cache: Option<CacheConfig>,
    user_agent: String,
    tenant: Option<String>,
    /// PEM certificates trusted besides the built-in roots.
    ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("retries", &self.retries)
            .field("cache", &self.cache)
            .field("extra_ca", &self.ca_pem.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// The bearer token every call sends.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Retries after a `rate_limited` or `service_unavailable` answer or a connection error
    /// (default 3), waiting `Retry-After` when the server sends one, else backing off exponentially
    /// from `backoff` (default 200 ms, at most 5 s). A `POST` is retried only after `rate_limited`
    /// or a connection that never opened, as it may have taken effect otherwise.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// How long one attempt may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Caches [`Client::read_secret_cached`] answers.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Acts as this tenant (`X-Tenant-ID`): for partner and system administrators.
    pub fn acting_as(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Also trusts the certificates of this PEM bundle: for a server whose certificate a private CA
    /// issued. The built-in roots stay trusted.
    pub fn ca_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let base = Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("server URL {:?}: {e}", self.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!("server URL {:?} must be http:// or https://", self.url)));
        }
        if let Some(t) = &self.token
            && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::Config("the token is empty or has characters a token never has".into()));
        }
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(self.user_agent);
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config("CA certificates: the bundle holds no PEM certificate".into()));
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: self.token,
                tenant: self.tenant,
                retries: self.retries,
                backoff: self.backoff,
                cache: self.cache.map(Cache::new),
            }),
        })
    }
}

/// A ScaiVault API client. Cheap to clone; clones share connections and the cache.
///
/// ```no_run
/// # async fn run() -> Result<(), scaivault_client::Error> {
/// let vault = scaivault_client::Client::builder("http://127.0.0.1:7200").token("skt_…").build()?;
/// let secret = vault.read_secret("app/db/password", None).await?;
/// println!("version {}", secret.version);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    tenant: Option<String>,
    retries: u32,
    backoff: Duration,
    pub(crate) cache: Option<Cache>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("token", &self.inner.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// `Retry-After` in seconds, if the answer has one.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// The contract's error of a failed answer (or a decode error naming the status).
pub(crate) async fn api_error(resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let wait = retry_after(&resp);
    let header_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    match resp.bytes().await {
        Ok(body) => match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => Error::Api {
                status,
                code: b.error.code,
                message: b.error.message,
                request_id: b.error.request_id,
                retry_after: wait,
            },
            Err(_) => Error::Api {
                status,
                code: fallback_code(status),
                message: format!("HTTP {status}"),
                request_id: header_id,
                retry_after: wait,
            },
        },
        Err(e) => Error::Unreachable(e.without_url().to_string()),
    }
}

fn fallback_code(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::AuthenticationRequired,
        403 => ErrorCode::AccessDenied,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        502 => ErrorCode::BackendError,
        503 => ErrorCode::ServiceUnavailable,
        400..=499 => ErrorCode::InvalidRequest,
        _ => ErrorCode::InternalError,
    }
}

impl Client {
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            retries: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
            cache: None,
            user_agent: concat!("scaivault-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            tenant: None,
            ca_pem: None,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// `/v1/…` with each of `segments` appended percent-encoded (a secret path's `/` separates
    /// segments).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                path.extend(s.split('/'));
            }
        }
        url
    }

    /// A request with the token.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut req = self.inner.http.request(method, url);
        if let Some(t) = &self.inner.tenant {
            req = req.header("x-tenant-id", t);
        }
        match &self.inner.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request, retrying transient failures; answers the successful response.
    pub(crate) async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<reqwest::Response, Error> {
        let mut attempt = 0;
        loop {
            let mut req = self.request(method.clone(), url.clone());
            if let Some(b) = body {
                req = req.json(b);
            }
            // A POST is retried only when the server surely did nothing: rate limited, or the
            // connection never opened. After a 503 or a broken connection it may have acted
            // (a change commits before its audit record), and a retry would do it twice.
            let once = method == Method::POST;
            let (failure, retry) = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => (api_error(resp).await, true),
                Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    (api_error(resp).await, !once)
                }
                Ok(resp) => return Err(api_error(resp).await),
                Err(e) => {
                    let connect = e.is_connect();
                    (Error::Unreachable(e.without_url().to_string()), connect || !once)
                }
            };
            if !retry || attempt >= self.inner.retries {
                return Err(failure);
            }
            let backoff = self.inner.backoff.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            let wait = match &failure {
                Error::Api { retry_after: Some(s), .. } => Duration::from_secs(*s).max(backoff),
                _ => backoff,
            };
            if wait > MAX_RETRY_AFTER {
                return Err(failure);
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// A call answering JSON.
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, Error> {
        let resp = self.send(method, url, body).await?;
        let bytes = resp.bytes().await.map_err(|e| Error::Unreachable(e.without_url().to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A call answering nothing of interest (`204`, `202`).
    pub(crate) async fn call_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<(), Error> {
        self.send(method, url, body).await.map(drop)
    }
}

/// No request body.
pub(crate) const NO_BODY: Option<&()> = None;
