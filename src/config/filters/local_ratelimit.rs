//! `envoy.filters.http.local_ratelimit`: a token bucket every request
//! (or every request of a connection) takes a token from.

use super::super::node::{Errors, Fields, Node, Obj};
use super::super::route_action::{HeaderMutations, HeaderToAdd};
use super::{runtime_percent, RuntimePercent};
use crate::config::TokenBucket;

/// The filter's type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

#[rustfmt::skip]
static LOCAL_RATE_LIMIT: Fields = Fields {
    known: &[
        "@type", "stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
        "request_headers_to_add_when_not_enforced", "response_headers_to_add",
        "local_rate_limit_per_downstream_connection", "enable_x_ratelimit_headers",
        "rate_limited_as_resource_exhausted", "always_consume_default_token_bucket",
        "descriptors", "stage", "vh_rate_limits", "max_dynamic_descriptors", "rate_limits",
    ],
    unsupported: &["local_cluster_rate_limit"],
};
#[rustfmt::skip]
static HTTP_STATUS: Fields = Fields { known: &["code"], unsupported: &[] };

/// The filter's settings (the chain's, or a route's own).
#[derive(Debug, Clone)]
pub struct LocalRateLimitConfig {
    /// `stat_prefix`: stats are `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: String,
    /// `status`: what a limited request is answered with (429 unless a
    /// code of at least 400 is set, as in Envoy).
    pub status: u16,
    /// `token_bucket`: none means no request is limited.
    pub bucket: Option<TokenBucket>,
    /// `filter_enabled`: none means the filter does nothing.
    pub enabled: Option<RuntimePercent>,
    /// `filter_enforced`: none means limited requests still go on.
    pub enforced: Option<RuntimePercent>,
    /// `request_headers_to_add_when_not_enforced`.
    pub request_headers: HeaderMutations,
    /// `response_headers_to_add`: on the limited request's answer.
    pub response_headers: Vec<HeaderToAdd>,
    /// `local_rate_limit_per_downstream_connection`.
    pub per_connection: bool,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    pub x_ratelimit_headers: bool,
    /// `rate_limited_as_resource_exhausted`: gRPC status 8, not 14.
    pub resource_exhausted: bool,
    /// `descriptors`: buckets for requests whose route descriptors match.
    pub descriptors: Vec<LocalDescriptor>,
    /// `stage`: which of the routes' `rate_limits` make descriptors.
    pub stage: u32,
    /// `vh_rate_limits`.
    pub vh_rate_limits: VhRateLimits,
    /// `always_consume_default_token_bucket` (default true): a request
    /// that matched a descriptor takes from the default bucket too.
    pub always_consume_default: bool,
    /// `max_dynamic_descriptors` (default 20): how many values a wildcard
    /// descriptor keeps buckets for.
    pub max_dynamic_descriptors: usize,
    /// `rate_limits`: the filter's own descriptor actions, read instead
    /// of the route's.
    pub rate_limits: Vec<crate::config::RateLimitPolicy>,
}

/// One of `descriptors`: its entries (an empty value is a wildcard) and
/// bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDescriptor {
    /// `entries`: (key, value).
    pub entries: Vec<(String, String)>,
    /// `token_bucket`.
    pub bucket: TokenBucket,
}

/// Whether a virtual host's `rate_limits` count alongside a route's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhRateLimits {
    /// `OVERRIDE`: only when the route has none.
    Override,
    /// `INCLUDE`: always.
    Include,
    /// `IGNORE`: never.
    Ignore,
}

impl LocalRateLimitConfig {
    /// The runtime keys its fractions read.
    pub fn runtime_keys(&self) -> impl Iterator<Item = &str> {
        [&self.enabled, &self.enforced]
            .into_iter()
            .flatten()
            .filter_map(|p| p.runtime_key.as_deref())
    }
}

/// Decodes a `LocalRateLimit`; a route's own (`per_route`) must have a
/// token bucket, as Envoy requires.
pub(super) fn decode(
    node: &Node,
    errs: &mut Errors,
    per_route: bool,
) -> Option<LocalRateLimitConfig> {
    let obj = node.object(errs, &LOCAL_RATE_LIMIT)?;
    let stat_prefix = obj
        .require(errs, "stat_prefix")
        .and_then(|p| p.str(errs).map(str::to_string));
    if stat_prefix.as_deref() == Some("") {
        errs.add(
            &format!("{}.stat_prefix", obj.path()),
            "value length must be at least 1 characters",
        );
    }
    let bucket = match obj.get("token_bucket") {
        Some(b) => Some(super::super::connection_filters::token_bucket(&b, errs)?),
        None if per_route => {
            errs.add(
                obj.path(),
                "local rate limit token bucket must be set for per filter configs",
            );
            return None;
        }
        None => None,
    };
    let percent = |errs: &mut Errors, field: &str| match obj.get(field) {
        Some(p) => runtime_percent(&p, errs).map(Some),
        None => Some(None),
    };
    let enabled = percent(errs, "filter_enabled")?;
    let enforced = percent(errs, "filter_enforced")?;
    let status = match obj.get("status") {
        Some(s) => status(&s, errs)?,
        None => 429,
    };
    let flag =
        |errs: &mut Errors, field: &str| obj.get(field).and_then(|b| b.bool(errs)).unwrap_or(false);
    let x_ratelimit_headers = match obj.get("enable_x_ratelimit_headers") {
        Some(e) => e.enumeration(errs, &["OFF", "DRAFT_VERSION_03"])? == "DRAFT_VERSION_03",
        None => false,
    };
    let config = LocalRateLimitConfig {
        stat_prefix: stat_prefix?,
        status,
        bucket,
        enabled,
        enforced,
        request_headers: HeaderMutations {
            add: literal_headers(&obj, errs, "request_headers_to_add_when_not_enforced"),
            remove: Vec::new(),
        },
        response_headers: literal_headers(&obj, errs, "response_headers_to_add"),
        per_connection: flag(errs, "local_rate_limit_per_downstream_connection"),
        x_ratelimit_headers,
        resource_exhausted: flag(errs, "rate_limited_as_resource_exhausted"),
        descriptors: match obj.get("descriptors") {
            Some(d) => descriptors(&d, errs)?,
            None => Vec::new(),
        },
        stage: match obj.get("stage") {
            Some(s) => s.uint(errs, 10)? as u32,
            None => 0,
        },
        vh_rate_limits: match obj.get("vh_rate_limits") {
            Some(v) => match v.enumeration(errs, &["OVERRIDE", "INCLUDE", "IGNORE"])? {
                "INCLUDE" => VhRateLimits::Include,
                "IGNORE" => VhRateLimits::Ignore,
                _ => VhRateLimits::Override,
            },
            None => VhRateLimits::Override,
        },
        always_consume_default: super::super::bootstrap::any_bool(
            obj.get("always_consume_default_token_bucket"),
            errs,
            true,
        ),
        max_dynamic_descriptors: match obj.get("max_dynamic_descriptors") {
            Some(m) => super::super::bootstrap::wrapped_uint(&m, errs, u32::MAX as u64)? as usize,
            None => 20,
        },
        rate_limits: match obj.get("rate_limits") {
            Some(r) => filter_rate_limits(&r, errs)?,
            None => Vec::new(),
        },
    };
    if config.per_connection && !config.descriptors.is_empty() {
        errs.add(
            obj.path(),
            "descriptors with local_rate_limit_per_downstream_connection are not supported yet",
        );
        return None;
    }
    Some(config)
}

/// A filter's own `rate_limits`: as a route's, without a `stage`
/// (Envoy refuses one there).
pub(super) fn filter_rate_limits(
    node: &Node,
    errs: &mut Errors,
) -> Option<Vec<crate::config::RateLimitPolicy>> {
    for item in node.list(errs) {
        if item.value().get("stage").is_some() {
            errs.add(
                item.path(),
                "'stage' field and 'disable_key' field are not supported",
            );
            return None;
        }
    }
    Some(super::super::rate_limit::rate_limits(node, errs))
}

#[rustfmt::skip]
static DESCRIPTOR: Fields = Fields { known: &["entries", "token_bucket"], unsupported: &[] };
#[rustfmt::skip]
static ENTRY: Fields = Fields { known: &["key", "value"], unsupported: &[] };

/// Decodes `descriptors`: each with at least one entry and a bucket, no
/// two alike.
fn descriptors(node: &Node, errs: &mut Errors) -> Option<Vec<LocalDescriptor>> {
    let mut out: Vec<LocalDescriptor> = Vec::new();
    for item in node.list(errs) {
        let obj = item.object(errs, &DESCRIPTOR)?;
        let list = obj.require(errs, "entries")?;
        let items = list.list(errs);
        if items.is_empty() {
            errs.add(list.path(), "value must contain at least 1 item(s)");
            return None;
        }
        let mut entries = Vec::new();
        for e in items {
            let e = e.object(errs, &ENTRY)?;
            let key = e.non_empty_str(errs, "key")?;
            let value = match e.get("value") {
                Some(v) => v.str(errs)?.to_string(),
                None => String::new(),
            };
            entries.push((key, value));
        }
        let bucket = super::super::connection_filters::token_bucket(
            &obj.require(errs, "token_bucket")?,
            errs,
        )?;
        if out.iter().any(|d| d.entries == entries) {
            let shown: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
            errs.add(
                item.path(),
                format!(
                    "duplicate descriptor in the local rate descriptor: {}",
                    shown.join(", ")
                ),
            );
            return None;
        }
        out.push(LocalDescriptor { entries, bucket });
    }
    Some(out)
}

/// `status.code`: a status below 400 (or none) means 429, as Envoy's
/// `toErrorCode`.
fn status(node: &Node, errs: &mut Errors) -> Option<u16> {
    let obj = node.object(errs, &HTTP_STATUS)?;
    let code = obj.require(errs, "code")?.uint(errs, 599)?;
    if code < 100 {
        errs.add(
            &format!("{}.code", obj.path()),
            "value must be greater than or equal to 100",
        );
        return None;
    }
    Some(if code >= 400 { code as u16 } else { 429 })
}

/// A header list whose values must be literal: Ringway renders no
/// `%OPERATOR%` in this filter's headers yet.
pub(super) fn literal_headers(obj: &Obj, errs: &mut Errors, field: &str) -> Vec<HeaderToAdd> {
    let Some(list) = obj.get(field) else {
        return Vec::new();
    };
    let mut headers = Vec::new();
    for item in list.list(errs) {
        let path = item.path().to_string();
        if let Some(h) = super::super::route_action::header_to_add(item, errs) {
            if h.value.literal().is_none() {
                errs.add(
                    &path,
                    "substitution formatters in this filter's headers are not supported yet",
                );
            }
            headers.push(h);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use crate::config::{decode, parse_document};

    /// A bootstrap whose one HTTP filter is a local rate limit with
    /// `fields`, after `top` (top-level YAML).
    fn errors(top: &str, fields: &str) -> Vec<String> {
        let yaml = format!(
            "{top}static_resources:\n  listeners:\n  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: s\n          route_config: {{}}\n          http_filters:\n          - name: rl\n            typed_config: {{ \"@type\": {}, stat_prefix: rl{fields} }}\n          - name: envoy.filters.http.router\n            typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}\n",
            super::TYPE
        );
        let tree = parse_document(&yaml, "t").expect("parses");
        match decode(&tree) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    const FILTER: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";

    #[test]
    fn what_ringway_lacks_is_refused_by_name() {
        let errs = errors("", ", local_cluster_rate_limit: {}");
        let path = format!("{FILTER}.local_cluster_rate_limit");
        assert!(errs.iter().any(|e| e.starts_with(&path)), "{errs:?}");
        let headers = errors(
            "",
            ", response_headers_to_add: [ { header: { key: x-a, value: \"%START_TIME%\" } } ]",
        );
        assert!(
            headers[0].starts_with(&format!("{FILTER}.response_headers_to_add[0]")),
            "{headers:?}"
        );
    }

    #[test]
    fn a_static_runtime_key_must_be_one_a_fraction_reads() {
        let layer = "layered_runtime: { layers: [ { name: s, static_layer: { rl.on: 50, elsewhere: 1 } } ] }\n";
        let errs = errors(
            layer,
            ", filter_enabled: { runtime_key: rl.on, default_value: { numerator: 1 } }",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("layered_runtime.layers[0].static_layer.elsewhere"),
            "{errs:?}"
        );
    }
}
