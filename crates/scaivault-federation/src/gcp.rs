//! GCP Secret Manager (REST API v1), authenticated as a service account: a JWT signed with the
//! account's key (RS256) exchanged at its `token_uri` for an access token, or the account the
//! server runs as (workload identity: a token from the metadata server).
//!
//! A target is a secret id in the backend's project. A version's payload bytes become ScaiVault's
//! `data` as AWS strings do (a JSON object as itself, other text as `{"value"}`, other bytes as
//! `{"value_base64"}`); the secret's labels become `metadata.custom`. Versions are numbered, so
//! `?version=N` reads version N.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use scaivault_crypto::JwtSigningKey;
use serde_json::{Map, Value, json};

use crate::rest::{
    Bearer, Issued, MetadataService, Pages, bytes_of, data_of_bytes, fetch_metadata_token, fetch_token,
};
use crate::{Backend, ExternalSecret, FederationError, RemoteVersion, ServerEnvironment};

const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com/";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const PAGE_SIZE: u32 = 250;
/// The metadata server; `GCE_METADATA_HOST` moves it, as Google's client libraries honour.
const METADATA: &str = "http://metadata.google.internal/";
const METADATA_ENV: &str = "GCE_METADATA_HOST";

/// The metadata server's `…/service-accounts/default/<what>` (`token`, `identity`): the server's
/// own account.
pub(crate) fn metadata_url(env: &ServerEnvironment, what: &str) -> Result<Url, FederationError> {
    env.metadata_base(METADATA_ENV, METADATA)?
        .join(&format!("computeMetadata/v1/instance/service-accounts/default/{what}"))
        .map_err(|e| FederationError::Config(format!("{METADATA_ENV}: {e}")))
}

/// Who the server is to GCP.
#[derive(Debug)]
pub enum GcpAuth {
    /// A service account's key, kept in a ScaiVault secret.
    ServiceAccountKey(GcpServiceAccount),
    /// The service account the server runs as (GKE workload identity, a VM's or Cloud Run's
    /// account), through the metadata server (`GCE_METADATA_HOST` in these variables moves it).
    WorkloadIdentity(ServerEnvironment),
}

/// A service account's key, from the JSON file GCP issues (kept in a ScaiVault secret).
pub struct GcpServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// The RSA private key, parsed once (boxed: it is large).
    key: Box<JwtSigningKey>,
    pub token_uri: Url,
}

impl std::fmt::Debug for GcpServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl GcpServiceAccount {
    /// The credential from the ScaiVault secret a backend's `credentials_path` names: the
    /// service-account key JSON (`client_email`, `private_key` as PEM, `token_uri`, and
    /// `private_key_id`).
    pub fn from_secret(data: &Map<String, Value>) -> Result<GcpServiceAccount, FederationError> {
        let field = |name: &str| crate::error::credential_field(data, name);
        let key = crate::rest::rsa_key_of_pem(field("private_key")?, "private_key")?;
        let token_uri = field("token_uri").unwrap_or("https://oauth2.googleapis.com/token");
        let token_uri = Url::parse(token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                FederationError::Config("the credential's token_uri is not an http(s) URL".into())
            })?;
        Ok(GcpServiceAccount {
            client_email: field("client_email")?.to_owned(),
            private_key_id: data.get("private_key_id").and_then(Value::as_str).map(str::to_owned),
            key: Box::new(key),
            token_uri,
        })
    }

    /// A JWT of `claims`, signed RS256 with the account's key (named by its `kid`).
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, FederationError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid.clone_from(&self.private_key_id);
        self.key
            .sign(&header, claims)
            .map_err(|_| FederationError::Config("signing with the service account's key failed".into()))
    }
}

/// Where the project is and who calls it.
#[derive(Debug)]
pub struct GcpConnection {
    pub project_id: String,
    /// A compatible service's URL; default `https://secretmanager.googleapis.com/`.
    pub endpoint: Option<String>,
    pub auth: GcpAuth,
}

/// A GCP Secret Manager project.
#[derive(Debug)]
pub struct GcpBackend {
    http: reqwest::Client,
    /// `…/v1/projects/<project>/`
    base: Url,
    signer: Signer,
    bearer: Bearer,
    /// When each version read so far was added (`None`: its metadata could not be read), by
    /// `<secret>/versions/<n>`: it never changes, and metadata reads count against Secret Manager's small
    /// read quota.
    created: std::sync::Mutex<std::collections::HashMap<String, Option<DateTime<Utc>>>>,
}

/// Versions whose creation time is remembered at most.
const CREATED_KEPT: usize = 10_000;

/// Where the access token comes from.
#[derive(Debug)]
enum Signer {
    /// A JWT signed with the account's key, exchanged at its `token_uri`.
    Key(GcpServiceAccount),
    /// The metadata server's token URL (workload identity).
    Metadata(Url),
}

/// Checks a project id: 6-30 of lowercase letters, digits and dashes (GCP's rule, loosened to
/// 1-63 for project numbers and test projects).
pub fn check_project_id(project: &str) -> Result<(), FederationError> {
    let ok = !project.is_empty()
        && project.len() <= 63
        && project.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(FederationError::Config(format!("'{project}' is not a GCP project id"))) }
}

/// The API's base URL for a project: `endpoint` (a bare http(s) URL) or Google's.
pub fn gcp_base_url(project: &str, endpoint: Option<&str>) -> Result<Url, FederationError> {
    check_project_id(project)?;
    let raw = endpoint.unwrap_or(DEFAULT_ENDPOINT);
    let url = crate::rest::bare_url("endpoint", raw)?;
    url.join(&format!("v1/projects/{project}/"))
        .map_err(|e| FederationError::Config(format!("endpoint '{raw}': {e}")))
}

/// Where the server's own workload identity may be presented: Google's Secret Manager (no
/// `endpoint`), or this machine if `loopback` allows it. Its token would otherwise go to whatever
/// address a backend's configuration names.
pub fn check_workload_identity_endpoint(
    endpoint: Option<&str>,
    loopback: bool,
) -> Result<(), FederationError> {
    crate::rest::own_service_only(
        endpoint,
        loopback,
        "the server's workload identity is presented only to Google's Secret Manager",
    )
}

impl GcpBackend {
    pub fn new(connection: GcpConnection) -> Result<GcpBackend, FederationError> {
        let base = gcp_base_url(&connection.project_id, connection.endpoint.as_deref())?;
        let signer = match connection.auth {
            GcpAuth::ServiceAccountKey(account) => Signer::Key(account),
            GcpAuth::WorkloadIdentity(env) => {
                check_workload_identity_endpoint(connection.endpoint.as_deref(), env.loopback())?;
                Signer::Metadata(metadata_url(&env, "token")?)
            }
        };
        Ok(GcpBackend {
            http: crate::error::http_client()?,
            base,
            signer,
            bearer: Bearer::default(),
            created: Default::default(),
        })
    }

    /// The signed assertion exchanged for an access token.
    async fn token(&self) -> Result<Issued, FederationError> {
        let account = match &self.signer {
            Signer::Key(account) => account,
            Signer::Metadata(url) => {
                return fetch_metadata_token(&self.http, url.clone(), MetadataService::Google).await;
            }
        };
        let now = Utc::now().timestamp();
        let assertion = account.sign(&json!({
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": account.token_uri.as_str(),
            "iat": now,
            "exp": now + 3600,
        }))?;
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
        fetch_token(&self.http, account.token_uri.clone(), &form).await
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, FederationError> {
        let mut url = self.base.join(path).map_err(|e| FederationError::Config(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value, FederationError> {
        crate::rest::call(&self.http, &self.bearer, || self.token(), method, url, body).await
    }

    /// A secret id as one URL path segment: GCP's ids are `[A-Za-z0-9_-]`, anything else is
    /// refused before it is sent.
    fn secret(target: &str) -> Result<&str, FederationError> {
        if !target.is_empty()
            && target.len() <= 255
            && target.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            Ok(target)
        } else {
            Err(FederationError::NotFound(target.to_owned()))
        }
    }

    /// `versions/<v>:access`, with the secret's labels and, for a proxied read (`with_time`), the
    /// version's creation time.
    async fn access(
        &self,
        target: &str,
        version: &str,
        with_time: bool,
    ) -> Result<ExternalSecret, FederationError> {
        let secret = Self::secret(target)?;
        let named = |e: FederationError| match e {
            FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
            other => other,
        };
        let access = self.url(&format!("secrets/{secret}/versions/{version}:access"), &[])?;
        let meta = self.url(&format!("secrets/{secret}"), &[])?;
        let (value, described) =
            tokio::join!(self.call(Method::GET, access, None), self.call(Method::GET, meta, None));
        let value = value.map_err(named)?;
        // Labels are a courtesy: an accessor-only role still reads.
        let described = match described {
            Err(FederationError::Denied { .. }) => Value::Null,
            other => other.map_err(named)?,
        };
        let payload = value
            .pointer("/payload/data")
            .and_then(Value::as_str)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| FederationError::Backend {
                status: 200,
                message: "the version has no payload".into(),
            })?;
        let custom: BTreeMap<String, String> = described
            .get("labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let number = value.get("name").and_then(Value::as_str).and_then(version_number);
        let created_at = match number {
            Some(n) if with_time => self.created_at(secret, n).await,
            _ => None,
        };
        Ok(ExternalSecret { data: data_of_bytes(&payload), custom, version: number, created_at })
    }

    /// When version `n` of `secret` was added: remembered, else read once from its metadata. Any
    /// failure leaves it unknown: the value is already read.
    async fn created_at(&self, secret: &str, n: u64) -> Option<DateTime<Utc>> {
        let name = format!("{secret}/versions/{n}");
        if let Some(known) = self.created.lock().expect("created lock").get(&name) {
            return *known;
        }
        let url = self.url(&format!("secrets/{name}"), &[]).ok()?;
        let created = match self.call(Method::GET, url, None).await {
            Ok(meta) => time_of(meta.get("createTime")),
            // The role may access versions but not read their metadata (403), or the version went
            // meanwhile: remembered as unknown, so the quota is not spent on it again.
            Err(FederationError::Denied { status: 403 } | FederationError::NotFound(_)) => None,
            // Throttled, down, or a refused (or held back) sign-in: asked again next time.
            Err(_) => return None,
        };
        let mut kept = self.created.lock().expect("created lock");
        if kept.len() >= CREATED_KEPT {
            kept.clear();
        }
        kept.insert(name, created);
        created
    }

    /// Every page of a listing: the `field` array of each answer, at most `limit` items; a
    /// listing that repeats a page token or runs past `limit / PAGE_SIZE + 100` pages is cut off.
    async fn pages(
        &self,
        path: &str,
        field: &str,
        filter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, FederationError> {
        let mut pages = Pages::new(limit, PAGE_SIZE as usize);
        let mut token = String::new();
        let size = PAGE_SIZE.to_string();
        loop {
            pages.visit(&token)?;
            let mut query = vec![("pageSize", size.as_str())];
            if let Some(filter) = filter {
                query.push(("filter", filter));
            }
            if !token.is_empty() {
                query.push(("pageToken", token.as_str()));
            }
            let answer = self.call(Method::GET, self.url(path, &query)?, None).await?;
            pages.take(&answer, field)?;
            match answer.get("nextPageToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => token = next.to_owned(),
                _ => return Ok(pages.into_items()),
            }
        }
    }
}

/// `projects/…/secrets/…/versions/7` → 7.
fn version_number(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.parse().ok()
}

fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

#[async_trait]
impl Backend for GcpBackend {
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError> {
        if let Some(v) = version {
            return self.access(target, &v.to_string(), true).await;
        }
        match self.access(target, "latest", true).await {
            // `latest` is the newest version in any state; when that one is disabled or
            // destroyed, the current value is the newest enabled one, as a sync takes it.
            Err(FederationError::NotFound(_)) => {
                let newest = self
                    .versions(target)
                    .await?
                    .pop()
                    .ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
                self.access(target, &newest.id, true).await
            }
            other => other,
        }
    }

    async fn check(&self) -> Result<(), FederationError> {
        let url = self.url("secrets", &[("pageSize", "1")])?;
        self.call(Method::GET, url, None).await.map(|_| ())
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, FederationError> {
        // Names outside the prefix do not count towards `limit`.
        let secrets = self.pages("secrets", "secrets", None, limit.saturating_mul(10)).await?;
        let mut names: Vec<String> = secrets
            .iter()
            .filter_map(|s| s.get("name")?.as_str()?.rsplit('/').next().map(str::to_owned))
            .filter(|n| n.starts_with(prefix))
            .collect();
        if names.len() > limit {
            return Err(crate::too_many(limit));
        }
        names.sort();
        Ok(names)
    }

    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError> {
        let secret = Self::secret(target)?;
        // Only enabled versions are values; destroyed ones stay listed for ever.
        let path = format!("secrets/{secret}/versions");
        let listed =
            self.pages(&path, "versions", Some("state:ENABLED"), 10_000).await.map_err(|e| match e {
                FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
                FederationError::Unsupported(_) => FederationError::Unsupported(format!(
                    "'{target}' has more than 10000 enabled versions to list"
                )),
                other => other,
            })?;
        let mut versions: Vec<(u64, RemoteVersion)> = listed
            .iter()
            .filter(|v| v.get("state").and_then(Value::as_str) == Some("ENABLED"))
            .filter_map(|v| {
                let n = version_number(v.get("name")?.as_str()?)?;
                Some((n, RemoteVersion { id: n.to_string(), created_at: time_of(v.get("createTime")) }))
            })
            .collect();
        versions.sort_by_key(|(n, _)| *n);
        if versions.is_empty() {
            return Err(FederationError::NotFound(target.to_owned()));
        }
        Ok(versions.into_iter().map(|(_, v)| v).collect())
    }

    async fn read_version(&self, target: &str, id: &str) -> Result<ExternalSecret, FederationError> {
        let n: u64 = id.parse().map_err(|_| FederationError::NotFound(target.to_owned()))?;
        // A sync has the creation time from the version list.
        self.access(target, &n.to_string(), false).await
    }

    /// `:addVersion`, creating the secret (automatic replication) when it does not exist.
    async fn write(&self, target: &str, data: &Map<String, Value>) -> Result<RemoteVersion, FederationError> {
        let secret = Self::secret(target)?;
        let body = json!({"payload": {"data": STANDARD.encode(bytes_of(data))}});
        let add = self.url(&format!("secrets/{secret}:addVersion"), &[])?;
        let added = match self.call(Method::POST, add.clone(), Some(&body)).await {
            Err(FederationError::NotFound(_)) => {
                let create = self.url("secrets", &[("secretId", secret)])?;
                let spec = json!({"replication": {"automatic": {}}});
                match self.call(Method::POST, create, Some(&spec)).await {
                    // Created by someone else since: add the version all the same.
                    Ok(_) | Err(FederationError::Backend { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                self.call(Method::POST, add, Some(&body)).await?
            }
            other => other?,
        };
        let n = added.get("name").and_then(Value::as_str).and_then(version_number).ok_or_else(|| {
            FederationError::Backend { status: 200, message: "addVersion answered no version".into() }
        })?;
        Ok(RemoteVersion { id: n.to_string(), created_at: time_of(added.get("createTime")) })
    }
}
