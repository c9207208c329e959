//! `envoy.filters.http.health_check`'s config.

use crate::config::node::{Errors, Fields, Node};
use crate::config::HeaderMatcher;

/// Its `typed_config` type.
pub const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck";

#[rustfmt::skip]
static HEALTH_CHECK: Fields = Fields {
    known: &["@type", "pass_through_mode", "headers", "cluster_min_healthy_percentages"],
    unsupported: &["cache_time"],
};
#[rustfmt::skip]
static PERCENT: Fields = Fields { known: &["value"], unsupported: &[] };

/// The health-check filter: requests matching `headers` are health checks,
/// answered here (or, in pass-through mode, by the upstream unless this
/// proxy is failing its health checks).
#[derive(Debug, Clone)]
pub struct HealthCheckFilter {
    /// `pass_through_mode` (required).
    pub pass_through: bool,
    /// `headers`: every one must match.
    pub headers: Vec<HeaderMatcher>,
    /// `cluster_min_healthy_percentages`: the percentage of each named
    /// cluster's hosts that must be healthy for a 200, by cluster name.
    pub min_healthy: Vec<(String, f64)>,
}

/// Decodes the filter's `typed_config`.
pub fn decode(node: &Node, errs: &mut Errors) -> Option<HealthCheckFilter> {
    let obj = node.object(errs, &HEALTH_CHECK)?;
    let pass_through = match obj.get("pass_through_mode") {
        Some(p) => crate::config::bootstrap::any_bool(Some(p), errs, false),
        None => {
            errs.add(
                &format!("{}.pass_through_mode", obj.path()),
                "value is required",
            );
            return None;
        }
    };
    let headers = obj
        .get("headers")
        .map(|h| h.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| crate::config::header_matcher(h, errs))
        .collect();
    let mut min_healthy = Vec::new();
    if let Some(m) = obj.get("cluster_min_healthy_percentages") {
        let Some(map) = m.value().as_object() else {
            errs.add(m.path(), "expected a map of cluster names to percentages");
            return None;
        };
        for cluster in map.keys() {
            let Some(entry) = m.entry(cluster) else {
                continue;
            };
            let value = entry.object(errs, &PERCENT).and_then(|p| p.get("value"));
            match value.map_or(Some(0.0), |v| v.value().as_f64()) {
                Some(v) if (0.0..=100.0).contains(&v) => min_healthy.push((cluster.clone(), v)),
                _ => errs.add(entry.path(), "value must be inside range [0, 100]"),
            }
        }
    }
    Some(HealthCheckFilter {
        pass_through,
        headers,
        min_healthy,
    })
}
