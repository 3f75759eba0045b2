//! Azure Key Vault secrets (REST API 7.4), authenticated as an application with a client secret or
//! a certificate (OAuth 2.0 client credentials at Microsoft Entra ID; a certificate signs a client
//! assertion) or as the managed identity the server runs as (a token from the instance metadata
//! service).
//!
//! A target is a secret name (`[0-9A-Za-z-]`, no `/`). Its value becomes ScaiVault's `data` as AWS
//! strings do (a JSON object as itself, any other text as `{"value"}`); its tags become
//! `metadata.custom`. Versions are opaque ids, so a proxied read answers the current one only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use scaivault_crypto::{JwtSigningKey, SecretBytes, random_id, sha1_thumbprint};
use serde_json::{Map, Value, json};

use crate::env::read_token_file;
use crate::rest::{
    Bearer, Issued, MetadataService, Pages, data_of_text, fetch_metadata_token, fetch_token, text_of,
};
use crate::{Backend, ExternalSecret, FederationError, RemoteVersion, ServerEnvironment};

const API_VERSION: &str = "7.4";
/// How many versions of one secret are listed at most (Azure keeps every version until the secret
/// is purged); a sync pulls the newest 100 of them.
const MAX_LISTED_VERSIONS: usize = 10_000;
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// Key Vault's resource in Azure's public cloud; a vault of another cloud
/// (`<name>.vault.azure.cn`, `<name>.vault.usgovcloudapi.net`) names its own.
const RESOURCE: &str = "https://vault.azure.net";
/// The instance metadata service; `AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it, as Azure's SDKs
/// honour.
const IMDS: &str = "http://169.254.169.254/";
const IMDS_ENV: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";

/// How the server signs in to Entra ID.
#[derive(Debug)]
pub enum AzureCredential {
    /// An application's client id and secret, kept in a ScaiVault secret.
    ClientSecret(AzureClientSecret),
    /// An application's client id and certificate (with its private key), kept in a ScaiVault
    /// secret.
    Certificate(AzureClientCertificate),
    /// The identity the server runs as, found as Azure's SDKs find it: AKS workload identity (a
    /// federated token file, `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_CLIENT_ID`), else the
    /// instance metadata service's managed identity (user-assigned when `AZURE_CLIENT_ID` names
    /// one, else system-assigned).
    ManagedIdentity(ServerEnvironment),
}

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

/// An application's certificate credential: the certificate's thumbprint and its RSA private key,
/// which signs the client assertions exchanged for tokens.
pub struct AzureClientCertificate {
    pub client_id: String,
    /// `x5t`: base64url of the SHA-1 of the certificate's DER, by which Entra ID finds it.
    thumbprint: String,
    /// Parsed once (boxed: it is large).
    key: Box<JwtSigningKey>,
}

impl std::fmt::Debug for AzureClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClientCertificate")
            .field("client_id", &self.client_id)
            .field("thumbprint", &self.thumbprint)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl AzureClientCertificate {
    /// The credential from the ScaiVault secret a backend's `credentials_path` names:
    /// `{"client_id", "certificate"}`, the certificate's PEM followed by its private key's (as
    /// `az ad sp create-for-rbac --create-cert` writes them), or the key apart in `"private_key"`.
    pub fn from_secret(data: &Map<String, Value>) -> Result<AzureClientCertificate, FederationError> {
        let field = |name: &str| crate::error::credential_field(data, name);
        let pem = field("certificate")?;
        let certificate =
            CertificateDer::pem_slice_iter(pem.as_bytes()).next().and_then(Result::ok).ok_or_else(|| {
                FederationError::Config("the credential's certificate holds no PEM certificate".into())
            })?;
        let (key_pem, what) = match data.get("private_key").and_then(Value::as_str).filter(|k| !k.is_empty())
        {
            Some(key) => (key, "private_key"),
            None => (pem, "certificate"),
        };
        Ok(AzureClientCertificate {
            client_id: field("client_id")?.to_owned(),
            thumbprint: URL_SAFE_NO_PAD.encode(sha1_thumbprint(&certificate)),
            key: Box::new(crate::rest::rsa_key_of_pem(key_pem, what)?),
        })
    }

    /// A client assertion for `token_url` (RFC 7523, as Entra ID takes it: RS256 with `x5t`, valid
    /// ten minutes).
    fn assertion(&self, token_url: &Url) -> Result<String, FederationError> {
        let now = Utc::now().timestamp();
        let jti =
            random_id("").map_err(|_| FederationError::Config("no randomness for the assertion".into()))?;
        let claims = json!({
            "aud": token_url.as_str(),
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(self.thumbprint.clone());
        self.key
            .sign(&header, &claims)
            .map_err(|_| FederationError::Config("signing the client assertion failed".into()))
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
    pub credentials: AzureCredential,
}

/// An Azure Key Vault.
#[derive(Debug)]
pub struct AzureBackend {
    http: reqwest::Client,
    vault: Url,
    /// Entra ID's token endpoint, or the metadata service's for a managed identity.
    token_url: Url,
    proof: Proof,
    bearer: Bearer,
}

/// What the token request presents.
#[derive(Debug)]
enum Proof {
    Secret(AzureClientSecret),
    Certificate(AzureClientCertificate),
    /// AKS workload identity: the federated token Kubernetes writes (and rotates) in this file,
    /// for the application `client_id`.
    Federated {
        client_id: String,
        token_file: PathBuf,
    },
    /// The instance metadata service (its token URL carries the identity).
    Metadata,
}

/// Checks a tenant id: a GUID or a domain name (letters, digits, `-` and `.`).
fn check_tenant(tenant: &str) -> Result<(), FederationError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 128
        && tenant.split('.').all(|label| !label.is_empty())
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

/// Key Vault's DNS suffixes in Azure's clouds (public, China, US Government, Germany).
const VAULT_SUFFIXES: [&str; 4] =
    [".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de"];

/// Where the server's own managed identity may be presented: an https Key Vault of one of Azure's
/// clouds, or this machine if `loopback` allows it. Its token would otherwise go to whatever
/// address a backend's configuration names.
pub fn check_managed_identity_vault(vault_url: &str, loopback: bool) -> Result<(), FederationError> {
    let url = crate::rest::bare_url("vault_url", vault_url)?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let azure = url.scheme() == "https" && VAULT_SUFFIXES.iter().any(|s| host.ends_with(s));
    if azure || (loopback && crate::rest::is_loopback(&url)) {
        Ok(())
    } else {
        Err(FederationError::Config(format!(
            "vault_url: the server's managed identity is presented only to https://<name>{} (or another Azure cloud's vault){}",
            VAULT_SUFFIXES[0],
            crate::rest::loopback_hint(loopback)
        )))
    }
}

/// Where the server's own identity signs in, as Azure's SDKs find it: AKS workload identity (the
/// federated token file's assertion at Entra ID), else the instance metadata service (for the
/// user-assigned identity `AZURE_CLIENT_ID` names, or the system-assigned one).
fn managed_identity(
    env: &ServerEnvironment,
    vault: &Url,
    tenant: &str,
) -> Result<(Url, Proof), FederationError> {
    let client_id = env.get("AZURE_CLIENT_ID");
    if let Some(file) = env.get("AZURE_FEDERATED_TOKEN_FILE") {
        // Falling back to the metadata service would sign in as the node, not the pod.
        let client_id = client_id.ok_or_else(|| {
            FederationError::Config(
                "AZURE_FEDERATED_TOKEN_FILE is set without AZURE_CLIENT_ID (the workload identity's \
                 service account lacks its client-id annotation)"
                    .into(),
            )
        })?;
        // Entra ID of the operator's cloud (the workload identity webhook sets it).
        let authority = env.get("AZURE_AUTHORITY_HOST").unwrap_or(DEFAULT_AUTHORITY);
        let token_url = azure_urls(vault.as_str(), tenant, Some(authority))?.1;
        return Ok((
            token_url,
            Proof::Federated { client_id: client_id.to_owned(), token_file: PathBuf::from(file) },
        ));
    }
    let mut token_url = env
        .metadata_base(IMDS_ENV, IMDS)?
        .join("metadata/identity/oauth2/token")
        .map_err(|e| FederationError::Config(format!("{IMDS_ENV}: {e}")))?;
    {
        let mut query = token_url.query_pairs_mut();
        query.append_pair("api-version", "2018-02-01").append_pair("resource", &resource_of(vault));
        if let Some(id) = client_id {
            query.append_pair("client_id", id);
        }
    }
    Ok((token_url, Proof::Metadata))
}

impl AzureBackend {
    pub fn new(connection: AzureConnection) -> Result<AzureBackend, FederationError> {
        let (vault, mut token_url) =
            azure_urls(&connection.vault_url, &connection.tenant_id, connection.authority_host.as_deref())?;
        let proof = match connection.credentials {
            AzureCredential::ClientSecret(c) => Proof::Secret(c),
            AzureCredential::Certificate(c) => Proof::Certificate(c),
            AzureCredential::ManagedIdentity(env) => {
                check_managed_identity_vault(&connection.vault_url, env.loopback())?;
                let (url, proof) = managed_identity(&env, &vault, &connection.tenant_id)?;
                token_url = url;
                proof
            }
        };
        Ok(AzureBackend {
            http: crate::error::http_client()?,
            vault,
            token_url,
            proof,
            bearer: Bearer::default(),
        })
    }

    async fn token(&self) -> Result<Issued, FederationError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", format!("{}/.default", resource_of(&self.vault))),
        ];
        let assertion = |form: &mut Vec<(&str, String)>, client_id: &str, assertion: String| {
            form.push(("client_id", client_id.to_owned()));
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion", assertion));
        };
        match &self.proof {
            Proof::Metadata => {
                return fetch_metadata_token(&self.http, self.token_url.clone(), MetadataService::Azure)
                    .await;
            }
            Proof::Secret(c) => {
                form.push(("client_id", c.client_id.clone()));
                form.push(("client_secret", String::from_utf8_lossy(c.client_secret.expose()).into_owned()));
            }
            Proof::Certificate(c) => assertion(&mut form, &c.client_id, c.assertion(&self.token_url)?),
            Proof::Federated { client_id, token_file } => {
                let token = read_token_file(token_file, "AZURE_FEDERATED_TOKEN_FILE").await?;
                assertion(&mut form, client_id, token);
            }
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(name, value)| (*name, value.as_str())).collect();
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

    /// Every page of a listing (`value`, then `nextLink`, which must stay on the vault), at most
    /// `limit` items; a listing that repeats a link or runs past `limit / 25 + 100` pages (the
    /// vault may answer empty pages that still link on) is cut off as an error.
    async fn pages(&self, first: Url, limit: usize) -> Result<Vec<Value>, FederationError> {
        let mut pages = Pages::new(limit, 25);
        let mut next = Some(first);
        while let Some(url) = next.take() {
            pages.visit(url.as_str())?;
            let answer = self.call(Method::GET, url, None).await?;
            pages.take(&answer, "value")?;
            if let Some(link) = answer.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) {
                let link = Url::parse(link).map_err(|_| bad_link())?;
                if link.origin() != self.vault.origin() {
                    return Err(bad_link());
                }
                next = Some(link);
            }
        }
        Ok(pages.into_items())
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

/// The resource a token must be for: `https://vault.<cloud suffix>` from a vault URL
/// `https://<name>.vault.<cloud suffix>`, else the public cloud's.
fn resource_of(vault: &Url) -> String {
    match vault.host_str().and_then(|h| h.split_once(".vault.")) {
        Some((name, suffix)) if !name.is_empty() && !name.contains('.') && suffix.contains('.') => {
            format!("https://vault.{suffix}")
        }
        _ => RESOURCE.to_owned(),
    }
}

fn too_many_versions(target: &str) -> FederationError {
    FederationError::Unsupported(format!("'{target}' has more than {MAX_LISTED_VERSIONS} versions to list"))
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
        // Disabled secrets and names outside the prefix do not count towards `limit`.
        let listed = self.pages(self.url(&[], &[("maxresults", "25")])?, limit.saturating_mul(10)).await?;
        let mut names: Vec<String> = listed
            .iter()
            .filter(|s| s.pointer("/attributes/enabled").and_then(Value::as_bool) != Some(false))
            // Names are compared without case; the lowercase form is the one a path maps to.
            .filter_map(|s| s.get("id")?.as_str()?.rsplit('/').next().map(str::to_ascii_lowercase))
            .filter(|n| n.starts_with(prefix))
            .collect();
        if names.len() > limit {
            return Err(crate::too_many(limit));
        }
        names.sort();
        Ok(names)
    }

    /// Enabled versions by creation time, with the one the vault serves as current last.
    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError> {
        let not_found = |e: FederationError| match e {
            FederationError::NotFound(_) => FederationError::NotFound(target.to_owned()),
            FederationError::Unsupported(_) => too_many_versions(target),
            other => other,
        };
        // The list first, then the current version: a version written in between is left for the
        // next sync rather than put before the current one.
        let listed = self
            .pages(self.url(&[target, "versions"], &[("maxresults", "25")])?, MAX_LISTED_VERSIONS)
            .await
            .map_err(not_found)?;
        let current = self.call(Method::GET, self.url(&[target], &[])?, None).await.map_err(not_found)?;
        let current_id = version_of(&current).ok_or_else(|| FederationError::NotFound(target.to_owned()))?;
        let current_created = time_of(current.pointer("/attributes/created"));
        let mut versions: Vec<RemoteVersion> = listed
            .iter()
            .filter(|v| v.pointer("/attributes/enabled").and_then(Value::as_bool) != Some(false))
            .filter_map(|v| {
                let id = version_of(v)?;
                let created_at = time_of(v.pointer("/attributes/created"));
                let newer = matches!((created_at, current_created), (Some(a), Some(c)) if a > c);
                (id != current_id && !newer).then_some(RemoteVersion { id, created_at })
            })
            .collect();
        versions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        versions.push(RemoteVersion { id: current_id, created_at: current_created });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_for_the_vaults_own_cloud() {
        let of = |u: &str| resource_of(&Url::parse(u).unwrap());
        assert_eq!(of("https://kv1.vault.azure.net/"), "https://vault.azure.net");
        assert_eq!(of("https://kv1.vault.azure.cn/"), "https://vault.azure.cn");
        assert_eq!(of("https://kv1.vault.usgovcloudapi.net/"), "https://vault.usgovcloudapi.net");
        assert_eq!(of("http://127.0.0.1:8443/"), "https://vault.azure.net");
        assert_eq!(of("https://a.b.vault.azure.net/"), "https://vault.azure.net", "one label before .vault.");
    }

    #[test]
    fn the_managed_identity_goes_only_to_azure_vaults_or_this_machine_if_allowed() {
        for ok in [
            "https://kv1.vault.azure.net",
            "https://KV1.vault.azure.cn/",
            "https://kv1.vault.usgovcloudapi.net",
        ] {
            assert!(check_managed_identity_vault(ok, false).is_ok(), "{ok}");
        }
        for local in ["http://127.0.0.1:8443", "http://localhost:1", "http://[::1]:9"] {
            let refused = check_managed_identity_vault(local, false).expect_err(local).to_string();
            assert!(refused.contains("--federation-identity-loopback"), "{refused}");
            assert!(check_managed_identity_vault(local, true).is_ok(), "{local}");
        }
        for bad in [
            "http://kv1.vault.azure.net",
            "https://kv1.vault.azure.net.attacker.example",
            "https://attacker.example",
            "https://vault.azure.net.example/",
            "http://10.0.0.1",
        ] {
            assert!(check_managed_identity_vault(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_ids_are_guids_or_domains() {
        for good in ["72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.onmicrosoft.com", "common"] {
            assert!(check_tenant(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".", "a..b", ".contoso", "contoso.", "a/b", "a?b", "a b"] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
    }
}
