//! In-memory copies of what nearly every request would otherwise fetch: tokens by hash, tenants,
//! and the sealed current version of secrets (compiled policies are kept in a [`Cache`] too, in
//! `policies.rs`, and also checked against the tenant's policy epoch when one is known). Secret
//! values stay sealed here; they are opened per request. Every secret write also consults two of
//! them: the tenant's webhook filters, and whether the secret is known to have no rotation
//! schedule (only that absence is kept: a schedule's state changes too often to copy). Every
//! secret request consults the tenant's federation backends, kept here too.
//!
//! Correctness rests on invalidation, not on expiry:
//! - every change this process makes drops the copies it affects once the store call returns
//!   (whether it succeeded or not), or when the request is abandoned mid-call ([`invalidating`]);
//! - changes by other processes arrive through the store's [`ChangeFeed`]; while that feed is not
//!   connected the caches are switched off (and emptied), so nothing is served that a lost
//!   announcement could have made stale;
//! - a fetch that raced with an invalidation is not kept: every fetch takes a [`Ticket`] first and
//!   is only stored if nothing was invalidated since.
//!
//! The time-to-live only bounds how long an entry can outlive a change made behind the server's
//! back (someone editing the database by hand).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::policies::PolicyCache;
use scaivault_crypto::TokenHash;
use scaivault_store::{ChangeFeed, ChangeNotice, StoredSecret, TenantRecord, TokenRecord, WebhookFilter};

/// How long an entry is served without being fetched again.
const TTL: Duration = Duration::from_secs(30);
const TOKENS: usize = 16 * 1024;
const TENANTS: usize = 4 * 1024;
const SECRETS: usize = 64 * 1024;
const WEBHOOK_TENANTS: usize = 4 * 1024;

/// Proof that a fetch started at a given point; see [`Cache::insert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

#[derive(Debug)]
struct Inner<K, V> {
    /// Bumped by every invalidation.
    generation: u64,
    map: HashMap<K, (V, Instant)>,
}

/// A bounded map whose inserts lose to any invalidation that happened while the value was fetched.
#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache { inner: Mutex::new(Inner { generation: 0, map: HashMap::new() }), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let inner = self.lock();
        let (value, at) = inner.map.get(key)?;
        (at.elapsed() < TTL).then(|| value.clone())
    }

    /// Take before fetching what will be inserted.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Keeps `value` unless something was invalidated since `ticket` was taken (it may be older
    /// than that change). A full cache drops an arbitrary entry to make room.
    pub(crate) fn insert(&self, ticket: Ticket, key: K, value: V) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            inner.map.retain(|_, (_, at)| at.elapsed() < TTL);
            // Still full of live entries: drop an arbitrary eighth, so the cost is spread thin.
            let mut evict = if inner.map.len() >= self.capacity { self.capacity / 8 + 1 } else { 0 };
            inner.map.retain(|_, _| {
                let keep = evict == 0;
                evict = evict.saturating_sub(1);
                keep
            });
        }
        inner.map.insert(key, (value, Instant::now()));
    }

    pub(crate) fn remove<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.remove(key);
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.clear();
    }
}

/// The caches of one [`crate::Vault`], and whether they may be used at all.
#[derive(Debug)]
pub(crate) struct Caches {
    /// Off while changes by other processes could go unannounced.
    enabled: AtomicBool,
    pub(crate) tokens: Cache<TokenHash, Arc<TokenRecord>>,
    pub(crate) tenants: Cache<String, Arc<TenantRecord>>,
    /// Keyed by [`secret_key`]; only the current version.
    pub(crate) secrets: Cache<String, Arc<StoredSecret>>,
    /// A tenant's active webhooks and subscriptions, as a write's events are matched against them.
    pub(crate) webhooks: Cache<String, Arc<Vec<WebhookFilter>>>,
    /// Keyed by [`secret_key`]: secrets found to have no rotation schedule.
    pub(crate) unassigned: Cache<String, ()>,
    /// A tenant's federation backends, as every secret request consults them.
    pub(crate) mounts: Cache<String, crate::federation::TenantMounts>,
}

/// Runs `change` (a store call) and then `invalidate`: once the call returned, however it went, or
/// when the caller's future is dropped while the call is under way (the change may have committed
/// anyway).
pub(crate) async fn invalidating<T>(invalidate: impl FnMut(), change: impl Future<Output = T>) -> T {
    let _invalidation = Invalidation(invalidate);
    change.await
}

/// Runs its invalidation when dropped; see [`invalidating`].
struct Invalidation<F: FnMut()>(F);

impl<F: FnMut()> Drop for Invalidation<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The key of a secret's cached current version: namespace and path, which never contain `\0`.
pub(crate) fn secret_key(ns: &str, path: &str) -> String {
    let mut key = String::with_capacity(ns.len() + path.len() + 1);
    key.push_str(ns);
    key.push('\0');
    key.push_str(path);
    key
}

impl Caches {
    pub(crate) fn new(enabled: bool) -> Caches {
        Caches {
            enabled: AtomicBool::new(enabled),
            tokens: Cache::new(TOKENS),
            tenants: Cache::new(TENANTS),
            secrets: Cache::new(SECRETS),
            webhooks: Cache::new(WEBHOOK_TENANTS),
            unassigned: Cache::new(SECRETS),
            mounts: Cache::new(TENANTS),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The value for `key`: from `cache` while the caches are on, else fetched (and kept, if they
    /// are on and nothing was invalidated during the fetch). `true` with a value just fetched;
    /// `None` when the fetch found nothing (never cached).
    pub(crate) async fn through<K, V, E, Fut>(
        &self,
        cache: &Cache<K, V>,
        key: K,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Option<(V, bool)>, E>
    where
        K: Hash + Eq,
        V: Clone,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if self.enabled()
            && let Some(value) = cache.get(&key)
        {
            return Ok(Some((value, false)));
        }
        let ticket = cache.ticket();
        let Some(value) = fetch().await? else { return Ok(None) };
        if self.enabled() {
            cache.insert(ticket, key, value.clone());
        }
        Ok(Some((value, true)))
    }

    fn clear(&self) {
        self.tokens.clear();
        self.tenants.clear();
        self.secrets.clear();
        self.webhooks.clear();
        self.unassigned.clear();
        self.mounts.clear();
    }

    /// This process changed a secret (committed, or possibly committed: call it on failure too).
    pub(crate) fn secret_changed(&self, ns: &str, path: &str) {
        self.secrets.remove(&secret_key(ns, path));
    }

    /// Applies what the store reported another process (or this one) changed.
    pub(crate) fn apply(&self, notice: ChangeNotice, policies: &PolicyCache) {
        match notice {
            ChangeNotice::Connected => {
                self.clear();
                policies.forget_all();
                self.enabled.store(true, Ordering::Release);
            }
            ChangeNotice::Lost => {
                self.enabled.store(false, Ordering::Release);
                self.clear();
                policies.forget_all();
            }
            ChangeNotice::Secret { tenant, path } => self.secret_changed(&tenant, &path),
            ChangeNotice::Tokens => self.tokens.clear(),
            ChangeNotice::Tenant { tenant } => {
                self.tenants.remove(&tenant);
                policies.forget(&tenant);
            }
            ChangeNotice::Webhooks { tenant } => self.webhooks.remove(&tenant),
            ChangeNotice::Assigned { tenant, path } => self.unassigned.remove(&secret_key(&tenant, &path)),
            ChangeNotice::Federation { tenant } => self.mounts.remove(&tenant),
        }
    }
}

/// Opens the caches for a store's change feed: on at once when only this process writes the
/// store; else off until the feed reports it is connected, and kept in step by a task applying it.
pub(crate) fn open(feed: ChangeFeed, policies: Arc<PolicyCache>) -> Arc<Caches> {
    match feed {
        ChangeFeed::Local => Arc::new(Caches::new(true)),
        ChangeFeed::Shared(mut rx) => {
            let caches = Arc::new(Caches::new(false));
            let follower = caches.clone();
            tokio::spawn(async move {
                while let Some(notice) = rx.recv().await {
                    follower.apply(notice, &policies);
                }
            });
            caches
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_racing_an_invalidation_is_dropped() {
        let cache: Cache<String, u32> = Cache::new(8);
        let ticket = cache.ticket();
        cache.remove(&"a".to_owned());
        cache.insert(ticket, "a".into(), 1);
        assert_eq!(cache.get(&"a".to_owned()), None);
        let ticket = cache.ticket();
        cache.insert(ticket, "a".into(), 2);
        assert_eq!(cache.get(&"a".to_owned()), Some(2));
        cache.clear();
        assert_eq!(cache.get(&"a".to_owned()), None);
    }

    /// A change's future dropped while its store call is under way (the client went away) still
    /// drops what the change may have made stale.
    #[tokio::test]
    async fn a_cancelled_change_still_invalidates() {
        let cache: Cache<String, u32> = Cache::new(8);
        cache.insert(cache.ticket(), "a".into(), 1);
        let change = invalidating(|| cache.remove("a"), std::future::pending::<()>());
        let cut = tokio::time::timeout(std::time::Duration::from_millis(10), change).await;
        assert!(cut.is_err(), "the change never finishes on its own");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn stays_within_capacity() {
        let cache: Cache<u32, u32> = Cache::new(64);
        for i in 0..1000 {
            let t = cache.ticket();
            cache.insert(t, i, i);
            assert!(cache.lock().map.len() <= 64);
        }
        assert_eq!(cache.get(&999), Some(999));
    }
}
