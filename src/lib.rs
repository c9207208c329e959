//! Ringway: an Envoy-compatible L4/L7 proxy, thread-per-core on io_uring.

#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod config;
pub mod http;
pub mod jwt;
pub mod listener;
pub mod log_format;
pub mod logger;
pub mod net;
pub mod proxy_config;
pub mod router;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod tls;
pub mod token_bucket;
pub mod upstream;
pub mod xds;
