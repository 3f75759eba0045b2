//! Envelope encryption for ScaiVault: a fresh AES-256-GCM data key per secret version, wrapped by a
//! versioned master key, which is itself wrapped by the root key that comes from a key file or the
//! environment. This crate also mints and hashes access tokens and random ids, and provides the
//! HMAC-SHA256 that webhook signatures use.
//!
//! It is the only crate that touches ring's AEAD. It never does storage or network I/O (the key file is
//! the one exception), never logs, and never lets key or plaintext bytes out except through
//! [`SecretBytes`], which zeroizes on drop and prints `[redacted]`.

mod audit;
mod cursor;
mod envelope;
mod error;
mod hmac;
mod jwt;
mod keyfile;
mod keyring;
mod secret;
mod token;

pub use audit::{AuditKey, GENESIS_HASH, chain_hash};
pub use cursor::CursorKey;
pub use envelope::{SealContext, SealedSecret};
pub use error::{CryptoError, CryptoErrorKind};
pub use hmac::{hmac_sha256, random_bytes, sha1_thumbprint, sha256, verify_hmac_sha256};
pub use jwt::{JwtSigningKey, RING_JWT_PROVIDER, install_jwt_crypto_provider};
pub use keyfile::{load_or_create_key_file, root_key_from_base64};
pub use keyring::{KeyRing, RootKey, StoredMasterKey};
pub use secret::SecretBytes;
pub use token::{
    TOKEN_PREFIX, TokenHash, generate_token, hash_token, random_from_alphabet, random_id, random_string,
};
