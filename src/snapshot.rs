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
use crate::http::filters;
use crate::listener::ConnectionFilters;
use crate::net::Address;
use crate::router::RouteTable;
use crate::stats::ssl::SslStats;
use crate::stats::{sets, HistogramId, Scope, Store};
use crate::tls::{ClientTls, Secrets, ServerTls};
use crate::upstream::zone::LocalCluster;
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
    /// A `#fragment` is stripped rather than rejected: the runtime's flag,
    /// read when a request target has one.
    pub strip_fragment: Arc<std::sync::atomic::AtomicBool>,
    /// The overload manager's `stop_accepting_requests` is in force.
    pub overloaded: Arc<std::sync::atomic::AtomicBool>,
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
    /// `http_filters` before the router.
    pub filters: crate::http::filters::Chain,
}

/// A listener as the shards run it.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `name`.
    pub name: String,
    /// Its configuration's digest (`config::Listener::fingerprint`).
    pub fingerprint: u64,
    /// Its own fields' digest (`config::Listener::shell`).
    pub shell: u64,
    /// The digest of the RDS route configurations it was compiled with.
    pub routes: u64,
    /// Bound address.
    pub address: Address,
    /// `listener.<address>.*`.
    pub stats: Arc<Scope<sets::Listener>>,
    /// How its sockets are made and read.
    pub socket: config::ListenerSocket,
    /// `listener_filters` and their timeout.
    pub filters: config::ListenerFilters,
    /// `tls_inspector.*`, when the listener runs it.
    pub tls_inspector: Option<Arc<Scope<sets::TlsInspector>>>,
    /// `http_inspector.*`, when the listener runs it.
    pub http_inspector: Option<Arc<Scope<sets::HttpInspector>>>,
    /// The PROXY protocol filter's stats, when the listener runs it.
    pub proxy_protocol: Option<ProxyProtocolStats>,
    /// `filter_chains`, then `default_filter_chain` when there is one.
    pub chains: Vec<FilterChain>,
    /// Whether the last chain is the `default_filter_chain`.
    pub has_default: bool,
    /// `listener.<address>.ssl.*` (every TLS chain of the listener).
    pub ssl: Arc<SslStats>,
    /// A UDP listener's proxy (it then has no chains).
    pub udp: Option<Arc<UdpProxy>>,
    /// Whether the global downstream connection limit counts it.
    pub global_limit: bool,
}

/// A `udp_proxy`, compiled.
#[derive(Debug)]
pub struct UdpProxy {
    /// The cluster's index.
    pub cluster: usize,
    /// `idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// Hash the client's address for the load balancer.
    pub hash_source_ip: bool,
    /// `udp.<stat_prefix>.*`.
    pub stats: Arc<Scope<sets::Udp>>,
    /// `cluster.<name>.udp.*`.
    pub cluster_stats: Arc<Scope<sets::ClusterUdp>>,
}

/// Where the PROXY protocol filter counts.
#[derive(Debug, Clone)]
pub struct ProxyProtocolStats {
    /// `proxy_proto.[<stat_prefix>.]*`.
    pub filter: Arc<Scope<sets::ProxyProto>>,
    /// `downstream_cx_proxy_proto_error`.
    pub root: Arc<Scope<sets::Root>>,
}

/// One filter chain, compiled.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// Its configuration's digest, with its listener's own fields
    /// (`config::FilterChain::fingerprint`).
    pub fingerprint: u64,
    /// `filter_chain_match`.
    pub matcher: config::ChainMatch,
    /// The TLS context of its `transport_socket`.
    pub tls: Option<Arc<ServerTls>>,
    /// The network filters before the terminal one.
    pub connection_filters: ConnectionFilters,
    /// What serves its connections.
    pub serve: Serve,
}

/// A chain's terminal network filter.
#[derive(Debug, Clone)]
pub enum Serve {
    /// `http_connection_manager`.
    Http(Arc<HttpChain>),
    /// `tcp_proxy`.
    Tcp(Arc<TcpProxy>),
}

/// An HTTP connection manager on one listener.
#[derive(Debug, Clone)]
pub struct HttpChain {
    /// Its settings.
    pub http: Arc<HttpSettings>,
    /// `listener.<address>.http.<stat_prefix>.*`.
    pub http_stats: Arc<Scope<sets::ListenerHttp>>,
    /// `per_connection_buffer_limit_bytes` of the listener.
    pub buffer_limit: usize,
}

/// A `tcp_proxy`, compiled.
#[derive(Debug)]
pub struct TcpProxy {
    /// Cluster indices with their weights.
    pub clusters: Vec<(usize, u32)>,
    /// `idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// `max_downstream_connection_duration`.
    pub max_duration: Option<Duration>,
    /// `max_connect_attempts`.
    pub max_connect_attempts: u32,
    /// Hash the client's address for the load balancer.
    pub hash_source_ip: bool,
    /// `tcp.<stat_prefix>.*`.
    pub stats: Arc<Scope<sets::TcpProxy>>,
    /// `access_log`.
    pub access_logs: Vec<AccessLog>,
}

impl Listener {
    /// The HTTP connection manager of chain `chain`, if it has one.
    pub fn http_chain(&self, chain: usize) -> Option<&Arc<HttpChain>> {
        match &self.chains.get(chain)?.serve {
            Serve::Http(h) => Some(h),
            Serve::Tcp(_) => None,
        }
    }
}

/// Where a connection's HTTP connection manager is in a snapshot: a
/// listener, one of its filter chains, and that chain's fingerprint (so
/// an update that moved or changed the chain is noticed).
#[derive(Debug, Clone, Copy)]
pub struct ChainAt {
    /// The listener's index.
    pub listener: usize,
    /// The filter chain's index in the listener.
    pub chain: usize,
    /// The chain's fingerprint when the connection was accepted.
    pub fingerprint: u64,
}

/// Everything a request needs, frozen at one epoch.
#[derive(Debug)]
pub struct ConfigSnapshot {
    /// Publication number; increases by one per publish.
    pub epoch: u64,
    /// Listeners, in config order (shards index them).
    pub listeners: Vec<Arc<Listener>>,
    /// Listener positions by name (where a shard's socket finds its
    /// listener).
    pub listener_index: HashMap<String, usize>,
    /// Clusters, in config order (routes hold their index).
    pub clusters: Vec<Arc<upstream::Cluster>>,
    /// The SDS secrets its TLS contexts read, kept across reloads.
    pub secrets: Arc<Secrets>,
    /// The cluster zone routing compares localities with, if any.
    pub local_cluster: Option<Arc<LocalCluster>>,
}

/// The stat prefix a listener's TLS stats go under.
fn listener_owner(address: &Address) -> String {
    format!("listener.{}.", address.to_string().replace(':', "_"))
}

/// The stat prefix a cluster's TLS stats go under.
fn cluster_owner(c: &config::Cluster) -> String {
    format!("cluster.{}.", c.stat_name())
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
        Self::compile_from(boot, serve, store, sinks, None)
    }

    /// Compiles the bootstrap an update produced, for serving after
    /// `previous`: clusters whose configuration did not change are taken
    /// over as they are (endpoints, balancer, pooled connections), and so
    /// are unchanged listeners while the cluster list is the same.
    pub fn compile_next(
        boot: &Bootstrap,
        store: &Store,
        sinks: &Sinks,
        previous: &ConfigSnapshot,
    ) -> Result<ConfigSnapshot, Vec<ConfigError>> {
        Self::compile_from(boot, true, store, sinks, Some(previous))
    }

    fn compile_from(
        boot: &Bootstrap,
        serve: bool,
        store: &Store,
        sinks: &Sinks,
        previous: Option<&ConfigSnapshot>,
    ) -> Result<ConfigSnapshot, Vec<ConfigError>> {
        let resolve = serve;
        let secrets = previous.map_or_else(|| Arc::new(Secrets::default()), |p| p.secrets.clone());
        secrets.begin_pass();
        let before: HashMap<&str, &Arc<upstream::Cluster>> = previous
            .iter()
            .flat_map(|p| &p.clusters)
            .map(|c| (c.name(), c))
            .collect();
        let unchanged_cluster = |c: &config::Cluster| {
            let kept = before.get(c.name.as_str())?;
            (kept.config.fingerprint == c.fingerprint).then_some(kept)
        };
        let mut errors = Vec::new();
        let mut by_name = HashMap::new();
        for (i, c) in boot.clusters.iter().enumerate() {
            if by_name.insert(c.name.clone(), i).is_some() {
                errors.push(ConfigError {
                    path: format!("{}.name", c.path),
                    message: format!("duplicate cluster name {:?}", c.name),
                    suggestion: None,
                });
            }
        }
        let mut clusters = Vec::new();
        // The clusters new in this configuration, by index.
        let mut built = Vec::new();
        for c in &boot.clusters {
            if let Some(kept) = unchanged_cluster(c) {
                // EDS may have changed its endpoints: pooled connections
                // to the endpoints that stay are kept.
                let assignment = assignment_of(c, &boot.assignments);
                match assignment.map(|a| a.fingerprint) {
                    Some(f) if f != kept.assignment => {
                        let endpoints = assignment
                            .map(|a| (ip_endpoints(&a.endpoints), a.policy))
                            .unwrap_or_default();
                        let next = kept.with_endpoints(endpoints, store, f);
                        clusters.push(Arc::new(next));
                    }
                    _ => clusters.push(Arc::clone(kept)),
                }
                continue;
            }
            let tls = match &c.tls {
                Some(t) => match ClientTls::compile(
                    t,
                    &c.upstream_protocol,
                    &secrets,
                    store,
                    &cluster_owner(c),
                ) {
                    Ok(t) => Some(Arc::new(t)),
                    Err(message) => {
                        errors.push(ConfigError {
                            path: format!("{}.transport_socket", c.path),
                            message,
                            suggestion: None,
                        });
                        None
                    }
                },
                None => None,
            };
            let endpoints = initial_endpoints(c, resolve, &boot.assignments)
                .into_iter()
                .map(|r| Endpoint::new(store, &c.name, r))
                .collect();
            let policy = match c.discovery {
                Discovery::Eds => assignment_of(c, &boot.assignments).map(|a| a.policy),
                _ => Some(c.endpoint_policy),
            };
            let hosts = (endpoints, policy.unwrap_or_default());
            let mut cluster = upstream::Cluster::new(store, c.clone(), hosts, tls);
            cluster.assignment = assignment_of(c, &boot.assignments).map_or(0, |a| a.fingerprint);
            built.push(clusters.len());
            clusters.push(Arc::new(cluster));
        }
        let main = store.main_row();
        let active = clusters.len() as u64;
        store
            .cluster_manager
            .set(main, sets::ClusterManager::active_clusters, active);
        let mut listeners = Vec::new();
        let mut seen_names = HashMap::new();
        let mut seen_addrs = HashMap::new();
        // Known by name so routes to them are not reported twice (such a
        // bootstrap only ever reaches here to have its errors reported), or
        // not reported while they warm.
        for absent in boot.broken_clusters.iter().chain(&boot.warming_clusters) {
            by_name.entry(absent.clone()).or_insert(usize::MAX);
        }
        // Route tables hold cluster positions: a listener is only taken
        // over while those are what they were.
        let same_clusters = previous.is_some_and(|p| {
            p.clusters.len() == clusters.len()
                && p.clusters
                    .iter()
                    .zip(&clusters)
                    .all(|(a, b)| a.name() == b.name())
        });
        for (i, l) in boot.listeners.iter().enumerate() {
            let path = &l.path;
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
            let routes = rds_digest(l, &boot.route_configs);
            let unchanged = previous
                .and_then(|p| Some(&p.listeners[*p.listener_index.get(&l.name)?]))
                .filter(|p| p.fingerprint == l.fingerprint && p.routes == routes);
            if let Some(kept) = unchanged.filter(|_| same_clusters) {
                listeners.push(kept.clone());
                continue;
            }
            let compiled = Compiler {
                store,
                secrets: &secrets,
                sinks,
                serve,
                by_name: &by_name,
                listener: l,
                service_cluster: boot.node.as_ref().map_or("", |n| n.cluster.as_str()),
                route_configs: &boot.route_configs,
                validate_clusters: unchanged.is_none(),
            };
            let mut chains = Vec::new();
            for chain in l.chains.iter().chain(&l.default_chain) {
                chains.extend(compiled.chain(chain, &mut errors));
            }
            let owner = listener_owner(&l.address);
            listeners.push(Arc::new(Listener {
                name: l.name.clone(),
                fingerprint: l.fingerprint,
                shell: l.shell,
                routes,
                address: l.address.clone(),
                stats: store.listener(&l.address.to_string()),
                socket: l.socket.clone(),
                filters: l.filters.clone(),
                global_limit: l.global_limit,
                tls_inspector: l.filters.tls_inspector.then(|| store.tls_inspector()),
                http_inspector: l.filters.http_inspector.then(|| store.http_inspector()),
                proxy_protocol: l
                    .filters
                    .proxy_protocol
                    .as_ref()
                    .map(|p| ProxyProtocolStats {
                        filter: store.proxy_protocol(&p.stat_prefix),
                        root: store.root(),
                    }),
                chains,
                has_default: l.default_chain.is_some(),
                ssl: store.ssl(&owner),
                udp: l.udp.as_ref().map(|u| compiled.udp(u)),
            }));
        }
        if errors.is_empty() {
            for &i in &built {
                clusters[i].show_breakers(store);
            }
            let local_cluster = boot.local_cluster_name.as_ref().map(|name| {
                Arc::new(LocalCluster {
                    name: name.clone(),
                    locality: boot.node.as_ref().and_then(|n| n.locality.clone()),
                })
            });
            if let Some(local) = &local_cluster {
                local.route(&mut clusters, store);
            }
            Ok(ConfigSnapshot {
                epoch: 0,
                listener_index: seen_names,
                listeners,
                clusters,
                secrets,
                local_cluster,
            })
        } else {
            Err(errors)
        }
    }

    /// A snapshot with nothing in it (what came before the first).
    pub fn empty() -> ConfigSnapshot {
        ConfigSnapshot {
            epoch: 0,
            listeners: Vec::new(),
            listener_index: HashMap::new(),
            clusters: Vec::new(),
            secrets: Arc::new(Secrets::default()),
            local_cluster: None,
        }
    }

    /// The HTTP connection manager of the chain at `at`: where it was, or
    /// wherever an update moved the same chain (`at` then follows it).
    /// None when the chain changed or went away.
    pub fn locate(&self, at: &mut ChainAt) -> Option<&Arc<HttpChain>> {
        let here = self
            .listeners
            .get(at.listener)
            .and_then(|l| l.chains.get(at.chain));
        if here.is_some_and(|c| c.fingerprint == at.fingerprint) {
            return self.listeners[at.listener].http_chain(at.chain);
        }
        for (l, listener) in self.listeners.iter().enumerate() {
            if let Some(c) = listener
                .chains
                .iter()
                .position(|c| c.fingerprint == at.fingerprint)
            {
                at.listener = l;
                at.chain = c;
                return listener.http_chain(c);
            }
        }
        None
    }

    /// Every file a TLS context of this snapshot reads (secret files and
    /// the files they name included).
    pub fn tls_files(&self) -> Vec<std::path::PathBuf> {
        let servers = self.listeners.iter().flat_map(|l| &l.chains);
        let servers = servers.filter_map(|c| c.tls.as_ref());
        let clients = self.clusters.iter().filter_map(|c| c.tls.as_ref());
        servers
            .flat_map(|t| t.files.iter().cloned())
            .chain(clients.flat_map(|t| t.files.iter().cloned()))
            .collect()
    }

    /// A copy of this snapshot with every TLS context compiled again from
    /// its files (a rotated certificate, an updated secret). A context that
    /// fails to compile keeps its previous version; the errors say which.
    pub fn with_tls_reloaded(&self, store: &Store) -> (ConfigSnapshot, Vec<String>) {
        self.secrets.begin_pass();
        let mut errors = Vec::new();
        let mut listeners = Vec::new();
        for l in &self.listeners {
            let mut next = (**l).clone();
            let owner = listener_owner(&l.address);
            for chain in &mut next.chains {
                if let Some(tls) = &chain.tls {
                    match ServerTls::compile(&tls.source, &self.secrets, store, &owner) {
                        Ok(t) => chain.tls = Some(Arc::new(t)),
                        Err(e) => errors.push(format!("listener {}: {e}", l.name)),
                    }
                }
            }
            listeners.push(Arc::new(next));
        }
        let mut clusters = Vec::new();
        for c in &self.clusters {
            let Some(tls) = &c.tls else {
                clusters.push(c.clone());
                continue;
            };
            let (source, protocol) = &tls.source;
            let owner = cluster_owner(&c.config);
            match ClientTls::compile(source, protocol, &self.secrets, store, &owner) {
                Ok(t) => clusters.push(Arc::new(c.with_tls(store, Arc::new(t)))),
                Err(e) => {
                    errors.push(format!("cluster {}: {e}", c.name()));
                    clusters.push(c.clone());
                }
            }
        }
        let next = ConfigSnapshot {
            epoch: self.epoch,
            listener_index: self.listener_index.clone(),
            listeners,
            clusters,
            secrets: self.secrets.clone(),
            local_cluster: self.local_cluster.clone(),
        };
        (next, errors)
    }

    /// A copy of this snapshot with one cluster's endpoints replaced.
    pub fn with_endpoints(
        &self,
        cluster: usize,
        resolved: Vec<Resolved>,
        store: &Store,
    ) -> ConfigSnapshot {
        let previous = &self.clusters[cluster];
        let hosts = (resolved, previous.policy);
        let next = previous.with_endpoints(hosts, store, previous.assignment);
        self.with_cluster(cluster, next, store)
    }

    /// Where the cluster named `name` is in `clusters`.
    pub fn cluster_position(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.name() == name)
    }

    /// A copy of this snapshot with cluster `index` replaced by `next`
    /// (and, when that is the local cluster, the others routing by zone
    /// against its new hosts).
    pub fn with_cluster(
        &self,
        index: usize,
        next: upstream::Cluster,
        store: &Store,
    ) -> ConfigSnapshot {
        let mut clusters = self.clusters.clone();
        let is_local = |l: &&Arc<LocalCluster>| l.name == next.name();
        let local = self.local_cluster.as_ref().filter(is_local);
        clusters[index] = Arc::new(next);
        if let Some(local) = local {
            local.route(&mut clusters, store);
        }
        ConfigSnapshot {
            epoch: self.epoch,
            listener_index: self.listener_index.clone(),
            listeners: self.listeners.clone(),
            clusters,
            secrets: self.secrets.clone(),
            local_cluster: self.local_cluster.clone(),
        }
    }
}

/// A digest of the RDS route configurations `l` serves, as they are in
/// `configs`: a listener is compiled again when it changes.
fn rds_digest(l: &config::Listener, configs: &HashMap<String, config::RouteConfiguration>) -> u64 {
    l.rds_sources().fold(0, |digest, (_, r)| {
        let f = configs.get(&r.name).map_or(1, |c| c.fingerprint);
        digest.rotate_left(7) ^ f
    })
}

/// Compiles one listener's filter chains.
struct Compiler<'a> {
    store: &'a Store,
    secrets: &'a Secrets,
    sinks: &'a Sinks,
    serve: bool,
    by_name: &'a HashMap<String, usize>,
    listener: &'a config::Listener,
    /// `node.cluster`.
    service_cluster: &'a str,
    /// What RDS delivered, by name.
    route_configs: &'a HashMap<String, config::RouteConfiguration>,
    /// Whether a route or TCP proxy naming a cluster that does not exist
    /// is an error (not for a listener kept unchanged while CDS removed a
    /// cluster it names).
    validate_clusters: bool,
}

impl Compiler<'_> {
    fn chain(&self, c: &config::FilterChain, errors: &mut Vec<ConfigError>) -> Option<FilterChain> {
        let error = |path: String, message: String| ConfigError {
            path,
            message,
            suggestion: None,
        };
        let tls = match &c.tls {
            Some(t) => match ServerTls::compile(
                t,
                self.secrets,
                self.store,
                &listener_owner(&self.listener.address),
            ) {
                Ok(t) => Some(Arc::new(t)),
                Err(message) => {
                    errors.push(error(format!("{}.transport_socket", c.path), message));
                    None
                }
            },
            None => None,
        };
        let serve = match &c.filter {
            config::NetworkFilter::Http(hcm) => {
                let undelivered = config::RouteConfiguration::default();
                let (rc, rc_path) = match &hcm.routes {
                    config::RouteSource::Inline(rc) => {
                        (rc, format!("{}.route_config", c.filter_path))
                    }
                    // Not delivered yet: no route matches (404), as in
                    // Envoy once its initial fetch gives up.
                    config::RouteSource::Rds(rds) => (
                        self.route_configs.get(&rds.name).unwrap_or(&undelivered),
                        format!("rds {:?}: resources[0]", rds.name),
                    ),
                };
                // As Envoy's `validate_clusters`: on for inline routes, off
                // for RDS (a route to a cluster not there yet answers 503).
                let inline = matches!(hcm.routes, config::RouteSource::Inline(_));
                let routes = RouteTable::compile(
                    rc,
                    &rc_path,
                    self.by_name,
                    self.validate_clusters && inline,
                    self.store,
                    errors,
                );
                let access_logs = self.logs(&hcm.access_log, &c.filter_path, errors);
                let address = self.listener.address.to_string();
                let filters = filters::Context {
                    stat_prefix: &hcm.stat_prefix,
                    store: self.store,
                    clusters: self.by_name,
                    service_cluster: self.service_cluster,
                };
                Serve::Http(Arc::new(HttpChain {
                    http: Arc::new(http_settings(hcm, routes, &filters, access_logs)),
                    http_stats: self.store.listener_http(&address, &hcm.stat_prefix),
                    buffer_limit: self.listener.socket.buffer_limit,
                }))
            }
            config::NetworkFilter::Tcp(t) => {
                let mut clusters = Vec::new();
                for ((name, weight), path) in t.clusters.iter().zip(&t.cluster_paths) {
                    match self.by_name.get(name) {
                        Some(&i) => clusters.push((i, *weight)),
                        None if !self.validate_clusters => {
                            clusters.push((crate::router::MISSING_CLUSTER, *weight))
                        }
                        None => {
                            errors.push(error(path.clone(), format!("unknown cluster {name:?}")))
                        }
                    }
                }
                Serve::Tcp(Arc::new(TcpProxy {
                    clusters,
                    idle_timeout: t.idle_timeout,
                    max_duration: t.max_duration,
                    max_connect_attempts: t.max_connect_attempts,
                    hash_source_ip: t.hash_source_ip,
                    stats: self.store.tcp_proxy(&t.stat_prefix),
                    access_logs: self.logs(&t.access_log, &c.filter_path, errors),
                }))
            }
        };
        if c.tls.is_some() && tls.is_none() {
            return None;
        }
        Some(FilterChain {
            fingerprint: c.fingerprint,
            matcher: c.matcher.clone(),
            tls,
            connection_filters: ConnectionFilters::compile(&c.connection_filters, self.store),
            serve,
        })
    }

    /// A UDP proxy; as in Envoy, its cluster may be unknown (each session
    /// is then counted in `downstream_sess_no_route`).
    fn udp(&self, u: &config::UdpProxy) -> Arc<UdpProxy> {
        Arc::new(UdpProxy {
            cluster: self.by_name.get(&u.cluster).copied().unwrap_or(usize::MAX),
            idle_timeout: u.idle_timeout,
            hash_source_ip: u.hash_source_ip,
            stats: self.store.udp_proxy(&u.stat_prefix),
            cluster_stats: self.store.cluster_udp(&u.cluster),
        })
    }

    fn logs(
        &self,
        configs: &[crate::access_log::AccessLogConfig],
        filter_path: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<AccessLog> {
        let mut logs = Vec::new();
        for (j, config) in configs.iter().enumerate() {
            match self.sinks.compile(config, self.serve) {
                Ok(log) => logs.push(log),
                Err(message) => errors.push(ConfigError {
                    path: format!("{filter_path}.access_log[{j}]"),
                    message,
                    suggestion: None,
                }),
            }
        }
        logs
    }
}

fn http_settings(
    hcm: &config::HttpConnectionManager,
    routes: RouteTable,
    filters: &filters::Context,
    access_logs: Vec<AccessLog>,
) -> HttpSettings {
    let store = filters.store;
    HttpSettings {
        filters: filters::Chain::compile(&hcm.http_filters, filters),
        access_logs,
        idle_timeout: hcm.idle_timeout,
        stream_idle_timeout: hcm.stream_idle_timeout,
        request_timeout: hcm.request_timeout,
        request_headers_timeout: hcm.request_headers_timeout,
        strip_fragment: store.runtime.strip_fragment(),
        overloaded: store.overload.stop_requests.clone(),
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

/// The endpoint assignment an EDS cluster takes from `assignments`, if
/// EDS delivered one.
fn assignment_of<'a>(
    c: &config::Cluster,
    assignments: &'a HashMap<String, config::Assignment>,
) -> Option<&'a config::Assignment> {
    assignments.get(&c.eds.as_ref()?.service_name)
}

fn initial_endpoints(
    c: &config::Cluster,
    resolve: bool,
    assignments: &HashMap<String, config::Assignment>,
) -> Vec<Resolved> {
    match c.discovery {
        Discovery::StrictDns | Discovery::LogicalDns if resolve => upstream::dns::resolve(c),
        Discovery::StrictDns | Discovery::LogicalDns => Vec::new(),
        // Until EDS delivers endpoints, the cluster has none (503, as in
        // Envoy once its initial fetch gives up).
        Discovery::Eds => assignment_of(c, assignments)
            .map(|a| ip_endpoints(&a.endpoints))
            .unwrap_or_default(),
        Discovery::Static => ip_endpoints(&c.endpoints),
    }
}

/// Endpoints given as addresses (STATIC and EDS).
fn ip_endpoints(endpoints: &[config::EndpointConfig]) -> Vec<Resolved> {
    endpoints
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
                priority: e.priority,
                locality_weight: e.locality_weight,
                lb_metadata: Arc::new(e.lb_metadata.clone()),
            })
        })
        .collect()
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
