//! Decoding a cluster's `circuit_breakers`.

use super::bootstrap::wrapped_uint;
use super::node::{Errors, Fields, Node};

#[rustfmt::skip]
static CIRCUIT_BREAKERS: Fields = Fields {
    known: &["thresholds", "per_host_thresholds"],
    unsupported: &[],
};
#[rustfmt::skip]
static THRESHOLDS: Fields = Fields {
    known: &[
        "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries",
        "retry_budget", "track_remaining", "max_connection_pools",
    ],
    unsupported: &[],
};
#[rustfmt::skip]
static RETRY_BUDGET: Fields = Fields {
    known: &["budget_percent", "min_retry_concurrency"],
    unsupported: &[],
};
#[rustfmt::skip]
static PERCENT: Fields = Fields { known: &["value"], unsupported: &[] };

/// A routing priority: which of a cluster's thresholds a request counts
/// against (a route's `priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// `DEFAULT`.
    #[default]
    Default,
    /// `HIGH`.
    High,
}

impl Priority {
    /// Decodes a `RoutingPriority` enum field.
    pub(super) fn decode(node: &Node, errs: &mut Errors) -> Priority {
        match node.enumeration(errs, &["DEFAULT", "HIGH"]) {
            Some("HIGH") => Priority::High,
            _ => Priority::Default,
        }
    }

    /// Its name in stats (`circuit_breakers.<name>.*`).
    pub fn stat_name(self) -> &'static str {
        match self {
            Priority::Default => "default",
            Priority::High => "high",
        }
    }
}

/// `retry_budget`: retries in progress are capped at a share of the
/// requests active and pending, with a floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// `budget_percent` (default 20%).
    pub percent: f64,
    /// `min_retry_concurrency` (default 3).
    pub min_concurrency: u64,
}

/// One priority's `thresholds` entry, with Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `max_connections` (1024).
    pub max_connections: u64,
    /// `max_pending_requests` (1024).
    pub max_pending_requests: u64,
    /// `max_requests` (1024).
    pub max_requests: u64,
    /// `max_retries` (3); a `retry_budget` replaces it.
    pub max_retries: u64,
    /// `retry_budget`.
    pub retry_budget: Option<RetryBudget>,
    /// `max_connection_pools` (unlimited: `u64::MAX`).
    pub max_connection_pools: u64,
    /// `track_remaining`: publish `remaining_*` gauges.
    pub track_remaining: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
            max_connection_pools: u64::MAX,
            track_remaining: false,
        }
    }
}

/// `circuit_breakers`: thresholds per priority, and the per-host
/// connection limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CircuitBreakers {
    /// The `DEFAULT` priority's thresholds.
    pub default: Thresholds,
    /// The `HIGH` priority's thresholds.
    pub high: Thresholds,
    /// `per_host_thresholds[].max_connections` per priority (the only
    /// per-host limit Envoy has).
    pub per_host_max_connections: [Option<u64>; 2],
}

impl CircuitBreakers {
    /// The thresholds of `priority`.
    pub fn thresholds(&self, priority: Priority) -> &Thresholds {
        match priority {
            Priority::Default => &self.default,
            Priority::High => &self.high,
        }
    }
}

/// Decodes `circuit_breakers`. As in Envoy, the first entry for a
/// priority wins.
pub(super) fn circuit_breakers(node: &Node, errs: &mut Errors) -> CircuitBreakers {
    let mut out = CircuitBreakers::default();
    let Some(obj) = node.object(errs, &CIRCUIT_BREAKERS) else {
        return out;
    };
    let mut seen = [false; 2];
    for entry in obj
        .get("thresholds")
        .map(|t| t.list(errs))
        .unwrap_or_default()
    {
        let Some((priority, thresholds)) = thresholds(&entry, errs) else {
            continue;
        };
        if !std::mem::replace(&mut seen[priority as usize], true) {
            match priority {
                Priority::Default => out.default = thresholds,
                Priority::High => out.high = thresholds,
            }
        }
    }
    let mut seen = [false; 2];
    for entry in obj
        .get("per_host_thresholds")
        .map(|t| t.list(errs))
        .unwrap_or_default()
    {
        let Some(o) = entry.object(errs, &THRESHOLDS) else {
            continue;
        };
        let priority = o
            .get("priority")
            .map_or(Priority::Default, |p| Priority::decode(&p, errs));
        // Envoy refuses every per-host threshold but max_connections.
        let fields = entry.value().as_object().into_iter().flatten();
        for (name, _) in fields.filter(|(_, v)| !v.is_null()) {
            if !matches!(name.as_str(), "priority" | "max_connections") {
                errs.add(
                    &format!("{}.{name}", o.path()),
                    "Unsupported field in per_host_thresholds (only max_connections is)",
                );
            }
        }
        let max = o
            .get("max_connections")
            .and_then(|m| wrapped_uint(&m, errs, u32::MAX.into()));
        if !std::mem::replace(&mut seen[priority as usize], true) {
            out.per_host_max_connections[priority as usize] = Some(max.unwrap_or(1024));
        }
    }
    out
}

/// Decodes one `thresholds` entry.
fn thresholds(node: &Node, errs: &mut Errors) -> Option<(Priority, Thresholds)> {
    let o = node.object(errs, &THRESHOLDS)?;
    let priority = o
        .get("priority")
        .map_or(Priority::Default, |p| Priority::decode(&p, errs));
    let mut t = Thresholds::default();
    let limit = |name: &str, errs: &mut Errors| {
        o.get(name)
            .and_then(|m| wrapped_uint(&m, errs, u32::MAX.into()))
    };
    if let Some(n) = limit("max_connections", errs) {
        t.max_connections = n;
    }
    if let Some(n) = limit("max_pending_requests", errs) {
        t.max_pending_requests = n;
    }
    if let Some(n) = limit("max_requests", errs) {
        t.max_requests = n;
    }
    if let Some(n) = limit("max_retries", errs) {
        t.max_retries = n;
    }
    if let Some(n) = limit("max_connection_pools", errs) {
        t.max_connection_pools = n;
    }
    if let Some(b) = o.get("track_remaining") {
        t.track_remaining = b.bool(errs).unwrap_or(false);
    }
    if let Some(b) = o.get("retry_budget") {
        t.retry_budget = retry_budget(&b, errs);
    }
    Some((priority, t))
}

/// Decodes `retry_budget`.
fn retry_budget(node: &Node, errs: &mut Errors) -> Option<RetryBudget> {
    let o = node.object(errs, &RETRY_BUDGET)?;
    let mut budget = RetryBudget {
        percent: 20.0,
        min_concurrency: 3,
    };
    if let Some(p) = o.get("budget_percent") {
        let value = p
            .object(errs, &PERCENT)
            .and_then(|v| v.get("value"))
            .map_or(Some(0.0), |v| v.value().as_f64());
        match value {
            Some(v) if (0.0..=100.0).contains(&v) => budget.percent = v,
            _ => errs.add(p.path(), "value must be inside range [0, 100]"),
        }
    }
    if let Some(m) = o.get("min_retry_concurrency") {
        if let Some(n) = wrapped_uint(&m, errs, u32::MAX.into()) {
            budget.min_concurrency = n;
        }
    }
    Some(budget)
}
