//! `envoy.filters.http.csrf`: its `CsrfPolicy`, the filter's and a
//! virtual host's or route's own.

use super::super::node::{Errors, Fields, Node};
use super::super::route_match::{string_matcher, StringMatcher};
use super::{runtime_percent, RuntimePercent};

/// The filter's (and a per-route policy's) type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy";

#[rustfmt::skip]
static CSRF_POLICY: Fields = Fields {
    known: &["@type", "filter_enabled", "shadow_enabled", "additional_origins"],
    unsupported: &[],
};

/// A CSRF policy.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    /// `filter_enabled` (required).
    pub enabled: RuntimePercent,
    /// `shadow_enabled`: judge and count, never refuse.
    pub shadow: Option<RuntimePercent>,
    /// `additional_origins`: origins allowed besides the request's host.
    pub additional_origins: Vec<StringMatcher>,
}

impl CsrfPolicy {
    /// The runtime keys its fractions read.
    pub fn runtime_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.enabled)
            .chain(&self.shadow)
            .filter_map(|p| p.runtime_key.as_deref())
    }
}

/// Decodes a `CsrfPolicy`.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<CsrfPolicy> {
    let obj = node.object(errs, &CSRF_POLICY)?;
    let enabled = runtime_percent(&obj.require(errs, "filter_enabled")?, errs)?;
    let shadow = match obj.get("shadow_enabled") {
        Some(s) => Some(runtime_percent(&s, errs)?),
        None => None,
    };
    let additional_origins = obj
        .get("additional_origins")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| string_matcher(&m, errs))
        .collect();
    Some(CsrfPolicy {
        enabled,
        shadow,
        additional_origins,
    })
}
