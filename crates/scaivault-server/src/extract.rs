use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use scaivault_core::{CoreError, Principal, Space};
use scaivault_domain::SecretPath;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// A JSON body whose every rejection speaks our error format, and whose messages never echo a value
/// from the body (serde's messages can quote input, so only the field path and the kind are kept).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    let at = e.path().to_string();
    let message = match inner.classify() {
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            // "missing field `x`" and "unknown field `x`" name only our own field names.
            let safe = ["missing field", "unknown field"].iter().any(|p| text.starts_with(p)).then(|| {
                text.split(" at line")
                    .next()
                    .unwrap_or_default()
                    .split(", expected")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            match (safe, at.as_str()) {
                (Some(s), ".") => s,
                (Some(s), at) => format!("{s} in '{at}'"),
                (None, ".") => "the request body has the wrong shape".to_owned(),
                (None, at) => format!("'{at}' has the wrong type or value"),
            }
        }
        serde_json::error::Category::Eof => "the request body is incomplete JSON".to_owned(),
        _ => malformed(inner),
    };
    ApiError(CoreError::InvalidRequest(message))
}

/// Where a body stops being JSON (serde's own text could quote the input).
fn malformed(e: &serde_json::Error) -> String {
    format!("malformed JSON at line {} column {}", e.line(), e.column())
}

/// Reads the body (refusing more than the limit) and checks it is declared as JSON.
async fn read_json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let json_type = req.headers().get(header::CONTENT_TYPE).is_none_or(|v| declares_json(v.as_bytes()));
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(CoreError::PayloadTooLarge(format!(
                "the request body exceeds {} bytes",
                crate::MAX_BODY_BYTES
            )))
        } else {
            ApiError(CoreError::InvalidRequest("the request body could not be read".into()))
        }
    })?;
    if !json_type && !bytes.is_empty() {
        return Err(ApiError(CoreError::InvalidRequest("Content-Type must be application/json".into())));
    }
    Ok(bytes)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(json_error)?;
    // One JSON value and nothing after it but whitespace: `{…}]]x` is not a body to store.
    de.end().map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!("{}: more after the JSON value", malformed(&e))))
    })?;
    Ok(value)
}

/// Whether a `Content-Type` declares JSON: `application/json` or a `+json` type of `application/`,
/// with any parameters (`; charset=utf-8`).
fn declares_json(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_json_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty one means `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_json_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Query parameters, with rejections in our error format. No parameter may hold a control
/// character: none names anything (NUL, which PostgreSQL's text cannot hold, among them).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: axum::extract::rejection::QueryRejection| {
            ApiError(CoreError::InvalidRequest(format!("bad query parameter: {}", e.body_text())))
        };
        let axum::extract::Query(all) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(bad)?;
        if let Some(name) = with_control_character(&all) {
            return Err(ApiError(CoreError::InvalidRequest(format!(
                "bad query parameter: {name} has a control character"
            ))));
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|q| ApiQuery(q.0)).map_err(bad)
    }
}

/// The name of the first `(name, value)` pair whose value holds a control character.
fn with_control_character(pairs: &[(String, String)]) -> Option<&str> {
    pairs.iter().find(|(_, value)| value.chars().any(char::is_control)).map(|(name, _)| name.as_str())
}

/// The `{id}` segments of a route, with rejections in our error format. Ids are opaque text this
/// server issued, so one with a control character (NUL included, which PostgreSQL's text cannot
/// hold) names nothing and is refused before it reaches a store.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: axum::extract::rejection::PathRejection| {
            ApiError(CoreError::InvalidRequest(format!("bad path parameter: {}", e.body_text())))
        };
        let axum::extract::Path(all) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(bad)?;
        if let Some(name) = with_control_character(&all) {
            return Err(ApiError(CoreError::InvalidRequest(format!(
                "the {name} in the path has a control character"
            ))));
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await.map_err(bad)?;
        Ok(ApiPath(value))
    }
}

/// The one value of a header that may be sent once: two `Authorization` or `X-Tenant-ID` headers
/// are refused rather than one of them silently chosen (a proxy and a client may each add one).
fn single<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &str,
) -> Result<Option<&'a axum::http::HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError(CoreError::InvalidRequest(format!("the {name} header may be sent only once"))));
    }
    Ok(first)
}

/// The authenticated caller.
#[derive(Debug)]
pub(crate) struct Caller(pub(crate) Principal);

/// The tenant a request asks to act as: from the `/v1/t/{tenant_id}/…` prefix (see
/// [`crate::tenant_prefix`]) or the `X-Tenant-ID` header.
#[derive(Debug, Clone)]
pub(crate) struct ActingTenant(pub(crate) String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = single(&parts.headers, header::AUTHORIZATION.as_str())?.map(|v| v.as_bytes());
        let from_prefix = parts.extensions.get::<ActingTenant>().map(|t| t.0.clone());
        let from_header = match single(&parts.headers, "x-tenant-id")? {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError(CoreError::InvalidRequest("X-Tenant-ID is not valid text".into())))?
                    .to_owned(),
            ),
            None => None,
        };
        if let (Some(a), Some(b)) = (&from_prefix, &from_header)
            && a != b
        {
            return Err(ApiError(CoreError::InvalidRequest(
                "the tenant prefix and X-Tenant-ID disagree".into(),
            )));
        }
        let acting = from_prefix.or(from_header);
        let slot = parts.extensions.get::<crate::audit::AuditSlot>().cloned();
        let principal = state.vault.authenticate_token(header).await?;
        // Noted before admission, so a refused tenant switch or a rate-limited request is audited
        // in the caller's own tenant; replaced by the acting principal once admitted.
        if let Some(slot) = &slot {
            slot.principal(&principal);
        }
        let principal = state.vault.admit(principal, acting.as_deref()).await?;
        if let Some(slot) = &slot {
            slot.principal(&principal);
        }
        Ok(Caller(principal))
    }
}

const SECRETS_PREFIX: &str = "/v1/secrets/";
const PARTNER_SECRETS_PREFIX: &str = "/v1/partner/secrets/";
const AUDIT_SECRETS_PREFIX: &str = "/v1/audit/secrets/";

/// The secret path of a `/v1/secrets/{path}[/suffix]` or `/v1/partner/secrets/{path}[/suffix]`
/// request, taken from the raw request path: never percent-decoded, never normalised.
#[derive(Debug)]
pub(crate) struct SecretTarget(String, Space);

impl<S: Send + Sync> FromRequestParts<S> for SecretTarget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let (raw, space) = if let Some(raw) = path.strip_prefix(PARTNER_SECRETS_PREFIX) {
            (raw, Space::Partner)
        } else if let Some(raw) = path.strip_prefix(AUDIT_SECRETS_PREFIX) {
            (raw, Space::Tenant)
        } else {
            (path.strip_prefix(SECRETS_PREFIX).unwrap_or_default(), Space::Tenant)
        };
        refuse_encoded(raw)?;
        Ok(SecretTarget(raw.to_owned(), space))
    }
}

/// `/v1/rotation/policies/{id}/secrets/{path}[/readers]`: the policy id and the raw secret path
/// after it (never percent-decoded, as under `/v1/secrets/`).
#[derive(Debug)]
pub(crate) struct AssignmentTarget {
    pub(crate) policy_id: String,
    pub(crate) raw_path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AssignmentTarget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (id, raw) = parts
            .uri
            .path()
            .strip_prefix(ROTATION_POLICIES_PREFIX)
            .and_then(|rest| rest.split_once(SECRETS_SEGMENT))
            .ok_or(ApiError(CoreError::NotFound("route")))?;
        refuse_encoded(raw)?;
        // Policy ids are `rot_` and lowercase letters, digits and dashes: one that needs decoding
        // is malformed, as `ApiPath` answers for every other route's ids.
        if id.contains('%') {
            return Err(ApiError(CoreError::InvalidRequest(
                "bad path parameter: the id is percent-encoded".into(),
            )));
        }
        Ok(AssignmentTarget { policy_id: id.to_owned(), raw_path: raw.to_owned() })
    }
}

const ROTATION_POLICIES_PREFIX: &str = "/v1/rotation/policies/";
const SECRETS_SEGMENT: &str = "/secrets/";

/// A secret path is never percent-decoded: `a%2Fb` is not `a/b`, so any `%` in the raw path is
/// refused wherever a route takes a secret path.
pub(crate) fn refuse_encoded(raw_path: &str) -> Result<(), ApiError> {
    if raw_path.contains('%') {
        return Err(ApiError(CoreError::InvalidPath(
            "invalid secret path: percent-encoded characters are never decoded in secret paths".into(),
        )));
    }
    Ok(())
}

impl SecretTarget {
    pub(crate) fn space(&self) -> Space {
        self.1
    }

    /// The whole raw path as a secret path.
    pub(crate) fn path(&self) -> Result<SecretPath, ApiError> {
        Ok(SecretPath::parse(&self.0)?)
    }

    /// The secret path before `/suffix`, when the request path ends with it.
    pub(crate) fn before(&self, suffix: &str) -> Option<Result<SecretPath, ApiError>> {
        let head = self.0.strip_suffix(suffix)?.strip_suffix('/')?;
        Some(SecretPath::parse(head).map_err(ApiError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::declares_json;

    #[test]
    fn only_json_media_types_declare_json() {
        for json in [
            "application/json",
            "Application/JSON",
            " application/json ; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(declares_json(json.as_bytes()), "{json}");
        }
        for other in ["application/jsonx", "text/json", "application/x-www-form-urlencoded", "text/plain", ""]
        {
            assert!(!declares_json(other.as_bytes()), "{other}");
        }
        assert!(!declares_json(b"application/json\xff"), "not UTF-8");
    }
}
