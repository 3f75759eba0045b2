//! The event envelope every delivery, subscription and stream carries (SPEC §7), and the catalogue of
//! event types. An event never carries a secret value: `data` holds metadata only.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use scaivault_crypto::CryptoError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The catalogue of events. The wire names are dotted (`secret.created`); receivers and subscription
/// filters match on them, so they are part of the contract and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "secret.created")]
    SecretCreated,
    #[serde(rename = "secret.updated")]
    SecretUpdated,
    #[serde(rename = "secret.rotated")]
    SecretRotated,
    #[serde(rename = "secret.deleted")]
    SecretDeleted,
    #[serde(rename = "rotation.due")]
    RotationDue,
    #[serde(rename = "rotation.failed")]
    RotationFailed,
    #[serde(rename = "federation.sync.completed")]
    FederationSyncCompleted,
    #[serde(rename = "federation.sync.failed")]
    FederationSyncFailed,
    #[serde(rename = "federation.backend.unreachable")]
    FederationBackendUnreachable,
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    /// Every event type, in catalogue order (for validation messages and "all events" subscriptions).
    pub const ALL: [EventType; 10] = [
        EventType::SecretCreated,
        EventType::SecretUpdated,
        EventType::SecretRotated,
        EventType::SecretDeleted,
        EventType::RotationDue,
        EventType::RotationFailed,
        EventType::FederationSyncCompleted,
        EventType::FederationSyncFailed,
        EventType::FederationBackendUnreachable,
        EventType::WebhookTest,
    ];

    /// The dotted wire name, as in the JSON body and the `X-ScaiVault-Event-Type` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::SecretCreated => "secret.created",
            EventType::SecretUpdated => "secret.updated",
            EventType::SecretRotated => "secret.rotated",
            EventType::SecretDeleted => "secret.deleted",
            EventType::RotationDue => "rotation.due",
            EventType::RotationFailed => "rotation.failed",
            EventType::FederationSyncCompleted => "federation.sync.completed",
            EventType::FederationSyncFailed => "federation.sync.failed",
            EventType::FederationBackendUnreachable => "federation.backend.unreachable",
            EventType::WebhookTest => "webhook.test",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not in the catalogue. The message lists the valid names so an API client can fix
/// its request without reading the documentation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown event type '{name}'; valid event types are: {}", valid_names())]
pub struct UnknownEventType {
    pub name: String,
}

fn valid_names() -> String {
    EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType { name: s.to_owned() })
    }
}

/// The event envelope: `{event_id, event_type, tenant_id, path, timestamp, data}` in that order.
///
/// The field order is the declaration order, and it is what receivers see and what the signature
/// covers, so do not reorder the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_` + 20 base62 characters; receivers dedupe on it (delivery is at least once).
    pub event_id: String,
    pub event_type: EventType,
    pub tenant_id: String,
    /// The secret path the event is about; `null` for events about no single path (a federation sync).
    pub path: Option<String>,
    /// RFC 3339, UTC (`Z`).
    pub timestamp: DateTime<Utc>,
    /// Event-specific metadata; never a secret value.
    pub data: Value,
}

impl Event {
    /// A new event with a fresh random id. `now` comes from the caller's clock so tests stay exact.
    pub fn new(
        event_type: EventType,
        tenant_id: impl Into<String>,
        path: Option<String>,
        data: Value,
        now: DateTime<Utc>,
    ) -> Result<Event, CryptoError> {
        Ok(Event {
            event_id: scaivault_crypto::random_id("evt_")?,
            event_type,
            tenant_id: tenant_id.into(),
            path,
            timestamp: now,
            data,
        })
    }

    /// The delivery body: compact JSON, byte for byte what `serde_json::to_vec(self)` gives.
    ///
    /// It is written field by field through `Value`'s infallible `Display` so that building a body
    /// cannot fail and needs no `unwrap`: every field is a string, null, a timestamp or a `Value`.
    pub fn to_body(&self) -> Vec<u8> {
        let path = match &self.path {
            Some(p) => Value::from(p.as_str()),
            None => Value::Null,
        };
        format!(
            "{{\"event_id\":{},\"event_type\":{},\"tenant_id\":{},\"path\":{},\"timestamp\":{},\"data\":{}}}",
            Value::from(self.event_id.as_str()),
            Value::from(self.event_type.as_str()),
            Value::from(self.tenant_id.as_str()),
            path,
            Value::from(self.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            self.data,
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
            assert_eq!(serde_json::from_value::<EventType>(json!(t.as_str())).unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "secret.created",
                "secret.updated",
                "secret.rotated",
                "secret.deleted",
                "rotation.due",
                "rotation.failed",
                "federation.sync.completed",
                "federation.sync.failed",
                "federation.backend.unreachable",
                "webhook.test",
            ]
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "secret.exploded".parse::<EventType>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'secret.exploded'"), "{msg}");
        for t in EventType::ALL {
            assert!(msg.contains(t.as_str()), "{msg}");
        }
        assert!("SecretCreated".parse::<EventType>().is_err());
        assert!(serde_json::from_value::<EventType>(json!("SecretCreated")).is_err());
    }

    fn sample(path: Option<String>, nanos: u32) -> Event {
        let now =
            Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::nanoseconds(nanos.into());
        Event::new(EventType::RotationDue, "acme", path, json!({"due_now": true, "q": "\"\n"}), now).unwrap()
    }

    #[test]
    fn body_has_the_spec_field_order_and_matches_serde() {
        for event in [sample(Some("db/prod".into()), 0), sample(None, 123_456_000), sample(None, 1)] {
            let body = event.to_body();
            assert_eq!(body, serde_json::to_vec(&event).unwrap());
            let text = String::from_utf8(body.clone()).unwrap();
            let order: Vec<usize> = ["event_id", "event_type", "tenant_id", "path", "timestamp", "data"]
                .iter()
                .map(|k| text.find(&format!("\"{k}\":")).unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
            let back: Event = serde_json::from_slice(&body).unwrap();
            assert_eq!(back, event);
        }
        let text = String::from_utf8(sample(None, 0).to_body()).unwrap();
        assert!(text.contains("\"timestamp\":\"2025-03-04T05:06:07Z\""), "{text}");
        assert!(text.contains("\"path\":null"), "{text}");
        assert!(text.contains("\"event_type\":\"rotation.due\""), "{text}");
    }

    #[test]
    fn ids_are_fresh_and_prefixed() {
        let a = sample(None, 0);
        let b = sample(None, 0);
        assert!(a.event_id.starts_with("evt_") && a.event_id.len() == 24);
        assert_ne!(a.event_id, b.event_id);
    }
}
