//! What other processes sharing the storage changed, so in-memory caches of tokens, tenants,
//! policies, secrets, webhook filters and rotation assignments can drop what is no longer true.

use serde::Deserialize;

/// How a backend reports changes committed by other processes.
#[derive(Debug)]
pub enum ChangeFeed {
    /// Only this process writes the storage (embedded SQLite): what it changes itself is all there
    /// is, so its own invalidations keep its caches true.
    Local,
    /// Several processes share the storage; every committed change is reported here, in commit
    /// order, by every process (this one included).
    Shared(tokio::sync::mpsc::Receiver<ChangeNotice>),
}

/// One report of a [`ChangeFeed::Shared`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "k")]
pub enum ChangeNotice {
    /// Subscribed (again): anything before this may have been missed.
    #[serde(skip)]
    Connected,
    /// The subscription is lost: from now until the next `Connected`, changes may go unreported.
    #[serde(skip)]
    Lost,
    /// A secret's head or one of its versions changed.
    #[serde(rename = "s")]
    Secret {
        #[serde(rename = "t")]
        tenant: String,
        #[serde(rename = "p")]
        path: String,
    },
    /// A token was revoked, changed or removed.
    #[serde(rename = "k")]
    Tokens,
    /// A tenant changed: its record, or its policies and bindings (which bump its epoch).
    #[serde(rename = "n")]
    Tenant {
        #[serde(rename = "t")]
        tenant: String,
    },
    /// One of a tenant's webhooks or subscriptions was created, changed (or disabled) or removed.
    #[serde(rename = "w")]
    Webhooks {
        #[serde(rename = "t")]
        tenant: String,
    },
    /// One of a tenant's federation backends was created, changed or removed.
    #[serde(rename = "f")]
    Federation {
        #[serde(rename = "t")]
        tenant: String,
    },
    /// A secret was given a rotation schedule.
    #[serde(rename = "r")]
    Assigned {
        #[serde(rename = "t")]
        tenant: String,
        #[serde(rename = "p")]
        path: String,
    },
}

impl ChangeNotice {
    /// Parses the payload a backend's notification carries; `None` for one it does not know (a
    /// newer version's), which the caller must treat as "anything may have changed".
    pub fn parse(payload: &str) -> Option<ChangeNotice> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            ChangeNotice::parse(r#"{"k":"s","t":"tnt_a","p":"db/x"}"#),
            Some(ChangeNotice::Secret { tenant: "tnt_a".into(), path: "db/x".into() })
        );
        assert_eq!(ChangeNotice::parse(r#"{"k":"k"}"#), Some(ChangeNotice::Tokens));
        assert_eq!(
            ChangeNotice::parse(r#"{"k":"n","t":"tnt_a"}"#),
            Some(ChangeNotice::Tenant { tenant: "tnt_a".into() })
        );
        assert_eq!(
            ChangeNotice::parse(r#"{"k":"w","t":"tnt_a"}"#),
            Some(ChangeNotice::Webhooks { tenant: "tnt_a".into() })
        );
        assert_eq!(
            ChangeNotice::parse(r#"{"k":"f","t":"tnt_a"}"#),
            Some(ChangeNotice::Federation { tenant: "tnt_a".into() })
        );
        assert_eq!(
            ChangeNotice::parse(r#"{"k":"r","t":"tnt_a","p":"db/x"}"#),
            Some(ChangeNotice::Assigned { tenant: "tnt_a".into(), path: "db/x".into() })
        );
        assert_eq!(ChangeNotice::parse(r#"{"k":"zz"}"#), None);
        assert_eq!(ChangeNotice::parse("not json"), None);
    }
}
