use chrono::{DateTime, Utc};
use scaivault_domain::{SecretMetadata, SecretType};
use serde::{Deserialize, Serialize};

/// `PUT /v1/secrets/{path}`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteSecretRequest {
    pub data: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub secret_type: Option<SecretType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SecretMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SecretOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
}

/// The answer to a write (`201` first, `200` later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretWritten {
    pub path: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    #[schemars(with = "String")]
    pub secret_type: SecretType,
    pub metadata: SecretMetadata,
}

/// `GET /v1/secrets/{path}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretResponse {
    pub path: String,
    pub version: u64,
    pub data: serde_json::Map<String, serde_json::Value>,
    #[schemars(with = "String")]
    pub secret_type: SecretType,
    pub metadata: SecretMetadata,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Active,
    Grace,
    Expired,
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretVersionInfo {
    pub version: u64,
    pub is_current: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub state: VersionState,
}

/// `GET /v1/secrets/{path}/versions`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretVersions {
    pub path: String,
    pub current_version: u64,
    /// Newest first, one page (`?limit=`, `?cursor=`).
    pub versions: Vec<SecretVersionInfo>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `PATCH /v1/secrets/{path}/metadata`: the fields given replace the stored ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMetadataRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretListItem {
    pub path: String,
    #[schemars(with = "String")]
    pub secret_type: SecretType,
    pub current_version: u64,
    pub metadata: SecretMetadata,
    pub updated_at: DateTime<Utc>,
}

/// `GET /v1/secrets`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretListItem>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/secrets/{path}/destroy`: the named versions, or all when absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestroyRequest {
    /// Absent means every version; `null` is refused rather than read as "all", so an unset
    /// variable in a client cannot erase a whole history.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_list")]
    pub versions: Option<Vec<u64>>,
}

fn present_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    Vec::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DestroyResponse {
    pub path: String,
    pub destroyed_versions: Vec<u64>,
}
