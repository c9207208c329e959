//! Lock-free stats with Envoy's names.
//!
//! A [`Scope`] is one stat-owning object (a cluster, a listener, an HTTP
//! connection manager, an endpoint) with one row of counters per shard plus
//! one for the main thread. Each row has a single writer, so an increment is
//! a relaxed load and store on a cache line no other thread writes. Readers
//! (the admin thread) sum the rows. Scopes are kept by name in the [`Store`]
//! so a republished snapshot reuses them and counters survive reloads.
//! Histograms live in each shard ([`histogram`]) and are merged when read.

pub mod bins;
pub mod histogram;
pub mod render;
pub mod sets;
pub mod ssl;
mod tags;
mod visibility;

pub use tags::TagProducer;

use crossbeam_utils::CachePadded;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use histogram::HistogramId;

/// Whether a stat only grows (counter) or goes up and down (gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; reset by `/reset_counters`.
    Counter,
    /// A current level.
    Gauge,
}

/// A fixed set of stats owned by one kind of object, declared with
/// [`stat_set!`]: the enum's variants are the stat names.
pub trait StatSet: Copy {
    /// Every stat's name and kind, in variant order.
    const NAMES: &'static [(&'static str, Kind)];
    /// Name prefix of per-status-code counters (`upstream_rq_` gives
    /// `upstream_rq_200`), when the set has them.
    const CODE_PREFIX: Option<&'static str> = None;
    /// The slot of this stat.
    fn index(self) -> usize;
}

/// Declares a [`StatSet`]: `stat_set!(Name, code_prefix, counters [a, b], gauges [c])`.
/// Adding a stat is adding its name to a list.
#[macro_export]
macro_rules! stat_set {
    ($(#[$doc:meta])* $name:ident, $codes:expr, counters [$($c:ident),* $(,)?], gauges [$($g:ident),* $(,)?]) => {
        $(#[$doc])*
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($c,)* $($g,)* }

        impl $crate::stats::StatSet for $name {
            const NAMES: &'static [(&'static str, $crate::stats::Kind)] = &[
                $((stringify!($c), $crate::stats::Kind::Counter),)*
                $((stringify!($g), $crate::stats::Kind::Gauge),)*
            ];
            const CODE_PREFIX: Option<&'static str> = $codes;
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// Per-status-code counters cover codes 100 to 599, a block per class.
const CLASSES: usize = 5;
const CODES_PER_CLASS: usize = 100;
/// Slots per cache-line pair (`CachePadded` is 128 bytes on x86-64).
const LINE: usize = 16;

/// One class's per-code counters (`upstream_rq_200` … `upstream_rq_299`).
type CodeBlock = [AtomicU64; CODES_PER_CLASS];

/// One writer's slots, in cache lines of its own.
struct Row {
    lines: Box<[CachePadded<[AtomicU64; LINE]>]>,
    /// Allocated by the row's writer when it first counts a code of the
    /// class: most scopes only ever see 2xx and a few 4xx/5xx, and a row of
    /// 500 zeroed codes for every cluster and shard made a 1,000-cluster
    /// config 50 MB of stats at two shards.
    codes: [OnceLock<Box<CodeBlock>>; CLASSES],
}

impl Row {
    fn new(slots: usize) -> Row {
        Row {
            lines: (0..slots.div_ceil(LINE))
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            codes: Default::default(),
        }
    }

    fn slot(&self, index: usize) -> &AtomicU64 {
        &self.lines[index / LINE][index % LINE]
    }
}

/// The stats of one object: `prefix` + each name of `S`.
pub struct Scope<S> {
    prefix: String,
    rows: Box<[Row]>,
    _set: PhantomData<S>,
}

impl<S> std::fmt::Debug for Scope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scope({:?})", self.prefix)
    }
}

impl<S: StatSet> Scope<S> {
    fn new(prefix: String, writers: usize) -> Self {
        Scope {
            prefix,
            rows: (0..writers).map(|_| Row::new(S::NAMES.len())).collect(),
            _set: PhantomData,
        }
    }

    fn slot(&self, writer: usize, index: usize) -> &AtomicU64 {
        self.rows[writer].slot(index)
    }

    /// The row the main thread writes (the last).
    pub fn main_row(&self) -> usize {
        self.rows.len() - 1
    }

    /// Adds `n` in `writer`'s row (the caller's shard id, or the main row).
    #[inline]
    pub fn add(&self, writer: usize, stat: S, n: u64) {
        if cfg!(feature = "stats-off") {
            return;
        }
        let slot = self.slot(writer, stat.index());
        // Single writer per row: a plain load and store, no read-modify-write.
        slot.store(
            slot.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self, writer: usize, stat: S) {
        self.add(writer, stat, 1);
    }

    /// Subtracts one (gauges; the matching `inc` was on the same row).
    #[inline]
    pub fn dec(&self, writer: usize, stat: S) {
        self.add(writer, stat, u64::MAX);
    }

    /// Sets `writer`'s share of a gauge.
    pub fn set(&self, writer: usize, stat: S, value: u64) {
        self.slot(writer, stat.index())
            .store(value, Ordering::Relaxed);
    }

    /// Counts one response with `status` in the per-code counters.
    #[inline]
    pub fn inc_code(&self, writer: usize, status: u16) {
        if cfg!(feature = "stats-off") {
            return;
        }
        if S::CODE_PREFIX.is_some() && (100..600).contains(&status) {
            let code = usize::from(status - 100);
            let block = self.rows[writer].codes[code / CODES_PER_CLASS]
                .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
            let slot = &block[code % CODES_PER_CLASS];
            slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Counts a response `status` in its `Nxx` class (one of `classes`,
    /// 1xx to 5xx) and, for sets that have them, its per-code counter.
    /// False (nothing counted) for a status outside 100..=599.
    #[inline]
    pub fn inc_status(&self, writer: usize, status: u16, classes: [S; 5]) -> bool {
        if !(100..600).contains(&status) {
            return false;
        }
        self.inc(writer, classes[usize::from(status / 100 - 1)]);
        self.inc_code(writer, status);
        true
    }

    fn sum(&self, index: usize) -> u64 {
        (0..self.rows.len()).fold(0u64, |acc, w| {
            acc.wrapping_add(self.slot(w, index).load(Ordering::Relaxed))
        })
    }

    /// The summed value of one stat.
    pub fn value(&self, stat: S) -> u64 {
        self.sum(stat.index())
    }
}

/// Reading any scope, whatever its set: what the admin side needs.
pub trait Visit: Send + Sync {
    /// Calls `f(full_name, kind, value)` for every stat; per-code counters
    /// and their class counters (`upstream_rq_2xx`) only when non-zero
    /// (Envoy creates them on first use).
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64));
}

impl<S: StatSet + Send + Sync> Visit for Scope<S> {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        let mut name = self.prefix.clone();
        let base = name.len();
        for (i, (stat, kind)) in S::NAMES.iter().enumerate() {
            let value = self.sum(i);
            if value == 0 && S::CODE_PREFIX.is_some_and(|p| is_class_counter(stat, p)) {
                continue;
            }
            name.truncate(base);
            name.push_str(stat);
            f(&name, *kind, value);
        }
        if let Some(code_prefix) = S::CODE_PREFIX {
            for class in 0..CLASSES {
                let blocks = || self.rows.iter().filter_map(|row| row.codes[class].get());
                if blocks().next().is_none() {
                    continue;
                }
                for code in 0..CODES_PER_CLASS {
                    let value = blocks().fold(0u64, |acc, block| {
                        acc.wrapping_add(block[code].load(Ordering::Relaxed))
                    });
                    if value != 0 {
                        name.truncate(base);
                        name.push_str(code_prefix);
                        name.push_str(&(100 + class * CODES_PER_CLASS + code).to_string());
                        f(&name, Kind::Counter, value);
                    }
                }
            }
        }
    }
}

/// The overload actions in force, as the overload manager last set them.
#[derive(Default)]
pub struct OverloadState {
    /// `stop_accepting_requests`: new requests get 503 `envoy overloaded`
    /// (shared with every connection manager's settings).
    pub stop_requests: Arc<AtomicBool>,
    /// `shrink_heap`: shards return all free memory.
    pub shrink_heap: AtomicBool,
    /// How often a shard shrank its heap for it.
    pub shrink_count: AtomicU64,
}

/// Whether `stat` is the class counter (`<prefix>2xx`) of per-code
/// counters named `<prefix><code>`.
fn is_class_counter(stat: &str, code_prefix: &str) -> bool {
    stat.strip_prefix(code_prefix)
        .and_then(|rest| rest.strip_suffix("xx"))
        .is_some_and(|class| matches!(class, "1" | "2" | "3" | "4" | "5"))
}

/// A downstream connection's place under the global limit.
pub struct DownstreamSlot<'a>(Option<&'a AtomicU64>);

impl DownstreamSlot<'_> {
    /// The slot of a connection the limit does not count.
    pub fn exempt() -> Self {
        DownstreamSlot(None)
    }
}

impl Drop for DownstreamSlot<'_> {
    fn drop(&mut self) {
        if let Some(open) = self.0 {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What `/ready` and `server.state` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ServerState {
    /// Serving.
    Live = 0,
    /// Draining listeners; exiting or told to drain.
    Draining = 1,
}

/// Every scope and histogram of the process, by name.
pub struct Store {
    shards: usize,
    started: Instant,
    /// `server.*`.
    pub server: Arc<Scope<sets::Server>>,
    /// `cluster_manager.*`.
    pub cluster_manager: Arc<Scope<sets::ClusterManager>>,
    /// `listener_manager.*`.
    pub listener_manager: Arc<Scope<sets::ListenerManager>>,
    /// The layered runtime (`/runtime`), shared by every snapshot.
    pub runtime: crate::runtime::Runtime,
    /// The overload actions in force.
    pub overload: Arc<OverloadState>,
    scopes: Mutex<HashMap<String, Arc<dyn Visit>>>,
    typed: Mutex<TypedScopes>,
    /// Histogram names and their per-shard collectors.
    pub histograms: histogram::Registry,
    baseline: Mutex<HashMap<String, u64>>,
    state: AtomicU8,
    /// How long an idle keep-alive connection stays open once draining,
    /// in milliseconds (0: it closes at once).
    drain_linger_ms: AtomicU64,
    /// The global downstream connection limit (`overload_manager`;
    /// `u64::MAX`: none), and the connections it counts.
    downstream_limit: AtomicU64,
    downstream_open: AtomicU64,
    healthcheck_failed: AtomicBool,
    /// The soonest certificate expiry, seconds since the epoch (MAX: none).
    first_cert_expiry: AtomicI64,
    /// Text readouts (`sds.<name>.version_text`), by full name.
    texts: Mutex<BTreeMap<String, String>>,
    /// Which stats are shown (`stats_config`, `deferred_stat_options`).
    visibility: OnceLock<visibility::Visibility>,
    /// How stat names become metrics and labels (`stats_config.stats_tags`).
    tags: OnceLock<TagProducer>,
}

/// Scopes by name with their concrete types, for reuse across snapshots.
#[derive(Default)]
struct TypedScopes {
    listeners: HashMap<String, Arc<Scope<sets::Listener>>>,
    listener_http: HashMap<String, Arc<Scope<sets::ListenerHttp>>>,
    http: HashMap<String, Arc<Scope<sets::Http>>>,
    http2: HashMap<String, Arc<Scope<sets::Http2>>>,
    clusters: HashMap<String, Arc<Scope<sets::Cluster>>>,
    retries: HashMap<String, Arc<Scope<sets::Retry>>>,
    hosts: HashMap<(String, String), Arc<Scope<sets::Host>>>,
    ssl: HashMap<String, Arc<ssl::SslStats>>,
    named: HashMap<String, Arc<dyn std::any::Any + Send + Sync>>,
}

/// Lock poisoning only means another admin request panicked; the data is
/// plain counters and names, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// A store for `shards` shards (each gets a row; the main thread one more).
    pub fn new(shards: usize) -> Arc<Store> {
        let writers = shards + 1;
        let server = Arc::new(Scope::new("server.".into(), writers));
        let cluster_manager = Arc::new(Scope::new("cluster_manager.".into(), writers));
        let listener_manager = Arc::new(Scope::new("listener_manager.".into(), writers));
        listener_manager.set(shards, sets::ListenerManager::workers_started, 1);
        let main = shards;
        server.set(main, sets::Server::concurrency, shards as u64);
        server.set(main, sets::Server::live, 1);
        server.set(main, sets::Server::version, version_number());
        let mut scopes: HashMap<String, Arc<dyn Visit>> = HashMap::new();
        scopes.insert("server.".into(), server.clone());
        scopes.insert("cluster_manager.".into(), cluster_manager.clone());
        scopes.insert("listener_manager.".into(), listener_manager.clone());
        Arc::new(Store {
            shards,
            started: Instant::now(),
            server,
            cluster_manager,
            listener_manager,
            runtime: crate::runtime::Runtime::default(),
            overload: Arc::default(),
            scopes: Mutex::new(scopes),
            typed: Mutex::default(),
            histograms: histogram::Registry::new(shards),
            baseline: Mutex::default(),
            state: AtomicU8::new(ServerState::Live as u8),
            drain_linger_ms: AtomicU64::new(0),
            downstream_limit: AtomicU64::new(u64::MAX),
            downstream_open: AtomicU64::new(0),
            healthcheck_failed: AtomicBool::new(false),
            first_cert_expiry: AtomicI64::new(i64::MAX),
            texts: Mutex::default(),
            visibility: OnceLock::new(),
            tags: OnceLock::new(),
        })
    }

    /// Sets which stats exist (once, from the bootstrap).
    pub fn set_stats_options(&self, options: crate::config::StatsOptions) {
        // The bootstrap's tags were checked when it was decoded.
        if let Ok(tags) = TagProducer::new(options.use_default_tags, &options.tags) {
            let _ = self.tags.set(tags);
        }
        let _ = self.visibility.set(visibility::Visibility::new(options));
    }

    /// The tag producer `/stats/prometheus` names metrics with.
    pub fn tags(&self) -> &TagProducer {
        self.tags
            .get_or_init(|| TagProducer::new(true, &[]).unwrap_or_default())
    }

    fn visibility(&self) -> &visibility::Visibility {
        self.visibility.get_or_init(Default::default)
    }

    /// The `cluster.<name>.` prefixes of every cluster scope.
    fn cluster_prefixes(&self) -> std::collections::HashSet<String> {
        lock(&self.typed).clusters.keys().cloned().collect()
    }

    /// The row the main thread writes.
    pub fn main_row(&self) -> usize {
        self.shards
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn scope<S: StatSet + Send + Sync + 'static>(
        &self,
        prefix: String,
        pick: impl FnOnce(&mut TypedScopes) -> &mut HashMap<String, Arc<Scope<S>>>,
    ) -> Arc<Scope<S>> {
        let mut typed = lock(&self.typed);
        let map = pick(&mut typed);
        if let Some(s) = map.get(&prefix) {
            return s.clone();
        }
        let scope = Arc::new(Scope::new(prefix.clone(), self.shards + 1));
        map.insert(prefix.clone(), scope.clone());
        lock(&self.scopes).insert(prefix, scope.clone());
        scope
    }

    /// Adds stats kept elsewhere (they name themselves in full).
    pub fn register(&self, key: &str, stats: Arc<dyn Visit>) {
        lock(&self.scopes).insert(key.to_string(), stats);
    }

    /// `listener.<address>.` stats (address with `:` as `_`, like Envoy).
    pub fn listener(&self, address: &str) -> Arc<Scope<sets::Listener>> {
        let prefix = format!("listener.{}.", address.replace(':', "_"));
        self.scope(prefix, |t| &mut t.listeners)
    }

    /// `listener.<address>.http.<stat_prefix>.` stats.
    pub fn listener_http(
        &self,
        address: &str,
        stat_prefix: &str,
    ) -> Arc<Scope<sets::ListenerHttp>> {
        let prefix = format!("listener.{}.http.{stat_prefix}.", address.replace(':', "_"));
        self.scope(prefix, |t| &mut t.listener_http)
    }

    /// `http.<stat_prefix>.` stats.
    pub fn http(&self, stat_prefix: &str) -> Arc<Scope<sets::Http>> {
        self.scope(format!("http.{stat_prefix}."), |t| &mut t.http)
    }

    /// The downstream `http2.` stats.
    pub fn http2(&self) -> Arc<Scope<sets::Http2>> {
        self.scope("http2.".to_string(), |t| &mut t.http2)
    }

    /// `<owner>ssl.` stats (`listener.<address>.` or `cluster.<name>.`
    /// as `owner`).
    pub fn ssl(&self, owner: &str) -> Arc<ssl::SslStats> {
        let prefix = format!("{owner}ssl.");
        let mut typed = lock(&self.typed);
        if let Some(s) = typed.ssl.get(&prefix) {
            return s.clone();
        }
        let stats = Arc::new(ssl::SslStats::new(prefix.clone(), self.shards + 1));
        typed.ssl.insert(prefix.clone(), stats.clone());
        lock(&self.scopes).insert(prefix, stats.clone());
        stats
    }

    /// `sds.<name>.` stats of one secret read from a file.
    pub fn sds(&self, name: &str) -> Arc<Scope<sets::Sds>> {
        self.named(format!("sds.{name}."))
    }

    /// A control-plane stream's `control_plane.` stats: ADS's at the top
    /// (`prefix` ""), a subscription's own stream's under its prefix
    /// (`sds.<name>.`), as Envoy names them; with the `identifier`
    /// readout, empty as Envoy's is without one.
    pub fn control_plane(&self, prefix: &str) -> Arc<Scope<sets::ControlPlane>> {
        let prefix = format!("{prefix}control_plane.");
        let mut texts = lock(&self.texts);
        texts.entry(format!("{prefix}identifier")).or_default();
        drop(texts);
        self.named(prefix)
    }

    /// `listener_manager.lds.` stats.
    pub fn lds(&self) -> Arc<Scope<sets::Lds>> {
        self.named("listener_manager.lds.".to_string())
    }

    /// One route configuration subscription's stats, under `prefix`
    /// (`http.<stat_prefix>.rds.<name>.`).
    pub fn rds(&self, prefix: &str) -> Arc<Scope<sets::Rds>> {
        self.named(prefix.to_string())
    }

    /// The `cluster.<stat_name>.` stats only an EDS cluster has (kept
    /// beside the cluster's own scope).
    pub fn eds(&self, stat_name: &str) -> Arc<Scope<sets::Eds>> {
        let prefix = format!("cluster.{stat_name}.");
        self.keyed(format!("{prefix}#eds"), prefix)
    }

    /// `cluster_manager.cds.` stats.
    pub fn cds(&self) -> Arc<Scope<sets::Cds>> {
        self.named("cluster_manager.cds.".to_string())
    }

    /// A TLS context's `server_ssl_socket_factory.` (listeners) or
    /// `client_ssl_socket_factory.` (clusters) stats under `owner`.
    pub fn ssl_socket_factory(
        &self,
        owner: &str,
        server: bool,
    ) -> Arc<Scope<sets::SslSocketFactory>> {
        let side = if server { "server" } else { "client" };
        self.named(format!("{owner}{side}_ssl_socket_factory."))
    }

    /// `connection_limit.<stat_prefix>.` stats.
    pub fn connection_limit(&self, stat_prefix: &str) -> Arc<Scope<sets::ConnectionLimit>> {
        self.named(format!("connection_limit.{stat_prefix}."))
    }

    /// The network `local_ratelimit` filter's `local_rate_limit.<stat_prefix>.` stats.
    pub fn local_ratelimit(&self, stat_prefix: &str) -> Arc<Scope<sets::LocalRateLimit>> {
        self.named(format!("local_rate_limit.{stat_prefix}."))
    }

    /// Sets a text readout.
    pub fn set_text(&self, name: String, value: String) {
        lock(&self.texts).insert(name, value);
    }

    /// Creates a text readout, empty, unless it exists.
    pub fn init_text(&self, name: String) {
        lock(&self.texts).entry(name).or_default();
    }

    /// Drops a scope made by [`Store::rds`] (a route configuration no
    /// longer subscribed to) and its `version_text`, as Envoy deletes a
    /// subscription's stats with it.
    pub fn forget_rds(&self, prefix: &str) {
        lock(&self.typed).named.remove(prefix);
        lock(&self.scopes).remove(prefix);
        lock(&self.texts).remove(&format!("{prefix}version_text"));
        self.histograms.forget(&format!("{prefix}update_duration"));
    }

    /// Drops every stat of the clusters whose stats are named as in `gone`
    /// (their scopes, texts and histograms), as Envoy drops a removed
    /// cluster's stats: under a control plane that keeps renaming clusters
    /// they would otherwise pile up. `live` are the stat names of the
    /// clusters that stay: a stat belongs to the longest cluster name it
    /// starts with, so `a.b` keeps its stats when `a` goes.
    pub fn forget_clusters(&self, gone: &HashSet<&str>, live: &HashSet<&str>) {
        if gone.is_empty() {
            return;
        }
        let owned = |key: &str| {
            let Some(rest) = key.strip_prefix("cluster.") else {
                return false;
            };
            let mut by_gone = false;
            for (end, _) in rest.match_indices('.') {
                let name = &rest[..end];
                if gone.contains(name) {
                    by_gone = true;
                } else if live.contains(name) {
                    by_gone = false;
                }
            }
            by_gone
        };
        {
            let mut typed = lock(&self.typed);
            typed.clusters.retain(|k, _| !owned(k));
            typed.retries.retain(|k, _| !owned(k));
            typed.ssl.retain(|k, _| !owned(k));
            typed.named.retain(|k, _| !owned(k));
        }
        lock(&self.scopes).retain(|k, _| !owned(k));
        lock(&self.texts).retain(|k, _| !owned(k));
        lock(&self.baseline).retain(|k, _| !owned(k));
        self.histograms.forget_matching(owned);
    }

    /// Every text readout, by name.
    pub fn texts(&self) -> Vec<(String, String)> {
        let visibility = self.visibility();
        lock(&self.texts)
            .iter()
            .filter(|(n, _)| visibility.accepts(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// Every shown histogram merged across shards, sorted by name (call
    /// after [`Store::values`], which notes the clusters in use).
    pub fn histogram_values(&self) -> Vec<histogram::Merged> {
        let clusters = self.cluster_prefixes();
        let is_cluster = |p: &str| clusters.contains(p);
        let visibility = self.visibility();
        let mut merged = self.histograms.collect();
        merged.retain(|h| visibility.shows(&h.name, &is_cluster));
        merged
    }

    /// `tls_inspector.` stats.
    pub fn tls_inspector(&self) -> Arc<Scope<sets::TlsInspector>> {
        self.named("tls_inspector.".into())
    }

    /// `http_inspector.` stats.
    pub fn http_inspector(&self) -> Arc<Scope<sets::HttpInspector>> {
        self.named("http_inspector.".into())
    }

    /// `proxy_proto.[<stat_prefix>.]` stats.
    pub fn proxy_protocol(&self, stat_prefix: &str) -> Arc<Scope<sets::ProxyProto>> {
        if stat_prefix.is_empty() {
            self.named("proxy_proto.".into())
        } else {
            self.named(format!("proxy_proto.{stat_prefix}."))
        }
    }

    /// Counters with no prefix (`downstream_cx_proxy_proto_error`).
    pub fn root(&self) -> Arc<Scope<sets::Root>> {
        self.named(String::new())
    }

    /// `udp.<stat_prefix>.` stats.
    pub fn udp_proxy(&self, stat_prefix: &str) -> Arc<Scope<sets::Udp>> {
        self.named(format!("udp.{stat_prefix}."))
    }

    /// `cluster.<name>.udp.` stats.
    pub fn cluster_udp(&self, name: &str) -> Arc<Scope<sets::ClusterUdp>> {
        self.named(format!("cluster.{name}.udp."))
    }

    /// `tcp.<stat_prefix>.` stats.
    pub fn tcp_proxy(&self, stat_prefix: &str) -> Arc<Scope<sets::TcpProxy>> {
        self.named(format!("tcp.{stat_prefix}."))
    }

    /// A scope kept by its prefix alone.
    fn named<S: StatSet + Send + Sync + 'static>(&self, prefix: String) -> Arc<Scope<S>> {
        self.keyed(prefix.clone(), prefix)
    }

    /// A scope with `prefix` kept under `key` (another set may share the
    /// prefix under its own key).
    fn keyed<S: StatSet + Send + Sync + 'static>(
        &self,
        key: String,
        prefix: String,
    ) -> Arc<Scope<S>> {
        let mut typed = lock(&self.typed);
        if let Some(s) = typed.named.get(&key).cloned() {
            if let Ok(scope) = s.downcast::<Scope<S>>() {
                return scope;
            }
        }
        let scope = Arc::new(Scope::new(prefix, self.shards + 1));
        typed.named.insert(key.clone(), scope.clone());
        lock(&self.scopes).insert(key, scope.clone());
        scope
    }

    /// The counter named `name`, made on first use.
    pub fn counter(&self, name: String) -> Arc<Scope<sets::Single>> {
        self.keyed(format!("{name}#counter"), name)
    }

    /// The RBAC filter's enforced-rules stats under `prefix`
    /// (`http.<stat_prefix>.rbac.` and its `rules_stat_prefix`).
    pub fn rbac(&self, prefix: String) -> Arc<Scope<sets::Rbac>> {
        self.keyed(format!("{prefix}#rbac"), prefix)
    }

    /// The RBAC filter's shadow-rules stats under `prefix`.
    pub fn rbac_shadow(&self, prefix: String) -> Arc<Scope<sets::RbacShadow>> {
        self.keyed(format!("{prefix}#rbac_shadow"), prefix)
    }

    /// The JWT filter's stats under `prefix`.
    pub fn jwt_authn(&self, prefix: String) -> Arc<Scope<sets::JwtAuthn>> {
        self.keyed(format!("{prefix}#jwt_authn"), prefix)
    }

    /// The external authorization filter's stats under `prefix`.
    pub fn ext_authz(&self, prefix: String) -> Arc<Scope<sets::ExtAuthz>> {
        self.keyed(format!("{prefix}#ext_authz"), prefix)
    }

    /// `cluster.<name>.` stats.
    pub fn cluster(&self, name: &str) -> Arc<Scope<sets::Cluster>> {
        self.scope(format!("cluster.{name}."), |t| &mut t.clusters)
    }

    /// `cluster.<name>.outlier_detection.` stats.
    pub fn outlier(&self, name: &str) -> Arc<Scope<sets::Outlier>> {
        self.named(format!("cluster.{name}.outlier_detection."))
    }

    /// `cluster.<name>.health_check.` stats.
    pub fn health_check(&self, name: &str) -> Arc<Scope<sets::HealthCheck>> {
        self.named(format!("cluster.{name}.health_check."))
    }

    /// `http.<stat_prefix>.health_check.` stats (the health-check filter).
    pub fn health_check_filter(&self, stat_prefix: &str) -> Arc<Scope<sets::HealthCheckFilter>> {
        self.named(format!("http.{stat_prefix}.health_check."))
    }

    /// `http.<stat_prefix>.fault.` stats (the fault filter).
    pub fn fault(&self, stat_prefix: &str) -> Arc<Scope<sets::Fault>> {
        self.named(format!("http.{stat_prefix}.fault."))
    }

    /// `http.<stat_prefix>.cors.` stats (the CORS filter).
    pub fn cors(&self, stat_prefix: &str) -> Arc<Scope<sets::Cors>> {
        self.named(format!("http.{stat_prefix}.cors."))
    }

    /// `http.<stat_prefix>.csrf.` stats (the CSRF filter).
    pub fn csrf(&self, stat_prefix: &str) -> Arc<Scope<sets::Csrf>> {
        self.named(format!("http.{stat_prefix}.csrf."))
    }

    /// `<stat_prefix>.http_local_rate_limit.` stats (the HTTP local rate
    /// limit filter).
    pub fn http_local_ratelimit(&self, stat_prefix: &str) -> Arc<Scope<sets::HttpLocalRateLimit>> {
        self.named(format!("{stat_prefix}.http_local_rate_limit."))
    }

    /// `cluster.<name>.retry.` stats.
    pub fn cluster_retry(&self, name: &str) -> Arc<Scope<sets::Retry>> {
        self.scope(format!("cluster.{name}.retry."), |t| &mut t.retries)
    }

    /// Per-endpoint stats, shown by `/clusters` (not by `/stats`, as in Envoy).
    pub fn host(&self, cluster: &str, address: &str) -> Arc<Scope<sets::Host>> {
        let key = (cluster.to_string(), address.to_string());
        lock(&self.typed)
            .hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Scope::new(String::new(), self.shards + 1)))
            .clone()
    }

    /// Forgets the stats of endpoints no snapshot holds any more.
    pub fn forget_unused_hosts(&self) {
        lock(&self.typed)
            .hosts
            .retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Every shown counter and gauge, by full name, with
    /// `/reset_counters` applied, sorted by name.
    pub fn values(&self) -> Vec<(String, Kind, u64)> {
        let scopes: Vec<Arc<dyn Visit>> = lock(&self.scopes).values().cloned().collect();
        let clusters = self.cluster_prefixes();
        let is_cluster = |p: &str| clusters.contains(p);
        let visibility = self.visibility();
        let baseline = lock(&self.baseline);
        let mut out = Vec::new();
        for scope in scopes {
            scope.visit(&mut |name, kind, value| {
                visibility.note(name, value, &is_cluster);
                let value = match (kind, baseline.get(name)) {
                    (Kind::Counter, Some(b)) => value.wrapping_sub(*b),
                    _ => value,
                };
                out.push((name.to_string(), kind, value));
            });
        }
        for (name, value) in self.computed() {
            out.push((name.to_string(), Kind::Gauge, value));
        }
        out.retain(|(name, _, _)| visibility.shows(name, &is_cluster));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Notes the soonest certificate expiry of the serving configuration
    /// (seconds since the epoch), for `server.days_until_first_cert_expiring`.
    pub fn set_first_cert_expiry(&self, expires: Option<i64>) {
        self.first_cert_expiry
            .store(expires.unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Whole days until the soonest certificate expiry (u32::MAX without
    /// certificates, as Envoy reports it).
    fn days_until_first_cert_expiring(&self) -> u64 {
        let expires = self.first_cert_expiry.load(Ordering::Relaxed);
        if expires == i64::MAX {
            return u64::from(u32::MAX);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        ((expires - now).max(0) / 86_400) as u64
    }

    /// Gauges computed when read rather than written.
    fn computed(&self) -> [(&'static str, u64); 4] {
        [
            (
                "server.days_until_first_cert_expiring",
                self.days_until_first_cert_expiring(),
            ),
            ("server.uptime", self.uptime_secs()),
            ("server.memory_allocated", resident_bytes()),
            ("server.state", self.state() as u64),
        ]
    }

    /// `/reset_counters`: counters read as zero from now on. Shards keep
    /// writing their rows; only the reading side moves its baseline.
    pub fn reset_counters(&self) {
        let scopes: Vec<Arc<dyn Visit>> = lock(&self.scopes).values().cloned().collect();
        let mut baseline = lock(&self.baseline);
        for scope in scopes {
            scope.visit(&mut |name, kind, value| {
                if kind == Kind::Counter {
                    baseline.insert(name.to_string(), value);
                }
            });
        }
    }

    /// Limits downstream connections, all listeners together, to `limit`
    /// (`overload_manager`'s global limit).
    pub fn set_connection_limit(&self, limit: Option<u64>) {
        let limit = limit.unwrap_or(u64::MAX);
        self.downstream_limit.store(limit, Ordering::Relaxed);
    }

    /// Takes a place for a new downstream connection: None when the
    /// global limit is reached (the connection is to be closed), else a
    /// guard that gives it back (and costs nothing without a limit).
    pub fn open_downstream(&self) -> Option<DownstreamSlot<'_>> {
        let limit = self.downstream_limit.load(Ordering::Relaxed);
        if limit == u64::MAX {
            return Some(DownstreamSlot(None));
        }
        let open = self.downstream_open.fetch_add(1, Ordering::Relaxed);
        if open >= limit {
            self.downstream_open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(DownstreamSlot(Some(&self.downstream_open)))
    }

    /// Lets idle keep-alive connections stay open for `linger` once
    /// draining, for their next request (answered with `connection:
    /// close`), rather than close at once.
    pub fn set_drain_linger(&self, linger: Duration) {
        let ms = u64::try_from(linger.as_millis()).unwrap_or(u64::MAX);
        self.drain_linger_ms.store(ms, Ordering::Relaxed);
    }

    /// How long idle connections stay open once draining.
    pub fn drain_linger(&self) -> Duration {
        Duration::from_millis(self.drain_linger_ms.load(Ordering::Relaxed))
    }

    /// Adds the counters a previous restart epoch handed over to this
    /// process's (those it has: a counter this process never made is
    /// left out).
    pub fn carry_counters(&self, counters: impl Iterator<Item = (String, u64)>) {
        let mut baseline = lock(&self.baseline);
        for (name, value) in counters {
            let b = baseline.entry(name).or_insert(0);
            *b = b.wrapping_sub(value);
        }
    }

    /// The server's state.
    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Relaxed) {
            0 => ServerState::Live,
            _ => ServerState::Draining,
        }
    }

    /// Marks the server as draining (`/ready` answers 503 from now on).
    pub fn set_draining(&self) {
        self.state
            .store(ServerState::Draining as u8, Ordering::Relaxed);
        self.server.set(self.shards, sets::Server::live, 0);
    }

    /// `/healthcheck/fail` (true) and `/healthcheck/ok` (false).
    pub fn set_healthcheck_failed(&self, failed: bool) {
        self.healthcheck_failed.store(failed, Ordering::Relaxed);
    }

    /// Whether `/healthcheck/fail` is in force.
    pub fn healthcheck_failed(&self) -> bool {
        self.healthcheck_failed.load(Ordering::Relaxed)
    }

    /// Whether `/ready` should answer 200.
    pub fn ready(&self) -> bool {
        self.state() == ServerState::Live && !self.healthcheck_failed.load(Ordering::Relaxed)
    }
}

/// `server.version`: the crate version as one integer (0.1.2 → 102).
fn version_number() -> u64 {
    let part = |s: &str| s.parse::<u64>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// Resident set size in bytes, from `/proc/self/status` (0 where unreadable).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visited<S: StatSet + Send + Sync>(scope: &Scope<S>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        scope.visit(&mut |name, _, value| out.push((name.to_string(), value)));
        out
    }

    #[test]
    fn per_code_counters_are_summed_across_rows_and_only_shown_when_used() {
        let scope: Scope<sets::Cluster> = Scope::new("cluster.c.".into(), 3);
        assert!(scope
            .rows
            .iter()
            .all(|r| r.codes.iter().all(|c| c.get().is_none())));
        scope.inc_code(0, 200);
        scope.inc_code(2, 200);
        scope.inc_code(1, 599);
        scope.inc_code(1, 100);
        scope.inc_code(0, 600);
        scope.inc_code(0, 99);
        let codes: Vec<_> = visited(&scope)
            .into_iter()
            .filter(|(name, _)| {
                name.strip_prefix("cluster.c.upstream_rq_")
                    .is_some_and(|code| code.parse::<u16>().is_ok())
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("cluster.c.upstream_rq_100".to_string(), 1),
                ("cluster.c.upstream_rq_200".to_string(), 2),
                ("cluster.c.upstream_rq_599".to_string(), 1),
            ]
        );
        // Class counters too appear once counted.
        let names: Vec<String> = visited(&scope).into_iter().map(|(n, _)| n).collect();
        assert!(!names.iter().any(|n| n.ends_with("_2xx")));
        scope.inc(0, sets::Cluster::upstream_rq_2xx);
        let names: Vec<String> = visited(&scope).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"cluster.c.upstream_rq_2xx".to_string()));
        // Only the classes a row counted got a block.
        assert!(scope.rows[0].codes[1].get().is_some());
        assert!(scope.rows[0].codes[0].get().is_none());
        assert!(scope.rows[0].codes[4].get().is_none());
    }

    #[test]
    fn every_named_stat_has_a_slot_of_its_own() {
        let scope: Scope<sets::Cluster> = Scope::new("cluster.c.".into(), 2);
        for (i, _) in sets::Cluster::NAMES.iter().enumerate() {
            scope.slot(1, i).store(i as u64 + 1, Ordering::Relaxed);
        }
        let named = visited(&scope);
        for (i, (stat, _)) in sets::Cluster::NAMES.iter().enumerate() {
            assert_eq!(named[i], (format!("cluster.c.{stat}"), i as u64 + 1));
        }
    }
}
