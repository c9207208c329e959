//! `envoy.filters.http.fault`'s config (also its per-route form).

use crate::config::node::{Errors, Fields, Node, Obj};
use crate::config::HeaderMatcher;
use std::time::Duration;

/// Its `typed_config` type.
pub const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

#[rustfmt::skip]
static HTTP_FAULT: Fields = Fields {
    known: &[
        "@type", "delay", "abort", "headers", "upstream_cluster", "max_active_faults",
        "disable_downstream_cluster_stats",
    ],
    unsupported: &[
        "downstream_nodes", "response_rate_limit", "delay_percent_runtime",
        "abort_percent_runtime", "delay_duration_runtime", "abort_http_status_runtime",
        "max_active_faults_runtime", "response_rate_limit_percent_runtime",
        "abort_grpc_status_runtime", "filter_metadata",
    ],
};
#[rustfmt::skip]
static DELAY: Fields = Fields {
    known: &["fixed_delay", "header_delay", "percentage"],
    unsupported: &[],
};
#[rustfmt::skip]
static ABORT: Fields = Fields {
    known: &["http_status", "grpc_status", "header_abort", "percentage"],
    unsupported: &[],
};
#[rustfmt::skip]
static EMPTY: Fields = Fields { known: &[], unsupported: &[] };

/// A share of requests: `numerator` of every `denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// `numerator` (0 when unset: no request).
    pub numerator: u64,
    /// 100, 10,000 or 1,000,000.
    pub denominator: u64,
}

/// How long a delayed request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayBy {
    /// `fixed_delay`.
    Fixed(Duration),
    /// `header_delay`: `x-envoy-fault-delay-request` in milliseconds.
    Header,
}

/// What an aborted request is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortWith {
    /// `http_status`.
    Http(u16),
    /// `grpc_status` (HTTP 200).
    Grpc(u32),
    /// `header_abort`: `x-envoy-fault-abort-request` (an HTTP status) or
    /// `x-envoy-fault-abort-grpc-request`.
    Header,
}

/// The fault filter's settings.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// `delay`.
    pub delay: Option<(DelayBy, Fraction)>,
    /// `abort`.
    pub abort: Option<(AbortWith, Fraction)>,
    /// `headers`: faults apply to requests matching every one.
    pub headers: Vec<HeaderMatcher>,
    /// `upstream_cluster`: faults apply only to requests routed there.
    pub upstream_cluster: Option<String>,
    /// `max_active_faults`: no new fault while this many are active.
    pub max_active_faults: Option<u64>,
}

/// Decodes an `HTTPFault`.
pub fn decode(node: &Node, errs: &mut Errors) -> Option<FaultConfig> {
    let obj = node.object(errs, &HTTP_FAULT)?;
    if let Some(d) = obj.get("disable_downstream_cluster_stats") {
        // Ringway keeps no per-downstream-cluster fault stats to disable.
        d.bool(errs);
    }
    Some(FaultConfig {
        delay: match obj.get("delay") {
            Some(d) => Some(delay(&d, errs)?),
            None => None,
        },
        abort: match obj.get("abort") {
            Some(a) => Some(abort(&a, errs)?),
            None => None,
        },
        headers: obj
            .get("headers")
            .map(|h| h.list(errs))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|h| crate::config::header_matcher(h, errs))
            .collect(),
        upstream_cluster: obj
            .get("upstream_cluster")
            .and_then(|c| c.str(errs))
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        max_active_faults: obj
            .get("max_active_faults")
            .and_then(|m| m.uint(errs, u32::MAX as u64)),
    })
}

/// The `percentage` of a delay or abort (none: no request).
fn percentage(obj: &Obj, errs: &mut Errors) -> Option<Fraction> {
    let (numerator, denominator) = match obj.get("percentage") {
        Some(p) => super::super::route_action::fractional_percent(&p, errs)?,
        None => (0, 100),
    };
    Some(Fraction {
        numerator,
        denominator,
    })
}

fn delay(node: &Node, errs: &mut Errors) -> Option<(DelayBy, Fraction)> {
    let obj = node.object(errs, &DELAY)?;
    let by = match (obj.get("fixed_delay"), obj.get("header_delay")) {
        (Some(d), None) => DelayBy::Fixed(d.duration(errs)?),
        (None, Some(h)) => {
            h.object(errs, &EMPTY)?;
            DelayBy::Header
        }
        _ => {
            errs.add(
                obj.path(),
                "expected exactly one of fixed_delay, header_delay",
            );
            return None;
        }
    };
    Some((by, percentage(&obj, errs)?))
}

fn abort(node: &Node, errs: &mut Errors) -> Option<(AbortWith, Fraction)> {
    let obj = node.object(errs, &ABORT)?;
    let with = match (
        obj.get("http_status"),
        obj.get("grpc_status"),
        obj.get("header_abort"),
    ) {
        (Some(s), None, None) => {
            let status = s.uint(errs, u64::MAX)?;
            if !(200..600).contains(&status) {
                errs.add(s.path(), "value must be inside range [200, 600)");
                return None;
            }
            AbortWith::Http(status as u16)
        }
        (None, Some(g), None) => AbortWith::Grpc(g.uint(errs, u32::MAX as u64)? as u32),
        (None, None, Some(h)) => {
            h.object(errs, &EMPTY)?;
            AbortWith::Header
        }
        _ => {
            errs.add(
                obj.path(),
                "expected exactly one of http_status, grpc_status, header_abort",
            );
            return None;
        }
    };
    Some((with, percentage(&obj, errs)?))
}
