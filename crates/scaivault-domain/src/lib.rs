//! Pure domain types for ScaiVault: secret paths, glob patterns, versions,
//! durations, scopes, permissions, secret and identity types, and the
//! validation rules that decide which of them are well formed. Every other
//! crate in the workspace relies on these rules being identical everywhere, so
//! they live here once. This crate must never do I/O, never be async, never
//! know about HTTP or storage, and never use randomness or the clock: it is a
//! leaf that only parses, validates and compares values.

#[macro_use]
mod string_enum;

mod duration;
mod glob;
mod identity;
mod metadata;
mod path;
mod permission;
mod policy;
mod scope;
mod secret_type;
mod syntax;
mod text;
mod version;

pub use duration::{DurationError, DurationList, DurationSpec, MAX_DURATION_SECS};
pub use glob::{GlobError, GlobPattern, substitute_captures};
pub use identity::{IdentityType, IdentityTypeError};
pub use metadata::{
    MAX_CUSTOM_ENTRIES, MAX_CUSTOM_KEY_BYTES, MAX_CUSTOM_VALUE_BYTES, MAX_DESCRIPTION_BYTES, MAX_OWNER_BYTES,
    MAX_TAG_BYTES, MAX_TAGS, MetadataError, SecretMetadata, check_description,
};
pub use path::{MAX_PATH_BYTES, MAX_SEGMENT_CHARS, MAX_SEGMENTS, PathError, RESERVED_SEGMENTS, SecretPath};
pub use permission::{Permission, PermissionError};
pub use policy::{Decision, Effect, EffectError, Policy, PolicyRule, RuleOutcome, RuleRef, decide};
pub use scope::{Scope, ScopeError, scopes_allow};
pub use secret_type::{DataError, SecretType, SecretTypeError, validate_secret_data};
pub use version::{Version, VersionError};
