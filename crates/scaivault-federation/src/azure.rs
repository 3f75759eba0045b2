//! Azure Key Vault secrets (REST API 7.4), authenticated as an application with a client secret
//! (OAuth 2.0 client credentials at Microsoft Entra ID).
//!
//! A target is a secret name (`[0-9A-Za-z-]`, no `/`). Its value becomes ScaiVault's `data` as AWS
//! strings do (a JSON object as itself, any other text as `{"value"}`); its tags become
//! `metadata.custom`. Versions are opaque ids, so a proxied read answers the current one only.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use scaivault_crypto::SecretBytes;
use serde_json::{Map, Value, json};

use crate::rest::{Bearer, Issued, data_of_text, fetch_token, text_of};
use crate::{Backend, ExternalSecret, FederationError, RemoteVersion};

const API_VERSION: &str = "7.4";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
const SCOPE: &str = "https://vault.azure.net/.default";

/// An application's client id and secret.
pub struct AzureClientSecret {
    pub client_id: String,
    pub client_secret: SecretBytes,
}

impl std::fmt::Debug for AzureClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClientSecret")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

impl AzureClientSecret {
    /// The credential from the ScaiVault secret a backend's `credentials_path` names:
    /// `{"client_id", "client_secret"}`.
    pub fn from_secret(data: &Map<String, Value>) -> Result<AzureClientSecret, FederationError> {
        let field = |name: &str| crate::error::credential_field(data, name);
        Ok(AzureClientSecret {
            client_id: field("client_id")?.to_owned(),
            client_secret: SecretBytes::new(field("client_secret")?.as_bytes().to_vec()),
        })
    }
}

/// Where the vault is and who calls it.
#[derive(Debug)]
pub struct AzureConnection {
    /// `https://<name>.vault.azure.net`
    pub vault_url: String,
    /// The directory (tenant) the application belongs to.
    pub tenant_id: String,
    /// Another cloud's sign-in host; default `https://login.microsoftonline.com/`.
    pub authority_host: Option<String>,
    pub credentials: AzureClientSecret,
}

/// An Azure Key Vault.
#[derive(Debug)]
pub struct AzureBackend {
    http: reqwest::Client,
    vault: Url,
    token_url: Url,
    credentials: AzureClientSecret,
    bearer: Bearer,
}

/// Checks a tenant id: a GUID or a domain name (letters, digits, `-` and `.`).
fn check_tenant(tenant: &str) -> Result<(), FederationError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 128
        && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FederationError::Config(format!("tenant_id '{tenant}' is not a directory id")))
    }
}

/// The vault's URL and the token endpoint, checked: both bare http(s) URLs.
pub fn azure_urls(
    vault_url: &str,
    tenant_id: &str,
    authority_host: Option<&str>,
) -> Result<(Url, Url), FederationError> {
    check_tenant(tenant_id)?;
    let vault = crate::rest::bare_url("vault_url", vault_url)?;
    let authority = crate::rest::bare_url("authority_host", authority_host.unwrap_or(DEFAULT_AUTHORITY))?;
    let token = authority
        .join(&format!("{tenant_id}/oauth2/v2.0/token"))
        .map_err(|e| FederationError::Config(format!("authority_host: {e}")))?;
    Ok((vault, token))
}

impl AzureBackend {
    pub fn new(connection: AzureConnection) -> Result<AzureBackend, FederationError> {
        let (vault, token_url) =
            azure_urls(&connection.vault_url, &connection.tenant_id, connection.authority_host.as_deref())?;
        Ok(AzureBackend {
            http: crate::error::http_client()?,
            vault,
            token_url,
            credentials: connection.credentials,
            bearer: Bearer::default(),
        })
    }

    async fn token(&self) -> Result<Issued, FederationError> {
        let secret = String::from_utf8_lossy(self.credentials.client_secret.expose()).into_owned();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", SCOPE),
        ];
        fetch_token(&self.http, self.token_url.clone(), &form).await
    }

    /// `<vault>/secrets/<segments…>?api-version=7.4`; a name outside Azure's alphabet is not found.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, FederationError> {
        let mut url = self.vault.clone();
        {
            let mut path =
                url.path_segments_mut().map_err(|()| FederationError::Config("vault_url".into()))?;
            path.pop_if_empty().push("secrets");
            for s in segments {
                if s.is_empty() || s.len() > 127 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(FederationError::NotFound((*s).to_owned()));
                }
                path.push(s);
            }
        }
        url.query_pairs_mut().append_pair("api-version", API_VERSION).extend_pairs(query);
        Ok(url)
    }

    async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value, FederationError> {
        crate::rest::call(&self.http, &self.bearer, || self.token(), method, url, body).await
    }

    /// Every page of a listing (`value`, then `nextLink`, which must stay on the vault).
    async fn pages(&self, first: Url, limit: usize) -> Result<Vec<Value>, FederationError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let answer = self.call(Method::GET, url, None).await?;
            out.extend(answer.get("value").and_then(Value::as_array).into_iter().flatten().cloned());
            if out.len() > limit {
                return Err(crate::too_many(limit));
            }
            if let Some(link) = answer.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) {
                let link = Url::parse(link).map_err(|_| bad_link())?;
                if link.origin() != self.vault.origin() {
                    return Err(bad_link());
                }
                next = Some(link);
            }
        }
        Ok(out)
    }

    async fn get(&self, target: &str, version: Option<&str>) -> Result<ExternalSecret, FederationError> {
        let mut segments = vec![target];
        segments.extend(version);
        let answer = self.call(Method::GET, self.url(&segments, &[])?, None).await.map_err(|e| match e {
            FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
            other => other,
        })?;
        secret_of(&answer)
    }
}

fn bad_link() -> FederationError {
    FederationError::Backend { status: 200, message: "the listing's nextLink leaves the vault".into() }
}

/// A secret bundle as ScaiVault's secret.
fn secret_of(answer: &Value) -> Result<ExternalSecret, FederationError> {
    let value = answer
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| FederationError::Backend { status: 200, message: "the secret has no value".into() })?;
    let custom: BTreeMap<String, String> = answer
        .get("tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    Ok(ExternalSecret {
        data: data_of_text(value),
        custom,
        version: None,
        created_at: time_of(answer.pointer("/attributes/created")),
    })
}

/// The version id at the end of a secret id (`https://…/secrets/<name>/<version>`).
fn version_of(answer: &Value) -> Option<String> {
    let id = answer.get("id")?.as_str()?;
    let last = id.rsplit('/').next()?;
    (!last.is_empty()).then(|| last.to_owned())
}

fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(v?.as_i64()?, 0)
}

#[async_trait]
impl Backend for AzureBackend {
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError> {
        if version.is_some() {
            return Err(FederationError::Unsupported(
                "Azure Key Vault versions are not numbered: read the current version".into(),
            ));
        }
        self.get(target, None).await
    }

    async fn check(&self) -> Result<(), FederationError> {
        self.call(Method::GET, self.url(&[], &[("maxresults", "1")])?, None).await.map(|_| ())
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, FederationError> {
        let listed = self.pages(self.url(&[], &[("maxresults", "25")])?, limit).await?;
        let mut names: Vec<String> = listed
            .iter()
            .filter(|s| s.pointer("/attributes/enabled").and_then(Value::as_bool) != Some(false))
            .filter_map(|s| s.get("id")?.as_str()?.rsplit('/').next().map(str::to_owned))
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Enabled versions by creation time, with the one the vault serves as current last.
    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError> {
        let current = self.call(Method::GET, self.url(&[target], &[])?, None).await;
        let current = current.map_err(|e| match e {
            FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
            other => other,
        })?;
        let current_id = version_of(&current).ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
        let listed = self.pages(self.url(&[target, "versions"], &[("maxresults", "25")])?, 1000).await?;
        let mut versions: Vec<RemoteVersion> = listed
            .iter()
            .filter(|v| v.pointer("/attributes/enabled").and_then(Value::as_bool) != Some(false))
            .filter_map(|v| {
                let id = version_of(v)?;
                (id != current_id)
                    .then(|| RemoteVersion { id, created_at: time_of(v.pointer("/attributes/created")) })
            })
            .collect();
        versions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        versions.push(RemoteVersion {
            id: current_id,
            created_at: time_of(current.pointer("/attributes/created")),
        });
        Ok(versions)
    }

    async fn read_version(&self, target: &str, id: &str) -> Result<ExternalSecret, FederationError> {
        self.get(target, Some(id)).await
    }

    /// `PUT` of the value as text: a new version, creating the secret if need be.
    async fn write(&self, target: &str, data: &Map<String, Value>) -> Result<RemoteVersion, FederationError> {
        let body = json!({"value": text_of(data)});
        let answer = self.call(Method::PUT, self.url(&[target], &[])?, Some(&body)).await?;
        let id = version_of(&answer).ok_or_else(|| FederationError::Backend {
            status: 200,
            message: "the write answered no version".into(),
        })?;
        Ok(RemoteVersion { id, created_at: time_of(answer.pointer("/attributes/created")) })
    }
}
