//! The HTTP filter chain: the filters a connection manager's
//! `http_filters` names before its router, run on each request's headers
//! once its route is known (Envoy's filters see the route too). A filter
//! lets the request go on, answers it locally, or asks for headers on the
//! response. Dispatch is a match over [`Kind`]: no boxed filter per
//! request, and a chain of only the router is an empty loop.

pub mod fault;
pub mod health_check;

use crate::config;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::{Matched, RequestView};
use crate::server::shard::Shard;
use crate::stats::Store;
use std::collections::HashMap;
use std::time::Duration;

/// A connection manager's filters, compiled.
#[derive(Debug, Default)]
pub struct Chain {
    filters: Vec<Filter>,
}

/// One filter of the chain.
#[derive(Debug)]
struct Filter {
    /// `name`: what routes' `typed_per_filter_config` call it.
    name: String,
    /// `disabled`: off unless a route enables it.
    disabled: bool,
    kind: Kind,
}

/// The filters Ringway implements, compiled.
#[derive(Debug)]
enum Kind {
    HealthCheck(health_check::HealthCheck),
    Fault(fault::Fault),
}

/// What the filters decided about a request.
#[derive(Debug, Default)]
pub struct Decision {
    /// A filter answered: this reply, with these response flags.
    pub reply: Option<(LocalReply<'static>, ResponseFlags)>,
    /// What they ask of the rest of the exchange.
    pub filtered: Filtered,
}

/// What the filters ask of a request's exchange (it carries this).
#[derive(Debug, Default)]
pub struct Filtered {
    /// Headers every response to the request carries.
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// A health check of this proxy: left out of the response stats, as
    /// Envoy leaves it.
    pub health_check: bool,
    /// Hold the request this long before going on (a fault's delay).
    pub delay: Option<Duration>,
    /// The fault injected into the request, counted active until it ends.
    pub fault: Option<fault::ActiveFault>,
}

/// What compiling a chain reads besides its config.
pub struct Context<'a> {
    /// The connection manager's `stat_prefix`.
    pub stat_prefix: &'a str,
    /// The stats.
    pub store: &'a Store,
    /// Cluster positions by name.
    pub clusters: &'a HashMap<String, usize>,
    /// `node.cluster`: this proxy's service cluster.
    pub service_cluster: &'a str,
}

impl Chain {
    /// Compiles `http_filters`.
    pub fn compile(filters: &[config::HttpFilter], cx: &Context) -> Chain {
        let filters = filters
            .iter()
            .map(|f| Filter {
                name: f.name.clone(),
                disabled: f.disabled,
                kind: match &f.kind {
                    config::FilterKind::HealthCheck(c) => {
                        Kind::HealthCheck(health_check::HealthCheck::compile(c, cx))
                    }
                    config::FilterKind::Fault(c) => Kind::Fault(fault::Fault::compile(c, cx)),
                },
            })
            .collect();
        Chain { filters }
    }

    /// Runs the request-headers phase of every filter enabled for the
    /// `matched` route (going to `cluster`, by position), in order, until
    /// one answers.
    pub fn on_request(
        &self,
        request: &RequestView,
        matched: Option<Matched>,
        cluster: Option<usize>,
        shard: &Shard,
    ) -> Decision {
        let mut decision = Decision::default();
        for filter in &self.filters {
            // A route's own config enables a filter disabled by default.
            let route_config = matched.and_then(|m| m.filter_config(&filter.name));
            let (run, fault) = match route_config {
                Some(config::RouteFilterConfig::Disabled) => (false, None),
                Some(config::RouteFilterConfig::Fault(f)) => (true, Some(f)),
                None => (!filter.disabled, None),
            };
            if !run {
                continue;
            }
            match &filter.kind {
                Kind::HealthCheck(hc) => hc.on_request(request, shard, &mut decision),
                Kind::Fault(f) => f.on_request(request, cluster, fault, shard, &mut decision),
            }
            if decision.reply.is_some() {
                break;
            }
        }
        decision
    }
}
