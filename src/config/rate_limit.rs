//! Route and virtual host `rate_limits`: the actions that turn a request
//! into rate limit descriptors (lists of key/value entries), which the
//! local rate limit filter matches against its own descriptors.

use super::node::{Errors, Fields, Node};
use super::route_match::QueryParameterMatcher;
use super::route_match::{header_matcher, query_parameter_matcher, HeaderMatcher};

#[rustfmt::skip]
static RATE_LIMIT: Fields = Fields {
    known: &["stage", "actions"],
    unsupported: &["disable_key", "limit", "hits_addend", "apply_on_stream_done"],
};
#[rustfmt::skip]
static ACTION: Fields = Fields {
    known: &[
        "source_cluster", "destination_cluster", "request_headers", "query_parameters",
        "remote_address", "generic_key", "header_value_match", "masked_remote_address",
        "query_parameter_value_match",
    ],
    unsupported: &["dynamic_metadata", "metadata", "extension"],
};
#[rustfmt::skip]
static EMPTY: Fields = Fields { known: &[], unsupported: &[] };
#[rustfmt::skip]
static REQUEST_HEADERS: Fields = Fields {
    known: &["header_name", "descriptor_key", "skip_if_absent"],
    unsupported: &[],
};
#[rustfmt::skip]
static QUERY_PARAMETERS: Fields = Fields {
    known: &["query_parameter_name", "descriptor_key", "skip_if_absent"],
    unsupported: &[],
};
#[rustfmt::skip]
static GENERIC_KEY: Fields = Fields {
    known: &["descriptor_value", "descriptor_key"],
    unsupported: &[],
};
#[rustfmt::skip]
static HEADER_VALUE_MATCH: Fields = Fields {
    known: &["descriptor_key", "descriptor_value", "expect_match", "headers"],
    unsupported: &[],
};
#[rustfmt::skip]
static QUERY_VALUE_MATCH: Fields = Fields {
    known: &["descriptor_key", "descriptor_value", "expect_match", "query_parameters"],
    unsupported: &[],
};
#[rustfmt::skip]
static MASKED: Fields = Fields {
    known: &["v4_prefix_mask_len", "v6_prefix_mask_len"],
    unsupported: &[],
};

/// One `rate_limits` entry: a descriptor made of its actions' entries.
#[derive(Debug, Clone)]
pub struct RateLimitPolicy {
    /// `stage` (0 to 10): the filters of that stage read it.
    pub stage: u32,
    /// `actions`, in order.
    pub actions: Vec<RateLimitAction>,
}

/// How one descriptor entry is made from a request.
#[derive(Debug, Clone)]
pub enum RateLimitAction {
    /// `source_cluster`: `("source_cluster", node.cluster)`.
    SourceCluster,
    /// `destination_cluster`: `("destination_cluster", the route's cluster)`.
    DestinationCluster,
    /// `request_headers`: the header's first value under `key`.
    RequestHeaders {
        /// `header_name` (lower-case).
        header: String,
        /// `descriptor_key`.
        key: String,
        /// `skip_if_absent`: no entry (rather than no descriptor).
        skip_if_absent: bool,
    },
    /// `query_parameters`: a query parameter's value under `key`.
    QueryParameters {
        /// `query_parameter_name`.
        name: String,
        /// `descriptor_key`.
        key: String,
        /// `skip_if_absent`.
        skip_if_absent: bool,
    },
    /// `remote_address`: the client's address (after `x-forwarded-for`).
    RemoteAddress,
    /// `masked_remote_address`: the client's network, `addr/len`.
    MaskedRemoteAddress {
        /// `v4_prefix_mask_len` (32 by default).
        v4: u8,
        /// `v6_prefix_mask_len` (128 by default).
        v6: u8,
    },
    /// `generic_key`: a fixed entry.
    GenericKey {
        /// `descriptor_key` (`generic_key` by default).
        key: String,
        /// `descriptor_value`.
        value: String,
    },
    /// `header_value_match`: a fixed entry when the headers match (or,
    /// with `expect_match: false`, when they do not).
    HeaderValueMatch {
        /// `descriptor_key` (`header_match` by default).
        key: String,
        /// `descriptor_value`.
        value: String,
        /// `expect_match` (true by default).
        expect_match: bool,
        /// `headers`: all must match.
        headers: Vec<HeaderMatcher>,
    },
    /// `query_parameter_value_match`: as `header_value_match`, over query
    /// parameters.
    QueryParameterValueMatch {
        /// `descriptor_key` (`query_match` by default).
        key: String,
        /// `descriptor_value`.
        value: String,
        /// `expect_match` (true by default).
        expect_match: bool,
        /// `query_parameters`: all must match.
        parameters: Vec<QueryParameterMatcher>,
    },
}

/// Decodes a `rate_limits` list.
pub fn rate_limits(node: &Node, errs: &mut Errors) -> Vec<RateLimitPolicy> {
    node.list(errs)
        .iter()
        .filter_map(|item| policy(item, errs))
        .collect()
}

fn policy(node: &Node, errs: &mut Errors) -> Option<RateLimitPolicy> {
    let obj = node.object(errs, &RATE_LIMIT)?;
    let stage = match obj.get("stage") {
        Some(s) => super::bootstrap::wrapped_uint(&s, errs, 10)? as u32,
        None => 0,
    };
    let actions = one_or_more(&obj, errs, "actions", |a, errs| action(&a, errs))?;
    Some(RateLimitPolicy { stage, actions })
}

/// A required list of at least one item, each decoded by `item`; None
/// unless all decode.
fn one_or_more<'a, T>(
    obj: &super::node::Obj<'a>,
    errs: &mut Errors,
    field: &str,
    item: impl Fn(Node<'a>, &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    let list = obj.require(errs, field)?;
    let items = list.list(errs);
    if items.is_empty() {
        errs.add(list.path(), "value must contain at least 1 item(s)");
        return None;
    }
    items
        .into_iter()
        .map(|i| item(i, errs))
        .collect::<Option<Vec<_>>>()
}

fn text(obj: &super::node::Obj, errs: &mut Errors, field: &str, default: &str) -> String {
    obj.get(field)
        .and_then(|s| s.str(errs).map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn flag(obj: &super::node::Obj, errs: &mut Errors, field: &str, default: bool) -> bool {
    match obj.get(field) {
        Some(b) => super::bootstrap::any_bool(Some(b), errs, default),
        None => default,
    }
}

fn action(node: &Node, errs: &mut Errors) -> Option<RateLimitAction> {
    let (field, value) = super::filters::one_of(node, errs, &ACTION, "rate limit action")?;
    Some(match field {
        "source_cluster" => {
            value.object(errs, &EMPTY)?;
            RateLimitAction::SourceCluster
        }
        "destination_cluster" => {
            value.object(errs, &EMPTY)?;
            RateLimitAction::DestinationCluster
        }
        "remote_address" => {
            value.object(errs, &EMPTY)?;
            RateLimitAction::RemoteAddress
        }
        "request_headers" => {
            let o = value.object(errs, &REQUEST_HEADERS)?;
            RateLimitAction::RequestHeaders {
                header: o.non_empty_str(errs, "header_name")?.to_ascii_lowercase(),
                key: o.non_empty_str(errs, "descriptor_key")?,
                skip_if_absent: flag(&o, errs, "skip_if_absent", false),
            }
        }
        "query_parameters" => {
            let o = value.object(errs, &QUERY_PARAMETERS)?;
            RateLimitAction::QueryParameters {
                name: o.non_empty_str(errs, "query_parameter_name")?,
                key: o.non_empty_str(errs, "descriptor_key")?,
                skip_if_absent: flag(&o, errs, "skip_if_absent", false),
            }
        }
        "generic_key" => {
            let o = value.object(errs, &GENERIC_KEY)?;
            RateLimitAction::GenericKey {
                key: text(&o, errs, "descriptor_key", "generic_key"),
                value: o.non_empty_str(errs, "descriptor_value")?,
            }
        }
        "header_value_match" => {
            let o = value.object(errs, &HEADER_VALUE_MATCH)?;
            RateLimitAction::HeaderValueMatch {
                key: text(&o, errs, "descriptor_key", "header_match"),
                value: o.non_empty_str(errs, "descriptor_value")?,
                expect_match: flag(&o, errs, "expect_match", true),
                headers: one_or_more(&o, errs, "headers", header_matcher)?,
            }
        }
        "query_parameter_value_match" => {
            let o = value.object(errs, &QUERY_VALUE_MATCH)?;
            RateLimitAction::QueryParameterValueMatch {
                key: text(&o, errs, "descriptor_key", "query_match"),
                value: o.non_empty_str(errs, "descriptor_value")?,
                expect_match: flag(&o, errs, "expect_match", true),
                parameters: one_or_more(&o, errs, "query_parameters", query_parameter_matcher)?,
            }
        }
        _ => {
            let o = value.object(errs, &MASKED)?;
            let len = |errs: &mut Errors, field: &str, max: u64| match o.get(field) {
                Some(n) => super::bootstrap::wrapped_uint(&n, errs, max).map(|n| n as u8),
                None => Some(max as u8),
            };
            RateLimitAction::MaskedRemoteAddress {
                v4: len(errs, "v4_prefix_mask_len", 32)?,
                v6: len(errs, "v6_prefix_mask_len", 128)?,
            }
        }
    })
}
