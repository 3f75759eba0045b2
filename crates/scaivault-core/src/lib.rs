//! The use cases of ScaiVault. Every request the server receives becomes one call here, which
//! authenticates the caller, authorises the action once (scopes, then policy), seals or opens secret
//! material through the crypto crate and reads or writes through the storage traits.
//!
//! This crate knows nothing of HTTP (no status codes, no routing) and nothing of SQL; it never logs a
//! secret value or token, and no error it returns carries one.

mod audit;
mod auth;
mod cache;
mod clock;
mod delivery;
mod error;
mod events;
mod federation;
mod identity_vault;
mod jwt;
mod keys;
mod paging;
mod policies;
mod ratelimit;
mod rotation;
mod secrets;
mod space;
mod sync;
mod tenancy;
mod tokens;
mod vault;
mod webhooks;

pub use audit::{AuditEvent, AuditQuery, RequestInfo, WriteAudit};
pub use auth::{Principal, TokenKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoreError;
pub use events::{DEFAULT_RETRY_SCHEDULE, DeliveryOutcomes, EventConfig, EventStream, LiveEvent};
pub use identity_vault::IdentityVault;
pub use jwt::{JwtError, JwtIdentity, JwtIssuer, JwtVerifier};
pub use keys::{DEFAULT_WRAP_LIMIT, KeyConfig};
pub use ratelimit::{RateLimit, RateLimits};
pub use secrets::MAX_SECRET_DATA_BYTES;
pub use space::Space;
pub use vault::{Opened, Vault, VaultConfig};
