//! The compiled route table: virtual-host selection in Envoy's order, then
//! the first route whose match accepts the request.

pub mod hash;
mod index;
mod request;

pub use request::RequestView;

use crate::config::{
    self, ClusterTarget, HeaderMutations, HostRewrite, PathMatch, PathRedirect, Redirect,
    RouteConfiguration, RouteMatch,
};
use crate::http::filters::{cors, route_configs, RouteConfig, RouteConfigs};
use crate::stats::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a matched route does.
#[derive(Debug)]
pub enum Action {
    /// Forward to a cluster (boxed: it is by far the largest).
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer locally with a fixed status and body.
    Direct {
        /// Status code.
        status: u16,
        /// Body bytes (may be empty).
        body: Vec<u8>,
    },
}

/// Request body buffered for retries when no limit is configured.
const DEFAULT_BUFFER_LIMIT: u64 = 1024 * 1024;

/// Which cluster a forward goes to, resolved to snapshot indexes.
#[derive(Debug, Clone)]
pub enum Target {
    /// One cluster.
    Cluster(usize),
    /// The cluster named by this request header.
    Header(String),
    /// Clusters drawn by weight out of `total`.
    Weighted {
        /// (cluster index, weight, subset criteria: the entry's
        /// `metadata_match` merged over the route's, its own filter
        /// configs).
        clusters: Vec<(usize, u32, Option<config::LbMetadata>, Arc<RouteConfigs>)>,
        /// The weights' total.
        total: u64,
    },
}

/// A compiled `request_mirror_policies` entry.
#[derive(Debug)]
pub struct Mirror {
    /// The cluster copies go to ([`MISSING_CLUSTER`] when it is unknown).
    pub cluster: usize,
    /// The share of requests copied, in millionths.
    pub millionths: u32,
    /// `-shadow` is appended to a copy's host.
    pub host_suffix: bool,
    /// How a copy is forwarded: the route's action to `cluster`, without
    /// retries, hash policy, subset criteria or mirrors.
    pub forward: std::sync::Arc<Forward>,
}

/// A compiled `route` action.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The cluster choice.
    pub target: Target,
    /// Status when `cluster_header` names no cluster.
    pub cluster_not_found_status: u16,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite` (pattern, substitution in `regex` syntax).
    pub regex_rewrite: Option<(regex::Regex, String)>,
    /// The `Host` rewrite.
    pub host_rewrite: HostRewrite,
    /// `timeout` (None: disabled).
    pub timeout: Option<Duration>,
    /// `hash_policy`.
    pub hash_policy: Vec<config::HashPolicy>,
    /// The route's `retry_policy`, else its virtual host's.
    pub retry: Option<config::RetryPolicy>,
    /// `idle_timeout`, overriding the stream idle timeout when set.
    pub idle_timeout: Option<Option<Duration>>,
    /// `max_stream_duration`.
    pub max_stream_duration: Option<config::MaxStreamDuration>,
    /// `upgrade_configs`.
    pub upgrades: Vec<config::Upgrade>,
    /// `priority`: the circuit-breaker thresholds its requests count against.
    pub priority: config::Priority,
    /// `metadata_match`: the subset of the cluster its requests go to.
    pub metadata_match: Option<config::LbMetadata>,
    /// `request_mirror_policies`.
    pub mirrors: Vec<std::sync::Arc<Mirror>>,
    /// How much request body may be buffered for retries
    /// (`per_request_buffer_limit_bytes`; default 1 MiB, Envoy's
    /// connection buffer limit).
    pub buffer_limit: u64,
    /// `rate_limits`: the route's rate limit descriptors.
    pub rate_limits: Arc<[config::RateLimitPolicy]>,
    /// `include_vh_rate_limits`.
    pub include_vh_rate_limits: bool,
}

impl Forward {
    /// How a filter's call to a service goes: to `cluster`, within
    /// `timeout`, without retries or any route's settings (Envoy's async
    /// client).
    pub fn service_call(cluster: usize, timeout: Duration) -> Forward {
        Forward {
            target: Target::Cluster(cluster),
            cluster_not_found_status: 503,
            prefix_rewrite: None,
            regex_rewrite: None,
            host_rewrite: HostRewrite::None,
            timeout: Some(timeout),
            hash_policy: Vec::new(),
            retry: None,
            idle_timeout: None,
            max_stream_duration: None,
            upgrades: Vec::new(),
            priority: config::Priority::default(),
            metadata_match: None,
            mirrors: Vec::new(),
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            rate_limits: Arc::new([]),
            include_vh_rate_limits: false,
        }
    }

    /// Picks the cluster for a request: `random` draws weighted clusters;
    /// `by_name` resolves `cluster_header`. Err is the status to answer.
    pub fn cluster(
        &self,
        req: &RequestView,
        random: u64,
        by_name: &HashMap<String, usize>,
    ) -> Result<(usize, Option<&config::LbMetadata>, Option<&RouteConfigs>), u16> {
        let route = self.metadata_match.as_ref();
        let picked = match &self.target {
            Target::Cluster(i) => Ok((*i, route, None)),
            Target::Header(h) => req
                .header(h)
                .and_then(|name| by_name.get(name.as_ref()).copied())
                .map(|i| (i, route, None))
                .ok_or(self.cluster_not_found_status),
            Target::Weighted { clusters, total } => {
                let mut draw = random % total;
                let mut chosen = clusters.last();
                for entry in clusters {
                    if draw < u64::from(entry.1) {
                        chosen = Some(entry);
                        break;
                    }
                    draw -= u64::from(entry.1);
                }
                chosen
                    .map(|(c, _, criteria, configs)| (*c, criteria.as_ref(), Some(&**configs)))
                    .ok_or(503)
            }
        };
        match picked {
            Ok((MISSING_CLUSTER, _, _)) => Err(self.cluster_not_found_status),
            picked => picked,
        }
    }
}

/// A weighted cluster's subset criteria: its own `metadata_match` over
/// the route's (its values win for the keys both name), as Envoy merges
/// them.
fn merged_criteria(
    route: Option<&config::LbMetadata>,
    entry: Option<&config::LbMetadata>,
) -> Option<config::LbMetadata> {
    let Some(entry) = entry else {
        return route.cloned();
    };
    let mut merged: config::LbMetadata = route
        .into_iter()
        .flatten()
        .filter(|(k, _)| !entry.iter().any(|(e, _)| e == k))
        .chain(entry)
        .cloned()
        .collect();
    merged.sort_unstable();
    Some(merged)
}

/// The cluster index of a route whose cluster is gone.
pub const MISSING_CLUSTER: usize = usize::MAX;

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Route name (may be empty).
    pub name: String,
    /// The match, with literal paths lower-cased when case-insensitive.
    matcher: RouteMatch,
    /// What to do on a match.
    pub action: Action,
    /// Request header mutations of the route.
    pub request_headers: HeaderMutations,
    /// Response header mutations of the route.
    pub response_headers: HeaderMutations,
    /// `typed_per_filter_config`, compiled.
    pub filter_configs: RouteConfigs,
    /// The route action's `cors` policy.
    pub cors: Option<cors::Policy>,
}

impl Route {
    /// The one cluster a forwarding route always goes to, if it has one.
    pub fn single_cluster(&self) -> Option<usize> {
        match &self.action {
            Action::Forward(f) => match f.target {
                Target::Cluster(c) => Some(c),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct VirtualHost {
    /// Virtual host name.
    pub name: String,
    routes: Vec<Route>,
    index: index::PathIndex,
    /// Request header mutations of the virtual host.
    pub request_headers: HeaderMutations,
    /// Response header mutations of the virtual host.
    pub response_headers: HeaderMutations,
    /// `typed_per_filter_config`, compiled.
    pub filter_configs: RouteConfigs,
    /// `cors`.
    pub cors: Option<cors::Policy>,
    /// `include_request_attempt_count`.
    pub attempt_count_in_request: bool,
    /// `include_attempt_count_in_response`.
    pub attempt_count_in_response: bool,
    /// `rate_limits`.
    pub rate_limits: Vec<config::RateLimitPolicy>,
}

/// A matched route with its virtual host and table, for the header
/// mutations of all three levels.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'t> {
    /// The route configuration.
    pub table: &'t RouteTable,
    /// The virtual host.
    pub vhost: &'t VirtualHost,
    /// The route.
    pub route: &'t Route,
    /// The filter configs of the weighted cluster the request goes to.
    pub weighted: Option<&'t RouteConfigs>,
}

impl<'t> Matched<'t> {
    /// What the most specific level (weighted cluster, route, virtual
    /// host, route configuration) says about filter `name`, as in Envoy.
    pub fn filter_config(&self, name: &str) -> Option<&'t RouteConfig> {
        self.filter_configs(name).into_iter().flatten().next()
    }

    /// Every level's own config of filter `name`, most specific first.
    pub fn filter_configs(&self, name: &str) -> [Option<&'t RouteConfig>; 4] {
        let find =
            |configs: &'t RouteConfigs| configs.iter().find(|(n, _)| n == name).map(|(_, c)| c);
        [
            self.weighted.and_then(find),
            find(&self.route.filter_configs),
            find(&self.vhost.filter_configs),
            find(&self.table.filter_configs),
        ]
    }

    /// The CORS policies for the route, most specific first: the CORS
    /// filter's (named `name`) per-filter configs of route and virtual
    /// host, else their `cors` fields. Only a forwarding route has any
    /// (Envoy's route entry).
    pub fn cors_policies(&self, name: &str) -> Vec<&'t cors::Policy> {
        if !matches!(self.route.action, Action::Forward(_)) {
            return Vec::new();
        }
        let own = |configs: &'t RouteConfigs| {
            configs.iter().find_map(|(n, c)| match c {
                RouteConfig::Cors(p) if n == name => Some(&**p),
                _ => None,
            })
        };
        let per_filter: Vec<&cors::Policy> = [
            self.weighted.and_then(own),
            own(&self.route.filter_configs),
            own(&self.vhost.filter_configs),
            own(&self.table.filter_configs),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !per_filter.is_empty() {
            return per_filter;
        }
        [self.route.cors.as_ref(), self.vhost.cors.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Request header mutations, most specific first (route, virtual
    /// host, route configuration: the enclosing level wins, Envoy's default).
    pub fn request_headers(&self) -> [&'t HeaderMutations; 3] {
        [
            &self.route.request_headers,
            &self.vhost.request_headers,
            &self.table.request_headers,
        ]
    }

    /// Response header mutations, most specific first.
    pub fn response_headers(&self) -> [&'t HeaderMutations; 3] {
        [
            &self.route.response_headers,
            &self.vhost.response_headers,
            &self.table.response_headers,
        ]
    }
}

/// Virtual hosts indexed by Envoy's domain search order.
#[derive(Debug)]
pub struct RouteTable {
    vhosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// `*suffix` domains as (suffix, vhost), longest suffix first.
    suffixes: Vec<(String, usize)>,
    /// `prefix*` domains as (prefix, vhost), longest prefix first.
    prefixes: Vec<(String, usize)>,
    default: Option<usize>,
    ignore_port: bool,
    /// Request header mutations of the route configuration.
    pub request_headers: HeaderMutations,
    /// Response header mutations of the route configuration.
    pub response_headers: HeaderMutations,
    /// `typed_per_filter_config` of the route configuration, compiled.
    pub filter_configs: RouteConfigs,
    /// Cluster indexes by name, for `cluster_header`.
    pub clusters_by_name: HashMap<String, usize>,
}

/// Returns the byte offset of the `:port` in a Host value, if any (IPv6 aware).
pub fn port_start(host: &str) -> Option<usize> {
    let colon = host.rfind(':')?;
    if host.starts_with('[') {
        // `[::1]:80`: the port follows the closing bracket.
        let close = host.rfind(']')?;
        return (colon == close + 1).then_some(colon);
    }
    (host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) && host[..colon].find(':').is_none())
        .then_some(colon)
}

impl RouteTable {
    /// Compiles a route configuration; `cluster_index` resolves cluster names.
    ///
    /// With `validate_clusters` a route to a cluster that does not exist
    /// is an error; without (a listener kept while CDS removed a cluster
    /// it names, as Envoy keeps it), such a route answers as `no_cluster`.
    pub fn compile(
        rc: &RouteConfiguration,
        path: &str,
        clusters_by_name: &HashMap<String, usize>,
        validate_clusters: bool,
        store: &Store,
        errors: &mut Vec<config::ConfigError>,
    ) -> RouteTable {
        let mut table = RouteTable {
            vhosts: Vec::with_capacity(rc.virtual_hosts.len()),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            default: None,
            ignore_port: rc.ignore_port_in_host_matching,
            request_headers: rc.request_headers.clone(),
            response_headers: rc.response_headers.clone(),
            filter_configs: route_configs(&rc.filter_configs, store),
            clusters_by_name: clusters_by_name.clone(),
        };
        for (vi, vh) in rc.virtual_hosts.iter().enumerate() {
            let vpath = format!("{path}.virtual_hosts[{vi}]");
            for domain in &vh.domains {
                let duplicate = if domain == "*" {
                    table.default.replace(vi).is_some()
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    let dup = table.suffixes.iter().any(|(s, _)| s == suffix);
                    table.suffixes.push((suffix.to_string(), vi));
                    dup
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    let dup = table.prefixes.iter().any(|(p, _)| p == prefix);
                    table.prefixes.push((prefix.to_string(), vi));
                    dup
                } else {
                    table.exact.insert(domain.clone(), vi).is_some()
                };
                if duplicate {
                    errors.push(config::ConfigError {
                        path: format!("{vpath}.domains"),
                        message: format!(
                            "domain {domain:?} appears in more than one virtual host of route config {:?}",
                            rc.name
                        ),
                        suggestion: None,
                    });
                }
            }
            let mut routes = Vec::with_capacity(vh.routes.len());
            for (ri, r) in vh.routes.iter().enumerate() {
                let action = match &r.action {
                    config::RouteAction::Direct { status, body } => Action::Direct {
                        status: *status,
                        body: body.clone().unwrap_or_default(),
                    },
                    config::RouteAction::Redirect(r) => Action::Redirect(r.clone()),
                    config::RouteAction::Forward(f) => {
                        let rpath = format!("{vpath}.routes[{ri}].route");
                        let mut resolve = |name: &str, field: &str| {
                            let found = clusters_by_name.get(name).copied();
                            if found.is_none() && !validate_clusters {
                                return Some(MISSING_CLUSTER);
                            }
                            if found.is_none() {
                                errors.push(config::ConfigError {
                                    path: format!("{rpath}.{field}"),
                                    message: format!("unknown cluster {name:?}"),
                                    suggestion: None,
                                });
                            }
                            found
                        };
                        let target = match &f.target {
                            ClusterTarget::Name(n) => match resolve(n, "cluster") {
                                Some(i) => Target::Cluster(i),
                                None => continue,
                            },
                            ClusterTarget::Header(h) => Target::Header(h.clone()),
                            ClusterTarget::Weighted { clusters, total } => {
                                let resolved: Option<Vec<_>> = clusters
                                    .iter()
                                    .map(|c| {
                                        let i = resolve(&c.name, "weighted_clusters")?;
                                        let criteria = merged_criteria(
                                            f.metadata_match.as_ref(),
                                            c.metadata_match.as_ref(),
                                        );
                                        let configs =
                                            Arc::new(route_configs(&c.filter_configs, store));
                                        Some((i, c.weight, criteria, configs))
                                    })
                                    .collect();
                                match resolved {
                                    Some(clusters) => Target::Weighted {
                                        clusters,
                                        total: *total,
                                    },
                                    None => continue,
                                }
                            }
                        };
                        let mirrors: Vec<(&config::MirrorPolicy, usize)> = f
                            .mirrors
                            .iter()
                            .filter_map(|m| {
                                Some((m, resolve(&m.cluster, "request_mirror_policies")?))
                            })
                            .collect();
                        let mut forward = Forward {
                            target,
                            cluster_not_found_status: f.cluster_not_found_status,
                            prefix_rewrite: f.prefix_rewrite.clone(),
                            regex_rewrite: f.regex_rewrite.clone(),
                            host_rewrite: f.host_rewrite.clone(),
                            timeout: f.timeout,
                            hash_policy: f.hash_policy.clone(),
                            retry: f.retry_policy.clone().or_else(|| vh.retry_policy.clone()),
                            idle_timeout: f.idle_timeout,
                            max_stream_duration: f.max_stream_duration,
                            upgrades: f.upgrades.clone(),
                            priority: f.priority,
                            metadata_match: f.metadata_match.clone(),
                            mirrors: Vec::new(),
                            buffer_limit: r
                                .buffer_limit
                                .or(vh.buffer_limit)
                                .unwrap_or(DEFAULT_BUFFER_LIMIT),
                            rate_limits: f.rate_limits.clone().into(),
                            include_vh_rate_limits: f.include_vh_rate_limits,
                        };
                        forward.mirrors = mirrors
                            .into_iter()
                            .map(|(m, cluster)| {
                                let copy = Forward {
                                    target: Target::Cluster(cluster),
                                    hash_policy: Vec::new(),
                                    retry: None,
                                    metadata_match: None,
                                    ..forward.clone()
                                };
                                std::sync::Arc::new(Mirror {
                                    cluster,
                                    millionths: m.millionths,
                                    host_suffix: m.host_suffix,
                                    forward: std::sync::Arc::new(copy),
                                })
                            })
                            .collect();
                        Action::Forward(Box::new(forward))
                    }
                };
                let mut matcher = r.matcher.clone();
                if !matcher.case_sensitive {
                    match &mut matcher.path {
                        PathMatch::Prefix(p)
                        | PathMatch::Exact(p)
                        | PathMatch::SeparatedPrefix(p) => p.make_ascii_lowercase(),
                        PathMatch::Regex(_) => {}
                    }
                }
                if let (PathMatch::Regex(_), Action::Forward(f)) = (&matcher.path, &action) {
                    if f.prefix_rewrite.is_some() {
                        errors.push(config::ConfigError {
                            path: format!("{vpath}.routes[{ri}].route.prefix_rewrite"),
                            message:
                                "prefix_rewrite needs a prefix, path or path_separated_prefix match"
                                    .into(),
                            suggestion: None,
                        });
                    }
                }
                routes.push(Route {
                    name: r.name.clone(),
                    matcher,
                    action,
                    request_headers: r.request_headers.clone(),
                    response_headers: r.response_headers.clone(),
                    filter_configs: route_configs(&r.filter_configs, store),
                    cors: match &r.action {
                        config::RouteAction::Forward(f) => {
                            f.cors.as_ref().map(|c| cors::Policy::compile(c, store))
                        }
                        _ => None,
                    },
                });
            }
            let index = index::PathIndex::build(
                routes
                    .iter()
                    .map(|r| (&r.matcher.path, r.matcher.case_sensitive)),
            );
            table.vhosts.push(VirtualHost {
                name: vh.name.clone(),
                routes,
                index,
                request_headers: vh.request_headers.clone(),
                response_headers: vh.response_headers.clone(),
                filter_configs: route_configs(&vh.filter_configs, store),
                cors: vh.cors.as_ref().map(|c| cors::Policy::compile(c, store)),
                attempt_count_in_request: vh.attempt_count_in_request,
                attempt_count_in_response: vh.attempt_count_in_response,
                rate_limits: vh.rate_limits.clone(),
            });
        }
        // Longest first; a stable sort keeps config order among equals.
        table.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        table.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        table
    }

    /// Selects the virtual host for a lower-cased Host value.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let host = match (self.ignore_port, port_start(host)) {
            (true, Some(p)) => &host[..p],
            _ => host,
        };
        let index = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                // The wildcard never matches the empty string.
                self.suffixes
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.default)?;
        self.vhosts.get(index)
    }

    /// Finds the route for a request whose Host is `host` (lower-cased).
    pub fn route(&self, host: &str, req: &RequestView) -> Option<Matched<'_>> {
        let vhost = self.virtual_host(host)?;
        let bare = req.path.split_once('?').map_or(req.path, |(b, _)| b);
        let routes = &vhost.routes;
        let i = vhost
            .index
            .first(req.path, routes.len(), |i| routes[i].matches(req, bare))?;
        Some(Matched {
            table: self,
            vhost,
            route: routes.get(i)?,
            weighted: None,
        })
    }
}

/// Whether `path` starts with `prefix` (already lower-cased when
/// `case_sensitive` is false).
fn starts_with(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        path.starts_with(prefix)
    } else {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

/// Whether a route `match` accepts the request (`bare` is its path
/// without the query): path, then headers, query parameters and `grpc`,
/// all of which must hold.
pub fn accepts(m: &RouteMatch, req: &RequestView, bare: &str) -> bool {
    let path = req.path;
    let path_ok = match &m.path {
        // A prefix matches the start of `:path`, query included.
        PathMatch::Prefix(p) => starts_with(path, p, m.case_sensitive),
        // An exact path matches once the query string is removed.
        PathMatch::Exact(p) => bare.len() == p.len() && starts_with(bare, p, m.case_sensitive),
        PathMatch::SeparatedPrefix(p) => {
            starts_with(bare, p, m.case_sensitive)
                && (bare.len() == p.len() || bare.as_bytes()[p.len()] == b'/')
        }
        PathMatch::Regex(r) => r.is_match(bare),
    };
    path_ok
        && m.headers
            .iter()
            .all(|h| h.matches(req.header(&h.name).as_deref()))
        && m.query_parameters.iter().all(|q| query_matches(q, req))
        && (!m.grpc || req.is_grpc())
}

/// Whether a `query_parameters` matcher accepts the request: the
/// parameter present, and its value matching when a matcher is set.
pub fn query_matches(q: &config::QueryParameterMatcher, req: &RequestView) -> bool {
    match (req.query_parameter(&q.name), &q.value) {
        (Some(_), None) => true,
        (Some(v), Some(matcher)) => matcher.matches(&v),
        (None, _) => false,
    }
}

impl Route {
    /// Whether this route's match accepts the request (`bare` is its path
    /// without the query).
    pub fn matches(&self, req: &RequestView, bare: &str) -> bool {
        accepts(&self.matcher, req, bare)
    }

    /// The `location` of a redirect: Envoy keeps what the redirect does not
    /// change (scheme `http`, the request's host and port, its path).
    pub fn redirect_location(&self, r: &Redirect, host: &str, path: &str) -> String {
        let scheme = r.scheme.as_deref().unwrap_or("http");
        let (mut host_only, mut port) = match port_start(host) {
            Some(p) => (host[..p].to_string(), Some(host[p + 1..].to_string())),
            None => (host.to_string(), None),
        };
        if let Some(h) = &r.host {
            host_only = h.clone();
        }
        if let Some(p) = r.port {
            port = Some(p.to_string());
        } else if r.scheme.is_some() && r.host.is_none() {
            // A scheme change drops the old port (it belonged to the old scheme).
            port = None;
        }
        // The scheme's default port is left out.
        if matches!(
            (scheme, port.as_deref()),
            ("http", Some("80")) | ("https", Some("443"))
        ) {
            port = None;
        }
        let mut new_path = match &r.path {
            PathRedirect::Path(p) => {
                let query = path.split_once('?').map(|(_, q)| q);
                match (p.contains('?'), query) {
                    (false, Some(q)) => format!("{p}?{q}"),
                    _ => p.clone(),
                }
            }
            PathRedirect::Keep => path.to_string(),
            PathRedirect::Prefix(_) | PathRedirect::Regex(..) => self.rewrite(path).into_owned(),
        };
        if r.strip_query {
            if let Some(i) = new_path.find('?') {
                new_path.truncate(i);
            }
        }
        match port {
            Some(port) => format!("{scheme}://{host_only}:{port}{new_path}"),
            None => format!("{scheme}://{host_only}{new_path}"),
        }
    }

    /// Applies `prefix_rewrite` (the matched part replaced) or
    /// `regex_rewrite` (every match in the path without its query
    /// replaced; the query kept) to `path`.
    pub fn rewrite<'p>(&self, path: &'p str) -> std::borrow::Cow<'p, str> {
        let (prefix, regex) = match &self.action {
            Action::Forward(f) => (
                f.prefix_rewrite.as_deref(),
                f.regex_rewrite.as_ref().map(|(r, s)| (r, s)),
            ),
            Action::Redirect(r) => match &r.path {
                config::PathRedirect::Prefix(p) => (Some(p.as_str()), None),
                config::PathRedirect::Regex(re, sub) => (None, Some((re, sub))),
                _ => (None, None),
            },
            Action::Direct { .. } => (None, None),
        };
        if let Some(rewrite) = prefix {
            let matched = match &self.matcher.path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) | PathMatch::SeparatedPrefix(p) => {
                    p.len()
                }
                PathMatch::Regex(_) => return path.into(),
            };
            return format!("{rewrite}{}", &path[matched..]).into();
        }
        if let Some((regex, substitution)) = regex {
            let (bare, query) = match path.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (path, None),
            };
            let mut out = regex.replace_all(bare, substitution.as_str()).into_owned();
            if let Some(q) = query {
                out.push('?');
                out.push_str(q);
            }
            return out.into();
        }
        path.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles the route configuration of a bootstrap whose virtual hosts
    /// are `vhosts_yaml` (with one cluster, `c`).
    fn compile_yaml(vhosts_yaml: &str) -> RouteTable {
        let yaml = format!(
            r#"static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config:
            name: rc
            virtual_hosts:
{vhosts_yaml}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
        );
        let tree = config::parse_document(&yaml, "test").expect("parses");
        let boot = config::decode(&tree).expect("decodes");
        let mut errors = Vec::new();
        let clusters = HashMap::from([("c".to_string(), 0)]);
        let config::NetworkFilter::Http(hcm) = &boot.listeners[0].chains[0].filter else {
            panic!("the listener serves HTTP");
        };
        let config::RouteSource::Inline(rc) = &hcm.routes else {
            panic!("the routes are inline");
        };
        let store = Store::new(1);
        let t = RouteTable::compile(rc, "rc", &clusters, true, &store, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        t
    }

    /// One virtual host per (name, domains), each with one catch-all route.
    fn table(vhosts: &[(&str, &[&str])]) -> RouteTable {
        let yaml: String = vhosts
            .iter()
            .map(|(name, domains)| {
                let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
                format!(
                    "            - name: {name}\n              domains: [{}]\n              routes: [ {{ match: {{ prefix: / }}, route: {{ cluster: c }} }} ]\n",
                    domains.join(", ")
                )
            })
            .collect();
        compile_yaml(&yaml)
    }

    #[test]
    fn domain_search_order_is_exact_suffix_prefix_default() {
        let t = table(&[
            ("default", &["*"]),
            ("prefix", &["foo.*"]),
            ("short_suffix", &["*.com"]),
            ("long_suffix", &["*.example.com"]),
            ("exact", &["foo.example.com"]),
        ]);
        let vh = |h: &str| t.virtual_host(h).map(|v| v.name.as_str());
        assert_eq!(vh("foo.example.com"), Some("exact"));
        assert_eq!(vh("bar.example.com"), Some("long_suffix"));
        assert_eq!(vh("example.com"), Some("short_suffix"));
        assert_eq!(vh("foo.org"), Some("prefix"));
        assert_eq!(vh("other"), Some("default"));
        // The port is part of the host unless told otherwise.
        assert_eq!(vh("foo.example.com:8080"), Some("prefix"));
    }

    #[test]
    fn indexed_lookup_equals_a_linear_scan() {
        let t = compile_yaml(
            r#"            - name: v
              domains: ["*"]
              routes:
              - { match: { prefix: "/api/" }, direct_response: { status: 200 } }
              - { match: { safe_regex: { regex: "/api/v\\d+/users" } }, direct_response: { status: 200 } }
              - { match: { prefix: "/API/V2", case_sensitive: false }, direct_response: { status: 200 } }
              - { match: { path_separated_prefix: "/api/v1" }, direct_response: { status: 200 } }
              - { match: { path: "/api/v1/users", case_sensitive: false }, direct_response: { status: 200 } }
              - { match: { safe_regex: { regex: "/a|/b.*" } }, direct_response: { status: 200 } }
              - { match: { prefix: "/" }, direct_response: { status: 200 } }
"#,
        );
        let vh = t.virtual_host("h").expect("vhost");
        let samples = [
            "/api/v1/users",
            "/API/V1/USERS",
            "/api/v2/x",
            "/Api/V2",
            "/api/v1",
            "/api/v1x",
            "/api/v12/users",
            "/b/anything",
            "/a",
            "/ax",
            "/",
            "/other?x=1",
            "/api/?q",
        ];
        for path in samples {
            let req = RequestView {
                method: "GET",
                path,
                authority: "h",
                scheme: "http",
                headers: &[],
            };
            let bare = path.split_once('?').map_or(path, |(b, _)| b);
            let linear = vh.routes.iter().position(|r| r.matches(&req, bare));
            let indexed = vh
                .index
                .first(path, vh.routes.len(), |i| vh.routes[i].matches(&req, bare));
            assert_eq!(indexed, linear, "{path}");
        }
    }

    #[test]
    fn port_start_handles_ipv6() {
        assert_eq!(port_start("a:80"), Some(1));
        assert_eq!(port_start("[::1]:80"), Some(5));
        assert_eq!(port_start("[::1]"), None);
        assert_eq!(port_start("::1"), None);
    }
}
