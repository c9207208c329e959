//! Per-shard, per-endpoint pools of idle upstream HTTP/1.1 connections.
//! Owned by one shard: `RefCell`, no lock.

use crate::net::{peek, Address, Peeked, Stream};
use crate::stats::{sets, Scope};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint per shard.
const MAX_IDLE_PER_ENDPOINT: usize = 128;
/// How long an idle connection may wait for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
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

impl Drop for CxGuard {
    fn drop(&mut self) {
        self.cluster
            .dec(self.shard, sets::Cluster::upstream_cx_active);
        self.cluster
            .inc(self.shard, sets::Cluster::upstream_cx_destroy);
        self.host.dec(self.shard, sets::Host::cx_active);
    }
}

/// An open upstream HTTP/1.1 connection.
pub struct UpstreamConn {
    /// The socket.
    pub stream: Stream,
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
    /// Takes the most recently idled usable connection to `addr`, dropping
    /// any that timed out or were closed by the upstream. `now` is the
    /// caller's clock reading (one per request, not one per pool call).
    pub fn take(&self, addr: &Address, now: Instant) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        while let Some(conn) = list.pop() {
            let idle = now.saturating_duration_since(conn.since);
            if idle < PROBE_AFTER
                || (idle < IDLE_TIMEOUT && peek(&conn.stream.stream) == Peeked::Nothing)
            {
                return Some(conn.stream);
            }
        }
        None
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
