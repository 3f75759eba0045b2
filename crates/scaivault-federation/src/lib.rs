//! Federation: ScaiVault in front of an existing secret store.
//!
//! This crate holds what is specific to each external store and nothing of ScaiVault's own state:
//! the configuration vocabulary of a backend ([`BackendType`], [`Mode`], [`ConflictResolution`]),
//! the ordered path mapping from ScaiVault paths to the backend's own names ([`PathMapping`]), and
//! one adapter per store behind the [`Backend`] trait. Core decides who may read what, audits, and
//! stores configurations; an adapter only talks to its store.
//!
//! Adapters so far: HashiCorp Vault and OpenBao, KV version 2 ([`VaultBackend`]), and AWS Secrets
//! Manager ([`AwsBackend`], Signature Version 4 with static keys or an assumed role's), Azure Key
//! Vault ([`AzureBackend`]) and GCP Secret Manager ([`GcpBackend`]).

mod aws;
mod aws_auth;
mod azure;
mod config;
mod env;
mod error;
mod gcp;
mod mapping;
mod rest;
mod sigv4;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod vault;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use aws::{AwsBackend, AwsConnection, AwsCredentials, service_url};
pub use aws_auth::{AwsAuth, RoleSource, check_ambient_endpoint, check_external_id, check_role_arn};
pub use azure::{
    AzureBackend, AzureClientCertificate, AzureClientSecret, AzureConnection, AzureCredential, azure_urls,
    check_managed_identity_vault,
};
pub use config::{BackendType, ConflictResolution, Mode};
pub use env::ServerEnvironment;
pub use error::FederationError;
pub use gcp::{
    GcpAuth, GcpBackend, GcpConnection, GcpServiceAccount, check_project_id,
    check_workload_identity_endpoint, gcp_base_url,
};
pub use mapping::{MappingError, MappingRule, PathMapping};
pub use rest::in_clear;
pub use sync::{LastSync, MAX_PULLED_VERSIONS, SyncAction, decide};
pub use vault::{
    AwsLoginKeys, GcpLoginSigner, Login, ServiceAccountToken, VaultAuth, VaultBackend, VaultConnection,
};

pub(crate) use sigv4::hex;

/// One secret as an external store holds it, already in ScaiVault's value shape.
#[derive(Clone, PartialEq)]
pub struct ExternalSecret {
    /// ScaiVault's `data`: a Vault KV v2 secret's `data` object as it is.
    pub data: Map<String, Value>,
    /// The store's custom metadata (Vault's `custom_metadata`), ScaiVault's `metadata.custom`.
    pub custom: BTreeMap<String, String>,
    /// The store's version number of this value, where it keeps versions.
    pub version: Option<u64>,
    /// When the store says this value was written.
    pub created_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ExternalSecret {
    /// The values are never printed, only their field names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSecret")
            .field("fields", &self.data.keys().collect::<Vec<_>>())
            .field("custom", &self.custom)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One version of a secret as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteVersion {
    /// The store's own id of the version: Vault's number, AWS's `VersionId`, or, where the store
    /// keeps no versions (Vault KV v1), a digest of the value.
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// At most this many names are listed in one sync of a backend.
pub const MAX_LISTED: usize = 10_000;

/// An external secret store, addressed by its own names (the targets of a [`PathMapping`]).
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The secret the store calls `target`: its current value, or `version` where the store keeps
    /// versions.
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError>;

    /// Whether the store answers, with the caller's credential (for a backend's status).
    async fn check(&self) -> Result<(), FederationError>;

    /// Every secret name beginning with `prefix` (the literal start of a mapping target: empty or
    /// ending in `/`), in the store's order; more than `limit` is an error.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, FederationError>;

    /// The readable versions of `target`, oldest first; the last is the current one.
    async fn versions(&self, target: &str) -> Result<Vec<RemoteVersion>, FederationError>;

    /// The version of `target` that [`Backend::versions`] called `id`.
    async fn read_version(&self, target: &str, id: &str) -> Result<ExternalSecret, FederationError>;

    /// Stores `data` as the new current value of `target` (creating it if need be) and answers
    /// the version it became.
    async fn write(&self, target: &str, data: &Map<String, Value>) -> Result<RemoteVersion, FederationError>;
}

/// A digest standing for a value, for stores that keep no version ids.
pub(crate) fn digest_of(data: &Map<String, Value>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    format!("sha256:{}", hex(&scaivault_crypto::sha256(&[&bytes])))
}

/// More names than a sync takes.
pub(crate) fn too_many(limit: usize) -> FederationError {
    FederationError::Unsupported(format!(
        "the backend holds more than {limit} secrets under the mapping; narrow the path_mapping"
    ))
}
