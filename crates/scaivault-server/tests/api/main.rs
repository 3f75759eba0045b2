//! The HTTP API driven through the real router over its real stores, one module per area.
//!
//! One test binary rather than one per file: each binary links the whole server, and a dozen of
//! them cost minutes of linking and a gigabyte of disk for nothing.

mod common;

mod access_properties;
mod audit_properties;
mod auth_api;
mod concurrency_api;
mod jwt_api;
mod policies_api;
mod rotation_api;
mod secrets_api;
mod sys_api;
mod tenancy_api;
mod tls;
mod webhooks_api;
