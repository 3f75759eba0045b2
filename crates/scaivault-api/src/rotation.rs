use chrono::{DateTime, Utc};
use scaivault_domain::{DurationList, DurationSpec};
use scaivault_rotation::Generator;
use serde::{Deserialize, Serialize};

/// `POST /v1/rotation/policies`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicyRequest {
    /// 1-64 of `a-z 0-9 - _`; the id is `rot_` + name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub interval: DurationSpec,
    /// How long a superseded version stays readable (default `24h`).
    #[serde(default)]
    pub grace_period: Option<DurationSpec>,
    #[serde(default)]
    pub warn_before: Option<DurationList>,
    #[serde(default)]
    pub auto_generate: bool,
    /// For `auto_generate` (default: `password`, 32 characters, alphanumeric).
    #[serde(default)]
    pub generator: Option<Generator>,
    /// Webhooks that get this policy's events besides those subscribed by their filters.
    #[serde(default)]
    pub webhook_ids: Vec<String>,
    /// How long a due rotation waits for its new version (default `24h`).
    #[serde(default)]
    pub rotation_timeout: Option<DurationSpec>,
}

/// `PATCH /v1/rotation/policies/{id}`: absent fields keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRotationPolicyRequest {
    pub description: Option<String>,
    pub interval: Option<DurationSpec>,
    pub grace_period: Option<DurationSpec>,
    pub warn_before: Option<DurationList>,
    pub auto_generate: Option<bool>,
    pub generator: Option<Generator>,
    pub webhook_ids: Option<Vec<String>>,
    pub rotation_timeout: Option<DurationSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationPolicyResponse {
    pub id: String,
    pub name: String,
    pub description: String,
    pub interval: DurationSpec,
    pub grace_period: DurationSpec,
    pub warn_before: DurationList,
    pub auto_generate: bool,
    pub generator: Option<Generator>,
    pub webhook_ids: Vec<String>,
    pub rotation_timeout: DurationSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationPolicyList {
    pub policies: Vec<RotationPolicyResponse>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/rotation/policies/{id}/secrets`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRotationRequest {
    pub secret_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationAssignment {
    pub secret_path: String,
    pub policy_id: String,
    pub next_rotation_at: DateTime<Utc>,
    pub last_rotated_at: Option<DateTime<Utc>>,
    /// `scheduled`, `due` or `failed`.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationAssignmentList {
    pub secrets: Vec<RotationAssignment>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/rotation/policies/{id}/rotate`: these secrets (none: every assigned one) are due now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceRotationRequest {
    #[serde(default)]
    pub secret_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForceRotationResponse {
    pub secrets: Vec<RotationAssignment>,
}

/// One identity still on a superseded version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StaleReader {
    pub identity_type: String,
    pub identity_id: String,
    pub last_read_at: DateTime<Utc>,
    pub last_read_version: u64,
}

/// `GET /v1/rotation/policies/{id}/secrets/{path}/readers`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StaleReaders {
    pub secret_path: String,
    pub current_version: u64,
    /// When the version before the current one stops being readable.
    pub grace_expires_at: Option<DateTime<Utc>>,
    pub readers: Vec<StaleReader>,
}
