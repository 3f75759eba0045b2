//! Events: what a change emits, which webhooks get it, and the live stream.
//!
//! A change builds its events (and one delivery per matching active webhook) before it commits, and
//! storage appends them to the outbox in the change's own transaction. After the commit the events
//! go to this process's live stream and the delivery worker is woken; other replicas find them in
//! the outbox (deliveries when their worker polls, the live stream by tailing the `events` table).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use scaivault_crypto::random_id;
use scaivault_domain::{GlobPattern, SecretPath};
use scaivault_events::{Event, EventType, Sender};
use scaivault_store::{NewDelivery, NewEvent, StoredEvent, WebhookFilter};
use tokio::sync::{Notify, broadcast, watch};

use crate::cache::invalidating;
use crate::{CoreError, Vault};

/// How events leave the server.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Lets webhooks target loopback, private, link-local and metadata addresses.
    pub allow_private: bool,
    /// Delays before the retries of a failed delivery; after the last one the delivery has failed.
    pub retry_schedule: Vec<Duration>,
    /// How long one attempt may take.
    pub delivery_timeout: Duration,
    /// How long a rolled webhook secret keeps signing beside its successor by default.
    pub secret_overlap: Duration,
    /// How often the delivery worker looks for due deliveries when nothing woke it.
    pub poll_interval: Duration,
    /// How long finished deliveries and delivered events are kept (the delivery log's reach).
    pub retention: Duration,
    /// Feed the live stream from the outbox too, so it shows changes made through other replicas
    /// (PostgreSQL); a single SQLite process sees every change itself.
    pub tail_outbox: bool,
}

/// The contract's default retry schedule: 30 s, 5 min, 30 min, 2 h, 8 h, 24 h.
pub const DEFAULT_RETRY_SCHEDULE: [u64; 6] = [30, 300, 1800, 7200, 28_800, 86_400];

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            allow_private: false,
            retry_schedule: DEFAULT_RETRY_SCHEDULE.iter().map(|s| Duration::from_secs(*s)).collect(),
            delivery_timeout: scaivault_events::DELIVERY_TIMEOUT,
            secret_overlap: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
            tail_outbox: false,
        }
    }
}

/// One event on the live stream (`GET /v1/events/stream`).
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub seq: Option<u64>,
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub path: Option<String>,
    /// The JSON envelope, as webhooks get it.
    pub body: String,
}

impl From<StoredEvent> for LiveEvent {
    fn from(e: StoredEvent) -> Self {
        LiveEvent {
            seq: Some(e.seq),
            id: e.id,
            tenant: e.tenant,
            event_type: e.event_type,
            path: e.path,
            body: e.body,
        }
    }
}

const LIVE_CAPACITY: usize = 4096;

#[derive(Debug)]
pub(crate) struct Events {
    pub(crate) config: EventConfig,
    pub(crate) sender: Sender,
    pub(crate) live: broadcast::Sender<Arc<LiveEvent>>,
    pub(crate) wake: Notify,
    pub(crate) outcomes: DeliveryOutcomes,
    /// Ids already on the live stream, so the outbox tail does not repeat them.
    streamed: Mutex<RecentIds>,
}

/// The newest ids seen, up to a bound.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

const RECENT_IDS: usize = 20_000;

impl RecentIds {
    /// True when `id` is new.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }
}

impl Events {
    /// Puts an event on the live stream unless it is already there.
    fn stream(&self, event: LiveEvent) {
        let fresh = self.streamed.lock().map(|mut r| r.insert(&event.id)).unwrap_or(true);
        if fresh {
            // No receiver is not an error: nobody is watching the stream.
            let _ = self.live.send(Arc::new(event));
        }
    }
}

/// Delivery attempts made by this process, by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryOutcomes {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
}

impl Events {
    pub(crate) fn new(config: EventConfig) -> Result<Events, CoreError> {
        let sender = Sender::new(config.allow_private, config.delivery_timeout)
            .map_err(|e| CoreError::Internal(format!("webhook client: {e}")))?;
        Ok(Events {
            config,
            sender,
            live: broadcast::channel(LIVE_CAPACITY).0,
            wake: Notify::new(),
            outcomes: DeliveryOutcomes::default(),
            streamed: Mutex::new(RecentIds::default()),
        })
    }
}

/// Whether `filter` wants an event of `event_type` on `path`.
pub(crate) fn filter_matches(filter: &WebhookFilter, event_type: &str, path: Option<&str>) -> bool {
    if !filter.events.is_empty() && !filter.events.iter().any(|e| e == event_type) {
        return false;
    }
    let Some(path) = path else {
        return filter.path_prefix.is_none() && filter.paths.is_empty();
    };
    if filter.path_prefix.as_deref().is_some_and(|p| !path.starts_with(p)) {
        return false;
    }
    filter.paths.is_empty()
        || SecretPath::parse(path)
            .is_ok_and(|p| filter.paths.iter().any(|g| GlobPattern::parse(g).is_ok_and(|g| g.matches(&p))))
}

/// The events one change emits, with the webhooks of its tenant loaded once.
pub(crate) struct Emitter {
    tenant: String,
    filters: Arc<Vec<WebhookFilter>>,
}

impl Emitter {
    /// An emitter that delivers to no webhook (the caller adds the deliveries it wants).
    pub(crate) fn without_webhooks(tenant: &str) -> Emitter {
        Emitter { tenant: tenant.to_owned(), filters: Arc::default() }
    }

    /// An event and a delivery for each matching webhook.
    pub(crate) fn event(
        &self,
        event_type: EventType,
        path: Option<&str>,
        data: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<NewEvent, CoreError> {
        self.event_to(event_type, path, data, now, &[])
    }

    /// As [`Emitter::event`], also delivered to the active webhooks named in `also` (a rotation
    /// policy's `webhook_ids`) whatever their filters say.
    pub(crate) fn event_to(
        &self,
        event_type: EventType,
        path: Option<&str>,
        data: serde_json::Value,
        now: DateTime<Utc>,
        also: &[String],
    ) -> Result<NewEvent, CoreError> {
        let event = Event::new(event_type, &self.tenant, path.map(str::to_owned), data, now)?;
        let deliveries = self
            .filters
            .iter()
            .filter(|f| also.contains(&f.id) || filter_matches(f, event_type.as_str(), path))
            .map(|f| Ok(NewDelivery { id: random_id("dlv_")?, webhook_id: f.id.clone(), claim: None }))
            .collect::<Result<Vec<_>, CoreError>>()?;
        let body = String::from_utf8(event.to_body())
            .map_err(|_| CoreError::Internal("event body is not UTF-8".into()))?;
        Ok(NewEvent {
            id: event.event_id,
            tenant: event.tenant_id,
            event_type: event_type.as_str().to_owned(),
            path: event.path,
            created_at: event.timestamp,
            body,
            deliveries,
        })
    }
}

impl Vault {
    /// Whether this server feeds its live stream from the outbox ([`Vault::run_event_tail`]).
    pub fn tails_outbox(&self) -> bool {
        self.events.config.tail_outbox
    }

    /// Webhook delivery attempts made by this process, by outcome.
    pub fn delivery_outcomes(&self) -> &DeliveryOutcomes {
        &self.events.outcomes
    }

    /// The tenant's active webhooks (cached; see `cache.rs`) for the events of one change.
    pub(crate) async fn emitter(&self, tenant: &str) -> Result<Emitter, CoreError> {
        let fetched = self
            .caches
            .through(&self.caches.webhooks, tenant.to_owned(), || async {
                Ok::<_, CoreError>(Some(Arc::new(self.store.active_webhooks(tenant).await?)))
            })
            .await?;
        Ok(Emitter { tenant: tenant.to_owned(), filters: fetched.map(|(f, _)| f).unwrap_or_default() })
    }

    /// This process changed (or may have changed) the tenant's webhooks or subscriptions.
    pub(crate) fn webhooks_changed(&self, tenant: &str) {
        self.caches.webhooks.remove(tenant);
    }

    /// After the change committed: the live stream gets the events, the worker their deliveries.
    pub(crate) fn published(&self, events: &[NewEvent]) {
        let mut deliveries = false;
        for e in events {
            deliveries |= !e.deliveries.is_empty();
            self.events.stream(LiveEvent {
                seq: None,
                id: e.id.clone(),
                tenant: e.tenant.clone(),
                event_type: e.event_type.clone(),
                path: e.path.clone(),
                body: e.body.clone(),
            });
        }
        if deliveries {
            self.events.wake.notify_one();
        }
    }

    /// Builds the events of a change on one secret, commits it with `change`, then publishes them.
    pub(crate) async fn with_events<T, F, Fut>(
        &self,
        tenant: &str,
        event_type: EventType,
        path: &SecretPath,
        data: serde_json::Value,
        change: F,
    ) -> Result<T, CoreError>
    where
        F: FnOnce(Vec<NewEvent>) -> Fut,
        Fut: Future<Output = Result<(T, Vec<NewEvent>), CoreError>>,
    {
        let emitter = self.emitter(tenant).await?;
        let events = vec![emitter.event(event_type, Some(path.as_str()), data, self.clock.now())?];
        let changed =
            invalidating(|| self.caches.secret_changed(tenant, path.as_str()), change(events)).await;
        let (out, events) = changed?;
        self.published(&events);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(events: &[&str], prefix: Option<&str>, paths: &[&str]) -> WebhookFilter {
        WebhookFilter {
            id: "wh_x".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            path_prefix: prefix.map(str::to_owned),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn filters_match_type_prefix_and_globs() {
        let f = filter(&["secret.rotated"], Some("integrations/salesforce/"), &[]);
        assert!(filter_matches(&f, "secret.rotated", Some("integrations/salesforce/oauth")));
        assert!(!filter_matches(&f, "secret.updated", Some("integrations/salesforce/oauth")));
        assert!(!filter_matches(&f, "secret.rotated", Some("integrations/stripe/key")));
        assert!(!filter_matches(&f, "secret.rotated", None));

        let g = filter(&[], None, &["db/*/password", "app/**"]);
        assert!(filter_matches(&g, "secret.created", Some("db/main/password")));
        assert!(filter_matches(&g, "secret.deleted", Some("app/a/b/c")));
        assert!(!filter_matches(&g, "secret.created", Some("db/main/user")));
        assert!(filter_matches(&filter(&[], None, &[]), "federation.sync.failed", None));
    }
}

/// A caller's view of the live stream: its tenant's events on paths it may list, narrowed by the
/// `paths` and `events` it asked for. Ends when the caller's token expires.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    tenant: String,
    access: crate::policies::Access,
    paths: Vec<GlobPattern>,
    types: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    clock: Arc<dyn crate::Clock>,
    /// A token's record, looked up again while the stream runs: revoking it ends the stream.
    revocation: Option<Revocation>,
}

#[derive(Debug)]
struct Revocation {
    store: Arc<dyn scaivault_store::Store>,
    tenant: String,
    token_id: String,
    checked: tokio::time::Instant,
}

/// How stale a stream's view of its token may get before an event is sent, and how often an idle
/// stream looks.
const RECHECK_BEFORE_SENDING: Duration = Duration::from_secs(1);
const RECHECK_WHEN_IDLE: Duration = Duration::from_secs(30);

impl Revocation {
    /// Whether the token still stands, looked up if the last look is older than `every`. A store
    /// that cannot answer keeps the stream (it is checked again next time).
    async fn still_valid(&mut self, every: Duration) -> bool {
        if self.checked.elapsed() < every {
            return true;
        }
        self.checked = tokio::time::Instant::now();
        match self.store.get_token(&self.tenant, &self.token_id).await {
            Ok(Some(record)) => record.revoked_at.is_none(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "looking up an event stream's token failed");
                true
            }
        }
    }
}

impl EventStream {
    fn wants(&self, e: &LiveEvent) -> bool {
        if e.tenant != self.tenant || (!self.types.is_empty() && !self.types.contains(&e.event_type)) {
            return false;
        }
        match e.path.as_deref() {
            // Tenant-wide events go to those who did not narrow the stream to paths.
            None => self.paths.is_empty(),
            Some(p) => SecretPath::parse(p).is_ok_and(|p| {
                self.access.allows(scaivault_domain::Permission::List, &p)
                    && (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(&p)))
            }),
        }
    }

    /// The next event for this caller; `None` when the token expired or was revoked, or the server
    /// shuts down.
    pub async fn next(&mut self) -> Option<Arc<LiveEvent>> {
        loop {
            let left = match self.expires_at {
                Some(at) => (at - self.clock.now()).to_std().ok()?,
                None => Duration::from_secs(3600),
            };
            // Every pass, whatever woke it (other tenants' events included), so the look every
            // 30 seconds happens however busy the channel is.
            if let Some(r) = self.revocation.as_mut()
                && !r.still_valid(RECHECK_WHEN_IDLE).await
            {
                return None;
            }
            let received = match tokio::time::timeout(left.min(RECHECK_WHEN_IDLE), self.rx.recv()).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            match received {
                Ok(e) if self.wants(&e) => {
                    if let Some(r) = self.revocation.as_mut()
                        && !r.still_valid(RECHECK_BEFORE_SENDING).await
                    {
                        return None;
                    }
                    return Some(e);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "an event stream client fell behind; events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// How far behind its newest `seq` the tail looks again: on PostgreSQL a transaction may commit an
/// event with a lower `seq` after a higher one was read.
const TAIL_WINDOW: u64 = 512;
const TAIL_EVERY: Duration = Duration::from_millis(500);

impl Vault {
    /// Feeds the live stream with events other replicas wrote to the outbox, until `shutdown`.
    pub async fn run_event_tail(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last = self.store.last_event_seq().await.unwrap_or(0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TAIL_EVERY) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            // Without watchers the tail only keeps up (marking what it passes as streamed), so a
            // client that connects later is not sent older events; with watchers it also looks back
            // for events committed late.
            let from =
                if self.events.live.receiver_count() == 0 { last } else { last.saturating_sub(TAIL_WINDOW) };
            match self.store.events_after(from, 1000).await {
                Ok(rows) => {
                    for e in rows {
                        last = last.max(e.seq);
                        self.events.stream(LiveEvent::from(e));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the event outbox for the live stream failed"),
            }
        }
    }
}

fn split_list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Vault {
    /// `GET /v1/events/stream?paths=&events=`: comma-separated globs and event types.
    pub async fn event_stream(
        &self,
        principal: &crate::Principal,
        paths: Option<&str>,
        events: Option<&str>,
    ) -> Result<EventStream, CoreError> {
        self.authorize(principal, scaivault_domain::Scope::SubscriptionsRead, None).await?;
        let paths = split_list(paths)
            .map(|g| {
                GlobPattern::parse(g).map_err(|e| CoreError::InvalidRequest(format!("paths: {g:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types = split_list(events)
            .map(|t| {
                t.parse::<EventType>()
                    .map(|t| t.as_str().to_owned())
                    .map_err(|e| CoreError::InvalidRequest(format!("events: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventStream {
            rx: self.events.live.subscribe(),
            tenant: principal.tenant.clone(),
            access: self.access(principal).await?,
            paths,
            types,
            expires_at: principal.expires_at,
            clock: self.clock.clone(),
            // A JWT is not revoked, only expires (checked above); tokens have a record to look at.
            revocation: (principal.kind != crate::TokenKind::Jwt).then(|| Revocation {
                store: self.store.clone(),
                tenant: principal.home_tenant.clone(),
                token_id: principal.token_id.clone(),
                checked: tokio::time::Instant::now(),
            }),
        })
    }
}
