//! `cluster_manager`: the bootstrap's cluster-wide settings.

use super::node::{Errors, Fields, Node};
use std::path::PathBuf;

#[rustfmt::skip]
static CLUSTER_MANAGER: Fields = Fields {
    known: &["outlier_detection", "enable_deferred_cluster_creation", "local_cluster_name"],
    unsupported: &["upstream_bind_config", "load_stats_config"],
};
#[rustfmt::skip]
static OUTLIER_DETECTION: Fields = Fields {
    known: &["event_log_path"],
    unsupported: &["event_service"],
};

/// The bootstrap's `cluster_manager`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterManager {
    /// `outlier_detection.event_log_path`.
    pub outlier_event_log: Option<PathBuf>,
    /// `local_cluster_name`: the cluster of this proxy's own fleet, which
    /// zone-aware routing compares localities with.
    pub local_cluster_name: Option<String>,
}

/// Decodes `cluster_manager`; `local_cluster_name` must name one of the
/// `static_clusters`, as in Envoy.
/// `enable_deferred_cluster_creation` is Envoy's saving of per-worker
/// memory for clusters never used; Ringway's shards share one immutable
/// cluster table, so there is nothing to defer.
pub fn cluster_manager(node: &Node, errs: &mut Errors, static_clusters: &[&str]) -> ClusterManager {
    let Some(obj) = node.object(errs, &CLUSTER_MANAGER) else {
        return ClusterManager::default();
    };
    if let Some(d) = obj.get("enable_deferred_cluster_creation") {
        d.bool(errs);
    }
    let local_cluster_name = obj.get("local_cluster_name").and_then(|n| {
        let name = n.str(errs).filter(|s| !s.is_empty())?;
        if !static_clusters.contains(&name) {
            errs.add(n.path(), format!("local cluster '{name}' must be defined"));
        }
        Some(name.to_string())
    });
    ClusterManager {
        outlier_event_log: obj
            .get("outlier_detection")
            .and_then(|o| event_log(&o, errs)),
        local_cluster_name,
    }
}

/// Opens (creates) `outlier_detection.event_log_path` as Envoy opens it,
/// failing the same way when it cannot be; its path, if it names one.
fn event_log(outlier: &Node, errs: &mut Errors) -> Option<PathBuf> {
    let o = outlier.object(errs, &OUTLIER_DETECTION)?;
    let path = o.get("event_log_path")?;
    let file = path.str(errs).filter(|p| !p.is_empty())?;
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file);
    if let Err(e) = opened {
        // As strerror says it, without Rust's " (os error N)".
        let text = e.to_string();
        let reason = text.split(" (os error").next().unwrap_or(&text);
        errs.add(
            path.path(),
            format!("unable to open file '{file}': {reason}"),
        );
    }
    Some(PathBuf::from(file))
}
