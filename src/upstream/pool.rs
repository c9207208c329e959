//! Per-shard, per-endpoint pools of idle upstream HTTP/1.1 connections.
//! Owned by one shard: `RefCell`, no lock.

use super::lanes::Permit;
use crate::config::Priority;
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
/// `cx_active` gauges and under the circuit breakers, from connect until
/// it is dropped.
pub struct CxGuard {
    cluster: Arc<Scope<sets::Cluster>>,
    host: Arc<Scope<sets::Host>>,
    shard: usize,
    permit: Permit,
}

impl CxGuard {
    /// Counts a newly connected socket of `host` in `cluster`, on `shard`,
    /// holding the `permit` it was opened with.
    pub fn new(
        cluster: Arc<Scope<sets::Cluster>>,
        host: Arc<Scope<sets::Host>>,
        shard: usize,
        permit: Permit,
    ) -> Self {
        cluster.inc(shard, sets::Cluster::upstream_cx_active);
        host.inc(shard, sets::Host::cx_active);
        CxGuard {
            cluster,
            host,
            shard,
            permit,
        }
    }

    /// The connection's lane (its requests waiting for a connection).
    pub fn lane(&self) -> &std::rc::Rc<super::lanes::Lane> {
        self.permit.lane()
    }

    /// What the connection may be reused for.
    pub fn key(&self) -> &PoolKey {
        &self.permit.key
    }

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
/// same cluster (whose TLS settings it was opened with), the same TLS
/// server name (`auto_sni` varies it by request), and the same routing
/// priority (each has connection pools of its own, as in Envoy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The cluster's pooled connections (`Cluster::pool_id`).
    pub cluster: usize,
    /// The TLS server name sent.
    pub server_name: Option<Box<str>>,
    /// The routing priority.
    pub priority: Priority,
}

impl PoolKey {
    /// Whether a connection with this key serves `want`.
    pub fn matches(&self, want: &PoolWant<'_>) -> bool {
        self.cluster == want.cluster
            && self.priority == want.priority
            && self.server_name.as_deref() == want.server_name
    }
}

/// What a request wants of a pooled connection, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PoolWant<'a> {
    /// The cluster's pooled connections (`Cluster::pool_id`).
    pub cluster: usize,
    /// The TLS server name it would send.
    pub server_name: Option<&'a str>,
    /// Its routing priority.
    pub priority: Priority,
}

impl PoolWant<'_> {
    /// The key of a new connection opened for it.
    pub fn key(&self) -> PoolKey {
        PoolKey {
            cluster: self.cluster,
            server_name: self.server_name.map(Box::from),
            priority: self.priority,
        }
    }
}

/// An open upstream HTTP/1.1 connection.
pub struct UpstreamConn {
    /// The socket.
    pub stream: Stream,
    /// Requests completed on it (for `max_requests_per_connection`).
    pub requests: u32,
    /// Its place in the stats and under the circuit breakers, and what it
    /// may be reused for ([`CxGuard::key`]).
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
    /// serves `want`, dropping
    /// any idle for longer than `idle_timeout` (the cluster's) or closed
    /// by the upstream. `now` is the caller's clock reading (one per
    /// request, not one per pool call).
    pub fn take(
        &self,
        addr: &Address,
        want: &PoolWant<'_>,
        now: Instant,
        idle_timeout: Option<Duration>,
    ) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        let reusable = |c: &Idle| c.stream.guard.key().matches(want);
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

    /// Whether there is an idle connection to `addr` for `want`
    /// (possibly one `take` then finds closed).
    pub fn has_idle(&self, addr: &Address, want: &PoolWant<'_>) -> bool {
        self.idle
            .borrow()
            .get(addr)
            .is_some_and(|list| list.iter().any(|c| c.stream.guard.key().matches(want)))
    }

    /// Returns a connection that finished a response cleanly, waking the
    /// requests waiting in its lane.
    pub fn put(&self, addr: Address, stream: UpstreamConn) {
        // Woken requests run only once this task yields: by then the
        // connection is in the pool.
        stream.guard.lane().notify();
        self.keep(addr, stream);
    }

    fn keep(&self, addr: Address, stream: UpstreamConn) {
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
