//! Federation: backends' configurations (`/v1/federation/backends`), reads under a proxy-mode
//! backend's mount forwarded live to the backend, and writes there refused. Sync mode's runs are
//! in [`crate::sync`].
//!
//! A backend's credential lives in an ordinary ScaiVault secret (`connection.credentials_path`),
//! read by the server with its own authority, audited as `federation.credential.read` whenever it
//! is opened (on first use, and after the secret or the backend changed).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use scaivault_api::{
    FederationBackendList, FederationBackendRequest, FederationBackendResponse, FederationConnection,
    FederationStatus, PathMappingRule, SecretResponse, SyncReport, UpdateFederationBackendRequest,
};
use scaivault_crypto::random_id;
use scaivault_domain::{DurationSpec, Permission, Scope, SecretMetadata, SecretPath, SecretType, Version};
use scaivault_federation::{
    AwsAuth, AwsBackend, AwsConnection, AwsCredentials, AzureBackend, AzureClientCertificate,
    AzureClientSecret, AzureConnection, AzureCredential, Backend, BackendType, ConflictResolution,
    FederationError, GcpAuth, GcpBackend, GcpConnection, GcpServiceAccount, MappingError, MappingRule, Mode,
    PathMapping, RoleSource, ServerEnvironment, VaultAuth, VaultBackend, VaultConnection, azure_urls,
    check_ambient_endpoint, check_external_id, check_managed_identity_vault, check_role_arn,
    check_workload_identity_endpoint, gcp_base_url, in_clear, service_url,
};
use scaivault_store::{FederationBackendRecord, SecretListQuery, StoreError, SyncPaths};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, RequestInfo};
use crate::cache::invalidating;
use crate::paging::{decode_cursor, limit, next_cursor};
use crate::rotation::check_name;
use crate::{CoreError, Principal, Vault};

const DEFAULT_SYNC_INTERVAL: &str = "5m";
/// Latencies kept per backend for its status.
const LATENCY_SAMPLES: usize = 64;
/// Backends per tenant the read path considers.
const MAX_BACKENDS: u32 = 1000;
/// How many locks write-through writes share (by a hash of their path).
const WRITE_THROUGH_STRIPES: usize = 32;
/// Failed syncs in a row before `federation.backend.unreachable`, unless configured.
pub(crate) const DEFAULT_UNREACHABLE_AFTER: u32 = 3;
/// The shortest `sync_interval` accepted.
const MIN_SYNC_INTERVAL_SECS: u64 = 10;

fn default_unreachable_after() -> u32 {
    DEFAULT_UNREACHABLE_AFTER
}

/// What a backend record's `config` column holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConfig {
    connection: FederationConnection,
    path_mapping: Vec<PathMappingRule>,
    sync_interval: DurationSpec,
    write_through: bool,
    conflict_resolution: ConflictResolution,
    #[serde(default = "default_unreachable_after")]
    unreachable_after: u32,
}

/// A backend as the read, write and sync paths use it.
#[derive(Debug)]
pub(crate) struct Mounted {
    pub(crate) id: String,
    pub(crate) mount: SecretPath,
    /// The backend's mode: that of the paths whose rule names none.
    pub(crate) mode: Mode,
    /// Each `path_mapping` rule's mode, the backend's where the rule names none.
    rule_modes: Vec<Mode>,
    backend_type: BackendType,
    pub(crate) mapping: PathMapping,
    connection: FederationConnection,
    pub(crate) write_through: bool,
    pub(crate) resolution: ConflictResolution,
    pub(crate) sync_interval: DurationSpec,
    pub(crate) unreachable_after: u32,
    pub(crate) updated_at: DateTime<Utc>,
}

impl Mounted {
    pub(crate) fn serves(&self, path: &SecretPath) -> bool {
        let (p, m) = (path.as_str(), self.mount.as_str());
        p == m || p.strip_prefix(m).is_some_and(|rest| rest.starts_with('/'))
    }

    /// How `path` is served: by the mode of the rule that maps it, else the backend's.
    pub(crate) fn mode_for(&self, path: &SecretPath) -> Mode {
        self.mapping.rule_index(path).and_then(|i| self.rule_modes.get(i).copied()).unwrap_or(self.mode)
    }

    /// Whether any of its paths is in sync mode (so syncs run).
    pub(crate) fn syncs(&self) -> bool {
        self.rule_modes.contains(&Mode::Sync)
    }

    /// The backend prefixes a sync lists: those of the rules in sync mode.
    pub(crate) fn sync_prefixes(&self) -> Vec<String> {
        self.mapping.list_prefixes_of(|i| self.rule_modes.get(i) == Some(&Mode::Sync))
    }
}

#[derive(Debug, Default)]
struct Stats {
    latencies_ms: VecDeque<u64>,
    last_error: Option<String>,
}

pub(crate) type Client = Arc<dyn Backend>;
/// A tenant's backends, as every secret request consults them (kept in [`crate::cache::Caches`]).
pub(crate) type TenantMounts = Arc<Vec<Arc<Mounted>>>;
/// See [`Vault::federated_for_change`].
pub(crate) type MountsHeld = tokio::sync::OwnedRwLockReadGuard<()>;

/// One tenant's federation locks (a tenant's slow backend holds up only that tenant).
#[derive(Debug)]
struct TenantLocks {
    /// Held (shared) by a local change to one of the tenant's secrets from the moment it checks
    /// the mounts until its commit returns, and (exclusive) by a change to one of its backends from
    /// its checks until its commit: so no change of this process lands under a mount laid over a
    /// subtree that was just checked empty, nor in proxy mode after it was checked to be in sync
    /// mode.
    changing: Arc<tokio::sync::RwLock<()>>,
    /// Write-through writes, by a hash of their path: held from the `cas` check to the local
    /// commit, so two of this process on one path cannot both pass the check, both write the
    /// backend, and leave it holding the value whose local commit was refused.
    writing_through: [Arc<tokio::sync::Mutex<()>>; WRITE_THROUGH_STRIPES],
}

impl TenantLocks {
    /// Whether no one holds, waits for or is about to take any of these locks: only the map
    /// refers to them, so they may be dropped and made afresh when next needed. (`Arc::get_mut`,
    /// not `strong_count`: its check acquires, so a lock cloned by a caller who then let go of the
    /// entry is seen as held on every architecture.)
    fn idle(entry: &mut Arc<Self>) -> bool {
        Arc::get_mut(entry).is_some_and(|locks| {
            Arc::get_mut(&mut locks.changing).is_some()
                && locks.writing_through.iter_mut().all(|l| Arc::get_mut(l).is_some())
        })
    }
}

/// Tenants' locks, swept of idle entries as it grows (so tenants that come and go leave nothing).
#[derive(Debug, Default)]
struct TenantLockMap {
    by_tenant: HashMap<String, Arc<TenantLocks>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

/// The smallest size at which the lock map is swept.
const LOCK_SWEEP_MIN: usize = 64;

/// The federation state of this process.
#[derive(Debug, Default)]
pub(crate) struct Federation {
    /// Sync outcomes of this process, by `completed` / `failed`, for `/metrics`.
    pub(crate) sync_results: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Per tenant this process touched and may still hold locks of (see [`Federation::locks_of`]).
    locks: Mutex<TenantLockMap>,
    /// Per backend: its client, and what it was built from (backend change time and credential
    /// version), so an AppRole login is reused until either changes.
    clients: Mutex<HashMap<String, (String, Client)>>,
    stats: Mutex<HashMap<String, Stats>>,
    /// Whether backends may sign in as the server's own cloud identity (`managed_identity`,
    /// `workload_identity`): the operator's choice, off by default.
    pub(crate) ambient_identity: bool,
    /// Whether that identity may also go to an endpoint on this machine.
    identity_loopback: bool,
    /// The Vaults a login as the server's own identity may be sent to.
    identity_vaults: Vec<crate::IdentityVault>,
}

impl Federation {
    pub(crate) fn new(
        ambient_identity: bool,
        identity_loopback: bool,
        identity_vaults: Vec<crate::IdentityVault>,
    ) -> Federation {
        Federation { ambient_identity, identity_loopback, identity_vaults, ..Federation::default() }
    }

    /// What the server's own identity is found from, and where it may go.
    fn server_environment(&self) -> ServerEnvironment {
        ServerEnvironment::of_process().lending_to_loopback(self.identity_loopback)
    }

    /// The tenant's locks. A new entry may first sweep out the idle ones: an entry is taken from
    /// the map only under its mutex, and whoever holds one of its locks keeps a reference, so a
    /// swept entry was one no one could be holding, waiting for or about to take.
    fn locks_of(&self, tenant: &str) -> Arc<TenantLocks> {
        let mut locks = self.locks.lock().expect("federation locks");
        if let Some(l) = locks.by_tenant.get(tenant) {
            return l.clone();
        }
        if locks.by_tenant.len() >= locks.sweep_at {
            locks.by_tenant.retain(|_, l| !TenantLocks::idle(l));
            locks.sweep_at = (locks.by_tenant.len() * 2).max(LOCK_SWEEP_MIN);
            let keep = locks.sweep_at;
            locks.by_tenant.shrink_to(keep);
        }
        let l = Arc::new(TenantLocks {
            changing: Arc::default(),
            writing_through: std::array::from_fn(|_| Arc::default()),
        });
        locks.by_tenant.insert(tenant.to_owned(), l.clone());
        l
    }

    /// A local change to one of `tenant`'s secrets: no change to its backends until dropped.
    async fn hold_mounts(&self, tenant: &str) -> MountsHeld {
        self.locks_of(tenant).changing.clone().read_owned().await
    }

    /// A change to one of `tenant`'s backends: no local change to its secrets until dropped.
    async fn change_mounts(&self, tenant: &str) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.locks_of(tenant).changing.clone().write_owned().await
    }

    /// The turn of a write-through write to `path` of `tenant` (its lock is shared with a few of
    /// the tenant's other paths).
    pub(crate) async fn write_through_turn(
        &self,
        tenant: &str,
        path: &SecretPath,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(path.as_str().as_bytes());
        let stripe = (h.finish() % WRITE_THROUGH_STRIPES as u64) as usize;
        self.locks_of(tenant).writing_through[stripe].clone().lock_owned().await
    }

    pub(crate) fn note(&self, id: &str, started: Instant, result: Result<(), &FederationError>) {
        let mut stats = self.stats.lock().expect("stats lock");
        let s = stats.entry(id.to_owned()).or_default();
        if s.latencies_ms.len() == LATENCY_SAMPLES {
            s.latencies_ms.pop_front();
        }
        s.latencies_ms.push_back(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        // The error of the latest call, if it failed: a healthy call clears it.
        s.last_error = result.err().map(ToString::to_string);
    }

    fn status_of(&self, id: &str) -> (Option<u64>, Option<String>) {
        let stats = self.stats.lock().expect("stats lock");
        let Some(s) = stats.get(id) else { return (None, None) };
        let mut sorted: Vec<u64> = s.latencies_ms.iter().copied().collect();
        sorted.sort_unstable();
        (sorted.get(sorted.len() / 2).copied(), s.last_error.clone())
    }
}

pub(crate) fn bad(field: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidRequest(format!("{field}: {e}"))
}

fn parse_enum<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> Result<T, CoreError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| bad(field, format!("'{value}' is not one of the contract's values")))
}

fn name_of<T: Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn rules(mapping: &[PathMappingRule]) -> Vec<MappingRule> {
    mapping.iter().map(|r| MappingRule { source: r.source.clone(), target: r.target.clone() }).collect()
}

/// The auth methods that sign in as the server's own cloud identity and take no credential secret.
const AMBIENT_METHODS: [&str; 2] = ["managed_identity", "workload_identity"];

/// Whether a connection field is set: an empty string counts as left out, as clients that send
/// every field send them.
fn given(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|v| !v.is_empty())
}

/// Whether a backend signs in as the server's own cloud identity: Azure's managed identity, GCP's
/// workload identity, or an AWS role assumed without a credential secret's keys.
fn uses_ambient_identity(backend_type: BackendType, c: &FederationConnection) -> bool {
    match backend_type {
        BackendType::AzureKeyVault | BackendType::GcpSecretManager => {
            c.auth_method.as_deref().is_some_and(|m| AMBIENT_METHODS.contains(&m))
        }
        BackendType::AwsSecretsManager => given(&c.role_arn) && !given(&c.credentials_path),
        _ => false,
    }
}

/// A backend's `external_id`, if one is given.
fn external_id(c: &FederationConnection) -> Option<String> {
    c.external_id.clone().filter(|i| !i.is_empty())
}

/// An AWS backend's way in: a credential secret's keys, or a role assumed with them.
fn aws_auth(c: &FederationConnection, keys: AwsCredentials) -> AwsAuth {
    match c.role_arn.as_deref().filter(|r| !r.is_empty()) {
        Some(role_arn) => AwsAuth::AssumeRole {
            role_arn: role_arn.to_owned(),
            external_id: external_id(c),
            source: RoleSource::Keys(keys),
        },
        None => AwsAuth::Keys(keys),
    }
}

fn aws_client(c: &FederationConnection, auth: AwsAuth) -> Result<Client, CoreError> {
    Ok(Arc::new(AwsBackend::new(AwsConnection {
        region: c.region.clone().unwrap_or_default(),
        endpoint: c.endpoint.clone(),
        auth,
    })?))
}

fn azure_client(c: &FederationConnection, credentials: AzureCredential) -> Result<Client, CoreError> {
    Ok(Arc::new(AzureBackend::new(AzureConnection {
        vault_url: c.vault_url.clone().unwrap_or_default(),
        tenant_id: c.tenant_id.clone().unwrap_or_default(),
        authority_host: c.authority_host.clone(),
        credentials,
    })?))
}

fn gcp_client(c: &FederationConnection, auth: GcpAuth) -> Result<Client, CoreError> {
    Ok(Arc::new(GcpBackend::new(GcpConnection {
        project_id: c.project_id.clone().unwrap_or_default(),
        endpoint: c.endpoint.clone(),
        auth,
    })?))
}

/// The audit record of the server opening something for a backend's client.
fn opening(action: &'static str, path: String, version: Option<u64>) -> AuditEvent {
    AuditEvent {
        action: action.into(),
        secret_path: Some(path),
        version,
        resource_id: None,
        subject: None,
        outcome: "success",
        status_code: 200,
    }
}

/// The PEM bundle a CA secret holds in its `certificate` field.
fn ca_pem_of(path: &SecretPath, secret: &SecretResponse) -> Result<Vec<u8>, CoreError> {
    secret
        .data
        .get("certificate")
        .and_then(serde_json::Value::as_str)
        .map(|pem| pem.as_bytes().to_vec())
        .ok_or_else(|| {
            CoreError::BackendError(format!(
                "ca_cert_path '{path}': the secret has no 'certificate' field (PEM)"
            ))
        })
}

/// A secret a backend's configuration names, with the field that names it.
type NamedSecret = (&'static str, SecretPath);

/// A connection field set that the backend's type does not read (it would be stored and
/// silently ignored).
fn foreign_field(backend_type: BackendType, c: &FederationConnection) -> Option<&'static str> {
    let set = [
        ("address", given(&c.address)),
        ("namespace", given(&c.namespace)),
        ("ca_cert_path", given(&c.ca_cert_path)),
        ("region", given(&c.region)),
        ("endpoint", given(&c.endpoint)),
        ("role_arn", given(&c.role_arn)),
        ("external_id", given(&c.external_id)),
        ("vault_url", given(&c.vault_url)),
        ("tenant_id", given(&c.tenant_id)),
        ("authority_host", given(&c.authority_host)),
        ("project_id", given(&c.project_id)),
    ];
    let applies: &[&str] = match backend_type {
        BackendType::HashicorpVault => &["address", "namespace", "ca_cert_path"],
        BackendType::AwsSecretsManager => &["region", "endpoint", "role_arn", "external_id"],
        BackendType::AzureKeyVault => &["vault_url", "tenant_id", "authority_host"],
        BackendType::GcpSecretManager => &["project_id", "endpoint"],
    };
    set.into_iter().find(|(name, is_set)| *is_set && !applies.contains(name)).map(|(name, _)| name)
}

/// Checks what this server can serve today; answers the mount, the compiled mapping and the paths
/// of the secrets the server will open for it: the credential (none for a backend that signs in as
/// the server's own cloud identity) and the CA certificate.
fn check_backend(
    backend_type: BackendType,
    mount: &str,
    config: &StoredConfig,
    lending: &Federation,
) -> Result<(SecretPath, PathMapping, Vec<NamedSecret>), CoreError> {
    if config.conflict_resolution == ConflictResolution::LocalWins && !config.write_through {
        return Err(bad(
            "conflict_resolution",
            "'local_wins' writes to the backend, so it needs write_through: true",
        ));
    }
    if config.sync_interval.as_secs() < MIN_SYNC_INTERVAL_SECS {
        return Err(bad("sync_interval", format!("must be at least {MIN_SYNC_INTERVAL_SECS}s")));
    }
    if !(1..=1000).contains(&config.unreachable_after) {
        return Err(bad("unreachable_after", "must be between 1 and 1000"));
    }
    let mount = SecretPath::parse(mount).map_err(|e| CoreError::InvalidPath(format!("mount: {e}")))?;
    let mapping = PathMapping::new(&mount, &rules(&config.path_mapping), backend_type)
        .map_err(|e| bad("path_mapping", e))?;
    for (i, rule) in config.path_mapping.iter().enumerate() {
        if let Some(m) = rule.mode.as_deref() {
            parse_enum::<Mode>(&format!("path_mapping[{i}].mode"), m)?;
        }
    }
    let c = &config.connection;
    if backend_type == BackendType::HashicorpVault {
        let address = c
            .address
            .as_deref()
            .ok_or_else(|| bad("connection.address", "is required for hashicorp_vault"))?;
        VaultBackend::check_address(address).map_err(|e| bad("connection.address", e))?;
        if let Some(ns) = c.namespace.as_deref()
            && (ns.len() > 256 || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)))
        {
            return Err(bad("connection.namespace", "must be at most 256 of A-Z a-z 0-9 - _ . /"));
        }
        match c.auth_method.as_deref() {
            Some("token" | "approle" | "kubernetes" | "aws" | "gcp") => {}
            Some(other) => {
                return Err(bad(
                    "connection.auth_method",
                    format!("'{other}' is not one of token, approle, kubernetes, aws, gcp"),
                ));
            }
            None => {
                return Err(bad(
                    "connection.auth_method",
                    "is required (token, approle, kubernetes, aws or gcp)",
                ));
            }
        }
    } else if backend_type == BackendType::AzureKeyVault {
        let vault_url = c
            .vault_url
            .as_deref()
            .ok_or_else(|| bad("connection.vault_url", "is required for azure_key_vault"))?;
        let tenant_id = c
            .tenant_id
            .as_deref()
            .ok_or_else(|| bad("connection.tenant_id", "is required for azure_key_vault"))?;
        azure_urls(vault_url, tenant_id, c.authority_host.as_deref()).map_err(|e| bad("connection", e))?;
        match c.auth_method.as_deref() {
            Some("client_secret" | "certificate" | "managed_identity") | None => {}
            Some(other) => {
                return Err(bad(
                    "connection.auth_method",
                    format!("'{other}' is not one of client_secret, certificate, managed_identity"),
                ));
            }
        }
    } else if backend_type == BackendType::GcpSecretManager {
        let project = c
            .project_id
            .as_deref()
            .ok_or_else(|| bad("connection.project_id", "is required for gcp_secret_manager"))?;
        gcp_base_url(project, c.endpoint.as_deref()).map_err(|e| bad("connection", e))?;
        match c.auth_method.as_deref() {
            Some("service_account_key" | "workload_identity") | None => {}
            Some(other) => {
                return Err(bad(
                    "connection.auth_method",
                    format!("'{other}' is not one of service_account_key, workload_identity"),
                ));
            }
        }
    } else {
        let region = c
            .region
            .as_deref()
            .ok_or_else(|| bad("connection.region", "is required for aws_secrets_manager"))?;
        service_url(region, c.endpoint.as_deref()).map_err(|e| bad("connection", e))?;
        if let Some(role_arn) = c.role_arn.as_deref().filter(|r| !r.is_empty()) {
            check_role_arn(role_arn).map_err(|e| bad("connection", e))?;
        }
        if let Some(id) = c.external_id.as_deref().filter(|i| !i.is_empty()) {
            if !given(&c.role_arn) {
                return Err(bad("connection.external_id", "is sent when assuming a role: it needs role_arn"));
            }
            check_external_id(id).map_err(|e| bad("connection", e))?;
        }
    }
    if let Some(field) = foreign_field(backend_type, c) {
        return Err(bad(
            &format!("connection.{field}"),
            format!("does not apply to {}", backend_type.as_str()),
        ));
    }
    if uses_ambient_identity(backend_type, c) {
        if !lending.ambient_identity {
            let (field, how) = match backend_type {
                BackendType::AwsSecretsManager => (
                    "connection.role_arn",
                    "without credentials_path is assumed as the server's own AWS identity",
                ),
                _ => ("connection.auth_method", "signs in as the server's own cloud identity"),
            };
            return Err(bad(
                field,
                format!(
                    "{how}, which this server does not lend (its operator can allow it with \
                     --federation-ambient-identity)"
                ),
            ));
        }
        if given(&c.credentials_path) {
            return Err(bad(
                "connection.credentials_path",
                "is not used with the server's own cloud identity: leave it out",
            ));
        }
        // One server identity serves every tenant, so a tenant-chosen ExternalId could name
        // another tenant's: the server sends the tenant's id (AWS's confused-deputy guidance).
        if given(&c.external_id) {
            return Err(bad(
                "connection.external_id",
                "is set by the server when it assumes a role with its own identity: it is the tenant's \
                 id, which the role's trust policy should require as sts:ExternalId; leave it out",
            ));
        }
        // The identity's token goes only to the cloud's own service (or this machine).
        if backend_type == BackendType::AzureKeyVault {
            check_managed_identity_vault(
                c.vault_url.as_deref().unwrap_or_default(),
                lending.identity_loopback,
            )
            .map_err(|e| bad("connection", e))?;
            if c.authority_host.is_some() {
                return Err(bad(
                    "connection.authority_host",
                    "is not used with a managed identity (its token comes from the workload identity's or the \
                     instance metadata service's sign-in, which the server's environment names)",
                ));
            }
        } else if backend_type == BackendType::AwsSecretsManager {
            check_ambient_endpoint(c.endpoint.as_deref(), lending.identity_loopback)
                .map_err(|e| bad("connection", e))?;
        } else {
            check_workload_identity_endpoint(c.endpoint.as_deref(), lending.identity_loopback)
                .map_err(|e| bad("connection", e))?;
        }
        return Ok((mount, mapping, Vec::new()));
    }
    let configured = |field: &str, raw: &str| -> Result<SecretPath, CoreError> {
        let path =
            SecretPath::parse(raw).map_err(|e| CoreError::InvalidPath(format!("connection.{field}: {e}")))?;
        if path.as_str() == mount.as_str() || path.as_str().starts_with(&format!("{mount}/")) {
            return Err(bad(&format!("connection.{field}"), "must not lie under the backend's own mount"));
        }
        Ok(path)
    };
    let credentials =
        c.credentials_path.as_deref().ok_or_else(|| bad("connection.credentials_path", "is required"))?;
    let mut named = vec![("credentials_path", configured("credentials_path", credentials)?)];
    if let Some(ca) = c.ca_cert_path.as_deref().filter(|p| !p.is_empty()) {
        named.push(("ca_cert_path", configured("ca_cert_path", ca)?));
    }
    Ok((mount, mapping, named))
}

fn config_of(r: &FederationBackendRecord) -> Result<StoredConfig, CoreError> {
    serde_json::from_str(&r.config)
        .map_err(|e| CoreError::Internal(format!("federation backend {} config: {e}", r.id)))
}

fn response(r: &FederationBackendRecord) -> Result<FederationBackendResponse, CoreError> {
    let config = config_of(r)?;
    Ok(FederationBackendResponse {
        id: r.id.clone(),
        name: r.name.clone(),
        backend_type: r.backend_type.clone(),
        mode: r.mode.clone(),
        mount: r.mount.clone(),
        connection: config.connection,
        path_mapping: config.path_mapping,
        sync_interval: config.sync_interval,
        write_through: config.write_through,
        conflict_resolution: name_of(config.conflict_resolution),
        unreachable_after: config.unreachable_after,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

pub(crate) fn mounted(r: &FederationBackendRecord) -> Result<Mounted, CoreError> {
    let config = config_of(r)?;
    let backend_type: BackendType = parse_enum("type", &r.backend_type)?;
    let mode: Mode = parse_enum("mode", &r.mode)?;
    let mount = SecretPath::parse(&r.mount).map_err(|e| CoreError::Internal(format!("stored mount: {e}")))?;
    let mapping = PathMapping::new(&mount, &rules(&config.path_mapping), backend_type)
        .map_err(|e| CoreError::Internal(format!("stored mapping: {e}")))?;
    let rule_modes = config
        .path_mapping
        .iter()
        .map(|r| r.mode.as_deref().map_or(Ok(mode), |m| parse_enum("path_mapping.mode", m)))
        .collect::<Result<_, _>>()?;
    Ok(Mounted {
        id: r.id.clone(),
        mount,
        mode,
        rule_modes,
        backend_type,
        mapping,
        connection: config.connection,
        write_through: config.write_through,
        resolution: config.conflict_resolution,
        sync_interval: config.sync_interval,
        unreachable_after: config.unreachable_after,
        updated_at: r.updated_at,
    })
}

pub(crate) fn not_found(e: StoreError) -> CoreError {
    match e {
        StoreError::NotFound => CoreError::NotFound("federation backend"),
        StoreError::AlreadyExists => {
            CoreError::Conflict("the tenant has a federation backend of that name".into())
        }
        other => other.into(),
    }
}

impl From<FederationError> for CoreError {
    fn from(e: FederationError) -> Self {
        match e {
            FederationError::NotFound(_) => CoreError::SecretNotFound,
            FederationError::Unsupported(m) => CoreError::InvalidRequest(m),
            FederationError::Unreachable(_) => CoreError::BackendUnavailable(e.to_string()),
            FederationError::Config(_) | FederationError::Denied { .. } | FederationError::Backend { .. } => {
                CoreError::BackendError(e.to_string())
            }
        }
    }
}

impl From<MappingError> for CoreError {
    fn from(e: MappingError) -> Self {
        CoreError::InvalidPath(e.to_string())
    }
}

impl Vault {
    /// `POST /v1/federation/backends`
    pub async fn create_federation_backend(
        &self,
        principal: &Principal,
        req: FederationBackendRequest,
    ) -> Result<FederationBackendResponse, CoreError> {
        self.authorize(principal, Scope::FederationWrite, None).await?;
        check_name(&req.name)?;
        let backend_type: BackendType = parse_enum("type", &req.backend_type)?;
        let mode: Mode = req.mode.as_deref().map(|m| parse_enum("mode", m)).transpose()?.unwrap_or_default();
        let config = StoredConfig {
            connection: req.connection,
            path_mapping: req.path_mapping,
            sync_interval: match req.sync_interval {
                Some(d) => d,
                None => DurationSpec::parse(DEFAULT_SYNC_INTERVAL)
                    .map_err(|e| CoreError::Internal(e.to_string()))?,
            },
            write_through: req.write_through,
            conflict_resolution: req
                .conflict_resolution
                .as_deref()
                .map(|c| parse_enum("conflict_resolution", c))
                .transpose()?
                .unwrap_or_default(),
            unreachable_after: req.unreachable_after.unwrap_or(DEFAULT_UNREACHABLE_AFTER),
        };
        let (mount, _, named_secrets) = check_backend(backend_type, &req.mount, &config, &self.federation)?;
        for (field, named) in &named_secrets {
            self.may_use_credential(principal, field, named).await?;
        }
        let _changing = self.federation.change_mounts(&principal.tenant).await;
        self.may_mount(principal, &mount).await?;
        let now = self.clock.now();
        let mut record = FederationBackendRecord {
            tenant: principal.tenant.clone(),
            id: random_id("fed_")?,
            name: req.name,
            backend_type: backend_type.as_str().to_owned(),
            mode: name_of(mode),
            mount: mount.to_string(),
            config: serde_json::to_string(&config).map_err(|e| CoreError::Internal(e.to_string()))?,
            syncs: false,
            created_at: now,
            updated_at: now,
        };
        record.syncs = mounted(&record)?.syncs();
        invalidating(
            || self.caches.mounts.remove(&principal.tenant),
            self.store.create_federation_backend(&record, MAX_BACKENDS),
        )
        .await
        .map_err(not_found)?;
        response(&record)
    }

    /// `GET /v1/federation/backends`
    pub async fn list_federation_backends(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<FederationBackendList, CoreError> {
        self.authorize(principal, Scope::FederationRead, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("federation_backends", cursor)?;
        let rows = self.store.list_federation_backends(&principal.tenant, after.as_deref(), limit).await?;
        let next_cursor = next_cursor("federation_backends", &rows, limit, |b| b.id.clone());
        Ok(FederationBackendList {
            backends: rows.iter().map(response).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// `GET /v1/federation/backends/{id}`
    pub async fn get_federation_backend(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<FederationBackendResponse, CoreError> {
        self.authorize(principal, Scope::FederationRead, None).await?;
        response(&self.store.get_federation_backend(&principal.tenant, id).await.map_err(not_found)?)
    }

    /// `PATCH /v1/federation/backends/{id}`
    pub async fn update_federation_backend(
        &self,
        principal: &Principal,
        id: &str,
        req: UpdateFederationBackendRequest,
    ) -> Result<FederationBackendResponse, CoreError> {
        self.authorize(principal, Scope::FederationWrite, None).await?;
        // Also keeps two changes of this process to one backend from each starting from the same
        // record and the second undoing the first.
        let _changing = self.federation.change_mounts(&principal.tenant).await;
        let mut record = self.store.get_federation_backend(&principal.tenant, id).await.map_err(not_found)?;
        let old_mount = record.mount.clone();
        let old = mounted(&record)?;
        // Changing a backend (its address, credential, mapping, mode) changes what its mount
        // answers and where writes there go: as much authority as mounting it.
        self.may_govern(principal, &old.mount).await?;
        let mut config = config_of(&record)?;
        let old_mapping = config.path_mapping.clone();
        if let Some(name) = req.name {
            check_name(&name)?;
            record.name = name;
        }
        let mut mode: Mode = parse_enum("mode", &record.mode)?;
        if let Some(m) = req.mode.as_deref() {
            mode = parse_enum("mode", m)?;
        }
        if let Some(mount) = req.mount {
            record.mount = mount;
        }
        if let Some(connection) = req.connection {
            config.connection = connection;
        }
        if let Some(mapping) = req.path_mapping {
            config.path_mapping = mapping;
        }
        if let Some(interval) = req.sync_interval {
            config.sync_interval = interval;
        }
        if let Some(w) = req.write_through {
            config.write_through = w;
        }
        if let Some(c) = req.conflict_resolution.as_deref() {
            config.conflict_resolution = parse_enum("conflict_resolution", c)?;
        }
        if let Some(n) = req.unreachable_after {
            config.unreachable_after = n;
        }
        let backend_type: BackendType = parse_enum("type", &record.backend_type)?;
        let (mount, _, named_secrets) =
            check_backend(backend_type, &record.mount, &config, &self.federation)?;
        for (field, named) in &named_secrets {
            self.may_use_credential(principal, field, named).await?;
        }
        record.mount = mount.to_string();
        record.mode = name_of(mode);
        record.config = serde_json::to_string(&config).map_err(|e| CoreError::Internal(e.to_string()))?;
        record.updated_at = self.clock.now();
        let new = mounted(&record)?;
        record.syncs = new.syncs();
        if mount.as_str() != old_mount {
            self.may_mount(principal, &mount).await?;
        } else {
            // Proxy reads would hide what syncs stored here, yet it would stay live.
            self.no_synced_secret_turns_proxy(&principal.tenant, &old, &new).await?;
        }
        // What the last syncs recorded is about paths and names this change may move (a sync of
        // this process under way stores nothing more for this backend: see `still_ours`).
        let sync_paths = if mount.as_str() != old_mount || config.path_mapping != old_mapping {
            SyncPaths::Forget
        } else {
            SyncPaths::Keep
        };
        invalidating(
            || self.caches.mounts.remove(&principal.tenant),
            self.store.update_federation_backend(&record, sync_paths),
        )
        .await
        .map_err(not_found)?;
        response(&record)
    }

    /// `DELETE /v1/federation/backends/{id}`: its mount becomes an ordinary, empty part of the tree.
    pub async fn delete_federation_backend(&self, principal: &Principal, id: &str) -> Result<(), CoreError> {
        self.authorize(principal, Scope::FederationWrite, None).await?;
        invalidating(
            || self.caches.mounts.remove(&principal.tenant),
            self.store.delete_federation_backend(&principal.tenant, id),
        )
        .await
        .map_err(not_found)?;
        self.federation.clients.lock().expect("clients lock").remove(id);
        Ok(())
    }

    /// `GET /v1/federation/backends/{id}/status`: asks the backend now, with its credential.
    pub async fn federation_status(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<FederationStatus, CoreError> {
        self.authorize(principal, Scope::FederationRead, None).await?;
        let record = self.store.get_federation_backend(&principal.tenant, id).await.map_err(not_found)?;
        let backend = Arc::new(mounted(&record)?);
        let started = Instant::now();
        let checked = match self.federation_client(&principal.tenant, &backend).await {
            Ok(client) => client.check().await,
            Err(e) => Err(FederationError::Config(e.to_string())),
        };
        self.federation.note(id, started, checked.as_ref().map(|_| ()));
        let state = match &checked {
            Ok(()) => "healthy",
            Err(FederationError::Unreachable(_)) => "unreachable",
            Err(_) => "degraded",
        };
        let (latency_ms, last_error) = self.federation.status_of(id);
        let run = self.store.get_sync_run(&principal.tenant, id).await?;
        let report: Option<SyncReport> = run
            .as_ref()
            .and_then(|r| r.report.as_deref())
            .map(|r| {
                serde_json::from_str(r).map_err(|e| CoreError::Internal(format!("stored sync report: {e}")))
            })
            .transpose()?;
        let flagged = if backend.syncs() {
            self.store.list_sync_paths(&principal.tenant, id).await?.iter().filter(|s| s.conflict).count()
        } else {
            0
        };
        Ok(FederationStatus {
            state: state.into(),
            last_sync_at: run.as_ref().and_then(|r| r.last_sync_at),
            last_sync_duration_ms: run.as_ref().and_then(|r| r.last_duration_ms),
            secrets_synced: report.as_ref().map_or(0, |r| r.synced + r.unchanged),
            skipped: report.map(|r| r.skipped).unwrap_or_default(),
            conflicts: flagged as u64,
            latency_ms,
            last_error,
        })
    }

    /// The server will send the credential secret to the backend's address, so whoever names it
    /// must be allowed to read it: otherwise `federation:write` alone would let a caller send any
    /// secret of the tenant to an address of their choosing. The same holds for the CA secret.
    async fn may_use_credential(
        &self,
        principal: &Principal,
        field: &str,
        named: &SecretPath,
    ) -> Result<(), CoreError> {
        self.authorize(principal, Scope::FederationWrite, Some((Permission::Read, named))).await.map_err(
            |e| match e {
                CoreError::AccessDenied(_) => CoreError::AccessDenied(format!(
                    "connection.{field}: no policy lets the caller read '{named}'"
                )),
                other => other,
            },
        )
    }

    /// A mount takes over reads and writes of its subtree, so whoever sets it must be allowed to
    /// write there, and the subtree must hold no local secret (it would be hidden, yet live).
    async fn may_mount(&self, principal: &Principal, mount: &SecretPath) -> Result<(), CoreError> {
        self.may_govern(principal, mount).await?;
        self.mount_is_empty(&principal.tenant, mount).await
    }

    /// Whoever sets or changes a backend decides what every read under its mount answers and where
    /// every write there goes, so they must be allowed to write the whole subtree: the mount, the
    /// paths below it, and no deny rule of theirs reaching inside.
    async fn may_govern(&self, principal: &Principal, mount: &SecretPath) -> Result<(), CoreError> {
        // The scope was checked by the caller; this is the path part of the decision, for a subtree.
        if !self.access(principal).await?.governs_subtree(mount) {
            return Err(CoreError::AccessDenied(format!(
                "mount: no policy lets the caller write all of '{mount}'"
            )));
        }
        Ok(())
    }

    /// Refuses a change that would put a path holding a synced (local) secret back under proxy
    /// mode, whether the backend or one rule's subtree switches.
    async fn no_synced_secret_turns_proxy(
        &self,
        tenant: &str,
        old: &Mounted,
        new: &Mounted,
    ) -> Result<(), CoreError> {
        if !old.syncs() {
            return Ok(());
        }
        let below = format!("{}/", old.mount);
        let mut after: Option<String> = None;
        loop {
            let query =
                SecretListQuery { prefix: Some(&below), tag: None, after: after.as_deref(), limit: 1000 };
            let page = self.store.list_secrets(tenant, query).await?;
            for s in &page {
                let Ok(path) = SecretPath::parse(&s.path) else { continue };
                if old.mode_for(&path) == Mode::Sync && new.mode_for(&path) == Mode::Proxy {
                    return Err(CoreError::Conflict(format!(
                        "'{path}' holds a synced secret: delete it before switching its paths to proxy, or keep them in sync mode"
                    )));
                }
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.path.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// `Conflict` when the subtree of `mount` holds a local secret.
    async fn mount_is_empty(&self, tenant: &str, mount: &SecretPath) -> Result<(), CoreError> {
        let below = format!("{mount}/");
        let query = SecretListQuery { prefix: Some(&below), tag: None, after: None, limit: 1 };
        let exists = match self.store.read_secret(tenant, mount.as_str(), None).await {
            Ok(_) => true,
            Err(StoreError::SecretNotFound) => false,
            Err(e) => return Err(e.into()),
        };
        if exists || !self.store.list_secrets(tenant, query).await?.is_empty() {
            return Err(CoreError::Conflict(format!(
                "mount '{mount}' already holds local secrets: a backend cannot be laid over them"
            )));
        }
        Ok(())
    }

    /// The tenant's backend serving `path`, if any.
    pub(crate) async fn federated(
        &self,
        tenant: &str,
        path: &SecretPath,
    ) -> Result<Option<Arc<Mounted>>, CoreError> {
        let cached = if self.caches.enabled() { self.caches.mounts.get(tenant) } else { None };
        let backends = match cached {
            Some(backends) => backends,
            None => self
                .caches
                .through(&self.caches.mounts, tenant.to_owned(), || async {
                    let rows = self.store.list_federation_backends(tenant, None, MAX_BACKENDS).await?;
                    let loaded: TenantMounts =
                        Arc::new(rows.iter().map(|r| mounted(r).map(Arc::new)).collect::<Result<_, _>>()?);
                    Ok::<_, CoreError>(Some(loaded))
                })
                .await?
                .map(|(backends, _)| backends)
                .unwrap_or_default(),
        };
        Ok(backends.iter().find(|b| b.serves(path)).cloned())
    }

    /// For a local change to `path`: holds off this process's backend changes until the guard is
    /// dropped (see [`TenantLocks::changing`]), and refuses a path a proxy-mode backend serves.
    /// The backend is given when it keeps `path` in sync mode.
    pub(crate) async fn federated_for_change(
        &self,
        tenant: &str,
        path: &SecretPath,
    ) -> Result<(MountsHeld, Option<Arc<Mounted>>), CoreError> {
        let held = self.federation.hold_mounts(tenant).await;
        match self.federated(tenant, path).await? {
            Some(b) if b.mode_for(path) == Mode::Proxy => Err(CoreError::ReadOnlyPath(format!(
                "'{path}' is served by federation backend {} in proxy mode: write to the backend itself",
                b.id
            ))),
            backend => Ok((held, backend)),
        }
    }

    /// A read under a backend's mount, already authorised on the ScaiVault path.
    pub(crate) async fn federated_read(
        &self,
        tenant: &str,
        backend: &Arc<Mounted>,
        path: &SecretPath,
        version: Option<Version>,
    ) -> Result<SecretResponse, CoreError> {
        let target = backend.mapping.name_for(path)?.ok_or_else(|| {
            CoreError::InvalidPath(format!(
                "no path_mapping rule of federation backend {} matches '{path}'",
                backend.id
            ))
        })?;
        let client = self.federation_client(tenant, backend).await?;
        let started = Instant::now();
        let read = client.read(&target, version.map(|v| v.get())).await;
        self.federation.note(&backend.id, started, read.as_ref().map(|_| ()));
        let secret = read.map_err(|e| match (e, version) {
            (FederationError::NotFound(_), Some(v)) => CoreError::VersionNotFound(v.get()),
            (e, _) => e.into(),
        })?;
        // A store without versions (Vault KV v1) has only the one it answers: call it 1.
        if let Some(v) = version
            && secret.version.is_none()
            && v.get() != 1
        {
            return Err(CoreError::VersionNotFound(v.get()));
        }
        let metadata = SecretMetadata { custom: secret.custom, ..SecretMetadata::default() };
        Ok(SecretResponse {
            path: path.to_string(),
            version: secret.version.unwrap_or(1),
            data: secret.data,
            secret_type: SecretType::default(),
            metadata,
            created_at: secret.created_at.unwrap_or_else(|| self.clock.now()),
            created_by: format!("federation:{}", backend.id),
            expires_at: None,
        })
    }

    /// A secret the backend's configuration names (`field`: its credential or CA), as the server
    /// reads it for itself.
    async fn configured_secret(
        &self,
        tenant: &str,
        backend: &Mounted,
        field: &str,
        path: Option<&str>,
    ) -> Result<(SecretPath, SecretResponse), CoreError> {
        let path = SecretPath::parse(path.unwrap_or_default())
            .map_err(|e| CoreError::BackendError(format!("{field}: {e}")))?;
        let secret = self.read_secret_unchecked_response(tenant, &path).await.map_err(|e| match e {
            CoreError::SecretNotFound => CoreError::BackendError(format!(
                "federation backend {}: its {field} '{path}' holds no secret",
                backend.id
            )),
            other => other,
        })?;
        Ok((path, secret))
    }

    /// The backend's client, built from its credential secret (and, for Vault, the CA secret
    /// `ca_cert_path` names); rebuilt when the backend or either secret changed. Opening them is
    /// audited.
    pub(crate) async fn federation_client(
        &self,
        tenant: &str,
        backend: &Mounted,
    ) -> Result<Client, CoreError> {
        let c = &backend.connection;
        if uses_ambient_identity(backend.backend_type, c) {
            return self.ambient_client(tenant, backend).await;
        }
        let (credentials_path, credential) = self
            .configured_secret(tenant, backend, "credentials_path", c.credentials_path.as_deref())
            .await?;
        let ca = match c.ca_cert_path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => Some(self.configured_secret(tenant, backend, "ca_cert_path", Some(path)).await?),
            None => None,
        };
        let built_from = format!(
            "{}|{}|{}",
            backend.updated_at.timestamp_micros(),
            credential.version,
            ca.as_ref().map_or(0, |(_, s)| s.version)
        );
        if let Some(client) = self.cached_client(backend, &built_from) {
            return Ok(client);
        }
        // Built and audited without the lock: two first reads may both build (and both audit).
        let mut lends_identity = false;
        let client: Client = match backend.backend_type {
            BackendType::AwsSecretsManager => {
                aws_client(c, aws_auth(c, AwsCredentials::from_secret(&credential.data)?))?
            }
            BackendType::AzureKeyVault => azure_client(
                c,
                match c.auth_method.as_deref() {
                    Some("certificate") => {
                        AzureCredential::Certificate(AzureClientCertificate::from_secret(&credential.data)?)
                    }
                    _ => AzureCredential::ClientSecret(AzureClientSecret::from_secret(&credential.data)?),
                },
            )?,
            BackendType::GcpSecretManager => {
                gcp_client(c, GcpAuth::ServiceAccountKey(GcpServiceAccount::from_secret(&credential.data)?))?
            }
            _ => {
                // A credential asking for the server's own identity (Kubernetes: its pod's token;
                // AWS: its keys; GCP: its account) is checked before that identity is looked for.
                let method = c.auth_method.as_deref().unwrap_or_default();
                lends_identity = VaultAuth::asks_server_identity(method, &credential.data);
                let address = c.address.as_deref().unwrap_or_default();
                let mount = credential.data.get("mount").and_then(serde_json::Value::as_str);
                // Lent only with the flag, to a Vault the operator named with this namespace and mount.
                let lent = self.federation.ambient_identity
                    && self
                        .federation
                        .identity_vaults
                        .iter()
                        .any(|v| v.allows(address, c.namespace.as_deref(), method, mount));
                if lends_identity && !lent {
                    return Err(CoreError::BackendError(format!(
                        "federation backend {}: its credential asks to log in as the server's own \
                         identity, which this server does not lend to that Vault, namespace and auth \
                         mount (its operator can allow it with --federation-ambient-identity and \
                         --federation-identity-vault)",
                        backend.id
                    )));
                }
                let auth = VaultAuth::from_secret(method, &credential.data)?;
                // The gate above and the login must agree on whose identity this is.
                if auth.uses_server_identity() != lends_identity {
                    return Err(CoreError::Internal(
                        "a Vault credential's identity was read two ways".into(),
                    ));
                }
                Arc::new(VaultBackend::new(VaultConnection {
                    address: c.address.clone().unwrap_or_default(),
                    namespace: c.namespace.clone(),
                    auth,
                    ca_pem: match &ca {
                        Some((path, secret)) => Some(ca_pem_of(path, secret)?),
                        None => None,
                    },
                })?)
            }
        };
        let mut opened: Vec<AuditEvent> = std::iter::once((credentials_path, credential.version))
            .chain(ca.map(|(p, s)| (p, s.version)))
            .map(|(path, version)| opening("federation.credential.read", path.to_string(), Some(version)))
            .collect();
        if lends_identity {
            opened.push(opening("federation.identity.use", backend.mount.to_string(), None));
        }
        self.keep_client(tenant, backend, built_from, client, opened).await
    }

    /// Audits what building `client` opened, and keeps it for reuse until `built_from` changes.
    async fn keep_client(
        &self,
        tenant: &str,
        backend: &Mounted,
        built_from: String,
        client: Client,
        opened: Vec<AuditEvent>,
    ) -> Result<Client, CoreError> {
        let c = &backend.connection;
        let addresses = [&c.address, &c.endpoint, &c.vault_url, &c.authority_host];
        if let Some(url) = addresses.into_iter().flatten().find(|a| in_clear(a)) {
            tracing::warn!(
                backend = %backend.id,
                url = %url,
                "federation backend reached over plain http: its credential and the values read cross the network unencrypted"
            );
        }
        let system = Principal::system_named(tenant, "federation");
        let request = RequestInfo { request_id: random_id("req_")?, client_ip: None, user_agent: None };
        for event in opened {
            self.record_audit(&system, &request, event).await?;
        }
        let mut clients = self.federation.clients.lock().expect("clients lock");
        clients.insert(backend.id.clone(), (built_from, client.clone()));
        Ok(client)
    }

    fn cached_client(&self, backend: &Mounted, built_from: &str) -> Option<Client> {
        let clients = self.federation.clients.lock().expect("clients lock");
        clients.get(&backend.id).filter(|(from, _)| from == built_from).map(|(_, client)| client.clone())
    }

    /// The client of a backend that signs in as the server's own cloud identity, refused if the
    /// operator no longer lends it. Each client built is audited as `federation.identity.use`, as
    /// opening a credential secret is.
    async fn ambient_client(&self, tenant: &str, backend: &Mounted) -> Result<Client, CoreError> {
        if !self.federation.ambient_identity {
            return Err(CoreError::BackendError(format!(
                "federation backend {}: this server no longer lends its own cloud identity",
                backend.id
            )));
        }
        let built_from = backend.updated_at.timestamp_micros().to_string();
        if let Some(client) = self.cached_client(backend, &built_from) {
            return Ok(client);
        }
        let c = &backend.connection;
        let client = match backend.backend_type {
            BackendType::AzureKeyVault => {
                azure_client(c, AzureCredential::ManagedIdentity(self.federation.server_environment()))?
            }
            BackendType::AwsSecretsManager => aws_client(
                c,
                AwsAuth::AssumeRole {
                    role_arn: c.role_arn.clone().unwrap_or_default(),
                    external_id: Some(tenant.to_owned()),
                    source: RoleSource::Ambient(self.federation.server_environment()),
                },
            )?,
            _ => gcp_client(c, GcpAuth::WorkloadIdentity(self.federation.server_environment()))?,
        };
        let opened = vec![opening("federation.identity.use", backend.mount.to_string(), None)];
        self.keep_client(tenant, backend, built_from, client, opened).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn tenants_locks_are_swept_once_idle_and_never_while_held() {
        let f = Federation::default();
        let path = SecretPath::parse("app/db").expect("path");
        let changing = f.change_mounts("busy").await;
        let writing = f.write_through_turn("writing", &path).await;
        for i in 0..10_000 {
            drop(f.hold_mounts(&format!("tnt_{i}")).await);
        }
        let held = f.locks.lock().expect("locks").by_tenant.len();
        assert!(held <= 2 * LOCK_SWEEP_MIN + 2, "{held} tenants' locks kept");
        // The held locks were kept: the tenant's next change still waits for them.
        let waiting = tokio::time::timeout(Duration::from_millis(50), f.hold_mounts("busy")).await;
        assert!(waiting.is_err(), "a local change passed a backend change in progress");
        let waiting = tokio::time::timeout(Duration::from_millis(50), f.write_through_turn("writing", &path));
        assert!(waiting.await.is_err(), "two write-through writes to one path at once");
        drop((changing, writing));
        drop(f.hold_mounts("busy").await);
        drop(f.write_through_turn("writing", &path).await);
    }

    #[test]
    fn last_error_is_the_latest_calls_and_a_healthy_call_clears_it() {
        let f = Federation::default();
        assert_eq!(f.status_of("be_1"), (None, None));
        let down = FederationError::Unreachable("connection refused".into());
        f.note("be_1", Instant::now(), Err(&down));
        assert!(f.status_of("be_1").1.is_some_and(|e| e.contains("connection refused")));
        assert_eq!(f.status_of("be_2").1, None, "per backend");
        f.note("be_1", Instant::now(), Ok(()));
        let (latency, error) = f.status_of("be_1");
        assert!(latency.is_some());
        assert_eq!(error, None);
    }
}
