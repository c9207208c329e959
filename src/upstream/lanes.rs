//! A shard's connections to one endpoint for one cluster, priority and TLS
//! server name — Envoy's per-worker connection pool, as its circuit
//! breakers see it. A lane holds a `max_connection_pools` slot while it
//! has connections or waiting requests; at `max_connections`, a request
//! whose lane already has a connection waits (without polling) until one
//! of the lane's connections comes free or closes, and a lane without any
//! opens one anyway, as Envoy does.

use super::breakers::{Breakers, Held, Owned, Resource};
use super::pool::PoolKey;
use super::{Cluster, Endpoint};
use crate::config::Priority;
use crate::net::Address;
use crate::stats::sets::{Cluster as ClusterStat, Host as HostStat};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

/// One lane: its open (or opening) connections and the requests waiting
/// for one of them.
pub struct Lane {
    open: Cell<u32>,
    generation: Cell<u64>,
    waiting: RefCell<Vec<Waker>>,
    _pool: Owned,
}

impl Lane {
    /// Wakes every request waiting on the lane: a connection came free
    /// or closed.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves at the next [`Lane::notify`].
    async fn changed(&self) {
        let seen = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut waiting = self.waiting.borrow_mut();
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Admits a request that needs a connection to `endpoint` with `key`
    /// in this lane: leave to open one while the cluster and host are
    /// under `max_connections` (or the lane has none); otherwise it waits
    /// for the lane to change, then tries `retake` (the pool) first. Each
    /// time the limit stops a new connection counts in
    /// `upstream_cx_overflow`.
    pub async fn admit<T>(
        self: Rc<Self>,
        cluster: &Cluster,
        shard: usize,
        endpoint: &Endpoint,
        key: PoolKey,
        mut retake: impl FnMut() -> Option<T>,
    ) -> Admitted<T> {
        let lane = self;
        let (breakers, stats) = (&cluster.breakers, &cluster.stats);
        let priority = key.priority;
        let host_max = breakers.per_host_max_connections(priority);
        loop {
            let host_full = host_max.is_some_and(|max| {
                endpoint.connections[priority as usize].load(Ordering::Relaxed) >= max
            });
            let allowed = breakers.can_create(priority, Resource::Connections) && !host_full;
            if !allowed {
                stats.inc(shard, ClusterStat::upstream_cx_overflow);
            }
            if allowed || lane.open.get() == 0 {
                lane.open.set(lane.open.get() + 1);
                let host = host_max.map(|_| {
                    endpoint.connections[priority as usize].fetch_add(1, Ordering::Relaxed);
                    HostConnection(endpoint.connections.clone(), priority)
                });
                return Admitted::Open(Permit {
                    _cluster: breakers.hold(priority, Resource::Connections),
                    _host: host,
                    lane,
                    key,
                });
            }
            lane.changed().await;
            if let Some(pooled) = retake() {
                return Admitted::Pooled(pooled);
            }
        }
    }
}

/// The lanes of one shard.
#[derive(Default)]
pub struct Lanes {
    map: RefCell<HashMap<(Address, PoolKey), Weak<Lane>>>,
    prune_at: Cell<usize>,
}

/// A request's place under `max_pending_requests` and in the
/// `upstream_rq_pending_active` gauges, from when it finds no usable
/// pooled connection until it has one.
pub struct Pending<'a> {
    _held: Held<'a>,
    cluster: &'a Cluster,
    endpoint: &'a Endpoint,
    shard: usize,
}

impl<'a> Pending<'a> {
    /// Makes a request to `endpoint` pending on `shard`, or None (counted
    /// in `upstream_rq_pending_overflow`) at the threshold.
    pub fn start(
        cluster: &'a Cluster,
        endpoint: &'a Endpoint,
        priority: Priority,
        shard: usize,
    ) -> Option<Self> {
        let Some(held) = cluster.breakers.take(priority, Resource::Pending) else {
            cluster
                .stats
                .inc(shard, ClusterStat::upstream_rq_pending_overflow);
            return None;
        };
        cluster
            .stats
            .inc(shard, ClusterStat::upstream_rq_pending_total);
        cluster
            .stats
            .inc(shard, ClusterStat::upstream_rq_pending_active);
        endpoint.stats.inc(shard, HostStat::rq_pending_active);
        Some(Pending {
            _held: held,
            cluster,
            endpoint,
            shard,
        })
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.cluster
            .stats
            .dec(self.shard, ClusterStat::upstream_rq_pending_active);
        self.endpoint
            .stats
            .dec(self.shard, HostStat::rq_pending_active);
    }
}

/// A connection's place under the circuit breakers, from the start of its
/// connect until it closes.
pub struct Permit {
    /// What the connection may be reused for.
    pub key: PoolKey,
    lane: Rc<Lane>,
    _cluster: Owned,
    _host: Option<HostConnection>,
}

impl Permit {
    /// The lane the connection is in.
    pub fn lane(&self) -> &Rc<Lane> {
        &self.lane
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.lane.open.set(self.lane.open.get().saturating_sub(1));
        self.lane.notify();
    }
}

/// A connection counted against its endpoint's per-host limit.
struct HostConnection(Arc<[AtomicU64; 2]>, Priority);

impl Drop for HostConnection {
    fn drop(&mut self) {
        self.0[self.1 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request that found no usable pooled connection gets.
pub enum Admitted<T> {
    /// A pooled connection that came free while it waited.
    Pooled(T),
    /// Leave to open a new connection.
    Open(Permit),
}

impl Lanes {
    /// The lane of `key` to `addr`, opened (taking a pool slot) if it has
    /// none; None when the cluster has `max_connection_pools` lanes.
    pub fn lane(
        &self,
        addr: &Address,
        key: &PoolKey,
        breakers: &Arc<Breakers>,
    ) -> Option<Rc<Lane>> {
        let mut map = self.map.borrow_mut();
        if let Some(lane) = map
            .get(&(addr.clone(), key.clone()))
            .and_then(Weak::upgrade)
        {
            return Some(lane);
        }
        let pool = breakers.try_hold(key.priority, Resource::Pools)?;
        let lane = Rc::new(Lane {
            open: Cell::new(0),
            generation: Cell::new(0),
            waiting: RefCell::default(),
            _pool: pool,
        });
        if map.len() >= self.prune_at.get() {
            map.retain(|_, lane| lane.strong_count() > 0);
            self.prune_at.set((map.len() * 2).max(64));
        }
        map.insert((addr.clone(), key.clone()), Rc::downgrade(&lane));
        Some(lane)
    }
}
