use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use scaivault_api::{KeyStatusResponse, KeyVersionStatus};
use scaivault_crypto::{CryptoError, KeyRing, RootKey, SealContext, SealedSecret, SecretBytes};
use scaivault_store::{Store, StoreError};
use tokio::sync::Mutex;

use crate::{Clock, CoreError, Principal, Vault};

/// AES-GCM with random 96-bit nonces stays within its bounds below 2^32 uses of one key; a new
/// master key version is made well before that.
pub const DEFAULT_WRAP_LIMIT: u64 = 1 << 31;

#[derive(Debug, Clone, Copy)]
pub struct KeyConfig {
    /// Wraps reserved durably per storage round trip.
    pub reserve_block: u64,
    /// Reserved wraps after which a master key version is retired for a new one.
    pub wrap_limit: u64,
    /// Data keys re-wrapped per storage batch during a master-key rotation.
    pub rewrap_batch: u32,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig { reserve_block: 1024, wrap_limit: DEFAULT_WRAP_LIMIT, rewrap_batch: 256 }
    }
}

/// The key ring plus the bookkeeping that keeps it honest across processes: wrap budgets are
/// reserved in storage before use, and versions made elsewhere are loaded on demand.
#[derive(Debug)]
pub(crate) struct Keys {
    ring: RwLock<KeyRing>,
    reserve: Mutex<()>,
    config: KeyConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Keys {
    /// Loads every master key version, making version 1 on empty storage. A wrong root key fails here.
    pub(crate) async fn load(
        root: RootKey,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: KeyConfig,
    ) -> Result<Keys, CoreError> {
        let keys =
            Keys { ring: RwLock::new(KeyRing::new(root)), reserve: Mutex::new(()), config, store, clock };
        keys.reload().await?;
        if keys.read().current_version().is_none() {
            keys.add_version(1).await?;
        }
        Ok(keys)
    }

    fn read(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn reload(&self) -> Result<(), CoreError> {
        let stored = self.store.master_keys().await?;
        let mut ring = self.write();
        for key in &stored {
            ring.load_master_key(key).map_err(|e| match e {
                CryptoError::WrongRootKey(_) => CoreError::Internal(e.to_string()),
                other => other.into(),
            })?;
        }
        Ok(())
    }

    /// Makes master key `version` unless another process already did, then loads what storage has.
    /// The new key is used only once storage holds it, so nothing is ever sealed under a key that
    /// could be lost.
    async fn add_version(&self, version: u32) -> Result<(), CoreError> {
        let stored = self.read().new_master_key(version)?;
        match self.store.insert_master_key(&stored, self.clock.now()).await {
            // AlreadyExists: another replica made this version first; we take theirs.
            Ok(()) | Err(StoreError::AlreadyExists) => self.reload().await,
            Err(e) => Err(e.into()),
        }
    }

    /// Makes sure the current version has at least one reserved wrap, retiring it for a new version
    /// when its durable count reaches the limit.
    async fn ensure_budget(&self) -> Result<(), CoreError> {
        let _guard = self.reserve.lock().await;
        loop {
            let current = self.read().current_version().ok_or(CryptoError::EmptyKeyRing)?;
            if self.read().wrap_budget(current) > 0 {
                return Ok(());
            }
            // Before reserving more, pick up versions other replicas made (a rotation elsewhere), so
            // no replica keeps sealing under a retired key for longer than one block.
            self.reload().await?;
            if self.read().current_version() != Some(current) {
                continue;
            }
            let total = self.store.reserve_wraps(current, self.config.reserve_block).await?;
            if total > self.config.wrap_limit {
                tracing::info!(
                    version = current,
                    wraps = total,
                    "master key reached its wrap limit; adding a version"
                );
                self.add_version(current + 1).await?;
                continue;
            }
            self.read().add_wrap_budget(current, self.config.reserve_block);
        }
    }

    /// Seals with a durable wrap reservation. `attempt` runs the sealing inside whatever transaction
    /// the caller needs, and is retried when the budget ran dry in between.
    pub(crate) async fn with_budget<T, F, Fut>(&self, mut attempt: F) -> Result<T, CoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        for _ in 0..8 {
            self.ensure_budget().await?;
            match attempt().await {
                Err(StoreError::Seal(CryptoError::WrapBudgetExhausted(_))) => continue,
                other => return other.map_err(CoreError::from),
            }
        }
        Err(CoreError::Internal("could not reserve a master key wrap".into()))
    }

    pub(crate) fn seal(&self, ctx: &SealContext<'_>, plaintext: &[u8]) -> Result<SealedSecret, CryptoError> {
        self.read().seal(ctx, plaintext)
    }

    pub(crate) async fn open_sealed(
        &self,
        ctx: &SealContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<SecretBytes, CoreError> {
        if !self.read().contains(sealed.key_version()) {
            // Made by another replica since we loaded.
            self.reload().await?;
        }
        Ok(self.read().open(ctx, sealed)?)
    }

    /// Re-wraps every data key not under the current version, in batches. Safe to interrupt and
    /// to run again: each row is swapped only if it is still under the key it was read with.
    pub(crate) async fn rewrap_all(&self, max_batches: Option<usize>) -> Result<u64, CoreError> {
        let mut done = 0;
        let mut batches = 0;
        loop {
            if max_batches.is_some_and(|m| batches >= m) {
                return Ok(done);
            }
            batches += 1;
            let current = self.read().current_version().ok_or(CryptoError::EmptyKeyRing)?;
            let items = self.store.pending_rewraps(current, self.config.rewrap_batch).await?;
            if items.is_empty() {
                return Ok(done);
            }
            for item in &items {
                let ctx = SealContext { tenant: &item.tenant, path: &item.path, version: item.version };
                if !self.read().contains(item.sealed.key_version()) {
                    self.reload().await?;
                }
                let swapped = self
                    .with_budget(|| async {
                        let sealed = self.read().rewrap(&ctx, &item.sealed)?;
                        self.store.replace_wrap(item, &sealed).await
                    })
                    .await?;
                done += u64::from(swapped);
            }
        }
    }

    pub(crate) async fn rotate(&self) -> Result<u32, CoreError> {
        let _guard = self.reserve.lock().await;
        self.reload().await?;
        let next = self.read().current_version().map_or(1, |v| v + 1);
        self.add_version(next).await?;
        Ok(next)
    }

    pub(crate) async fn status(&self) -> Result<KeyStatusResponse, CoreError> {
        let versions = self.store.key_status().await?;
        let current = versions.iter().map(|v| v.version).max().unwrap_or(0);
        Ok(KeyStatusResponse {
            current_key_version: current,
            rewrap_pending: versions.iter().filter(|v| v.version != current).map(|v| v.data_keys).sum(),
            key_versions: versions
                .into_iter()
                .map(|v| KeyVersionStatus {
                    version: v.version,
                    created_at: v.created_at,
                    wraps: v.wraps,
                    data_keys: v.data_keys,
                })
                .collect(),
        })
    }
}

impl Vault {
    /// `POST /v1/sys/rotate-master-key`: a new master key version, then every data key re-wrapped.
    pub async fn rotate_master_key(&self, principal: &Principal) -> Result<KeyStatusResponse, CoreError> {
        self.authorize_system(principal).await?;
        self.rotate_master_key_unchecked().await
    }

    /// The same rotation for the offline `rotate-master-key` command, which has no caller.
    pub async fn rotate_master_key_unchecked(&self) -> Result<KeyStatusResponse, CoreError> {
        let version = self.keys.rotate().await?;
        let rewrapped = self.resume_rewrap(None).await?;
        tracing::info!(version, rewrapped, "master key rotated");
        self.keys.status().await
    }

    /// Finishes an interrupted rotation without making a new version; `max_batches` bounds the work
    /// (tests use it to stop half-way).
    pub async fn resume_rewrap(&self, max_batches: Option<usize>) -> Result<u64, CoreError> {
        let rewrapped = self.keys.rewrap_all(max_batches).await;
        // Cached sealed copies still name the old wrapping (which would still open); drop them so
        // the old key version stops being used at once.
        self.caches.secrets.clear();
        rewrapped
    }

    /// Starts a rotation without re-wrapping anything: what a crash right after the new version leaves.
    pub async fn add_master_key_version(&self) -> Result<u32, CoreError> {
        self.keys.rotate().await
    }

    /// `GET /v1/sys/key-status`
    pub async fn key_status(&self, principal: &Principal) -> Result<KeyStatusResponse, CoreError> {
        self.authorize_system(principal).await?;
        self.keys.status().await
    }
}
