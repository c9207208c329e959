//! Decoding a cluster's `outlier_detection`, with Envoy's defaults.

use super::bootstrap::wrapped_uint;
use super::node::{Errors, Fields, Node};
use std::time::Duration;

#[rustfmt::skip]
static OUTLIER_DETECTION: Fields = Fields {
    known: &[
        "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
        "enforcing_consecutive_5xx", "enforcing_success_rate", "success_rate_minimum_hosts",
        "success_rate_request_volume", "success_rate_stdev_factor",
        "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure",
        "split_external_local_origin_errors", "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate",
        "failure_percentage_threshold", "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin", "failure_percentage_minimum_hosts",
        "failure_percentage_request_volume", "max_ejection_time", "max_ejection_time_jitter",
        "successful_active_health_check_uneject_host", "always_eject_one_host",
    ],
    unsupported: &["monitors", "detect_degraded_hosts"],
};

/// `outlier_detection`: when a host is ejected from load balancing for
/// the errors it answers, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// `interval` (10 s): how often ejections are reviewed and success
    /// rates computed.
    pub interval: Duration,
    /// `base_ejection_time` (30 s), times the host's ejection count.
    pub base_ejection_time: Duration,
    /// `max_ejection_time` (300 s, or `base_ejection_time` if longer).
    pub max_ejection_time: Duration,
    /// `max_ejection_time_jitter` (0).
    pub max_ejection_time_jitter: Duration,
    /// `max_ejection_percent` (10, at most 100).
    pub max_ejection_percent: u64,
    /// `always_eject_one_host` (false).
    pub always_eject_one_host: bool,
    /// `consecutive_5xx` (5) and `enforcing_consecutive_5xx` (100%).
    pub consecutive_5xx: (u64, u64),
    /// `consecutive_gateway_failure` (5) and its enforcing (0%).
    pub consecutive_gateway_failure: (u64, u64),
    /// `split_external_local_origin_errors` (false).
    pub split_local_origin: bool,
    /// `consecutive_local_origin_failure` (5) and its enforcing (100%).
    pub consecutive_local_origin_failure: (u64, u64),
    /// `success_rate_minimum_hosts` (5), `success_rate_request_volume`
    /// (100), `success_rate_stdev_factor` (1900, in thousandths).
    pub success_rate: SuccessRate,
    /// `enforcing_success_rate` (100%).
    pub enforcing_success_rate: u64,
    /// `enforcing_local_origin_success_rate` (100%).
    pub enforcing_local_origin_success_rate: u64,
    /// `failure_percentage_threshold` (85), `_minimum_hosts` (5),
    /// `_request_volume` (50).
    pub failure_percentage: FailurePercentage,
    /// `enforcing_failure_percentage` (0%).
    pub enforcing_failure_percentage: u64,
    /// `enforcing_failure_percentage_local_origin` (0%).
    pub enforcing_failure_percentage_local_origin: u64,
    /// `successful_active_health_check_uneject_host` (true): a passed
    /// active health check ends an ejection.
    pub uneject_on_health_check: bool,
}

/// The success-rate detector's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRate {
    /// Hosts with enough requests needed before any is judged.
    pub minimum_hosts: u64,
    /// Requests in an interval for a host to be judged.
    pub request_volume: u64,
    /// The factor of the standard deviation below the mean that ejects.
    pub stdev_factor: f64,
}

/// The failure-percentage detector's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailurePercentage {
    /// The failure percentage that ejects.
    pub threshold: u64,
    /// Hosts with enough requests needed before any is judged.
    pub minimum_hosts: u64,
    /// Requests in an interval for a host to be judged.
    pub request_volume: u64,
}

impl Default for OutlierDetection {
    /// Envoy's defaults.
    fn default() -> Self {
        OutlierDetection {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            consecutive_5xx: (5, 100),
            consecutive_gateway_failure: (5, 0),
            split_local_origin: false,
            consecutive_local_origin_failure: (5, 100),
            success_rate: SuccessRate {
                minimum_hosts: 5,
                request_volume: 100,
                stdev_factor: 1.9,
            },
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            failure_percentage: FailurePercentage {
                threshold: 85,
                minimum_hosts: 5,
                request_volume: 50,
            },
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            uneject_on_health_check: true,
        }
    }
}

/// Decodes `outlier_detection`.
pub(super) fn outlier_detection(node: &Node, errs: &mut Errors) -> Option<OutlierDetection> {
    let o = node.object(errs, &OUTLIER_DETECTION)?;
    let uint = |name: &str, default: u64, max: u64, errs: &mut Errors| {
        o.get(name)
            .and_then(|n| wrapped_uint(&n, errs, max))
            .unwrap_or(default)
    };
    let percent = |name: &str, default: u64, errs: &mut Errors| uint(name, default, 100, errs);
    let count =
        |name: &str, default: u64, errs: &mut Errors| uint(name, default, u32::MAX.into(), errs);
    let duration = |name: &str, errs: &mut Errors| o.get(name).and_then(|d| d.duration(errs));
    let flag = |name: &str, errs: &mut Errors| {
        o.get(name).and_then(|b| match b.value() {
            serde_json::Value::Object(_) => b.object(errs, &BOOL_VALUE)?.get("value")?.bool(errs),
            _ => b.bool(errs),
        })
    };
    let d = OutlierDetection::default();
    let interval = duration("interval", errs).unwrap_or(d.interval);
    let base_ejection_time = duration("base_ejection_time", errs).unwrap_or(d.base_ejection_time);
    let max_ejection_time = duration("max_ejection_time", errs)
        .unwrap_or_else(|| base_ejection_time.max(d.max_ejection_time));
    if max_ejection_time < base_ejection_time {
        errs.add(
            o.path(),
            "outlier detector's max_ejection_time cannot be smaller than base_ejection_time",
        );
    }
    if interval.is_zero() {
        errs.add(
            &format!("{}.interval", o.path()),
            "value must be greater than 0s",
        );
    }
    let uneject_on_health_check = flag("successful_active_health_check_uneject_host", errs)
        .unwrap_or(d.uneject_on_health_check);
    let (sr, fp) = (d.success_rate, d.failure_percentage);
    Some(OutlierDetection {
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_time_jitter: duration("max_ejection_time_jitter", errs).unwrap_or_default(),
        max_ejection_percent: percent("max_ejection_percent", d.max_ejection_percent, errs),
        always_eject_one_host: flag("always_eject_one_host", errs).unwrap_or(false),
        consecutive_5xx: (
            count("consecutive_5xx", d.consecutive_5xx.0, errs),
            percent("enforcing_consecutive_5xx", d.consecutive_5xx.1, errs),
        ),
        consecutive_gateway_failure: (
            count(
                "consecutive_gateway_failure",
                d.consecutive_gateway_failure.0,
                errs,
            ),
            percent(
                "enforcing_consecutive_gateway_failure",
                d.consecutive_gateway_failure.1,
                errs,
            ),
        ),
        split_local_origin: flag("split_external_local_origin_errors", errs).unwrap_or(false),
        consecutive_local_origin_failure: (
            count(
                "consecutive_local_origin_failure",
                d.consecutive_local_origin_failure.0,
                errs,
            ),
            percent(
                "enforcing_consecutive_local_origin_failure",
                d.consecutive_local_origin_failure.1,
                errs,
            ),
        ),
        success_rate: SuccessRate {
            minimum_hosts: count("success_rate_minimum_hosts", sr.minimum_hosts, errs),
            request_volume: count("success_rate_request_volume", sr.request_volume, errs),
            stdev_factor: o
                .get("success_rate_stdev_factor")
                .and_then(|n| wrapped_uint(&n, errs, u32::MAX.into()))
                .map_or(sr.stdev_factor, |f| f as f64 / 1000.0),
        },
        enforcing_success_rate: percent("enforcing_success_rate", d.enforcing_success_rate, errs),
        enforcing_local_origin_success_rate: percent(
            "enforcing_local_origin_success_rate",
            d.enforcing_local_origin_success_rate,
            errs,
        ),
        failure_percentage: FailurePercentage {
            threshold: percent("failure_percentage_threshold", fp.threshold, errs),
            minimum_hosts: count("failure_percentage_minimum_hosts", fp.minimum_hosts, errs),
            request_volume: count("failure_percentage_request_volume", fp.request_volume, errs),
        },
        enforcing_failure_percentage: percent(
            "enforcing_failure_percentage",
            d.enforcing_failure_percentage,
            errs,
        ),
        enforcing_failure_percentage_local_origin: percent(
            "enforcing_failure_percentage_local_origin",
            d.enforcing_failure_percentage_local_origin,
            errs,
        ),
        uneject_on_health_check,
    })
}

#[rustfmt::skip]
static BOOL_VALUE: Fields = Fields { known: &["value"], unsupported: &[] };
