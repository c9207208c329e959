//! Clusters, their endpoints, load balancing, DNS and per-shard pools.

pub mod breakers;
pub mod connect;
pub mod dns;
pub mod h2pool;
pub mod hashing;
pub mod health;
pub mod lanes;
pub mod lb;
pub mod outlier;
pub mod pool;
pub mod priority;
pub mod subset;
pub mod zone;

use crate::config;
use crate::net::Address;
use crate::stats::ssl::SslStats;
use crate::stats::{sets, HistogramId, Scope, Store};
use crate::tls::ClientTls;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the versions of a cluster with one configuration carry from one
/// to the next.
#[derive(Clone)]
struct Shared {
    /// Its pooled connections' id.
    pool_id: usize,
    /// Its circuit breakers.
    breakers: Arc<breakers::Breakers>,
    /// The hosts outlier detection ejected.
    ejected: Arc<HashSet<Address>>,
    /// Its hosts' active health-check flags.
    active_hc: Arc<HashMap<Address, u8>>,
    /// The local cluster zone routing compares with, once known.
    local: Option<Arc<zone::LocalHosts>>,
}

/// An address a cluster's config resolved to, before it gets its stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Where to connect.
    pub addr: Address,
    /// `load_balancing_weight`.
    pub weight: u32,
    /// The endpoint's `hostname`, else the host name or address it came
    /// from.
    pub hostname: String,
    /// Whether `hostname` was configured on the endpoint (it then serves
    /// `auto_host_rewrite` whatever the cluster type).
    pub explicit_hostname: bool,
    /// Its locality.
    pub locality: config::Locality,
    /// Its priority level (0 is the highest).
    pub priority: u32,
    /// Its locality's `load_balancing_weight` (0: none).
    pub locality_weight: u32,
    /// Its `envoy.lb` metadata (subset load balancing).
    pub lb_metadata: Arc<config::LbMetadata>,
}

#[cfg(test)]
impl Resolved {
    /// An endpoint at `addr` with `weight`, at priority 0 in no locality.
    pub fn test(addr: &str, weight: u32) -> Resolved {
        Resolved {
            addr: addr.parse::<std::net::SocketAddr>().expect("addr").into(),
            weight,
            hostname: String::new(),
            explicit_hostname: false,
            locality: config::Locality::default(),
            priority: 0,
            locality_weight: 0,
            lb_metadata: Arc::default(),
        }
    }
}

/// One endpoint of a cluster as requests use it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: Address,
    /// `load_balancing_weight`.
    pub weight: u32,
    /// The host name `/clusters` shows and `auto_host_rewrite` uses.
    pub hostname: String,
    /// Whether `hostname` was configured on the endpoint.
    pub explicit_hostname: bool,
    /// Its locality (shown by `/clusters`).
    pub locality: config::Locality,
    /// Its priority level (0 is the highest).
    pub priority: u32,
    /// Its locality's `load_balancing_weight` (0: none).
    pub locality_weight: u32,
    /// Its `envoy.lb` metadata (subset load balancing).
    pub lb_metadata: Arc<config::LbMetadata>,
    /// Per-endpoint stats, shared with every snapshot that has this endpoint.
    pub stats: Arc<Scope<sets::Host>>,
    /// Requests in flight to this endpoint from every shard (LEAST_REQUEST
    /// reads it; carried over to the next snapshot's copy).
    pub active: Arc<AtomicU64>,
    /// Connections open to this endpoint from every shard, per priority,
    /// when the cluster has `per_host_thresholds` (carried over like
    /// `active`).
    pub connections: Arc<[AtomicU64; 2]>,
    /// Its outlier-detection counts (carried over like `active`).
    pub outlier: Arc<outlier::HostMonitor>,
}

impl Endpoint {
    /// Gives a resolved address of cluster `cluster` its stats.
    pub fn new(store: &Store, cluster: &str, r: Resolved) -> Self {
        Endpoint {
            stats: store.host(cluster, &r.addr.to_string()),
            addr: r.addr,
            weight: r.weight,
            hostname: r.hostname,
            explicit_hostname: r.explicit_hostname,
            locality: r.locality,
            priority: r.priority,
            locality_weight: r.locality_weight,
            lb_metadata: r.lb_metadata,
            active: Arc::default(),
            connections: Arc::default(),
            outlier: Arc::default(),
        }
    }

    /// Whether two endpoint lists have the same addresses, weights and
    /// places (priority and locality).
    pub fn same_set(a: &[Endpoint], b: &[Resolved]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.addr == y.addr
                    && x.weight == y.weight
                    && x.priority == y.priority
                    && x.locality == y.locality
                    && x.locality_weight == y.locality_weight
                    && x.lb_metadata == y.lb_metadata
            })
    }
}

/// A cluster as published in a snapshot: its config and current endpoint set.
#[derive(Debug)]
pub struct Cluster {
    /// The decoded config (the main thread re-resolves STRICT_DNS from it).
    pub config: config::Cluster,
    /// Which pooled upstream connections serve it: kept while only its
    /// endpoints or TLS files change, new when its configuration does.
    pub pool_id: usize,
    /// The digest of the EDS assignment its endpoints came from (0: none).
    pub assignment: u64,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The `policy` of the assignment they came from.
    pub policy: config::EndpointPolicy,
    /// Those outlier detection ejected.
    pub ejected: Arc<HashSet<Address>>,
    /// The active health checker's flags by host, for the hosts it has
    /// judged (a host it has not is failed, as Envoy starts it).
    pub active_hc: Arc<HashMap<Address, u8>>,
    /// The local cluster (`cluster_manager.local_cluster_name`) as its
    /// zone routing last saw it.
    pub local: Option<Arc<zone::LocalHosts>>,
    /// Its host sets by priority, health and locality, and how the load
    /// is split among them.
    pub plan: priority::Plan,
    /// Its subsets, with `lb_subset_config`.
    pub subsets: Option<subset::Subsets>,
    /// `cluster.<name>.outlier_detection.*`, with outlier detection.
    pub outlier_stats: Option<Arc<Scope<sets::Outlier>>>,
    /// `cluster.<name>.*`.
    pub stats: Arc<Scope<sets::Cluster>>,
    /// `cluster.<name>.retry.*`.
    pub retry_stats: Arc<Scope<sets::Retry>>,
    /// `cluster.<name>.upstream_rq_time`.
    pub rq_time: HistogramId,
    /// `cluster.<name>.upstream_cx_connect_ms`.
    pub connect_ms: HistogramId,
    /// Its circuit breakers: thresholds and what is in use under them
    /// across every shard.
    pub breakers: Arc<breakers::Breakers>,
    /// The TLS context of its `transport_socket`.
    pub tls: Option<Arc<ClientTls>>,
    /// `cluster.<name>.ssl.*`, when it speaks TLS.
    pub ssl: Option<Arc<SslStats>>,
}

impl Cluster {
    /// Counts a response to one of its requests: `upstream_rq_<code>`,
    /// its class and `upstream_rq_completed` (Envoy's response stats).
    pub fn count_response(&self, writer: usize, status: u16) {
        const CLASSES: [sets::Cluster; 5] = [
            sets::Cluster::upstream_rq_1xx,
            sets::Cluster::upstream_rq_2xx,
            sets::Cluster::upstream_rq_3xx,
            sets::Cluster::upstream_rq_4xx,
            sets::Cluster::upstream_rq_5xx,
        ];
        if self.stats.inc_status(writer, status, CLASSES) {
            self.stats.inc(writer, sets::Cluster::upstream_rq_completed);
        }
    }

    /// The host name Envoy knows `endpoint` by: a configured `hostname`,
    /// or the DNS name of a STRICT_DNS or LOGICAL_DNS endpoint; none for a
    /// bare address.
    /// `/clusters` shows it and `auto_host_rewrite` uses it.
    pub fn endpoint_hostname<'e>(&self, endpoint: &'e Endpoint) -> Option<&'e str> {
        (endpoint.explicit_hostname || self.config.discovery.uses_dns())
            .then_some(endpoint.hostname.as_str())
    }

    /// The health flags of `endpoint`.
    pub fn host_flags(&self, endpoint: &Endpoint) -> health::HostFlags {
        host_flags(&self.config, &self.ejected, &self.active_hc, &endpoint.addr)
    }

    /// Builds a cluster with `endpoints`, its stats taken from `store` and
    /// its membership gauges set, with pooled connections and circuit
    /// breakers of its own (its breaker gauges show once
    /// [`Cluster::show_breakers`] is called).
    pub fn new(
        store: &Store,
        config: config::Cluster,
        (endpoints, policy): (Vec<Endpoint>, config::EndpointPolicy),
        tls: Option<Arc<ClientTls>>,
    ) -> Self {
        static NEXT_POOL: AtomicUsize = AtomicUsize::new(0);
        let pool_id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let shared = Shared {
            pool_id,
            breakers: breakers::Breakers::new(config.circuit_breakers),
            ejected: Arc::default(),
            active_hc: Arc::default(),
            local: None,
        };
        Cluster::with_pool(store, config, (endpoints, policy), tls, shared)
    }

    /// As [`Cluster::new`], with what an earlier version carries over.
    fn with_pool(
        store: &Store,
        config: config::Cluster,
        (endpoints, policy): (Vec<Endpoint>, config::EndpointPolicy),
        tls: Option<Arc<ClientTls>>,
        shared: Shared,
    ) -> Self {
        let Shared {
            pool_id,
            breakers,
            ejected,
            active_hc,
            local,
        } = shared;
        let stat_name = config.stat_name();
        let stats = store.cluster(stat_name);
        let main = store.main_row();
        let flags: Vec<health::HostFlags> = endpoints
            .iter()
            .map(|e| host_flags(&config, &ejected, &active_hc, &e.addr))
            .collect();
        let count =
            |pick: fn(health::HostFlags) -> bool| flags.iter().filter(|f| pick(**f)).count();
        let (healthy, degraded, excluded) = (
            count(health::HostFlags::healthy),
            count(health::HostFlags::degraded),
            count(health::HostFlags::excluded),
        );
        for (gauge, value) in [
            (sets::Cluster::membership_total, endpoints.len()),
            (sets::Cluster::membership_healthy, healthy),
            (sets::Cluster::membership_degraded, degraded),
            (sets::Cluster::membership_excluded, excluded),
        ] {
            stats.set(main, gauge, value as u64);
        }
        let inputs = priority::Inputs {
            endpoints: &endpoints,
            flags: &flags,
            policy,
            panic_threshold: config.healthy_panic_threshold,
            locality_weighted: config.locality_weighted,
            lb_policy: &config.lb_policy,
            zone: local.as_deref().map(|l| (&config.zone_aware, l)),
        };
        let plan = priority::Plan::new(&inputs, 0);
        if let Some(outcome) = plan.zone {
            stats.inc(main, sets::Cluster::lb_recalculate_zone_structures);
            match outcome {
                zone::Outcome::LocalClusterNotOk => {
                    stats.inc(main, sets::Cluster::lb_local_cluster_not_ok)
                }
                zone::Outcome::TooSmall => {
                    stats.inc(main, sets::Cluster::lb_zone_cluster_too_small)
                }
                zone::Outcome::Routing | zone::Outcome::TooFewLocalities => {}
            }
        }
        let subsets = config
            .subsets
            .as_ref()
            .map(|s| subset::Subsets::new(s, &inputs, plan.sets.len()));
        if let Some(s) = &subsets {
            stats.set(main, sets::Cluster::lb_subsets_active, s.active() as u64);
        }
        let outlier_stats = config
            .outlier_detection
            .as_ref()
            .map(|_| store.outlier(stat_name));
        Cluster {
            plan,
            subsets,
            policy,
            ejected,
            active_hc,
            local,
            outlier_stats,
            rq_time: store
                .histograms
                .id(&format!("cluster.{stat_name}.upstream_rq_time")),
            connect_ms: store
                .histograms
                .id(&format!("cluster.{stat_name}.upstream_cx_connect_ms")),
            retry_stats: store.cluster_retry(stat_name),
            breakers,
            ssl: tls
                .as_ref()
                .map(|_| store.ssl(&format!("cluster.{stat_name}."))),
            tls,
            config,
            pool_id,
            assignment: 0,
            endpoints,
            stats,
        }
    }

    /// The same cluster with other endpoints (DNS or EDS changed them; the
    /// assignment's digest is `assignment`). In-flight requests keep
    /// counting against endpoints that stay, and pooled connections to
    /// them stay usable.
    pub fn with_endpoints(
        &self,
        (resolved, policy): (Vec<Resolved>, config::EndpointPolicy),
        store: &Store,
        assignment: u64,
    ) -> Cluster {
        let endpoints = resolved
            .into_iter()
            .map(|r| {
                let mut e = Endpoint::new(store, &self.config.name, r);
                if let Some(old) = self.endpoints.iter().find(|o| o.addr == e.addr) {
                    e.active = old.active.clone();
                    e.connections = old.connections.clone();
                    e.outlier = old.outlier.clone();
                }
                e
            })
            .collect::<Vec<_>>();
        // A host that leaves and comes back is checked afresh.
        let mut shared = self.shared();
        let active_hc = shared
            .active_hc
            .iter()
            .filter(|(addr, _)| endpoints.iter().any(|e| e.addr == **addr))
            .map(|(addr, flags)| (addr.clone(), *flags))
            .collect();
        shared.active_hc = Arc::new(active_hc);
        let mut next = Cluster::with_pool(
            store,
            self.config.clone(),
            (endpoints, policy),
            self.tls.clone(),
            shared,
        );
        next.assignment = assignment;
        next.stats
            .inc(store.main_row(), sets::Cluster::membership_change);
        next
    }

    /// The same cluster with another TLS context; in-flight requests keep
    /// counting against the same endpoints.
    pub fn with_tls(&self, store: &Store, tls: Arc<ClientTls>) -> Cluster {
        let mut next = Cluster::with_pool(
            store,
            self.config.clone(),
            (self.endpoints.clone(), self.policy),
            Some(tls),
            self.shared(),
        );
        next.assignment = self.assignment;
        next
    }

    /// What its next versions share with it while its configuration stays.
    fn shared(&self) -> Shared {
        Shared {
            pool_id: self.pool_id,
            breakers: self.breakers.clone(),
            ejected: self.ejected.clone(),
            active_hc: self.active_hc.clone(),
            local: self.local.clone(),
        }
    }

    /// The same cluster with `ejected` hosts out of load balancing.
    pub fn with_ejected(&self, store: &Store, ejected: HashSet<Address>) -> Cluster {
        let shared = Shared {
            ejected: Arc::new(ejected),
            ..self.shared()
        };
        self.rebuilt(store, shared)
    }

    /// The same cluster with its hosts' active health-check flags now
    /// `active_hc`.
    pub fn with_active_hc(&self, store: &Store, active_hc: HashMap<Address, u8>) -> Cluster {
        let shared = Shared {
            active_hc: Arc::new(active_hc),
            ..self.shared()
        };
        self.rebuilt(store, shared)
    }

    /// The same cluster routing by zone against `local`.
    pub fn with_local(&self, store: &Store, local: Arc<zone::LocalHosts>) -> Cluster {
        let shared = Shared {
            local: Some(local),
            ..self.shared()
        };
        self.rebuilt(store, shared)
    }

    /// This cluster as the local cluster of a proxy in `locality`: its
    /// priority-0 hosts' localities and health.
    pub fn as_local(&self, locality: Option<config::Locality>) -> zone::LocalHosts {
        let p0 = self.endpoints.iter().filter(|e| e.priority == 0);
        zone::LocalHosts {
            locality,
            hosts: p0
                .map(|e| (e.locality.clone(), self.host_flags(e)))
                .collect(),
        }
    }

    /// The same cluster and endpoints with `shared` health.
    fn rebuilt(&self, store: &Store, shared: Shared) -> Cluster {
        let mut next = Cluster::with_pool(
            store,
            self.config.clone(),
            (self.endpoints.clone(), self.policy),
            self.tls.clone(),
            shared,
        );
        next.assignment = self.assignment;
        next
    }

    /// Shows its circuit-breaker gauges in the stats (once the
    /// configuration it belongs to is accepted).
    pub fn show_breakers(&self, store: &Store) {
        let gauges = breakers::BreakerGauges::new(self.stat_name(), self.breakers.clone());
        let key = gauges.key().to_string();
        store.register(&key, Arc::new(gauges));
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The name its stats carry: `alt_stat_name`, else its name.
    pub fn stat_name(&self) -> &str {
        self.config.stat_name()
    }

    /// `connect_timeout`.
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }

    /// With `auto_sni`, the server name a request asks for: its host (or
    /// the override header's value) from its forwarded `head`, unless
    /// that is an address.
    pub fn requested_server_name<'h>(&self, head: &'h [u8]) -> Option<&'h str> {
        let auto = self.config.auto_sni.as_ref()?;
        self.tls.as_ref()?;
        let header = auto.header.as_deref().unwrap_or("host");
        let value = crate::access_log::find_header(head, header)?;
        host_name(std::str::from_utf8(value).ok()?)
    }

    /// The TLS server name a new connection to `endpoint` sends: the
    /// `requested` one, else what the TLS context names for it.
    pub fn server_name<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        requested: Option<&'a str>,
    ) -> Option<&'a str> {
        self.tls
            .as_ref()?
            .server_name(requested, &endpoint.hostname)
    }
}

/// A host's health flags in a cluster configured by `config`.
fn host_flags(
    config: &config::Cluster,
    ejected: &HashSet<Address>,
    active_hc: &HashMap<Address, u8>,
    addr: &Address,
) -> health::HostFlags {
    let active = match &config.health_check {
        Some(_) => active_hc.get(addr).copied().unwrap_or(health::FAILED),
        None => 0,
    };
    health::HostFlags {
        active,
        ejected: ejected.contains(addr),
    }
}

/// The host of an authority (`name`, `name:port`, `[v6]:port`), or None
/// when it is empty or an address.
fn host_name(authority: &str) -> Option<&str> {
    let host = match crate::router::port_start(authority) {
        Some(colon) => &authority[..colon],
        None => authority,
    };
    let is_address = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
    (!host.is_empty() && !is_address).then_some(host)
}
