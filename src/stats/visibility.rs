//! Which stats exist: `stats_config.stats_matcher`, and with
//! `deferred_stat_options` a cluster's traffic stats only from its first
//! use. Envoy never creates the stats these leave out; Ringway's rows cost
//! nothing to keep, so they are left out where stats are read.

use crate::config::StatsOptions;
use std::collections::HashSet;
use std::sync::Mutex;

/// Names of Envoy's cluster traffic stats (`ClusterTrafficStats`) that
/// are not prefixed families below.
const TRAFFIC_STATS: [&str; 5] = [
    "bind_errors",
    "original_dst_host_invalid",
    "retry_or_shadow_abandoned",
    "upstream_http3_broken",
    "upstream_queue_overloaded",
];
/// Families of Envoy's cluster traffic stats.
const TRAFFIC_FAMILIES: [&str; 4] = [
    "upstream_cx_",
    "upstream_rq_",
    "upstream_flow_control_",
    "upstream_internal_redirect_",
];

/// Whether `stat` (a cluster stat's name after `cluster.<name>.`) is one of
/// the traffic stats whose creation Envoy can defer.
fn is_traffic_stat(stat: &str) -> bool {
    TRAFFIC_STATS.contains(&stat) || TRAFFIC_FAMILIES.iter().any(|f| stat.starts_with(f))
}

/// The configured visibility, and the clusters seen carrying traffic.
#[derive(Default)]
pub struct Visibility {
    options: StatsOptions,
    /// `cluster.<name>.` prefixes whose traffic stats were non-zero once
    /// (they stay shown after `/reset_counters`, as Envoy keeps a stat).
    used_clusters: Mutex<HashSet<String>>,
}

impl Visibility {
    /// Visibility as `options` configure it.
    pub fn new(options: StatsOptions) -> Self {
        Visibility {
            options,
            used_clusters: Mutex::default(),
        }
    }

    /// Whether the matcher lets stat `name` exist.
    pub fn accepts(&self, name: &str) -> bool {
        self.options
            .matcher
            .as_ref()
            .is_none_or(|m| m.accepts(name))
    }

    /// The cluster prefix (`cluster.<name>.`) of a traffic stat, when
    /// `name` is one and `is_cluster` names that prefix a cluster.
    fn traffic_cluster<'n>(name: &'n str, is_cluster: &impl Fn(&str) -> bool) -> Option<&'n str> {
        let dot = name.rfind('.')?;
        let (prefix, stat) = (&name[..=dot], &name[dot + 1..]);
        (is_traffic_stat(stat) && is_cluster(prefix)).then_some(prefix)
    }

    /// Notes that stat `name`, a cluster's traffic stat, has been written
    /// (`raw`: its value before any reset).
    pub fn note(&self, name: &str, raw: u64, is_cluster: &impl Fn(&str) -> bool) {
        if !self.options.deferred || raw == 0 {
            return;
        }
        if let Some(prefix) = Self::traffic_cluster(name, is_cluster) {
            let mut used = super::lock(&self.used_clusters);
            if !used.contains(prefix) {
                used.insert(prefix.to_string());
            }
        }
    }

    /// Whether stat `name` is shown: the matcher accepts it and, when
    /// creation is deferred, it is not a traffic stat of an unused cluster.
    pub fn shows(&self, name: &str, is_cluster: &impl Fn(&str) -> bool) -> bool {
        if !self.accepts(name) {
            return false;
        }
        if !self.options.deferred {
            return true;
        }
        Self::traffic_cluster(name, is_cluster)
            .is_none_or(|prefix| super::lock(&self.used_clusters).contains(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_stats_of_unused_clusters_are_deferred() {
        let v = Visibility::new(StatsOptions {
            deferred: true,
            ..Default::default()
        });
        let is_cluster = |p: &str| p == "cluster.a.b." || p == "cluster.c.";
        assert!(!v.shows("cluster.a.b.upstream_rq_total", &is_cluster));
        assert!(v.shows("cluster.a.b.membership_total", &is_cluster));
        assert!(v.shows("cluster.a.b.retry.upstream_rq_503", &is_cluster));
        v.note("cluster.a.b.upstream_cx_total", 0, &is_cluster);
        assert!(!v.shows("cluster.a.b.bind_errors", &is_cluster));
        v.note("cluster.a.b.upstream_cx_total", 1, &is_cluster);
        assert!(v.shows("cluster.a.b.bind_errors", &is_cluster));
        assert!(!v.shows("cluster.c.upstream_cx_connect_ms", &is_cluster));
    }
}
