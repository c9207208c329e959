//! `envoy.filters.http.ratelimit`: the global rate limit filter, asking a
//! rate limit service (`envoy.service.ratelimit.v3` over gRPC) about each
//! request's descriptors.

use super::super::node::{Errors, Fields, Node};
use super::super::rate_limit::RateLimitPolicy;
use super::grpc_service;
use super::local_ratelimit::{filter_rate_limits, literal_headers};
use crate::config::HeaderToAdd;
use std::time::Duration;

/// The filter's type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";

#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &[
        "@type", "domain", "stage", "request_type", "timeout", "failure_mode_deny",
        "rate_limit_service", "disable_x_envoy_ratelimited_header", "rate_limited_status",
        "status_on_error", "rate_limits", "enable_x_ratelimit_headers", "stat_prefix",
        "response_headers_to_add",
    ],
    unsupported: &[
        "rate_limited_as_resource_exhausted", "filter_enabled", "filter_enforced", "failure_mode_deny_percent",
    ],
};
#[rustfmt::skip]
static SERVICE: Fields = Fields {
    known: &["grpc_service", "transport_api_version"],
    unsupported: &[],
};
#[rustfmt::skip]
static HTTP_STATUS: Fields = Fields { known: &["code"], unsupported: &[] };

/// The filter's config.
#[derive(Debug, Clone)]
pub struct RateLimitFilterConfig {
    /// `domain`: the service's namespace for the descriptors.
    pub domain: String,
    /// `stage`: which of the routes' `rate_limits` it reads.
    pub stage: u32,
    /// `timeout` of each call (20 ms by default).
    pub timeout: Duration,
    /// `failure_mode_deny`: a failed call refuses the request.
    pub failure_mode_deny: bool,
    /// `rate_limit_service.grpc_service.envoy_grpc.cluster_name`.
    pub cluster: String,
    /// Its `authority` (the cluster's name by default).
    pub authority: String,
    /// `disable_x_envoy_ratelimited_header`.
    pub disable_ratelimited_header: bool,
    /// `rate_limited_status` (429 by default; below 400 means 429).
    pub rate_limited_status: u16,
    /// `status_on_error` (500 by default).
    pub status_on_error: u16,
    /// The filter's own `rate_limits`, read instead of the route's.
    pub rate_limits: Vec<RateLimitPolicy>,
    /// `stat_prefix`: `cluster.<name>.ratelimit.<this>.`.
    pub stat_prefix: String,
    /// `response_headers_to_add`: on a limited request's answer (literal
    /// values).
    pub response_headers: Vec<HeaderToAdd>,
}

/// Decodes the filter's config.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<RateLimitFilterConfig> {
    let obj = node.object(errs, &FILTER)?;
    let domain = obj.non_empty_str(errs, "domain")?;
    let stage = match obj.get("stage") {
        Some(s) => s.uint(errs, 10)? as u32,
        None => 0,
    };
    if let Some(t) = obj.get("request_type") {
        let kind = t.str(errs)?;
        if !kind.is_empty() && kind != "both" {
            errs.add(
                t.path(),
                format!("request_type {kind:?} is not supported yet (only \"both\")"),
            );
            return None;
        }
    }
    if let Some(h) = obj.get("enable_x_ratelimit_headers") {
        if h.enumeration(errs, &["OFF", "DRAFT_VERSION_03"])? != "OFF" {
            errs.add(
                h.path(),
                "enable_x_ratelimit_headers DRAFT_VERSION_03 is not supported yet",
            );
            return None;
        }
    }
    let service = obj.require(errs, "rate_limit_service")?;
    let service = service.object(errs, &SERVICE)?;
    // AUTO (the default) speaks V3, the only API Envoy 1.40 has.
    if let Some(v) = service.get("transport_api_version") {
        if v.enumeration(errs, &["AUTO", "V2", "V3"])? == "V2" {
            errs.add(v.path(), "the V2 rate limit service API is gone; use V3");
            return None;
        }
    }
    // The service's own timeout is not read: the filter's bounds each call.
    let grpc = grpc_service::decode(&service.require(errs, "grpc_service")?, errs)?;
    let status = |errs: &mut Errors, field: &str, default: u16| -> Option<u16> {
        let Some(s) = obj.get(field) else {
            return Some(default);
        };
        let code = s.object(errs, &HTTP_STATUS)?.require(errs, "code")?;
        let code = code.uint(errs, 599)? as u16;
        Some(if code < 400 { default } else { code })
    };
    let flag =
        |errs: &mut Errors, field: &str| obj.get(field).and_then(|b| b.bool(errs)).unwrap_or(false);
    Some(RateLimitFilterConfig {
        timeout: match obj.get("timeout") {
            Some(t) => t.duration(errs)?,
            None => Duration::from_millis(20),
        },
        failure_mode_deny: flag(errs, "failure_mode_deny"),
        cluster: grpc.cluster,
        authority: grpc.authority,
        disable_ratelimited_header: flag(errs, "disable_x_envoy_ratelimited_header"),
        rate_limited_status: status(errs, "rate_limited_status", 429)?,
        status_on_error: status(errs, "status_on_error", 500)?,
        stat_prefix: match obj.get("stat_prefix") {
            Some(p) => p.str(errs)?.to_string(),
            None => String::new(),
        },
        response_headers: literal_headers(&obj, errs, "response_headers_to_add"),
        rate_limits: match obj.get("rate_limits") {
            Some(r) => filter_rate_limits(&r, errs)?,
            None => Vec::new(),
        },
        domain,
        stage,
    })
}
