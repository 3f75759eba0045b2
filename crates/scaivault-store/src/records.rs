use chrono::{DateTime, Utc};
use scaivault_crypto::{SealedSecret, TokenHash};
use scaivault_domain::{SecretMetadata, SecretPath, SecretType};

/// A write of a new version. `None` fields keep what the secret already has (or the default on the
/// first write).
#[derive(Debug, Clone)]
pub struct WriteSecret<'a> {
    pub tenant: &'a str,
    pub path: &'a SecretPath,
    pub secret_type: Option<SecretType>,
    /// Without `secret_type`: the stored type the data was checked against, if it needed one. The
    /// write is refused (`TypeChanged`) if the secret's type is another by the time it commits.
    pub checked_type: Option<SecretType>,
    pub metadata: Option<SecretMetadata>,
    pub max_versions: Option<u32>,
    /// The version the writer believes is current; `Some(0)` means "must not exist".
    pub cas: Option<u64>,
    pub created_by: &'a str,
    pub now: DateTime<Utc>,
}

pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// What a write stores over the secret's live head (`None` if it has no version yet), decided the
/// same way by every backend.
#[derive(Debug)]
pub struct WritePlan {
    /// The version the write replaces (0 for the first).
    pub current: u64,
    pub version: u64,
    pub secret_type: SecretType,
    pub metadata: SecretMetadata,
    pub max_versions: u32,
}

impl WritePlan {
    /// Refuses a write whose `cas` is not the current version; otherwise the next version and the
    /// settings it keeps (the write's own, else the secret's, else the defaults).
    pub fn new(w: &WriteSecret<'_>, existing: Option<&SecretHead>) -> Result<WritePlan, crate::StoreError> {
        let current = existing.map_or(0, |h| h.current_version);
        if let Some(cas) = w.cas
            && cas != current
        {
            return Err(crate::StoreError::CasMismatch { current });
        }
        let secret_type = w.secret_type.or(existing.map(|h| h.secret_type)).unwrap_or_default();
        if w.secret_type.is_none()
            && let Some(checked) = w.checked_type
            && checked != secret_type
        {
            return Err(crate::StoreError::TypeChanged { current: secret_type });
        }
        Ok(WritePlan {
            current,
            version: current + 1,
            secret_type,
            metadata: w.metadata.clone().or_else(|| existing.map(|h| h.metadata.clone())).unwrap_or_default(),
            max_versions: w.max_versions.or(existing.map(|h| h.max_versions)).unwrap_or(DEFAULT_MAX_VERSIONS),
        })
    }
}

#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub head: SecretHead,
    pub version: u64,
    pub created: bool,
    pub created_at: DateTime<Utc>,
}

/// A secret without any version's data.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretHead {
    pub path: String,
    pub secret_type: SecretType,
    pub metadata: SecretMetadata,
    pub current_version: u64,
    pub max_versions: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One version's record; `sealed` is `None` once destroyed.
#[derive(Debug, Clone)]
pub struct SecretVersionRow {
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub destroyed_at: Option<DateTime<Utc>>,
    pub sealed: Option<SealedSecret>,
}

#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub head: SecretHead,
    pub version: SecretVersionRow,
}

#[derive(Debug, Clone, Default)]
pub struct SecretListQuery<'a> {
    pub prefix: Option<&'a str>,
    pub tag: Option<&'a str>,
    /// Exclusive: list paths strictly after this one.
    pub after: Option<&'a str>,
    pub limit: u32,
}

impl SecretListQuery<'_> {
    /// The range `[prefix, upper)` holding exactly the paths that start with the prefix (in code
    /// point order, which is byte order for UTF-8 and the order of both stores' path index), so a
    /// list seeks to its prefix and stops after it instead of filtering every path. `None` without
    /// a prefix, or for one no string can follow.
    pub fn prefix_range(&self) -> Option<(&str, String)> {
        let prefix = self.prefix.filter(|p| !p.is_empty())?;
        let mut upper: Vec<char> = prefix.chars().collect();
        while let Some(last) = upper.pop() {
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                upper.push(next);
                return Some((prefix, upper.into_iter().collect()));
            }
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub tenant: String,
    pub hash: TokenHash,
    pub name: String,
    pub identity_type: String,
    pub identity_id: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub is_root: bool,
    /// `partner_admin` / `system_admin`, granted by a system administrator.
    pub roles: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The token that issued this one, which takes it along when revoked; `None` for the root
    /// token and for tokens issued by root or by a JWT.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub identity_type: String,
    pub identity_id: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub is_root: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub roles: Vec<String>,
    /// The partner of the token's tenant.
    pub partner_id: Option<String>,
    /// The tenant's policy epoch when the token was read (see [`crate::PolicyStore`]).
    pub policy_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// Wraps reserved durably for this version (an upper bound of the real count).
    pub wraps: u64,
    /// Secret versions whose data key is wrapped by this version now.
    pub data_keys: u64,
}

/// A data key that is wrapped by an old master key version and waits to be re-wrapped.
#[derive(Debug, Clone)]
pub struct RewrapItem {
    pub tenant: String,
    pub path: String,
    pub version: u64,
    pub sealed: SealedSecret,
}

/// Timestamps are kept as Unix microseconds in every backend.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(micros: i64) -> Result<DateTime<Utc>, crate::StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("timestamp {micros}")))
}

pub fn opt_from_micros(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, crate::StoreError> {
    micros.map(from_micros).transpose()
}

fn non_negative(value: i64, what: &str) -> Result<u64, crate::StoreError> {
    u64::try_from(value).map_err(|_| crate::StoreError::Corrupt(format!("negative {what}")))
}

/// The columns of a `secrets` row, as both backends read them.
#[derive(Debug)]
pub struct SecretHeadColumns {
    pub path: String,
    pub secret_type: String,
    pub metadata: String,
    pub current_version: i64,
    pub max_versions: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

fn parse_secret_type(text: &str, path: &str) -> Result<SecretType, crate::StoreError> {
    text.parse().map_err(|_| crate::StoreError::Corrupt(format!("secret type of {path}")))
}

fn parse_metadata(text: &str, path: &str) -> Result<SecretMetadata, crate::StoreError> {
    serde_json::from_str(text).map_err(|_| crate::StoreError::Corrupt(format!("metadata of {path}")))
}

impl TryFrom<SecretHeadColumns> for SecretHead {
    type Error = crate::StoreError;

    fn try_from(c: SecretHeadColumns) -> Result<Self, Self::Error> {
        Ok(SecretHead {
            secret_type: parse_secret_type(&c.secret_type, &c.path)?,
            metadata: parse_metadata(&c.metadata, &c.path)?,
            current_version: non_negative(c.current_version, "version")?,
            max_versions: u32::try_from(c.max_versions)
                .map_err(|_| crate::StoreError::Corrupt("max_versions".into()))?,
            created_at: from_micros(c.created_at)?,
            updated_at: from_micros(c.updated_at)?,
            deleted_at: opt_from_micros(c.deleted_at)?,
            path: c.path,
        })
    }
}

/// A live secret as a list shows it: the columns of [`SecretHead`] a list answers, and no more
/// (every column read costs a copy per row).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSummary {
    pub path: String,
    pub secret_type: SecretType,
    pub metadata: SecretMetadata,
    pub current_version: u64,
    pub updated_at: DateTime<Utc>,
}

impl From<SecretHead> for SecretSummary {
    fn from(h: SecretHead) -> Self {
        SecretSummary {
            path: h.path,
            secret_type: h.secret_type,
            metadata: h.metadata,
            current_version: h.current_version,
            updated_at: h.updated_at,
        }
    }
}

/// The columns of a list's row ([`SUMMARY_COLUMNS`]), as both backends read them.
#[derive(Debug)]
pub struct SecretSummaryColumns {
    pub path: String,
    pub secret_type: String,
    pub metadata: String,
    pub current_version: i64,
    pub updated_at: i64,
}

/// What a list selects from `secrets`, in both backends.
pub const SUMMARY_COLUMNS: &str = "path, secret_type, metadata, current_version, updated_at";

impl TryFrom<SecretSummaryColumns> for SecretSummary {
    type Error = crate::StoreError;

    fn try_from(c: SecretSummaryColumns) -> Result<Self, Self::Error> {
        Ok(SecretSummary {
            secret_type: parse_secret_type(&c.secret_type, &c.path)?,
            metadata: parse_metadata(&c.metadata, &c.path)?,
            current_version: non_negative(c.current_version, "version")?,
            updated_at: from_micros(c.updated_at)?,
            path: c.path,
        })
    }
}

/// The columns of a `secret_versions` row.
#[derive(Debug)]
pub struct VersionColumns {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub destroyed_at: Option<i64>,
    pub key_version: Option<i64>,
    pub wrapped_dek: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
}

impl TryFrom<VersionColumns> for SecretVersionRow {
    type Error = crate::StoreError;

    fn try_from(c: VersionColumns) -> Result<Self, Self::Error> {
        let sealed = match (c.key_version, c.wrapped_dek, c.ciphertext) {
            (Some(kv), Some(dek), Some(ct)) => Some(SealedSecret::from_stored(
                u32::try_from(kv).map_err(|_| crate::StoreError::Corrupt("key version".into()))?,
                dek,
                ct,
            )),
            _ => None,
        };
        Ok(SecretVersionRow {
            version: non_negative(c.version, "version")?,
            created_at: from_micros(c.created_at)?,
            created_by: c.created_by,
            expires_at: opt_from_micros(c.expires_at)?,
            destroyed_at: opt_from_micros(c.destroyed_at)?,
            sealed,
        })
    }
}

/// The columns of a `tokens` row.
#[derive(Debug)]
pub struct TokenColumns {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub identity_type: String,
    pub identity_id: String,
    pub scopes: String,
    pub groups: String,
    pub is_root: bool,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub roles: String,
    pub partner_id: Option<String>,
    pub policy_epoch: i64,
}

impl TryFrom<TokenColumns> for TokenRecord {
    type Error = crate::StoreError;

    fn try_from(c: TokenColumns) -> Result<Self, Self::Error> {
        let list = |s: &str| {
            serde_json::from_str::<Vec<String>>(s)
                .map_err(|_| crate::StoreError::Corrupt(format!("token {}", c.id)))
        };
        Ok(TokenRecord {
            scopes: list(&c.scopes)?,
            groups: list(&c.groups)?,
            created_at: from_micros(c.created_at)?,
            expires_at: opt_from_micros(c.expires_at)?,
            revoked_at: opt_from_micros(c.revoked_at)?,
            policy_epoch: c.policy_epoch,
            roles: list(&c.roles)?,
            partner_id: c.partner_id,
            id: c.id,
            tenant: c.tenant,
            name: c.name,
            identity_type: c.identity_type,
            identity_id: c.identity_id,
            is_root: c.is_root,
            created_by: c.created_by,
        })
    }
}

/// Encodes a string list column.
pub fn list_json(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// The oldest version that survives pruning after `current` was written with `max_versions` kept.
pub fn oldest_kept(current: u64, max_versions: u32) -> u64 {
    current.saturating_sub(u64::from(max_versions)) + 1
}

/// A policy as stored; `rules` is the JSON array the API accepted (storage does not interpret it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A binding of a policy to a service account, user or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub tenant: String,
    pub id: String,
    pub policy_id: String,
    pub identity_type: String,
    pub identity_id: String,
    pub created_at: DateTime<Utc>,
}

/// Every policy and binding of a tenant at `epoch` (read epoch first, so the data is never older).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySnapshot {
    pub epoch: i64,
    pub policies: Vec<PolicyRecord>,
    pub bindings: Vec<BindingRecord>,
}

/// The columns of a `policies` row.
#[derive(Debug)]
pub struct PolicyColumns {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<PolicyColumns> for PolicyRecord {
    type Error = crate::StoreError;

    fn try_from(c: PolicyColumns) -> Result<Self, Self::Error> {
        Ok(PolicyRecord {
            created_at: from_micros(c.created_at)?,
            updated_at: from_micros(c.updated_at)?,
            tenant: c.tenant,
            id: c.id,
            name: c.name,
            description: c.description,
            rules: c.rules,
        })
    }
}

/// The columns of a `policy_bindings` row.
#[derive(Debug)]
pub struct BindingColumns {
    pub tenant: String,
    pub id: String,
    pub policy_id: String,
    pub identity_type: String,
    pub identity_id: String,
    pub created_at: i64,
}

impl TryFrom<BindingColumns> for BindingRecord {
    type Error = crate::StoreError;

    fn try_from(c: BindingColumns) -> Result<Self, Self::Error> {
        Ok(BindingRecord {
            created_at: from_micros(c.created_at)?,
            tenant: c.tenant,
            id: c.id,
            policy_id: c.policy_id,
            identity_type: c.identity_type,
            identity_id: c.identity_id,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerRecord {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub partner_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An audit record to append: the canonical `body` plus the fields indexed for queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub tenant: String,
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub identity_id: String,
    pub action: String,
    pub secret_path: Option<String>,
    pub outcome: String,
    pub body: String,
}

/// A stored audit record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub tenant: String,
    pub seq: u64,
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub identity_id: String,
    pub action: String,
    pub secret_path: Option<String>,
    pub outcome: String,
    pub body: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The signed newest record of a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Filters of `GET /v1/audit`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub identity_id: Option<&'a str>,
    pub secret_path: Option<&'a str>,
    pub action: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// The order of an audit page; the cursor is the last `seq` seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOrder {
    OldestFirst,
    NewestFirst,
}

#[cfg(test)]
mod tests {
    use super::SecretListQuery;

    fn range(prefix: &str) -> Option<(String, String)> {
        SecretListQuery { prefix: Some(prefix), ..SecretListQuery::default() }
            .prefix_range()
            .map(|(l, h)| (l.to_owned(), h))
    }

    #[test]
    fn prefix_ranges_hold_exactly_the_prefixed_paths() {
        assert_eq!(range("fleet/t0007/s00"), Some(("fleet/t0007/s00".into(), "fleet/t0007/s01".into())));
        assert_eq!(range("a/"), Some(("a/".into(), "a0".into())));
        assert_eq!(range(""), None);
        // The code point after a surrogate gap, and a last character that cannot grow.
        assert_eq!(range("x\u{D7FF}"), Some(("x\u{D7FF}".into(), "x\u{E000}".into())));
        assert_eq!(range("y\u{10FFFF}"), Some(("y\u{10FFFF}".into(), "z".into())));
        let (low, high) = range("db/").expect("range");
        for path in ["db/", "db/a", "db/\u{10FFFF}", "db/zzz"] {
            assert!(low.as_str() <= path && path < high.as_str(), "{path}");
        }
        for path in ["db", "db.", "db0", "dc/"] {
            assert!(!(low.as_str() <= path && path < high.as_str()), "{path}");
        }
    }
}
