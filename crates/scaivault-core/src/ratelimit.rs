//! Per-token and per-tenant token buckets on the injected clock (so tests move time instead of
//! sleeping; a crate with its own clock could not share ours). Off unless configured.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    /// Parses `N/s`, `N/m` or `N/h`; the burst is two seconds' worth (at least one request).
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (n, unit) =
            text.split_once('/').ok_or_else(|| format!("expected N/s, N/m or N/h, got {text:?}"))?;
        let n: u32 = n.parse().map_err(|_| format!("expected a whole number of requests, got {n:?}"))?;
        let seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?}: use s, m or h")),
        };
        if n == 0 {
            return Err("a rate limit must allow at least one request".into());
        }
        let per_second = f64::from(n) / seconds;
        Ok(RateLimit { per_second, burst: (per_second * 2.0).max(1.0) })
    }
}

/// Which buckets apply; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimits {
    pub per_token: Option<RateLimit>,
    pub per_tenant: Option<RateLimit>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    fn refill(&self, bucket: &mut Bucket, now: DateTime<Utc>) {
        let elapsed = (now - bucket.updated).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        bucket.updated = now;
    }

    /// Takes one request from `key`'s bucket, or says how many whole seconds until one is available.
    pub(crate) fn take(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Full buckets carry no state worth keeping: a fresh one is the same.
            let limit = self.limit;
            buckets.retain(|_, b| {
                let elapsed = (now - b.updated).num_seconds().max(0) as f64;
                b.tokens + elapsed * limit.per_second < limit.burst
            });
        }
        let bucket =
            buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.limit.burst, updated: now });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.limit.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(RateLimit::parse("10/s").unwrap(), RateLimit { per_second: 10.0, burst: 20.0 });
        assert_eq!(RateLimit::parse("60/m").unwrap().per_second, 1.0);
        assert_eq!(RateLimit::parse("1/h").unwrap().burst, 1.0);
        for bad in ["", "10", "0/s", "-1/s", "1.5/s", "10/d", "x/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_allows_burst_then_refills() {
        let limiter = Limiter::new(RateLimit { per_second: 2.0, burst: 4.0 });
        let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        for _ in 0..4 {
            limiter.take("k", t0).unwrap();
        }
        assert_eq!(limiter.take("k", t0), Err(1));
        limiter.take("other", t0).unwrap();
        let later = t0 + TimeDelta::milliseconds(500);
        limiter.take("k", later).unwrap();
        assert!(limiter.take("k", later).is_err());
        let much_later = t0 + TimeDelta::hours(1);
        for _ in 0..4 {
            limiter.take("k", much_later).unwrap();
        }
        assert!(limiter.take("k", much_later).is_err(), "the burst caps what idle time accrues");
    }
}
