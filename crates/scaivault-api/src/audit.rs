use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One audit record, exactly as it is hashed into the tenant's chain. Never a value or a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: String,
    pub identity_type: String,
    pub identity_id: String,
    /// Dotted: `secret.read`, `secret.write`, `policy.create`, `token.create`, …
    pub action: String,
    pub secret_path: Option<String>,
    pub version: Option<u64>,
    /// The policy, binding (`pol_…/bnd_…`), token, webhook, subscription, rotation policy, backend,
    /// partner or tenant the request is about, when it names or creates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Whom a binding or a new token is for, as `identity_type:identity_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    pub status_code: u16,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// `GET /v1/audit` (newest first) and `GET /v1/audit/secrets/{path}` (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditList {
    pub logs: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/audit/verify`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditVerification {
    pub valid: bool,
    /// Records whose links were checked.
    pub checked: u64,
    /// The first record that was edited, or that follows a removed or moved record; `null` when
    /// valid, or when only the newest records are missing.
    pub first_invalid_id: Option<String>,
    /// What is wrong, in words; `null` when valid.
    pub reason: Option<String>,
}
