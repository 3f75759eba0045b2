use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/auth/tokens`
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<String>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// A duration such as `90d` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Issue for another tenant (system administrators, or partner administrators for their tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `partner_admin` and/or `system_admin`; only a system administrator may grant them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The one response that shows a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
    pub name: String,
    pub identity_type: String,
    pub identity_id: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token record; never the token itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
    pub name: String,
    pub identity_type: String,
    pub identity_id: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/auth/whoami`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {
    pub identity_type: String,
    pub identity_id: String,
    pub tenant_id: String,
    pub partner_id: Option<String>,
    pub token_type: String,
    pub token_id: Option<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// True when a partner or system administrator acts as this tenant (`/v1/t/{tenant}/…`).
    pub acting_as_tenant: bool,
    pub policies: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}
