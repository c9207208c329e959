//! The HTTP filter chain: the filters a connection manager's
//! `http_filters` names before its router, run on each request's headers
//! once its route is known (Envoy's filters see the route too). A filter
//! lets the request go on, answers it locally, edits the request's
//! headers (the filters after it see the edits) or path, has the route
//! matched again, asks for the body to be buffered, or asks for headers
//! on the response, or waits on a call to a service (the chain stops at
//! it and resumes there with the answer; the filters before it do not
//! run again). Dispatch is a match over [`Kind`]: no boxed filter per
//! request, and a chain of only the router is an empty loop.

pub mod buffer;
pub mod cluster_counters;
pub mod cors;
pub mod csrf;
pub mod descriptors;
pub mod ext_authz;
pub mod ext_authz_grpc;
pub mod fault;
pub mod header_mutation;
pub mod health_check;
pub mod jwt_authn;
pub mod local_ratelimit;
pub mod ratelimit;
pub mod rbac;
pub mod remote_jwks;

use crate::config;
use crate::http::flags::ResponseFlags;
use crate::http::head::Peer;
use crate::http::local_reply::LocalReply;
use crate::http::mutate::Edits;
use crate::net::Address;
use crate::router::{Matched, RequestView};
use crate::server::shard::Shard;
use crate::stats::Store;
use crate::token_bucket::TokenBucket;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Matches the route again over the request's headers as the filters
/// edited them: the route and the cluster it goes to, by position.
pub type Reroute<'f, 'm> = dyn FnMut(&Edits) -> (Option<Matched<'m>>, Option<usize>) + 'f;

/// A connection manager's filters, compiled.
#[derive(Debug, Default)]
pub struct Chain {
    filters: Vec<Filter>,
    /// `node.cluster` (rate limit descriptors' `source_cluster`).
    service_cluster: String,
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
    LocalRateLimit(Box<local_ratelimit::LocalRateLimit>),
    Cors(cors::Cors),
    Csrf(Box<csrf::Csrf>),
    Rbac(Box<rbac::Rbac>),
    HeaderMutation(Box<header_mutation::HeaderMutation>),
    JwtAuthn(Box<jwt_authn::JwtAuthn>),
    Buffer(config::BufferConfig),
    ExtAuthz(Box<ext_authz::ExtAuthz>),
    RateLimit(Box<ratelimit::RateLimit>),
}

/// What a virtual host or route says about one filter, compiled.
#[derive(Debug)]
pub enum RouteConfig {
    /// The filter does not run here.
    Disabled,
    /// The fault filter's settings for here.
    Fault(config::FaultConfig),
    /// The local rate limit filter's settings, with their own bucket.
    LocalRateLimit(Box<local_ratelimit::LocalRateLimit>),
    /// The CORS filter's policy for here.
    Cors(Box<cors::Policy>),
    /// The CSRF filter's policy for here.
    Csrf(Box<csrf::Policy>),
    /// The RBAC filter's rules for here.
    Rbac(Box<rbac::Rules>),
    /// The header mutation filter's mutations for here.
    HeaderMutation(Box<header_mutation::Level>),
    /// The JWT filter's requirement for here.
    JwtAuthn(config::JwtPerRoute),
    /// The buffer filter's settings for here.
    Buffer(config::BufferConfig),
    /// The external authorization filter's settings for here.
    ExtAuthz(config::ExtAuthzPerRoute),
}

/// A virtual host's or route's `typed_per_filter_config`, compiled, by
/// filter name.
pub type RouteConfigs = Vec<(String, RouteConfig)>;

/// Compiles a level's `typed_per_filter_config` (its stats in `store`).
pub fn route_configs(configs: &config::PerFilterConfigs, store: &Store) -> RouteConfigs {
    configs
        .iter()
        .map(|(name, c)| {
            let compiled = match c {
                config::RouteFilterConfig::Disabled => RouteConfig::Disabled,
                config::RouteFilterConfig::Fault(f) => RouteConfig::Fault(f.clone()),
                config::RouteFilterConfig::LocalRateLimit(l) => RouteConfig::LocalRateLimit(
                    Box::new(local_ratelimit::LocalRateLimit::compile(l, store)),
                ),
                config::RouteFilterConfig::Cors(c) => {
                    RouteConfig::Cors(Box::new(cors::Policy::compile(c, store)))
                }
                config::RouteFilterConfig::Csrf(c) => {
                    RouteConfig::Csrf(Box::new(csrf::Policy::compile(c, store)))
                }
                config::RouteFilterConfig::Rbac(c) => {
                    RouteConfig::Rbac(Box::new(rbac::Rules::compile(c)))
                }
                config::RouteFilterConfig::HeaderMutation(c) => {
                    RouteConfig::HeaderMutation(Box::new(header_mutation::Level::compile(c)))
                }
                config::RouteFilterConfig::JwtAuthn(c) => RouteConfig::JwtAuthn(c.clone()),
                config::RouteFilterConfig::Buffer(c) => RouteConfig::Buffer(*c),
                config::RouteFilterConfig::ExtAuthz(c) => RouteConfig::ExtAuthz(c.clone()),
            };
            (name.clone(), compiled)
        })
        .collect()
}

/// The request's header lines after `edits`: the originals they keep,
/// then the lines they added.
pub fn edited_headers<'a>(
    request: &RequestView<'a>,
    edits: &'a Edits,
) -> Vec<httparse::Header<'a>> {
    request
        .headers
        .iter()
        .filter(|h| edits.keeps(h.name))
        .copied()
        .chain(
            edits
                .added
                .iter()
                .map(|(name, value)| httparse::Header { name, value }),
        )
        .collect()
}

/// [`edited_headers`], owned (the edits go on changing).
fn edited_lines(request: &RequestView, edits: &Edits) -> Vec<(String, Vec<u8>)> {
    edited_headers(request, edits)
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

/// Header lines over `owned` ones.
fn header_lines(owned: &[(String, Vec<u8>)]) -> Vec<httparse::Header<'_>> {
    owned
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect()
}

/// What filters keep per downstream connection.
#[derive(Debug, Default)]
pub struct ConnectionState {
    /// The connection's local rate limit bucket, made on first use.
    rate_limit: OnceCell<TokenBucket>,
    /// The connection speaks HTTP/2.
    http2: std::cell::Cell<bool>,
}

impl ConnectionState {
    /// Notes that the connection speaks HTTP/2.
    pub fn set_http2(&self) {
        self.http2.set(true);
    }

    /// Whether the connection speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2.get()
    }
}

/// The connection a request came on, as filters see it.
pub struct Downstream<'a> {
    /// The connection's ends, TLS session and filter state.
    pub peer: &'a Peer,
    /// The client, as `x-forwarded-for` and the connection manager's
    /// trust in it say.
    pub client: &'a Address,
}

/// What the filters decided about a request.
#[derive(Debug, Default)]
pub struct Decision {
    /// A filter answered: this reply, with these response flags.
    pub reply: Option<(LocalReply<'static>, ResponseFlags)>,
    /// What they ask of the rest of the exchange.
    pub filtered: Filtered,
    /// Their edits to the request's headers (before the route's own).
    pub request_edits: Edits,
    /// The request's `:path` as a filter rewrote it.
    pub path: Option<String>,
    /// A filter changed what the route depends on: it is matched again
    /// (Envoy's `clearRouteCache`).
    pub clear_route_cache: bool,
    /// A filter waits on this call: the chain stopped at it.
    pub call: Option<Call>,
    /// The position of the filter that waits on `call`.
    stopped_at: usize,
    /// What that filter made the call for (its own tag).
    call_tag: usize,
    /// The calls this request made, by filter position and tag, and
    /// whether each succeeded (a filter that runs again after its call
    /// knows them).
    made_calls: Vec<(usize, usize, bool)>,
}

impl Decision {
    /// Has the request wait on `call`, which the filter tags `tag`.
    pub fn wait_on(&mut self, call: Call, tag: usize) {
        self.call = Some(call);
        self.call_tag = tag;
    }

    /// The tags of the calls the filter at `at` made that came to `ok`.
    fn calls_of(&self, at: usize, ok: bool) -> Vec<usize> {
        self.made_calls
            .iter()
            .filter(|(filter, _, done)| *filter == at && *done == ok)
            .map(|(_, tag, _)| *tag)
            .collect()
    }
}

/// A filter's request to a service, sent through the shard's upstream
/// pools as Envoy's async client sends it: to one cluster, within a
/// timeout, without retries.
#[derive(Debug)]
pub struct Call {
    /// How it is forwarded and its cluster by position (None: the config
    /// names no such cluster, and the call fails without being sent).
    pub to: Option<(Arc<crate::router::Forward>, usize)>,
    /// The request head (HTTP/1.1 form, its framing header included).
    pub head: Vec<u8>,
    /// Where its `host` and `x-envoy-expected-rq-timeout-ms` values are.
    pub slots: crate::http::head::HeadSlots,
    /// The request body.
    pub body: Vec<u8>,
}

impl Call {
    /// A call as Envoy's async client makes it: `method` `path` to
    /// `host` with `headers` and `body` (its `content-length` added),
    /// marked `x-envoy-internal`, its `timeout` announced in
    /// `x-envoy-expected-rq-timeout-ms`.
    pub fn new(
        to: Option<(Arc<crate::router::Forward>, usize)>,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &[u8])],
        timeout: Duration,
        body: Vec<u8>,
    ) -> Call {
        use crate::http::codec::{push_header, push_number_header};
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        let host_start = head.len();
        head.extend_from_slice(host.as_bytes());
        let host = host_start..head.len();
        head.extend_from_slice(b"\r\n");
        push_number_header(&mut head, "content-length", body.len() as u64);
        for (name, value) in headers {
            push_header(&mut head, name, value);
        }
        push_header(&mut head, "x-envoy-internal", b"true");
        push_number_header(
            &mut head,
            "x-envoy-expected-rq-timeout-ms",
            timeout.as_millis() as u64,
        );
        let end = head.len() - 2;
        let timeout_start = end - timeout.as_millis().to_string().len();
        head.extend_from_slice(b"\r\n");
        Call {
            to,
            head,
            slots: crate::http::head::HeadSlots {
                host,
                expected_timeout: Some(timeout_start..end),
            },
            body,
        }
    }
}

/// What a call came to: the service's response, or the local reply that
/// stood in for one (a timeout's 504, a failed connection's 503).
#[derive(Debug, Default)]
pub struct Answer {
    /// Its status; 0 when the call could not be made.
    pub status: u16,
    /// Its headers, names lower-cased, framing and hop-by-hop ones left out.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its body.
    pub body: Vec<u8>,
    /// The trailers that ended it (an HTTP/2 answer's; gRPC's status).
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Answer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }

    /// The first value of trailer `name` (lower-case).
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        first(&self.trailers, name)
    }

    /// The one message of a successful unary gRPC call: HTTP 200, gRPC
    /// status 0 (in the trailers, or the headers of a trailers-only
    /// answer), one uncompressed message.
    pub fn grpc_message(&self) -> Option<&[u8]> {
        if self.status != 200 {
            return None;
        }
        let status = self
            .trailer("grpc-status")
            .or_else(|| self.header("grpc-status"))?;
        if crate::http::grpc::parse_status(status) != 0 {
            return None;
        }
        crate::http::grpc::unframe(&self.body)
    }
}

fn first<'a>(lines: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    lines
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// What a filter does to every response to the request.
#[derive(Debug)]
pub enum ResponseStep {
    /// Adds a header.
    Add(String, Vec<u8>),
    /// Sets a header in place of any of the same name.
    Set(String, Vec<u8>),
    /// Applies levels of header mutations, in order.
    Mutate(Vec<Arc<[config::HeaderOp]>>),
}

/// Applies the filters' `steps` to a response after the route's `edits`,
/// the last filter's first (Envoy encodes in reverse order); `originals`
/// are the response's header names before any edit.
pub fn shape_response(steps: &[ResponseStep], edits: &mut Edits, originals: &[&str]) {
    for step in steps.iter().rev() {
        match step {
            ResponseStep::Add(name, value) => edits.added.push((name.clone(), value.clone())),
            ResponseStep::Set(name, value) => {
                edits.remove(name);
                edits.added.push((name.clone(), value.clone()));
            }
            ResponseStep::Mutate(levels) => {
                for ops in levels {
                    header_mutation::apply(ops, edits, originals);
                }
            }
        }
    }
}

/// What the filters ask of a request's exchange (it carries this).
#[derive(Debug, Default)]
pub struct Filtered {
    /// What they do to every response to the request, in the order the
    /// filters ran.
    pub response: Vec<ResponseStep>,
    /// A health check of this proxy: left out of the response stats, as
    /// Envoy leaves it.
    pub health_check: bool,
    /// Hold the request this long before going on (a fault's delay).
    pub delay: Option<Duration>,
    /// The fault injected into the request, counted active until it ends.
    pub fault: Option<fault::ActiveFault>,
    /// Read the whole request body, up to this many bytes, before
    /// forwarding (the buffer filter).
    pub buffer: Option<u64>,
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
    /// What rate limit actions read of a request going to `cluster`.
    fn facts<'a>(
        &'a self,
        request: &'a RequestView<'a>,
        downstream: &Downstream<'a>,
        cluster: Option<usize>,
        snapshot: &'a crate::snapshot::ConfigSnapshot,
    ) -> descriptors::Facts<'a> {
        descriptors::Facts {
            request,
            client: downstream.client,
            service_cluster: &self.service_cluster,
            destination: cluster
                .and_then(|c| snapshot.clusters.get(c))
                .map(|c| c.config.name.as_str()),
        }
    }

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
                    config::FilterKind::LocalRateLimit(c) => Kind::LocalRateLimit(Box::new(
                        local_ratelimit::LocalRateLimit::compile(c, cx.store),
                    )),
                    config::FilterKind::Cors => {
                        Kind::Cors(cors::Cors::compile(cx.store, cx.stat_prefix))
                    }
                    config::FilterKind::Csrf(c) => {
                        Kind::Csrf(Box::new(csrf::Csrf::compile(c, cx.store, cx.stat_prefix)))
                    }
                    config::FilterKind::Rbac(c) => {
                        Kind::Rbac(Box::new(rbac::Rbac::compile(c, cx.store, cx.stat_prefix)))
                    }
                    config::FilterKind::HeaderMutation(c) => {
                        Kind::HeaderMutation(Box::new(header_mutation::HeaderMutation::compile(c)))
                    }
                    config::FilterKind::Buffer(c) => Kind::Buffer(*c),
                    config::FilterKind::ExtAuthz(c) => {
                        Kind::ExtAuthz(Box::new(ext_authz::ExtAuthz::compile(c, cx)))
                    }
                    config::FilterKind::RateLimit(c) => {
                        Kind::RateLimit(Box::new(ratelimit::RateLimit::compile(c, cx)))
                    }
                    config::FilterKind::JwtAuthn(c) => {
                        Kind::JwtAuthn(Box::new(jwt_authn::JwtAuthn::compile(c, cx)))
                    }
                },
            })
            .collect();
        Chain {
            filters,
            service_cluster: cx.service_cluster.to_string(),
        }
    }

    /// Runs the request-headers phase of every filter enabled for the
    /// `matched` route (going to `cluster`, by position), in order, until
    /// one answers or waits on a call (`Decision::call`). Each filter sees
    /// the request's headers as the filters before it edited them, as
    /// Envoy's do. A filter that clears the route cache has the route
    /// matched again (`reroute`, over the edited headers) for the filters
    /// after it. `resumed`: the decision of a chain that stopped for a
    /// call, with the call's answer; the chain goes on from the filter
    /// that waited.
    #[allow(clippy::too_many_arguments)]
    pub fn on_request<'m>(
        &self,
        received: &RequestView,
        mut matched: Option<Matched<'m>>,
        mut cluster: Option<usize>,
        downstream: &Downstream,
        shard: &Shard,
        reroute: &mut Reroute<'_, 'm>,
        resumed: Option<(Decision, Answer)>,
    ) -> Decision {
        let (mut decision, start) = match resumed {
            Some((mut decision, answer)) => {
                let at = decision.stopped_at;
                // Whether the filter that waited runs again.
                let mut again = false;
                match self.filters.get(at).map(|f| &f.kind) {
                    Some(Kind::ExtAuthz(e)) => {
                        // The request as the filters before it left it.
                        let owned = edited_lines(received, &decision.request_edits);
                        let lines = header_lines(&owned);
                        let request = RequestView {
                            headers: &lines,
                            ..*received
                        };
                        e.on_answer(answer, &request, cluster, shard, &mut decision);
                    }
                    Some(Kind::RateLimit(r)) => r.on_answer(answer, cluster, shard, &mut decision),
                    // It keeps the keys it fetched and runs again.
                    Some(Kind::JwtAuthn(j)) => {
                        let tag = decision.call_tag;
                        let ok = j.on_fetched(&answer, tag, shard);
                        decision.made_calls.push((at, tag, ok));
                        again = true;
                    }
                    _ => {}
                }
                if decision.reply.is_some() {
                    return decision;
                }
                (decision, if again { at } else { at + 1 })
            }
            None => (Decision::default(), 0),
        };
        // The header lines once a filter has edited them (none: as received).
        let edits = &decision.request_edits;
        let mut edited = (!edits.added.is_empty() || !edits.dropped.is_empty())
            .then(|| edited_lines(received, edits));
        for (at, filter) in self.filters.iter().enumerate().skip(start) {
            if std::mem::take(&mut decision.clear_route_cache) {
                (matched, cluster) = reroute(&decision.request_edits);
            }
            let lines: Vec<httparse::Header>;
            let view: RequestView;
            let request = match &edited {
                None => received,
                Some(owned) => {
                    lines = header_lines(owned);
                    view = RequestView {
                        headers: &lines,
                        ..*received
                    };
                    &view
                }
            };
            // A route's own config enables a filter disabled by default.
            let route_config = matched.and_then(|m| m.filter_config(&filter.name));
            if matches!(route_config, Some(RouteConfig::Disabled))
                || (route_config.is_none() && filter.disabled)
            {
                continue;
            }
            match &filter.kind {
                Kind::HealthCheck(hc) => hc.on_request(request, shard, &mut decision),
                Kind::Fault(f) => {
                    let own = match route_config {
                        Some(RouteConfig::Fault(own)) => Some(own),
                        _ => None,
                    };
                    f.on_request(request, cluster, own, shard, &mut decision)
                }
                Kind::LocalRateLimit(l) => {
                    let l = match route_config {
                        Some(RouteConfig::LocalRateLimit(own)) => own,
                        _ => l,
                    };
                    let snapshot = &shard.view().snapshot;
                    let cx = local_ratelimit::Context {
                        connection: &downstream.peer.filter_state,
                        matched,
                        facts: self.facts(request, downstream, cluster, snapshot),
                    };
                    l.on_request(request, &cx, shard, &mut decision)
                }
                Kind::RateLimit(r) => {
                    let snapshot = &shard.view().snapshot;
                    let facts = self.facts(request, downstream, cluster, snapshot);
                    r.on_request(matched, cluster, &facts, &mut decision)
                }
                Kind::Cors(c) => {
                    let policies = matched.map(|m| m.cors_policies(&filter.name));
                    let policies = policies.as_ref().map_or(&[][..], |p| p.as_slice());
                    c.on_request(request, policies, shard, &mut decision)
                }
                Kind::Csrf(c) => {
                    let own = match route_config {
                        Some(RouteConfig::Csrf(own)) => Some(&**own),
                        _ => None,
                    };
                    c.on_request(request, own, shard, &mut decision)
                }
                Kind::Rbac(r) => {
                    let own = match route_config {
                        Some(RouteConfig::Rbac(own)) => Some(&**own),
                        _ => None,
                    };
                    r.on_request(request, downstream, own, shard, &mut decision)
                }
                Kind::HeaderMutation(h) => {
                    let levels = matched.map_or([None; 4], |m| m.filter_configs(&filter.name));
                    h.on_request(request, levels, &mut decision)
                }
                Kind::Buffer(b) => {
                    let own = match route_config {
                        Some(RouteConfig::Buffer(own)) => Some(*own),
                        _ => None,
                    };
                    buffer::on_request(*b, own, &mut decision)
                }
                Kind::JwtAuthn(j) => {
                    let own = match route_config {
                        Some(RouteConfig::JwtAuthn(own)) => Some(own),
                        _ => None,
                    };
                    let fetches = jwt_authn::Fetches {
                        done: &decision.calls_of(at, true),
                        failed: &decision.calls_of(at, false),
                    };
                    j.on_request(request, own, &fetches, shard, &mut decision)
                }
                Kind::ExtAuthz(e) => {
                    let off = matches!(
                        route_config,
                        Some(RouteConfig::ExtAuthz(config::ExtAuthzPerRoute::Disabled))
                    );
                    // Envoy checks only requests with a route, with the
                    // context extensions of every level, the most
                    // specific last.
                    if let (false, Some(m)) = (off, matched) {
                        let mut extensions: Vec<(String, String)> = Vec::new();
                        for level in m.filter_configs(&filter.name).iter().rev().flatten() {
                            if let RouteConfig::ExtAuthz(config::ExtAuthzPerRoute::Check(own)) =
                                level
                            {
                                for (key, value) in own {
                                    extensions.retain(|(k, _)| k != key);
                                    extensions.push((key.clone(), value.clone()));
                                }
                            }
                        }
                        e.on_request(request, downstream, extensions, shard, &mut decision)
                    }
                }
            }
            if decision.call.is_some() {
                decision.stopped_at = at;
                return decision;
            }
            if decision.reply.is_some() {
                return decision;
            }
            let edits = &decision.request_edits;
            if !edits.added.is_empty() || !edits.dropped.is_empty() {
                edited = Some(edited_lines(received, edits));
            }
        }
        // The router's route, when the last filter cleared it.
        if std::mem::take(&mut decision.clear_route_cache) {
            reroute(&decision.request_edits);
        }
        decision
    }
}
