//! What the bearer-token stores (Azure Key Vault, GCP Secret Manager) share: an OAuth 2.0 access
//! token fetched from the store's token endpoint and reused until near its end, JSON calls that
//! fetch a new token once when the store says the old one is no longer good, their errors sorted
//! into ours, and the string shapes values take in stores that hold text or bytes.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode, Url};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use scaivault_crypto::{JwtSigningKey, SecretBytes};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::FederationError;
use crate::error::{short, unreachable};

/// An access token (an OAuth 2.0 one, or a Vault login's) and when to fetch the next one (at 80%
/// of its life), with the last refusal of the credential that fetches it.
#[derive(Default)]
pub(crate) struct Bearer {
    token: tokio::sync::Mutex<Option<(SecretBytes, Instant)>>,
    /// The token endpoint's last refusal of the credential.
    hold: crate::error::RefusalHold,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer([redacted])")
    }
}

/// A token endpoint's answer.
pub(crate) struct Issued {
    pub(crate) token: SecretBytes,
    pub(crate) expires_in: u64,
}

impl Bearer {
    /// The current token, fetched with `fetch` when there is none or it is old.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<String, FederationError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Issued, FederationError>>,
    {
        let mut slot = self.token.lock().await;
        if let Some((token, refresh_at)) = slot.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(String::from_utf8_lossy(token.expose()).into_owned());
        }
        self.hold.held()?;
        let issued = self.hold.note(fetch().await)?;
        let life = Duration::from_secs(issued.expires_in.clamp(1, 24 * 3600)).mul_f64(0.8);
        let text = String::from_utf8_lossy(issued.token.expose()).into_owned();
        *slot = Some((issued.token, Instant::now() + life));
        Ok(text)
    }

    /// Drops the token the store refused, unless another call has already replaced it.
    pub(crate) async fn forget(&self, refused: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|(token, _)| token.expose() == refused.as_bytes()) {
            *slot = None;
        }
    }
}

/// How a sign-in endpoint's status reads (a token endpoint, a metadata service, a credentials
/// endpoint): throttled or down is not a verdict on the credential (`Unreachable`), any other
/// failure refuses it (`Denied`).
pub(crate) fn sign_in_status(status: StatusCode, what: &str) -> Result<(), FederationError> {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(FederationError::Unreachable(format!("{what} answered {status}")));
    }
    if !status.is_success() {
        return Err(FederationError::Denied { status: status.as_u16() });
    }
    Ok(())
}

/// A cloud's metadata service, which tells a machine the identity it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataService {
    Azure,
    Google,
}

impl MetadataService {
    /// The header the service requires of every caller.
    fn header(self) -> (&'static str, &'static str) {
        match self {
            MetadataService::Azure => ("Metadata", "true"),
            MetadataService::Google => ("Metadata-Flavor", "Google"),
        }
    }

    /// Whether `status` means "busy, retry" rather than a verdict on the identity: Azure's answers
    /// 404 while it updates and 410 while its host upgrades. Google's 404 means the machine has no
    /// such service account, a refusal like any other.
    fn busy(self, status: StatusCode) -> bool {
        self == MetadataService::Azure && matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE)
    }
}

/// GETs what a cloud's metadata service answers (the identity the server runs as).
pub(crate) async fn metadata_get(
    http: &reqwest::Client,
    url: Url,
    service: MetadataService,
) -> Result<Vec<u8>, FederationError> {
    const WHAT: &str = "the metadata service";
    let (name, value) = service.header();
    let response = http.get(url).header(name, value).send().await.map_err(unreachable)?;
    let status = response.status();
    if service.busy(status) {
        return Err(FederationError::Unreachable(format!("{WHAT} answered {status} (retry later)")));
    }
    let bytes = response.bytes().await.map_err(unreachable)?;
    sign_in_status(status, WHAT)?;
    Ok(bytes.to_vec())
}

/// A token from a cloud's metadata service ([`metadata_get`]).
pub(crate) async fn fetch_metadata_token(
    http: &reqwest::Client,
    url: Url,
    service: MetadataService,
) -> Result<Issued, FederationError> {
    issued(StatusCode::OK, &metadata_get(http, url, service).await?)
}

/// POSTs `form` to a token endpoint; answers its `access_token` and `expires_in`. A refusal is
/// `Denied` (the endpoint's own words are not kept: they may quote what was sent).
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    url: Url,
    form: &[(&str, &str)],
) -> Result<Issued, FederationError> {
    let response = http.post(url).form(form).send().await.map_err(unreachable)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unreachable)?;
    sign_in_status(status, "the token endpoint")?;
    issued(status, &bytes)
}

/// An OAuth 2.0 token answer.
fn issued(status: StatusCode, bytes: &[u8]) -> Result<Issued, FederationError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        #[serde(default)]
        expires_in: Option<Value>,
    }
    let answer: Answer = serde_json::from_slice(bytes).map_err(|_| FederationError::Backend {
        status: status.as_u16(),
        message: "the token endpoint did not answer an OAuth 2.0 access token".into(),
    })?;
    // Entra ID and Google send `expires_in` as a number, Azure's metadata service as a string.
    let expires_in = match answer.expires_in {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600)
    // Not fetched again every few calls, whatever an endpoint says.
    .max(60);
    Ok(Issued { token: SecretBytes::new(answer.access_token.into_bytes()), expires_in })
}

/// What a paged listing has gathered, with its guards: at most `limit` items, and no more pages
/// than `limit / page_size + 100` nor one page twice (a store may answer empty pages that still
/// link on; one that links in a circle would otherwise list for ever).
pub(crate) struct Pages {
    items: Vec<Value>,
    seen: std::collections::HashSet<String>,
    limit: usize,
    max_pages: usize,
}

impl Pages {
    pub(crate) fn new(limit: usize, page_size: usize) -> Pages {
        Pages {
            items: Vec::new(),
            seen: Default::default(),
            limit,
            max_pages: limit / page_size.max(1) + 100,
        }
    }

    /// Before fetching the page `key` (its link or token) names.
    pub(crate) fn visit(&mut self, key: &str) -> Result<(), FederationError> {
        if !self.seen.insert(key.to_owned()) || self.seen.len() > self.max_pages {
            return Err(FederationError::Backend { status: 200, message: "the listing does not end".into() });
        }
        Ok(())
    }

    /// The `field` array of a page's answer.
    pub(crate) fn take(&mut self, answer: &Value, field: &str) -> Result<(), FederationError> {
        self.items.extend(answer.get(field).and_then(Value::as_array).into_iter().flatten().cloned());
        if self.items.len() > self.limit {
            return Err(crate::too_many(self.limit));
        }
        Ok(())
    }

    pub(crate) fn into_items(self) -> Vec<Value> {
        self.items
    }
}

/// The RSA private key of a PEM text (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, the first
/// key in it), for signing RS256 assertions; `what` names the credential's field. No key material
/// goes into the error.
pub(crate) fn rsa_key_of_pem(pem: &str, what: &str) -> Result<JwtSigningKey, FederationError> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| FederationError::Config(format!("the credential's {what} holds no PEM private key")))?;
    JwtSigningKey::rs256_from_der(der.secret_der()).map_err(|_| {
        FederationError::Config(format!(
            "the credential's {what} is not an RSA private key of 2048 bits or more"
        ))
    })
}

/// Where the server's own identity may be presented: the cloud's own service (no `endpoint`), or
/// this machine when `loopback` (the operator's choice: a local proxy, an emulator, a test's
/// stand-in). Anywhere else its token, or a request it signed, could be replayed to the cloud by
/// whoever answers there; `refusal` says so.
pub(crate) fn own_service_only(
    endpoint: Option<&str>,
    loopback: bool,
    refusal: &str,
) -> Result<(), FederationError> {
    match endpoint {
        None => Ok(()),
        Some(raw) if loopback && is_loopback(&bare_url("endpoint", raw)?) => Ok(()),
        Some(_) => Err(FederationError::Config(format!("endpoint: {refusal}{}", loopback_hint(loopback)))),
    }
}

/// What a refusal adds when this machine could be allowed.
pub(crate) fn loopback_hint(loopback: bool) -> &'static str {
    if loopback { "" } else { " (or, with the operator's --federation-identity-loopback, to this machine)" }
}

/// Whether a backend's address is plain http to another machine, so that its credential and the
/// values read cross the network unencrypted (accepted, as Vault's own clients accept it, but
/// worth a warning).
pub fn in_clear(raw: &str) -> bool {
    Url::parse(raw).is_ok_and(|url| url.scheme() == "http" && !is_loopback(&url))
}

/// Whether `url` names this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A service's base URL: a bare http(s) URL (no user, path or query), as `endpoint` and the like
/// must be.
pub(crate) fn bare_url(what: &str, raw: &str) -> Result<Url, FederationError> {
    let url = Url::parse(raw).map_err(|e| FederationError::Config(format!("{what} '{raw}': {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(FederationError::Config(format!("{what} must be an http or https URL")));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.path() != "/" {
        return Err(FederationError::Config(format!(
            "{what} must be a bare http(s) URL: no user, path or query"
        )));
    }
    Ok(url)
}

/// One JSON call with the bearer token; on `401` the token is fetched again and the call made once
/// more. Answers the JSON (`Null` for an empty body), or the store's error.
pub(crate) async fn call<F, Fut>(
    http: &reqwest::Client,
    bearer: &Bearer,
    fetch: F,
    method: Method,
    url: Url,
    body: Option<&Value>,
) -> Result<Value, FederationError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Issued, FederationError>>,
{
    for attempt in 0..2 {
        let token = bearer.get(&fetch).await?;
        let mut request = http.request(method.clone(), url.clone()).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status == StatusCode::UNAUTHORIZED && attempt == 0 {
            bearer.forget(&token).await;
            continue;
        }
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|_| FederationError::Backend {
                status: status.as_u16(),
                message: "the answer was not JSON".into(),
            });
        }
        return Err(error_of(status, &bytes));
    }
    Err(FederationError::Denied { status: 401 })
}

/// Azure's and Google's `{"error": {"code": …, "message": …}}`, sorted into ours. What the
/// stores answer for a value that exists but may not be read as such is not found, as a deleted
/// version is elsewhere: Azure's disabled secret (`403` with inner code `SecretDisabled`) and
/// Google's disabled or destroyed version (`400 FAILED_PRECONDITION`).
fn error_of(status: StatusCode, body: &[u8]) -> FederationError {
    let error = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error").cloned());
    let field = |pointer: &str| error.as_ref().and_then(|e| e.pointer(pointer)).and_then(Value::as_str);
    let unavailable = (status == StatusCode::FORBIDDEN
        && field("/innererror/code") == Some("SecretDisabled"))
        || (status == StatusCode::BAD_REQUEST && field("/status") == Some("FAILED_PRECONDITION"));
    match status {
        StatusCode::NOT_FOUND => return FederationError::NotFound(String::new()),
        _ if unavailable => return FederationError::NotFound(String::new()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return FederationError::Denied { status: status.as_u16() };
        }
        _ => {}
    }
    let message = field("/message")
        .map(short)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    FederationError::Backend { status: status.as_u16(), message }
}

/// A value held as text, as ScaiVault's data: a JSON object as that object, anything else as
/// `{"value": …}`.
pub(crate) fn data_of_text(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::from_iter([("value".to_owned(), Value::String(text.to_owned()))]),
    }
}

/// A value held as bytes: UTF-8 text as [`data_of_text`], anything else as `{"value_base64": …}`.
pub(crate) fn data_of_bytes(bytes: &[u8]) -> Map<String, Value> {
    match std::str::from_utf8(bytes) {
        Ok(text) => data_of_text(text),
        Err(_) => Map::from_iter([("value_base64".to_owned(), Value::String(STANDARD.encode(bytes)))]),
    }
}

/// ScaiVault's data as the text a store keeps: `{"value": s}` as `s`, anything else as its JSON
/// (so `{"value_base64": …}` reads back as itself from a store that keeps text only).
pub(crate) fn text_of(data: &Map<String, Value>) -> String {
    if data.len() == 1
        && let Some(Value::String(text)) = data.get("value")
    {
        return text.clone();
    }
    Value::Object(data.clone()).to_string()
}

/// ScaiVault's data as the bytes a store keeps: `{"value_base64": b}` as the decoded bytes,
/// otherwise [`text_of`].
pub(crate) fn bytes_of(data: &Map<String, Value>) -> Vec<u8> {
    if data.len() == 1
        && let Some(Value::String(b64)) = data.get("value_base64")
        && let Ok(bytes) = STANDARD.decode(b64)
    {
        return bytes;
    }
    text_of(data).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn plain_http_to_another_machine_is_in_clear() {
        for clear in ["http://vault.internal:8200", "http://10.0.0.5/", "http://localhost.evil.example"] {
            assert!(in_clear(clear), "{clear}");
        }
        for not in [
            "https://vault.internal:8200",
            "http://127.0.0.1:8200",
            "http://localhost:1",
            "http://[::1]:8200",
            "nonsense",
        ] {
            assert!(!in_clear(not), "{not}");
        }
    }

    #[test]
    fn values_round_trip_through_text_and_bytes() {
        for data in [
            json!({"value": "plain"}),
            json!({"user": "app", "password": "p"}),
            json!({"value": "{not json"}),
            json!({"value_base64": "AAEC/w=="}),
        ] {
            let data = map(data);
            assert_eq!(data_of_bytes(&bytes_of(&data)), data, "{data:?}");
            assert_eq!(data_of_text(&text_of(&data)), data, "{data:?}");
        }
        assert_eq!(data_of_bytes(&[0, 1, 2, 255]), map(json!({"value_base64": "AAEC/w=="})));
        assert_eq!(text_of(&map(json!({"value": "x"}))), "x");
    }

    #[test]
    fn listings_stop_at_a_repeated_page_too_many_pages_or_too_many_items() {
        let mut pages = Pages::new(3, 1);
        pages.visit("a").unwrap();
        pages.take(&json!({"value": [1, 2]}), "value").unwrap();
        assert!(pages.visit("a").is_err(), "a page seen before");
        pages.visit("b").unwrap();
        assert!(matches!(
            pages.take(&json!({"value": [3, 4]}), "value"),
            Err(FederationError::Unsupported(_))
        ));
        let mut empty = Pages::new(0, 25);
        for i in 0..100 {
            empty.visit(&i.to_string()).unwrap();
            empty.take(&json!({}), "value").unwrap();
        }
        assert!(empty.visit("100").is_err(), "empty pages linking on for ever");
    }

    #[test]
    fn store_errors_are_sorted_without_bodies() {
        let body =
            br#"{"error": {"code": 400, "message": "bad\nsecond line", "status": "INVALID_ARGUMENT"}}"#;
        assert_eq!(
            error_of(StatusCode::BAD_REQUEST, body),
            FederationError::Backend { status: 400, message: "bad".into() }
        );
        assert!(matches!(error_of(StatusCode::NOT_FOUND, b""), FederationError::NotFound(_)));
        assert_eq!(error_of(StatusCode::FORBIDDEN, b"x"), FederationError::Denied { status: 403 });
        assert_eq!(
            error_of(StatusCode::BAD_GATEWAY, b"<html>"),
            FederationError::Backend { status: 502, message: "Bad Gateway".into() }
        );
        // A disabled Azure secret and a disabled or destroyed GCP version are not found, not a
        // refused credential or a fault of the store.
        let disabled = br#"{"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.",
            "innererror": {"code": "SecretDisabled"}}}"#;
        assert!(matches!(error_of(StatusCode::FORBIDDEN, disabled), FederationError::NotFound(_)));
        let destroyed = br#"{"error": {"code": 400, "message": "Secret Version [projects/1/secrets/db/versions/2] is in DESTROYED state.",
            "status": "FAILED_PRECONDITION"}}"#;
        assert!(matches!(error_of(StatusCode::BAD_REQUEST, destroyed), FederationError::NotFound(_)));
        let other = br#"{"error": {"code": "Forbidden", "innererror": {"code": "ForbiddenByPolicy"}}}"#;
        assert_eq!(error_of(StatusCode::FORBIDDEN, other), FederationError::Denied { status: 403 });
    }
}
