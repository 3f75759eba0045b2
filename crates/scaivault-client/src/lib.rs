//! The Rust client of the ScaiVault HTTP API: a typed method for every route (sharing the server's
//! wire types), errors that carry the contract's code, message and request id, retries with
//! backoff on `rate_limited`, `service_unavailable` and connection errors (honouring
//! `Retry-After`), an optional read cache that events invalidate, and the webhook signature
//! verifiers for receivers.
//!
//! ```no_run
//! # async fn run() -> Result<(), scaivault_client::Error> {
//! use scaivault_client::{CacheConfig, Client};
//! let vault = Client::builder("http://127.0.0.1:7200").token("skt_…").cache(CacheConfig::default()).build()?;
//! let db = vault.read_secret_cached("app/db/password").await?;
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod endpoints;
mod error;
mod stream;

pub use cache::CacheConfig;
pub use client::{Client, ClientBuilder};
pub use endpoints::{AuditFilter, Page};
pub use error::Error;
pub use scaivault_api as api;
/// Verifying deliveries in a receiver: `verify_scaivault` (the `X-ScaiVault-Signature` scheme) and
/// `verify_standard` (Standard Webhooks), and the event envelope.
pub use scaivault_events::{
    DEFAULT_TOLERANCE_SECS, Event, EventType, VerifyError, verify_scaivault, verify_standard,
};
pub use stream::EventStream;
