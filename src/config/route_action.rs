//! Decoding route actions (`route`, `redirect`) and the header mutations
//! of routes, virtual hosts and route configurations.

use super::node::{Errors, Fields, Node, Obj};
use super::route_match::search_regex;
use crate::access_log::Template;
use std::time::Duration;

/// Which cluster a `route` action sends to.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    /// `cluster`.
    Name(String),
    /// `cluster_header`: the cluster named by this request header.
    Header(String),
    /// `weighted_clusters`: names with weights, and the total to draw from.
    Weighted {
        /// `clusters[]{name, weight, metadata_match}`.
        clusters: Vec<WeightedCluster>,
        /// `total_weight`, or the sum of the weights.
        total: u64,
    },
}

/// One `weighted_clusters.clusters[]` entry.
#[derive(Debug, Clone)]
pub struct WeightedCluster {
    /// `name`.
    pub name: String,
    /// `weight`.
    pub weight: u32,
    /// `metadata_match`'s `envoy.lb` criteria (merged over the route's).
    pub metadata_match: Option<super::LbMetadata>,
    /// `typed_per_filter_config`: the most specific level.
    pub filter_configs: super::PerFilterConfigs,
}

/// How the upstream `Host` is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    /// Kept as received.
    None,
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite`: the endpoint's DNS name (STRICT_DNS clusters).
    Auto,
    /// `host_rewrite_header`: the value of this request header, if present.
    Header(String),
}

/// `route` of a route entry.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    /// The cluster (or how to choose it).
    pub target: ClusterTarget,
    /// `cluster_not_found_response_code` (default 503).
    pub cluster_not_found_status: u16,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite{pattern, substitution}`.
    pub regex_rewrite: Option<(regex::Regex, String)>,
    /// The `Host` rewrite.
    pub host_rewrite: HostRewrite,
    /// `timeout` (default 15s; zero disables).
    pub timeout: Option<Duration>,
    /// `hash_policy` (for RING_HASH and MAGLEV clusters).
    pub hash_policy: Vec<super::HashPolicy>,
    /// `metadata_match`: the `envoy.lb` subset its requests go to.
    pub metadata_match: Option<super::LbMetadata>,
    /// `request_mirror_policies`.
    pub mirrors: Vec<MirrorPolicy>,
    /// `cors` (deprecated in Envoy, still honoured).
    pub cors: Option<super::CorsPolicy>,
    /// `retry_policy` (the virtual host's applies when absent).
    pub retry_policy: Option<super::RetryPolicy>,
    /// `idle_timeout`: overrides the stream idle timeout (`Some(None)`: 0s,
    /// disabled).
    pub idle_timeout: Option<Option<Duration>>,
    /// `max_stream_duration`.
    pub max_stream_duration: Option<MaxStreamDuration>,
    /// `upgrade_configs`: per-route overrides of the connection manager's.
    pub upgrades: Vec<Upgrade>,
    /// `priority`: which circuit-breaker thresholds its requests count
    /// against.
    pub priority: super::Priority,
    /// `rate_limits`: the route's rate limit descriptors.
    pub rate_limits: Vec<super::RateLimitPolicy>,
    /// `include_vh_rate_limits`: the virtual host's descriptors too.
    pub include_vh_rate_limits: bool,
}

/// One `request_mirror_policies[]` entry: a copy of each sampled request
/// goes to `cluster`, and its answer is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPolicy {
    /// `cluster`.
    pub cluster: String,
    /// `runtime_fraction.default_value`, in millionths of requests
    /// (default: every request).
    pub millionths: u32,
    /// `-shadow` is appended to the copy's host (unless
    /// `disable_shadow_host_suffix_append`).
    pub host_suffix: bool,
}

/// One `upgrade_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `upgrade_type`, lower-cased (matched without case, as Envoy does).
    pub kind: String,
    /// `enabled` (default true).
    pub enabled: bool,
}

/// Decodes `upgrade_configs` of `obj` (a connection manager's or a
/// route's, whose extra fields `fields` names).
pub(super) fn upgrades(obj: &Obj, errs: &mut Errors, fields: &'static Fields) -> Vec<Upgrade> {
    let list = obj
        .get("upgrade_configs")
        .map(|l| l.list(errs))
        .unwrap_or_default();
    list.into_iter()
        .filter_map(|item| {
            let o = item.object(errs, fields)?;
            let kind = o
                .require(errs, "upgrade_type")?
                .str(errs)?
                .to_ascii_lowercase();
            let enabled = super::bootstrap::any_bool(o.get("enabled"), errs, true);
            Some(Upgrade { kind, enabled })
        })
        .collect()
}

/// A route's `max_stream_duration`: how long a whole stream may last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxStreamDuration {
    /// `max_stream_duration` (`Some(ZERO)`: none, not even the connection
    /// manager's).
    pub max: Option<Duration>,
    /// `grpc_timeout_header_max`: a gRPC request's `grpc-timeout` sets the
    /// duration, capped at this (zero: no cap).
    pub grpc_header_max: Option<Duration>,
    /// `grpc_timeout_header_offset`: taken off the `grpc-timeout` value.
    pub grpc_header_offset: Option<Duration>,
}

/// The path part of a `redirect`.
#[derive(Debug, Clone)]
pub enum PathRedirect {
    /// Keep the request's path.
    Keep,
    /// `path_redirect`: replace the path (the query too, if it has one).
    Path(String),
    /// `prefix_rewrite`: replace the matched prefix.
    Prefix(String),
    /// `regex_rewrite`.
    Regex(regex::Regex, String),
}

/// `redirect` of a route entry.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `https_redirect` or `scheme_redirect`.
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    /// The path change.
    pub path: PathRedirect,
    /// `response_code` (default 301).
    pub status: u16,
    /// `strip_query`.
    pub strip_query: bool,
}

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Add another value, whether or not the header exists (the default).
    AppendIfExistsOrAdd,
    /// Add only when the header is absent.
    AddIfAbsent,
    /// Replace existing values, or add.
    OverwriteIfExistsOrAdd,
    /// Replace existing values; do nothing when absent.
    OverwriteIfExists,
}

/// One `*_headers_to_add` entry.
#[derive(Debug, Clone)]
pub struct HeaderToAdd {
    /// Lower-cased name.
    pub name: String,
    /// The value, with `%OPERATOR%` substitutions.
    pub value: Template,
    /// `append_action` (or the legacy `append`).
    pub action: AppendAction,
    /// `keep_empty_value`: add the header even when the value renders empty.
    pub keep_empty: bool,
}

/// Headers to add and remove, for requests or responses, at one level.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    /// `*_headers_to_add`.
    pub add: Vec<HeaderToAdd>,
    /// `*_headers_to_remove`, lower-cased.
    pub remove: Vec<String>,
}

impl HeaderMutations {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[rustfmt::skip]
pub(super) static ROUTE_ACTION: Fields = Fields {
    known: &[
        "cluster", "cluster_header", "weighted_clusters", "cluster_not_found_response_code",
        "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite",
        "host_rewrite_header", "timeout", "hash_policy", "retry_policy", "idle_timeout",
        "max_stream_duration", "upgrade_configs", "priority", "metadata_match",
        "request_mirror_policies", "cors", "rate_limits", "include_vh_rate_limits",
    ],
    unsupported: &[
        "cluster_specifier_plugin", "inline_cluster_specifier_plugin",
        "path_rewrite_policy", "host_rewrite_path_regex", "append_x_forwarded_host",
        "early_data_policy", "retry_policy_typed_config", "max_grpc_timeout", "grpc_timeout_offset",
        "internal_redirect_policy", "internal_redirect_action", "max_internal_redirects",
        "hedge_policy", "request_body_buffer_limit",
    ],
};
#[rustfmt::skip]
static MIRROR_POLICY: Fields = Fields {
    known: &["cluster", "runtime_fraction", "disable_shadow_host_suffix_append"],
    unsupported: &["cluster_header", "trace_sampled", "request_headers_mutations", "host_rewrite_literal"],
};
#[rustfmt::skip]
static RUNTIME_FRACTION: Fields = Fields {
    known: &["default_value", "runtime_key"],
    unsupported: &[],
};
#[rustfmt::skip]
static FRACTIONAL_PERCENT: Fields = Fields {
    known: &["numerator", "denominator"],
    unsupported: &[],
};
#[rustfmt::skip]
static ROUTE_UPGRADE: Fields = Fields {
    known: &["upgrade_type", "enabled"],
    unsupported: &["connect_config"],
};
#[rustfmt::skip]
static MAX_STREAM_DURATION: Fields = Fields {
    known: &["max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"],
    unsupported: &[],
};
#[rustfmt::skip]
static WEIGHTED_CLUSTERS: Fields = Fields {
    known: &["clusters", "total_weight"],
    unsupported: &["runtime_key_prefix", "header_name", "random_value_specifier"],
};
#[rustfmt::skip]
static CLUSTER_WEIGHT: Fields = Fields {
    known: &["name", "weight", "metadata_match", "typed_per_filter_config"],
    unsupported: &[
        "cluster_header", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "host_rewrite_literal",
    ],
};
#[rustfmt::skip]
static REGEX_REWRITE: Fields = Fields {
    known: &["pattern", "substitution"],
    unsupported: &[],
};
#[rustfmt::skip]
static REDIRECT: Fields = Fields {
    known: &[
        "https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
        "prefix_rewrite", "regex_rewrite", "response_code", "strip_query",
    ],
    unsupported: &[],
};
#[rustfmt::skip]
static HEADER_VALUE_OPTION: Fields = Fields {
    known: &["header", "append", "append_action", "keep_empty_value"],
    unsupported: &[],
};
#[rustfmt::skip]
static HEADER_VALUE: Fields = Fields {
    known: &["key", "value"],
    unsupported: &["raw_value"],
};

fn text(obj: &Obj, errs: &mut Errors, name: &str) -> Option<String> {
    obj.get(name).and_then(|n| n.str(errs).map(str::to_string))
}

/// `regex_rewrite{pattern, substitution}`: every match of the pattern in
/// the path is replaced, as Envoy's RE2 GlobalReplace does.
fn regex_rewrite(node: &Node, errs: &mut Errors) -> Option<(regex::Regex, String)> {
    let obj = node.object(errs, &REGEX_REWRITE)?;
    let pattern = obj.require(errs, "pattern")?;
    let substitution = obj.require(errs, "substitution")?.str(errs)?;
    Some((
        search_regex(&pattern, errs)?,
        envoy_substitution(substitution),
    ))
}

/// Envoy writes capture references as `\1`; the regex crate as `${1}`.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            (c, _) => out.push(c),
        }
    }
    out
}

fn status_code(node: &Node, errs: &mut Errors, allowed: &[(&'static str, u16)]) -> Option<u16> {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    let name = node.enumeration(errs, &names)?;
    allowed.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Decodes `route` of a route entry.
pub fn forward_action(node: Node, errs: &mut Errors) -> Option<ForwardAction> {
    let obj = node.object(errs, &ROUTE_ACTION)?;
    let mut targets = Vec::new();
    if let Some(c) = text(&obj, errs, "cluster") {
        targets.push(ClusterTarget::Name(c));
    }
    if let Some(h) = text(&obj, errs, "cluster_header") {
        targets.push(ClusterTarget::Header(h.to_ascii_lowercase()));
    }
    if let Some(w) = obj.get("weighted_clusters") {
        let wo = w.object(errs, &WEIGHTED_CLUSTERS)?;
        let mut clusters = Vec::new();
        for item in wo.require(errs, "clusters")?.list(errs) {
            let co = item.object(errs, &CLUSTER_WEIGHT)?;
            let name = co.require(errs, "name")?.str(errs)?.to_string();
            let weight = match co.get("weight") {
                Some(n) => super::bootstrap::wrapped_uint(&n, errs, u32::MAX as u64)? as u32,
                None => 0,
            };
            let metadata_match = co
                .get("metadata_match")
                .map(|m| super::subset::lb_metadata(&m, errs));
            clusters.push(WeightedCluster {
                name,
                weight,
                metadata_match,
                filter_configs: super::filters::per_filter_configs(&co, errs),
            });
        }
        let sum: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
        let total = match wo.get("total_weight") {
            Some(t) => {
                let total = super::bootstrap::wrapped_uint(&t, errs, u32::MAX as u64)?;
                if total != sum {
                    errs.add(
                        t.path(),
                        format!("total_weight {total} is not the sum of the weights ({sum})"),
                    );
                }
                total
            }
            None => sum,
        };
        if total == 0 {
            errs.add(w.path(), "the weights add up to 0");
            return None;
        }
        targets.push(ClusterTarget::Weighted { clusters, total });
    }
    let target = match targets.len() {
        1 => targets.pop()?,
        _ => {
            errs.add(
                obj.path(),
                "expected exactly one of cluster, cluster_header, weighted_clusters",
            );
            return None;
        }
    };
    let cluster_not_found_status = match obj.get("cluster_not_found_response_code") {
        Some(c) => status_code(
            &c,
            errs,
            &[
                ("SERVICE_UNAVAILABLE", 503),
                ("NOT_FOUND", 404),
                ("INTERNAL_SERVER_ERROR", 500),
            ],
        )?,
        None => 503,
    };
    let mut rewrites = Vec::new();
    if let Some(h) = text(&obj, errs, "host_rewrite_literal") {
        rewrites.push(HostRewrite::Literal(h));
    }
    if let Some(a) = obj.get("auto_host_rewrite") {
        let on = match a.value() {
            serde_json::Value::Object(_) => super::bootstrap::wrapped_bool(&a, errs),
            _ => a.bool(errs)?,
        };
        if on {
            rewrites.push(HostRewrite::Auto);
        }
    }
    if let Some(h) = text(&obj, errs, "host_rewrite_header") {
        rewrites.push(HostRewrite::Header(h.to_ascii_lowercase()));
    }
    let host_rewrite = match rewrites.len() {
        0 => HostRewrite::None,
        1 => rewrites.pop()?,
        _ => {
            errs.add(
                obj.path(),
                "host_rewrite_literal, auto_host_rewrite and host_rewrite_header are exclusive",
            );
            return None;
        }
    };
    let prefix_rewrite = text(&obj, errs, "prefix_rewrite");
    let regex_rewrite = match obj.get("regex_rewrite") {
        Some(r) => Some(regex_rewrite(&r, errs)?),
        None => None,
    };
    if prefix_rewrite.is_some() && regex_rewrite.is_some() {
        errs.add(obj.path(), "prefix_rewrite and regex_rewrite are exclusive");
    }
    let timeout = match obj.get("timeout") {
        Some(t) => t.duration(errs).filter(|d| !d.is_zero()),
        None => Some(Duration::from_secs(15)),
    };
    Some(ForwardAction {
        target,
        cluster_not_found_status,
        prefix_rewrite,
        regex_rewrite,
        host_rewrite,
        timeout,
        hash_policy: super::lb::hash_policies(&obj, errs),
        metadata_match: obj
            .get("metadata_match")
            .map(|m| super::subset::lb_metadata(&m, errs)),
        mirrors: obj
            .get("request_mirror_policies")
            .map(|l| l.list(errs))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| mirror_policy(m, errs))
            .collect(),
        cors: match obj.get("cors") {
            Some(c) => Some(super::filters::cors_policy(&c, errs)?),
            None => None,
        },
        retry_policy: match obj.get("retry_policy") {
            Some(r) => Some(super::retry::retry_policy(&r, errs)?),
            None => None,
        },
        idle_timeout: obj
            .get("idle_timeout")
            .map(|t| t.duration(errs).filter(|d| !d.is_zero())),
        max_stream_duration: match obj.get("max_stream_duration") {
            Some(m) => {
                let o = m.object(errs, &MAX_STREAM_DURATION)?;
                let mut field = |name| o.get(name).and_then(|d| d.duration(errs));
                Some(MaxStreamDuration {
                    max: field("max_stream_duration"),
                    grpc_header_max: field("grpc_timeout_header_max"),
                    grpc_header_offset: field("grpc_timeout_header_offset"),
                })
            }
            None => None,
        },
        upgrades: upgrades(&obj, errs, &ROUTE_UPGRADE),
        priority: obj.get("priority").map_or(super::Priority::Default, |p| {
            super::Priority::decode(&p, errs)
        }),
        rate_limits: obj
            .get("rate_limits")
            .map(|r| super::rate_limit::rate_limits(&r, errs))
            .unwrap_or_default(),
        include_vh_rate_limits: obj
            .get("include_vh_rate_limits")
            .is_some_and(|b| super::bootstrap::any_bool(Some(b), errs, false)),
    })
}

/// Decodes `redirect` of a route entry.
pub fn redirect(node: Node, errs: &mut Errors) -> Option<Redirect> {
    let obj = node.object(errs, &REDIRECT)?;
    let https = obj
        .get("https_redirect")
        .and_then(|n| n.bool(errs))
        .unwrap_or(false);
    let scheme = match (https, text(&obj, errs, "scheme_redirect")) {
        (true, Some(_)) => {
            errs.add(
                obj.path(),
                "https_redirect and scheme_redirect are exclusive",
            );
            return None;
        }
        (true, None) => Some("https".to_string()),
        (false, s) => s.map(|s| s.to_ascii_lowercase()),
    };
    let port = match obj.get("port_redirect") {
        Some(p) => Some(p.uint(errs, u16::MAX as u64)? as u16),
        None => None,
    };
    let mut paths = Vec::new();
    if let Some(p) = text(&obj, errs, "path_redirect") {
        paths.push(PathRedirect::Path(p));
    }
    if let Some(p) = text(&obj, errs, "prefix_rewrite") {
        paths.push(PathRedirect::Prefix(p));
    }
    if let Some(r) = obj.get("regex_rewrite") {
        let (regex, sub) = regex_rewrite(&r, errs)?;
        paths.push(PathRedirect::Regex(regex, sub));
    }
    let path = match paths.len() {
        0 => PathRedirect::Keep,
        1 => paths.pop()?,
        _ => {
            errs.add(
                obj.path(),
                "path_redirect, prefix_rewrite and regex_rewrite are exclusive",
            );
            return None;
        }
    };
    let status = match obj.get("response_code") {
        Some(c) => status_code(
            &c,
            errs,
            &[
                ("MOVED_PERMANENTLY", 301),
                ("FOUND", 302),
                ("SEE_OTHER", 303),
                ("TEMPORARY_REDIRECT", 307),
                ("PERMANENT_REDIRECT", 308),
            ],
        )?,
        None => 301,
    };
    Some(Redirect {
        scheme,
        host: text(&obj, errs, "host_redirect"),
        port,
        path,
        status,
        strip_query: obj
            .get("strip_query")
            .and_then(|n| n.bool(errs))
            .unwrap_or(false),
    })
}

pub(super) fn header_to_add(node: Node, errs: &mut Errors) -> Option<HeaderToAdd> {
    let obj = node.object(errs, &HEADER_VALUE_OPTION)?;
    let header = obj.require(errs, "header")?;
    let ho = header.object(errs, &HEADER_VALUE)?;
    let key = ho.require(errs, "key")?;
    let name = key.str(errs)?.to_ascii_lowercase();
    if name.is_empty() || name.starts_with(':') || name == "host" {
        errs.add(key.path(), format!("{name:?} cannot be set this way"));
        return None;
    }
    let value_node = ho.get("value");
    let raw = match &value_node {
        Some(v) => v.str(errs)?,
        None => "",
    };
    let value = match Template::parse(raw) {
        Ok(t) => t,
        Err(e) => {
            let path = value_node
                .as_ref()
                .map_or(ho.path(), |v| v.path())
                .to_string();
            errs.add(&path, e);
            return None;
        }
    };
    let legacy = obj
        .get("append")
        .map(|a| super::bootstrap::any_bool(Some(a), errs, true));
    let action = match (obj.get("append_action"), legacy) {
        (Some(_), Some(_)) => {
            errs.add(obj.path(), "append and append_action are exclusive");
            return None;
        }
        (Some(a), None) => match a.enumeration(
            errs,
            &[
                "APPEND_IF_EXISTS_OR_ADD",
                "ADD_IF_ABSENT",
                "OVERWRITE_IF_EXISTS_OR_ADD",
                "OVERWRITE_IF_EXISTS",
            ],
        )? {
            "ADD_IF_ABSENT" => AppendAction::AddIfAbsent,
            "OVERWRITE_IF_EXISTS_OR_ADD" => AppendAction::OverwriteIfExistsOrAdd,
            "OVERWRITE_IF_EXISTS" => AppendAction::OverwriteIfExists,
            _ => AppendAction::AppendIfExistsOrAdd,
        },
        (None, Some(false)) => AppendAction::OverwriteIfExistsOrAdd,
        (None, _) => AppendAction::AppendIfExistsOrAdd,
    };
    Some(HeaderToAdd {
        name,
        value,
        action,
        keep_empty: obj
            .get("keep_empty_value")
            .and_then(|n| n.bool(errs))
            .unwrap_or(false),
    })
}

/// Decodes `<kind>_headers_to_add` and `<kind>_headers_to_remove` of `obj`
/// (`kind` is `request` or `response`).
pub fn header_mutations(obj: &Obj, errs: &mut Errors, kind: &str) -> HeaderMutations {
    let add = obj
        .get(&format!("{kind}_headers_to_add"))
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| header_to_add(h, errs))
        .collect();
    let mut remove = Vec::new();
    if let Some(list) = obj.get(&format!("{kind}_headers_to_remove")) {
        for item in list.list(errs) {
            if let Some(name) = item.str(errs) {
                let name = name.to_ascii_lowercase();
                if name.starts_with(':') || name == "host" {
                    errs.add(item.path(), format!("{name:?} cannot be removed"));
                } else {
                    remove.push(name);
                }
            }
        }
    }
    HeaderMutations { add, remove }
}

/// Decodes one `request_mirror_policies[]` entry.
fn mirror_policy(node: Node, errs: &mut Errors) -> Option<MirrorPolicy> {
    let obj = node.object(errs, &MIRROR_POLICY)?;
    let Some(cluster) = text(&obj, errs, "cluster").filter(|c| !c.is_empty()) else {
        errs.add(
            obj.path(),
            "Exactly one of cluster or cluster_header in request mirror policy need to be specified",
        );
        return None;
    };
    let millionths = match obj.get("runtime_fraction") {
        Some(f) => runtime_fraction(&f, errs)?,
        None => 1_000_000,
    };
    let disabled = obj
        .get("disable_shadow_host_suffix_append")
        .and_then(|d| d.bool(errs))
        .unwrap_or(false);
    Some(MirrorPolicy {
        cluster,
        millionths,
        host_suffix: !disabled,
    })
}

/// Decodes a `RuntimeFractionalPercent` as millionths: its
/// `default_value` (Ringway's runtime holds no such keys, so a
/// `runtime_key` is refused).
fn runtime_fraction(node: &Node, errs: &mut Errors) -> Option<u32> {
    let obj = node.object(errs, &RUNTIME_FRACTION)?;
    if let Some(key) = text(&obj, errs, "runtime_key").filter(|k| !k.is_empty()) {
        errs.add(
            &format!("{}.runtime_key", obj.path()),
            format!("runtime key {key:?} is not supported by Ringway (its runtime has no fraction keys); use default_value"),
        );
    }
    let value = obj.require(errs, "default_value")?;
    let (numerator, denominator) = fractional_percent(&value, errs)?;
    Some((numerator * (1_000_000 / denominator)).min(1_000_000) as u32)
}

/// Decodes a `FractionalPercent`: (numerator, denominator), the
/// denominator 100, 10,000 or 1,000,000.
pub(super) fn fractional_percent(node: &Node, errs: &mut Errors) -> Option<(u64, u64)> {
    let percent = node.object(errs, &FRACTIONAL_PERCENT)?;
    let numerator = percent
        .get("numerator")
        .and_then(|n| n.uint(errs, u32::MAX as u64))
        .unwrap_or(0);
    let denominator = match percent.get("denominator") {
        Some(d) => match d.enumeration(errs, &["HUNDRED", "TEN_THOUSAND", "MILLION"])? {
            "HUNDRED" => 100,
            "TEN_THOUSAND" => 10_000,
            _ => 1_000_000,
        },
        None => 100,
    };
    Some((numerator, denominator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_use_regex_crate_syntax() {
        assert_eq!(envoy_substitution(r"/v2/\1/x"), "/v2/${1}/x");
        assert_eq!(envoy_substitution("a$b"), "a$$b");
    }
}
