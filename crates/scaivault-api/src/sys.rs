use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /v1/health`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /v1/sys/key-status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyStatusResponse {
    pub current_key_version: u32,
    pub key_versions: Vec<KeyVersionStatus>,
    /// Data keys still wrapped by an older master key version.
    pub rewrap_pending: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyVersionStatus {
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub wraps: u64,
    pub data_keys: u64,
}
