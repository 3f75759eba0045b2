//! Events and their delivery for ScaiVault (SPEC §7): the event envelope and catalogue, the two webhook
//! signature schemes a delivery carries (ScaiVault's `X-ScaiVault-Signature` and Standard Webhooks'
//! `webhook-signature`), the outbound URL guard that keeps webhooks away from loopback, private,
//! link-local and metadata addresses (at creation and again at connection time, against DNS
//! rebinding), and the HTTP sender that makes one delivery attempt.
//!
//! This crate holds no state and decides no retries: the caller (core) stores deliveries durably and
//! calls [`Sender::send`] per attempt. All MACs come from `scaivault-crypto`; nothing here touches
//! ring directly.

mod hex;
mod model;
mod sender;
mod signature;
mod url_guard;

pub use model::{Event, EventType, UnknownEventType};
pub use reqwest::Url;
pub use sender::{
    Attempt, CONNECT_TIMEOUT, DELIVERY_TIMEOUT, MAX_RESPONSE_BODY, SendError, Sender, USER_AGENT,
};
pub use signature::{
    DEFAULT_TOLERANCE_SECS, VerifyError, generate_webhook_secret, sign_delivery, standard_key,
    verify_scaivault, verify_standard,
};
pub use url_guard::{GuardedResolver, UrlError, check_webhook_url, is_forbidden_ip, parse_webhook_url};
