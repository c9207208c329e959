//! Decoding listeners: their filter chains with `filter_chain_match`,
//! `default_filter_chain`, listener filters, transport sockets and
//! network filters.

use super::bootstrap::{
    any_bool, bind_address, hcm, socket_options, type_url, wrapped_uint, HttpConnectionManager,
    DEFAULT_BUFFER_LIMIT,
};
use super::connection_filters::{connection_filter, ConnectionFilter};
use super::node::{Errors, Fields, Node, Obj};
use super::tcp_proxy::{tcp_proxy, TcpProxy};
use super::tls::{self, DownstreamTls};
use super::udp_proxy::{udp_proxy, UdpProxy, UDP_PROXY_TYPE};
use crate::net::Address;
use std::net::IpAddr;
use std::time::Duration;

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const HTTP_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
const PROXY_PROTOCOL_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol";
const ORIGINAL_DST_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst";

#[rustfmt::skip]
static LISTENER: Fields = Fields {
    known: &[
        "name", "address", "filter_chains", "per_connection_buffer_limit_bytes",
        "traffic_direction", "enable_reuse_port", "socket_options", "default_filter_chain",
        "listener_filters", "listener_filters_timeout", "continue_on_listener_filters_timeout",
        "ignore_global_conn_limit", "bypass_overload_manager",
    ],
    unsupported: &[
        "additional_addresses", "stat_prefix", "filter_chain_matcher", "use_original_dst",
        "metadata", "deprecated_v1", "drain_type", "transparent", "freebind",
        "tcp_fast_open_queue_length", "udp_listener_config", "api_listener",
        "connection_balance_config", "reuse_port", "access_log",
        "tcp_backlog_size", "max_connections_to_accept_per_socket_event", "bind_to_port",
        "internal_listener", "enable_mptcp",
    ],
};
#[rustfmt::skip]
static ORIGINAL_DST: Fields = Fields {
    known: &["@type"],
    unsupported: &["traffic_direction"],
};
#[rustfmt::skip]
static FILTER_CHAIN: Fields = Fields {
    known: &["filters", "name", "filter_chain_match", "transport_socket"],
    unsupported: &["use_proxy_proto", "metadata", "transport_socket_connect_timeout"],
};
#[rustfmt::skip]
static CHAIN_MATCH: Fields = Fields {
    known: &[
        "destination_port", "prefix_ranges", "server_names", "transport_protocol",
        "application_protocols", "source_type", "source_prefix_ranges", "source_ports",
    ],
    unsupported: &["direct_source_prefix_ranges", "address_suffix", "suffix_len"],
};
#[rustfmt::skip]
static CIDR_RANGE: Fields = Fields {
    known: &["address_prefix", "prefix_len"],
    unsupported: &[],
};
#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &["config_discovery"],
};
#[rustfmt::skip]
static LISTENER_FILTER: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &["config_discovery", "filter_disabled"],
};
#[rustfmt::skip]
static TLS_INSPECTOR: Fields = Fields {
    known: &["@type"],
    unsupported: &[
        "enable_ja3_fingerprinting", "enable_ja4_fingerprinting", "initial_read_buffer_size",
        "max_client_hello_size",
    ],
};
#[rustfmt::skip]
static PROXY_PROTOCOL: Fields = Fields {
    known: &["@type", "allow_requests_without_proxy_protocol", "disallowed_versions", "stat_prefix"],
    unsupported: &["rules", "pass_through_tlvs"],
};
#[rustfmt::skip]
static HTTP_INSPECTOR: Fields = Fields {
    known: &["@type"],
    unsupported: &[],
};

/// Envoy's default `listener_filters_timeout`.
const DEFAULT_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

/// A TCP listener: its sockets, listener filters and filter chains.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its YAML path (`static_resources.listeners[i]`, or `resources[i]`
    /// of an LDS update).
    pub path: String,
    /// A digest of its whole configuration.
    pub fingerprint: u64,
    /// A digest of its own fields, the filter chains left out: an update
    /// that keeps it changes the listener in place.
    pub shell: u64,
    /// `name` (Envoy generates one when absent).
    pub name: String,
    /// The bound address.
    pub address: Address,
    /// `filter_chains`.
    pub chains: Vec<FilterChain>,
    /// `default_filter_chain`: serves connections no chain matches.
    pub default_chain: Option<FilterChain>,
    /// `listener_filters` and their timeout.
    pub filters: ListenerFilters,
    /// How its sockets are made.
    pub socket: super::ListenerSocket,
    /// A UDP listener's `udp_proxy` (it then has no filter chains).
    pub udp: Option<UdpProxy>,
    /// Whether its connections count against (and are refused past)
    /// `overload_manager`'s global downstream connection limit: not with
    /// `ignore_global_conn_limit` or `bypass_overload_manager`, as in Envoy.
    pub global_limit: bool,
}

/// The listener filters Ringway runs, in Envoy's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerFilters {
    /// `envoy.filters.listener.tls_inspector`: SNI, ALPN and "tls".
    pub tls_inspector: bool,
    /// `envoy.filters.listener.http_inspector`: "http/1.1" or "h2c".
    pub http_inspector: bool,
    /// `envoy.filters.listener.proxy_protocol` (run first, after
    /// `original_dst`).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `envoy.filters.listener.original_dst`: the connection's local
    /// address is where it was going before a NAT redirect.
    pub original_dst: bool,
    /// `listener_filters_timeout` (15 s; 0 disables).
    pub timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout`.
    pub continue_on_timeout: bool,
}

/// `envoy.filters.listener.proxy_protocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// `allow_requests_without_proxy_protocol`.
    pub allow_without: bool,
    /// `disallowed_versions`: 1 and/or 2.
    pub disallowed: Vec<u8>,
    /// `stat_prefix`: stats are `proxy_proto.<stat_prefix>.*`.
    pub stat_prefix: String,
}

/// One filter chain.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// Its YAML path (`static_resources.listeners[i].filter_chains[j]`).
    pub path: String,
    /// `name`.
    pub name: String,
    /// `filter_chain_match`.
    pub matcher: ChainMatch,
    /// `transport_socket` when it is TLS.
    pub tls: Option<DownstreamTls>,
    /// The network filters before the terminal one, in order.
    pub connection_filters: Vec<ConnectionFilter>,
    /// The terminal network filter.
    pub filter: NetworkFilter,
    /// The YAML path of its `typed_config`.
    pub filter_path: String,
    /// A digest of the chain's configuration and of its listener's own
    /// fields (all but the chains): equal when an update leaves what serves
    /// the chain's connections as it was.
    pub fingerprint: u64,
}

/// The network filter that serves a chain's connections.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// `envoy.filters.network.http_connection_manager`.
    Http(Box<HttpConnectionManager>),
    /// `envoy.filters.network.tcp_proxy`.
    Tcp(TcpProxy),
}

/// Which clients a `source_type` admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceType {
    /// `ANY`.
    #[default]
    Any,
    /// `SAME_IP_OR_LOOPBACK`.
    Local,
    /// `EXTERNAL`.
    External,
}

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The prefix's address.
    pub ip: IpAddr,
    /// Its length in bits.
    pub len: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `filter_chain_match`: empty fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    /// `destination_port`.
    pub destination_port: Option<u16>,
    /// `prefix_ranges` (destination address).
    pub prefix_ranges: Vec<Cidr>,
    /// `server_names`, lower-cased; `*.` wildcards allowed.
    pub server_names: Vec<String>,
    /// `transport_protocol` (`raw_buffer`, `tls`).
    pub transport_protocol: Option<String>,
    /// `application_protocols`.
    pub application_protocols: Vec<String>,
    /// `source_type`.
    pub source_type: SourceType,
    /// `source_prefix_ranges`.
    pub source_prefix_ranges: Vec<Cidr>,
    /// `source_ports`.
    pub source_ports: Vec<u16>,
}

pub(super) fn listener(node: Node, errs: &mut Errors, index: usize) -> Option<Listener> {
    let obj = node.object(errs, &LISTENER)?;
    let name = obj
        .get("name")
        .and_then(|n| n.str(errs))
        .map(str::to_string);
    let address = obj
        .require(errs, "address")
        .and_then(|a| bind_address(&a, errs, "a listener", true));
    if is_udp(&obj) {
        let listener = udp_listener(&obj, errs, index, name, address?);
        return listener.map(|l| Listener {
            fingerprint: node.fingerprint(&[]),
            shell: node.fingerprint(&[]),
            ..l
        });
    }
    let chains: Vec<_> = obj
        .get("filter_chains")
        .map(|c| c.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| filter_chain(c, errs))
        .collect();
    let default_chain = obj
        .get("default_filter_chain")
        .and_then(|c| filter_chain(c, errs));
    if obj.get("filter_chains").is_none() && default_chain.is_none() {
        errs.add(
            &format!("{}.filter_chains", obj.path()),
            "expected at least one filter chain (or a default_filter_chain)",
        );
    }
    check_distinct(&chains, &obj, errs);
    let filters = listener_filters(&obj, errs);
    let socket = listener_socket(&obj, errs, address.as_ref().map_or(0, |a| a.1));
    let global_limit = global_limit(&obj, errs);
    let (address, _) = address?;
    // A chain's connections are served as before only while the chain and
    // everything around it (address, socket, listener filters) are.
    let shell = node.fingerprint(&[
        "filter_chains",
        "filterChains",
        "default_filter_chain",
        "defaultFilterChain",
    ]);
    let (mut chains, mut default_chain) = (chains, default_chain);
    for chain in chains.iter_mut().chain(default_chain.as_mut()) {
        chain.fingerprint = xxhash_rust::xxh64::xxh64(
            &[shell.to_le_bytes(), chain.fingerprint.to_le_bytes()].concat(),
            0,
        );
    }
    Some(Listener {
        path: node.path().to_string(),
        fingerprint: node.fingerprint(&[]),
        shell,
        name: name.unwrap_or_else(|| format!("listener_{index}_{address}")),
        address,
        chains,
        default_chain,
        filters,
        socket,
        udp: None,
        global_limit,
    })
}

/// Whether a listener is subject to the global connection limit.
fn global_limit(obj: &Obj, errs: &mut Errors) -> bool {
    let ignore = any_bool(obj.get("ignore_global_conn_limit"), errs, false);
    let bypass = any_bool(obj.get("bypass_overload_manager"), errs, false);
    !(ignore || bypass)
}

impl Listener {
    /// The `rds` sources of its connection managers, each with the
    /// manager's `stat_prefix`.
    pub fn rds_sources(&self) -> impl Iterator<Item = (&str, &super::RdsSource)> {
        let chains = self.chains.iter().chain(self.default_chain.as_ref());
        chains.filter_map(|c| match &c.filter {
            NetworkFilter::Http(hcm) => match &hcm.routes {
                super::RouteSource::Rds(r) => Some((hcm.stat_prefix.as_str(), r)),
                super::RouteSource::Inline(_) => None,
            },
            NetworkFilter::Tcp(_) => None,
        })
    }

    /// The SDS secrets its filter chains' TLS contexts read.
    pub fn secret_sources(&self) -> impl Iterator<Item = &super::SecretSource> {
        let chains = self.chains.iter().chain(self.default_chain.as_ref());
        chains.flat_map(|c| c.tls.iter().flat_map(DownstreamTls::secret_sources))
    }
}

/// Whether the listener's `socket_address.protocol` is UDP.
fn is_udp(obj: &Obj) -> bool {
    obj.get("address")
        .and_then(|a| a.value().pointer("/socket_address/protocol").cloned())
        .and_then(|p| p.as_str().map(|p| p.eq_ignore_ascii_case("UDP")))
        .unwrap_or(false)
}

/// A UDP listener: one `udp_proxy` listener filter and no filter chains.
fn udp_listener(
    obj: &Obj,
    errs: &mut Errors,
    index: usize,
    name: Option<String>,
    (address, _): (Address, u32),
) -> Option<Listener> {
    if obj
        .get("filter_chains")
        .is_some_and(|c| !c.list(errs).is_empty())
    {
        errs.add(
            &format!("{}.filter_chains", obj.path()),
            "a UDP listener takes no filter chains (its udp_proxy is a listener filter)",
        );
    }
    let mut udp = None;
    let filters = obj
        .get("listener_filters")
        .map(|l| l.list(errs))
        .unwrap_or_default();
    for item in filters {
        let Some(f) = item.object(errs, &LISTENER_FILTER) else {
            continue;
        };
        let Some(tc) = f.require(errs, "typed_config") else {
            continue;
        };
        match type_url(&tc, errs) {
            Some(UDP_PROXY_TYPE) if udp.is_none() => udp = udp_proxy(&tc, errs),
            Some(other) => errs.add(
                &format!("{}.@type", tc.path()),
                format!("a UDP listener takes one udp_proxy listener filter, not {other:?}"),
            ),
            None => {}
        }
    }
    if udp.is_none() {
        errs.add(
            &format!("{}.listener_filters", obj.path()),
            "a UDP listener needs an envoy.filters.udp_listener.udp_proxy",
        );
    }
    Some(Listener {
        path: obj.path().to_string(),
        fingerprint: 0,
        shell: 0,
        name: name.unwrap_or_else(|| format!("listener_{index}_{address}")),
        address,
        chains: Vec::new(),
        default_chain: None,
        filters: ListenerFilters::default(),
        socket: listener_socket(obj, errs, 0),
        udp: Some(udp?),
        global_limit: global_limit(obj, errs),
    })
}

fn listener_socket(obj: &Obj, errs: &mut Errors, pipe_mode: u32) -> super::ListenerSocket {
    super::ListenerSocket {
        reuse_port: any_bool(obj.get("enable_reuse_port"), errs, true),
        pipe_mode,
        options: socket_options(obj, errs),
        buffer_limit: obj
            .get("per_connection_buffer_limit_bytes")
            .map(|b| wrapped_uint(&b, errs, u32::MAX as u64).unwrap_or(0) as usize)
            .unwrap_or(DEFAULT_BUFFER_LIMIT),
        traffic_direction: obj
            .get("traffic_direction")
            .and_then(|t| t.enumeration(errs, &["UNSPECIFIED", "INBOUND", "OUTBOUND"]))
            .unwrap_or("UNSPECIFIED"),
    }
}

/// Envoy refuses two chains that match the same connections.
fn check_distinct(chains: &[FilterChain], obj: &Obj, errs: &mut Errors) {
    for (i, chain) in chains.iter().enumerate() {
        if chains[..i]
            .iter()
            .any(|c| same_rules(&c.matcher, &chain.matcher))
        {
            errs.add(
                &format!("{}.filter_chains", obj.path()),
                format!(
                    "multiple filter chains with the same matching rules are defined (filter_chains[{i}])"
                ),
            );
            return;
        }
    }
}

/// Whether two matchers list the same values, in any order.
fn same_rules(a: &ChainMatch, b: &ChainMatch) -> bool {
    fn same<T: Ord + Clone>(x: &[T], y: &[T]) -> bool {
        let (mut x, mut y) = (x.to_vec(), y.to_vec());
        x.sort();
        x.dedup();
        y.sort();
        y.dedup();
        x == y
    }
    let cidrs = |v: &[Cidr]| -> Vec<(IpAddr, u8)> { v.iter().map(|c| (c.ip, c.len)).collect() };
    a.destination_port == b.destination_port
        && same(&cidrs(&a.prefix_ranges), &cidrs(&b.prefix_ranges))
        && same(&a.server_names, &b.server_names)
        && a.transport_protocol == b.transport_protocol
        && same(&a.application_protocols, &b.application_protocols)
        && a.source_type == b.source_type
        && same(
            &cidrs(&a.source_prefix_ranges),
            &cidrs(&b.source_prefix_ranges),
        )
        && same(&a.source_ports, &b.source_ports)
}

fn listener_filters(obj: &Obj, errs: &mut Errors) -> ListenerFilters {
    let mut out = ListenerFilters {
        timeout: Some(DEFAULT_FILTERS_TIMEOUT),
        ..ListenerFilters::default()
    };
    for item in obj
        .get("listener_filters")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(f) = item.object(errs, &LISTENER_FILTER) else {
            continue;
        };
        let Some(tc) = f.require(errs, "typed_config") else {
            continue;
        };
        match type_url(&tc, errs) {
            Some(TLS_INSPECTOR_TYPE) => {
                tc.object(errs, &TLS_INSPECTOR);
                out.tls_inspector = true;
            }
            Some(HTTP_INSPECTOR_TYPE) => {
                tc.object(errs, &HTTP_INSPECTOR);
                out.http_inspector = true;
            }
            Some(PROXY_PROTOCOL_TYPE) => out.proxy_protocol = proxy_protocol(&tc, errs),
            Some(ORIGINAL_DST_TYPE) => {
                tc.object(errs, &ORIGINAL_DST);
                out.original_dst = true;
            }
            Some(other) => errs.add(
                &format!("{}.@type", tc.path()),
                format!("listener filter {other:?} is not supported yet (tls_inspector, http_inspector, proxy_protocol and original_dst are)"),
            ),
            None => {}
        }
    }
    if let Some(t) = obj.get("listener_filters_timeout") {
        out.timeout = t.duration(errs).filter(|d| !d.is_zero());
    }
    out.continue_on_timeout = obj
        .get("continue_on_listener_filters_timeout")
        .and_then(|b| b.bool(errs))
        .unwrap_or(false);
    out
}

fn proxy_protocol(node: &Node, errs: &mut Errors) -> Option<ProxyProtocol> {
    let obj = node.object(errs, &PROXY_PROTOCOL)?;
    let mut out = ProxyProtocol {
        allow_without: obj
            .get("allow_requests_without_proxy_protocol")
            .and_then(|b| b.bool(errs))
            .unwrap_or(false),
        stat_prefix: obj
            .get("stat_prefix")
            .and_then(|p| p.str(errs))
            .unwrap_or("")
            .to_string(),
        ..ProxyProtocol::default()
    };
    for v in obj
        .get("disallowed_versions")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        match v.enumeration(errs, &["V1", "V2"]) {
            Some("V1") => out.disallowed.push(1),
            Some(_) => out.disallowed.push(2),
            None => {}
        }
    }
    Some(out)
}

fn filter_chain(node: Node, errs: &mut Errors) -> Option<FilterChain> {
    let obj = node.object(errs, &FILTER_CHAIN)?;
    let name = obj.get("name").and_then(|n| n.str(errs)).unwrap_or("");
    let matcher = obj
        .get("filter_chain_match")
        .and_then(|m| chain_match(&m, errs))
        .unwrap_or_default();
    let tls = obj
        .get("transport_socket")
        .and_then(|t| tls::downstream(&t, errs));
    let list = obj.require(errs, "filters")?;
    let filters = list.list(errs);
    if filters.is_empty() {
        errs.add(
            list.path(),
            "expected a network filter (http_connection_manager or tcp_proxy)",
        );
    }
    // Every filter is checked, so that each unsupported one is named.
    let mut found: Option<NetworkFilter> = None;
    let mut connection_filters = Vec::new();
    let mut filter_path = String::new();
    let last = filters.len().saturating_sub(1);
    for (i, filter) in filters.into_iter().enumerate() {
        let path = filter.path().to_string();
        match network_filter(filter, errs) {
            Some(Filter::Terminal(f)) => {
                filter_path = format!("{path}.typed_config");
                if i != last {
                    errs.add(
                        &path,
                        "a terminal filter (http_connection_manager or tcp_proxy) must be the last filter",
                    );
                }
                found = Some(f);
            }
            Some(Filter::OnConnection(f)) => {
                if i == last {
                    errs.add(
                        &path,
                        "the last filter must be a terminal one (http_connection_manager or tcp_proxy)",
                    );
                }
                connection_filters.push(f);
            }
            None => {}
        }
    }
    Some(FilterChain {
        path: node.path().to_string(),
        name: name.to_string(),
        matcher,
        tls,
        connection_filters,
        filter: found?,
        filter_path,
        fingerprint: node.fingerprint(&[]),
    })
}

/// A network filter as a chain holds it.
enum Filter {
    /// Runs on each new connection, before the terminal filter.
    OnConnection(ConnectionFilter),
    /// Serves the connection.
    Terminal(NetworkFilter),
}

/// One network filter, or errors for a filter Ringway does not run.
fn network_filter(filter: Node, errs: &mut Errors) -> Option<Filter> {
    let fobj = filter.object(errs, &FILTER)?;
    let name = fobj
        .get("name")
        .and_then(|n| n.str(errs))
        .unwrap_or_default();
    let Some(tc) = fobj.get("typed_config") else {
        errs.add(
            &format!("{}.typed_config", filter.path()),
            format!("required field is missing (network filter {name:?})"),
        );
        return None;
    };
    let type_url = type_url(&tc, errs)?;
    if let Some(f) = connection_filter(type_url, &tc, errs) {
        return f.map(Filter::OnConnection);
    }
    match type_url {
        HCM_TYPE => hcm(tc, errs).map(|h| Filter::Terminal(NetworkFilter::Http(Box::new(h)))),
        TCP_PROXY_TYPE => tcp_proxy(&tc, errs).map(|t| Filter::Terminal(NetworkFilter::Tcp(t))),
        other => {
            errs.add(
                &format!("{}.@type", tc.path()),
                format!("network filter {other:?} is not supported yet (http_connection_manager, tcp_proxy, connection_limit and local_ratelimit are)"),
            );
            None
        }
    }
}

fn chain_match(node: &Node, errs: &mut Errors) -> Option<ChainMatch> {
    let obj = node.object(errs, &CHAIN_MATCH)?;
    let mut m = ChainMatch {
        destination_port: obj
            .get("destination_port")
            .and_then(|p| wrapped_uint(&p, errs, u16::MAX as u64))
            .map(|p| p as u16),
        prefix_ranges: cidrs(&obj, errs, "prefix_ranges"),
        source_prefix_ranges: cidrs(&obj, errs, "source_prefix_ranges"),
        ..ChainMatch::default()
    };
    for item in obj
        .get("server_names")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(name) = item.str(errs) else { continue };
        let wildcard_ok = name.starts_with("*.") && !name[1..].contains('*');
        if name.contains('*') && !wildcard_ok {
            errs.add(
                item.path(),
                format!("partial wildcards are not supported in server_names ({name:?})"),
            );
            continue;
        }
        m.server_names.push(name.to_ascii_lowercase());
    }
    m.transport_protocol = obj
        .get("transport_protocol")
        .and_then(|t| t.str(errs))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    for item in obj
        .get("application_protocols")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        m.application_protocols
            .extend(item.str(errs).map(str::to_string));
    }
    if let Some(t) = obj.get("source_type") {
        m.source_type = match t.enumeration(errs, &["ANY", "SAME_IP_OR_LOOPBACK", "EXTERNAL"]) {
            Some("SAME_IP_OR_LOOPBACK") => SourceType::Local,
            Some("EXTERNAL") => SourceType::External,
            _ => SourceType::Any,
        };
    }
    for item in obj
        .get("source_ports")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        if let Some(p) = item.uint(errs, u16::MAX as u64) {
            m.source_ports.push(p as u16);
        }
    }
    Some(m)
}

fn cidrs(obj: &Obj, errs: &mut Errors, name: &str) -> Vec<Cidr> {
    obj.get(name)
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|range| cidr(&range, errs))
        .collect()
}

/// Decodes a `CidrRange`; Envoy caps `prefix_len` at the address's length.
pub(super) fn cidr(node: &Node, errs: &mut Errors) -> Option<Cidr> {
    let r = node.object(errs, &CIDR_RANGE)?;
    let prefix_node = r.require(errs, "address_prefix")?;
    let Ok(ip) = prefix_node.str(errs)?.parse::<IpAddr>() else {
        errs.add(prefix_node.path(), "expected an IP address");
        return None;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match r.get("prefix_len") {
        Some(l) => wrapped_uint(&l, errs, 128)?.min(max) as u8,
        None => 0,
    };
    Some(Cidr { ip, len })
}
