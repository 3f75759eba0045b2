use std::sync::Arc;

use chrono::{DateTime, Utc};
use scaivault_crypto::hash_token;
use scaivault_domain::{Permission, Scope, SecretPath, scopes_allow};
use scaivault_store::{DEFAULT_TENANT, TenantRecord, TokenRecord};

use crate::{CoreError, JwtError, Vault};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Root,
    PersonalAccessToken,
    Jwt,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Root => "root",
            TokenKind::PersonalAccessToken => "personal_access_token",
            TokenKind::Jwt => "jwt",
        }
    }
}

/// An authenticated caller. Only [`Vault::authenticate`] makes one.
#[derive(Debug, Clone)]
pub struct Principal {
    pub(crate) token_id: String,
    pub(crate) kind: TokenKind,
    pub(crate) tenant: String,
    pub(crate) identity_type: String,
    pub(crate) identity_id: String,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) groups: Vec<String>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// The tenant's policy epoch seen with the token, so a fresh policy cache needs no extra query.
    pub(crate) policy_epoch: Option<i64>,
    pub(crate) partner_id: Option<String>,
    pub(crate) roles: Vec<String>,
    /// Acting as another tenant (`/v1/t/{tenant}/…` or `X-Tenant-ID`), as an administrator of it.
    pub(crate) acting: bool,
    /// The tenant the credential belongs to (where a token's record is), whatever tenant it acts as.
    pub(crate) home_tenant: String,
}

pub(crate) const SYSTEM_ADMIN: &str = "system_admin";
pub(crate) const PARTNER_ADMIN: &str = "partner_admin";

impl Principal {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn identity_id(&self) -> &str {
        &self.identity_id
    }

    pub fn identity_type(&self) -> &str {
        &self.identity_type
    }

    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The root token, or a token or JWT with the `system_admin` role.
    pub(crate) fn is_system_admin(&self) -> bool {
        self.kind == TokenKind::Root || self.roles.iter().any(|r| r == SYSTEM_ADMIN)
    }

    /// The partner this caller administers, if it is a partner administrator.
    pub(crate) fn administered_partner(&self) -> Option<&str> {
        self.roles.iter().any(|r| r == PARTNER_ADMIN).then_some(self.partner_id.as_deref()).flatten()
    }

    /// The server itself (automatic rotation), acting in `tenant`; never the result of authentication.
    pub(crate) fn system(tenant: &str) -> Principal {
        Principal::system_named(tenant, "rotation")
    }

    /// The server itself doing `what` (`system:<what>` in the audit trail), acting in `tenant`.
    pub(crate) fn system_named(tenant: &str, what: &str) -> Principal {
        Principal {
            token_id: "system".into(),
            kind: TokenKind::Root,
            tenant: tenant.to_owned(),
            home_tenant: tenant.to_owned(),
            identity_type: "system".into(),
            identity_id: what.into(),
            scopes: Vec::new(),
            groups: Vec::new(),
            expires_at: None,
            policy_epoch: None,
            partner_id: None,
            roles: Vec::new(),
            acting: false,
        }
    }

    /// `service_account:sa:x`, as `created_by` records it.
    pub(crate) fn actor(&self) -> String {
        format!("{}:{}", self.identity_type, self.identity_id)
    }

    fn from_record(record: &TokenRecord) -> Principal {
        // Unknown scope strings (from a newer version) grant nothing rather than failing the request.
        let scopes = record.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        Principal {
            kind: if record.is_root { TokenKind::Root } else { TokenKind::PersonalAccessToken },
            token_id: record.id.clone(),
            tenant: record.tenant.clone(),
            home_tenant: record.tenant.clone(),
            identity_type: record.identity_type.clone(),
            identity_id: record.identity_id.clone(),
            scopes,
            groups: record.groups.clone(),
            expires_at: record.expires_at,
            policy_epoch: Some(record.policy_epoch),
            partner_id: record.partner_id.clone(),
            roles: record.roles.clone(),
            acting: false,
        }
    }
}

const MAX_TOKEN_LEN: usize = 8 * 1024;

impl Vault {
    /// Turns an `Authorization` header value into a caller. Revocation and expiry take effect at
    /// once: every request looks its token up.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        acting_tenant: Option<&str>,
    ) -> Result<Principal, CoreError> {
        let principal = self.authenticate_token(authorization).await?;
        self.admit(principal, acting_tenant).await
    }

    /// The second half of [`Vault::authenticate`]: rate limits, then acting as another tenant. Split
    /// out so the HTTP layer can note who the caller is before a refusal here (which is audited).
    pub async fn admit(
        &self,
        principal: Principal,
        acting_tenant: Option<&str>,
    ) -> Result<Principal, CoreError> {
        self.rate_limit(&principal)?;
        match acting_tenant {
            Some(tenant) if tenant != principal.tenant => self.act_as(principal, tenant).await,
            _ => Ok(principal),
        }
    }

    /// A partner administrator may act as any tenant of its partner, a system administrator as any
    /// tenant; anyone else, and any tenant that does not exist, is refused alike.
    async fn act_as(&self, mut principal: Principal, tenant: &str) -> Result<Principal, CoreError> {
        let refused = || CoreError::AccessDenied("this token may not act as that tenant".into());
        let target = self.tenant_record(tenant).await?.ok_or_else(refused)?;
        let allowed = principal.is_system_admin()
            || principal.administered_partner().is_some_and(|p| target.partner_id.as_deref() == Some(p));
        if !allowed {
            return Err(refused());
        }
        principal.tenant = target.id.clone();
        principal.acting = true;
        principal.policy_epoch = None;
        Ok(principal)
    }

    /// Who the bearer token says the caller is, in its own tenant (no rate limit, no acting yet).
    pub async fn authenticate_token(&self, authorization: Option<&[u8]>) -> Result<Principal, CoreError> {
        let header = authorization.ok_or(CoreError::AuthenticationRequired)?;
        // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
        let token = header
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token)
            .ok_or(CoreError::AuthenticationRequired)?;
        let token = token.trim_ascii();
        if token.is_empty() {
            return Err(CoreError::AuthenticationRequired);
        }
        if token.len() > MAX_TOKEN_LEN || !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CoreError::TokenExpired("the token is malformed"));
        }
        if token.starts_with(b"eyJ") {
            return self.authenticate_jwt(token).await;
        }
        if !token.starts_with(scaivault_crypto::TOKEN_PREFIX.as_bytes()) {
            return Err(CoreError::TokenExpired("the token is malformed"));
        }
        let hash = hash_token(token);
        let (record, fresh) = self
            .caches
            .through(&self.caches.tokens, hash, || async {
                Ok::<_, CoreError>(self.store.find_token(&hash).await?.map(Arc::new))
            })
            .await?
            .ok_or(CoreError::TokenExpired("the token is not valid"))?;
        let now = self.clock.now();
        if record.revoked_at.is_some() {
            return Err(CoreError::TokenExpired("the token has been revoked"));
        }
        if record.expires_at.is_some_and(|exp| exp <= now) {
            return Err(CoreError::TokenExpired("the token has expired"));
        }
        let mut principal = Principal::from_record(&record);
        if !fresh {
            // The epoch a cached record carries may be old; the policy cache knows better.
            principal.policy_epoch = None;
        }
        Ok(principal)
    }

    /// A JWT from a configured issuer: verified (signature, algorithm, `exp`/`nbf`/`iss`/`aud`) by
    /// the JWT verifier, then mapped to a caller of an existing tenant.
    async fn authenticate_jwt(&self, token: &[u8]) -> Result<Principal, CoreError> {
        let Some(verifier) = self.jwt.as_ref().filter(|v| v.is_configured()) else {
            return Err(CoreError::TokenExpired("no JWT issuer is configured on this server"));
        };
        let text =
            std::str::from_utf8(token).map_err(|_| CoreError::TokenExpired("the token is malformed"))?;
        let identity = verifier.verify(text).await.map_err(|e| match e {
            JwtError::Unavailable => {
                CoreError::Unavailable("the token issuer's keys cannot be fetched".into())
            }
            other => CoreError::TokenExpired(other.reason()),
        })?;
        // Identities are used as given, so refuse what no store keeps alike (control characters) and
        // group lists large enough to weigh on every policy decision.
        let printable = |v: &str| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control);
        if !printable(&identity.subject)
            || identity.groups.len() > crate::tokens::MAX_GROUPS
            || !identity.groups.iter().all(|g| printable(g))
        {
            return Err(CoreError::TokenExpired("the token's subject or groups are not acceptable"));
        }
        let tenant_id = identity.tenant_id.as_deref().unwrap_or(DEFAULT_TENANT);
        let tenant = self
            .tenant_record(tenant_id)
            .await?
            .ok_or(CoreError::TokenExpired("the token names a tenant that does not exist"))?;
        if identity.partner_id.is_some() && identity.partner_id != tenant.partner_id {
            return Err(CoreError::TokenExpired("the token's partner is not its tenant's partner"));
        }
        let digest: String = identity.token_hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Principal {
            token_id: format!("jwt_{digest}"),
            kind: TokenKind::Jwt,
            tenant: tenant.id.clone(),
            home_tenant: tenant.id.clone(),
            identity_type: identity.identity_type,
            identity_id: identity.subject,
            scopes: identity.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            groups: identity.groups,
            expires_at: Some(identity.expires_at),
            policy_epoch: None,
            partner_id: tenant.partner_id.clone(),
            roles: identity.roles,
            acting: false,
        })
    }

    /// A tenant's record, from the cache when it may be used.
    pub(crate) async fn tenant_record(&self, id: &str) -> Result<Option<Arc<TenantRecord>>, CoreError> {
        let found = self
            .caches
            .through(&self.caches.tenants, id.to_owned(), || async {
                Ok::<_, CoreError>(self.store.get_tenant(id).await?.map(Arc::new))
            })
            .await?;
        Ok(found.map(|(tenant, _)| tenant))
    }

    /// Per-token and per-tenant buckets, when configured.
    fn rate_limit(&self, principal: &Principal) -> Result<(), CoreError> {
        let now = self.clock.now();
        if let Some(limiter) = &self.tenant_limiter {
            limiter.take(&principal.tenant, now).map_err(CoreError::RateLimited)?;
        }
        if let Some(limiter) = &self.token_limiter {
            limiter.take(&principal.token_id, now).map_err(CoreError::RateLimited)?;
        }
        Ok(())
    }

    /// The one place access is decided: the route's scope, then (for a path) the policies — the
    /// root token's built-in allow-all policy, or those bound to the caller's identity and groups,
    /// where a matching deny wins and nothing matching denies.
    pub(crate) async fn authorize(
        &self,
        principal: &Principal,
        scope: Scope,
        on_path: Option<(Permission, &SecretPath)>,
    ) -> Result<(), CoreError> {
        if !scopes_allow(&principal.scopes, scope) {
            return Err(CoreError::AccessDenied(format!("the token lacks the '{scope}' scope")));
        }
        if let Some((permission, path)) = on_path
            && !self.access(principal).await?.allows(permission, path)
        {
            return Err(CoreError::AccessDenied(format!("no policy allows '{permission}' on this path")));
        }
        Ok(())
    }

    /// Operations on the whole installation (master keys) need the root identity.
    pub(crate) async fn authorize_system(&self, principal: &Principal) -> Result<(), CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        if !principal.is_system_admin() {
            return Err(CoreError::AccessDenied("this operation needs a system administrator".into()));
        }
        Ok(())
    }
}
