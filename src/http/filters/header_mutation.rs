//! `envoy.filters.http.header_mutation`: ordered removals and additions
//! on the request's headers and on every response's. The filter's own
//! mutations run first, then the route levels' (the most specific first
//! unless `most_specific_header_mutations_wins`, so the least specific
//! level has the last word, as in Envoy).

use super::{Decision, ResponseStep, RouteConfig};
use crate::config::{HeaderMutationConfig, HeaderOp};
use crate::http::mutate::Edits;
use crate::router::RequestView;
use std::sync::Arc;

/// One level's mutations, compiled: the filter's or a route's.
#[derive(Debug)]
pub struct Level {
    request: Vec<HeaderOp>,
    response: Arc<[HeaderOp]>,
}

impl Level {
    /// Compiles a level's mutations.
    pub fn compile(config: &HeaderMutationConfig) -> Level {
        Level {
            request: config.request.clone(),
            response: config.response.clone().into(),
        }
    }
}

/// The filter, compiled.
#[derive(Debug)]
pub struct HeaderMutation {
    own: Level,
    most_specific_wins: bool,
}

impl HeaderMutation {
    /// Compiles the filter.
    pub fn compile(config: &HeaderMutationConfig) -> HeaderMutation {
        HeaderMutation {
            own: Level::compile(config),
            most_specific_wins: config.most_specific_wins,
        }
    }

    /// The request-headers phase: edits the request's headers and asks
    /// for the response mutations. `routes` are the levels' own configs
    /// (weighted cluster, route, virtual host, route configuration).
    pub fn on_request(
        &self,
        request: &RequestView,
        routes: [Option<&RouteConfig>; 4],
        decision: &mut Decision,
    ) {
        let mut levels: Vec<&Level> = routes
            .into_iter()
            .flatten()
            .filter_map(|c| match c {
                RouteConfig::HeaderMutation(level) => Some(&**level),
                _ => None,
            })
            .collect();
        if self.most_specific_wins {
            levels.reverse();
        }
        levels.insert(0, &self.own);
        let originals: Vec<&str> = request.headers.iter().map(|h| h.name).collect();
        for level in &levels {
            apply(&level.request, &mut decision.request_edits, &originals);
        }
        let response: Vec<Arc<[HeaderOp]>> = levels
            .iter()
            .filter(|l| !l.response.is_empty())
            .map(|l| l.response.clone())
            .collect();
        if !response.is_empty() {
            decision
                .filtered
                .response
                .push(ResponseStep::Mutate(response));
        }
    }
}

/// Applies `ops` in order to a message whose header names before any
/// edit are `originals`.
pub fn apply(ops: &[HeaderOp], edits: &mut Edits, originals: &[&str]) {
    let original = |name: &str| originals.iter().any(|o| o.eq_ignore_ascii_case(name));
    for op in ops {
        match op {
            HeaderOp::Remove(name) => edits.remove(name),
            HeaderOp::Append(add) => {
                let value = add.value.literal().unwrap_or_default();
                if value.is_empty() && !add.keep_empty {
                    continue;
                }
                edits.append(
                    &add.name,
                    value.into_bytes(),
                    add.action,
                    original(&add.name),
                );
            }
            HeaderOp::RemoveOnMatch(matcher) => {
                let mut names: Vec<String> = originals
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .chain(edits.added.iter().map(|(n, _)| n.clone()))
                    .filter(|n| matcher.matches(n))
                    .collect();
                names.dedup();
                for name in names {
                    edits.remove(&name);
                }
            }
        }
    }
}
