//! Per-shard, per-endpoint pools of idle upstream HTTP/1.1 connections.
//! Owned by one shard: `RefCell`, no lock.

use crate::net::{peek, Address, Peeked, Stream};
use crate::stats::{sets, Scope};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint per shard.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// Connections idle at least this long are probed before reuse. Upstreams
/// close idle keep-alive connections after seconds, not microseconds, and a
/// probe costs a syscall per request; a bodiless request that still meets a
/// dead connection is retried on a fresh one by the connection manager.
const PROBE_AFTER: Duration = Duration::from_millis(500);

/// An open upstream connection's place in its cluster's and endpoint's
/// `cx_active` gauges, from connect until it is dropped.
pub struct CxGuard {
    cluster: Arc<Scope<sets::Cluster>>,
    host: Arc<Scope<sets::Host>>,
    shard: usize,
}

impl CxGuard {
    /// Counts a newly connected socket of `host` in `cluster`, on `shard`.
    pub fn new(
        cluster: Arc<Scope<sets::Cluster>>,
        host: Arc<Scope<sets::Host>>,
        shard: usize,
    ) -> Self {
        cluster.inc(shard, sets::Cluster::upstream_cx_active);
        host.inc(shard, sets::Host::cx_active);
        CxGuard {
            cluster,
            host,
            shard,
        }
    }
}

impl CxGuard {
    /// Counts the connection as closed for idling past the cluster's
    /// `idle_timeout` (`upstream_cx_idle_timeout`).
    pub fn idle_timed_out(&self) {
        self.cluster
            .inc(self.shard, sets::Cluster::upstream_cx_idle_timeout);
    }

    /// A handle that counts the same connection's idle timeout, for an
    /// owner that keeps the guard elsewhere.
    pub fn idle_counter(&self) -> IdleCounter {
        IdleCounter(self.cluster.clone(), self.shard)
    }
}

/// Counts one connection's idle timeout in its cluster's stats.
pub struct IdleCounter(Arc<Scope<sets::Cluster>>, usize);

impl IdleCounter {
    /// Counts it (`upstream_cx_idle_timeout`).
    pub fn count(&self) {
        self.0.inc(self.1, sets::Cluster::upstream_cx_idle_timeout);
    }
}

impl Drop for CxGuard {
    fn drop(&mut self) {
        self.cluster
            .dec(self.shard, sets::Cluster::upstream_cx_active);
        self.cluster
            .inc(self.shard, sets::Cluster::upstream_cx_destroy);
        self.host.dec(self.shard, sets::Host::cx_active);
    }
}

/// What a pooled connection may be reused for besides its endpoint: the
/// same cluster (whose TLS settings it was opened with) and the same TLS
/// server name (`auto_sni` varies it by request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolKey {
    /// The cluster's place in the configuration.
    pub cluster: usize,
    /// The TLS server name sent.
    pub server_name: Option<Box<str>>,
}

impl PoolKey {
    /// Whether a connection with this key serves `cluster` and `server_name`.
    pub fn matches(&self, cluster: usize, server_name: Option<&str>) -> bool {
        self.cluster == cluster && self.server_name.as_deref() == server_name
    }
}

/// An open upstream HTTP/1.1 connection.
pub struct UpstreamConn {
    /// The socket.
    pub stream: Stream,
    /// What it may be reused for: see [`PoolKey`].
    pub key: PoolKey,
    /// Requests completed on it (for `max_requests_per_connection`).
    pub requests: u32,
    /// Its place in the stats.
    pub guard: CxGuard,
}

struct Idle {
    stream: UpstreamConn,
    since: Instant,
}

/// The idle connections of one shard, by endpoint address.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<Address, Vec<Idle>>>,
}

impl Pool {
    /// Takes the most recently idled usable connection to `addr` that
    /// `cluster` opened with `server_name`, dropping
    /// any idle for longer than `idle_timeout` (the cluster's) or closed
    /// by the upstream. `now` is the caller's clock reading (one per
    /// request, not one per pool call).
    pub fn take(
        &self,
        addr: &Address,
        cluster: usize,
        server_name: Option<&str>,
        now: Instant,
        idle_timeout: Option<Duration>,
    ) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        let reusable = |c: &Idle| c.stream.key.matches(cluster, server_name);
        while let Some(at) = list.iter().rposition(reusable) {
            let conn = list.remove(at);
            let idle = now.saturating_duration_since(conn.since);
            if idle_timeout.is_some_and(|t| idle >= t) {
                conn.stream.guard.idle_timed_out();
                continue;
            }
            if idle < PROBE_AFTER || peek(&conn.stream.stream) == Peeked::Nothing {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Whether `cluster` has an idle connection to `addr` for `server_name`
    /// (possibly one `take` then finds closed).
    pub fn has_idle(&self, addr: &Address, cluster: usize, server_name: Option<&str>) -> bool {
        self.idle.borrow().get(addr).is_some_and(|list| {
            list.iter()
                .any(|c| c.stream.key.matches(cluster, server_name))
        })
    }

    /// Returns a connection that finished a response cleanly.
    pub fn put(&self, addr: Address, stream: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            // Drop the oldest: it is the likeliest to have been closed.
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Closes every idle connection (used when the shard drains).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}
