//! `cluster_manager`: the bootstrap's cluster-wide settings.

use super::node::{Errors, Fields, Node};
use std::path::PathBuf;

#[rustfmt::skip]
static CLUSTER_MANAGER: Fields = Fields {
    known: &["outlier_detection", "enable_deferred_cluster_creation"],
    unsupported: &["local_cluster_name", "upstream_bind_config", "load_stats_config"],
};
#[rustfmt::skip]
static OUTLIER_DETECTION: Fields = Fields {
    known: &["event_log_path"],
    unsupported: &["event_service"],
};

/// Decodes `cluster_manager`: the outlier event log's path, if it names
/// one. `outlier_detection.event_log_path` is opened (created) as Envoy
/// opens it, failing the same way when it cannot be.
/// `enable_deferred_cluster_creation` is Envoy's saving of per-worker
/// memory for clusters never used; Ringway's shards share one immutable
/// cluster table, so there is nothing to defer.
pub fn cluster_manager(node: &Node, errs: &mut Errors) -> Option<PathBuf> {
    let obj = node.object(errs, &CLUSTER_MANAGER)?;
    if let Some(d) = obj.get("enable_deferred_cluster_creation") {
        d.bool(errs);
    }
    let outlier = obj.get("outlier_detection")?;
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
