//! The read cache of [`Client::read_secret_cached`]: entries live for a TTL, the cache holds a
//! bounded number of paths (the least recently used goes first), concurrent misses of one path
//! share one request, a failed refresh serves the stale value, and an event invalidates its path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaivault_api::SecretResponse;
use scaivault_events::Event;

use crate::{Client, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a value is served without asking the server (default 300 s).
    pub ttl: Duration,
    /// How many secrets are kept (default 1,000).
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { ttl: Duration::from_secs(300), max_entries: 1000 }
    }
}

struct Entry {
    value: Arc<SecretResponse>,
    fetched: Instant,
    used: Instant,
}

pub(crate) struct Cache {
    config: CacheConfig,
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per path being fetched, so concurrent misses make one request.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Cache {
    pub(crate) fn new(config: CacheConfig) -> Cache {
        Cache { config, entries: Mutex::new(HashMap::new()), fetching: Mutex::new(HashMap::new()) }
    }

    /// The cached value and whether it is still fresh.
    fn get(&self, path: &str) -> Option<(Arc<SecretResponse>, bool)> {
        let mut entries = self.entries.lock().ok()?;
        let e = entries.get_mut(path)?;
        e.used = Instant::now();
        Some((e.value.clone(), e.fetched.elapsed() < self.config.ttl))
    }

    fn put(&self, path: &str, value: Arc<SecretResponse>) {
        let Ok(mut entries) = self.entries.lock() else { return };
        let now = Instant::now();
        entries.insert(path.to_owned(), Entry { value, fetched: now, used: now });
        while entries.len() > self.config.max_entries.max(1) {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            entries.remove(&oldest);
        }
    }

    fn remove(&self, path: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(path);
        }
    }

    fn lock_for(&self, path: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.fetching.lock() {
            Ok(mut m) => m.entry(path.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

impl Client {
    /// The current version of a secret, from the cache while it is fresh. Without a configured
    /// cache every call asks the server. If a refresh fails transiently (unreachable, rate limited,
    /// unavailable), the last value is served.
    pub async fn read_secret_cached(&self, path: &str) -> Result<Arc<SecretResponse>, Error> {
        let Some(cache) = &self.inner.cache else { return Ok(Arc::new(self.read_secret(path, None).await?)) };
        if let Some((value, true)) = cache.get(path) {
            return Ok(value);
        }
        let lock = cache.lock_for(path);
        let _held = lock.lock().await;
        // Another caller may have refreshed it while we waited.
        let stale = match cache.get(path) {
            Some((value, true)) => return Ok(value),
            Some((value, false)) => Some(value),
            None => None,
        };
        match self.read_secret(path, None).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                cache.put(path, fresh.clone());
                Ok(fresh)
            }
            Err(e) if e.is_transient() => match stale {
                Some(value) => {
                    tracing::warn!(path, error = %e, "serving a stale cached secret");
                    Ok(value)
                }
                None => Err(e),
            },
            Err(e) => {
                if e.is_not_found() {
                    cache.remove(path);
                }
                Err(e)
            }
        }
    }

    /// Drops a path from the cache: its next read asks the server.
    pub fn invalidate(&self, path: &str) {
        if let Some(cache) = &self.inner.cache {
            cache.remove(path);
        }
    }

    /// Drops the path an event is about (from a webhook or the event stream); other events change
    /// nothing. Answers whether the event named a path.
    pub fn invalidate_for(&self, event: &Event) -> bool {
        match &event.path {
            Some(path) => {
                self.invalidate(path);
                true
            }
            None => false,
        }
    }

    /// How many secrets the cache holds.
    pub fn cached_len(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, Cache::len)
    }
}
