//! `envoy.filters.http.cors`: the filter (no settings of its own) and its
//! policies — a virtual host's or route's `typed_per_filter_config`
//! `CorsPolicy`, or their `cors` field.

use super::super::node::{Errors, Fields, Node};
use super::super::route_match::{string_matcher, StringMatcher};
use super::{runtime_percent, RuntimePercent};

/// The filter's type.
pub(super) const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
/// A per-route policy's type.
pub(super) const POLICY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

#[rustfmt::skip]
static CORS: Fields = Fields { known: &["@type"], unsupported: &[] };
#[rustfmt::skip]
static CORS_POLICY: Fields = Fields {
    known: &[
        "@type", "allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers",
        "max_age", "allow_credentials", "filter_enabled", "shadow_enabled",
        "allow_private_network_access", "forward_not_matching_preflights",
    ],
    unsupported: &[],
};

/// A CORS policy. Unset fields leave the choice to the next level out
/// (route, then virtual host), as Envoy merges them.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// `allow_origin_string_match`.
    pub allow_origins: Vec<StringMatcher>,
    /// `allow_methods`.
    pub allow_methods: Option<String>,
    /// `allow_headers`.
    pub allow_headers: Option<String>,
    /// `expose_headers`.
    pub expose_headers: Option<String>,
    /// `max_age`.
    pub max_age: Option<String>,
    /// `allow_credentials`.
    pub allow_credentials: Option<bool>,
    /// `allow_private_network_access`.
    pub allow_private_network: Option<bool>,
    /// `forward_not_matching_preflights`.
    pub forward_not_matching_preflights: Option<bool>,
    /// `filter_enabled` (none: enabled).
    pub enabled: Option<RuntimePercent>,
    /// `shadow_enabled` (none: off).
    pub shadow: Option<RuntimePercent>,
}

impl CorsPolicy {
    /// The runtime keys its fractions read.
    pub fn runtime_keys(&self) -> impl Iterator<Item = &str> {
        [&self.enabled, &self.shadow]
            .into_iter()
            .flatten()
            .filter_map(|p| p.runtime_key.as_deref())
    }
}

/// Decodes the filter's (empty) config.
pub(super) fn decode_filter(node: &Node, errs: &mut Errors) -> Option<()> {
    node.object(errs, &CORS).map(|_| ())
}

/// Decodes a `CorsPolicy` (the per-route type, or a virtual host's or
/// route's `cors` field).
pub fn decode_policy(node: &Node, errs: &mut Errors) -> Option<CorsPolicy> {
    let obj = node.object(errs, &CORS_POLICY)?;
    let text = |errs: &mut Errors, field: &str| {
        obj.get(field)
            .and_then(|t| t.str(errs).map(str::to_string))
            .filter(|t| !t.is_empty())
    };
    let flag = |errs: &mut Errors, field: &str| {
        obj.get(field)
            .map(|b| super::super::bootstrap::any_bool(Some(b), errs, false))
    };
    let percent = |errs: &mut Errors, field: &str| match obj.get(field) {
        Some(p) => runtime_percent(&p, errs).map(Some),
        None => Some(None),
    };
    let allow_origins = obj
        .get("allow_origin_string_match")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| string_matcher(&m, errs))
        .collect();
    Some(CorsPolicy {
        allow_origins,
        allow_methods: text(errs, "allow_methods"),
        allow_headers: text(errs, "allow_headers"),
        expose_headers: text(errs, "expose_headers"),
        max_age: text(errs, "max_age"),
        allow_credentials: flag(errs, "allow_credentials"),
        allow_private_network: flag(errs, "allow_private_network_access"),
        forward_not_matching_preflights: flag(errs, "forward_not_matching_preflights"),
        enabled: percent(errs, "filter_enabled")?,
        shadow: percent(errs, "shadow_enabled")?,
    })
}
