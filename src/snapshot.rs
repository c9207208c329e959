//! Immutable configuration snapshots and their epoch publication.
//!
//! The main thread compiles a [`ConfigSnapshot`] and publishes it; a shard
//! checks one relaxed atomic per request and reloads its view only when the
//! epoch moved. A request keeps the view it started with, so a publication
//! never changes a request mid-flight.

use crate::access_log::{AccessLog, Sinks};
use crate::config::{
    self, Bootstrap, ConfigError, Discovery, EndpointAddress, ServerHeaderTransformation,
};
use crate::net::Address;
use crate::router::RouteTable;
use crate::stats::{sets, HistogramId, Scope, Store};
use crate::upstream::{self, Endpoint, Resolved};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// HTTP connection manager settings compiled for the request path.
#[derive(Debug)]
pub struct HttpSettings {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// The compiled routes.
    pub routes: RouteTable,
    /// `server_name`.
    pub server_name: String,
    /// `server_header_transformation`.
    pub server_header: ServerHeaderTransformation,
    /// Request head size limit in bytes.
    pub max_request_headers_bytes: usize,
    /// `codec_type`.
    pub codec: config::Codec,
    /// `http2_protocol_options`.
    pub http2: config::Http2Options,
    /// Request header count limit.
    pub max_headers_count: usize,
    /// `generate_request_id`.
    pub generate_request_id: bool,
    /// `preserve_external_request_id`.
    pub preserve_external_request_id: bool,
    /// `strip_any_host_port`.
    pub strip_any_host_port: bool,
    /// `strip_matching_host_port`.
    pub strip_matching_host_port: bool,
    /// `http.<stat_prefix>.*`.
    pub stats: Arc<Scope<sets::Http>>,
    /// `http.<stat_prefix>.downstream_rq_time`.
    pub rq_time: HistogramId,
    /// `access_log`, compiled.
    pub access_logs: Vec<AccessLog>,
    /// Connection idle timeout between requests.
    pub idle_timeout: Option<Duration>,
    /// `stream_idle_timeout`.
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout`.
    pub request_timeout: Option<Duration>,
    /// `request_headers_timeout`.
    pub request_headers_timeout: Option<Duration>,
    /// A `#fragment` is stripped rather than rejected (a runtime key).
    pub strip_fragment: bool,
    /// `common_http_protocol_options.max_requests_per_connection`.
    pub max_requests_per_connection: Option<u32>,
    /// `common_http_protocol_options.max_stream_duration`.
    pub max_stream_duration: Option<Duration>,
    /// `upgrade_configs`.
    pub upgrades: Vec<config::Upgrade>,
    /// `delayed_close_timeout`.
    pub delayed_close_timeout: Option<Duration>,
    /// Client address detection and `x-forwarded-for`.
    pub xff: config::XffSettings,
}

/// A listener as the shards run it.
#[derive(Debug)]
pub struct Listener {
    /// `name`.
    pub name: String,
    /// Bound address.
    pub address: Address,
    /// Its HTTP connection manager.
    pub http: Arc<HttpSettings>,
    /// `listener.<address>.*`.
    pub stats: Arc<Scope<sets::Listener>>,
    /// `listener.<address>.http.<stat_prefix>.*`.
    pub http_stats: Arc<Scope<sets::ListenerHttp>>,
    /// How its sockets are made and read.
    pub socket: config::ListenerSocket,
}

/// Everything a request needs, frozen at one epoch.
#[derive(Debug)]
pub struct ConfigSnapshot {
    /// Publication number; increases by one per publish.
    pub epoch: u64,
    /// Listeners, in config order (shards index them).
    pub listeners: Vec<Arc<Listener>>,
    /// Clusters, in config order (routes hold their index).
    pub clusters: Vec<Arc<upstream::Cluster>>,
}

impl ConfigSnapshot {
    /// Compiles a decoded bootstrap, resolving stat handles in `store` and
    /// access-log destinations in `sinks`. With `serve`, STRICT_DNS names
    /// are resolved and log files opened now; without (validation), such
    /// clusters start empty and nothing is opened.
    pub fn compile(
        boot: &Bootstrap,
        serve: bool,
        store: &Store,
        sinks: &Sinks,
    ) -> Result<ConfigSnapshot, Vec<ConfigError>> {
        let resolve = serve;
        let mut errors = Vec::new();
        let mut by_name = HashMap::new();
        for (i, c) in boot.clusters.iter().enumerate() {
            if by_name.insert(c.name.clone(), i).is_some() {
                errors.push(ConfigError {
                    path: format!("static_resources.clusters[{}].name", c.index),
                    message: format!("duplicate cluster name {:?}", c.name),
                    suggestion: None,
                });
            }
        }
        let clusters = boot
            .clusters
            .iter()
            .map(|c| {
                let endpoints = initial_endpoints(c, resolve)
                    .into_iter()
                    .map(|r| Endpoint::new(store, &c.name, r))
                    .collect();
                Arc::new(upstream::Cluster::new(store, c.clone(), endpoints))
            })
            .collect::<Vec<_>>();
        let main = store.main_row();
        let active = clusters.len() as u64;
        store
            .cluster_manager
            .set(main, sets::ClusterManager::active_clusters, active);
        let mut listeners = Vec::new();
        let mut seen_names = HashMap::new();
        let mut seen_addrs = HashMap::new();
        // Known by name so routes to them are not reported twice; such a
        // bootstrap only ever reaches here to have its errors reported.
        for broken in &boot.broken_clusters {
            by_name.entry(broken.clone()).or_insert(usize::MAX);
        }
        for (i, l) in boot.listeners.iter().enumerate() {
            let path = format!("static_resources.listeners[{}]", l.index);
            if seen_names.insert(l.name.clone(), i).is_some() {
                errors.push(ConfigError {
                    path: format!("{path}.name"),
                    message: format!("duplicate listener name {:?}", l.name),
                    suggestion: None,
                });
            }
            // Port 0 asks for a fresh port each time, so never clashes.
            let fixed = l.address.ip().is_none_or(|a| a.port() != 0);
            if fixed && seen_addrs.insert(l.address.clone(), i).is_some() {
                errors.push(ConfigError {
                    path: format!("{path}.address"),
                    message: format!("another listener already binds {}", l.address),
                    suggestion: None,
                });
            }
            let rc_path = format!("{path}.filter_chains[0].filters[0].typed_config.route_config");
            let routes = RouteTable::compile(&l.hcm.route_config, &rc_path, &by_name, &mut errors);
            let mut access_logs = Vec::new();
            for (j, config) in l.hcm.access_log.iter().enumerate() {
                match sinks.compile(config, serve) {
                    Ok(log) => access_logs.push(log),
                    Err(message) => errors.push(ConfigError {
                        path: format!(
                            "{path}.filter_chains[0].filters[0].typed_config.access_log[{j}]"
                        ),
                        message,
                        suggestion: None,
                    }),
                }
            }
            listeners.push(Arc::new(Listener {
                name: l.name.clone(),
                address: l.address.clone(),
                http: Arc::new(http_settings(&l.hcm, routes, store, access_logs)),
                stats: store.listener(&l.address.to_string()),
                http_stats: store.listener_http(&l.address.to_string(), &l.hcm.stat_prefix),
                socket: l.socket.clone(),
            }));
        }
        if errors.is_empty() {
            Ok(ConfigSnapshot {
                epoch: 0,
                listeners,
                clusters,
            })
        } else {
            Err(errors)
        }
    }

    /// A copy of this snapshot with one cluster's endpoints replaced.
    pub fn with_endpoints(
        &self,
        cluster: usize,
        resolved: Vec<Resolved>,
        store: &Store,
    ) -> ConfigSnapshot {
        let mut clusters = self.clusters.clone();
        let previous = &self.clusters[cluster];
        let config = previous.config.clone();
        let endpoints = resolved
            .into_iter()
            .map(|r| {
                let mut e = Endpoint::new(store, &config.name, r);
                // In-flight requests keep counting against the same endpoint.
                if let Some(old) = previous.endpoints.iter().find(|o| o.addr == e.addr) {
                    e.active = old.active.clone();
                }
                e
            })
            .collect();
        let next = upstream::Cluster::new(store, config, endpoints);
        next.stats
            .inc(store.main_row(), sets::Cluster::membership_change);
        clusters[cluster] = Arc::new(next);
        ConfigSnapshot {
            epoch: self.epoch,
            listeners: self.listeners.clone(),
            clusters,
        }
    }
}

fn http_settings(
    hcm: &config::HttpConnectionManager,
    routes: RouteTable,
    store: &Store,
    access_logs: Vec<AccessLog>,
) -> HttpSettings {
    HttpSettings {
        access_logs,
        idle_timeout: hcm.idle_timeout,
        stream_idle_timeout: hcm.stream_idle_timeout,
        request_timeout: hcm.request_timeout,
        request_headers_timeout: hcm.request_headers_timeout,
        strip_fragment: hcm.strip_fragment,
        max_requests_per_connection: hcm.max_requests_per_connection,
        max_stream_duration: hcm.max_stream_duration,
        upgrades: hcm.upgrades.clone(),
        delayed_close_timeout: hcm.delayed_close_timeout,
        xff: hcm.xff.clone(),
        stats: store.http(&hcm.stat_prefix),
        rq_time: store
            .histograms
            .id(&format!("http.{}.downstream_rq_time", hcm.stat_prefix)),
        stat_prefix: hcm.stat_prefix.clone(),
        routes,
        server_name: hcm.server_name.clone(),
        server_header: hcm.server_header_transformation,
        max_request_headers_bytes: hcm.max_request_headers_bytes,
        codec: hcm.codec,
        http2: hcm.http2.clone(),
        max_headers_count: hcm.max_headers_count,
        generate_request_id: hcm.generate_request_id,
        preserve_external_request_id: hcm.preserve_external_request_id,
        strip_any_host_port: hcm.strip_any_host_port,
        strip_matching_host_port: hcm.strip_matching_host_port,
    }
}

fn initial_endpoints(c: &config::Cluster, resolve: bool) -> Vec<Resolved> {
    match c.discovery {
        Discovery::StrictDns | Discovery::LogicalDns if resolve => upstream::dns::resolve(c),
        Discovery::StrictDns | Discovery::LogicalDns => Vec::new(),
        Discovery::Static => c
            .endpoints
            .iter()
            .filter_map(|e| {
                let (addr, host) = match &e.address {
                    EndpointAddress::Socket { host, port } => (
                        Address::Ip(SocketAddr::new(host.parse().ok()?, *port)),
                        host,
                    ),
                    EndpointAddress::Pipe(pipe) => (pipe.clone(), &String::new()),
                };
                Some(Resolved {
                    addr,
                    weight: e.weight,
                    hostname: e.hostname.clone().unwrap_or_else(|| host.clone()),
                    explicit_hostname: e.hostname.is_some(),
                    locality: e.locality.clone(),
                })
            })
            .collect(),
    }
}

/// The published snapshot, shared by the main thread and every shard.
pub struct Published {
    epoch: AtomicU64,
    current: ArcSwap<ConfigSnapshot>,
}

impl Published {
    /// Publishes the first snapshot (epoch 1).
    pub fn new(mut first: ConfigSnapshot) -> Self {
        first.epoch = 1;
        Published {
            epoch: AtomicU64::new(1),
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The epoch of the newest snapshot (one relaxed load).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The newest snapshot.
    pub fn load(&self) -> Arc<ConfigSnapshot> {
        self.current.load_full()
    }

    /// Publishes `next` as epoch+1. Only the main thread calls this.
    pub fn publish(&self, mut next: ConfigSnapshot) {
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        next.epoch = epoch;
        self.current.store(Arc::new(next));
        // The epoch moves only after the snapshot is stored, so a shard that
        // sees the new epoch loads at least this snapshot.
        self.epoch.store(epoch, Ordering::Release);
    }
}
