use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which events a webhook gets, besides its event types.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilters {
    /// Only paths starting with this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only paths matching one of these globs (`*` one segment, `**` any depth); empty means all.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `POST /v1/webhooks`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    pub name: String,
    pub url: String,
    /// The signing secret; one (`whsec_…`) is generated and shown once when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Event types; absent or empty means every type.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub filters: WebhookFilters,
}

/// `PATCH /v1/webhooks/{id}`: absent fields keep their value. A new `secret` is rolled in: the old
/// one keeps signing beside it for `secret_overlap` (default `24h`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_overlap: Option<String>,
    pub events: Option<Vec<String>>,
    pub filters: Option<WebhookFilters>,
    /// `true` re-enables a webhook disabled after its receiver answered `410 Gone`.
    pub active: Option<bool>,
}

/// `POST /v1/webhooks/{id}/rotate-secret`: a new secret (generated when absent); both sign during the
/// overlap.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecretRequest {
    pub secret: Option<String>,
    /// How long the previous secret keeps signing (default `24h`; `0s` drops it at once).
    pub overlap: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookResponse {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub filters: WebhookFilters,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs, after a roll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Only in the answer that generated it; never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookResponse>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/webhooks/{id}/test`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookTestResult {
    pub delivery_id: String,
    /// `success` or `failed`.
    pub status: String,
    pub response_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub response_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryInfo {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub path: Option<String>,
    /// `pending`, `success` or `failed`.
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryInfo>,
    pub next_cursor: Option<String>,
}

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDelivery {
    /// Only `webhook`.
    #[serde(rename = "type")]
    pub delivery_type: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `POST /v1/subscriptions`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    pub name: String,
    /// Globs of the paths whose events are delivered.
    pub paths: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
    pub delivery: SubscriptionDelivery,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionResponse {
    pub id: String,
    pub name: String,
    pub paths: Vec<String>,
    pub events: Vec<String>,
    /// The delivery target; its `secret` only in the answer that generated it.
    pub delivery: SubscriptionDelivery,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionResponse>,
    pub next_cursor: Option<String>,
}
