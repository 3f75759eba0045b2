//! Federation: ScaiVault in front of an existing secret store.
//!
//! This crate holds what is specific to each external store and nothing of ScaiVault's own state:
//! the configuration vocabulary of a backend ([`BackendType`], [`Mode`], [`ConflictResolution`]),
//! the ordered path mapping from ScaiVault paths to the backend's own names ([`PathMapping`]), and
//! one adapter per store behind the [`Backend`] trait. Core decides who may read what, audits, and
//! stores configurations; an adapter only talks to its store.
//!
//! Adapters so far: HashiCorp Vault and OpenBao, KV version 2 ([`VaultBackend`]), and AWS Secrets
//! Manager ([`AwsBackend`], Signature Version 4 with static keys).

mod aws;
mod config;
mod error;
mod mapping;
mod sigv4;
#[cfg(feature = "testing")]
pub mod testing;
mod vault;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use aws::{AwsBackend, AwsConnection, AwsCredentials, service_url};
pub use config::{BackendType, ConflictResolution, Mode};
pub use error::FederationError;
pub use mapping::{MappingError, MappingRule, PathMapping};
pub use vault::{VaultAuth, VaultBackend, VaultConnection};

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

/// An external secret store, addressed by its own names (the targets of a [`PathMapping`]).
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The secret the store calls `target`: its current value, or `version` where the store keeps
    /// versions.
    async fn read(&self, target: &str, version: Option<u64>) -> Result<ExternalSecret, FederationError>;

    /// Whether the store answers, with the caller's credential (for a backend's status).
    async fn check(&self) -> Result<(), FederationError>;
}
