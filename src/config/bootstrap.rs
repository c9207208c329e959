//! The Envoy v3 bootstrap subset Ringway implements, decoded from the tree.

use super::listener::Listener;
use super::node::{Errors, Fields, Node, Obj};
use super::ConfigSource;
use crate::net::Address;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The decoded bootstrap.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// `node`: identity reported to management servers and the admin API.
    pub node: Option<NodeInfo>,
    /// `static_resources.listeners`.
    pub listeners: Vec<Listener>,
    /// `static_resources.clusters`.
    pub clusters: Vec<Cluster>,
    /// `admin`: the admin API (none without it).
    pub admin: Option<AdminConfig>,
    /// Names of clusters whose config has errors (only while errors are
    /// reported): routes to them are not reported again as unknown.
    pub broken_clusters: Vec<String>,
    /// Names of clusters CDS delivered that warm (their endpoints have not
    /// come): routes may name them, and answer as Envoy does while they
    /// are not there (`no_cluster`).
    pub warming_clusters: Vec<String>,
    /// `dynamic_resources`.
    pub dynamic: super::DynamicResources,
    /// The route configurations RDS delivered, by name.
    pub route_configs: HashMap<String, RouteConfiguration>,
    /// The endpoint assignments EDS delivered, by service name.
    pub assignments: HashMap<String, Assignment>,
    /// `overload_manager`.
    pub overload: super::Overload,
    /// `layered_runtime.layers`, lowest first.
    pub runtime: Vec<crate::runtime::Layer>,
    /// `stats_config` and `deferred_stat_options`.
    pub stats: super::StatsOptions,
    /// `application_log_config.log_format`, compiled.
    pub log_format: Option<crate::log_format::Pattern>,
    /// `cluster_manager.outlier_detection.event_log_path`.
    pub outlier_event_log: Option<std::path::PathBuf>,
    /// `cluster_manager.local_cluster_name`.
    pub local_cluster_name: Option<String>,
}

/// `node`: who this proxy is.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `node.id`.
    pub id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `node.locality`.
    pub locality: Option<Locality>,
    /// `node.metadata` (a `Struct`; null when absent).
    pub metadata: Value,
    /// `node.user_agent_name`.
    pub user_agent_name: Option<String>,
}

/// `admin`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `address`.
    pub address: Address,
    /// `address.pipe.mode` (0: left as the umask makes it).
    pub pipe_mode: u32,
    /// `access_log[]`, and `access_log_path` as a file log in Envoy's
    /// default format.
    pub access_logs: Vec<crate::access_log::AccessLogConfig>,
    /// `socket_options` of its listening socket.
    pub socket_options: Vec<SocketOption>,
    /// `profile_path`: where Envoy's CPU profiler writes. Ringway has no
    /// `/cpuprofiler`, so nothing is written there; it is checked and shown.
    pub profile_path: Option<String>,
}

/// How a listener's sockets are made and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSocket {
    /// `enable_reuse_port` (default true): each shard binds its own socket
    /// with SO_REUSEPORT; false, one socket that every shard accepts on.
    pub reuse_port: bool,
    /// `socket_options`, applied in their `state`.
    pub options: Vec<SocketOption>,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB): the most read
    /// from a connection at once.
    pub buffer_limit: usize,
    /// `address.pipe.mode` (0: left as the umask makes it).
    pub pipe_mode: u32,
    /// `traffic_direction` (`UNSPECIFIED`, `INBOUND`, `OUTBOUND`). Envoy
    /// uses it for tracing and original-destination listeners, neither of
    /// which Ringway has; it is kept so `/config_dump` shows it.
    pub traffic_direction: &'static str,
}

/// One `socket_options` entry: `setsockopt(level, name, int_value)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOption {
    /// `level`.
    pub level: i32,
    /// `name`.
    pub name: i32,
    /// `int_value`.
    pub value: i32,
    /// `state`: when it is set.
    pub state: SocketState,
}

/// When a socket option is applied (`SocketOption.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// `STATE_PREBIND` (the default): before `bind`.
    Prebind,
    /// `STATE_BOUND`: after `bind`, before `listen`.
    Bound,
    /// `STATE_LISTENING`: after `listen`.
    Listening,
}

/// How the `server` response header is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeaderTransformation {
    /// Always set it to `server_name`.
    Overwrite,
    /// Set it only when the upstream did not.
    AppendIfAbsent,
    /// Pass the upstream's header through; never add one.
    PassThrough,
}

/// `envoy.filters.network.http_connection_manager`.
#[derive(Debug, Clone)]
pub struct HttpConnectionManager {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// Where its routes come from: `route_config` or `rds`.
    pub routes: RouteSource,
    /// `server_name` (default `ringway`).
    pub server_name: String,
    /// `server_header_transformation` (default OVERWRITE).
    pub server_header_transformation: ServerHeaderTransformation,
    /// `codec_type`.
    pub codec: super::Codec,
    /// `http2_protocol_options`.
    pub http2: super::Http2Options,
    /// `max_request_headers_kb` in bytes (default 60 KiB).
    pub max_request_headers_bytes: usize,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_headers_count: usize,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// `preserve_external_request_id` (default false).
    pub preserve_external_request_id: bool,
    /// `strip_any_host_port`.
    pub strip_any_host_port: bool,
    /// `strip_matching_host_port`.
    pub strip_matching_host_port: bool,
    /// `access_log`.
    pub access_log: Vec<crate::access_log::AccessLogConfig>,
    /// `http_filters` before the terminal router.
    pub http_filters: Vec<super::HttpFilter>,
    /// `common_http_protocol_options.idle_timeout`: close a connection
    /// idle this long between requests (default 1 h; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// `stream_idle_timeout`: no bytes either way on a request for this
    /// long ends it (default 5 min; 0 disables).
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout`: the whole request must arrive within it
    /// (default: disabled).
    pub request_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_requests_per_connection`: the
    /// connection closes after this many requests (default: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// `upgrade_configs`: the upgrades (`websocket`, …) it tunnels.
    pub upgrades: Vec<super::Upgrade>,
    /// `common_http_protocol_options.max_stream_duration`: how long a
    /// request may last from its start to its response's end (default:
    /// no limit; a route's `max_stream_duration` overrides it).
    pub max_stream_duration: Option<Duration>,
    /// `request_headers_timeout`: a request head must be complete this
    /// long after its first byte (Ringway's default 10 s, Envoy's edge
    /// value; Envoy's own default is off; 0 disables).
    pub request_headers_timeout: Option<Duration>,
    /// `delayed_close_timeout`: after a reply that closes the connection,
    /// how long to drain the client's unread bytes first (default 1 s; 0
    /// closes at once).
    pub delayed_close_timeout: Option<Duration>,
    /// `use_remote_address`, `xff_num_trusted_hops`, `skip_xff_append`.
    pub xff: XffSettings,
}

/// How the client's address is found and `x-forwarded-for` kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XffSettings {
    /// `use_remote_address`: the connection's address is trusted, and
    /// appended to `x-forwarded-for`.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`.
    pub trusted_hops: u32,
    /// `skip_xff_append`.
    pub skip_append: bool,
    /// `internal_address_config.cidr_ranges`: the addresses whose requests
    /// are internal (none by default, as in Envoy 1.40).
    pub internal_ranges: Vec<super::Cidr>,
    /// `internal_address_config.unix_sockets`: a client on a pipe is
    /// internal.
    pub internal_unix_sockets: bool,
}

impl XffSettings {
    /// Whether `ip` lies in one of the internal ranges.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.internal_ranges.iter().any(|range| range.contains(ip))
    }
}

/// Where a connection manager's routes come from.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// `route_config`, inline.
    Inline(RouteConfiguration),
    /// `rds`: a named `RouteConfiguration` from a file.
    Rds(RdsSource),
}

/// `eds_cluster_config{service_name, eds_config}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdsSource {
    /// `service_name` (default: the cluster's name).
    pub service_name: String,
    /// `eds_config`.
    pub source: super::ConfigSource,
}

/// A `ClusterLoadAssignment` as EDS delivers it.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// `cluster_name` (the EDS service name).
    pub cluster_name: String,
    /// A digest of its whole content.
    pub fingerprint: u64,
    /// Its endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// Its `policy`.
    pub policy: EndpointPolicy,
}

/// A `ClusterLoadAssignment`'s `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// `overprovisioning_factor`, percent (default 140).
    pub overprovisioning_factor: u32,
    /// `weighted_priority_health`: a level's health counts host weights,
    /// not hosts.
    pub weighted_priority_health: bool,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        EndpointPolicy {
            overprovisioning_factor: 140,
            weighted_priority_health: false,
        }
    }
}

/// `rds{route_config_name, config_source}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsSource {
    /// `route_config_name`.
    pub name: String,
    /// `config_source`.
    pub source: super::ConfigSource,
}

/// `route_config`.
#[derive(Debug, Clone, Default)]
pub struct RouteConfiguration {
    /// `name`.
    pub name: String,
    /// A digest of its whole configuration.
    pub fingerprint: u64,
    /// `virtual_hosts`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// `ignore_port_in_host_matching`.
    pub ignore_port_in_host_matching: bool,
    /// `request_headers_to_add` / `_to_remove`.
    pub request_headers: super::HeaderMutations,
    /// `response_headers_to_add` / `_to_remove`.
    pub response_headers: super::HeaderMutations,
    /// `typed_per_filter_config`.
    pub filter_configs: super::PerFilterConfigs,
}

/// `virtual_hosts[]`.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains`, lower-cased.
    pub domains: Vec<String>,
    /// `routes`.
    pub routes: Vec<Route>,
    /// `request_headers_to_add` / `_to_remove`.
    pub request_headers: super::HeaderMutations,
    /// `response_headers_to_add` / `_to_remove`.
    pub response_headers: super::HeaderMutations,
    /// `retry_policy`, for routes without their own.
    pub retry_policy: Option<super::RetryPolicy>,
    /// `include_request_attempt_count`.
    pub attempt_count_in_request: bool,
    /// `include_attempt_count_in_response`.
    pub attempt_count_in_response: bool,
    /// `per_request_buffer_limit_bytes`.
    pub buffer_limit: Option<u64>,
    /// `typed_per_filter_config`.
    pub filter_configs: super::PerFilterConfigs,
    /// `cors` (deprecated in Envoy, still honoured).
    pub cors: Option<super::CorsPolicy>,
    /// `rate_limits`.
    pub rate_limits: Vec<super::RateLimitPolicy>,
}

/// `routes[]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`.
    pub name: String,
    /// `match`.
    pub matcher: super::RouteMatch,
    /// `request_headers_to_add` / `_to_remove`.
    pub request_headers: super::HeaderMutations,
    /// `response_headers_to_add` / `_to_remove`.
    pub response_headers: super::HeaderMutations,
    /// `per_request_buffer_limit_bytes` (retry body buffering).
    pub buffer_limit: Option<u64>,
    /// `typed_per_filter_config`.
    pub filter_configs: super::PerFilterConfigs,
    /// What to do with a matching request.
    pub action: RouteAction,
}

/// The route's action.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// `route`: forward to a cluster (boxed: it is by far the largest).
    Forward(Box<super::ForwardAction>),
    /// `redirect`.
    Redirect(super::Redirect),
    /// `direct_response`.
    Direct {
        /// `status`.
        status: u16,
        /// `body`, if any.
        body: Option<Vec<u8>>,
    },
}

/// `clusters[]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its YAML path (`static_resources.clusters[i]`, or `resources[i]` of
    /// a CDS update).
    pub path: String,
    /// A digest of its whole configuration.
    pub fingerprint: u64,
    /// `name`.
    pub name: String,
    /// `type`.
    pub discovery: Discovery,
    /// `connect_timeout` (default 5s).
    pub connect_timeout: Duration,
    /// `load_assignment` endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// `load_assignment.policy`.
    pub endpoint_policy: EndpointPolicy,
    /// `eds_cluster_config`, for an EDS cluster.
    pub eds: Option<EdsSource>,
    /// `dns_refresh_rate` (default 5s).
    pub dns_refresh_rate: Duration,
    /// `dns_lookup_family` (default AUTO).
    pub dns_lookup_family: DnsLookupFamily,
    /// `lb_policy` and its settings.
    pub lb_policy: super::LbPolicy,
    /// `alt_stat_name`: the name its stats carry instead of `name`.
    pub alt_stat_name: Option<String>,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB): the most read
    /// from an upstream connection at once.
    pub buffer_limit: usize,
    /// `max_requests_per_connection` (or the same field of
    /// `common_http_protocol_options`): an upstream connection is closed
    /// after this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// `upstream_connection_options.tcp_keepalive`.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// The HTTP protocol spoken to the endpoints.
    pub upstream_protocol: UpstreamProtocol,
    /// `common_http_protocol_options.idle_timeout`: how long a pooled
    /// connection may go without a request (default 1 h; None: forever).
    pub idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_stream_duration`: how long one
    /// upstream request may last (none by default).
    pub max_stream_duration: Option<Duration>,
    /// `transport_socket` when it is TLS.
    pub tls: Option<super::UpstreamTls>,
    /// `upstream_http_protocol_options.auto_sni`: each new connection's
    /// SNI is the request's host (or another header's value).
    pub auto_sni: Option<AutoSni>,
    /// `circuit_breakers`.
    pub circuit_breakers: super::CircuitBreakers,
    /// `outlier_detection`.
    pub outlier_detection: Option<super::OutlierDetection>,
    /// `common_lb_config.healthy_panic_threshold` (percent; default 50).
    pub healthy_panic_threshold: f64,
    /// `common_lb_config.locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    /// `common_lb_config.zone_aware_lb_config` (or its defaults).
    pub zone_aware: super::ZoneAware,
    /// `health_checks` (one at most).
    pub health_check: Option<super::HealthCheck>,
    /// `lb_subset_config`.
    pub subsets: Option<super::SubsetConfig>,
}

/// `upstream_http_protocol_options` with `auto_sni`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSni {
    /// `override_auto_sni_header`: the header naming the server instead of
    /// the host (lower case).
    pub header: Option<String>,
}

/// The protocol a cluster speaks to its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2 with these options (prior knowledge over plaintext).
    Http2(super::Http2Options),
    /// Whatever the downstream speaks (`use_downstream_protocol_config`),
    /// with these options when that is HTTP/2.
    FollowDownstream(super::Http2Options),
    /// Whatever TLS ALPN chooses on each connection (`auto_config`):
    /// HTTP/2 with these options if the endpoint offers it, else HTTP/1.1.
    Auto(super::Http2Options),
}

impl Cluster {
    /// The name its stats carry: `alt_stat_name`, else its name.
    pub fn stat_name(&self) -> &str {
        self.alt_stat_name.as_deref().unwrap_or(&self.name)
    }

    /// The SDS secrets its TLS context reads.
    pub fn secret_sources(&self) -> impl Iterator<Item = &super::SecretSource> {
        self.tls.iter().flat_map(|t| t.common.secret_sources())
    }
}

impl UpstreamProtocol {
    /// The HTTP/2 options it carries (every choice but plain HTTP/1.1).
    pub fn http2_options(&self) -> Option<&super::Http2Options> {
        match self {
            UpstreamProtocol::Http1 => None,
            UpstreamProtocol::Http2(o)
            | UpstreamProtocol::FollowDownstream(o)
            | UpstreamProtocol::Auto(o) => Some(o),
        }
    }
}

/// `upstream_connection_options.tcp_keepalive`: unset fields keep the
/// kernel's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// `keepalive_probes`.
    pub probes: Option<u32>,
    /// `keepalive_time`, seconds idle before the first probe.
    pub time: Option<u32>,
    /// `keepalive_interval`, seconds between probes.
    pub interval: Option<u32>,
}

/// Cluster discovery `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// `STATIC`: addresses are IPs.
    Static,
    /// `STRICT_DNS`: names resolved in the background; every address is an endpoint.
    StrictDns,
    /// `LOGICAL_DNS`: one name, resolved in the background; its first
    /// address is the one endpoint, and new connections follow it.
    LogicalDns,
    /// `EDS`: endpoints from a `ClusterLoadAssignment` (`eds_cluster_config`).
    Eds,
}

impl Discovery {
    /// Whether endpoints come from resolving names.
    pub fn uses_dns(self) -> bool {
        matches!(self, Discovery::StrictDns | Discovery::LogicalDns)
    }
}

/// `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLookupFamily {
    /// IPv6 if any, else IPv4.
    Auto,
    /// IPv4 only.
    V4Only,
    /// IPv6 only.
    V6Only,
    /// IPv4 if any, else IPv6.
    V4Preferred,
    /// Both families.
    All,
}

/// One `lb_endpoints[]` entry.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Its `address`.
    pub address: EndpointAddress,
    /// `load_balancing_weight` (default 1).
    pub weight: u32,
    /// `endpoint.hostname`: the name `/clusters` shows and
    /// `auto_host_rewrite` uses.
    pub hostname: Option<String>,
    /// The `locality` of its `endpoints[]` entry.
    pub locality: Locality,
    /// That entry's `priority` (0, the highest, by default).
    pub priority: u32,
    /// That entry's `load_balancing_weight` (0: none).
    pub locality_weight: u32,
    /// Its `metadata.filter_metadata["envoy.lb"]`.
    pub lb_metadata: super::LbMetadata,
}

/// An endpoint's `address`.
#[derive(Debug, Clone)]
pub enum EndpointAddress {
    /// `socket_address`: an IP for STATIC, a name for the DNS types.
    Socket {
        /// `address`.
        host: String,
        /// `port_value`.
        port: u16,
    },
    /// `pipe` (STATIC clusters only).
    Pipe(Address),
}

/// `locality{region, zone, sub_zone}` (shown by `/clusters`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    /// `region`.
    pub region: String,
    /// `zone`.
    pub zone: String,
    /// `sub_zone`.
    pub sub_zone: String,
}

#[rustfmt::skip]
static BOOTSTRAP: Fields = Fields {
    known: &[
        "static_resources", "dynamic_resources", "node", "admin", "layered_runtime",
        "overload_manager", "stats_config", "deferred_stat_options", "cluster_manager",
        "application_log_config", "bootstrap_extensions",
    ],
    unsupported: &[
        "node_context_params", "hds_config",
        "flags_path", "stats_sinks",
        "stats_flush_interval", "stats_flush_on_admin", "watchdog", "watchdogs", "tracing",
        "enable_dispatcher_stats",
        "header_prefix", "stats_server_version_override", "use_tcp_for_dns_lookups",
        "dns_resolution_config", "typed_dns_resolver_config",
        "fatal_actions", "config_sources", "default_config_source", "default_socket_interface",
        "certificate_provider_instances", "inline_headers", "perf_tracing_file_path",
        "default_regex_engine", "xds_delegate_extension", "xds_config_tracker_extension",
        "listener_manager", "grpc_async_client_manager_config",
        "memory_allocator_manager",
    ],
};
#[rustfmt::skip]
static ADMIN: Fields = Fields {
    known: &[
        "address", "access_log", "access_log_path", "profile_path", "socket_options",
        "ignore_global_conn_limit",
    ],
    unsupported: &[],
};
#[rustfmt::skip]
static NODE: Fields = Fields {
    known: &["id", "cluster", "metadata", "locality", "user_agent_name", "user_agent_version"],
    unsupported: &[
        "dynamic_parameters", "user_agent_build_version", "extensions", "client_features",
        "listening_addresses",
    ],
};
#[rustfmt::skip]
static STATIC_RESOURCES: Fields = Fields {
    known: &["listeners", "clusters"],
    unsupported: &["secrets"],
};
#[rustfmt::skip]
static ADDRESS: Fields = Fields {
    known: &["socket_address", "pipe"],
    unsupported: &["envoy_internal_address"],
};
#[rustfmt::skip]
static PIPE: Fields = Fields {
    known: &["path", "mode"],
    unsupported: &[],
};
#[rustfmt::skip]
static SOCKET_ADDRESS: Fields = Fields {
    known: &["address", "port_value", "protocol"],
    unsupported: &[
        "named_port", "resolver_name", "ipv4_compat", "network_namespace_filepath",
    ],
};
#[rustfmt::skip]
static HCM: Fields = Fields {
    known: &[
        "@type", "stat_prefix", "codec_type", "route_config", "rds", "http_filters", "server_name",
        "request_headers_timeout", "delayed_close_timeout", "internal_address_config",
        "server_header_transformation", "max_request_headers_kb", "generate_request_id",
        "preserve_external_request_id", "strip_any_host_port", "strip_matching_host_port",
        "common_http_protocol_options", "access_log", "stream_idle_timeout", "request_timeout",
        "use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "upgrade_configs",
        "http2_protocol_options",
    ],
    unsupported: &[
        "scoped_routes", "add_user_agent", "tracing", "http_protocol_options",
        "http3_protocol_options", "scheme_header_transformation",
        "drain_timeout", "access_log_flush_interval",
        "flush_access_log_on_new_request", "access_log_options",
        "original_ip_detection_extensions",
        "early_header_mutation_extensions", "via",
        "always_set_request_id_in_response", "forward_client_cert_details",
        "set_current_client_cert_details", "proxy_100_continue",
        "represent_ipv4_remote_address_as_ipv4_mapped_ipv6", "normalize_path",
        "merge_slashes", "path_with_escaped_slashes_action", "request_id_extension",
        "local_reply_config", "stream_error_on_invalid_http_message", "strip_trailing_host_dot",
        "proxy_status_config", "typed_header_validation_config", "append_x_forwarded_port",
        "append_local_overload", "add_proxy_protocol_connection_state",
        "max_requests_per_connection",
    ],
};
#[rustfmt::skip]
static HCM_UPGRADE: Fields = Fields {
    known: &["upgrade_type", "enabled"],
    unsupported: &["filters"],
};
#[rustfmt::skip]
static PROTOCOL_OPTIONS: Fields = Fields {
    known: &["max_headers_count", "idle_timeout", "max_requests_per_connection", "max_stream_duration"],
    unsupported: &[
        "max_connection_duration",
        "headers_with_underscores_action", "max_response_headers_kb",
    ],
};
#[rustfmt::skip]
static ROUTE_CONFIGURATION: Fields = Fields {
    known: &[
        "name", "virtual_hosts", "ignore_port_in_host_matching", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "typed_per_filter_config",
    ],
    unsupported: &[
        "vhds", "internal_only_headers", "most_specific_header_mutations_wins", "validate_clusters",
        "max_direct_response_body_size_bytes", "cluster_specifier_plugins",
        "request_mirror_policies", "ignore_path_parameters_in_path_matching", "metadata",
    ],
};
#[rustfmt::skip]
static VIRTUAL_HOST: Fields = Fields {
    known: &[
        "name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
        "response_headers_to_add", "response_headers_to_remove", "retry_policy",
        "include_request_attempt_count", "include_attempt_count_in_response",
        "per_request_buffer_limit_bytes", "typed_per_filter_config", "cors", "rate_limits",
    ],
    unsupported: &[
        "matcher", "require_tls", "virtual_clusters", "retry_policy_typed_config",
        "hedge_policy", "include_is_timeout_retry_header",
        "request_mirror_policies", "metadata",
    ],
};
#[rustfmt::skip]
static ROUTE: Fields = Fields {
    known: &[
        "name", "match", "route", "direct_response", "redirect", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "per_request_buffer_limit_bytes", "typed_per_filter_config",
    ],
    unsupported: &[
        "filter_action", "non_forwarding_action", "metadata", "decorator",
        "tracing", "stat_prefix",
    ],
};
#[rustfmt::skip]
static DIRECT_RESPONSE: Fields = Fields {
    known: &["status", "body"],
    unsupported: &["body_format"],
};
#[rustfmt::skip]
static DATA_SOURCE: Fields = Fields {
    known: &["inline_string", "filename"],
    unsupported: &["inline_bytes", "environment_variable", "watched_directory"],
};
#[rustfmt::skip]
static CLUSTER: Fields = Fields {
    known: &[
        "name", "type", "connect_timeout", "lb_policy", "load_assignment", "dns_refresh_rate",
        "eds_cluster_config",
        "dns_lookup_family", "least_request_lb_config", "ring_hash_lb_config",
        "maglev_lb_config", "alt_stat_name", "per_connection_buffer_limit_bytes",
        "max_requests_per_connection", "common_http_protocol_options",
        "upstream_connection_options", "typed_extension_protocol_options",
        "http2_protocol_options", "transport_socket", "upstream_http_protocol_options",
        "circuit_breakers", "outlier_detection", "common_lb_config", "health_checks",
        "lb_subset_config",
    ],
    unsupported: &[
        "transport_socket_matches", "cluster_type",
        "http_protocol_options",
        "dns_jitter", "dns_failure_refresh_rate", "respect_dns_ttl", "dns_resolvers",
        "use_tcp_for_dns_lookups", "dns_resolution_config", "typed_dns_resolver_config",
        "wait_for_warm_on_init", "cleanup_interval", "upstream_bind_config",
        "original_dst_lb_config", "round_robin_lb_config",
        "metadata", "protocol_selection",
        "close_connections_on_host_health_failure", "ignore_health_on_host_removal", "filters",
        "load_balancing_policy", "lrs_server", "track_timeout_budgets", "upstream_config",
        "track_cluster_stats", "preconnect_policy", "connection_pool_per_downstream_connection",
    ],
};
#[rustfmt::skip]
static LOAD_ASSIGNMENT: Fields = Fields {
    known: &["cluster_name", "endpoints", "policy"],
    unsupported: &["named_endpoints"],
};
#[rustfmt::skip]
static ASSIGNMENT_POLICY: Fields = Fields {
    known: &["overprovisioning_factor", "weighted_priority_health"],
    unsupported: &["drop_overloads", "endpoint_stale_after"],
};
#[rustfmt::skip]
static LOCALITY_ENDPOINTS: Fields = Fields {
    known: &["lb_endpoints", "locality", "load_balancing_weight", "priority"],
    unsupported: &["metadata", "leds_cluster_locality_config", "proximity"],
};
#[rustfmt::skip]
static LOCALITY: Fields = Fields {
    known: &["region", "zone", "sub_zone"],
    unsupported: &[],
};
#[rustfmt::skip]
static LB_ENDPOINT: Fields = Fields {
    known: &["endpoint", "load_balancing_weight", "metadata"],
    unsupported: &["endpoint_name", "health_status"],
};
#[rustfmt::skip]
static ENDPOINT: Fields = Fields {
    known: &["address", "hostname"],
    unsupported: &["health_check_config", "additional_addresses"],
};

fn string(obj: &Obj, errs: &mut Errors, name: &str) -> Option<String> {
    let child = obj.get(name)?;
    child.str(errs).map(str::to_string)
}

fn flag(obj: &Obj, errs: &mut Errors, name: &str) -> bool {
    obj.get(name).and_then(|c| c.bool(errs)).unwrap_or(false)
}

/// Decodes an optional `UInt32Value` that must be at least 1 (1 when
/// absent); 0 is an error saying `expected`.
pub(super) fn at_least_one(child: Option<Node>, errs: &mut Errors, expected: &str) -> u32 {
    let Some(node) = child else { return 1 };
    match wrapped_uint(&node, errs, u32::MAX as u64) {
        Some(0) => {
            errs.add(node.path(), format!("expected {expected}"));
            1
        }
        Some(n) => n as u32,
        None => 1,
    }
}

/// Decodes a `google.protobuf.UInt32Value`-style field: a bare number or `{value: n}`.
pub(super) fn wrapped_uint(child: &Node, errs: &mut Errors, max: u64) -> Option<u64> {
    match child.value() {
        serde_json::Value::Object(map) if map.len() == 1 && map.contains_key("value") => {
            child.entry("value")?.uint(errs, max)
        }
        _ => child.uint(errs, max),
    }
}

/// Decodes a `locality{region, zone, sub_zone}`.
fn locality(node: &Node, errs: &mut Errors) -> Option<Locality> {
    let lo = node.object(errs, &LOCALITY)?;
    Some(Locality {
        region: string(&lo, errs, "region").unwrap_or_default(),
        zone: string(&lo, errs, "zone").unwrap_or_default(),
        sub_zone: string(&lo, errs, "sub_zone").unwrap_or_default(),
    })
}

/// Decodes `node`.
fn node_info(node: &Node, errs: &mut Errors) -> Option<NodeInfo> {
    let o = node.object(errs, &NODE)?;
    let metadata = match o.get("metadata") {
        Some(m) if m.value().is_object() => m.value().clone(),
        Some(m) => {
            errs.add(m.path(), "expected a mapping (a google.protobuf.Struct)");
            Value::Null
        }
        None => Value::Null,
    };
    // As in Envoy, a configured user_agent_version is replaced by the
    // binary's own build version.
    if let Some(v) = o.get("user_agent_version") {
        v.str(errs);
    }
    Some(NodeInfo {
        id: string(&o, errs, "id").unwrap_or_default(),
        cluster: string(&o, errs, "cluster").unwrap_or_default(),
        locality: o.get("locality").and_then(|l| locality(&l, errs)),
        metadata,
        user_agent_name: string(&o, errs, "user_agent_name"),
    })
}

/// Decodes the whole bootstrap, collecting every error.
pub fn decode(root: Node, errs: &mut Errors) -> Option<Bootstrap> {
    let obj = root.object(errs, &BOOTSTRAP)?;
    let node = obj.get("node").and_then(|n| node_info(&n, errs));
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut broken_clusters = Vec::new();
    if let Some(sr) = obj.get("static_resources") {
        if let Some(sr) = sr.object(errs, &STATIC_RESOURCES) {
            if let Some(l) = sr.get("listeners") {
                for (index, item) in l.list(errs).into_iter().enumerate() {
                    listeners.extend(super::listener::listener(item, errs, index));
                }
            }
            if let Some(c) = sr.get("clusters") {
                for item in c.list(errs) {
                    let errors_before = errs.0.len();
                    let name = item.value().get("name").and_then(|n| n.as_str());
                    let name = name.map(str::to_string);
                    match cluster(item, errs) {
                        Some(c) if errs.0.len() == errors_before => clusters.push(c),
                        _ => broken_clusters.extend(name),
                    }
                }
            }
        }
    }
    let sds_listener = listeners
        .iter()
        .any(|l| l.secret_sources().next().is_some());
    let sds_cluster = clusters.iter().any(|c| c.secret_sources().next().is_some());
    let identified = node
        .as_ref()
        .is_some_and(|n| !n.id.is_empty() && !n.cluster.is_empty());
    if (sds_listener || sds_cluster) && !identified {
        errs.add(
            "node",
            "secrets from SDS need node.id and node.cluster (Envoy requires both for an SDS subscription)",
        );
    }
    let admin = obj.get("admin").and_then(|a| admin(&a, errs));
    let runtime = obj
        .get("layered_runtime")
        .map(|r| layered_runtime(&r, errs, &fraction_keys(&listeners)))
        .unwrap_or_default();
    let dynamic = obj
        .get("dynamic_resources")
        .and_then(|d| super::xds::dynamic_resources(&d, errs))
        .unwrap_or_default();
    check_ads(&dynamic, &listeners, &clusters, errs);
    let overload = obj
        .get("overload_manager")
        .and_then(|o| super::overload::overload_manager(&o, errs))
        .unwrap_or_default();
    let log_format = obj
        .get("application_log_config")
        .and_then(|a| application_log_config(&a, errs));
    if let Some(e) = obj.get("bootstrap_extensions") {
        super::bootstrap_extensions::bootstrap_extensions(&e, errs);
    }
    let decoded = clusters.iter().map(|c| c.name.as_str());
    let static_clusters: Vec<&str> = decoded
        .chain(broken_clusters.iter().map(String::as_str))
        .collect();
    let cluster_manager = obj
        .get("cluster_manager")
        .map(|c| super::cluster_manager::cluster_manager(&c, errs, &static_clusters))
        .unwrap_or_default();
    let mut stats = super::StatsOptions::default();
    if let Some(s) = obj.get("stats_config") {
        super::stats_config::stats_config(&s, errs, &mut stats);
    }
    if let Some(d) = obj.get("deferred_stat_options") {
        super::stats_config::deferred_stat_options(&d, errs, &mut stats);
    }
    Some(Bootstrap {
        node,
        listeners,
        clusters,
        admin,
        broken_clusters,
        warming_clusters: Vec::new(),
        dynamic,
        runtime,
        route_configs: HashMap::new(),
        assignments: HashMap::new(),
        overload,
        stats,
        log_format,
        outlier_event_log: cluster_manager.outlier_event_log,
        local_cluster_name: cluster_manager.local_cluster_name,
    })
}

#[rustfmt::skip]
static APPLICATION_LOG_CONFIG: Fields = Fields { known: &["log_format"], unsupported: &[] };
#[rustfmt::skip]
static LOG_FORMAT: Fields = Fields { known: &["json_format", "text_format"], unsupported: &[] };

/// Decodes `application_log_config.log_format` into its pattern.
fn application_log_config(node: &Node, errs: &mut Errors) -> Option<crate::log_format::Pattern> {
    use crate::log_format::Pattern;
    let format = node
        .object(errs, &APPLICATION_LOG_CONFIG)?
        .get("log_format")?;
    let obj = format.object(errs, &LOG_FORMAT)?;
    match (obj.get("text_format"), obj.get("json_format")) {
        (Some(text), None) => Some(Pattern::text(text.str(errs)?)),
        (None, Some(json)) if json.value().is_object() => match Pattern::json(json.value()) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.add(json.path(), e);
                None
            }
        },
        (None, Some(json)) => {
            errs.add(json.path(), "expected a mapping (a Struct)");
            None
        }
        _ => {
            errs.add(format.path(), "expected one of text_format, json_format");
            None
        }
    }
}

/// An `ads` source needs `ads_config`; its cluster, and an
/// `api_config_source`'s, must be a static one (Envoy: "Unknown gRPC client
/// cluster").
fn check_ads(
    dynamic: &super::DynamicResources,
    listeners: &[Listener],
    clusters: &[Cluster],
    errs: &mut Errors,
) {
    let sources = [&dynamic.lds, &dynamic.cds].into_iter().flatten();
    let routes = listeners
        .iter()
        .flat_map(|l| l.rds_sources())
        .map(|(_, r)| &r.source);
    let endpoints = clusters
        .iter()
        .filter_map(|c| c.eds.as_ref())
        .map(|e| &e.source);
    let secrets = listeners.iter().flat_map(|l| l.secret_sources());
    let secrets = secrets.chain(clusters.iter().flat_map(|c| c.secret_sources()));
    // Which stream each source needs: ADS (None) or one of its own.
    let streams: Vec<Option<&super::AdsConfig>> = sources
        .chain(routes)
        .chain(endpoints)
        .filter_map(|s| match s {
            ConfigSource::File(_) => None,
            ConfigSource::Ads { .. } => Some(None),
            ConfigSource::Api { api, .. } => Some(Some(api)),
        })
        .chain(secrets.filter(|s| s.path.is_none()).map(|s| s.api.as_ref()))
        .collect();
    let known = |name: &str| clusters.iter().any(|c| c.name == name);
    let unknown = |api: &super::AdsConfig| format!("Unknown gRPC client cluster '{}'", api.cluster);
    for api in streams.iter().flatten() {
        if !known(&api.cluster) {
            let message = format!("an api_config_source's cluster: {}", unknown(api));
            errs.add("static_resources.clusters", message);
        }
    }
    match &dynamic.ads {
        None if streams.iter().any(Option::is_none) => errs.add(
            "dynamic_resources",
            "a config source is ads, but there is no ads_config",
        ),
        Some(ads) if !known(&ads.cluster) => errs.add("dynamic_resources.ads_config", unknown(ads)),
        _ => {}
    }
}

fn admin(node: &Node, errs: &mut Errors) -> Option<AdminConfig> {
    let o = node.object(errs, &ADMIN)?;
    let address = o
        .require(errs, "address")
        .and_then(|a| bind_address(&a, errs, "the admin API", false));
    let mut access_logs = super::access_log::access_logs(&o, errs);
    if let Some(path) = string(&o, errs, "access_log_path").filter(|p| !p.is_empty()) {
        access_logs.extend(super::access_log::file_log(path));
    }
    // The admin API is never counted against the global connection limit
    // (nor is Envoy's by the overload manager's monitor), so it has
    // nothing to ignore.
    if let Some(i) = o.get("ignore_global_conn_limit") {
        i.bool(errs);
    }
    let (address, pipe_mode) = address?;
    Some(AdminConfig {
        address,
        pipe_mode,
        access_logs,
        socket_options: socket_options(&o, errs),
        profile_path: string(&o, errs, "profile_path"),
    })
}

/// Decodes an address Ringway binds: a literal IP, or a pipe with its
/// `mode`.
pub(super) fn bind_address(
    a: &Node,
    errs: &mut Errors,
    what: &str,
    udp_ok: bool,
) -> Option<(Address, u32)> {
    match address(a, errs, udp_ok)? {
        (EndpointAddress::Pipe(pipe), mode) => Some((pipe, mode)),
        (EndpointAddress::Socket { host, port }, _) => match host.parse::<IpAddr>() {
            Ok(ip) => Some((Address::Ip(SocketAddr::new(ip, port)), 0)),
            Err(_) => {
                errs.add(
                    &format!("{}.socket_address.address", a.path()),
                    format!("expected an IP address for {what}, found {host:?}"),
                );
                None
            }
        },
    }
}

/// The longest pipe path the kernel takes (`sun_path`, its NUL included).
const MAX_PIPE_PATH: usize = 108;

/// Decodes `address`: exactly one of `socket_address` (host text and
/// port) or `pipe` (with its `mode`; 0 for a socket address).
fn address(child: &Node, errs: &mut Errors, udp_ok: bool) -> Option<(EndpointAddress, u32)> {
    let addr = child.object(errs, &ADDRESS)?;
    let Some(pipe) = addr.get("pipe") else {
        let sa = addr.require(errs, "socket_address")?;
        let sa = sa.object(errs, &SOCKET_ADDRESS)?;
        if let Some(p) = sa.get("protocol") {
            if p.enumeration(errs, &["TCP", "UDP"]) == Some("UDP") && !udp_ok {
                errs.add(p.path(), "UDP is not supported here (only on a listener)");
            }
        }
        let host = sa.require(errs, "address")?.str(errs)?.to_string();
        let port = match sa.get("port_value") {
            Some(p) => p.uint(errs, u16::MAX as u64)? as u16,
            None => 0,
        };
        return Some((EndpointAddress::Socket { host, port }, 0));
    };
    if addr.get("socket_address").is_some() {
        errs.add(
            child.path(),
            "expected one of socket_address or pipe, found both",
        );
        return None;
    }
    let p = pipe.object(errs, &PIPE)?;
    let path_node = p.require(errs, "path")?;
    let path = path_node.str(errs)?;
    if path.is_empty() {
        errs.add(path_node.path(), "expected a path of at least 1 character");
        return None;
    }
    if path.len() >= MAX_PIPE_PATH {
        errs.add(
            path_node.path(),
            format!(
                "path {path:?} exceeds the maximum UNIX domain socket path size of {MAX_PIPE_PATH}"
            ),
        );
        return None;
    }
    let pipe = Address::Pipe(path.into());
    let mode = match p.get("mode") {
        Some(node) => {
            let mode = node.uint(errs, 0o777)? as u32;
            if mode != 0 && pipe.is_abstract() {
                errs.add(node.path(), "cannot set mode for abstract AF_UNIX sockets");
                return None;
            }
            mode
        }
        None => 0,
    };
    Some((EndpointAddress::Pipe(pipe), mode))
}

#[rustfmt::skip]
static SOCKET_OPTION: Fields = Fields {
    known: &["description", "level", "name", "int_value", "state"],
    unsupported: &["buf_value", "type"],
};

/// Decodes `socket_options` (integer values only).
pub(super) fn socket_options(obj: &Obj, errs: &mut Errors) -> Vec<SocketOption> {
    let list = obj
        .get("socket_options")
        .map(|l| l.list(errs))
        .unwrap_or_default();
    list.into_iter()
        .filter_map(|item| {
            let o = item.object(errs, &SOCKET_OPTION)?;
            if let Some(d) = o.get("description") {
                d.str(errs);
            }
            let int = |errs: &mut Errors, name: &str| {
                let node = o.require(errs, name)?;
                let value = match node.value() {
                    serde_json::Value::String(s) => s.parse::<i64>().ok(),
                    v => v.as_i64(),
                };
                match value.and_then(|v| i32::try_from(v).ok()) {
                    Some(v) => Some(v),
                    None => {
                        errs.add(node.path(), "expected a 32-bit integer");
                        None
                    }
                }
            };
            let level = int(errs, "level");
            let name = int(errs, "name");
            let value = int(errs, "int_value");
            let state = match o.get("state") {
                Some(s) => match s
                    .enumeration(errs, &["STATE_PREBIND", "STATE_BOUND", "STATE_LISTENING"])?
                {
                    "STATE_BOUND" => SocketState::Bound,
                    "STATE_LISTENING" => SocketState::Listening,
                    _ => SocketState::Prebind,
                },
                None => SocketState::Prebind,
            };
            Some(SocketOption {
                level: level?,
                name: name?,
                value: value?,
                state,
            })
        })
        .collect()
}

/// Reads the `@type` of a `typed_config`.
pub(super) fn type_url<'a>(tc: &Node<'a>, errs: &mut Errors) -> Option<&'a str> {
    match tc.value().get("@type") {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => {
            errs.add(
                &format!("{}.@type", tc.path()),
                "required field is missing: typed_config needs an \"@type\"",
            );
            None
        }
    }
}

pub(super) fn hcm(node: Node, errs: &mut Errors) -> Option<HttpConnectionManager> {
    let obj = node.object(errs, &HCM)?;
    let stat_prefix = obj
        .require(errs, "stat_prefix")
        .and_then(|c| c.str(errs).map(str::to_string));
    let codec = super::http2::codec(obj.get("codec_type"), errs);
    let http2 = obj
        .get("http2_protocol_options")
        .map(|o| super::http2::options(&o, errs, false))
        .unwrap_or_default();
    let server_header_transformation = match obj.get("server_header_transformation") {
        Some(c) => match c.enumeration(errs, &["OVERWRITE", "APPEND_IF_ABSENT", "PASS_THROUGH"]) {
            Some("APPEND_IF_ABSENT") => ServerHeaderTransformation::AppendIfAbsent,
            Some("PASS_THROUGH") => ServerHeaderTransformation::PassThrough,
            _ => ServerHeaderTransformation::Overwrite,
        },
        None => ServerHeaderTransformation::Overwrite,
    };
    let max_request_headers_kb = match obj.get("max_request_headers_kb") {
        Some(c) => match wrapped_uint(&c, errs, 8192) {
            Some(0) => {
                errs.add(c.path(), "expected a value from 1 to 8192");
                60
            }
            Some(n) => n as usize,
            None => 60,
        },
        None => 60,
    };
    let mut max_headers_count = 100;
    let mut max_requests_per_connection = None;
    let mut max_stream_duration = None;
    let mut idle_timeout = Some(Duration::from_secs(3600));
    if let Some(c) = obj.get("common_http_protocol_options") {
        if let Some(o) = c.object(errs, &PROTOCOL_OPTIONS) {
            if let Some(t) = o.get("idle_timeout") {
                idle_timeout = t.duration(errs).filter(|d| !d.is_zero());
            }
            if let Some(t) = o.get("max_stream_duration") {
                max_stream_duration = t.duration(errs).filter(|d| !d.is_zero());
            }
            if let Some(m) = o.get("max_requests_per_connection") {
                max_requests_per_connection = wrapped_uint(&m, errs, u32::MAX as u64)
                    .filter(|&n| n > 0)
                    .map(|n| n as u32);
            }
            if let Some(m) = o.get("max_headers_count") {
                match wrapped_uint(&m, errs, 10_000) {
                    Some(0) => errs.add(m.path(), "expected a value of at least 1"),
                    Some(n) => max_headers_count = n as usize,
                    None => {}
                }
            }
        }
    }
    let generate_request_id = any_bool(obj.get("generate_request_id"), errs, true);
    let http_filters = super::filters::http_filters(&obj, errs);
    let access_log = super::access_log::access_logs(&obj, errs);
    let routes = match (obj.get("route_config"), obj.get("rds")) {
        (Some(rc), None) => route_configuration(rc, errs).map(RouteSource::Inline),
        (None, Some(rds)) => rds_source(&rds, errs).map(RouteSource::Rds),
        (Some(_), Some(_)) => {
            errs.add(obj.path(), "expected only one of route_config or rds");
            None
        }
        (None, None) => {
            errs.add(
                &format!("{}.route_config", obj.path()),
                "required field is missing: expected route_config or rds",
            );
            None
        }
    };
    Some(HttpConnectionManager {
        stat_prefix: stat_prefix?,
        routes: routes?,
        server_name: string(&obj, errs, "server_name").unwrap_or_else(|| "ringway".to_string()),
        server_header_transformation,
        codec,
        http2,
        max_request_headers_bytes: max_request_headers_kb * 1024,
        max_headers_count,
        generate_request_id,
        preserve_external_request_id: flag(&obj, errs, "preserve_external_request_id"),
        strip_any_host_port: flag(&obj, errs, "strip_any_host_port"),
        strip_matching_host_port: flag(&obj, errs, "strip_matching_host_port"),
        access_log,
        http_filters,
        idle_timeout,
        max_stream_duration,
        upgrades: super::route_action::upgrades(&obj, errs, &HCM_UPGRADE),
        stream_idle_timeout: match obj.get("stream_idle_timeout") {
            Some(t) => t.duration(errs).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(300)),
        },
        request_timeout: obj
            .get("request_timeout")
            .and_then(|t| t.duration(errs))
            .filter(|d| !d.is_zero()),
        max_requests_per_connection,
        request_headers_timeout: match obj.get("request_headers_timeout") {
            Some(t) => t.duration(errs).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(10)),
        },
        delayed_close_timeout: match obj.get("delayed_close_timeout") {
            Some(t) => t.duration(errs).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(1)),
        },
        xff: XffSettings {
            use_remote_address: any_bool(obj.get("use_remote_address"), errs, false),
            trusted_hops: match obj.get("xff_num_trusted_hops") {
                Some(n) => n.uint(errs, 64).unwrap_or(0) as u32,
                None => 0,
            },
            skip_append: flag(&obj, errs, "skip_xff_append"),
            ..obj
                .get("internal_address_config")
                .map(|c| internal_address_config(&c, errs))
                .unwrap_or_default()
        },
    })
}

#[rustfmt::skip]
static LAYERED_RUNTIME: Fields = Fields { known: &["layers"], unsupported: &[] };
#[rustfmt::skip]
static RUNTIME_LAYER: Fields = Fields {
    known: &["name", "static_layer", "admin_layer"],
    unsupported: &["disk_layer", "rtds_layer"],
};

/// The runtime keys the static listeners' runtime fractions read (their
/// HTTP filters' and their inline routes').
fn fraction_keys(listeners: &[Listener]) -> std::collections::HashSet<String> {
    fn weighted(r: &Route) -> &[super::WeightedCluster] {
        match &r.action {
            RouteAction::Forward(f) => match &f.target {
                super::ClusterTarget::Weighted { clusters, .. } => clusters,
                _ => &[],
            },
            _ => &[],
        }
    }
    let managers = listeners
        .iter()
        .flat_map(|l| l.chains.iter().chain(&l.default_chain))
        .filter_map(|c| match &c.filter {
            super::NetworkFilter::Http(hcm) => Some(hcm),
            super::NetworkFilter::Tcp(_) => None,
        });
    let mut keys = std::collections::HashSet::new();
    for hcm in managers {
        for f in &hcm.http_filters {
            keys.extend(f.kind.runtime_keys().into_iter().map(str::to_string));
        }
        let RouteSource::Inline(rc) = &hcm.routes else {
            continue;
        };
        for vh in &rc.virtual_hosts {
            let levels = std::iter::once(&rc.filter_configs)
                .chain(std::iter::once(&vh.filter_configs))
                .chain(vh.routes.iter().map(|r| &r.filter_configs))
                .chain(
                    vh.routes
                        .iter()
                        .flat_map(|r| weighted(r).iter().map(|w| &w.filter_configs)),
                );
            for (_, config) in levels.flatten() {
                keys.extend(config.runtime_keys().into_iter().map(str::to_string));
            }
            let route_cors = vh.routes.iter().filter_map(|r| match &r.action {
                RouteAction::Forward(f) => f.cors.as_ref(),
                _ => None,
            });
            for cors in vh.cors.iter().chain(route_cors) {
                keys.extend(cors.runtime_keys().map(str::to_string));
            }
        }
    }
    keys
}

/// Decodes `layered_runtime`: static layers, of whose keys only those
/// Ringway acts on (the ones it knows, and the `fraction_keys` its
/// configuration's runtime fractions read; any other is an error, never
/// ignored), and at most one admin layer; lowest first.
fn layered_runtime(
    node: &Node,
    errs: &mut Errors,
    fraction_keys: &std::collections::HashSet<String>,
) -> Vec<crate::runtime::Layer> {
    let mut out = Vec::new();
    let Some(obj) = node.object(errs, &LAYERED_RUNTIME) else {
        return out;
    };
    let layers = obj.get("layers").map(|l| l.list(errs)).unwrap_or_default();
    for layer in layers {
        let Some(lo) = layer.object(errs, &RUNTIME_LAYER) else {
            continue;
        };
        let name = string(&lo, errs, "name").unwrap_or_default();
        let mut decoded = crate::runtime::Layer {
            name,
            ..Default::default()
        };
        match (lo.get("static_layer"), lo.get("admin_layer")) {
            (Some(_), Some(_)) => {
                errs.add(
                    layer.path(),
                    "expected only one of static_layer or admin_layer",
                );
                continue;
            }
            (None, Some(admin)) => {
                if out.iter().any(|l: &crate::runtime::Layer| l.admin) {
                    errs.add(admin.path(), "only one admin layer may be specified");
                }
                admin.object(errs, &ADMIN_LAYER);
                decoded.admin = true;
            }
            (Some(values), None) => {
                let serde_json::Value::Object(map) = values.value() else {
                    errs.add(values.path(), "expected a mapping of runtime keys");
                    continue;
                };
                for key in map.keys() {
                    let Some(entry) = values.entry(key) else {
                        continue;
                    };
                    use crate::runtime::KeyKind;
                    let kind = match key.as_str() {
                        crate::runtime::FRAGMENT_KEY => Some(KeyKind::Flag),
                        _ => crate::runtime::inert_key(key),
                    };
                    use crate::runtime::Value as RuntimeValue;
                    let value = match kind {
                        Some(KeyKind::Flag) => {
                            entry.bool(errs).map(|v| RuntimeValue::Text(v.to_string()))
                        }
                        Some(KeyKind::Count) => runtime_count(&entry, errs).map(RuntimeValue::Text),
                        None if fraction_keys.contains(key) => runtime_fraction_value(&entry, errs),
                        None => {
                            errs.add(
                                entry.path(),
                                "runtime key not supported yet (Ringway reads only the keys it knows and those its runtime fractions name)",
                            );
                            None
                        }
                    };
                    if let Some(value) = value {
                        decoded.values.insert(key.clone(), value);
                    }
                }
            }
            (None, None) => {}
        }
        out.push(decoded);
    }
    out
}

/// The value of a key a runtime fraction reads: a `FractionalPercent`
/// mapping, or a scalar kept as text (a number is read as a numerator).
fn runtime_fraction_value(node: &Node, errs: &mut Errors) -> Option<crate::runtime::Value> {
    use crate::runtime::Value as RuntimeValue;
    match node.value() {
        Value::Object(_) => {
            let (numerator, denominator) = super::route_action::fractional_percent(node, errs)?;
            Some(RuntimeValue::Percent(super::Fraction {
                numerator,
                denominator,
            }))
        }
        Value::String(s) => Some(RuntimeValue::Text(s.clone())),
        Value::Array(_) | Value::Null => {
            errs.add(
                node.path(),
                "expected a number, a string or a FractionalPercent",
            );
            None
        }
        other => Some(RuntimeValue::Text(other.to_string())),
    }
}

/// A runtime integer, written as a number or a numeric string, as text.
fn runtime_count(node: &Node, errs: &mut Errors) -> Option<String> {
    let text = match node.value() {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.parse::<u64>() {
        Ok(n) => Some(n.to_string()),
        Err(_) => {
            errs.add(node.path(), "expected an unsigned integer");
            None
        }
    }
}

#[rustfmt::skip]
static ADMIN_LAYER: Fields = Fields { known: &[], unsupported: &[] };

#[rustfmt::skip]
static INTERNAL_ADDRESS_CONFIG: Fields = Fields {
    known: &["unix_sockets", "cidr_ranges"],
    unsupported: &[],
};
/// Decodes `internal_address_config` into the internal CIDR ranges and
/// whether pipe clients are internal.
fn internal_address_config(node: &Node, errs: &mut Errors) -> XffSettings {
    let Some(obj) = node.object(errs, &INTERNAL_ADDRESS_CONFIG) else {
        return XffSettings::default();
    };
    let internal_unix_sockets = flag(&obj, errs, "unix_sockets");
    let ranges = obj
        .get("cidr_ranges")
        .map(|l| l.list(errs))
        .unwrap_or_default();
    let internal_ranges = ranges
        .into_iter()
        .filter_map(|range| super::listener::cidr(&range, errs))
        .collect();
    XffSettings {
        internal_ranges,
        internal_unix_sockets,
        ..XffSettings::default()
    }
}

/// Decodes a boolean written plainly or as a `BoolValue` (`{value: bool}`);
/// `default` when absent.
pub(super) fn any_bool(child: Option<Node>, errs: &mut Errors, default: bool) -> bool {
    match child {
        Some(c) if c.value().is_object() => wrapped_bool(&c, errs),
        Some(c) => c.bool(errs).unwrap_or(default),
        None => default,
    }
}

/// Decodes a `google.protobuf.BoolValue` written as `{value: bool}`.
pub(super) fn wrapped_bool(child: &Node, errs: &mut Errors) -> bool {
    match child.value().get("value") {
        Some(serde_json::Value::Bool(b)) => *b,
        _ => {
            errs.add(child.path(), "expected a boolean or {value: boolean}");
            true
        }
    }
}

#[rustfmt::skip]
static RDS: Fields = Fields {
    known: &["route_config_name", "config_source"],
    unsupported: &[],
};

/// Decodes `rds`.
fn rds_source(node: &Node, errs: &mut Errors) -> Option<RdsSource> {
    let obj = node.object(errs, &RDS)?;
    let name = obj
        .require(errs, "route_config_name")
        .and_then(|n| n.str(errs));
    let source = obj
        .require(errs, "config_source")
        .and_then(|s| super::xds::config_source(&s, errs));
    Some(RdsSource {
        name: name?.to_string(),
        source: source?,
    })
}

/// Decodes a `RouteConfiguration` (inline, or a resource of an RDS update).
pub(super) fn route_configuration(node: Node, errs: &mut Errors) -> Option<RouteConfiguration> {
    let obj = node.object(errs, &ROUTE_CONFIGURATION)?;
    let mut virtual_hosts = Vec::new();
    if let Some(v) = obj.get("virtual_hosts") {
        for item in v.list(errs) {
            if let Some(vh) = virtual_host(item, errs) {
                virtual_hosts.push(vh);
            }
        }
    }
    Some(RouteConfiguration {
        fingerprint: node.fingerprint(&[]),
        name: string(&obj, errs, "name").unwrap_or_default(),
        virtual_hosts,
        ignore_port_in_host_matching: flag(&obj, errs, "ignore_port_in_host_matching"),
        request_headers: super::header_mutations(&obj, errs, "request"),
        response_headers: super::header_mutations(&obj, errs, "response"),
        filter_configs: super::filters::per_filter_configs(&obj, errs),
    })
}

fn virtual_host(node: Node, errs: &mut Errors) -> Option<VirtualHost> {
    let obj = node.object(errs, &VIRTUAL_HOST)?;
    let name = obj
        .require(errs, "name")
        .and_then(|c| c.str(errs).map(str::to_string));
    let mut domains = Vec::new();
    if let Some(d) = obj.require(errs, "domains") {
        let items = d.list(errs);
        if items.is_empty() {
            errs.add(d.path(), "expected at least one domain");
        }
        for item in items {
            let child = item;
            if let Some(s) = child.str(errs) {
                let stars = s.matches('*').count();
                let star_ok =
                    stars == 0 || (stars == 1 && (s.starts_with('*') || s.ends_with('*')));
                if s.is_empty() || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    errs.add(child.path(), format!("invalid domain {s:?}"));
                } else if !star_ok {
                    errs.add(
                        child.path(),
                        format!("invalid domain {s:?}: one '*' at the start or the end only"),
                    );
                } else {
                    domains.push(s.to_ascii_lowercase());
                }
            }
        }
    }
    let mut routes = Vec::new();
    if let Some(r) = obj.get("routes") {
        for item in r.list(errs) {
            if let Some(route) = route(item, errs) {
                routes.push(route);
            }
        }
    }
    Some(VirtualHost {
        name: name?,
        domains,
        routes,
        request_headers: super::header_mutations(&obj, errs, "request"),
        response_headers: super::header_mutations(&obj, errs, "response"),
        retry_policy: match obj.get("retry_policy") {
            Some(r) => Some(super::retry::retry_policy(&r, errs)?),
            None => None,
        },
        attempt_count_in_request: flag(&obj, errs, "include_request_attempt_count"),
        attempt_count_in_response: flag(&obj, errs, "include_attempt_count_in_response"),
        buffer_limit: buffer_limit(&obj, errs),
        filter_configs: super::filters::per_filter_configs(&obj, errs),
        cors: match obj.get("cors") {
            Some(c) => Some(super::filters::cors_policy(&c, errs)?),
            None => None,
        },
        rate_limits: obj
            .get("rate_limits")
            .map(|r| super::rate_limit::rate_limits(&r, errs))
            .unwrap_or_default(),
    })
}

/// `per_request_buffer_limit_bytes` (a UInt32Value).
fn buffer_limit(obj: &Obj, errs: &mut Errors) -> Option<u64> {
    let n = obj.get("per_request_buffer_limit_bytes")?;
    wrapped_uint(&n, errs, u32::MAX as u64)
}

fn route(node: Node, errs: &mut Errors) -> Option<Route> {
    let obj = node.object(errs, &ROUTE)?;
    let matcher = obj.require(errs, "match").and_then(|m| {
        // case_sensitive may be a BoolValue wrapper; read it before the rest.
        let case_sensitive = any_bool(m.entry("case_sensitive"), errs, true);
        super::route_match::route_match(&m, errs, case_sensitive)
    });
    let mut actions = Vec::new();
    if let Some(r) = obj.get("route") {
        let forward = super::route_action::forward_action(r, errs).map(Box::new);
        actions.push(forward.map(RouteAction::Forward));
    }
    if let Some(r) = obj.get("redirect") {
        actions.push(super::route_action::redirect(r, errs).map(RouteAction::Redirect));
    }
    if let Some(d) = obj.get("direct_response") {
        actions.push(direct_response(d, errs));
    }
    if actions.len() != 1 {
        errs.add(
            obj.path(),
            "expected exactly one of route, redirect, direct_response",
        );
        return None;
    }
    Some(Route {
        name: string(&obj, errs, "name").unwrap_or_default(),
        matcher: matcher?,
        request_headers: super::header_mutations(&obj, errs, "request"),
        response_headers: super::header_mutations(&obj, errs, "response"),
        buffer_limit: buffer_limit(&obj, errs),
        filter_configs: super::filters::per_filter_configs(&obj, errs),
        action: actions.pop().flatten()?,
    })
}

fn direct_response(node: Node, errs: &mut Errors) -> Option<RouteAction> {
    let obj = node.object(errs, &DIRECT_RESPONSE)?;
    let status = obj.require(errs, "status").and_then(|s| {
        let n = s.uint(errs, 599)?;
        if n < 200 {
            errs.add(s.path(), "expected a status from 200 to 599");
            return None;
        }
        Some(n as u16)
    });
    let body = obj.get("body").and_then(|b| {
        let bo = b.object(errs, &DATA_SOURCE)?;
        if let Some(s) = string(&bo, errs, "inline_string") {
            return Some(s.into_bytes());
        }
        let f = bo.get("filename")?;
        let path = f.str(errs)?;
        match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                errs.add(f.path(), format!("cannot read {path:?}: {e}"));
                None
            }
        }
    });
    if let Some(body) = &body {
        if body.len() > 4096 {
            errs.add(
                obj.path(),
                format!(
                    "body is {} bytes; max_direct_response_body_size_bytes is 4096",
                    body.len()
                ),
            );
        }
    }
    Some(RouteAction::Direct {
        status: status?,
        body,
    })
}

pub(super) fn cluster(node: Node, errs: &mut Errors) -> Option<Cluster> {
    let obj = node.object(errs, &CLUSTER)?;
    let name = obj
        .require(errs, "name")
        .and_then(|c| c.str(errs).map(str::to_string));
    // A bad type does not stop the rest of the cluster being checked.
    let discovery = match obj.get("type") {
        Some(t) => match t.enumeration(
            errs,
            &["STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS", "ORIGINAL_DST"],
        ) {
            Some("STATIC") => Some(Discovery::Static),
            Some("STRICT_DNS") => Some(Discovery::StrictDns),
            Some("LOGICAL_DNS") => Some(Discovery::LogicalDns),
            Some("EDS") => Some(Discovery::Eds),
            Some(other) => {
                errs.add(
                    t.path(),
                    format!("cluster type {other} is not supported yet"),
                );
                None
            }
            None => None,
        },
        None => Some(Discovery::Static),
    };
    let lb_policy = super::lb::lb_policy(&obj, errs);
    let connect_timeout = obj
        .get("connect_timeout")
        .and_then(|c| c.duration(errs))
        .unwrap_or(Duration::from_secs(5));
    let dns_refresh_rate = match obj.get("dns_refresh_rate") {
        Some(c) => match c.duration(errs) {
            Some(d) if d < Duration::from_millis(1) => {
                errs.add(c.path(), "expected at least 1ms");
                None
            }
            d => d,
        },
        None => None,
    }
    .unwrap_or(Duration::from_secs(5));
    let dns_lookup_family = match obj.get("dns_lookup_family") {
        Some(c) => {
            match c.enumeration(errs, &["AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"]) {
                Some("V4_ONLY") => DnsLookupFamily::V4Only,
                Some("V6_ONLY") => DnsLookupFamily::V6Only,
                Some("V4_PREFERRED") => DnsLookupFamily::V4Preferred,
                Some("ALL") => DnsLookupFamily::All,
                _ => DnsLookupFamily::Auto,
            }
        }
        None => DnsLookupFamily::Auto,
    };
    let mut endpoints = Vec::new();
    let mut endpoint_policy = EndpointPolicy::default();
    let common_lb = super::lb::common_lb_config(&obj, errs, lb_policy.as_ref());
    let eds = match (obj.get("eds_cluster_config"), discovery) {
        (Some(e), Some(Discovery::Eds)) => eds_source(&e, errs, name.as_deref()),
        (Some(e), _) => {
            errs.add(e.path(), "eds_cluster_config is for a cluster of type EDS");
            None
        }
        (None, Some(Discovery::Eds)) => {
            errs.add(
                &format!("{}.eds_cluster_config", obj.path()),
                "an EDS cluster needs eds_cluster_config (its endpoints' source)",
            );
            None
        }
        (None, _) => None,
    };
    if let Some(la) = obj.get("load_assignment") {
        if discovery == Some(Discovery::Eds) {
            errs.add(
                la.path(),
                "an EDS cluster takes its endpoints from eds_cluster_config, not load_assignment",
            );
        } else if let Some(lao) = la.object(errs, &LOAD_ASSIGNMENT) {
            endpoint_policy = assignment_policy(&lao, errs);
            if let Some(eps) = lao.get("endpoints") {
                let localities = eps.list(errs);
                let count = localities.len();
                for item in localities {
                    let checked_as = discovery.unwrap_or(Discovery::Static);
                    locality_endpoints(item, errs, checked_as, &mut endpoints);
                }
                if discovery == Some(Discovery::LogicalDns) && (count != 1 || endpoints.len() != 1)
                {
                    errs.add(
                        eps.path(),
                        "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
                    );
                }
            }
        }
    }
    let alt_stat_name = string(&obj, errs, "alt_stat_name").filter(|n| !n.is_empty());
    let buffer_limit = match obj.get("per_connection_buffer_limit_bytes") {
        Some(b) => wrapped_uint(&b, errs, u32::MAX as u64).unwrap_or(0) as usize,
        None => DEFAULT_BUFFER_LIMIT,
    };
    let mut max_requests_per_connection = obj
        .get("max_requests_per_connection")
        .and_then(|m| wrapped_uint(&m, errs, u32::MAX as u64));
    let mut common = UpstreamCommon::default();
    if let Some(c) = obj.get("common_http_protocol_options") {
        common = common_upstream_options(&c, errs);
    }
    // The legacy cluster-level field asks for HTTP/2 too.
    let mut upstream_protocol = match obj.get("http2_protocol_options") {
        Some(o) => UpstreamProtocol::Http2(super::http2::options(&o, errs, true)),
        None => UpstreamProtocol::Http1,
    };
    let mut upstream_http = obj
        .get("upstream_http_protocol_options")
        .map(|u| upstream_http_options(&u, errs));
    if let Some(t) = obj.get("typed_extension_protocol_options") {
        let typed = protocol_options(&t, errs);
        common = typed.common.unwrap_or(common);
        upstream_protocol = typed.protocol.unwrap_or(upstream_protocol);
        upstream_http = typed.upstream_http.or(upstream_http);
    }
    let (auto_sni, auto_san_validation) = upstream_http.unwrap_or((None, false));
    max_requests_per_connection = common.max_requests.or(max_requests_per_connection);
    let tcp_keepalive = obj
        .get("upstream_connection_options")
        .and_then(|c| c.object(errs, &CONNECTION_OPTIONS))
        .and_then(|o| o.get("tcp_keepalive"))
        .and_then(|k| tcp_keepalive(&k, errs));
    let mut tls = obj
        .get("transport_socket")
        .and_then(|t| super::tls::upstream(&t, errs));
    if let Some(t) = &mut tls {
        // The certificate is checked against the SNI sent, which auto_sni
        // makes the request's host.
        t.auto_sni_san_validation |= auto_san_validation;
    }
    if matches!(upstream_protocol, UpstreamProtocol::Auto(_)) && tls.is_none() {
        errs.add(
            &format!("{}.typed_extension_protocol_options", node.path()),
            "auto_config picks the protocol by TLS ALPN: the cluster needs a TLS transport_socket",
        );
    }
    let health_check = obj
        .get("health_checks")
        .and_then(|h| super::health_check::health_checks(&h, errs));
    let grpc_checked = health_check
        .as_ref()
        .is_some_and(|h| matches!(h.probe, super::Probe::Grpc(_)));
    if grpc_checked && matches!(upstream_protocol, UpstreamProtocol::Http1) {
        errs.add(
            &format!("{}.health_checks", node.path()),
            format!(
                "{} cluster must support HTTP/2 for gRPC healthchecking",
                name.as_deref().unwrap_or_default()
            ),
        );
    }
    let circuit_breakers = obj
        .get("circuit_breakers")
        .map(|c| super::circuit_breakers::circuit_breakers(&c, errs))
        .unwrap_or_default();
    Some(Cluster {
        path: node.path().to_string(),
        fingerprint: node.fingerprint(&[]),
        name: name?,
        discovery: discovery?,
        alt_stat_name,
        buffer_limit,
        // 0 means no limit, as in Envoy.
        max_requests_per_connection: max_requests_per_connection
            .filter(|&m| m > 0)
            .map(|m| m as u32),
        tcp_keepalive,
        upstream_protocol,
        idle_timeout: common.idle_timeout,
        max_stream_duration: common.max_stream_duration,
        connect_timeout,
        endpoints,
        eds,
        dns_refresh_rate,
        dns_lookup_family,
        lb_policy: lb_policy?,
        tls,
        auto_sni,
        circuit_breakers,
        outlier_detection: obj
            .get("outlier_detection")
            .and_then(|o| super::outlier::outlier_detection(&o, errs)),
        healthy_panic_threshold: common_lb.healthy_panic_threshold,
        locality_weighted: common_lb.locality_weighted,
        zone_aware: common_lb.zone_aware,
        endpoint_policy,
        health_check,
        subsets: obj
            .get("lb_subset_config")
            .and_then(|s| super::subset::subset_config(&s, errs)),
    })
}

#[rustfmt::skip]
static EDS_CLUSTER_CONFIG: Fields = Fields {
    known: &["service_name", "eds_config"],
    unsupported: &[],
};

/// Decodes `eds_cluster_config` of the cluster `name`.
fn eds_source(node: &Node, errs: &mut Errors, name: Option<&str>) -> Option<EdsSource> {
    let obj = node.object(errs, &EDS_CLUSTER_CONFIG)?;
    let service_name = string(&obj, errs, "service_name").filter(|n| !n.is_empty());
    let source = obj
        .require(errs, "eds_config")
        .and_then(|s| super::xds::config_source(&s, errs))?;
    Some(EdsSource {
        service_name: service_name.or(name.map(str::to_string))?,
        source,
    })
}

/// Decodes a `ClusterLoadAssignment` resource of an EDS update.
pub(super) fn assignment(node: Node, errs: &mut Errors) -> Option<Assignment> {
    let obj = node.object(errs, &LOAD_ASSIGNMENT)?;
    let cluster_name = obj.require(errs, "cluster_name").and_then(|n| n.str(errs));
    let mut endpoints = Vec::new();
    for item in obj
        .get("endpoints")
        .map(|e| e.list(errs))
        .unwrap_or_default()
    {
        locality_endpoints(item, errs, Discovery::Static, &mut endpoints);
    }
    Some(Assignment {
        cluster_name: cluster_name?.to_string(),
        fingerprint: node.fingerprint(&[]),
        endpoints,
        policy: assignment_policy(&obj, errs),
    })
}

/// Decodes a `ClusterLoadAssignment`'s `policy`.
fn assignment_policy(obj: &Obj, errs: &mut Errors) -> EndpointPolicy {
    let mut policy = EndpointPolicy::default();
    let Some(p) = obj
        .get("policy")
        .and_then(|p| p.object(errs, &ASSIGNMENT_POLICY))
    else {
        return policy;
    };
    if let Some(f) = p.get("overprovisioning_factor") {
        match wrapped_uint(&f, errs, u32::MAX as u64) {
            Some(0) => errs.add(f.path(), "value must be greater than 0"),
            Some(n) => policy.overprovisioning_factor = n as u32,
            None => {}
        }
    }
    policy.weighted_priority_health = flag(&p, errs, "weighted_priority_health");
    policy
}

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// The `typed_extension_protocol_options` key (and its `@type`) Ringway reads.
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[rustfmt::skip]
static HTTP_PROTOCOL_OPTIONS_FIELDS: Fields = Fields {
    known: &[
        "@type", "explicit_http_config", "use_downstream_protocol_config",
        "common_http_protocol_options", "auto_config", "upstream_http_protocol_options",
    ],
    unsupported: &[
        "http_filters", "header_validation_config",
        "outlier_detection",
    ],
};
#[rustfmt::skip]
static UPSTREAM_HTTP_OPTIONS: Fields = Fields {
    known: &["auto_sni", "auto_san_validation", "override_auto_sni_header"],
    unsupported: &[],
};
#[rustfmt::skip]
static HTTP_CONFIG: Fields = Fields {
    known: &["http_protocol_options", "http2_protocol_options"],
    unsupported: &["http3_protocol_options"],
};
#[rustfmt::skip]
static HTTP1_PROTOCOL_OPTIONS: Fields = Fields {
    known: &[],
    unsupported: &[
        "allow_absolute_url", "accept_http_10", "default_host_for_http_10", "header_key_format",
        "enable_trailers", "allow_chunked_length", "override_stream_error_on_invalid_http_message",
        "send_fully_qualified_url", "use_balsa_parser", "allow_custom_methods",
        "ignore_http_11_upgrade",
    ],
};

/// Decodes a cluster's `typed_extension_protocol_options`: Envoy's
/// `HttpProtocolOptions` choosing the upstream protocol (explicitly, or
/// following the downstream's). Returns its
/// `common_http_protocol_options.max_requests_per_connection` and the
/// protocol it chose.
fn protocol_options(node: &Node, errs: &mut Errors) -> ProtocolOptions {
    let serde_json::Value::Object(map) = node.value() else {
        errs.add(
            node.path(),
            "expected a mapping of extension names to options",
        );
        return ProtocolOptions::default();
    };
    let mut out = ProtocolOptions::default();
    for name in map.keys() {
        let Some(entry) = node.entry(name) else {
            continue;
        };
        if name != HTTP_PROTOCOL_OPTIONS {
            errs.add(
                entry.path(),
                format!("protocol options {name:?} are not supported yet"),
            );
            continue;
        }
        let expected = format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}");
        match type_url(&entry, errs) {
            Some(t) if t == expected => {}
            Some(t) => {
                errs.add(
                    &format!("{}.@type", entry.path()),
                    format!("expected {expected:?}, found {t:?}"),
                );
                continue;
            }
            None => continue,
        }
        let Some(o) = entry.object(errs, &HTTP_PROTOCOL_OPTIONS_FIELDS) else {
            continue;
        };
        let chosen: Vec<&str> = [
            "explicit_http_config",
            "use_downstream_protocol_config",
            "auto_config",
        ]
        .into_iter()
        .filter(|c| o.get(c).is_some())
        .collect();
        if chosen.len() != 1 {
            errs.add(
                entry.path(),
                "expected exactly one of explicit_http_config, use_downstream_protocol_config or auto_config",
            );
        }
        for config in [
            "explicit_http_config",
            "use_downstream_protocol_config",
            "auto_config",
        ] {
            let Some(c) = o.get(config).and_then(|c| c.object(errs, &HTTP_CONFIG)) else {
                continue;
            };
            if let Some(h1) = c.get("http_protocol_options") {
                h1.object(errs, &HTTP1_PROTOCOL_OPTIONS);
            }
            let h2 = c
                .get("http2_protocol_options")
                .map(|o| super::http2::options(&o, errs, true));
            out.protocol = Some(match (config, h2) {
                ("use_downstream_protocol_config", h2) => {
                    UpstreamProtocol::FollowDownstream(h2.unwrap_or_default())
                }
                ("auto_config", h2) => UpstreamProtocol::Auto(h2.unwrap_or_default()),
                (_, Some(h2)) => UpstreamProtocol::Http2(h2),
                (_, None) => {
                    // Envoy requires the explicit choice to name a protocol.
                    if c.get("http_protocol_options").is_none() {
                        errs.add(
                            c.path(),
                            "expected http_protocol_options or http2_protocol_options (the protocol to use)",
                        );
                    }
                    UpstreamProtocol::Http1
                }
            });
        }
        if let Some(c) = o.get("common_http_protocol_options") {
            out.common = Some(common_upstream_options(&c, errs));
        }
        if let Some(u) = o.get("upstream_http_protocol_options") {
            out.upstream_http = Some(upstream_http_options(&u, errs));
        }
    }
    out
}

/// What a cluster's `HttpProtocolOptions` set.
#[derive(Default)]
struct ProtocolOptions {
    common: Option<UpstreamCommon>,
    protocol: Option<UpstreamProtocol>,
    /// `upstream_http_protocol_options`: auto SNI, and whether the
    /// certificate must name it (`auto_san_validation`).
    upstream_http: Option<(Option<AutoSni>, bool)>,
}

/// Decodes `upstream_http_protocol_options`: the auto SNI it asks for,
/// and whether the server certificate must name that server.
fn upstream_http_options(node: &Node, errs: &mut Errors) -> (Option<AutoSni>, bool) {
    let Some(o) = node.object(errs, &UPSTREAM_HTTP_OPTIONS) else {
        return (None, false);
    };
    let flag =
        |name: &str, errs: &mut Errors| o.get(name).and_then(|b| b.bool(errs)).unwrap_or(false);
    let (sni, san) = (flag("auto_sni", errs), flag("auto_san_validation", errs));
    let header = o
        .get("override_auto_sni_header")
        .and_then(|h| h.str(errs))
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase);
    if san && !sni {
        errs.add(
            node.path(),
            "auto_san_validation without auto_sni is not supported (the certificate is checked against the SNI sent)",
        );
    }
    (sni.then_some(AutoSni { header }), san)
}

/// An upstream `common_http_protocol_options`.
struct UpstreamCommon {
    max_requests: Option<u64>,
    idle_timeout: Option<Duration>,
    max_stream_duration: Option<Duration>,
}

impl Default for UpstreamCommon {
    fn default() -> Self {
        UpstreamCommon {
            max_requests: None,
            // Envoy's default: an hour.
            idle_timeout: Some(Duration::from_secs(3600)),
            max_stream_duration: None,
        }
    }
}

/// Decodes an upstream `common_http_protocol_options`:
/// `max_requests_per_connection`, `idle_timeout` and
/// `max_stream_duration` (0: none).
fn common_upstream_options(node: &Node, errs: &mut Errors) -> UpstreamCommon {
    let mut common = UpstreamCommon::default();
    let Some(o) = node.object(errs, &UPSTREAM_PROTOCOL_OPTIONS) else {
        return common;
    };
    if let Some(m) = o.get("max_requests_per_connection") {
        common.max_requests = wrapped_uint(&m, errs, u32::MAX as u64);
    }
    if let Some(t) = o.get("idle_timeout") {
        common.idle_timeout = t.duration(errs).filter(|d| !d.is_zero());
    }
    if let Some(t) = o.get("max_stream_duration") {
        common.max_stream_duration = t.duration(errs).filter(|d| !d.is_zero());
    }
    common
}

#[rustfmt::skip]
static UPSTREAM_PROTOCOL_OPTIONS: Fields = Fields {
    known: &["max_requests_per_connection", "idle_timeout", "max_stream_duration"],
    unsupported: &[
        "max_headers_count", "max_connection_duration",
        "headers_with_underscores_action", "max_response_headers_kb",
    ],
};
#[rustfmt::skip]
static CONNECTION_OPTIONS: Fields = Fields {
    known: &["tcp_keepalive"],
    unsupported: &["set_local_interface_name_on_upstream_connections", "happy_eyeballs_config"],
};
#[rustfmt::skip]
static TCP_KEEPALIVE: Fields = Fields {
    known: &["keepalive_probes", "keepalive_time", "keepalive_interval"],
    unsupported: &[],
};

fn tcp_keepalive(node: &Node, errs: &mut Errors) -> Option<TcpKeepalive> {
    let o = node.object(errs, &TCP_KEEPALIVE)?;
    let field = |errs: &mut Errors, name: &str| {
        o.get(name)
            .and_then(|v| wrapped_uint(&v, errs, u32::MAX as u64))
            .map(|v| v as u32)
    };
    Some(TcpKeepalive {
        probes: field(errs, "keepalive_probes"),
        time: field(errs, "keepalive_time"),
        interval: field(errs, "keepalive_interval"),
    })
}

/// The lowest priority an `endpoints[]` entry may have (Envoy's bound).
const MAX_PRIORITY: u32 = 128;

fn locality_endpoints(
    node: Node,
    errs: &mut Errors,
    discovery: Discovery,
    out: &mut Vec<EndpointConfig>,
) {
    let Some(obj) = node.object(errs, &LOCALITY_ENDPOINTS) else {
        return;
    };
    let locality = obj
        .get("locality")
        .and_then(|l| locality(&l, errs))
        .unwrap_or_default();
    let priority = obj
        .get("priority")
        .and_then(|p| p.uint(errs, u32::MAX as u64))
        .unwrap_or(0) as u32;
    if priority > MAX_PRIORITY {
        errs.add(
            &format!("{}.priority", node.path()),
            format!("value must be less than or equal to {MAX_PRIORITY}"),
        );
    }
    let locality_weight = match obj.get("load_balancing_weight") {
        Some(w) => at_least_one(Some(w), errs, "a weight of at least 1"),
        None => 0,
    };
    let Some(list) = obj.get("lb_endpoints") else {
        return;
    };
    for item in list.list(errs) {
        let child = item;
        let Some(lbe) = child.object(errs, &LB_ENDPOINT) else {
            continue;
        };
        let weight = at_least_one(
            lbe.get("load_balancing_weight"),
            errs,
            "a weight of at least 1",
        );
        let Some(ep) = lbe.require(errs, "endpoint") else {
            continue;
        };
        let Some(epo) = ep.object(errs, &ENDPOINT) else {
            continue;
        };
        let hostname = string(&epo, errs, "hostname").filter(|h| !h.is_empty());
        let lb_metadata = lbe
            .get("metadata")
            .map(|m| super::subset::lb_metadata(&m, errs))
            .unwrap_or_default();
        let Some(addr) = epo.require(errs, "address") else {
            continue;
        };
        let (host, port) = match address(&addr, errs, false) {
            Some((EndpointAddress::Socket { host, port }, _)) => (host, port),
            Some((pipe @ EndpointAddress::Pipe(_), _)) if discovery == Discovery::Static => {
                out.push(EndpointConfig {
                    address: pipe,
                    weight,
                    hostname,
                    locality: locality.clone(),
                    priority,
                    locality_weight,
                    lb_metadata,
                });
                continue;
            }
            Some((EndpointAddress::Pipe(_), _)) => {
                errs.add(
                    &format!("{}.pipe", addr.path()),
                    "a pipe endpoint needs a STATIC cluster (DNS resolves socket_address names)",
                );
                continue;
            }
            None => continue,
        };
        if discovery == Discovery::Static && host.parse::<IpAddr>().is_err() {
            errs.add(
                &format!("{}.socket_address.address", addr.path()),
                format!("a STATIC cluster needs an IP address, found {host:?} (use STRICT_DNS for names)"),
            );
            continue;
        }
        if port == 0 {
            errs.add(
                &format!("{}.socket_address.port_value", addr.path()),
                "expected a port from 1 to 65535",
            );
            continue;
        }
        out.push(EndpointConfig {
            address: EndpointAddress::Socket { host, port },
            weight,
            hostname,
            locality: locality.clone(),
            priority,
            locality_weight,
            lb_metadata,
        });
    }
}
