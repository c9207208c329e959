//! Clusters, their endpoints, load balancing, DNS and per-shard pools.

pub mod dns;
pub mod lb;
pub mod pool;

use crate::config;
use std::net::SocketAddr;
use std::time::Duration;

/// One resolved endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `load_balancing_weight`.
    pub weight: u32,
}

/// A cluster as published in a snapshot: its config and current endpoint set.
#[derive(Debug)]
pub struct Cluster {
    /// The decoded config (the main thread re-resolves STRICT_DNS from it).
    pub config: config::Cluster,
    /// The endpoints requests may go to.
    pub endpoints: Vec<Endpoint>,
}

impl Cluster {
    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// `connect_timeout`.
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }
}
