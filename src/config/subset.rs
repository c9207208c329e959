//! Decoding subset load balancing: a cluster's `lb_subset_config`, its
//! endpoints' `metadata.filter_metadata["envoy.lb"]`, and a route's
//! `metadata_match`. Metadata values are kept as their JSON text, which
//! tells an integer from a fraction as Envoy 1.40 does (`3` matches `3`,
//! not `3.0`).

use super::node::{Errors, Fields, Node, Obj};
use serde_json::Value;

/// The metadata namespace the subset load balancer reads.
pub const LB_NAMESPACE: &str = "envoy.lb";

/// Metadata keys with canonical values, sorted by key.
pub type LbMetadata = Vec<(String, String)>;

/// What a cluster does when a request matches no subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsetFallback {
    /// `NO_FALLBACK`: no host (503).
    None,
    /// `ANY_ENDPOINT`: any host of the cluster.
    Any,
    /// `DEFAULT_SUBSET`: the hosts matching `default_subset`.
    Default,
}

/// One `subset_selectors[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetSelector {
    /// `keys`, sorted and without duplicates.
    pub keys: Vec<String>,
    /// `fallback_policy`, unless `NOT_DEFINED` (the cluster's applies).
    pub fallback: Option<SubsetFallback>,
}

/// `lb_subset_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetConfig {
    /// `fallback_policy` (default `NO_FALLBACK`).
    pub fallback: SubsetFallback,
    /// `default_subset`.
    pub default_subset: LbMetadata,
    /// `subset_selectors`.
    pub selectors: Vec<SubsetSelector>,
}

#[rustfmt::skip]
static LB_SUBSET_CONFIG: Fields = Fields {
    known: &["fallback_policy", "default_subset", "subset_selectors"],
    unsupported: &[
        "locality_weight_aware", "scale_locality_weight", "panic_mode_any", "list_as_any",
        "metadata_fallback_policy", "allow_redundant_keys",
    ],
};
#[rustfmt::skip]
static SUBSET_SELECTOR: Fields = Fields {
    known: &["keys", "fallback_policy"],
    unsupported: &["single_host_per_subset", "fallback_keys_subset"],
};
#[rustfmt::skip]
static METADATA: Fields = Fields {
    known: &["filter_metadata"],
    unsupported: &["typed_filter_metadata"],
};

/// Decodes a cluster's `lb_subset_config`.
pub fn subset_config(node: &Node, errs: &mut Errors) -> Option<SubsetConfig> {
    let obj = node.object(errs, &LB_SUBSET_CONFIG)?;
    let fallback = match obj.get("fallback_policy") {
        Some(f) => match f.enumeration(errs, &["NO_FALLBACK", "ANY_ENDPOINT", "DEFAULT_SUBSET"])? {
            "ANY_ENDPOINT" => SubsetFallback::Any,
            "DEFAULT_SUBSET" => SubsetFallback::Default,
            _ => SubsetFallback::None,
        },
        None => SubsetFallback::None,
    };
    let default_subset = obj
        .get("default_subset")
        .and_then(|d| structure(&d, errs))
        .unwrap_or_default();
    let selectors = obj
        .get("subset_selectors")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| selector(s, errs))
        .collect();
    Some(SubsetConfig {
        fallback,
        default_subset,
        selectors,
    })
}

fn selector(node: Node, errs: &mut Errors) -> Option<SubsetSelector> {
    let obj = node.object(errs, &SUBSET_SELECTOR)?;
    let mut keys: Vec<String> = obj
        .get("keys")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| k.str(errs).map(str::to_string))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let choices = [
        "NOT_DEFINED",
        "NO_FALLBACK",
        "ANY_ENDPOINT",
        "DEFAULT_SUBSET",
        "KEYS_SUBSET",
    ];
    let fallback = match obj.get("fallback_policy") {
        Some(f) => match f.enumeration(errs, &choices)? {
            "NO_FALLBACK" => Some(SubsetFallback::None),
            "ANY_ENDPOINT" => Some(SubsetFallback::Any),
            "DEFAULT_SUBSET" => Some(SubsetFallback::Default),
            "KEYS_SUBSET" => {
                errs.add(f.path(), "KEYS_SUBSET is not supported by Ringway");
                None
            }
            _ => None,
        },
        None => None,
    };
    Some(SubsetSelector { keys, fallback })
}

/// Decodes a `metadata` block (an endpoint's or a route's
/// `metadata_match`): its `envoy.lb` keys and values; other namespaces
/// are data for filters Ringway does not have, and stay unread.
pub fn lb_metadata(node: &Node, errs: &mut Errors) -> LbMetadata {
    let Some(obj) = node.object(errs, &METADATA) else {
        return Vec::new();
    };
    namespace(&obj, errs).unwrap_or_default()
}

fn namespace(obj: &Obj, errs: &mut Errors) -> Option<LbMetadata> {
    let filter = obj.get("filter_metadata")?;
    if !filter.value().is_object() {
        errs.add(filter.path(), "expected a mapping of namespaces");
        return None;
    }
    structure(&filter.entry(LB_NAMESPACE)?, errs)
}

/// A `google.protobuf.Struct` as sorted keys with canonical values.
fn structure(node: &Node, errs: &mut Errors) -> Option<LbMetadata> {
    let Value::Object(map) = node.value() else {
        errs.add(node.path(), "expected a mapping (a google.protobuf.Struct)");
        return None;
    };
    let mut pairs: LbMetadata = map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
    pairs.sort_unstable();
    Some(pairs)
}

/// A metadata value as the text subsets compare.
fn canonical(value: &Value) -> String {
    value.to_string()
}
