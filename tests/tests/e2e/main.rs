//! The real `scaivault-server` and `scaivault` binaries driven over HTTP and a shell, one module per
//! area, in one test binary (one link instead of a dozen).

mod audit;
mod caches;
mod cli;
mod client;
mod confidentiality;
mod durability;
mod federation;
mod operations;
mod rotation;
mod tidy;
mod webhooks;
