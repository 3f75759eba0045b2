use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaivault_crypto::{CryptoError, SealedSecret, StoredMasterKey, TokenHash};
use scaivault_domain::SecretMetadata;

use crate::{
    AssignmentRecord, ChangeFeed, Claim, ClaimedDelivery, DeliveryRecord, FederationBackendRecord,
    FinishAttempt, NewEvent, RotationCompletion, RotationPolicyRecord, StoredEvent, SyncPathRecord,
    SyncPaths, SyncRunRecord, WebhookFilter, WebhookKind, WebhookRecord,
};
use crate::{
    AuditFilter, AuditHead, AuditOrder, AuditRow, BindingRecord, KeyStatus, NewAuditEntry, NewToken,
    PartnerRecord, PolicyRecord, PolicySnapshot, RewrapItem, SecretHead, SecretListQuery, SecretSummary,
    SecretVersionRow, StoreError, StoredSecret, TenantRecord, TokenRecord, WriteOutcome, WriteSecret,
};

/// Seals the plaintext for the version number storage assigned, inside the write's transaction, so
/// the ciphertext is bound to the version it is stored as.
pub type SealFn<'a> = dyn Fn(u64) -> Result<SealedSecret, CryptoError> + Send + Sync + 'a;

#[async_trait]
pub trait SecretStore: Send + Sync + Debug {
    /// Assigns the next version, stores the sealed data and prunes past `max_versions`, all in one
    /// transaction. Concurrent writers to one path get consecutive versions with no gap.
    ///
    /// The `effects` (the write's audit record, its events and their deliveries) are appended in the
    /// same transaction: all commit or none does (`AuditUnavailable` when the record cannot be
    /// written).
    async fn write_secret(
        &self,
        write: WriteSecret<'_>,
        seal: &SealFn<'_>,
        effects: WriteEffects<'_>,
    ) -> Result<WriteOutcome, StoreError>;

    /// The current version (or `version`) of a live secret.
    async fn read_secret(
        &self,
        tenant: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<StoredSecret, StoreError>;

    /// The head of a secret, soft-deleted or not (`None` when the path was never written).
    async fn secret_head(&self, tenant: &str, path: &str) -> Result<Option<SecretHead>, StoreError>;

    /// The head and every kept version, newest first, without sealed data.
    async fn list_versions(
        &self,
        tenant: &str,
        path: &str,
    ) -> Result<(SecretHead, Vec<SecretVersionRow>), StoreError>;

    /// Replaces metadata and/or `max_versions` (pruning at once if it shrank). `events` are appended
    /// to the outbox in the same transaction, as for every change below.
    async fn update_metadata(
        &self,
        tenant: &str,
        path: &str,
        metadata: Option<SecretMetadata>,
        max_versions: Option<u32>,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<SecretHead, StoreError>;

    /// Live secrets in path order.
    async fn list_secrets(
        &self,
        tenant: &str,
        query: SecretListQuery<'_>,
    ) -> Result<Vec<SecretSummary>, StoreError>;

    async fn soft_delete(
        &self,
        tenant: &str,
        path: &str,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<(), StoreError>;

    /// Restores a soft-deleted secret; true when it was deleted. `events` are appended only then:
    /// undeleting a live secret changes nothing and tells nobody.
    async fn undelete(
        &self,
        tenant: &str,
        path: &str,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<(SecretHead, bool), StoreError>;

    /// Erases the ciphertext of the named versions (all when `None`); returns the versions destroyed.
    /// `events` makes the change's events from those versions, and is called only when there are any.
    async fn destroy_versions(
        &self,
        tenant: &str,
        path: &str,
        versions: Option<&[u64]>,
        now: DateTime<Utc>,
        events: &DestroyEventsFn<'_>,
    ) -> Result<Vec<u64>, StoreError>;
}

#[async_trait]
pub trait TokenStore: Send + Sync + Debug {
    /// Creates the tenant and its root token when storage is empty; returns false (and changes
    /// nothing) when any tenant exists, so a second start never makes a second root token.
    async fn bootstrap(&self, tenant: &str, root_token: NewToken) -> Result<bool, StoreError>;

    /// Stores a new token. With a `parent`, fails `NotFound` when that token is revoked or gone, so
    /// a token issued while its parent is being revoked never outlives the revocation.
    async fn create_token(&self, token: NewToken) -> Result<(), StoreError>;

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    async fn list_tokens(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    async fn get_token(&self, tenant: &str, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes the token and every token issued under it, in any tenant (a tree, as Vault's token
    /// hierarchy), answering how many were newly revoked. `NotFound` when the tenant has no such token.
    async fn revoke_token(&self, tenant: &str, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync + Debug {
    async fn master_keys(&self) -> Result<Vec<StoredMasterKey>, StoreError>;

    /// Inserts a new master key version; `AlreadyExists` when another process made that version.
    async fn insert_master_key(&self, key: &StoredMasterKey, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Durably adds `wraps` to the version's count and returns the new total.
    async fn reserve_wraps(&self, version: u32, wraps: u64) -> Result<u64, StoreError>;

    async fn key_status(&self) -> Result<Vec<KeyStatus>, StoreError>;

    /// Up to `limit` data keys wrapped by a version other than `current`.
    async fn pending_rewraps(&self, current: u32, limit: u32) -> Result<Vec<RewrapItem>, StoreError>;

    /// Replaces one data key's wrap if it is still wrapped by `old_key_version`; false if it changed.
    async fn replace_wrap(&self, item: &RewrapItem, sealed: &SealedSecret) -> Result<bool, StoreError>;
}

/// Policies and bindings. Every change bumps the tenant's policy epoch in the same transaction.
#[async_trait]
pub trait PolicyStore: Send + Sync + Debug {
    /// `AlreadyExists` when the tenant has a policy of that name.
    async fn create_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError>;

    async fn get_policy(&self, tenant: &str, id: &str) -> Result<PolicyRecord, StoreError>;

    /// In name order, names strictly after `after`.
    async fn list_policies(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PolicyRecord>, StoreError>;

    /// Replaces name, description and rules of `(tenant, id)`.
    async fn update_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError>;

    /// Deletes the policy and its bindings.
    async fn delete_policy(&self, tenant: &str, id: &str) -> Result<(), StoreError>;

    /// `NotFound` when the policy does not exist, `AlreadyExists` for a duplicate binding.
    async fn create_binding(&self, binding: &BindingRecord) -> Result<(), StoreError>;

    /// A page of the policy's bindings by id, after `after`; `NotFound` when the policy does not exist.
    async fn list_bindings(
        &self,
        tenant: &str,
        policy_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<BindingRecord>, StoreError>;

    /// `NotFound` when the policy or the binding does not exist.
    async fn get_binding(
        &self,
        tenant: &str,
        policy_id: &str,
        binding_id: &str,
    ) -> Result<BindingRecord, StoreError>;

    async fn delete_binding(&self, tenant: &str, policy_id: &str, binding_id: &str)
    -> Result<(), StoreError>;

    async fn policy_epoch(&self, tenant: &str) -> Result<i64, StoreError>;

    async fn policy_snapshot(&self, tenant: &str) -> Result<PolicySnapshot, StoreError>;
}

/// Partners and tenants.
#[async_trait]
pub trait TenantStore: Send + Sync + Debug {
    /// `AlreadyExists` when the id or name is taken.
    async fn create_partner(&self, partner: &PartnerRecord) -> Result<(), StoreError>;

    async fn list_partners(&self, after: Option<&str>, limit: u32) -> Result<Vec<PartnerRecord>, StoreError>;

    /// `AlreadyExists` when the id is taken; `NotFound` when the partner does not exist.
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError>;

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRecord>, StoreError>;

    /// In id order; only the partner's when `partner` is given.
    async fn list_tenants(
        &self,
        partner: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TenantRecord>, StoreError>;
}

/// Chains a record: `(tenant, seq, previous hash, body) -> hash`.
pub type ChainFn<'a> = dyn Fn(&str, u64, &[u8; 32], &[u8]) -> [u8; 32] + Send + Sync + 'a;
/// Signs a chain head: `(tenant, seq, hash) -> mac`.
pub type HeadMacFn<'a> = dyn Fn(&str, u64, &[u8; 32]) -> Vec<u8> + Send + Sync + 'a;

/// The audit record of a change, appended in the change's own transaction.
pub struct AuditAppend<'a> {
    /// Builds the record once storage knows the version written and whether it created the secret.
    pub build: &'a (dyn Fn(u64, bool) -> NewAuditEntry + Send + Sync + 'a),
    pub chain: &'a ChainFn<'a>,
    pub sign: &'a HeadMacFn<'a>,
}

impl Debug for AuditAppend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditAppend")
    }
}

/// The audit log: one hash chain per tenant, appended in batches.
#[async_trait]
pub trait AuditStore: Send + Sync + Debug {
    /// Appends `entries` in order, in one transaction: each gets the next `seq` of its tenant's chain
    /// and `hash = chain(tenant, seq, prev, body)`; each touched head is re-signed. Concurrent
    /// appenders (also on other replicas) are serialised per tenant, so every chain stays one line.
    async fn append_audit(
        &self,
        entries: &[NewAuditEntry],
        chain: &ChainFn<'_>,
        sign: &HeadMacFn<'_>,
    ) -> Result<(), StoreError>;

    /// Records matching `filter`, after the `seq` cursor in `order`.
    async fn audit_page(
        &self,
        tenant: &str,
        filter: &AuditFilter<'_>,
        order: AuditOrder,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError>;

    async fn audit_head(&self, tenant: &str) -> Result<Option<AuditHead>, StoreError>;
}

/// Everything a backend provides.
#[async_trait]
pub trait Store:
    SecretStore
    + TokenStore
    + KeyStore
    + PolicyStore
    + TenantStore
    + AuditStore
    + EventStore
    + RotationStore
    + FederationStore
{
    /// Answers when the database does; used by readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How changes made by other processes are reported (see [`ChangeFeed`]). Called once, when
    /// the application opens the storage.
    fn change_feed(&self) -> ChangeFeed;
}

/// Builds the events of a secret write once storage knows the version, whether it created the
/// secret, and whether it completed a rotation; they are appended to the outbox in the write's
/// transaction.
pub type EventsFn<'a> = dyn Fn(u64, bool, bool) -> Result<Vec<NewEvent>, StoreError> + Send + Sync + 'a;

/// The events of a destroy, made from the versions it erased.
pub type DestroyEventsFn<'a> = dyn Fn(&[u64]) -> Result<Vec<NewEvent>, StoreError> + Send + Sync + 'a;

/// What a change writes beside itself, in its own transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteEffects<'a> {
    pub audit: Option<&'a AuditAppend<'a>>,
    pub events: Option<&'a EventsFnRef<'a>>,
    /// Completes a waiting rotation (only if its schedule did not change meanwhile).
    pub rotation: Option<&'a RotationCompletion>,
}

impl WriteEffects<'_> {
    /// The events of the write that made `version` (`created`: the secret's first), `rotated`:
    /// whether it completed a rotation; none when the change emits none.
    pub fn events_of(&self, version: u64, created: bool, rotated: bool) -> Result<Vec<NewEvent>, StoreError> {
        match self.events {
            Some(events) => (events.0)(version, created, rotated),
            None => Ok(Vec::new()),
        }
    }
}

/// A [`EventsFn`] that can be printed.
pub struct EventsFnRef<'a>(pub &'a EventsFn<'a>);

impl Debug for EventsFnRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventsFn")
    }
}

/// Webhooks, the event outbox and deliveries.
#[async_trait]
pub trait EventStore: Send + Sync + Debug {
    /// `AlreadyExists` when the tenant has a webhook (or subscription) of that name.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;

    /// `NotFound` when there is no such webhook of that kind.
    async fn get_webhook(
        &self,
        tenant: &str,
        kind: WebhookKind,
        id: &str,
    ) -> Result<WebhookRecord, StoreError>;

    /// In id order, ids strictly after `after`.
    async fn list_webhooks(
        &self,
        tenant: &str,
        kind: WebhookKind,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookRecord>, StoreError>;

    /// Replaces name, url, filters, secrets and state of `(tenant, id)`; `NotFound` when missing.
    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;

    /// Deletes the webhook with its deliveries and their attempts.
    async fn delete_webhook(&self, tenant: &str, kind: WebhookKind, id: &str) -> Result<(), StoreError>;

    /// The filters of the tenant's active webhooks and subscriptions, to match events against.
    async fn active_webhooks(&self, tenant: &str) -> Result<Vec<WebhookFilter>, StoreError>;

    /// Appends events and their deliveries in one transaction of their own.
    async fn append_events(&self, events: &[NewEvent]) -> Result<(), StoreError>;

    /// Leases up to `limit` due deliveries to `claim` (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
    /// replicas never claim the same one). Only the oldest pending delivery of each webhook and
    /// order key is due, so one receiver gets one secret's events in order.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        claim: &Claim,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// The deliveries claimed under `claim`, for a claim made at creation.
    async fn claimed_deliveries(&self, claim_id: &str) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt and its outcome if `claim_id` still holds the delivery; false otherwise
    /// (the lease ran out and another worker took it).
    async fn finish_attempt(&self, finish: &FinishAttempt<'_>) -> Result<bool, StoreError>;

    /// The webhook's deliveries, newest first, with their attempts; `before` is a `seq` cursor.
    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, DeliveryRecord)>, StoreError>;

    /// Makes a delivery due again now, with a fresh retry schedule; `NotFound` when missing.
    async fn redeliver(
        &self,
        tenant: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Events of every tenant after `seq`, oldest first (the live stream of other replicas' changes).
    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest event `seq`, 0 when none.
    async fn last_event_seq(&self) -> Result<u64, StoreError>;

    /// Deletes finished deliveries (and their attempts) last changed before `before`, and events
    /// older than that with no pending delivery; returns the events deleted.
    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Rotation policies and schedules. Every schedule change is conditional on the revision read.
#[async_trait]
pub trait RotationStore: Send + Sync + Debug {
    /// `AlreadyExists` when the tenant has a policy of that id.
    async fn create_rotation_policy(&self, policy: &RotationPolicyRecord) -> Result<(), StoreError>;

    async fn get_rotation_policy(&self, tenant: &str, id: &str) -> Result<RotationPolicyRecord, StoreError>;

    /// In id order, ids strictly after `after`.
    async fn list_rotation_policies(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RotationPolicyRecord>, StoreError>;

    /// `NotFound` when missing.
    async fn update_rotation_policy(&self, policy: &RotationPolicyRecord) -> Result<(), StoreError>;

    /// Deletes the policy and its assignments.
    async fn delete_rotation_policy(&self, tenant: &str, id: &str) -> Result<(), StoreError>;

    /// `AlreadyExists` when the secret already has a policy.
    async fn assign_rotation(&self, assignment: &AssignmentRecord) -> Result<(), StoreError>;

    async fn get_assignment(
        &self,
        tenant: &str,
        path: &str,
    ) -> Result<Option<(AssignmentRecord, RotationPolicyRecord)>, StoreError>;

    /// The policy's assignments in path order, paths strictly after `after`.
    async fn list_assignments(
        &self,
        tenant: &str,
        policy_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssignmentRecord>, StoreError>;

    /// `NotFound` when the secret is not assigned to that policy.
    async fn unassign_rotation(&self, tenant: &str, policy_id: &str, path: &str) -> Result<(), StoreError>;

    /// Schedules with work due at `now`, earliest first, through the `wake_at` index; a soft-deleted
    /// secret's schedule is paused (never returned) until the secret is undeleted.
    async fn due_assignments(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(AssignmentRecord, RotationPolicyRecord)>, StoreError>;

    /// How many schedules are in each state (`scheduled`, `due`, `failed`), over every tenant.
    async fn assignment_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Replaces the schedule if it is still at `next.revision`, appending `events` in the same
    /// transaction; false (and nothing written) when another change came first.
    async fn transition_assignment(
        &self,
        next: &AssignmentRecord,
        events: &[NewEvent],
    ) -> Result<bool, StoreError>;
}

/// Federation backends' configurations.
#[async_trait]
pub trait FederationStore: Send + Sync + Debug {
    /// `AlreadyExists` when the tenant has a backend of that id or name; `MountTaken` when its mount
    /// overlaps another backend's; `LimitReached` when the tenant holds `max_backends` already.
    /// Each is decided inside the transaction, one change of the tenant's backends at a time.
    async fn create_federation_backend(
        &self,
        backend: &FederationBackendRecord,
        max_backends: u32,
    ) -> Result<(), StoreError>;

    /// `NotFound` when missing.
    async fn get_federation_backend(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<FederationBackendRecord, StoreError>;

    /// In id order, ids strictly after `after`.
    async fn list_federation_backends(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FederationBackendRecord>, StoreError>;

    /// `NotFound` when missing; `AlreadyExists` when the new name is another's; `MountTaken` when
    /// the new mount overlaps another backend's.
    async fn update_federation_backend(
        &self,
        backend: &FederationBackendRecord,
        sync_paths: SyncPaths,
    ) -> Result<(), StoreError>;

    /// `NotFound` when missing. Removes the backend's sync schedule and path states with it.
    async fn delete_federation_backend(&self, tenant: &str, id: &str) -> Result<(), StoreError>;

    /// Takes the backend for one sync until `lease_until` if no other sync holds it (and, when
    /// `scheduled`, if it is due at `now`); false when it may not. Creates the schedule if missing.
    async fn claim_sync_run(
        &self,
        tenant: &str,
        backend_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        scheduled: bool,
    ) -> Result<bool, StoreError>;

    /// Records a sync's outcome and next time, and releases its lease.
    async fn finish_sync_run(&self, run: &SyncRunRecord) -> Result<(), StoreError>;

    /// The schedule and last outcome, if the backend was ever synced.
    async fn get_sync_run(&self, tenant: &str, backend_id: &str)
    -> Result<Option<SyncRunRecord>, StoreError>;

    /// Sync-mode backends, of every tenant, that are due at `now` and not held: `(tenant, id)`,
    /// most overdue first (never synced before all).
    async fn due_sync_runs(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Every path state of the backend, in path order.
    async fn list_sync_paths(
        &self,
        tenant: &str,
        backend_id: &str,
    ) -> Result<Vec<SyncPathRecord>, StoreError>;

    /// One path's state, if the backend's syncs keep it.
    async fn get_sync_path(
        &self,
        tenant: &str,
        backend_id: &str,
        path: &str,
    ) -> Result<Option<SyncPathRecord>, StoreError>;

    /// Creates or replaces one path's state, only while its backend is as the caller read it
    /// (`updated_at` equal to `backend_updated_at`): a change of its mount or mapping forgets the
    /// states about the old one, and none may follow it in, from any replica.
    async fn put_sync_path(
        &self,
        state: &SyncPathRecord,
        backend_updated_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
