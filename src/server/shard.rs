//! The per-shard context every connection on a shard shares: the current
//! snapshot view, the upstream pool, the drain flag. Shard-owned: `Rc`,
//! `Cell`, `RefCell`; nothing here is touched by another thread.

use super::drain::LocalDrain;
use crate::access_log::{ShardLogs, Sinks};
use crate::config::LbMetadata;
use crate::http::date::DateCache;
use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::histogram::ShardHistograms;
use crate::stats::{sets, Scope, Store};
use crate::upstream::h2pool::H2Pool;
use crate::upstream::health::PassiveFailure;
use crate::upstream::lanes::Lanes;
use crate::upstream::lb::{self, Balancer, RoundRobin};
use crate::upstream::outlier;
use crate::upstream::pool::Pool;
use crate::upstream::priority::HostSet;
use crate::upstream::Endpoint;
use crate::upstream::{self, subset, zone};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// A shard's round-robin position in one cluster.
enum Position {
    /// An index into the cluster's precomputed cycle.
    Cycle(Cell<usize>),
    /// Smooth round-robin state, for cycles too long to precompute.
    Smooth(RefCell<RoundRobin>),
}

/// One shard's view of a snapshot plus the load-balancer state built for it.
pub struct View {
    /// The snapshot this view reads.
    pub snapshot: Arc<ConfigSnapshot>,
    /// Per cluster, a position in each host set of each of its plans.
    positions: Vec<Vec<Position>>,
    shard: usize,
}

impl View {
    fn new(snapshot: Arc<ConfigSnapshot>, shard: usize) -> Self {
        let positions = snapshot
            .clusters
            .iter()
            .map(|c| {
                let subsets = c.subsets.iter().flat_map(|s| &s.plans);
                let sets = std::iter::once(&c.plan)
                    .chain(subsets)
                    .flat_map(|p| &p.sets);
                sets.map(|set| Self::position(set, shard)).collect()
            })
            .collect();
        View {
            snapshot,
            positions,
            shard,
        }
    }

    /// A shard's starting round-robin position in `set`: shards start the
    /// cycle at different points.
    fn position(set: &HostSet, shard: usize) -> Position {
        match &set.balancer {
            Balancer::RoundRobin(Some(cycle)) => {
                Position::Cycle(Cell::new(shard.wrapping_mul(7919) % cycle.len().max(1)))
            }
            _ => Position::Smooth(RefCell::new(RoundRobin::new(&set.endpoints, shard))),
        }
    }

    /// The shard this view belongs to.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Picks an endpoint of cluster `index`: the subset `criteria` (a
    /// route's `metadata_match`) selects when the cluster has subsets, a
    /// host set by priority (and locality), then an endpoint of it by its
    /// balancer; None when there is none. `hash` is the request's
    /// hash-policy hash (hashing balancers draw at random without one);
    /// `random` is the shard's RNG. A pick from a level in panic counts
    /// `lb_healthy_panic`.
    pub fn pick(
        &self,
        index: usize,
        hash: Option<u64>,
        criteria: Option<&LbMetadata>,
        random: &dyn Fn() -> u64,
    ) -> Option<&Endpoint> {
        let cluster = self.snapshot.clusters.get(index)?;
        let (plan, reached) = match &cluster.subsets {
            None => (&cluster.plan, None),
            Some(subsets) => {
                let (route, reached) = subsets.route(criteria);
                if reached == subset::Reached::Selected {
                    let stat = sets::Cluster::lb_subsets_selected;
                    cluster.stats.inc(self.shard, stat);
                }
                let plan = match route {
                    subset::Route::Subset(plan) => subsets.plans.get(plan)?,
                    subset::Route::Any => &cluster.plan,
                    subset::Route::Nothing => return None,
                };
                (plan, Some(reached))
            }
        };
        let choice = plan.choose(hash, random)?;
        if choice.panic {
            cluster
                .stats
                .inc(self.shard, sets::Cluster::lb_healthy_panic);
        }
        if let Some(pick) = choice.zone {
            self.count_zone_pick(cluster, pick);
        }
        let at = choice.set?;
        let set = plan.sets.get(at)?;
        let endpoints = &set.endpoints;
        let position = self.positions.get(index)?.get(plan.first_set + at)?;
        let i = match &set.balancer {
            Balancer::RoundRobin(cycle) => match (cycle, position) {
                (Some(cycle), Position::Cycle(at)) => {
                    let i = *cycle.get(at.get())? as usize;
                    at.set((at.get() + 1) % cycle.len());
                    i
                }
                (_, Position::Smooth(rr)) => rr.borrow_mut().pick(endpoints)?,
                (None, Position::Cycle(_)) => return None,
            },
            Balancer::Random(weights) => weights.draw(random())?,
            Balancer::LeastRequest {
                choice_count,
                bias,
                weights,
                equal,
            } => lb::least_request(endpoints, *choice_count, *bias, weights, *equal, random)?,
            Balancer::Ring(ring) => ring.pick(hash.unwrap_or_else(random))?,
            Balancer::Maglev(table) => table.pick(hash.unwrap_or_else(random))?,
        };
        let picked = endpoints.get(i)?;
        if reached == Some(subset::Reached::ClusterFallback) {
            cluster
                .stats
                .inc(self.shard, sets::Cluster::lb_subsets_fallback);
        }
        Some(picked)
    }

    /// Counts how zone routing routed a pick.
    fn count_zone_pick(&self, cluster: &upstream::Cluster, pick: zone::Pick) {
        let counters: &[sets::Cluster] = match pick {
            zone::Pick::AllDirectly => &[sets::Cluster::lb_zone_routing_all_directly],
            zone::Pick::Sampled => &[sets::Cluster::lb_zone_routing_sampled],
            zone::Pick::CrossZone => &[sets::Cluster::lb_zone_routing_cross_zone],
            zone::Pick::NoCapacityLeft => &[
                sets::Cluster::lb_zone_routing_cross_zone,
                sets::Cluster::lb_zone_no_capacity_left,
            ],
            zone::Pick::LocalClusterNotOk => &[sets::Cluster::lb_local_cluster_not_ok],
        };
        for counter in counters {
            cluster.stats.inc(self.shard, *counter);
        }
    }
}

/// State shared by all connections of one shard.
pub struct Shard {
    /// Shard number (0-based).
    pub id: usize,
    published: Arc<Published>,
    view: RefCell<Rc<View>>,
    /// Idle upstream connections.
    pub pool: Pool,
    /// Upstream HTTP/2 connections.
    pub h2_pool: H2Pool,
    /// Its connections per endpoint, cluster and priority, as the circuit
    /// breakers count them.
    pub lanes: Lanes,
    /// Where hosts that reach a consecutive-error threshold are reported
    /// (the main thread's outlier detection).
    pub outlier_events: crossbeam_channel::Sender<outlier::Event>,
    /// Where hosts asking to fail their health checks are reported (the
    /// health-check thread).
    pub passive_failures: flume::Sender<PassiveFailure>,
    /// Cached `date` header value.
    pub date: DateCache,
    /// Drain flag and idle-connection wakeups.
    pub drain: LocalDrain,
    /// The listeners this shard accepts on.
    pub listeners: super::listeners::ShardListeners,
    /// Open downstream connections.
    pub connections: Cell<usize>,
    /// The process's stats (this shard writes row `id`).
    pub stats: Arc<Store>,
    /// This shard's histograms.
    pub histograms: ShardHistograms,
    /// This shard's pending access-log lines.
    pub logs: ShardLogs,
    /// The downstream `http2.*` stats, once a connection speaks HTTP/2.
    http2_stats: std::cell::OnceCell<Arc<Scope<sets::Http2>>>,
    rng: Cell<u64>,
}

/// What a shard tells the control side: hosts past an outlier threshold
/// (the main thread) and hosts failing health checks passively (the
/// health-check thread).
pub struct Reports {
    /// Outlier detection's reports.
    pub outlier: crossbeam_channel::Sender<outlier::Event>,
    /// Passive health-check failures.
    pub passive: flume::Sender<PassiveFailure>,
}

impl Reports {
    /// Queues nobody reads, for a shard run without a main thread
    /// (benchmarks, fuzzing): reports to them are dropped.
    pub fn unheard() -> Self {
        Reports {
            outlier: crossbeam_channel::bounded(1).0,
            passive: flume::bounded(1).0,
        }
    }
}

impl Shard {
    /// Creates shard `id` reading snapshots from `published`.
    pub fn new(
        id: usize,
        published: Arc<Published>,
        stats: Arc<Store>,
        sinks: Arc<Sinks>,
        reports: Reports,
    ) -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(id);
            h.finish()
        };
        Shard {
            id,
            view: RefCell::new(Rc::new(View::new(published.load(), id))),
            published,
            pool: Pool::default(),
            h2_pool: H2Pool::default(),
            lanes: Lanes::default(),
            outlier_events: reports.outlier,
            passive_failures: reports.passive,
            date: DateCache::default(),
            drain: LocalDrain::default(),
            listeners: Default::default(),
            connections: Cell::new(0),
            stats,
            histograms: ShardHistograms::default(),
            logs: ShardLogs::new(sinks),
            http2_stats: std::cell::OnceCell::new(),
            rng: Cell::new(seed),
        }
    }

    /// The downstream `http2.*` stats (registered on first use, as Envoy
    /// creates them with its first HTTP/2 codec).
    pub fn http2_stats(&self) -> &Scope<sets::Http2> {
        self.http2_stats.get_or_init(|| self.stats.http2())
    }

    /// The view of the newest snapshot: one relaxed load when nothing changed.
    pub fn view(&self) -> Rc<View> {
        if self.view.borrow().snapshot.epoch != self.published.epoch() {
            let next = Rc::new(View::new(self.published.load(), self.id));
            *self.view.borrow_mut() = next;
        }
        self.view.borrow().clone()
    }

    /// A random 64-bit number (wyrand; not for secrets).
    pub fn random(&self) -> u64 {
        let s = self.rng.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.rng.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A version-4 UUID for `x-request-id`.
    pub fn request_id(&self) -> [u8; 36] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.random().to_le_bytes());
        bytes[8..].copy_from_slice(&self.random().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut o = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                o += 1;
            }
            out[o] = HEX[(b >> 4) as usize];
            out[o + 1] = HEX[(b & 0xf) as usize];
            o += 2;
        }
        out
    }
}
