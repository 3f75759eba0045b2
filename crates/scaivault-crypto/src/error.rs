use thiserror::Error;

/// Everything that can go wrong in this crate. Messages never carry key or plaintext bytes.
#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("decryption failed: the ciphertext, its binding or its key does not verify")]
    Decrypt,
    #[error("unknown master key version {0}")]
    UnknownKeyVersion(u32),
    #[error("the root key does not unwrap master key version {0}: wrong root key for this storage")]
    WrongRootKey(u32),
    #[error("master key version {0} has no reserved wrap budget left")]
    WrapBudgetExhausted(u32),
    #[error("the key ring has no master key yet")]
    EmptyKeyRing,
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random generator failed")]
    Random,
}

/// A transport-neutral classification used by callers to map errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoErrorKind {
    /// Stored data is corrupt or was moved: never return wrong data, fail the read.
    Integrity,
    /// Configuration or key material is wrong.
    Config,
    /// A transient internal condition (budget exhausted, random source).
    Internal,
}

impl CryptoError {
    pub fn kind(&self) -> CryptoErrorKind {
        match self {
            CryptoError::Decrypt | CryptoError::UnknownKeyVersion(_) => CryptoErrorKind::Integrity,
            CryptoError::WrongRootKey(_) | CryptoError::InvalidKey(_) | CryptoError::KeyFile { .. } => {
                CryptoErrorKind::Config
            }
            CryptoError::WrapBudgetExhausted(_) | CryptoError::EmptyKeyRing | CryptoError::Random => {
                CryptoErrorKind::Internal
            }
        }
    }
}
