//! Bearer JWTs from configured issuers (ScaiKey or any OIDC provider), verified against each issuer's
//! JWKS.
//!
//! What is accepted, and nothing more:
//!
//! - A compact JWS whose header `alg` is `RS256`, `ES256` or `EdDSA` (never `none`, never an HMAC), with
//!   a `kid`, and no `crit` header. Embedded key headers (`jwk`, `jku`, `x5u`, `x5c`) are ignored: keys
//!   only ever come from the issuer's configured JWKS URL.
//! - The key is the JWKS entry with that `kid` whose type fits the algorithm (`RSA` for `RS256`, `EC`
//!   on `P-256` for `ES256`, `OKP` on `Ed25519` for `EdDSA`); a JWK that names an `alg` must name the
//!   header's, and a JWK whose `use` is not `sig` is never used. Signatures are checked by ring
//!   through [`scaivault_crypto::RING_JWT_PROVIDER`].
//! - Claims, checked after the signature: `iss` (a string, one of the configured issuers), `exp` (an
//!   integer: a string or a float is refused), `aud` (a string or an array of strings) are required;
//!   `nbf`, when present, is an integer too. `exp` and `nbf` have 60 s of leeway. When the issuer has
//!   an audience configured, `aud` must contain it; when it has none, any `aud` is accepted but the
//!   claim must still be there (configure an audience whenever the issuer serves other applications
//!   too, or their tokens are accepted here). `sub` is required.
//!
//! Time is the injected [`Clock`]'s. The JWKS is fetched on first use and cached; it is fetched again when a
//! token names an unknown `kid` (at most once every 30 s per issuer, concurrent misses sharing one fetch, so
//! a flood of made-up `kid`s costs one request per 30 s) and, without holding others up, when the cached set
//! is an hour old. A failed fetch keeps the cached keys; until a first fetch succeeds, tokens of that issuer
//! are refused as [`JwtError::Unavailable`]. Fetches are plain GETs over `http` or `https` (rustls on ring,
//! with the webpki root certificates), 5 s timeout, 1 MiB at most, no redirects; keys that are not signing
//! keys of the three algorithms, or lack a `kid`, are skipped, and a set without any usable key counts as a
//! failed fetch. Verified tokens are remembered by their SHA-256 until they expire (10,000 at most), so a
//! reused token costs one hash and a map lookup; a key dropped from the JWKS therefore stops working for new
//! tokens only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::Clock;

/// Leeway on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;
/// At most one JWKS fetch per issuer in this long.
const REFETCH_INTERVAL_SECS: i64 = 30;
/// A cached JWKS older than this is refreshed (in passing, keeping the old keys if that fails).
const JWKS_MAX_AGE_SECS: i64 = 3600;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const MAX_CACHED_TOKENS: usize = 10_000;
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Roles a token may carry; others are ignored.
const KNOWN_ROLES: [&str; 2] = ["partner_admin", "system_admin"];

/// One trusted issuer, as `--jwt-issuer ISS=JWKS_URL[,aud=AUD]` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    /// The exact `iss` value its tokens carry.
    pub issuer: String,
    /// Where its JWKS is served (`http` or `https`).
    pub jwks_url: String,
    /// The `aud` its tokens must contain. `None` accepts any `aud`, which must still be present.
    pub audience: Option<String>,
}

/// Who a verified JWT says the caller is.
#[derive(Debug, Clone)]
pub struct JwtIdentity {
    /// The configured issuer that signed it.
    pub issuer: String,
    /// `sub`: the identity id.
    pub subject: String,
    /// `user` or `service_account`: the `identity_type` claim, else `service_account` when `sub`
    /// starts with `sa:` and `user` otherwise.
    pub identity_type: String,
    pub tenant_id: Option<String>,
    pub partner_id: Option<String>,
    /// `scope` (space-separated), else `scp` (space-separated, or an array); duplicates removed.
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    /// The known roles among `roles`: `partner_admin`, `system_admin`.
    pub roles: Vec<String>,
    /// `exp` (without the leeway).
    pub expires_at: DateTime<Utc>,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
}

/// Why a JWT was refused. Messages never contain the token or any claim value.
///
/// [`JwtError::Unavailable`] means the issuer's keys could not be had at all (its JWKS was never
/// fetched and is unreachable): a server-side condition. [`JwtError::InvalidConfig`] only comes from
/// [`JwtVerifier::new`]. Every other variant is a reason the token is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    #[error("invalid JWT issuer configuration: {0}")]
    InvalidConfig(String),
    #[error("{}", self.reason())]
    Unavailable,
    #[error("{}", self.reason())]
    Malformed,
    #[error("{}", self.reason())]
    UnsupportedAlgorithm,
    #[error("{}", self.reason())]
    CriticalHeader,
    #[error("{}", self.reason())]
    MissingKeyId,
    #[error("{}", self.reason())]
    UnknownIssuer,
    #[error("{}", self.reason())]
    UnknownKey,
    #[error("{}", self.reason())]
    KeyMismatch,
    #[error("{}", self.reason())]
    BadSignature,
    #[error("{}", self.reason())]
    Expired,
    #[error("{}", self.reason())]
    NotYetValid,
    #[error("{}", self.reason())]
    WrongAudience,
    #[error("{}", self.reason())]
    UnsupportedIdentityType,
    /// A required claim (named) is absent.
    #[error("{}", self.reason())]
    MissingClaim(&'static str),
    /// A claim (named) has the wrong type or an unusable value.
    #[error("{}", self.reason())]
    InvalidClaim(&'static str),
}

macro_rules! claim_reason {
    ($prefix:literal, $claim:expr, $fallback:literal, [$($name:literal),*]) => {
        match $claim {
            $($name => concat!($prefix, " '", $name, "' claim"),)*
            _ => $fallback,
        }
    };
}

impl JwtError {
    /// The message as a static string (what `Display` shows, less the detail of `InvalidConfig`).
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::InvalidConfig(_) => "invalid JWT issuer configuration",
            JwtError::Unavailable => "the token's issuer keys are unavailable: its JWKS cannot be fetched",
            JwtError::Malformed => "the token is malformed",
            JwtError::UnsupportedAlgorithm => {
                "the token's signature algorithm is not accepted (only RS256, ES256 and EdDSA are)"
            }
            JwtError::CriticalHeader => "the token has critical header extensions, which are not supported",
            JwtError::MissingKeyId => "the token's header has no key id (kid)",
            JwtError::UnknownIssuer => "the token's issuer is not trusted by this server",
            JwtError::UnknownKey => "the token's key id is not in its issuer's key set",
            JwtError::KeyMismatch => "the issuer's key with this key id does not fit the token's algorithm",
            JwtError::BadSignature => "the token's signature does not verify",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::WrongAudience => "the token is not meant for this server (aud)",
            JwtError::UnsupportedIdentityType => {
                "the token's identity_type is not accepted (user or service_account)"
            }
            JwtError::MissingClaim(claim) => claim_reason!(
                "the token lacks the required",
                *claim,
                "the token lacks a required claim",
                ["iss", "aud", "exp", "sub"]
            ),
            JwtError::InvalidClaim(claim) => claim_reason!(
                "the token has an invalid",
                *claim,
                "the token has an invalid claim",
                [
                    "iss",
                    "aud",
                    "exp",
                    "nbf",
                    "sub",
                    "identity_type",
                    "tenant_id",
                    "partner_id",
                    "scope",
                    "scp",
                    "groups",
                    "roles"
                ]
            ),
        }
    }
}

/// Verifies bearer JWTs of the configured issuers. Cheap to share in an `Arc`; all state (the JWKS
/// caches, the verified-token cache) is inside.
pub struct JwtVerifier {
    issuers: HashMap<String, IssuerState>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    verified: Mutex<HashMap<[u8; 32], CachedToken>>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<&JwtIssuer> = self.issuers.values().map(|s| &s.config).collect();
        let cached = self.verified.lock().map_or(0, |c| c.len());
        f.debug_struct("JwtVerifier").field("issuers", &issuers).field("cached_tokens", &cached).finish()
    }
}

struct CachedToken {
    identity: JwtIdentity,
    /// `exp` plus the leeway: what a fresh verification would allow.
    valid_until: DateTime<Utc>,
}

struct IssuerState {
    config: JwtIssuer,
    keys: RwLock<KeySet>,
    /// Fetch attempts finished, so a caller that waited for the fetch lock can tell one happened.
    fetches: AtomicU64,
    /// Held while fetching; holds when the last attempt started (the 30 s throttle).
    fetch: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

#[derive(Clone, Default)]
struct KeySet {
    by_kid: Arc<HashMap<String, Vec<IssuerKey>>>,
    /// When the set in use was fetched; `None` until a fetch succeeds.
    fetched_at: Option<DateTime<Utc>>,
}

struct IssuerKey {
    algorithm: Algorithm,
    key: Arc<DecodingKey>,
}

enum Lookup {
    Found(Arc<DecodingKey>),
    /// The `kid` exists, but not for this algorithm.
    WrongAlgorithm,
    Missing,
}

impl KeySet {
    fn find(&self, kid: &str, algorithm: Algorithm) -> Lookup {
        match self.by_kid.get(kid) {
            None => Lookup::Missing,
            Some(keys) => keys
                .iter()
                .find(|k| k.algorithm == algorithm)
                .map_or(Lookup::WrongAlgorithm, |k| Lookup::Found(k.key.clone())),
        }
    }
}

impl IssuerState {
    fn keys(&self) -> KeySet {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl JwtVerifier {
    /// A verifier for these issuers (none is fine: [`JwtVerifier::is_configured`] is then false and
    /// every token is refused as [`JwtError::UnknownIssuer`]). Nothing is fetched yet. Fails on an
    /// empty or duplicate issuer, a JWKS URL that is not `http(s)://host…`, or an empty audience.
    pub fn new(issuers: Vec<JwtIssuer>, clock: Arc<dyn Clock>) -> Result<JwtVerifier, JwtError> {
        scaivault_crypto::install_jwt_crypto_provider();
        if !provider_works() {
            return Err(JwtError::InvalidConfig(
                "jsonwebtoken's crypto provider was set before ring's could be installed".into(),
            ));
        }
        let mut states = HashMap::new();
        for config in issuers {
            if config.issuer.is_empty() {
                return Err(JwtError::InvalidConfig("an issuer is empty".into()));
            }
            let url = reqwest::Url::parse(&config.jwks_url).map_err(|e| {
                JwtError::InvalidConfig(format!("the JWKS URL of issuer '{}' is invalid: {e}", config.issuer))
            })?;
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(JwtError::InvalidConfig(format!(
                    "the JWKS URL of issuer '{}' must be http:// or https://",
                    config.issuer
                )));
            }
            if config.audience.as_deref().is_some_and(str::is_empty) {
                return Err(JwtError::InvalidConfig(format!(
                    "the audience of issuer '{}' is empty",
                    config.issuer
                )));
            }
            if states.contains_key(&config.issuer) {
                return Err(JwtError::InvalidConfig(format!(
                    "issuer '{}' is configured twice",
                    config.issuer
                )));
            }
            let state = IssuerState {
                config: config.clone(),
                keys: RwLock::new(KeySet::default()),
                fetches: AtomicU64::new(0),
                fetch: tokio::sync::Mutex::new(None),
            };
            states.insert(config.issuer, state);
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scaivault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwtError::InvalidConfig(format!("the HTTP client cannot be built: {e}")))?;
        Ok(JwtVerifier { issuers: states, clock, http, verified: Mutex::new(HashMap::new()) })
    }

    /// Whether any issuer is configured.
    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Verifies a compact JWT (without the `Bearer ` prefix) and maps its claims.
    pub async fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let token_hash = scaivault_crypto::hash_token(token.as_bytes()).0;
        let now = self.clock.now();
        if let Some(identity) = self.cached(&token_hash, now) {
            return Ok(identity);
        }

        let unverified = Unverified::parse(token)?;
        let issuer = self.issuers.get(&unverified.issuer).ok_or(JwtError::UnknownIssuer)?;
        let key = self.key_for(issuer, &unverified.kid, unverified.algorithm).await?;

        let mut validation = Validation::new(unverified.algorithm);
        // The claims are checked below, against the injected clock and with strict types.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::UnsupportedAlgorithm
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_) => JwtError::KeyMismatch,
                _ => JwtError::Malformed,
            })?
            .claims;

        let (identity, valid_until) = claims.into_identity(&issuer.config, now, token_hash)?;
        self.remember(&identity, valid_until, now);
        Ok(identity)
    }

    fn cached(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Option<JwtIdentity> {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(hash) {
            Some(entry) if now <= entry.valid_until => Some(entry.identity.clone()),
            Some(_) => {
                cache.remove(hash);
                None
            }
            None => None,
        }
    }

    fn remember(&self, identity: &JwtIdentity, valid_until: DateTime<Utc>, now: DateTime<Utc>) {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, entry| now <= entry.valid_until);
        }
        if cache.len() >= MAX_CACHED_TOKENS {
            let soonest = cache.iter().min_by_key(|(_, entry)| entry.valid_until).map(|(hash, _)| *hash);
            if let Some(hash) = soonest {
                cache.remove(&hash);
            }
        }
        cache.insert(identity.token_hash, CachedToken { identity: identity.clone(), valid_until });
    }

    /// The issuer's key for `kid` and `algorithm`, fetching the JWKS when the `kid` is unknown (or the
    /// set was never fetched), as the throttle allows.
    async fn key_for(
        &self,
        issuer: &IssuerState,
        kid: &str,
        algorithm: Algorithm,
    ) -> Result<Arc<DecodingKey>, JwtError> {
        let seen = issuer.fetches.load(Ordering::Acquire);
        let keys = issuer.keys();
        match keys.find(kid, algorithm) {
            Lookup::Found(key) => {
                let stale = keys
                    .fetched_at
                    .is_some_and(|at| self.clock.now() - at >= TimeDelta::seconds(JWKS_MAX_AGE_SECS));
                // An old set is refreshed by whoever sees it first; other requests go on with the
                // cached key rather than wait for that fetch.
                if !stale {
                    return Ok(key);
                }
                let Ok(mut last_attempt) = issuer.fetch.try_lock() else {
                    return Ok(key);
                };
                if issuer.fetches.load(Ordering::Acquire) == seen {
                    self.fetch_locked(issuer, &mut last_attempt).await;
                }
                drop(last_attempt);
                return match issuer.keys().find(kid, algorithm) {
                    Lookup::Found(key) => Ok(key),
                    Lookup::WrongAlgorithm => Err(JwtError::KeyMismatch),
                    Lookup::Missing => Err(JwtError::UnknownKey),
                };
            }
            Lookup::WrongAlgorithm => return Err(JwtError::KeyMismatch),
            Lookup::Missing => {}
        }

        {
            let mut last_attempt = issuer.fetch.lock().await;
            // Whoever held the lock before us fetched already: use that result rather than fetch again.
            if issuer.fetches.load(Ordering::Acquire) == seen {
                self.fetch_locked(issuer, &mut last_attempt).await;
            }
        }
        let keys = issuer.keys();
        match keys.find(kid, algorithm) {
            Lookup::Found(key) => Ok(key),
            Lookup::WrongAlgorithm => Err(JwtError::KeyMismatch),
            Lookup::Missing if keys.fetched_at.is_none() => Err(JwtError::Unavailable),
            Lookup::Missing => Err(JwtError::UnknownKey),
        }
    }

    /// Fetches the issuer's JWKS unless the last attempt was under 30 s ago. The caller holds the
    /// fetch lock (`last_attempt` is its content). A failure keeps the cached keys.
    async fn fetch_locked(&self, issuer: &IssuerState, last_attempt: &mut Option<DateTime<Utc>>) {
        let now = self.clock.now();
        if last_attempt.is_some_and(|at| now - at < TimeDelta::seconds(REFETCH_INTERVAL_SECS)) {
            return;
        }
        *last_attempt = Some(now);
        match fetch_jwks(&self.http, &issuer.config.jwks_url).await {
            Ok(by_kid) => {
                tracing::debug!(issuer = %issuer.config.issuer, kids = by_kid.len(), "fetched the JWKS");
                let mut keys = issuer.keys.write().unwrap_or_else(|e| e.into_inner());
                *keys = KeySet { by_kid: Arc::new(by_kid), fetched_at: Some(now) };
            }
            Err(error) => tracing::warn!(
                issuer = %issuer.config.issuer,
                %error,
                "fetching the issuer's JWKS failed; keeping the keys already cached"
            ),
        }
        issuer.fetches.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether `jsonwebtoken`'s process-wide provider verifies Ed25519 (RFC 8032, test 1) and refuses
/// HMAC, as ring's does. It fails if some code used `jsonwebtoken` before ring's provider was
/// installed, which locks in a provider that panics (caught here) or another crate's provider.
fn provider_works() -> bool {
    std::panic::catch_unwind(|| {
        let Ok(public) = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo") else {
            return false;
        };
        let signature =
            "5VZDAMNgrHKQhuLMgG6CioSHfx645dl02HPgZSJJAVVfuIIVkKM7rMYeOXAc-bRr0lv18FlbviRlUUFDjnoQCw";
        let key = DecodingKey::from_ed_der(&public);
        let verifies = jsonwebtoken::crypto::verify(signature, b"", &key, Algorithm::EdDSA);
        let hmac =
            jsonwebtoken::crypto::verify(signature, b"", &DecodingKey::from_secret(b"k"), Algorithm::HS256);
        matches!(verifies, Ok(true)) && hmac.is_err()
    })
    .unwrap_or(false)
}

/// What is read from a token before its signature is checked: just enough to find the key.
struct Unverified {
    algorithm: Algorithm,
    kid: String,
    issuer: String,
}

#[derive(Deserialize)]
struct UnverifiedHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: Option<Value>,
}

impl Unverified {
    fn parse(token: &str) -> Result<Unverified, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: UnverifiedHeader = decode_part(header)?;
        let algorithm = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return Err(JwtError::UnsupportedAlgorithm),
        };
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        let kid = header.kid.filter(|k| !k.is_empty()).ok_or(JwtError::MissingKeyId)?;
        let payload: UnverifiedIssuer = decode_part(payload)?;
        let issuer = match payload.iss {
            None => return Err(JwtError::MissingClaim("iss")),
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
        };
        Ok(Unverified { algorithm, kid, issuer })
    }
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The claims this module reads, each kept as raw JSON so its type is checked here. A duplicated
/// claim makes the token malformed.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    identity_type: Option<Value>,
    tenant_id: Option<Value>,
    partner_id: Option<Value>,
    scope: Option<Value>,
    scp: Option<Value>,
    groups: Option<Value>,
    roles: Option<Value>,
}

impl RawClaims {
    /// The identity, and until when it may be cached (`exp` plus the leeway).
    fn into_identity(
        self,
        issuer: &JwtIssuer,
        now: DateTime<Utc>,
        token_hash: [u8; 32],
    ) -> Result<(JwtIdentity, DateTime<Utc>), JwtError> {
        let leeway = TimeDelta::seconds(LEEWAY_SECS);
        match self.iss {
            Some(Value::String(iss)) if iss == issuer.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::UnknownIssuer),
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
            None => return Err(JwtError::MissingClaim("iss")),
        }

        let expires_at = numeric_date(self.exp.ok_or(JwtError::MissingClaim("exp"))?, "exp")?;
        let valid_until = expires_at.checked_add_signed(leeway).ok_or(JwtError::InvalidClaim("exp"))?;
        if now > valid_until {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = self.nbf {
            let not_before = numeric_date(nbf, "nbf")?;
            if not_before - leeway > now {
                return Err(JwtError::NotYetValid);
            }
        }

        let audiences = match self.aud.ok_or(JwtError::MissingClaim("aud"))? {
            Value::String(aud) => vec![aud],
            Value::Array(items) if !items.is_empty() => strings(items, "aud")?,
            _ => return Err(JwtError::InvalidClaim("aud")),
        };
        if let Some(expected) = &issuer.audience
            && !audiences.iter().any(|a| a == expected)
        {
            return Err(JwtError::WrongAudience);
        }

        let subject = match self.sub.ok_or(JwtError::MissingClaim("sub"))? {
            Value::String(sub) if !sub.is_empty() => sub,
            _ => return Err(JwtError::InvalidClaim("sub")),
        };
        let identity_type = match optional_string(self.identity_type, "identity_type")? {
            Some(t) if t == "user" || t == "service_account" => t,
            Some(_) => return Err(JwtError::UnsupportedIdentityType),
            None if subject.starts_with("sa:") => "service_account".to_owned(),
            None => "user".to_owned(),
        };
        let tenant_id = optional_string(self.tenant_id, "tenant_id")?;
        let partner_id = optional_string(self.partner_id, "partner_id")?;

        let scope_words = match (self.scope, self.scp) {
            (Some(Value::String(scope)), _) => vec![scope],
            (Some(_), _) => return Err(JwtError::InvalidClaim("scope")),
            (None, Some(Value::String(scp))) => vec![scp],
            (None, Some(Value::Array(items))) => strings(items, "scp")?,
            (None, Some(_)) => return Err(JwtError::InvalidClaim("scp")),
            (None, None) => Vec::new(),
        };
        let mut scopes: Vec<String> = Vec::new();
        for scope in scope_words.iter().flat_map(|s| s.split_ascii_whitespace()) {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }

        let groups = match self.groups {
            None => Vec::new(),
            Some(Value::Array(items)) => strings(items, "groups")?,
            Some(_) => return Err(JwtError::InvalidClaim("groups")),
        };
        let mut roles: Vec<String> = match self.roles {
            None => Vec::new(),
            Some(Value::Array(items)) => strings(items, "roles")?,
            Some(_) => return Err(JwtError::InvalidClaim("roles")),
        };
        roles.retain(|r| KNOWN_ROLES.contains(&r.as_str()));
        let mut seen_roles = HashSet::new();
        roles.retain(|r| seen_roles.insert(r.clone()));

        let identity = JwtIdentity {
            issuer: issuer.issuer.clone(),
            subject,
            identity_type,
            tenant_id,
            partner_id,
            scopes,
            groups,
            roles,
            expires_at,
            token_hash,
        };
        Ok((identity, valid_until))
    }
}

/// A NumericDate that must be an integer number of seconds.
fn numeric_date(value: Value, claim: &'static str) -> Result<DateTime<Utc>, JwtError> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|secs| DateTime::from_timestamp(secs, 0)),
        _ => None,
    }
    .ok_or(JwtError::InvalidClaim(claim))
}

fn strings(items: Vec<Value>, claim: &'static str) -> Result<Vec<String>, JwtError> {
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            _ => Err(JwtError::InvalidClaim(claim)),
        })
        .collect()
}

/// A string claim; absent or empty is `None`, any other type is refused.
fn optional_string(value: Option<Value>, claim: &'static str) -> Result<Option<String>, JwtError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::InvalidClaim(claim)),
    }
}

/// GETs and parses a JWKS: 5 s timeout, 1 MiB at most, no redirects. Keys that cannot be used are
/// skipped; a set with no usable key is an error (the cached keys stay).
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<HashMap<String, Vec<IssuerKey>>, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the JWKS endpoint answered HTTP {}", response.status().as_u16()));
    }
    if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
        return Err("the JWKS is larger than 1 MiB".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("the JWKS is larger than 1 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<Value>,
}

/// The fields of a JWK this module reads.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Vec<IssuerKey>>, String> {
    let document: JwksDocument =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not a JSON key set: {e}"))?;
    let mut by_kid: HashMap<String, Vec<IssuerKey>> = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else { continue };
        if let Some((kid, key)) = usable_key(jwk) {
            by_kid.entry(kid).or_default().push(key);
        }
    }
    if by_kid.is_empty() {
        return Err("the JWKS has no usable signing key (RS256, ES256 or EdDSA, with a kid)".into());
    }
    Ok(by_kid)
}

/// The key for one JWK, if it is a signing key of one of the three algorithms, with a `kid`.
fn usable_key(jwk: RawJwk) -> Option<(String, IssuerKey)> {
    let kid = jwk.kid.filter(|k| !k.is_empty())?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let bytes = |field: Option<String>| -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(field?.trim_end_matches('=')).ok()
    };
    let (algorithm, key) = match jwk.kty.as_str() {
        "RSA" => {
            let n = bytes(jwk.n)?;
            let e = bytes(jwk.e)?;
            let n = &n[n.iter().position(|&b| b != 0)?..];
            // ring's RS256 verifier takes 2048 to 8192 bit moduli.
            if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                return None;
            }
            (Algorithm::RS256, DecodingKey::from_rsa_raw_components(n, &e))
        }
        "EC" if jwk.crv.as_deref() == Some("P-256") => {
            let x = bytes(jwk.x)?;
            let y = bytes(jwk.y)?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            // The uncompressed point 0x04 || x || y, as the ring provider takes it.
            let point = [&[0x04][..], &x, &y].concat();
            (Algorithm::ES256, DecodingKey::from_ec_der(&point))
        }
        "OKP" if jwk.crv.as_deref() == Some("Ed25519") => {
            let x = bytes(jwk.x)?;
            if x.len() != 32 {
                return None;
            }
            (Algorithm::EdDSA, DecodingKey::from_ed_der(&x))
        }
        _ => return None,
    };
    let alg_name = match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "EdDSA",
    };
    if jwk.alg.as_deref().is_some_and(|alg| alg != alg_name) {
        return None;
    }
    Some((kid, IssuerKey { algorithm, key: Arc::new(key) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_lowercase_and_carry_no_values() {
        for error in [
            JwtError::Unavailable,
            JwtError::Malformed,
            JwtError::MissingClaim("exp"),
            JwtError::InvalidClaim("scp"),
            JwtError::InvalidClaim("other"),
            JwtError::KeyMismatch,
        ] {
            let text = error.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
            assert_eq!(text, error.reason());
        }
        assert_eq!(JwtError::MissingClaim("exp").to_string(), "the token lacks the required 'exp' claim");
        assert_eq!(JwtError::InvalidClaim("nope").to_string(), "the token has an invalid claim");
    }

    #[test]
    fn ring_is_the_provider() {
        scaivault_crypto::install_jwt_crypto_provider();
        assert!(provider_works());
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
            {"kty": "OKP", "kid": "enc", "use": "enc", "crv": "Ed25519", "x": x},
            {"kty": "OKP", "kid": "wrong-alg", "alg": "ES256", "crv": "Ed25519", "x": x},
            {"kty": "OKP", "kid": "short", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": x, "y": x},
            "not an object",
            {"kty": "OKP", "kid": "ok", "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": x},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
