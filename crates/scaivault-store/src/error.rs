use thiserror::Error;

/// Storage failures, named by what went wrong for the caller.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("secret not found")]
    SecretNotFound,
    #[error("version {0} not found")]
    VersionNotFound(u64),
    #[error("not found")]
    NotFound,
    #[error("check-and-set failed: the current version is {current}")]
    CasMismatch { current: u64 },
    #[error("already exists")]
    AlreadyExists,
    /// A typeless write was checked against one type and the secret has another by now.
    #[error("the secret's type changed to {current} while the write was checked")]
    TypeChanged { current: scaivault_domain::SecretType },
    /// A federation backend's mount would contain, or lie inside, another backend's mount.
    #[error("the mount overlaps federation backend {id}'s mount '{mount}'")]
    MountTaken { id: String, mount: String },
    /// The tenant holds as many of these as it may.
    #[error("a tenant has at most {limit} {what}")]
    LimitReached { what: &'static str, limit: u32 },
    #[error("sealing failed: {0}")]
    Seal(#[from] scaivault_crypto::CryptoError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A row the change needs is locked by another transaction and the backend would not wait for
    /// it here (PostgreSQL's group writer retries such a write itself).
    #[error("a row this change needs is locked by another transaction")]
    RowLocked,
    #[error("the audit record cannot be written: {0}")]
    AuditUnavailable(String),
    #[error("storage error: {0}")]
    Backend(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    Conflict,
    Corrupt,
    Unavailable,
    Internal,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::SecretNotFound | StoreError::VersionNotFound(_) | StoreError::NotFound => {
                StoreErrorKind::NotFound
            }
            StoreError::CasMismatch { .. }
            | StoreError::AlreadyExists
            | StoreError::TypeChanged { .. }
            | StoreError::MountTaken { .. }
            | StoreError::LimitReached { .. } => StoreErrorKind::Conflict,
            StoreError::Corrupt(_) => StoreErrorKind::Corrupt,
            StoreError::Unavailable(_) | StoreError::RowLocked | StoreError::AuditUnavailable(_) => {
                StoreErrorKind::Unavailable
            }
            StoreError::Seal(_) | StoreError::Backend(_) => StoreErrorKind::Internal,
        }
    }
}

/// Whether `e` is the database refusing a row for its content (a unique, foreign-key, not-null or
/// check constraint), as opposed to refusing to write at all. A secret write's rows and its audit
/// record go in one command, so its failure is put down to the audit log unless it is this.
pub fn violates_constraint(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| !matches!(d.kind(), sqlx::error::ErrorKind::Other))
}
