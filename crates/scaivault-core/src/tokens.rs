use scaivault_api::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList, WhoAmI};
use scaivault_crypto::{generate_token, hash_token, random_id};
use scaivault_domain::{DurationSpec, IdentityType, Scope};
use scaivault_store::{NewToken, TenantRecord, TokenRecord};

use crate::cache::invalidating;
use crate::paging::{decode_cursor, limit, next_cursor};
use crate::{CoreError, Principal, TokenKind, Vault};

const DEFAULT_TTL: &str = "90d";
const MAX_NAME: usize = 128;
pub(crate) const MAX_GROUPS: usize = 256;

fn token_info(r: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: r.id,
        tenant_id: r.tenant,
        roles: r.roles,
        name: r.name,
        identity_type: r.identity_type,
        identity_id: r.identity_id,
        scopes: r.scopes,
        groups: r.groups,
        created_by: r.created_by,
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
    }
}

fn check_label(what: &str, value: &str) -> Result<(), CoreError> {
    if value.is_empty() || value.len() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(CoreError::InvalidRequest(format!("{what} must be 1-{MAX_NAME} printable characters")));
    }
    Ok(())
}

impl Vault {
    /// The tenant a new token belongs to: the caller's, or another one the caller administers.
    async fn token_tenant(
        &self,
        principal: &Principal,
        wanted: Option<&str>,
    ) -> Result<TenantRecord, CoreError> {
        let id = wanted.unwrap_or(principal.tenant());
        let tenant = self.store.get_tenant(id).await?;
        let allowed = id == principal.tenant()
            || principal.is_system_admin()
            || principal
                .administered_partner()
                .is_some_and(|p| tenant.as_ref().is_some_and(|t| t.partner_id.as_deref() == Some(p)));
        match tenant {
            Some(t) if allowed => Ok(t),
            _ => Err(CoreError::AccessDenied(
                "tokens can be issued only for tenants the caller administers".into(),
            )),
        }
    }

    /// Roles are granted only by a system administrator; `partner_admin` needs a partner's tenant.
    fn token_roles(
        &self,
        principal: &Principal,
        wanted: &[String],
        tenant: &TenantRecord,
    ) -> Result<Vec<String>, CoreError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        if !principal.is_system_admin() {
            return Err(CoreError::AccessDenied("only a system administrator may grant roles".into()));
        }
        let mut roles = Vec::new();
        for role in wanted {
            match role.as_str() {
                crate::auth::SYSTEM_ADMIN => {}
                crate::auth::PARTNER_ADMIN if tenant.partner_id.is_some() => {}
                crate::auth::PARTNER_ADMIN => {
                    return Err(CoreError::InvalidRequest(
                        "partner_admin needs a tenant that belongs to a partner".into(),
                    ));
                }
                other => return Err(CoreError::InvalidRequest(format!("unknown role '{other}'"))),
            }
            if !roles.contains(role) {
                roles.push(role.clone());
            }
        }
        Ok(roles)
    }

    /// `POST /v1/auth/tokens` (scope `admin`): the token is returned this once and kept only as a hash.
    pub async fn create_token(
        &self,
        principal: &Principal,
        req: CreateTokenRequest,
    ) -> Result<CreatedToken, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let scopes = req
            .scopes
            .iter()
            .map(|s| s.parse::<Scope>().map(|s| s.as_str().to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
        let mut scopes = scopes;
        let mut seen = std::collections::HashSet::new();
        scopes.retain(|s| seen.insert(s.clone()));
        let identity_type = match req.identity_type.as_deref() {
            Some(t) => {
                let t: IdentityType = t.parse().map_err(|e: scaivault_domain::IdentityTypeError| {
                    CoreError::InvalidRequest(e.to_string())
                })?;
                if t == IdentityType::Group {
                    return Err(CoreError::InvalidRequest(
                        "a token belongs to a user or a service account, not a group".into(),
                    ));
                }
                t.as_str().to_owned()
            }
            None => principal.identity_type().to_owned(),
        };
        let identity_id = req.identity_id.unwrap_or_else(|| principal.identity_id().to_owned());
        // The same rule as a binding's identity: a token no binding could ever name is refused.
        crate::policies::check_identity_id(&identity_id)?;
        let name = req.name.unwrap_or_else(|| "token".to_owned());
        check_label("name", &name)?;
        if req.groups.len() > MAX_GROUPS {
            return Err(CoreError::InvalidRequest(format!("a token carries at most {MAX_GROUPS} groups")));
        }
        for g in &req.groups {
            crate::policies::check_identity_id(g).map_err(|_| {
                CoreError::InvalidRequest(format!(
                    "each group must be 1-{} characters without control characters or surrounding spaces",
                    crate::policies::MAX_IDENTITY
                ))
            })?;
        }
        let ttl = DurationSpec::parse(req.ttl.as_deref().unwrap_or(DEFAULT_TTL))
            .map_err(|e| CoreError::InvalidRequest(format!("ttl: {e}")))?;
        if ttl.as_secs() == 0 {
            return Err(CoreError::InvalidRequest("ttl must be longer than zero".into()));
        }
        let tenant = self.token_tenant(principal, req.tenant_id.as_deref()).await?;
        let roles = self.token_roles(principal, &req.roles, &tenant)?;
        let now = self.clock.now();
        // A token never outlives the credential that issued it (unless a system administrator issues it).
        let mut expires_at = now + ttl.as_chrono();
        if let Some(limit) = principal.expires_at.filter(|_| !principal.is_system_admin()) {
            expires_at = expires_at.min(limit);
        }
        let token = generate_token()?;
        let record = NewToken {
            id: random_id("tok_")?,
            tenant: tenant.id,
            hash: hash_token(token.expose()),
            name,
            identity_type,
            identity_id,
            scopes,
            groups: req.groups,
            is_root: false,
            roles,
            created_by: principal.actor(),
            created_at: now,
            expires_at: Some(expires_at),
            // A personal access token is the parent of what it issues: revoking it revokes them.
            // The root token's are independent (revoking root after bootstrap is the advice),
            // and a JWT cannot be revoked.
            parent: (principal.kind == TokenKind::PersonalAccessToken).then(|| principal.token_id.clone()),
        };
        self.store.create_token(record.clone()).await.map_err(|e| match e {
            // The issuing token was revoked while this request ran.
            scaivault_store::StoreError::NotFound => CoreError::TokenExpired("the token has been revoked"),
            other => other.into(),
        })?;
        tracing::info!(token_id = %record.id, "token issued");
        Ok(CreatedToken {
            id: record.id,
            tenant_id: record.tenant,
            roles: record.roles,
            token: String::from_utf8(token.expose().to_vec())
                .map_err(|_| CoreError::Internal("token is not text".into()))?,
            name: record.name,
            identity_type: record.identity_type,
            identity_id: record.identity_id,
            scopes: record.scopes,
            groups: record.groups,
            created_at: record.created_at,
            expires_at: record.expires_at,
        })
    }

    /// `GET /v1/auth/tokens`: records of the caller's tenant, never the tokens.
    pub async fn list_tokens(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<TokenList, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("tokens", cursor)?;
        let records = self.store.list_tokens(principal.tenant(), after.as_deref(), limit).await?;
        let next_cursor = next_cursor("tokens", &records, limit, |r| r.id.clone());
        Ok(TokenList { tokens: records.into_iter().map(token_info).collect(), next_cursor })
    }

    /// `DELETE /v1/auth/tokens/{id}`: effective on the very next request.
    pub async fn revoke_token(&self, principal: &Principal, id: &str) -> Result<(), CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let target =
            self.store.get_token(principal.tenant(), id).await?.ok_or(CoreError::NotFound("token"))?;
        // The root token and tokens carrying roles are administrators' keys: only a system
        // administrator may take them away, so a tenant admin cannot lock everyone out.
        if (target.is_root || !target.roles.is_empty()) && !principal.is_system_admin() {
            return Err(CoreError::AccessDenied("only a system administrator may revoke this token".into()));
        }
        // Cached tokens are keyed by hash, which a revocation does not name: all of them go.
        let revoked = invalidating(
            || self.caches.tokens.clear(),
            self.store.revoke_token(principal.tenant(), id, self.clock.now()),
        )
        .await;
        let count = revoked.map_err(|e| match e {
            scaivault_store::StoreError::NotFound => CoreError::NotFound("token"),
            other => other.into(),
        })?;
        tracing::info!(token_id = %id, revoked = count, "token revoked with the tokens it issued");
        Ok(())
    }

    /// `GET /v1/auth/whoami`: any valid token may ask who it is, and which policies (bound to its
    /// identity or one of its groups) it holds.
    pub async fn whoami(&self, principal: &Principal) -> Result<WhoAmI, CoreError> {
        let policies = self.access(principal).await?.policy_names();
        // The partner of the tenant the caller is in: an administrator acting as a tenant is in it.
        let partner_id = if principal.acting {
            self.tenant_record(&principal.tenant).await?.and_then(|t| t.partner_id.clone())
        } else {
            principal.partner_id.clone()
        };
        Ok(WhoAmI {
            identity_type: principal.identity_type.clone(),
            identity_id: principal.identity_id.clone(),
            tenant_id: principal.tenant.clone(),
            partner_id,
            token_type: principal.kind.as_str().to_owned(),
            token_id: (principal.kind != TokenKind::Jwt).then(|| principal.token_id.clone()),
            scopes: principal.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            groups: principal.groups.clone(),
            roles: if principal.kind == TokenKind::Root {
                vec![crate::auth::SYSTEM_ADMIN.to_owned()]
            } else {
                principal.roles.clone()
            },
            acting_as_tenant: principal.acting,
            policies,
            expires_at: principal.expires_at,
        })
    }
}
