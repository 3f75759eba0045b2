//! The storage contract of ScaiVault: async traits that every backend implements, the records they
//! exchange, and (feature `conformance`) the one suite that every backend must pass.
//!
//! Storage only ever sees sealed secret material ([`SealedSecret`]): plaintext cannot reach this
//! layer. This crate holds no SQL and no crypto; the backends hold the SQL, the crypto crate the
//! cryptography, and `scaivault-core` decides who may do what.

mod chain;
mod changes;
mod error;
mod event_sql;
mod events;
mod federation;
mod federation_sql;
pub mod group;
mod policy_sql;
mod records;
mod rotation;
mod rotation_sql;
mod rows;
mod tenant_sql;
mod traits;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use chain::{ChainHead, ChainedRow, chain_entries};
pub use changes::{ChangeFeed, ChangeNotice};
pub use error::{StoreError, StoreErrorKind, violates_constraint};
pub use events::{
    AttemptOutcome, AttemptRecord, Claim, ClaimedDelivery, DeliveryRecord, DeliveryStatus,
    EVENT_ROWS_PER_INSERT, FinishAttempt, NewDelivery, NewEvent, SealedWebhookSecret, StoredEvent,
    WEBHOOK_SEAL_PREFIX, WebhookFilter, WebhookKind, WebhookRecord, deliveries_of, fit_one_insert,
    micros_opt, order_key,
};
pub use federation::{FederationBackendRecord, SyncPathRecord, SyncPaths, SyncRunRecord};
pub use records::{
    AuditFilter, AuditHead, AuditOrder, AuditRow, BindingColumns, BindingRecord, DEFAULT_MAX_VERSIONS,
    KeyStatus, NewAuditEntry, NewToken, PartnerRecord, PolicyColumns, PolicyRecord, PolicySnapshot,
    RewrapItem, SUMMARY_COLUMNS, SecretHead, SecretHeadColumns, SecretListQuery, SecretSummary,
    SecretSummaryColumns, SecretVersionRow, StoredSecret, TenantRecord, TokenColumns, TokenRecord,
    VersionColumns, WriteOutcome, WritePlan, WriteSecret, from_micros, list_json, oldest_kept,
    opt_from_micros, to_micros,
};
pub use rotation::{AssignmentRecord, RotationCompletion, RotationPolicyRecord};
pub use scaivault_crypto::{SealedSecret, StoredMasterKey};
pub use traits::{
    AuditAppend, AuditStore, ChainFn, DestroyEventsFn, EventStore, EventsFn, EventsFnRef, FederationStore,
    HeadMacFn, KeyStore, PolicyStore, RotationStore, SealFn, SecretStore, Store, TenantStore, TokenStore,
    WriteEffects,
};

/// The tenant every fresh installation starts with.
pub const DEFAULT_TENANT: &str = "tnt_default";
