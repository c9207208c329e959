//! `envoy.filters.http.header_mutation`: ordered header mutations for
//! requests and responses, the filter's and a virtual host's or route's
//! own.

use super::super::node::{Errors, Fields, Node};
use super::super::route_action::{header_to_add, HeaderToAdd};
use super::super::route_match::{string_matcher, StringMatcher};
use super::{decode_all, one_of};

/// The filter's type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
/// A virtual host's or route's own mutations.
pub(super) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";

#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &["@type", "mutations", "most_specific_header_mutations_wins"],
    unsupported: &[],
};
#[rustfmt::skip]
static PER_ROUTE: Fields = Fields { known: &["@type", "mutations"], unsupported: &[] };
#[rustfmt::skip]
static MUTATIONS: Fields = Fields {
    known: &["request_mutations", "response_mutations"],
    unsupported: &[
        "query_parameter_mutations", "response_trailers_mutations", "request_trailers_mutations",
    ],
};
#[rustfmt::skip]
static MUTATION: Fields = Fields {
    known: &["remove", "append", "remove_on_match"],
    unsupported: &[],
};
#[rustfmt::skip]
static REMOVE_ON_MATCH: Fields = Fields { known: &["key_matcher"], unsupported: &[] };

/// One mutation, applied in order.
#[derive(Debug, Clone)]
pub enum HeaderOp {
    /// `remove`: every line of the header (lower-cased name).
    Remove(String),
    /// `append`: a header value option.
    Append(HeaderToAdd),
    /// `remove_on_match`: every header whose name matches.
    RemoveOnMatch(StringMatcher),
}

/// A level's mutations: the filter's or a route's.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutationConfig {
    /// `mutations.request_mutations`.
    pub request: Vec<HeaderOp>,
    /// `mutations.response_mutations`.
    pub response: Vec<HeaderOp>,
    /// `most_specific_header_mutations_wins` (the filter's only): the
    /// route's mutations run after the virtual host's, not before.
    pub most_specific_wins: bool,
}

/// Decodes the filter's `HeaderMutation`.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<HeaderMutationConfig> {
    let obj = node.object(errs, &FILTER)?;
    let mut config = match obj.get("mutations") {
        Some(m) => mutations(&m, errs)?,
        None => HeaderMutationConfig::default(),
    };
    config.most_specific_wins = match obj.get("most_specific_header_mutations_wins") {
        Some(b) => b.bool(errs)?,
        None => false,
    };
    Some(config)
}

/// Decodes a `HeaderMutationPerRoute`.
pub(super) fn decode_per_route(node: &Node, errs: &mut Errors) -> Option<HeaderMutationConfig> {
    let obj = node.object(errs, &PER_ROUTE)?;
    match obj.get("mutations") {
        Some(m) => mutations(&m, errs),
        None => Some(HeaderMutationConfig::default()),
    }
}

fn mutations(node: &Node, errs: &mut Errors) -> Option<HeaderMutationConfig> {
    let obj = node.object(errs, &MUTATIONS)?;
    let list = |errs: &mut Errors, name: &str| -> Option<Vec<HeaderOp>> {
        match obj.get(name) {
            Some(items) => decode_all(&items, errs, op),
            None => Some(Vec::new()),
        }
    };
    Some(HeaderMutationConfig {
        request: list(errs, "request_mutations")?,
        response: list(errs, "response_mutations")?,
        most_specific_wins: false,
    })
}

fn op(node: &Node, errs: &mut Errors) -> Option<HeaderOp> {
    let (field, value) = one_of(node, errs, &MUTATION, "mutation")?;
    match field {
        "remove" => {
            let name = value.str(errs)?.to_ascii_lowercase();
            if name.is_empty() || name.starts_with(':') || name == "host" {
                errs.add(value.path(), format!("{name:?} cannot be removed this way"));
                return None;
            }
            Some(HeaderOp::Remove(name))
        }
        "append" => {
            let add = header_to_add(value.clone(), errs)?;
            if add.value.literal().is_none() {
                errs.add(
                    value.path(),
                    "header values with %OPERATOR%s are not supported yet",
                );
                return None;
            }
            Some(HeaderOp::Append(add))
        }
        _ => {
            let m = value.object(errs, &REMOVE_ON_MATCH)?;
            Some(HeaderOp::RemoveOnMatch(string_matcher(
                &m.require(errs, "key_matcher")?,
                errs,
            )?))
        }
    }
}
