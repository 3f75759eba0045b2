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
    /// Whether any of its paths is in sync mode (the backend's `mode`, or a mapping rule's), so
    /// the scheduler syncs it. Derived from `mode` and `config` by whoever writes the record.
    pub syncs: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl FederationBackendRecord {
    /// Whether this backend's mount and `other` are the same path, or one lies inside the other
    /// (segment by segment: `a/bc` is beside `a/b`, not inside it).
    pub fn mount_overlaps(&self, other: &str) -> bool {
        let inside = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|r| r.is_empty() || r.starts_with('/'));
        inside(&self.mount, other) || inside(other, &self.mount)
    }
}

/// What an update of a backend does with the path states its syncs recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPaths {
    Keep,
    /// Forgets them in the update's own transaction (its mount or mapping changed, so they are
    /// about paths and names it no longer serves); a refused update forgets nothing.
    Forget,
}

/// The sync schedule and last outcome of one sync-mode backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunRecord {
    pub tenant: String,
    pub backend_id: String,
    /// When the scheduler next syncs the backend.
    pub next_sync_at: DateTime<Utc>,
    /// A sync in progress holds the backend until then (a crashed one's lease runs out).
    pub lease_until: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    /// The last sync's report, as JSON.
    pub report: Option<String>,
    /// Syncs that failed in a row since the last that succeeded.
    pub consecutive_failures: u32,
}

/// What the last sync knew of one path it keeps: the backend's and the local current versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPathRecord {
    pub tenant: String,
    pub backend_id: String,
    /// The ScaiVault path.
    pub path: String,
    pub remote_version: String,
    pub local_version: u64,
    /// Flagged by a `manual` conflict: left out of syncs until resolved.
    pub conflict: bool,
    /// When the flagged conflict's two sides were written.
    pub remote_at: Option<DateTime<Utc>>,
    pub local_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}
