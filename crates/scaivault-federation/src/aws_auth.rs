//! Who the AWS adapter signs as. Keys from a credential secret are used as they are; with a
//! `role_arn` the adapter assumes that role through STS (`AssumeRole`, signed by a credential
//! secret's keys or by the server's own AWS identity) and renews the role's temporary keys before
//! they expire.
//!
//! The server's own identity is found where AWS's SDKs look, in their order:
//! 1. keys in the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
//! 2. a web identity token file (`AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`, as EKS gives
//!    pods), exchanged by `AssumeRoleWithWebIdentity`;
//! 3. the container credentials endpoint (ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`; EKS Pod
//!    Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`);
//! 4. the EC2 instance metadata service (IMDSv2; `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it,
//!    `AWS_EC2_METADATA_DISABLED=true` turns it off).
//!
//! STS is called at the backend's `endpoint` when one is given (services that speak AWS's APIs
//! serve them all at one address, as AWS's SDKs' `AWS_ENDPOINT_URL` assumes), else at the region's
//! `https://sts.<region>.amazonaws.com/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use scaivault_crypto::SecretBytes;
use serde::Deserialize;

use crate::FederationError;
use crate::aws::AwsCredentials;
use crate::env::{ServerEnvironment, read_token_file};
use crate::error::short;
use crate::sigv4::{host_of, sign_post};

const STS_VERSION: &str = "2011-06-15";
const SESSION_NAME: &str = "scaivault";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
const IMDS: &str = "http://169.254.169.254/";
const ECS: &str = "http://169.254.170.2";
/// Hosts a container credentials `…_FULL_URI` may name besides this machine, as AWS's SDKs allow:
/// ECS's and EKS Pod Identity's agents.
const CONTAINER_HOSTS: [&str; 3] = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"];
/// Who the adapter signs as.
#[derive(Debug)]
pub enum AwsAuth {
    /// A credential secret's keys, used as they are.
    Keys(AwsCredentials),
    /// A role assumed through STS, with the `external_id` its trust policy may require.
    AssumeRole { role_arn: String, external_id: Option<String>, source: RoleSource },
    /// The server's own AWS identity, used as it is (to sign a Vault login).
    ServerIdentity(ServerEnvironment),
}

/// Whose keys sign `AssumeRole`.
#[derive(Debug)]
pub enum RoleSource {
    /// A credential secret's.
    Keys(AwsCredentials),
    /// The server's own AWS identity, as these variables say where to find it.
    Ambient(ServerEnvironment),
}

/// A service's host in a region: `<service>.<region>.amazonaws.com`, or `.amazonaws.com.cn` in
/// AWS's China regions.
pub(crate) fn aws_host(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("{service}.{region}.{suffix}")
}

/// Checks a role's ARN: `arn:<partition>:iam::<account>:role/<name>`, printable and at most 2,048
/// characters, as IAM's own limit.
pub fn check_role_arn(arn: &str) -> Result<(), FederationError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = arn.len() <= 2048
        && arn.bytes().all(|b| b.is_ascii_graphic())
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
    if ok {
        Ok(())
    } else {
        Err(FederationError::Config(format!(
            "role_arn '{}' is not a role's ARN (arn:aws:iam::<account>:role/<name>)",
            short(arn)
        )))
    }
}

/// Checks an `ExternalId`: 2-1224 of `A-Z a-z 0-9 + = , . @ : / -` and `_`, as STS takes it.
pub fn check_external_id(id: &str) -> Result<(), FederationError> {
    let ok = (2..=1224).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FederationError::Config("external_id must be 2-1224 of A-Z a-z 0-9 + = , . @ : / - _".into()))
    }
}

/// Where the server's own identity may be presented: AWS's own services (no `endpoint`), or this
/// machine if `loopback` allows it. A request it signs for another address could otherwise be
/// replayed to AWS by whoever answers there.
pub fn check_ambient_endpoint(endpoint: Option<&str>, loopback: bool) -> Result<(), FederationError> {
    crate::rest::own_service_only(
        endpoint,
        loopback,
        "the server's own AWS identity is presented only to AWS's own services",
    )
}

/// Keys, and when to fetch new ones (never, for keys that do not expire).
type Held = Option<(Arc<AwsCredentials>, Option<Instant>)>;

fn fresh(held: &Held) -> Option<Arc<AwsCredentials>> {
    held.as_ref().filter(|(_, renew)| renew.is_none_or(|at| Instant::now() < at)).map(|(k, _)| k.clone())
}

/// Where the keys that sign `AssumeRole` come from.
enum Source {
    /// Keys that do not expire: a credential secret's, or the environment's.
    Fixed(Arc<AwsCredentials>),
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    Container {
        url: Url,
        token: Option<SecretBytes>,
        token_file: Option<PathBuf>,
    },
    Imds {
        base: Url,
    },
}

enum How {
    Keys(Arc<AwsCredentials>),
    Assume { role_arn: String, external_id: Option<String>, source: Source },
    Own(Source),
}

/// The keys an AWS backend signs with, fetched and renewed as they need.
pub(crate) struct Keyring {
    http: reqwest::Client,
    region: String,
    sts: Url,
    how: How,
    /// Whether the keys are the server's own (or assumed with them).
    server_identity: bool,
    /// The role's temporary keys.
    assumed: tokio::sync::Mutex<Held>,
    /// The temporary keys of the server's own identity (web identity, container, instance).
    own: tokio::sync::Mutex<Held>,
    /// The last refusal of a fetch of keys (STS, the container endpoint), not tried again for a
    /// while.
    hold: crate::error::RefusalHold,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.how {
            How::Keys(k) => format!("keys {}", k.access_key_id),
            How::Assume { role_arn, source, .. } => {
                format!("{role_arn} assumed with {}", source.describe())
            }
            How::Own(source) => source.describe(),
        };
        f.debug_struct("Keyring").field("signs_as", &how).field("sts", &self.sts.as_str()).finish()
    }
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Fixed(k) => format!("keys {}", k.access_key_id),
            Source::WebIdentity { .. } => "web identity".to_owned(),
            Source::Container { url, .. } => format!("container credentials at {url}"),
            Source::Imds { base } => format!("instance metadata at {base}"),
        }
    }

    /// The server's own identity, found as AWS's SDKs find it.
    fn discover(env: &ServerEnvironment) -> Result<Source, FederationError> {
        if let (Some(id), Some(secret)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Source::Fixed(Arc::new(AwsCredentials {
                access_key_id: id.to_owned(),
                secret_access_key: SecretBytes::new(secret.as_bytes().to_vec()),
                session_token: env.get("AWS_SESSION_TOKEN").map(|t| SecretBytes::new(t.as_bytes().to_vec())),
            })));
        }
        if let (Some(file), Some(role)) = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")) {
            check_role_arn(role)?;
            return Ok(Source::WebIdentity {
                token_file: PathBuf::from(file),
                role_arn: role.to_owned(),
                session_name: env.get("AWS_ROLE_SESSION_NAME").unwrap_or(SESSION_NAME).to_owned(),
            });
        }
        let container = |url: Url| Source::Container {
            url,
            token: env
                .get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                .map(|t| SecretBytes::new(t.as_bytes().to_vec())),
            token_file: env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
        };
        if let Some(relative) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            // A path on the container agent: anything else (`@host`, `.host`) would move the host.
            if !relative.starts_with('/') {
                return Err(FederationError::Config(
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with /".into(),
                ));
            }
            let url = Url::parse(&format!("{ECS}{relative}")).map_err(|e| {
                FederationError::Config(format!("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: {e}"))
            })?;
            return Ok(container(url));
        }
        if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            let url = Url::parse(full)
                .map_err(|e| FederationError::Config(format!("AWS_CONTAINER_CREDENTIALS_FULL_URI: {e}")))?;
            let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            if !(crate::rest::is_loopback(&url) || CONTAINER_HOSTS.contains(&host)) {
                return Err(FederationError::Config(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI must name this machine or the container agent".into(),
                ));
            }
            return Ok(container(url));
        }
        if env.get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(FederationError::Config(
                "no AWS identity found for the server (environment keys, web identity, container or \
                 instance credentials)"
                    .into(),
            ));
        }
        Ok(Source::Imds { base: env.metadata_base("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS)? })
    }
}

/// Keys as STS, the container endpoint and the instance metadata service answer them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IssuedKeys {
    access_key_id: String,
    secret_access_key: String,
    #[serde(alias = "Token", default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

impl IssuedKeys {
    /// The keys, and when to renew them: at 80% of their remaining life, but no sooner than 30
    /// seconds on (or at their end, if that comes first), so short-lived keys are not fetched for
    /// every call;
    /// keys already expired by this machine's clock (a skewed clock) in a minute; temporary keys
    /// without an expiry (a session token but no `Expiration`) in ten. Keys without a session
    /// token do not expire.
    fn held(self) -> (Arc<AwsCredentials>, Option<Instant>) {
        let expires = self.expiration.as_deref().and_then(|e| DateTime::parse_from_rfc3339(e).ok());
        let left = match expires {
            Some(at) => Some(match (at.with_timezone(&Utc) - Utc::now()).to_std() {
                Ok(left) => left.mul_f64(0.8).max(left.min(Duration::from_secs(30))),
                Err(_) => Duration::from_secs(60),
            }),
            None if self.session_token.is_some() => Some(Duration::from_secs(600)),
            None => None,
        };
        let renew = left.map(|left| Instant::now() + left);
        let keys = AwsCredentials {
            access_key_id: self.access_key_id,
            secret_access_key: SecretBytes::new(self.secret_access_key.into_bytes()),
            session_token: self.session_token.map(|t| SecretBytes::new(t.into_bytes())),
        };
        (Arc::new(keys), renew)
    }
}

#[derive(Deserialize)]
struct StsAnswer {
    #[serde(rename = "AssumeRoleResult", alias = "AssumeRoleWithWebIdentityResult")]
    result: StsResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsResult {
    credentials: IssuedKeys,
}

#[derive(Deserialize)]
struct StsFault {
    #[serde(rename = "Error")]
    error: StsFaultBody,
}

#[derive(Deserialize)]
struct StsFaultBody {
    #[serde(rename = "Code", default)]
    code: String,
}

fn unreachable(what: &str, e: reqwest::Error) -> FederationError {
    match crate::error::unreachable(e) {
        FederationError::Unreachable(m) => FederationError::Unreachable(format!("{what}: {m}")),
        other => other,
    }
}

/// STS's `<ErrorResponse><Error><Code>`, sorted into ours.
fn sts_error(status: StatusCode, body: &[u8]) -> FederationError {
    let code = std::str::from_utf8(body)
        .ok()
        .and_then(|xml| quick_xml::de::from_str::<StsFault>(xml).ok())
        .map(|f| f.error.code)
        .unwrap_or_default();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || code == "Throttling" {
        return FederationError::Unreachable(format!("STS answered {status}"));
    }
    match code.as_str() {
        "AccessDenied"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidIdentityToken"
        | "IDPRejectedClaim" => FederationError::Denied { status: status.as_u16() },
        _ if status == StatusCode::FORBIDDEN => FederationError::Denied { status: status.as_u16() },
        "" => FederationError::Backend { status: status.as_u16(), message: format!("STS answered {status}") },
        code => FederationError::Backend { status: status.as_u16(), message: short(&format!("STS: {code}")) },
    }
}

impl Keyring {
    pub(crate) fn new(
        http: reqwest::Client,
        region: &str,
        endpoint: Option<&str>,
        auth: AwsAuth,
    ) -> Result<Keyring, FederationError> {
        let raw = endpoint.map_or_else(|| format!("https://{}/", aws_host("sts", region)), str::to_owned);
        let sts = crate::rest::bare_url("endpoint", &raw)?;
        let server_identity = matches!(
            auth,
            AwsAuth::ServerIdentity(_) | AwsAuth::AssumeRole { source: RoleSource::Ambient(_), .. }
        );
        let how = match auth {
            AwsAuth::Keys(keys) => How::Keys(Arc::new(keys)),
            AwsAuth::AssumeRole { role_arn, external_id, source } => {
                check_role_arn(&role_arn)?;
                if let Some(id) = &external_id {
                    check_external_id(id)?;
                }
                let source = match source {
                    RoleSource::Keys(keys) => Source::Fixed(Arc::new(keys)),
                    RoleSource::Ambient(env) => {
                        check_ambient_endpoint(endpoint, env.loopback())?;
                        Source::discover(&env)?
                    }
                };
                How::Assume { role_arn, external_id, source }
            }
            AwsAuth::ServerIdentity(env) => {
                check_ambient_endpoint(endpoint, env.loopback())?;
                How::Own(Source::discover(&env)?)
            }
        };
        Ok(Keyring {
            http,
            region: region.to_owned(),
            sts,
            how,
            server_identity,
            assumed: Default::default(),
            own: Default::default(),
            hold: Default::default(),
        })
    }

    /// Whether the keys are temporary, so that fetching them again may help after a refusal.
    pub(crate) fn renews(&self) -> bool {
        !matches!(self.how, How::Keys(_) | How::Own(Source::Fixed(_)))
    }

    /// Whether these are the server's own keys (or a role assumed with them).
    pub(crate) fn is_server_identity(&self) -> bool {
        self.server_identity
    }

    /// Drops `refused` wherever it is held, unless it was replaced meanwhile.
    pub(crate) async fn forget(&self, refused: &Arc<AwsCredentials>) {
        for slot in [&self.assumed, &self.own] {
            let mut held = slot.lock().await;
            if held.as_ref().is_some_and(|(k, _)| Arc::ptr_eq(k, refused)) {
                *held = None;
            }
        }
    }

    /// The keys to sign with now.
    pub(crate) async fn keys(&self) -> Result<Arc<AwsCredentials>, FederationError> {
        let (role_arn, external_id, source) = match &self.how {
            How::Keys(keys) => return Ok(keys.clone()),
            How::Own(source) => return self.own_keys(source).await,
            How::Assume { role_arn, external_id, source } => (role_arn, external_id, source),
        };
        // A pod's web identity role is the role itself: no second hop.
        if let Source::WebIdentity { role_arn: own, .. } = source
            && own == role_arn
        {
            return self.own_keys(source).await;
        }
        let mut held = self.assumed.lock().await;
        if let Some(keys) = fresh(&held) {
            return Ok(keys);
        }
        let signer = self.own_keys(source).await?;
        self.hold.held()?;
        let mut params =
            vec![("Action", "AssumeRole"), ("RoleArn", role_arn.as_str()), ("RoleSessionName", SESSION_NAME)];
        if let Some(id) = external_id {
            params.push(("ExternalId", id.as_str()));
        }
        let answer = self.sts(Some(&signer), &params).await;
        if matches!(answer, Err(FederationError::Denied { .. })) {
            // STS may have refused the signing keys themselves (expired early by a skewed clock,
            // revoked): temporary ones are fetched again after the hold. (Lock order: assumed,
            // then own, as in `own_keys`.)
            let mut own = self.own.lock().await;
            if own.as_ref().is_some_and(|(k, _)| Arc::ptr_eq(k, &signer)) {
                *own = None;
            }
        }
        let issued = self.hold.note(answer)?;
        let (keys, renew) = issued.held();
        *held = Some((keys.clone(), renew));
        Ok(keys)
    }

    /// The keys that sign `AssumeRole`.
    async fn own_keys(&self, source: &Source) -> Result<Arc<AwsCredentials>, FederationError> {
        if let Source::Fixed(keys) = source {
            return Ok(keys.clone());
        }
        let mut held = self.own.lock().await;
        if let Some(keys) = fresh(&held) {
            return Ok(keys);
        }
        self.hold.held()?;
        let issued = self.hold.note(self.fetch_own(source).await)?;
        let (keys, renew) = issued.held();
        *held = Some((keys.clone(), renew));
        Ok(keys)
    }

    /// Fetches the temporary keys of the server's own identity.
    async fn fetch_own(&self, source: &Source) -> Result<IssuedKeys, FederationError> {
        Ok(match source {
            Source::Fixed(_) => unreachable!("answered above"),
            Source::WebIdentity { token_file, role_arn, session_name } => {
                let token = read_token_file(token_file, "AWS_WEB_IDENTITY_TOKEN_FILE").await?;
                self.sts(
                    None,
                    &[
                        ("Action", "AssumeRoleWithWebIdentity"),
                        ("RoleArn", role_arn),
                        ("RoleSessionName", session_name),
                        ("WebIdentityToken", &token),
                    ],
                )
                .await?
            }
            Source::Container { url, token, token_file } => {
                self.container(url, token.as_ref(), token_file.as_ref()).await?
            }
            Source::Imds { base } => self.instance(base).await?,
        })
    }

    /// One STS action (query protocol, answered in XML), signed by `signer` unless it needs none.
    async fn sts(
        &self,
        signer: Option<&AwsCredentials>,
        params: &[(&str, &str)],
    ) -> Result<IssuedKeys, FederationError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Version", STS_VERSION)
            .extend_pairs(params)
            .finish()
            .into_bytes();
        let request = self.http.post(self.sts.clone());
        let request = match signer {
            Some(keys) => sign_post(
                request,
                keys,
                (&self.region, "sts", &host_of(&self.sts)),
                &[("content-type", FORM)],
                body,
            ),
            None => request.header("content-type", FORM).body(body),
        };
        let response = request.send().await.map_err(|e| unreachable("STS", e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable("STS", e))?;
        if !status.is_success() {
            return Err(sts_error(status, &bytes));
        }
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|xml| quick_xml::de::from_str::<StsAnswer>(xml).ok())
            .map(|a| a.result.credentials)
            .ok_or_else(|| FederationError::Backend {
                status: status.as_u16(),
                message: "STS did not answer credentials".into(),
            })
    }

    /// The container credentials endpoint's keys.
    async fn container(
        &self,
        url: &Url,
        token: Option<&SecretBytes>,
        token_file: Option<&PathBuf>,
    ) -> Result<IssuedKeys, FederationError> {
        let mut request = self.http.get(url.clone());
        let authorization = match (token_file, token) {
            (Some(file), _) => Some(read_token_file(file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").await?),
            (None, Some(token)) => Some(String::from_utf8_lossy(token.expose()).trim().to_owned()),
            (None, None) => None,
        };
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        self.credentials_json(request, "the container credentials endpoint").await
    }

    /// The instance profile's keys, through IMDSv2 (a session token first).
    async fn instance(&self, base: &Url) -> Result<IssuedKeys, FederationError> {
        const WHAT: &str = "the instance metadata service";
        let at = |path: &str| base.join(path).map_err(|e| FederationError::Config(e.to_string()));
        // A 404 for the role listing means the instance has no role; anything else failing is
        // the service's trouble.
        let text = |response: reqwest::Response, listing: bool| async move {
            let status = response.status();
            let text = response.text().await.map_err(|e| unreachable(WHAT, e))?;
            if status.is_success() {
                Ok(text)
            } else if status == StatusCode::NOT_FOUND && listing {
                Err(FederationError::Config("the instance has no IAM role (instance profile)".into()))
            } else {
                Err(FederationError::Unreachable(format!("{WHAT} answered {status}")))
            }
        };
        let session = text(
            self.http
                .put(at("latest/api/token")?)
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                .send()
                .await
                .map_err(|e| unreachable(WHAT, e))?,
            false,
        )
        .await?;
        let listed = at("latest/meta-data/iam/security-credentials/")?;
        let roles = text(
            self.http
                .get(listed.clone())
                .header("x-aws-ec2-metadata-token", session.trim())
                .send()
                .await
                .map_err(|e| unreachable(WHAT, e))?,
            true,
        )
        .await?;
        let role = roles.lines().map(str::trim).find(|r| !r.is_empty()).ok_or_else(|| {
            FederationError::Config("the instance has no IAM role (instance profile)".into())
        })?;
        let mut url = listed;
        url.path_segments_mut().map_err(|()| FederationError::Config(WHAT.into()))?.pop_if_empty().push(role);
        let request = self.http.get(url).header("x-aws-ec2-metadata-token", session.trim());
        self.credentials_json(request, WHAT).await
    }

    async fn credentials_json(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<IssuedKeys, FederationError> {
        let response = request.send().await.map_err(|e| unreachable(what, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable(what, e))?;
        crate::rest::sign_in_status(status, what)?;
        serde_json::from_slice(&bytes).map_err(|_| FederationError::Backend {
            status: status.as_u16(),
            message: format!("{what} did not answer AWS keys"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        for ok in ["arn:aws:iam::123456789012:role/reader", "arn:aws-cn:iam::123456789012:role/path/to/r"] {
            check_role_arn(ok).unwrap();
        }
        for bad in [
            "",
            "reader",
            "arn:aws:iam::123456789012:user/bob",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::12345x:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:iam::123456789012:role/r w",
            "arn:gcp:iam::123456789012:role/r",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
        assert!(check_role_arn(&format!("arn:aws:iam::1:role/{}", "r".repeat(2048))).is_err());
    }

    #[test]
    fn the_environment_prints_names_only_and_keeps_aws_variables() {
        let env = ServerEnvironment::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "do-not-print-me"),
            ("AWS_SESSION_TOKEN", ""),
            ("HOME", "/root"),
        ]);
        let printed = format!("{env:?}");
        assert!(!printed.contains("do-not-print-me") && !printed.contains("AKIA1"), "{printed}");
        assert!(printed.contains("AWS_SECRET_ACCESS_KEY"));
        assert_eq!(env.get("AWS_SESSION_TOKEN"), None, "empty counts as unset");
        assert_eq!(env.get("HOME"), None);
    }

    #[test]
    fn the_servers_identity_is_found_in_the_sdks_order() {
        let kind = |pairs: &[(&'static str, &str)]| match Source::discover(&ServerEnvironment::from_pairs(
            pairs.iter().copied(),
        )) {
            Ok(Source::Fixed(_)) => "keys".to_owned(),
            Ok(Source::WebIdentity { .. }) => "web".to_owned(),
            Ok(Source::Container { url, .. }) => format!("container {url}"),
            Ok(Source::Imds { base }) => format!("imds {base}"),
            Err(e) => format!("error {e}"),
        };
        let web = [("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"), ("AWS_ROLE_ARN", "arn:aws:iam::1:role/pod")];
        let keys = [("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")];
        assert_eq!(kind(&[keys[0], keys[1], web[0], web[1]]), "keys");
        assert_eq!(kind(&[keys[0], web[0], web[1]]), "web", "half a key pair is no key pair");
        assert_eq!(
            kind(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x")]),
            "container http://169.254.170.2/v2/credentials/x"
        );
        assert_eq!(
            kind(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")]),
            "container http://169.254.170.23/v1/credentials"
        );
        assert!(kind(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://evil.example/")]).starts_with("error"));
        for moved in ["@evil.example/creds", ".evil.example/creds", ":80@evil.example/"] {
            let found = kind(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", moved)]);
            assert!(found.starts_with("error"), "{moved}: {found}");
        }
        assert_eq!(kind(&[]), "imds http://169.254.169.254/");
        assert_eq!(
            kind(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")]),
            "imds http://127.0.0.1:9/"
        );
        assert!(kind(&[("AWS_EC2_METADATA_DISABLED", "true")]).starts_with("error"));
    }

    #[test]
    fn the_servers_identity_goes_only_to_aws_or_loopback_if_allowed() {
        check_ambient_endpoint(None, false).unwrap();
        assert!(check_ambient_endpoint(Some("http://127.0.0.1:5000"), false).is_err());
        check_ambient_endpoint(Some("http://127.0.0.1:5000"), true).unwrap();
        assert!(check_ambient_endpoint(Some("https://aws.example.com"), true).is_err());
        let local = |loopback: bool| {
            AwsAuth::ServerIdentity(
                ServerEnvironment::from_pairs([("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")])
                    .lending_to_loopback(loopback),
            )
        };
        let http = reqwest::Client::new();
        assert!(Keyring::new(http.clone(), "us-east-1", Some("http://127.0.0.1:9"), local(false)).is_err());
        assert!(Keyring::new(http.clone(), "us-east-1", Some("http://127.0.0.1:9"), local(true)).is_ok());
        let ambient = || AwsAuth::AssumeRole {
            external_id: None,
            role_arn: "arn:aws:iam::1:role/r".into(),
            source: RoleSource::Ambient(ServerEnvironment::from_pairs([(
                "AWS_EC2_METADATA_DISABLED",
                "false",
            )])),
        };
        let http = reqwest::Client::new();
        assert!(Keyring::new(http.clone(), "us-east-1", Some("https://aws.example.com"), ambient()).is_err());
        assert!(Keyring::new(http, "us-east-1", None, ambient()).is_ok());
    }

    /// STS refusing `AssumeRole` may be refusing the temporary keys that signed it (revoked, or
    /// expired early by a skewed clock): once the hold is over, the next try fetches the server's
    /// own keys again instead of signing with the refused ones.
    #[tokio::test]
    async fn keys_sts_refused_to_sign_with_are_fetched_again_after_the_hold() {
        use wiremock::matchers::{body_string_contains, header_regex, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let server = MockServer::start().await;
        let expires = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let own = |id: &str| {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "AccessKeyId": id, "SecretAccessKey": format!("secret-of-{id}"),
                "Token": format!("token-of-{id}"), "Expiration": expires,
            }))
        };
        let container = || Mock::given(method("GET")).and(path("/creds"));
        container().respond_with(own("ASIAOWN1")).up_to_n_times(1).with_priority(1).mount(&server).await;
        container().respond_with(own("ASIAOWN2")).mount(&server).await;
        let assume = |signer: &str| {
            Mock::given(method("POST"))
                .and(body_string_contains("Action=AssumeRole&"))
                .and(header_regex("authorization", &format!("^AWS4-HMAC-SHA256 Credential={signer}/")))
        };
        assume("ASIAOWN1")
            .respond_with(ResponseTemplate::new(403).set_body_string(
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>\
                 <Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>",
            ))
            .expect(1)
            .mount(&server)
            .await;
        assume("ASIAOWN2")
            .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>\
                 <SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>\
                 <Expiration>{expires}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"
            )))
            .expect(1)
            .mount(&server)
            .await;

        let env = ServerEnvironment::from_pairs([(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/creds", server.uri()).as_str(),
        )])
        .lending_to_loopback(true);
        let auth = AwsAuth::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/reader".into(),
            external_id: None,
            source: RoleSource::Ambient(env),
        };
        let keyring = Keyring::new(reqwest::Client::new(), "eu-west-1", Some(&server.uri()), auth).unwrap();
        assert_eq!(keyring.keys().await.unwrap_err(), FederationError::Denied { status: 403 });
        assert_eq!(
            keyring.keys().await.unwrap_err(),
            FederationError::Denied { status: 403 },
            "held: neither STS nor the container endpoint is asked again"
        );
        keyring.hold.lapse();
        assert_eq!(keyring.keys().await.unwrap().access_key_id, "ASIAROLE");
        let fetched = server.received_requests().await.unwrap();
        assert_eq!(fetched.iter().filter(|r| r.url.path() == "/creds").count(), 2);
    }

    #[test]
    fn sts_errors_are_sorted() {
        let fault = |code: &str| {
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>"
            )
        };
        let e = |status: u16, body: &str| sts_error(StatusCode::from_u16(status).unwrap(), body.as_bytes());
        assert_eq!(e(403, &fault("AccessDenied")), FederationError::Denied { status: 403 });
        assert_eq!(e(400, &fault("ExpiredToken")), FederationError::Denied { status: 400 });
        assert!(matches!(e(400, &fault("Throttling")), FederationError::Unreachable(_)));
        assert!(matches!(e(503, ""), FederationError::Unreachable(_)));
        assert_eq!(
            e(400, &fault("ValidationError")),
            FederationError::Backend { status: 400, message: "STS: ValidationError".into() }
        );
    }
}
