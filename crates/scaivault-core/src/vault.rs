use std::sync::Arc;

use scaivault_crypto::{AuditKey, CursorKey, RootKey, SecretBytes, generate_token, hash_token, random_id};
use scaivault_store::{DEFAULT_TENANT, NewToken, Store};

use crate::audit::AuditWriter;
use crate::cache::Caches;
use crate::events::{EventConfig, Events};
use crate::keys::{KeyConfig, Keys};
use crate::policies::PolicyCache;
use crate::ratelimit::{Limiter, RateLimits};
use crate::{Clock, CoreError, JwtIssuer, JwtVerifier};

#[derive(Debug, Clone, Default)]
pub struct VaultConfig {
    pub keys: KeyConfig,
    pub rate_limits: RateLimits,
    /// Trusted JWT issuers; none means JWTs are refused.
    pub jwt_issuers: Vec<JwtIssuer>,
    pub events: EventConfig,
    /// Lets federation backends sign in as the server's own identity (AWS `role_arn` without keys,
    /// Azure `managed_identity`, GCP `workload_identity`, and Vault logins at the Vaults below).
    pub federation_ambient_identity: bool,
    /// Lets that identity also go to federation endpoints on this machine (a local proxy or
    /// emulator), where any listening process would receive it; off, only the clouds' own.
    pub federation_identity_loopback: bool,
    /// The Vaults (with the namespace and auth mount) that a login as the server's own identity
    /// may be sent to; a Vault can replay what it receives.
    pub federation_identity_vaults: Vec<crate::IdentityVault>,
}

/// The application: every use case is a method. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Keys,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policies: Arc<PolicyCache>,
    pub(crate) caches: Arc<Caches>,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) audit: AuditWriter,
    pub(crate) audit_key: Arc<AuditKey>,
    /// Seals the cursors of lists filtered by the caller's access (see `paging::seal_cursor`).
    pub(crate) cursor_key: Arc<CursorKey>,
    pub(crate) token_limiter: Option<Limiter>,
    pub(crate) tenant_limiter: Option<Limiter>,
    pub(crate) events: Events,
    pub(crate) federation: crate::federation::Federation,
}

/// What opening storage produced: the vault, and the root token when this start created it (shown
/// once, never stored in clear).
#[derive(Debug)]
pub struct Opened {
    pub vault: Vault,
    pub root_token: Option<SecretBytes>,
}

impl Vault {
    /// Loads the key ring (failing on a root key that does not match the storage) and, on empty
    /// storage, creates the default tenant and its root token.
    pub async fn open(
        store: Arc<dyn Store>,
        root_key: RootKey,
        clock: Arc<dyn Clock>,
        config: VaultConfig,
    ) -> Result<Opened, CoreError> {
        let jwt = if config.jwt_issuers.is_empty() {
            None
        } else {
            Some(
                JwtVerifier::new(config.jwt_issuers, clock.clone())
                    .map_err(|e| CoreError::InvalidRequest(format!("JWT issuers: {e}")))?,
            )
        };
        let audit_key = Arc::new(AuditKey::derive(&root_key));
        let cursor_key = Arc::new(CursorKey::derive(&root_key));
        let keys = Keys::load(root_key, store.clone(), clock.clone(), config.keys).await?;
        let audit = AuditWriter::start(store.clone(), audit_key.clone());
        let policies = Arc::new(PolicyCache::default());
        let caches = crate::cache::open(store.change_feed(), policies.clone());
        let vault = Vault {
            store,
            keys,
            clock,
            policies,
            caches,
            jwt,
            audit,
            audit_key,
            cursor_key,
            token_limiter: config.rate_limits.per_token.map(Limiter::new),
            tenant_limiter: config.rate_limits.per_tenant.map(Limiter::new),
            events: Events::new(config.events)?,
            federation: crate::federation::Federation::new(
                config.federation_ambient_identity,
                config.federation_identity_loopback,
                config.federation_identity_vaults,
            ),
        };
        let root_token = vault.bootstrap().await?;
        Ok(Opened { vault, root_token })
    }

    /// Whether [`Vault::open`] on `store` will create the default tenant and its root token (the
    /// store holds no tenant yet): a caller makes sure the token has somewhere to go first, since it
    /// is shown once and never stored in clear.
    pub async fn will_bootstrap(store: &dyn Store) -> Result<bool, CoreError> {
        Ok(store.list_tenants(None, None, 1).await?.is_empty())
    }

    async fn bootstrap(&self) -> Result<Option<SecretBytes>, CoreError> {
        let token = generate_token()?;
        let record = NewToken {
            id: random_id("tok_")?,
            tenant: DEFAULT_TENANT.into(),
            hash: hash_token(token.expose()),
            name: "root".into(),
            identity_type: "user".into(),
            identity_id: "root".into(),
            scopes: vec!["admin".into()],
            groups: Vec::new(),
            is_root: true,
            roles: Vec::new(),
            created_by: "system".into(),
            created_at: self.clock.now(),
            expires_at: None,
            parent: None,
        };
        let created = self.store.bootstrap(DEFAULT_TENANT, record).await?;
        Ok(created.then_some(token))
    }

    /// Whether the in-memory caches are in use: always on one embedded store; on shared storage,
    /// only while this process is subscribed to other processes' change announcements.
    pub fn caches_enabled(&self) -> bool {
        self.caches.enabled()
    }

    /// Readiness: storage answers and the key material is loaded.
    pub async fn ready(&self) -> Result<(), CoreError> {
        self.store.ping().await?;
        Ok(())
    }
}
