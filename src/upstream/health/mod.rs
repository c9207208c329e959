//! Host health as requests see it: the active health checker's flags and
//! outlier ejection, combined into Envoy's health flags; the checker's
//! state machine and its probes.

pub mod events;
mod h2probe;
pub mod probe;
pub mod session;

use crate::net::Address;
use serde_json::{json, Value};

/// A shard's word to the health checker: a host of a cluster answered a
/// proxied request with `x-envoy-immediate-health-check-fail` (Envoy's
/// passive health-check failure).
#[derive(Debug, Clone)]
pub struct PassiveFailure {
    /// The cluster's name.
    pub cluster: String,
    /// Its pooled connections' id (a changed configuration has another).
    pub pool_id: usize,
    /// The host.
    pub addr: Address,
}

/// Active health checking failed the host (`/failed_active_hc`).
pub const FAILED: u8 = 1;
/// It answered `x-envoy-degraded` (`/degraded_active_hc`).
pub const DEGRADED: u8 = 2;
/// It failed with `x-envoy-immediate-health-check-fail`
/// (`/excluded_via_immediate_hc_fail`): out of the balancer's count too.
pub const EXCLUDED: u8 = 4;
/// Its last failed check timed out (`/active_hc_timeout`).
pub const TIMEOUT: u8 = 8;

/// One host's health as `/clusters` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFlags {
    /// The active health checker's flags (none without health checks).
    pub active: u8,
    /// Outlier detection ejected it.
    pub ejected: bool,
}

impl HostFlags {
    /// Whether requests may go to it outside panic: neither failed,
    /// ejected, degraded nor excluded.
    pub fn healthy(self) -> bool {
        !self.ejected && self.active & (FAILED | DEGRADED | EXCLUDED) == 0
    }

    /// Whether it is degraded and otherwise fit to serve.
    pub fn degraded(self) -> bool {
        !self.ejected && self.active & (FAILED | EXCLUDED) == 0 && self.active & DEGRADED != 0
    }

    /// Whether it is out of the balancer's count.
    pub fn excluded(self) -> bool {
        self.active & EXCLUDED != 0
    }

    /// Envoy's `health_flags` text: each flag in Envoy's order, or
    /// `healthy`.
    pub fn text(self) -> String {
        let mut out = String::new();
        let has = |bit: u8| self.active & bit != 0;
        for (on, name) in [
            (has(FAILED), "/failed_active_hc"),
            (self.ejected, "/failed_outlier_check"),
            (has(DEGRADED), "/degraded_active_hc"),
            (has(EXCLUDED), "/excluded_via_immediate_hc_fail"),
            (has(TIMEOUT), "/active_hc_timeout"),
        ] {
            if on {
                out.push_str(name);
            }
        }
        if out.is_empty() {
            out.push_str("healthy");
        }
        out
    }

    /// Its `health_status` in `/clusters?format=json`.
    pub fn json(self) -> Value {
        let mut status = serde_json::Map::new();
        let has = |bit: u8| self.active & bit != 0;
        for (on, name) in [
            (has(FAILED), "failed_active_health_check"),
            (self.ejected, "failed_outlier_check"),
        ] {
            if on {
                status.insert(name.to_string(), json!(true));
            }
        }
        status.insert("eds_health_status".to_string(), json!("HEALTHY"));
        for (on, name) in [
            (has(DEGRADED), "failed_active_degraded_check"),
            (has(EXCLUDED), "excluded_via_immediate_hc_fail"),
            (has(TIMEOUT), "active_hc_timeout"),
        ] {
            if on {
                status.insert(name.to_string(), json!(true));
            }
        }
        Value::Object(status)
    }
}
