use chrono::{DateTime, Utc};
use scaivault_crypto::hash_token;
use scaivault_domain::{Permission, Scope, SecretPath, scopes_allow};
use scaivault_store::TokenRecord;

use crate::{CoreError, Vault};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Root,
    PersonalAccessToken,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Root => "root",
            TokenKind::PersonalAccessToken => "personal_access_token",
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
}

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

    /// `service_account:sa:x`, as `created_by` records it.
    pub(crate) fn actor(&self) -> String {
        format!("{}:{}", self.identity_type, self.identity_id)
    }

    fn from_record(record: TokenRecord) -> Principal {
        // Unknown scope strings (from a newer version) grant nothing rather than failing the request.
        let scopes = record.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        Principal {
            kind: if record.is_root { TokenKind::Root } else { TokenKind::PersonalAccessToken },
            token_id: record.id,
            tenant: record.tenant,
            identity_type: record.identity_type,
            identity_id: record.identity_id,
            scopes,
            groups: record.groups,
            expires_at: record.expires_at,
            policy_epoch: Some(record.policy_epoch),
        }
    }
}

const MAX_TOKEN_LEN: usize = 8 * 1024;

impl Vault {
    /// Turns an `Authorization` header value into a caller. Revocation and expiry take effect at
    /// once: every request looks its token up.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, CoreError> {
        let header = authorization.ok_or(CoreError::AuthenticationRequired)?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(CoreError::AuthenticationRequired)?;
        let token = token.trim_ascii();
        if token.is_empty() {
            return Err(CoreError::AuthenticationRequired);
        }
        if token.len() > MAX_TOKEN_LEN || !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CoreError::TokenExpired("the token is malformed"));
        }
        if token.starts_with(b"eyJ") {
            return Err(CoreError::TokenExpired("no JWT issuer is configured on this server"));
        }
        if !token.starts_with(scaivault_crypto::TOKEN_PREFIX.as_bytes()) {
            return Err(CoreError::TokenExpired("the token is malformed"));
        }
        let record = self
            .store
            .find_token(&hash_token(token))
            .await?
            .ok_or(CoreError::TokenExpired("the token is not valid"))?;
        let now = self.clock.now();
        if record.revoked_at.is_some() {
            return Err(CoreError::TokenExpired("the token has been revoked"));
        }
        if record.expires_at.is_some_and(|exp| exp <= now) {
            return Err(CoreError::TokenExpired("the token has expired"));
        }
        let principal = Principal::from_record(record);
        self.rate_limit(&principal)?;
        Ok(principal)
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
        if principal.kind != TokenKind::Root {
            return Err(CoreError::AccessDenied("this operation needs a system administrator".into()));
        }
        Ok(())
    }
}
