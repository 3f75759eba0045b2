//! AWS Secrets Manager (and services that speak its API, through `endpoint`): `GetSecretValue` and
//! `DescribeSecret` for reads, signed with Signature Version 4, with static keys or a role's
//! temporary keys (see [`crate::aws_auth`]).
//!
//! A target is a `SecretId` (a name or an ARN). Its value becomes ScaiVault's `data`: a
//! `SecretString` holding a JSON object as that object, any other string as `{"value": …}`, a
//! `SecretBinary` as `{"value_base64": …}`; its tags become `metadata.custom`. AWS versions are
//! ids and stages, not numbers, so a proxied read answers the current (`AWSCURRENT`) value only.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use scaivault_crypto::SecretBytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws_auth::{AwsAuth, Keyring, aws_host};
use crate::error::short;
use crate::sigv4::{host_of, sign_post};
use crate::{Backend, ExternalSecret, FederationError, RemoteVersion};

const SERVICE: &str = "secretsmanager";
const JSON_1_1: &str = "application/x-amz-json-1.1";

/// Static IAM keys.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretBytes,
    /// For temporary keys.
    pub session_token: Option<SecretBytes>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// The credential from the ScaiVault secret a backend's `credentials_path` names:
    /// `{"access_key_id", "secret_access_key"}` and, for temporary keys, `"session_token"`.
    pub fn from_secret(data: &Map<String, Value>) -> Result<AwsCredentials, FederationError> {
        let field = |name: &str| crate::error::credential_field(data, name);
        Ok(AwsCredentials {
            access_key_id: field("access_key_id")?.to_owned(),
            secret_access_key: SecretBytes::new(field("secret_access_key")?.as_bytes().to_vec()),
            session_token: data
                .get("session_token")
                .and_then(Value::as_str)
                .map(|t| SecretBytes::new(t.as_bytes().to_vec())),
        })
    }
}

/// Where the service is and who calls it.
#[derive(Debug)]
pub struct AwsConnection {
    pub region: String,
    /// A compatible service's URL; default `https://secretsmanager.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    pub auth: AwsAuth,
}

/// An AWS Secrets Manager API.
#[derive(Debug)]
pub struct AwsBackend {
    http: reqwest::Client,
    url: Url,
    host: String,
    region: String,
    keyring: Keyring,
}

/// Checks a region name: letters, digits and dashes (it becomes part of a host name).
pub(crate) fn check_region(region: &str) -> Result<(), FederationError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FederationError::Config(format!("region '{region}' is not an AWS region name")))
    }
}

/// The service URL: `endpoint`, or the region's public one; refuses a region that is not a region
/// name and an endpoint that is not a bare http(s) URL.
pub fn service_url(region: &str, endpoint: Option<&str>) -> Result<Url, FederationError> {
    check_region(region)?;
    let raw = endpoint.map_or_else(|| format!("https://{}/", aws_host(SERVICE, region)), str::to_owned);
    crate::rest::bare_url("endpoint", &raw)
}

impl AwsBackend {
    pub fn new(connection: AwsConnection) -> Result<AwsBackend, FederationError> {
        let url = service_url(&connection.region, connection.endpoint.as_deref())?;
        let host = host_of(&url);
        let http = crate::error::http_client()?;
        let keyring =
            Keyring::new(http.clone(), &connection.region, connection.endpoint.as_deref(), connection.auth)?;
        Ok(AwsBackend { http, url, host, region: connection.region, keyring })
    }

    /// One signed call of the JSON protocol; the answer's JSON, or the service's error. Temporary
    /// keys the service refuses are fetched again once.
    pub(crate) async fn call(&self, action: &str, body: &Value) -> Result<Value, FederationError> {
        let body = serde_json::to_vec(body).map_err(|e| FederationError::Config(e.to_string()))?;
        let keys = self.keyring.keys().await?;
        match self.call_as(&keys, action, body.clone()).await {
            // Temporary keys the service no longer takes (not a refusal of the action, which
            // new keys of the same role would meet too).
            Err(Refusal::StaleKeys(_)) if self.keyring.renews() => {
                self.keyring.forget(&keys).await;
                let keys = self.keyring.keys().await?;
                self.call_as(&keys, action, body).await.map_err(Refusal::into_error)
            }
            answer => answer.map_err(Refusal::into_error),
        }
    }

    async fn call_as(&self, keys: &AwsCredentials, action: &str, body: Vec<u8>) -> Result<Value, Refusal> {
        let target = format!("secretsmanager.{action}");
        let request = sign_post(
            self.http.post(self.url.clone()),
            keys,
            (&self.region, SERVICE, &self.host),
            &[("content-type", JSON_1_1), ("x-amz-target", &target)],
            body,
        );
        let response = request.send().await.map_err(|e| Refusal::Other(crate::error::unreachable(e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Refusal::Other(crate::error::unreachable(e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| {
                Refusal::Other(FederationError::Backend {
                    status: status.as_u16(),
                    message: format!("{action} did not answer in the Secrets Manager API's shape"),
                })
            });
        }
        Err(error_of(status, &bytes))
    }
}

/// A failed call: the keys themselves refused (expired, unknown or badly signed), or any other
/// answer.
enum Refusal {
    StaleKeys(FederationError),
    Other(FederationError),
}

impl Refusal {
    fn into_error(self) -> FederationError {
        match self {
            Refusal::StaleKeys(e) | Refusal::Other(e) => e,
        }
    }
}

/// AWS's `{"__type": "…#ResourceNotFoundException", "message": "…"}`, sorted into ours.
fn error_of(status: StatusCode, body: &[u8]) -> Refusal {
    #[derive(Deserialize, Default)]
    struct AwsError {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(alias = "Message", default)]
        message: String,
    }
    let e: AwsError = serde_json::from_slice(body).unwrap_or_default();
    let kind = e.kind.rsplit('#').next().unwrap_or_default();
    let denied = FederationError::Denied { status: status.as_u16() };
    match kind {
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            Refusal::StaleKeys(denied)
        }
        "AccessDeniedException" | "IncompleteSignature" => Refusal::Other(denied),
        "ResourceNotFoundException" => Refusal::Other(FederationError::NotFound(String::new())),
        "" => Refusal::Other(FederationError::Backend {
            status: status.as_u16(),
            message: status.canonical_reason().unwrap_or("error").to_owned(),
        }),
        kind => Refusal::Other(FederationError::Backend {
            status: status.as_u16(),
            message: short(&format!("{kind}: {}", e.message)),
        }),
    }
}

/// `GetSecretValue`'s answer as ScaiVault's data.
fn data_of(answer: &Value) -> Result<Map<String, Value>, FederationError> {
    if let Some(text) = answer.get("SecretString").and_then(Value::as_str) {
        return Ok(crate::rest::data_of_text(text));
    }
    if let Some(b64) = answer.get("SecretBinary").and_then(Value::as_str) {
        return Ok(Map::from_iter([("value_base64".to_owned(), Value::String(b64.to_owned()))]));
    }
    Err(FederationError::Backend { status: 200, message: "GetSecretValue answered no value".into() })
}

fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = v?.as_f64()?;
    DateTime::from_timestamp_micros((secs * 1e6) as i64)
}

impl AwsBackend {
    /// `GetSecretValue` (of `version_id`, or `AWSCURRENT`) with `DescribeSecret`'s tags.
    async fn read_id(
        &self,
        target: &str,
        version_id: Option<&str>,
    ) -> Result<ExternalSecret, FederationError> {
        let id = json!({"SecretId": target});
        let mut get = id.clone();
        if let Some(v) = version_id {
            get["VersionId"] = Value::String(v.to_owned());
        }
        let (value, described) =
            tokio::join!(self.call("GetSecretValue", &get), self.call("DescribeSecret", &id));
        let named = |e: FederationError| match e {
            FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
            other => other,
        };
        let value = value.map_err(named)?;
        // Tags are a courtesy: a role allowed only GetSecretValue (AWS's least privilege) still reads.
        let described = match described {
            Err(FederationError::Denied { .. }) => Value::Null,
            other => other.map_err(named)?,
        };
        let custom: BTreeMap<String, String> = described
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t.get("Key")?.as_str()?.to_owned(), t.get("Value")?.as_str()?.to_owned())))
            .collect();
        Ok(ExternalSecret {
            data: data_of(&value)?,
            custom,
            version: None,
            created_at: time_of(value.get("CreatedDate")),
        })
    }

    /// Every page of a listing call: `key` of each answer's `field` array.
    async fn pages(
        &self,
        action: &str,
        mut body: Value,
        field: &str,
        limit: usize,
    ) -> Result<Vec<Value>, FederationError> {
        // A listing that repeats a token or runs on through empty pages is cut off, as for the
        // other clouds.
        let mut pages = crate::rest::Pages::new(limit, 100);
        let mut token = String::new();
        loop {
            pages.visit(&token)?;
            let answer = self.call(action, &body).await?;
            pages.take(&answer, field)?;
            match answer.get("NextToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    token = next.to_owned();
                    body["NextToken"] = Value::String(token.clone());
                }
                _ => return Ok(pages.into_items()),
            }
        }
    }
}

/// ScaiVault's data as a `SecretString` or `SecretBinary`: the inverse of [`data_of`].
fn value_of(data: &Map<String, Value>) -> (&'static str, Value) {
    if data.len() == 1 {
        if let Some(Value::String(text)) = data.get("value") {
            return ("SecretString", Value::String(text.clone()));
        }
        if let Some(Value::String(b64)) = data.get("value_base64") {
            return ("SecretBinary", Value::String(b64.clone()));
        }
    }
    ("SecretString", Value::String(Value::Object(data.clone()).to_string()))
}

/// A `ClientRequestToken`: 16 random bytes as 32 hex digits (AWS takes 32 to 64 characters).
fn request_token() -> Result<String, FederationError> {
    let bytes = scaivault_crypto::random_bytes(16).map_err(|e| FederationError::Config(e.to_string()))?;
    Ok(crate::hex(&bytes))
}

#[async_trait]
impl Backend for AwsBackend {
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError> {
        if version.is_some() {
            return Err(FederationError::Unsupported(
                "AWS Secrets Manager versions are not numbered: read the current version".into(),
            ));
        }
        self.read_id(target, None).await
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, FederationError> {
        let secrets = self.pages("ListSecrets", json!({"MaxResults": 100}), "SecretList", limit).await?;
        Ok(secrets
            .iter()
            .filter_map(|s| s.get("Name").and_then(Value::as_str))
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Versions by creation time, `AWSCURRENT` last; one only `AWSPENDING` (a rotation under way)
    /// is not yet a value.
    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError> {
        let body = json!({"SecretId": target, "MaxResults": 100});
        let listed =
            self.pages("ListSecretVersionIds", body, "Versions", 1000).await.map_err(|e| match e {
                FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
                other => other,
            })?;
        let stages = |v: &Value| -> Vec<String> {
            v.get("VersionStages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let mut current = None;
        let mut older = Vec::new();
        for v in &listed {
            let Some(id) = v.get("VersionId").and_then(Value::as_str) else { continue };
            let stages = stages(v);
            let version = RemoteVersion { id: id.to_owned(), created_at: time_of(v.get("CreatedDate")) };
            if stages.iter().any(|s| s == "AWSCURRENT") {
                current = Some(version);
            } else if !(stages.len() == 1 && stages[0] == "AWSPENDING") {
                older.push(version);
            }
        }
        let current = current.ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
        older.sort_by_key(|v| v.created_at);
        older.push(current);
        Ok(older)
    }

    async fn read_version(&self, target: &str, id: &str) -> Result<ExternalSecret, FederationError> {
        self.read_id(target, Some(id)).await
    }

    /// `PutSecretValue`, or `CreateSecret` for a name the service does not hold yet.
    async fn write(&self, target: &str, data: &Map<String, Value>) -> Result<RemoteVersion, FederationError> {
        let (field, value) = value_of(data);
        let mut body = json!({"SecretId": target, "ClientRequestToken": request_token()?});
        body[field] = value.clone();
        let answer = match self.call("PutSecretValue", &body).await {
            Err(FederationError::NotFound(_)) => {
                let mut create = json!({"Name": target, "ClientRequestToken": request_token()?});
                create[field] = value;
                self.call("CreateSecret", &create).await?
            }
            other => other?,
        };
        let id = answer.get("VersionId").and_then(Value::as_str).ok_or_else(|| FederationError::Backend {
            status: 200,
            message: "a write answered no VersionId".into(),
        })?;
        Ok(RemoteVersion { id: id.to_owned(), created_at: None })
    }

    async fn check(&self) -> Result<(), FederationError> {
        self.call("ListSecrets", &json!({"MaxResults": 1})).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_contracts_shapes() {
        let d = data_of(&json!({"SecretString": "{\"user\": \"app\", \"port\": 5432}"})).unwrap();
        assert_eq!(Value::Object(d), json!({"user": "app", "port": 5432}));
        let d = data_of(&json!({"SecretString": "plain-text"})).unwrap();
        assert_eq!(Value::Object(d), json!({"value": "plain-text"}));
        let d = data_of(&json!({"SecretString": "[1, 2]"})).unwrap();
        assert_eq!(Value::Object(d), json!({"value": "[1, 2]"}), "only an object is taken apart");
        let d = data_of(&json!({"SecretBinary": "AAEC"})).unwrap();
        assert_eq!(Value::Object(d), json!({"value_base64": "AAEC"}));
        assert!(data_of(&json!({})).is_err());
    }

    #[test]
    fn writes_take_the_inverse_shapes() {
        for stored in [
            json!({"SecretString": "{\"port\":5432,\"user\":\"app\"}"}),
            json!({"SecretString": "plain-text"}),
            json!({"SecretBinary": "AAEC"}),
        ] {
            let data = data_of(&stored).unwrap();
            let (field, value) = value_of(&data);
            assert_eq!(json!({field: value}), stored);
        }
        let (field, value) = value_of(json!({"value": "x", "other": "y"}).as_object().unwrap());
        assert_eq!((field, value), ("SecretString", json!("{\"other\":\"y\",\"value\":\"x\"}")));
    }

    #[test]
    fn errors_are_sorted_by_their_type() {
        let e = |body: &str| error_of(StatusCode::BAD_REQUEST, body.as_bytes()).into_error();
        assert!(matches!(
            e(r#"{"__type":"ResourceNotFoundException","message":"no"}"#),
            FederationError::NotFound(_)
        ));
        assert!(matches!(
            e(r#"{"__type":"com.amazonaws#UnrecognizedClientException","message":"bad key"}"#),
            FederationError::Denied { status: 400 }
        ));
        // Only a refusal of the keys themselves is worth new keys; a refused action is not.
        let stale =
            |body: &str| matches!(error_of(StatusCode::BAD_REQUEST, body.as_bytes()), Refusal::StaleKeys(_));
        assert!(stale(r#"{"__type":"ExpiredTokenException"}"#));
        assert!(stale(r#"{"__type":"UnrecognizedClientException"}"#));
        assert!(!stale(r#"{"__type":"AccessDeniedException"}"#));
        assert!(matches!(
            e(r#"{"__type":"AccessDeniedException"}"#),
            FederationError::Denied { status: 400 }
        ));
        assert_eq!(
            e(r#"{"__type":"InternalServiceError","message":"boom\nsecond"}"#),
            FederationError::Backend { status: 400, message: "InternalServiceError: boom".into() }
        );
        assert_eq!(e("<html>"), FederationError::Backend { status: 400, message: "Bad Request".into() });
    }

    #[test]
    fn service_urls_and_regions() {
        assert_eq!(
            service_url("eu-west-1", None).unwrap().as_str(),
            "https://secretsmanager.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            service_url("us-east-1", Some("http://127.0.0.1:5000")).unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        for (region, endpoint) in [
            ("EU", None),
            ("eu-west-1.evil.com/x", None),
            ("", None),
            ("us-east-1", Some("ftp://h/")),
            ("us-east-1", Some("http://h/path")),
            ("us-east-1", Some("http://u:p@h/")),
        ] {
            assert!(service_url(region, endpoint).is_err(), "{region} {endpoint:?}");
        }
    }

    #[test]
    fn credentials_never_print() {
        let c = AwsCredentials::from_secret(
            json!({"access_key_id": "AKIA1", "secret_access_key": "very-secret"}).as_object().unwrap(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        let e =
            AwsCredentials::from_secret(json!({"access_key_id": "AKIA1"}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("secret_access_key"));
    }
}
