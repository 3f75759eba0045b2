//! HashiCorp Vault and OpenBao, KV version 2 (and version 1 paths, read as they are).
//!
//! A target is a Vault API path below `/v1/`, such as `secret/data/app/db/password`: the mapping
//! decides the mount and the `data/` segment, so any KV mount works. Reads pass `?version=N`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};
use scaivault_crypto::SecretBytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::aws::check_region;
use crate::aws_auth::Keyring;
use crate::env::read_token_file;
use crate::error::{short, unreachable};
use crate::rest::{Bearer, Issued, MetadataService, metadata_get};
use crate::sigv4::{host_of, signed_post_headers};
use crate::{AwsAuth, AwsCredentials, GcpServiceAccount, ServerEnvironment};
use crate::{Backend, ExternalSecret, FederationError, RemoteVersion};

/// How ScaiVault logs in to Vault. (`Debug` prints no secret: `SecretBytes` prints `[redacted]`.)
#[derive(Debug)]
pub enum VaultAuth {
    /// A Vault token, used as it is.
    Token(SecretBytes),
    /// A login at an auth method mounted at `auth/<mount>`: its token is fetched on first use and
    /// again when it nears the end of its lease or is refused.
    Login { mount: String, method: Login },
}

/// What a login presents.
#[derive(Debug)]
pub enum Login {
    /// An AppRole's role id and secret id.
    AppRole { role_id: String, secret_id: SecretBytes },
    /// A Kubernetes service account's token, for a Vault role bound to that account.
    Kubernetes { role: String, jwt: ServiceAccountToken },
    /// An AWS identity (Vault's `iam` type): a signed `sts:GetCallerIdentity` request, which Vault
    /// sends on to STS to learn who signed it; `server_id` is signed along as
    /// `X-Vault-AWS-IAM-Server-ID` when the Vault role requires it.
    Aws { role: String, server_id: Option<String>, keys: Box<AwsLoginKeys> },
    /// A GCP service account: a JWT signed with its key (Vault's `iam` type), or the identity token
    /// the metadata server issues to the server's own account (`gce`).
    Gcp { role: String, signer: GcpLoginSigner },
}

/// The keys that sign an AWS login, and the STS endpoint the request is signed for.
#[derive(Debug)]
pub struct AwsLoginKeys {
    keyring: Keyring,
    region: String,
    sts: Url,
}

impl AwsLoginKeys {
    /// Keys signing for STS in `sts_region` (default `us-east-1`, whose requests go to the global
    /// `https://sts.amazonaws.com/` as AWS's SDKs send them).
    pub fn new(auth: AwsAuth, sts_region: Option<&str>) -> Result<AwsLoginKeys, FederationError> {
        let region = sts_region.unwrap_or("us-east-1");
        check_region(region)?;
        let sts = if region == "us-east-1" {
            "https://sts.amazonaws.com/".to_owned()
        } else {
            format!("https://{}/", crate::aws_auth::aws_host("sts", region))
        };
        Ok(AwsLoginKeys {
            keyring: Keyring::new(crate::error::http_client()?, region, None, auth)?,
            region: region.to_owned(),
            sts: Url::parse(&sts).map_err(|e| FederationError::Config(e.to_string()))?,
        })
    }
}

/// Who signs a GCP login.
#[derive(Debug)]
pub enum GcpLoginSigner {
    /// A service account's key, kept in the credential secret.
    Key(GcpServiceAccount),
    /// The metadata server's identity token URL (the server's own account).
    Metadata(Url),
}

/// Where a Kubernetes service account's token comes from.
#[derive(Debug)]
pub enum ServiceAccountToken {
    /// Kept in the credential secret.
    Given(SecretBytes),
    /// A file, read at each login (Kubernetes rotates the projected tokens it mounts in a pod).
    File(PathBuf),
}

/// Where Kubernetes mounts a pod's own service account token.
const POD_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl ServiceAccountToken {
    /// The token of the pod the server runs in (`SCAIVAULT_KUBERNETES_TOKEN_FILE` in these
    /// variables moves it, for a pod that mounts its token elsewhere).
    pub fn pod(env: &ServerEnvironment) -> ServiceAccountToken {
        ServiceAccountToken::File(PathBuf::from(
            env.get("SCAIVAULT_KUBERNETES_TOKEN_FILE").unwrap_or(POD_TOKEN),
        ))
    }
}

/// Checks an auth mount's path: 1-128 of `A-Z a-z 0-9 - _ .` in `/`-separated segments.
fn check_mount(mount: &str) -> Result<(), FederationError> {
    let ok = !mount.is_empty()
        && mount.len() <= 128
        && mount.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && mount.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FederationError::Config(format!(
            "the credential's mount '{}' is not an auth mount path",
            short(mount)
        )))
    }
}

impl VaultAuth {
    /// The credential from the ScaiVault secret a backend's `credentials_path` names: `{"token"}`
    /// for `token`; `{"role_id", "secret_id"}` for `approle`; `{"role", "jwt"}` for `kubernetes`;
    /// `{"role", "access_key_id", "secret_access_key"}` for `aws`; `{"role"}` and a service
    /// account's key file for `gcp`. With `"use_server_identity": true` instead of the token or
    /// keys, `kubernetes`, `aws` and `gcp` log in as the server itself (its pod's token, its AWS
    /// keys, its GCP account). Login methods take an optional `"mount"` (default: the method's
    /// name). The message names missing fields only.
    pub fn from_secret(auth_method: &str, data: &Map<String, Value>) -> Result<VaultAuth, FederationError> {
        let field = |name: &str| crate::error::credential_field(data, name);
        let mount = || -> Result<String, FederationError> {
            let mount =
                data.get("mount").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(auth_method);
            let mount = mount.trim_matches('/');
            check_mount(mount)?;
            Ok(mount.to_owned())
        };
        let secret = |name: &str| -> Result<SecretBytes, FederationError> {
            Ok(SecretBytes::new(field(name)?.as_bytes().to_vec()))
        };
        let server = VaultAuth::asks_server_identity(auth_method, data);
        // Read only when asked for: the caller allowed the server's identity first.
        let env = || ServerEnvironment::of_process();
        if matches!(auth_method, "token" | "approle")
            && data.get("use_server_identity") == Some(&Value::Bool(true))
        {
            return Err(FederationError::Config(format!(
                "auth_method '{auth_method}' cannot log in as the server's own identity"
            )));
        }
        let own_fields_absent = |names: &[&str]| -> Result<(), FederationError> {
            match names.iter().find(|n| data.contains_key(**n)) {
                Some(n) => Err(FederationError::Config(format!(
                    "the credential asks for the server's own identity and also holds '{n}': one or the other"
                ))),
                None => Ok(()),
            }
        };
        match auth_method {
            "token" => Ok(VaultAuth::Token(secret("token")?)),
            "approle" => Ok(VaultAuth::Login {
                mount: mount()?,
                method: Login::AppRole {
                    role_id: field("role_id")?.to_owned(),
                    secret_id: secret("secret_id")?,
                },
            }),
            "aws" => {
                let auth = if server {
                    own_fields_absent(&["access_key_id", "secret_access_key", "session_token"])?;
                    AwsAuth::ServerIdentity(env())
                } else {
                    AwsAuth::Keys(AwsCredentials::from_secret(data)?)
                };
                let region = data.get("sts_region").and_then(Value::as_str).filter(|r| !r.is_empty());
                Ok(VaultAuth::Login {
                    mount: mount()?,
                    method: Login::Aws {
                        role: field("role")?.to_owned(),
                        server_id: data.get("server_id").and_then(Value::as_str).map(str::to_owned),
                        keys: Box::new(AwsLoginKeys::new(auth, region)?),
                    },
                })
            }
            "gcp" => {
                let signer = if server {
                    own_fields_absent(&["private_key", "client_email"])?;
                    GcpLoginSigner::Metadata(crate::gcp::metadata_url(&env(), "identity")?)
                } else {
                    GcpLoginSigner::Key(GcpServiceAccount::from_secret(data)?)
                };
                Ok(VaultAuth::Login {
                    mount: mount()?,
                    method: Login::Gcp { role: field("role")?.to_owned(), signer },
                })
            }
            "kubernetes" => Ok(VaultAuth::Login {
                mount: mount()?,
                method: Login::Kubernetes {
                    role: field("role")?.to_owned(),
                    jwt: if server {
                        own_fields_absent(&["jwt"])?;
                        ServiceAccountToken::pod(&env())
                    } else {
                        ServiceAccountToken::Given(secret("jwt")?)
                    },
                },
            }),
            other => Err(FederationError::Config(format!(
                "auth_method '{other}' is not one of token, approle, kubernetes, aws, gcp"
            ))),
        }
    }

    /// Whether a credential secret asks to log in as the server's own identity
    /// (`"use_server_identity": true`), which the caller must allow before
    /// [`VaultAuth::from_secret`] looks for that identity.
    pub fn asks_server_identity(auth_method: &str, data: &Map<String, Value>) -> bool {
        matches!(auth_method, "kubernetes" | "aws" | "gcp")
            && data.get("use_server_identity") == Some(&Value::Bool(true))
    }

    /// Whether logging in presents the server's own identity (its pod's service account token,
    /// its AWS keys, its GCP account's identity token) rather than a credential secret's.
    pub fn uses_server_identity(&self) -> bool {
        match self {
            VaultAuth::Login { method: Login::Kubernetes { jwt, .. }, .. } => {
                matches!(jwt, ServiceAccountToken::File(_))
            }
            VaultAuth::Login { method: Login::Aws { keys, .. }, .. } => keys.keyring.is_server_identity(),
            VaultAuth::Login { method: Login::Gcp { signer, .. }, .. } => {
                matches!(signer, GcpLoginSigner::Metadata(_))
            }
            _ => false,
        }
    }
}

/// Where the store is and how to log in.
#[derive(Debug)]
pub struct VaultConnection {
    /// `https://vault.internal:8200` (http is accepted for loopback and test setups).
    pub address: String,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    pub auth: VaultAuth,
    /// PEM certificates of a private CA to trust besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// A Vault or OpenBao server.
#[derive(Debug)]
pub struct VaultBackend {
    http: reqwest::Client,
    base: Url,
    namespace: Option<String>,
    auth: VaultAuth,
    /// The login's token, when to log in again, and the last refused login.
    login: Bearer,
}

impl VaultBackend {
    /// The server's base URL, if `address` can be one: http or https, without user information
    /// or a query.
    pub fn check_address(address: &str) -> Result<Url, FederationError> {
        let base =
            Url::parse(address).map_err(|e| FederationError::Config(format!("address '{address}': {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(FederationError::Config("address must be an http or https URL".into()));
        }
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            return Err(FederationError::Config("address must not carry user information or a query".into()));
        }
        Ok(base)
    }

    pub fn new(connection: VaultConnection) -> Result<VaultBackend, FederationError> {
        let base = VaultBackend::check_address(&connection.address)?;
        let http = crate::error::http_client_trusting(connection.ca_pem.as_deref())?;
        Ok(VaultBackend {
            http,
            base,
            namespace: connection.namespace,
            auth: connection.auth,
            login: Bearer::default(),
        })
    }

    /// `base/v1/<api path>`, each segment of the API path encoded as one URL segment.
    fn url(&self, api_path: &str) -> Url {
        let mut url = self.base.clone();
        {
            // `new` refused URLs that cannot be a base.
            let mut segments = url.path_segments_mut().expect("a base URL");
            segments.pop_if_empty().push("v1");
            segments.extend(api_path.split('/'));
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.namespace {
            Some(ns) if !ns.is_empty() => builder.header("X-Vault-Namespace", ns),
            _ => builder,
        }
    }

    /// The token to send: the configured one, or the AppRole login's (logging in when there is
    /// none, it is near its end, or `refused` is the one cached: a token Vault no longer takes).
    async fn token(&self, refused: Option<&SecretBytes>) -> Result<SecretBytes, FederationError> {
        let (mount, method) = match &self.auth {
            VaultAuth::Token(token) => return Ok(SecretBytes::new(token.expose().to_vec())),
            VaultAuth::Login { mount, method } => (mount, method),
        };
        if let Some(refused) = refused {
            // Unless another request has logged in again already.
            self.login.forget(&String::from_utf8_lossy(refused.expose())).await;
        }
        let token = self
            .login
            .get(|| async {
                let answer = self.log_in(mount, method).await?;
                // Renewed at 80% of the lease; a token without one (`0`) lasts, and is renewed daily.
                let lease = answer.auth.lease_duration;
                Ok(Issued {
                    token: SecretBytes::new(answer.auth.client_token.into_bytes()),
                    expires_in: if lease == 0 { u64::MAX } else { lease },
                })
            })
            .await?;
        Ok(SecretBytes::new(token.into_bytes()))
    }

    /// One login at `auth/<mount>/login`.
    async fn log_in(&self, mount: &str, method: &Login) -> Result<LoginAnswer, FederationError> {
        let (body, name) = self.login_body(method).await?;
        let response = self
            .request(Method::POST, self.url(&format!("auth/{mount}/login")))
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    FederationError::Denied { status: status.as_u16() }
                }
                _ => backend_error(status, response).await,
            });
        }
        response.json().await.map_err(|_| malformed(&format!("the {name} login")))
    }

    /// What a login posts, and the method's name for messages.
    async fn login_body(&self, method: &Login) -> Result<(Value, &'static str), FederationError> {
        let text = |s: &SecretBytes, what: &str| {
            String::from_utf8(s.expose().to_vec())
                .map_err(|_| FederationError::Config(format!("{what} is not UTF-8")))
        };
        Ok(match method {
            Login::AppRole { role_id, secret_id } => (
                serde_json::json!({"role_id": role_id, "secret_id": text(secret_id, "secret_id")?}),
                "AppRole",
            ),
            Login::Kubernetes { role, jwt } => {
                let jwt = match jwt {
                    ServiceAccountToken::Given(jwt) => text(jwt, "jwt")?,
                    ServiceAccountToken::File(path) => {
                        read_token_file(path, "the pod's service account token").await?
                    }
                };
                (serde_json::json!({"role": role, "jwt": jwt.trim()}), "Kubernetes")
            }
            Login::Aws { role, server_id, keys } => {
                (aws_login(role, server_id.as_deref(), keys).await?, "AWS")
            }
            Login::Gcp { role, signer } => {
                let jwt = match signer {
                    GcpLoginSigner::Key(account) => {
                        let now = Utc::now().timestamp();
                        account.sign(&serde_json::json!({
                            "sub": account.client_email,
                            "aud": format!("vault/{role}"),
                            "iat": now,
                            // Vault's GCP method takes at most 15 minutes; less, for clock skew.
                            "exp": now + 600,
                        }))?
                    }
                    GcpLoginSigner::Metadata(url) => {
                        let mut url = url.clone();
                        url.query_pairs_mut()
                            .append_pair("audience", &format!("http://vault/{role}"))
                            .append_pair("format", "full");
                        let token = metadata_get(&self.http, url, MetadataService::Google).await?;
                        String::from_utf8(token)
                            .map_err(|_| malformed("the metadata server's identity token"))?
                    }
                };
                (serde_json::json!({"role": role, "jwt": jwt.trim()}), "GCP")
            }
        })
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        token: &SecretBytes,
    ) -> Result<reqwest::Response, FederationError> {
        let token = std::str::from_utf8(token.expose())
            .map_err(|_| FederationError::Config("the Vault token is not UTF-8".into()))?;
        let mut request = self.request(method, url).header("X-Vault-Token", token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(unreachable)
    }

    /// A call with the token. Vault answers 403 both for a path the token's policy refuses and for
    /// a token it no longer knows; only the second (seen by `lookup-self`) logs an AppRole in again,
    /// once, so calls to a refused path never spend `secret_id` uses.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, FederationError> {
        let mut refused: Option<SecretBytes> = None;
        loop {
            let token = self.token(refused.as_ref()).await?;
            let response = self.send(method.clone(), url.clone(), body, &token).await?;
            if response.status() == StatusCode::FORBIDDEN
                && refused.is_none()
                && matches!(self.auth, VaultAuth::Login { .. })
            {
                let lookup = self.url("auth/token/lookup-self");
                let alive = self.send(Method::GET, lookup, None, &token).await?.status().is_success();
                if !alive {
                    refused = Some(token);
                    continue;
                }
            }
            return Ok(response);
        }
    }

    async fn get(&self, url: Url) -> Result<reqwest::Response, FederationError> {
        self.call(Method::GET, url, None).await
    }

    /// A call's JSON answer; `None` for 404 (and for an empty success, such as KV v1's write).
    async fn json(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, FederationError> {
        let response = self.call(method, url, body).await?;
        let status = response.status();
        match status {
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => response.json().await.map(Some).map_err(|_| malformed("a call")),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(FederationError::Denied { status: status.as_u16() })
            }
            _ => Err(backend_error(status, response).await),
        }
    }
}

/// A KV v2 target `<mount>/data/<name>` as `(mount, name)`; `None` for anything else (KV v1).
fn kv2(target: &str) -> Option<(&str, &str)> {
    let (mount, rest) = target.split_once('/')?;
    let name = rest.strip_prefix("data/").or_else(|| (rest == "data").then_some(""))?;
    Some((mount, name))
}

#[async_trait]
impl Backend for VaultBackend {
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError> {
        let mut url = self.url(target);
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("version", &v.to_string());
        }
        let response = self.get(url).await?;
        let status = response.status();
        match status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(FederationError::NotFound(target.to_owned())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(FederationError::Denied { status: status.as_u16() });
            }
            _ => return Err(backend_error(status, response).await),
        }
        let answer: ReadAnswer = response.json().await.map_err(|_| malformed("a read"))?;
        secret_of(answer, target)
    }

    async fn check(&self) -> Result<(), FederationError> {
        let response = self.get(self.url("auth/token/lookup-self")).await?;
        let status = response.status();
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(FederationError::Denied { status: status.as_u16() })
            }
            _ => Err(backend_error(status, response).await),
        }
    }

    /// KV v2 lists `<mount>/metadata/…`, KV v1 the path itself; folders (`…/`) are walked.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, FederationError> {
        let (list_root, name_root) = match kv2(prefix) {
            Some((mount, name)) => (format!("{mount}/metadata/{name}"), format!("{mount}/data/{name}")),
            None => (prefix.to_owned(), prefix.to_owned()),
        };
        let mut names = Vec::new();
        let mut folders = vec![String::new()];
        // Each folder is listed once, and at most about one per secret the limit allows.
        let mut listed = crate::rest::Pages::new(limit, 1);
        while let Some(folder) = folders.pop() {
            listed.visit(&folder)?;
            let mut url = self.url(format!("{list_root}{folder}").trim_end_matches('/'));
            url.query_pairs_mut().append_pair("list", "true");
            let Some(answer) = self.json(Method::GET, url, None).await? else { continue };
            let keys = answer.pointer("/data/keys").and_then(Value::as_array).cloned().unwrap_or_default();
            for key in keys.iter().filter_map(Value::as_str) {
                // A key is one name below its folder: never empty, never `/`-led, never `.` or
                // `..`. A listing that names itself (`/`) would otherwise be followed for ever.
                let name = key.strip_suffix('/').unwrap_or(key);
                if name.is_empty()
                    || name.starts_with('/')
                    || name.contains("//")
                    || matches!(name, "." | "..")
                {
                    return Err(malformed("a listing key"));
                }
                if key.ends_with('/') {
                    folders.push(format!("{folder}{key}"));
                } else {
                    names.push(format!("{name_root}{folder}{key}"));
                }
                if names.len() + folders.len() > limit {
                    return Err(crate::too_many(limit));
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// KV v2: the versions neither deleted nor destroyed, from the metadata; a secret whose current
    /// version is deleted has none. KV v1: the one value, named by its digest.
    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError> {
        let Some((mount, name)) = kv2(target) else {
            let secret = self.read(target, None).await?;
            return Ok(vec![RemoteVersion { id: crate::digest_of(&secret.data), created_at: None }]);
        };
        let answer = self
            .json(Method::GET, self.url(&format!("{mount}/metadata/{name}")), None)
            .await?
            .ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
        let metadata: KvAllMetadata = serde_json::from_value(answer.get("data").cloned().unwrap_or_default())
            .map_err(|_| malformed("the metadata"))?;
        let mut live: Vec<(u64, RemoteVersion)> = metadata
            .versions
            .iter()
            .filter(|(_, v)| v.deletion_time.is_empty() && !v.destroyed)
            .filter_map(|(n, v)| {
                let n: u64 = n.parse().ok()?;
                (n <= metadata.current_version).then(|| {
                    (n, RemoteVersion { id: n.to_string(), created_at: time_of(v.created_time.as_deref()) })
                })
            })
            .collect();
        live.sort_by_key(|(n, _)| *n);
        if live.last().map(|(n, _)| *n) != Some(metadata.current_version) {
            return Err(FederationError::NotFound(target.to_owned()));
        }
        Ok(live.into_iter().map(|(_, v)| v).collect())
    }

    async fn read_version(&self, target: &str, id: &str) -> Result<ExternalSecret, FederationError> {
        if kv2(target).is_none() {
            return self.read(target, None).await;
        }
        let n = id.parse().map_err(|_| FederationError::NotFound(format!("{target}?version={id}")))?;
        self.read(target, Some(n)).await
    }

    /// KV v2 `POST <mount>/data/<name> {"data": …}`; KV v1 `POST <path> {…}`.
    async fn write(&self, target: &str, data: &Map<String, Value>) -> Result<RemoteVersion, FederationError> {
        let body = match kv2(target) {
            Some(_) => serde_json::json!({ "data": data }),
            None => Value::Object(data.clone()),
        };
        let answer = self.json(Method::POST, self.url(target), Some(&body)).await?;
        if kv2(target).is_none() {
            return Ok(RemoteVersion { id: crate::digest_of(data), created_at: None });
        }
        let answer = answer.ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
        let version =
            answer.pointer("/data/version").and_then(Value::as_u64).ok_or_else(|| malformed("a write"))?;
        Ok(RemoteVersion {
            id: version.to_string(),
            created_at: time_of(answer.pointer("/data/created_time").and_then(Value::as_str)),
        })
    }
}

/// An AWS login's body: `sts:GetCallerIdentity` signed with the keys, in the shape Vault's `iam`
/// login takes (the request's method, URL, body and headers, each base64; the headers a JSON object
/// of canonical names to lists of values).
async fn aws_login(
    role: &str,
    server_id: Option<&str>,
    keys: &AwsLoginKeys,
) -> Result<Value, FederationError> {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
    let mut extra = vec![("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
    if let Some(id) = server_id {
        extra.push(("x-vault-aws-iam-server-id", id));
    }
    let signing = keys.keyring.keys().await?;
    let headers: BTreeMap<String, Vec<String>> =
        signed_post_headers(&signing, (&keys.region, "sts", &host_of(&keys.sts)), &extra, BODY.as_bytes())
            .into_iter()
            .map(|(name, value)| (canonical_header(&name), vec![value]))
            .collect();
    let headers = serde_json::to_vec(&headers).map_err(|e| FederationError::Config(e.to_string()))?;
    Ok(serde_json::json!({
        "role": role,
        "iam_http_request_method": "POST",
        "iam_request_url": b64(keys.sts.as_str().as_bytes()),
        "iam_request_body": b64(BODY.as_bytes()),
        "iam_request_headers": b64(&headers),
    }))
}

/// `x-amz-date` as Go's `http.Header` writes it: `X-Amz-Date`.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[derive(Deserialize)]
struct LoginAnswer {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
}

#[derive(Deserialize)]
struct ReadAnswer {
    data: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
struct KvMetadata {
    version: Option<u64>,
    created_time: Option<String>,
    custom_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

#[derive(Deserialize)]
struct KvAllMetadata {
    current_version: u64,
    #[serde(default)]
    versions: std::collections::BTreeMap<String, KvMetadata>,
}

fn time_of(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// KV v2 answers `{data: {data, metadata}}`; KV v1 answers `{data: {…the fields…}}`.
fn secret_of(answer: ReadAnswer, target: &str) -> Result<ExternalSecret, FederationError> {
    let mut outer = answer.data.ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
    let is_v2 =
        outer.len() == 2 && outer.contains_key("data") && outer.get("metadata").is_some_and(Value::is_object);
    if !is_v2 {
        return Ok(ExternalSecret {
            data: outer,
            custom: Default::default(),
            version: None,
            created_at: None,
        });
    }
    let metadata: KvMetadata = outer
        .remove("metadata")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| malformed("a read's metadata"))?
        .unwrap_or_default();
    // A deleted or destroyed version has no data (Vault also answers 404 for it).
    let Some(Value::Object(data)) = outer.remove("data") else {
        return Err(FederationError::NotFound(target.to_owned()));
    };
    if metadata.destroyed || !metadata.deletion_time.is_empty() {
        return Err(FederationError::NotFound(target.to_owned()));
    }
    let custom = metadata
        .custom_metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    let created_at = time_of(metadata.created_time.as_deref());
    Ok(ExternalSecret { data, custom, version: metadata.version, created_at })
}

fn malformed(what: &str) -> FederationError {
    FederationError::Backend {
        status: 200,
        message: format!("{what} did not answer in the Vault API's shape"),
    }
}

/// Vault's `{"errors": ["…"]}`, first line of the first one; never the body otherwise.
async fn backend_error(status: StatusCode, response: reqwest::Response) -> FederationError {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let message = match response.json::<Errors>().await {
        Ok(e) if !e.errors.is_empty() => short(&e.errors[0]),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    FederationError::Backend { status: status.as_u16(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(v: Value) -> ReadAnswer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn kv2_answers_become_data_custom_metadata_and_version() {
        let s = secret_of(
            answer(json!({"data": {"data": {"password": "p", "port": 5432}, "metadata": {
                "version": 3, "created_time": "2026-11-01T10:00:00.123456Z",
                "custom_metadata": {"owner": "platform"}, "deletion_time": "", "destroyed": false}}})),
            "secret/data/x",
        )
        .unwrap();
        assert_eq!(serde_json::Value::Object(s.data), json!({"password": "p", "port": 5432}));
        assert_eq!(s.custom.get("owner").map(String::as_str), Some("platform"));
        assert_eq!(s.version, Some(3));
        assert_eq!(s.created_at.unwrap().to_rfc3339(), "2026-11-01T10:00:00.123456+00:00");
    }

    #[test]
    fn kv1_answers_are_the_data_itself() {
        let s = secret_of(answer(json!({"data": {"data": "x", "other": 1}})), "kv/x").unwrap();
        assert_eq!(serde_json::Value::Object(s.data), json!({"data": "x", "other": 1}));
        assert_eq!(s.version, None);
    }

    #[test]
    fn deleted_and_destroyed_versions_are_not_found() {
        for metadata in [
            json!({"version": 2, "deletion_time": "2026-11-01T10:00:00Z", "destroyed": false}),
            json!({"version": 2, "deletion_time": "", "destroyed": true}),
        ] {
            let r = secret_of(answer(json!({"data": {"data": null, "metadata": metadata}})), "secret/data/x");
            assert_eq!(r.unwrap_err(), FederationError::NotFound("secret/data/x".into()));
        }
    }

    #[test]
    fn credentials_never_print() {
        let auth = VaultAuth::from_secret(
            "approle",
            json!({"role_id": "r-1", "secret_id": "s3cr3t-id"}).as_object().unwrap(),
        )
        .unwrap();
        assert!(!format!("{auth:?}").contains("s3cr3t-id"));
        let auth =
            VaultAuth::from_secret("token", json!({"token": "hvs.t0ken"}).as_object().unwrap()).unwrap();
        assert!(!format!("{auth:?}").contains("t0ken"));
        let e = VaultAuth::from_secret(
            "approle",
            json!({"role_id": "r-1", "secret": "s3cr3t-id"}).as_object().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("secret_id") && !e.to_string().contains("s3cr3t"), "{e}");
        assert!(VaultAuth::from_secret("kubernetes", &Map::new()).is_err(), "a role is needed");
        assert!(VaultAuth::from_secret("aws", &Map::new()).is_err());
        let auth = VaultAuth::from_secret(
            "kubernetes",
            json!({"role": "reader", "jwt": "eyJ.s3cr3t.sig", "mount": "/k8s-prod/"}).as_object().unwrap(),
        )
        .unwrap();
        let printed = format!("{auth:?}");
        assert!(printed.contains("k8s-prod") && !printed.contains("s3cr3t"), "{printed}");
        assert!(!auth.uses_server_identity());
        assert!(
            VaultAuth::from_secret("kubernetes", json!({"role": "reader"}).as_object().unwrap()).is_err(),
            "no jwt is no credential, not the server's own identity"
        );
        let asks = json!({"role": "reader", "use_server_identity": true});
        assert!(VaultAuth::asks_server_identity("kubernetes", asks.as_object().unwrap()));
        let pod = VaultAuth::from_secret("kubernetes", asks.as_object().unwrap()).unwrap();
        assert!(pod.uses_server_identity(), "the pod's own token");
        for (method, both) in [
            ("kubernetes", json!({"role": "r", "use_server_identity": true, "jwt": "x"})),
            (
                "aws",
                json!({"role": "r", "use_server_identity": true, "access_key_id": "A", "secret_access_key": "s"}),
            ),
            ("gcp", json!({"role": "r", "use_server_identity": true, "private_key": "k"})),
            ("approle", json!({"role_id": "r", "secret_id": "s", "use_server_identity": true})),
        ] {
            assert!(VaultAuth::from_secret(method, both.as_object().unwrap()).is_err(), "{method}: {both}");
        }
        assert!(!VaultAuth::asks_server_identity(
            "approle",
            json!({"use_server_identity": true}).as_object().unwrap()
        ));
        // Half a key pair is refused, not taken for the server's own keys.
        let half = json!({"role": "r", "secret_access_key": "s"});
        assert!(VaultAuth::from_secret("aws", half.as_object().unwrap()).is_err());
        for mount in ["../sys", "a//b", "a b", "x/./y"] {
            let data = json!({"role_id": "r", "secret_id": "s", "mount": mount});
            assert!(VaultAuth::from_secret("approle", data.as_object().unwrap()).is_err(), "{mount}");
        }
    }

    #[test]
    fn urls_encode_each_segment_under_v1() {
        let b = VaultBackend::new(VaultConnection {
            address: "http://127.0.0.1:8200/".into(),
            namespace: None,
            auth: VaultAuth::Token(SecretBytes::new(b"t".to_vec())),
            ca_pem: None,
        })
        .unwrap();
        assert_eq!(b.url("secret/data/app/db").as_str(), "http://127.0.0.1:8200/v1/secret/data/app/db");
        assert_eq!(b.url("secret/data/a?b#c").as_str(), "http://127.0.0.1:8200/v1/secret/data/a%3Fb%23c");
        for bad in ["ftp://h/", "http://u:p@h/", "http://h/?q=1", "not a url", "mailto:a@b"] {
            let r = VaultBackend::new(VaultConnection {
                address: bad.into(),
                namespace: None,
                auth: VaultAuth::Token(SecretBytes::new(b"t".to_vec())),
                ca_pem: None,
            });
            assert!(matches!(r, Err(FederationError::Config(_))), "{bad}");
        }
    }
}
