use chrono::{DateTime, Utc};
use scaivault_domain::DurationSpec;
use serde::{Deserialize, Serialize};

/// One `{source, target}` template of a backend's `path_mapping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathMappingRule {
    /// A glob over ScaiVault paths under the mount; each `*` and `**` captures.
    pub source: String,
    /// The backend's own name, its wildcards filled in order.
    pub target: String,
    /// `proxy` or `sync` for the paths this rule maps, overriding the backend's `mode`: switching
    /// one subtree from proxy to sync is a `PATCH` of its rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// How to reach a backend. Which fields apply depends on the backend's type (Vault: `address`,
/// `namespace`, `auth_method`, `credentials_path`, `ca_cert_path`; AWS: `region`, `endpoint`,
/// `credentials_path`, `role_arn`, `external_id`; Azure: `vault_url`, `tenant_id`, `auth_method`, `authority_host`,
/// `credentials_path`; GCP: `project_id`, `auth_method`, `endpoint`, `credentials_path`).
/// `credentials_path` names the ScaiVault secret holding the credential, `ca_cert_path` one holding
/// `{"certificate": "<PEM>"}` of a private CA; neither value ever appears here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_path: Option<String>,
    #[serde(default)]
    pub ca_cert_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// AWS: the `ExternalId` the role's trust policy requires (with `role_arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Azure: another cloud's sign-in host (default `https://login.microsoftonline.com/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// `POST /v1/federation/backends`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationBackendRequest {
    /// 1-64 of `a-z 0-9 - _`, unique in the tenant.
    pub name: String,
    /// `hashicorp_vault`, `aws_secrets_manager`, `azure_key_vault` or `gcp_secret_manager`.
    #[serde(rename = "type")]
    pub backend_type: String,
    /// `proxy` (default) or `sync`.
    #[serde(default)]
    pub mode: Option<String>,
    /// The ScaiVault path prefix the backend serves.
    pub mount: String,
    pub connection: FederationConnection,
    pub path_mapping: Vec<PathMappingRule>,
    /// Default `5m`.
    #[serde(default)]
    pub sync_interval: Option<DurationSpec>,
    #[serde(default)]
    pub write_through: bool,
    /// `backend_wins` (default), `local_wins` (needs `write_through`) or `manual`.
    #[serde(default)]
    pub conflict_resolution: Option<String>,
    /// Sync mode: `federation.backend.unreachable` fires when this many syncs in a row failed
    /// (default 3).
    #[serde(default)]
    pub unreachable_after: Option<u32>,
}

/// `PATCH /v1/federation/backends/{id}`: absent fields keep their value; the type stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFederationBackendRequest {
    pub name: Option<String>,
    pub mode: Option<String>,
    pub mount: Option<String>,
    pub connection: Option<FederationConnection>,
    pub path_mapping: Option<Vec<PathMappingRule>>,
    pub sync_interval: Option<DurationSpec>,
    pub write_through: Option<bool>,
    pub conflict_resolution: Option<String>,
    pub unreachable_after: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FederationBackendResponse {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub backend_type: String,
    pub mode: String,
    pub mount: String,
    pub connection: FederationConnection,
    pub path_mapping: Vec<PathMappingRule>,
    pub sync_interval: DurationSpec,
    pub write_through: bool,
    pub conflict_resolution: String,
    pub unreachable_after: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FederationBackendList {
    pub backends: Vec<FederationBackendResponse>,
    pub next_cursor: Option<String>,
}

/// A path a sync left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkippedPath {
    pub path: String,
    pub reason: String,
}

/// `GET /v1/federation/backends/{id}/status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FederationStatus {
    /// `healthy`, `degraded` (answers, but refuses or errs) or `unreachable`.
    pub state: String,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_sync_duration_ms: Option<u64>,
    pub secrets_synced: u64,
    pub skipped: Vec<SkippedPath>,
    pub conflicts: u64,
    /// Median of this process's recent calls to the backend, in milliseconds.
    pub latency_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// `POST /v1/federation/backends/{id}/sync`, and the last one's in the backend's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncReport {
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Paths this sync changed here or in the backend.
    pub synced: u64,
    /// Paths already in step.
    pub unchanged: u64,
    /// Backend names (or paths) left out, and why.
    pub skipped: Vec<SkippedPath>,
    /// Paths that changed on both sides, and how each was settled.
    pub conflicts: Vec<SyncConflict>,
}

/// A path changed both here and in the backend since the last sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncConflict {
    pub path: String,
    /// When the backend's current version was written, where the backend says.
    pub remote_updated_at: Option<DateTime<Utc>>,
    /// When the local current version was written.
    pub local_updated_at: Option<DateTime<Utc>>,
    /// `backend_wins` or `local_wins` (settled by this sync), or `manual` (flagged, waiting for
    /// `POST …/conflicts/resolve`).
    pub resolution: String,
}

/// `GET /v1/federation/backends/{id}/conflicts`: the flagged paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncConflictList {
    pub conflicts: Vec<SyncConflict>,
}

/// `POST /v1/federation/backends/{id}/conflicts/resolve`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveConflictRequest {
    pub path: String,
    /// `local` or `backend`.
    pub winner: String,
}
