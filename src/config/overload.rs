//! `overload_manager`: the resource monitors and actions Ringway honours.

use super::node::{Errors, Fields, Node};
use std::time::Duration;

const GLOBAL_CONNECTIONS: &str = "envoy.resource_monitors.global_downstream_max_connections";
const DOWNSTREAM_CONNECTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";
/// The fixed-heap monitor's name.
pub const FIXED_HEAP: &str = "envoy.resource_monitors.fixed_heap";
const FIXED_HEAP_TYPE: &str =
    "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig";
/// Envoy's default `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// An overload action Ringway carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadAction {
    /// `envoy.overload_actions.stop_accepting_requests`: new requests get
    /// 503 `envoy overloaded`.
    StopAcceptingRequests,
    /// `envoy.overload_actions.shrink_heap`: shards hand all the memory
    /// their allocator holds free back to the system.
    ShrinkHeap,
}

impl OverloadAction {
    /// Envoy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            OverloadAction::StopAcceptingRequests => {
                "envoy.overload_actions.stop_accepting_requests"
            }
            OverloadAction::ShrinkHeap => "envoy.overload_actions.shrink_heap",
        }
    }

    fn named(name: &str) -> Option<Self> {
        [
            OverloadAction::StopAcceptingRequests,
            OverloadAction::ShrinkHeap,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// The decoded `overload_manager`.
#[derive(Debug, Clone, PartialEq)]
pub struct Overload {
    /// `refresh_interval`: how often monitors are read.
    pub refresh: Duration,
    /// The `global_downstream_max_connections` monitor's limit.
    pub max_downstream_connections: Option<u64>,
    /// The `fixed_heap` monitor's `max_heap_size_bytes`.
    pub max_heap: Option<u64>,
    /// Each action with the heap pressure (a fraction of `max_heap`) at
    /// which its threshold trigger fires.
    pub actions: Vec<(OverloadAction, f64)>,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            refresh: DEFAULT_REFRESH,
            max_downstream_connections: None,
            max_heap: None,
            actions: Vec::new(),
        }
    }
}

#[rustfmt::skip]
static OVERLOAD_MANAGER: Fields = Fields {
    known: &["refresh_interval", "resource_monitors", "actions"],
    unsupported: &["buffer_factory_config", "loadshed_points"],
};
#[rustfmt::skip]
static RESOURCE_MONITOR: Fields = Fields { known: &["name", "typed_config"], unsupported: &[] };
#[rustfmt::skip]
static DOWNSTREAM_CONNECTIONS: Fields = Fields {
    known: &["@type", "max_active_downstream_connections"],
    unsupported: &[],
};
#[rustfmt::skip]
static FIXED_HEAP_CONFIG: Fields = Fields { known: &["@type", "max_heap_size_bytes"], unsupported: &[] };
#[rustfmt::skip]
static ACTION: Fields = Fields { known: &["name", "triggers"], unsupported: &["typed_config"] };
#[rustfmt::skip]
static TRIGGER: Fields = Fields { known: &["name", "threshold"], unsupported: &["scaled"] };
#[rustfmt::skip]
static THRESHOLD: Fields = Fields { known: &["value"], unsupported: &[] };

/// Checks a typed config's `@type`.
fn check_type(config: &Node, errs: &mut Errors, expected: &str) {
    if let Some(t) = config.entry("@type").and_then(|t| t.str(errs)) {
        if t != expected {
            errs.add(config.path(), format!("expected {expected}"));
        }
    }
}

/// Decodes `overload_manager`: the global downstream connection limit and
/// the fixed-heap monitor with the actions it can trigger (other monitors
/// and actions are refused by name).
pub fn overload_manager(node: &Node, errs: &mut Errors) -> Option<Overload> {
    let obj = node.object(errs, &OVERLOAD_MANAGER)?;
    let mut overload = Overload::default();
    if let Some(t) = obj.get("refresh_interval") {
        overload.refresh = t.duration(errs).unwrap_or(DEFAULT_REFRESH);
    }
    let monitors = obj.get("resource_monitors").map(|m| m.list(errs));
    for monitor in monitors.unwrap_or_default() {
        let Some(m) = monitor.object(errs, &RESOURCE_MONITOR) else {
            continue;
        };
        let name = m.require(errs, "name").and_then(|n| n.str(errs));
        let Some(config) = m.require(errs, "typed_config") else {
            continue;
        };
        match name {
            Some(GLOBAL_CONNECTIONS) => {
                check_type(&config, errs, DOWNSTREAM_CONNECTIONS_TYPE);
                let Some(c) = config.object(errs, &DOWNSTREAM_CONNECTIONS) else {
                    continue;
                };
                overload.max_downstream_connections = c
                    .require(errs, "max_active_downstream_connections")
                    .and_then(|n| n.uint(errs, i64::MAX as u64));
            }
            Some(FIXED_HEAP) => {
                check_type(&config, errs, FIXED_HEAP_TYPE);
                let Some(c) = config.object(errs, &FIXED_HEAP_CONFIG) else {
                    continue;
                };
                let max = c.require(errs, "max_heap_size_bytes");
                overload.max_heap = max.and_then(|n| n.uint(errs, u64::MAX)).filter(|&n| n > 0);
                if overload.max_heap.is_none() {
                    errs.add(&format!("{}.max_heap_size_bytes", c.path()), "value must be greater than 0");
                }
            }
            Some(other) => errs.add(
                monitor.path(),
                format!("resource monitor {other} is not supported yet (only {GLOBAL_CONNECTIONS}, {FIXED_HEAP})"),
            ),
            None => {}
        }
    }
    let actions = obj.get("actions").map(|a| a.list(errs));
    for action in actions.unwrap_or_default() {
        let Some(a) = action.object(errs, &ACTION) else {
            continue;
        };
        let Some(name) = a.require(errs, "name").and_then(|n| n.str(errs)) else {
            continue;
        };
        let Some(kind) = OverloadAction::named(name) else {
            errs.add(
                action.path(),
                format!("overload action {name} is not supported yet"),
            );
            continue;
        };
        let triggers = a.get("triggers").map(|t| t.list(errs)).unwrap_or_default();
        if triggers.is_empty() {
            errs.add(
                action.path(),
                "an overload action needs at least one trigger",
            );
        }
        for trigger in triggers {
            let Some(t) = trigger.object(errs, &TRIGGER) else {
                continue;
            };
            let monitor = t.require(errs, "name").and_then(|n| n.str(errs));
            if monitor.is_some_and(|m| m != FIXED_HEAP || overload.max_heap.is_none()) {
                errs.add(
                    trigger.path(),
                    format!("unknown trigger resource {}", monitor.unwrap_or_default()),
                );
                continue;
            }
            let Some(threshold) = t.require(errs, "threshold") else {
                continue;
            };
            let Some(th) = threshold.object(errs, &THRESHOLD) else {
                continue;
            };
            let value = th.get("value").map_or(Some(0.0), |v| v.value().as_f64());
            match value {
                Some(v) if (0.0..=1.0).contains(&v) => overload.actions.push((kind, v)),
                _ => errs.add(threshold.path(), "value must be inside range [0, 1]"),
            }
        }
    }
    Some(overload)
}
