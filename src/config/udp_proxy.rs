//! Decoding `envoy.filters.udp_listener.udp_proxy`, the listener filter
//! of a UDP listener.

use super::bootstrap::type_url;
use super::node::{Errors, Fields, Node};
use std::time::Duration;

pub(super) const UDP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig";
const ROUTE_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route";

#[rustfmt::skip]
static UDP_PROXY: Fields = Fields {
    known: &["@type", "stat_prefix", "cluster", "matcher", "idle_timeout", "hash_policies", "use_original_src_ip"],
    unsupported: &[
        "access_log", "proxy_access_log", "use_per_packet_load_balancing", "upstream_socket_config",
        "session_filters", "tunneling_config", "access_log_options", "proxy_access_log_options",
    ],
};
#[rustfmt::skip]
static MATCHER: Fields = Fields {
    known: &["on_no_match"],
    unsupported: &["matcher_list", "matcher_tree"],
};
#[rustfmt::skip]
static ON_NO_MATCH: Fields = Fields {
    known: &["action"],
    unsupported: &["matcher", "keep_matching"],
};
#[rustfmt::skip]
static ACTION: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &[],
};
#[rustfmt::skip]
static ROUTE: Fields = Fields {
    known: &["@type", "cluster"],
    unsupported: &[],
};
#[rustfmt::skip]
static HASH_POLICY: Fields = Fields {
    known: &["source_ip"],
    unsupported: &["key", "filter_state_key"],
};

/// Envoy's default `idle_timeout`.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// `UdpProxyConfig`.
#[derive(Debug, Clone)]
pub struct UdpProxy {
    /// `stat_prefix`: `udp.<stat_prefix>.*`.
    pub stat_prefix: String,
    /// `cluster`, or the route of `matcher.on_no_match`.
    pub cluster: String,
    /// `idle_timeout` (1 min; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// `hash_policies: [{source_ip: true}]`.
    pub hash_source_ip: bool,
}

/// Decodes a listener filter's `typed_config` as a UDP proxy.
pub(super) fn udp_proxy(node: &Node, errs: &mut Errors) -> Option<UdpProxy> {
    let obj = node.object(errs, &UDP_PROXY)?;
    let stat_prefix = obj.require(errs, "stat_prefix")?.str(errs)?.to_string();
    if let Some(o) = obj.get("use_original_src_ip") {
        if o.bool(errs) == Some(true) {
            errs.add(o.path(), "use_original_src_ip is not supported yet");
        }
    }
    let route = match (obj.get("cluster"), obj.get("matcher")) {
        (Some(c), None) => c.str(errs).map(str::to_string),
        (None, Some(m)) => matcher_route(&m, errs),
        (Some(_), Some(_)) => {
            errs.add(
                node.path(),
                "expected one of cluster or matcher, found both",
            );
            None
        }
        (None, None) => {
            errs.add(node.path(), "expected one of cluster or matcher");
            None
        }
    };
    let idle_timeout = match obj.get("idle_timeout") {
        Some(d) => d.duration(errs).filter(|d| !d.is_zero()),
        None => Some(DEFAULT_IDLE),
    };
    let mut hash_source_ip = false;
    for item in obj
        .get("hash_policies")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        if let Some(h) = item.object(errs, &HASH_POLICY) {
            hash_source_ip |= h.get("source_ip").and_then(|b| b.bool(errs)) == Some(true);
        }
    }
    Some(UdpProxy {
        stat_prefix,
        cluster: route?,
        idle_timeout,
        hash_source_ip,
    })
}

/// The cluster of `matcher.on_no_match.action`, a `Route`.
fn matcher_route(node: &Node, errs: &mut Errors) -> Option<String> {
    let m = node.object(errs, &MATCHER)?;
    let on_no_match = m.require(errs, "on_no_match")?;
    let action = on_no_match
        .object(errs, &ON_NO_MATCH)?
        .require(errs, "action")?;
    let tc = action
        .object(errs, &ACTION)?
        .require(errs, "typed_config")?;
    if type_url(&tc, errs)? != ROUTE_TYPE {
        errs.add(
            &format!("{}.@type", tc.path()),
            format!("expected a {ROUTE_TYPE}"),
        );
        return None;
    }
    let cluster = tc.object(errs, &ROUTE)?.require(errs, "cluster")?;
    cluster.str(errs).map(str::to_string)
}
