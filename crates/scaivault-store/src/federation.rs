use chrono::{DateTime, Utc};

/// A federation backend's configuration as stored. `config` is the JSON of everything the server
/// does not look up by (connection, path mapping, sync settings); it names the ScaiVault secret
/// holding the backend's credential, never the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationBackendRecord {
    pub tenant: String,
    /// `fed_…`
    pub id: String,
    /// Unique within the tenant.
    pub name: String,
    pub backend_type: String,
    pub mode: String,
    /// The ScaiVault path prefix the backend serves; unique within the tenant.
    pub mount: String,
    pub config: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
