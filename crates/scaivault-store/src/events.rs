//! Records of the event outbox: webhooks (and subscriptions), events, deliveries and their attempts.

use chrono::{DateTime, Utc};
use scaivault_crypto::SealedSecret;

use crate::{StoreError, from_micros};

/// A webhook registered with `POST /v1/webhooks`, or a subscription (`POST /v1/subscriptions`), which
/// is a webhook whose `paths` are globs and which is managed under its own route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    Webhook,
    Subscription,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Webhook => "webhook",
            WebhookKind::Subscription => "subscription",
        }
    }

    pub fn parse(s: &str) -> Result<WebhookKind, StoreError> {
        match s {
            "webhook" => Ok(WebhookKind::Webhook),
            "subscription" => Ok(WebhookKind::Subscription),
            other => Err(StoreError::Corrupt(format!("unknown webhook kind {other:?}"))),
        }
    }
}

/// A signing secret as stored: sealed, with the generation it was sealed under (the seal context's
/// version, so a ciphertext of one generation never opens as another).
#[derive(Debug, Clone)]
pub struct SealedWebhookSecret {
    pub generation: u64,
    pub sealed: SealedSecret,
}

#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub tenant: String,
    pub id: String,
    pub kind: WebhookKind,
    pub name: String,
    pub url: String,
    /// Event types delivered; empty means every type.
    pub events: Vec<String>,
    pub path_prefix: Option<String>,
    /// Globs; empty means every path (under `path_prefix`).
    pub paths: Vec<String>,
    pub secret: SealedWebhookSecret,
    /// The secret before the last roll, still used to sign until `previous_until`.
    pub previous: Option<(SealedWebhookSecret, DateTime<Utc>)>,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What matching an event against a webhook needs, without its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookFilter {
    pub id: String,
    pub events: Vec<String>,
    pub path_prefix: Option<String>,
    pub paths: Vec<String>,
}

/// An event and its deliveries, appended to the outbox in the transaction of the change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub path: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The JSON envelope exactly as receivers get it.
    pub body: String,
    pub deliveries: Vec<NewDelivery>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub webhook_id: String,
    /// Claimed at creation by the caller, which sends it at once (`POST /v1/webhooks/{id}/test`).
    pub claim: Option<Claim>,
}

/// A lease on deliveries: only the holder of `id` may record their attempt until `until`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub until: DateTime<Utc>,
}

/// A delivery claimed for sending, with everything the sender needs.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub tenant: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Failed attempts since the last (re)delivery request, which picks the next retry delay.
    pub retry_step: u32,
    pub url: String,
    pub secret: SealedWebhookSecret,
    pub previous: Option<(SealedWebhookSecret, DateTime<Utc>)>,
}

/// How an attempt ended, and what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub response_code: Option<u16>,
    /// Why it failed; never a header, body or secret.
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The result of one attempt, recorded by the claim holder.
#[derive(Debug, Clone)]
pub struct FinishAttempt<'a> {
    pub tenant: &'a str,
    pub delivery_id: &'a str,
    pub webhook_id: &'a str,
    pub claim_id: &'a str,
    pub attempt: AttemptRecord,
    pub outcome: AttemptOutcome,
    /// Disables the webhook (the receiver answered `410 Gone`).
    pub disable_webhook: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "success",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<DeliveryStatus, StoreError> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "success" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(StoreError::Corrupt(format!("unknown delivery status {other:?}"))),
        }
    }
}

/// A delivery with its attempts, for the delivery log.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub path: Option<String>,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Vec<AttemptRecord>,
}

/// An event as stored in the outbox.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub body: String,
}

/// The seal context path of a webhook secret is this prefix and the webhook id: no secret path
/// starts with a NUL byte, so no secret ciphertext ever opens as a webhook secret or the reverse.
pub const WEBHOOK_SEAL_PREFIX: &str = "\0webhook/";

/// Converts stored microseconds, for the backends.
pub fn micros_opt(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_micros).transpose()
}

/// The `order_key` of a delivery: deliveries of one key to one webhook go out in order.
pub fn order_key(path: Option<&str>) -> &str {
    path.unwrap_or("")
}

/// Rows per multi-row `INSERT` of events or of deliveries: ten parameters each stays far below
/// every backend's parameter limit.
pub const EVENT_ROWS_PER_INSERT: usize = 500;

/// Whether `events` and `deliveries` each fit one multi-row `INSERT`, so a write can send them as
/// part of its own command.
pub fn fit_one_insert(events: &[NewEvent], deliveries: &[(&NewEvent, &NewDelivery)]) -> bool {
    events.len() <= EVENT_ROWS_PER_INSERT && deliveries.len() <= EVENT_ROWS_PER_INSERT
}

/// Every delivery of `events`, beside its event, in order.
pub fn deliveries_of(events: &[NewEvent]) -> Vec<(&NewEvent, &NewDelivery)> {
    events.iter().flat_map(|e| e.deliveries.iter().map(move |d| (e, d))).collect()
}
