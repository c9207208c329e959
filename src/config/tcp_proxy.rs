//! Decoding `envoy.filters.network.tcp_proxy`.

use super::bootstrap::at_least_one;
use super::node::{Errors, Fields, Node};
use crate::access_log::AccessLogConfig;
use std::time::Duration;

#[rustfmt::skip]
static TCP_PROXY: Fields = Fields {
    known: &[
        "@type", "stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log",
        "max_connect_attempts", "hash_policy", "max_downstream_connection_duration",
    ],
    unsupported: &[
        "on_demand", "metadata_match", "downstream_idle_timeout", "upstream_idle_timeout",
        "tunneling_config", "access_log_flush_interval", "flush_access_log_on_connected",
        "access_log_options", "backoff_options", "proxy_protocol_tlvs",
        "max_early_data_bytes",
    ],
};
#[rustfmt::skip]
static WEIGHTED: Fields = Fields {
    known: &["clusters"],
    unsupported: &[],
};
#[rustfmt::skip]
static WEIGHTED_CLUSTER: Fields = Fields {
    known: &["name", "weight"],
    unsupported: &["metadata_match"],
};
#[rustfmt::skip]
static HASH_POLICY: Fields = Fields {
    known: &["source_ip"],
    unsupported: &["filter_state"],
};

/// Envoy's default `idle_timeout`.
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

/// `TcpProxy`.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// `stat_prefix`: `tcp.<stat_prefix>.*`.
    pub stat_prefix: String,
    /// `cluster`, or `weighted_clusters` as (name, weight) pairs.
    pub clusters: Vec<(String, u32)>,
    /// YAML path of each entry of `clusters`, for unknown-cluster errors.
    pub cluster_paths: Vec<String>,
    /// `idle_timeout` (1 h; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// `max_downstream_connection_duration`.
    pub max_duration: Option<Duration>,
    /// `max_connect_attempts` (at least 1).
    pub max_connect_attempts: u32,
    /// `hash_policy: [{source_ip: {}}]`: hash the client's address.
    pub hash_source_ip: bool,
    /// `access_log`.
    pub access_log: Vec<AccessLogConfig>,
}

/// Decodes a `TcpProxy` typed config.
pub(super) fn tcp_proxy(node: &Node, errs: &mut Errors) -> Option<TcpProxy> {
    let obj = node.object(errs, &TCP_PROXY)?;
    let stat_prefix = obj.non_empty_str(errs, "stat_prefix")?;
    let mut clusters = Vec::new();
    let mut cluster_paths = Vec::new();
    match (obj.get("cluster"), obj.get("weighted_clusters")) {
        (Some(c), None) => {
            clusters.extend(c.str(errs).map(|s| (s.to_string(), 1)));
            cluster_paths.push(c.path().to_string());
        }
        (None, Some(w)) => {
            let list = w
                .object(errs, &WEIGHTED)
                .and_then(|o| o.require(errs, "clusters"));
            for item in list.map(|l| l.list(errs)).unwrap_or_default() {
                let Some(o) = item.object(errs, &WEIGHTED_CLUSTER) else {
                    continue;
                };
                let name = o.require(errs, "name").and_then(|n| n.str(errs));
                let weight = o
                    .require(errs, "weight")
                    .and_then(|n| n.uint(errs, u32::MAX as u64));
                if let (Some(name), Some(weight)) = (name, weight) {
                    if weight == 0 {
                        errs.add(
                            &format!("{}.weight", item.path()),
                            "expected a weight of at least 1",
                        );
                    }
                    clusters.push((name.to_string(), weight as u32));
                    cluster_paths.push(format!("{}.name", item.path()));
                }
            }
            if clusters.is_empty() {
                errs.add(w.path(), "expected at least one cluster");
            }
        }
        (Some(_), Some(_)) => errs.add(
            node.path(),
            "expected one of cluster or weighted_clusters, found both",
        ),
        (None, None) => errs.add(node.path(), "expected one of cluster or weighted_clusters"),
    }
    let idle_timeout = match obj.get("idle_timeout") {
        Some(d) => d.duration(errs).filter(|d| !d.is_zero()),
        None => Some(DEFAULT_IDLE),
    };
    let max_duration = obj
        .get("max_downstream_connection_duration")
        .and_then(|d| d.duration(errs))
        .filter(|d| !d.is_zero());
    let max_connect_attempts = at_least_one(obj.get("max_connect_attempts"), errs, "at least 1");
    let mut hash_source_ip = false;
    for item in obj
        .get("hash_policy")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        if let Some(o) = item.object(errs, &HASH_POLICY) {
            hash_source_ip |= o.get("source_ip").is_some();
        }
    }
    let access_log = super::access_log::access_logs(&obj, errs);
    Some(TcpProxy {
        stat_prefix,
        clusters,
        cluster_paths,
        idle_timeout,
        max_duration,
        max_connect_attempts,
        hash_source_ip,
        access_log,
    })
}
