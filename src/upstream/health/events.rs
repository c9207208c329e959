//! The health-check event log: one JSON line per event, as Envoy writes
//! its `HealthCheckEvent`s (`event_log_path`, file `event_logger`s).

use super::session::Verdict;
use super::{DEGRADED, FAILED};
use crate::config::{HealthCheck, Locality, Probe};
use crate::net::Address;
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::time::SystemTime;

/// A cluster's event log files and what goes in them.
pub struct EventLog {
    files: Vec<File>,
    cluster: String,
    checker: &'static str,
    always_failures: bool,
    always_success: bool,
}

/// One result on one host, as the event log sees it.
pub struct Judged<'a> {
    /// The host.
    pub addr: &'a Address,
    /// Its locality.
    pub locality: &'a Locality,
    /// What the check found.
    pub verdict: Verdict,
    /// The host's flags before and after.
    pub before: u8,
    /// After.
    pub after: u8,
    /// It was the host's first result.
    pub first: bool,
}

impl EventLog {
    /// Opens (appending, creating) `config`'s event logs for `cluster`;
    /// None when it has none. A file that cannot be opened is logged and
    /// left out.
    pub fn open(config: &HealthCheck, cluster: &str) -> Option<EventLog> {
        let files: Vec<File> = config
            .event_logs
            .iter()
            .filter_map(|path| {
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        log::warn!(
                            "cluster {cluster}: cannot open health check event log {}: {e}",
                            path.display()
                        );
                    })
                    .ok()
            })
            .collect();
        (!files.is_empty()).then(|| EventLog {
            files,
            cluster: cluster.to_string(),
            checker: match config.probe {
                Probe::Http(_) => "HTTP",
                Probe::Tcp(_) => "TCP",
                Probe::Grpc(_) => "GRPC",
            },
            always_failures: config.always_log_failures,
            always_success: config.always_log_success,
        })
    }

    /// Writes the events one result makes, in Envoy's order: a host
    /// turning healthy or unhealthy, a failure (a host's first, or every
    /// one with `always_log_health_check_failures`), a success that
    /// changed nothing (with `always_log_health_check_success`), and a
    /// change of degradation.
    pub fn record(&mut self, j: &Judged) {
        let failed = |flags: u8| flags & FAILED != 0;
        let mut events = Vec::new();
        match failure(j.verdict) {
            None => {
                if failed(j.before) && !failed(j.after) {
                    events.push(("add_healthy_event", json!({ "first_check": j.first })));
                } else if self.always_success {
                    events.push(("successful_health_check_event", json!({})));
                }
            }
            Some((kind, status)) => {
                if !failed(j.before) && failed(j.after) {
                    events.push((
                        "eject_unhealthy_event",
                        json!({ "failure_type": kind, "http_status_code": status }),
                    ));
                }
                if j.first || self.always_failures {
                    events.push((
                        "health_check_failure_event",
                        json!({ "failure_type": kind, "first_check": j.first, "http_status_code": status }),
                    ));
                }
            }
        }
        match (j.before & DEGRADED != 0, j.after & DEGRADED != 0) {
            (false, true) => events.push(("degraded_healthy_host", json!({}))),
            (true, false) => events.push(("no_longer_degraded_host", json!({}))),
            _ => {}
        }
        for (name, body) in events {
            let line = self.line(j, name, body);
            for file in &mut self.files {
                if let Err(e) = file.write_all(line.as_bytes()) {
                    log::warn!("cluster {}: health check event log: {e}", self.cluster);
                }
            }
        }
    }

    /// One event's line, its fields in Envoy's order.
    fn line(&self, j: &Judged, name: &str, body: serde_json::Value) -> String {
        // Written field by field: Envoy's order, not serde_json's.
        let host = match j.addr.ip() {
            Some(a) => format!(
                "{{\"socket_address\":{{\"protocol\":\"TCP\",\"address\":\"{}\",\"port_value\":{},\"resolver_name\":\"\",\"ipv4_compat\":false,\"network_namespace_filepath\":\"\"}}}}",
                a.ip(),
                a.port()
            ),
            None => format!("{{\"pipe\":{{\"path\":{},\"mode\":0}}}}", json!(j.addr.to_string())),
        };
        let l = j.locality;
        let locality = format!(
            "{{\"region\":{},\"zone\":{},\"sub_zone\":{}}}",
            json!(l.region),
            json!(l.zone),
            json!(l.sub_zone)
        );
        let timestamp = crate::admin::dump::rfc3339(SystemTime::now());
        // Envoy prints the ejection and healthy events before the
        // timestamp and the others after it (proto field order).
        let (before, after) = match name {
            "eject_unhealthy_event" | "add_healthy_event" => {
                (format!(",\"{name}\":{body}"), String::new())
            }
            _ => (String::new(), format!(",\"{name}\":{body}")),
        };
        format!(
            "{{\"health_checker_type\":\"{}\",\"host\":{host},\"cluster_name\":{}{before},\"timestamp\":\"{timestamp}\"{after},\"locality\":{locality}}}\n",
            self.checker,
            json!(self.cluster),
        )
    }
}

/// A failing verdict's Envoy failure type and HTTP status (0 without one).
fn failure(verdict: Verdict) -> Option<(&'static str, u16)> {
    match verdict {
        Verdict::Healthy { .. } => None,
        Verdict::Failed { status, .. } => Some(("ACTIVE", status)),
        Verdict::Network => Some(("NETWORK", 0)),
        Verdict::Timeout => Some(("NETWORK_TIMEOUT", 0)),
        Verdict::Passive => Some(("PASSIVE", 0)),
    }
}
