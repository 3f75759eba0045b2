use scaivault_api::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList, WhoAmI};
use scaivault_crypto::{generate_token, hash_token, random_id};
use scaivault_domain::{DurationSpec, IdentityType, Scope};
use scaivault_store::{NewToken, TokenRecord};

use crate::paging::{decode_cursor, encode_cursor, limit};
use crate::{CoreError, Principal, TokenKind, Vault};

const DEFAULT_TTL: &str = "90d";
const MAX_NAME: usize = 128;

fn token_info(r: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: r.id,
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
        check_label("identity_id", &identity_id)?;
        let name = req.name.unwrap_or_else(|| "token".to_owned());
        check_label("name", &name)?;
        for g in &req.groups {
            check_label("each group", g)?;
        }
        let ttl = DurationSpec::parse(req.ttl.as_deref().unwrap_or(DEFAULT_TTL))
            .map_err(|e| CoreError::InvalidRequest(format!("ttl: {e}")))?;
        if ttl.as_secs() == 0 {
            return Err(CoreError::InvalidRequest("ttl must be longer than zero".into()));
        }
        let now = self.clock.now();
        let token = generate_token()?;
        let record = NewToken {
            id: random_id("tok_")?,
            tenant: principal.tenant().to_owned(),
            hash: hash_token(token.expose()),
            name,
            identity_type,
            identity_id,
            scopes,
            groups: req.groups,
            is_root: false,
            created_by: principal.actor(),
            created_at: now,
            expires_at: Some(now + ttl.as_chrono()),
        };
        self.store.create_token(record.clone()).await?;
        tracing::info!(token_id = %record.id, "token issued");
        Ok(CreatedToken {
            id: record.id,
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
        let after = decode_cursor(cursor)?;
        let records = self.store.list_tokens(principal.tenant(), after.as_deref(), limit).await?;
        let next_cursor =
            (records.len() as u32 == limit).then(|| records.last().map(|r| encode_cursor(&r.id))).flatten();
        Ok(TokenList { tokens: records.into_iter().map(token_info).collect(), next_cursor })
    }

    /// `DELETE /v1/auth/tokens/{id}`: effective on the very next request.
    pub async fn revoke_token(&self, principal: &Principal, id: &str) -> Result<(), CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        self.store.revoke_token(principal.tenant(), id, self.clock.now()).await.map_err(|e| match e {
            scaivault_store::StoreError::NotFound => CoreError::NotFound("token"),
            other => other.into(),
        })?;
        tracing::info!(token_id = %id, "token revoked");
        Ok(())
    }

    /// `GET /v1/auth/whoami`: any valid token may ask who it is.
    pub fn whoami(&self, principal: &Principal) -> WhoAmI {
        WhoAmI {
            identity_type: principal.identity_type.clone(),
            identity_id: principal.identity_id.clone(),
            tenant_id: principal.tenant.clone(),
            partner_id: None,
            token_type: principal.kind.as_str().to_owned(),
            token_id: Some(principal.token_id.clone()),
            scopes: principal.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            groups: principal.groups.clone(),
            policies: match principal.kind {
                TokenKind::Root => vec!["root".to_owned()],
                TokenKind::PersonalAccessToken => Vec::new(),
            },
            expires_at: principal.expires_at,
        }
    }
}
