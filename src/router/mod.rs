//! The compiled route table: virtual-host selection in Envoy's order, then
//! the first route whose match accepts the request.

use crate::config::{self, PathMatch, RouteConfiguration};
use std::collections::HashMap;
use std::time::Duration;

/// What a matched route does.
#[derive(Debug)]
pub enum Action {
    /// Forward to a cluster.
    Forward(Forward),
    /// Answer locally with a fixed status and body.
    Direct {
        /// Status code.
        status: u16,
        /// Body bytes (may be empty).
        body: Vec<u8>,
    },
}

/// A compiled `route` action.
#[derive(Debug)]
pub struct Forward {
    /// Index of the cluster in the snapshot.
    pub cluster: usize,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `timeout` (None: disabled).
    pub timeout: Option<Duration>,
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Route name (may be empty).
    pub name: String,
    matcher: PathMatch,
    case_sensitive: bool,
    /// What to do on a match.
    pub action: Action,
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct VirtualHost {
    /// Virtual host name.
    pub name: String,
    routes: Vec<Route>,
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
    pub fn compile(
        rc: &RouteConfiguration,
        path: &str,
        cluster_index: &dyn Fn(&str) -> Option<usize>,
        errors: &mut Vec<config::ConfigError>,
    ) -> RouteTable {
        let mut table = RouteTable {
            vhosts: Vec::with_capacity(rc.virtual_hosts.len()),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            default: None,
            ignore_port: rc.ignore_port_in_host_matching,
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
                    config::RouteAction::Forward(f) => {
                        let Some(cluster) = cluster_index(&f.cluster) else {
                            errors.push(config::ConfigError {
                                path: format!("{vpath}.routes[{ri}].route.cluster"),
                                message: format!("unknown cluster {:?}", f.cluster),
                            });
                            continue;
                        };
                        Action::Forward(Forward {
                            cluster,
                            prefix_rewrite: f.prefix_rewrite.clone(),
                            timeout: f.timeout,
                        })
                    }
                };
                let matcher = match (&r.matcher, r.case_sensitive) {
                    (PathMatch::Prefix(p), false) => PathMatch::Prefix(p.to_ascii_lowercase()),
                    (PathMatch::Exact(p), false) => PathMatch::Exact(p.to_ascii_lowercase()),
                    (m, true) => m.clone(),
                };
                routes.push(Route {
                    name: r.name.clone(),
                    matcher,
                    case_sensitive: r.case_sensitive,
                    action,
                });
            }
            table.vhosts.push(VirtualHost {
                name: vh.name.clone(),
                routes,
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

    /// Finds the route for a lower-cased host and a request path (`:path`, query included).
    pub fn route(&self, host: &str, path: &str) -> Option<&Route> {
        self.virtual_host(host)?
            .routes
            .iter()
            .find(|r| r.matches(path))
    }
}

impl Route {
    /// Whether this route's match accepts `path`.
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            // A prefix matches the start of `:path`, query included.
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    path.starts_with(p.as_str())
                } else {
                    path.len() >= p.len()
                        && path.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                }
            }
            // An exact path matches once the query string is removed.
            PathMatch::Exact(p) => {
                let bare = path.split_once('?').map_or(path, |(b, _)| b);
                if self.case_sensitive {
                    bare == p
                } else {
                    bare.eq_ignore_ascii_case(p)
                }
            }
        }
    }

    /// Applies `prefix_rewrite` (if any) to `path`, replacing the matched part.
    pub fn rewrite<'p>(&self, path: &'p str) -> std::borrow::Cow<'p, str> {
        let Action::Forward(Forward {
            prefix_rewrite: Some(rewrite),
            ..
        }) = &self.action
        else {
            return path.into();
        };
        let matched = match &self.matcher {
            PathMatch::Prefix(p) => p.len(),
            PathMatch::Exact(p) => p.len(),
        };
        format!("{rewrite}{}", &path[matched..]).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ForwardAction, Route as RouteCfg, RouteAction, VirtualHost as VhCfg};

    fn table(vhosts: &[(&str, &[&str])]) -> RouteTable {
        let rc = RouteConfiguration {
            name: "rc".into(),
            ignore_port_in_host_matching: false,
            virtual_hosts: vhosts
                .iter()
                .map(|(name, domains)| VhCfg {
                    name: name.to_string(),
                    domains: domains.iter().map(|d| d.to_string()).collect(),
                    routes: vec![RouteCfg {
                        name: name.to_string(),
                        matcher: PathMatch::Prefix("/".into()),
                        case_sensitive: true,
                        action: RouteAction::Forward(ForwardAction {
                            cluster: "c".into(),
                            prefix_rewrite: None,
                            timeout: None,
                        }),
                    }],
                })
                .collect(),
        };
        let mut errors = Vec::new();
        let t = RouteTable::compile(&rc, "rc", &|_| Some(0), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        t
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
    fn port_start_handles_ipv6() {
        assert_eq!(port_start("a:80"), Some(1));
        assert_eq!(port_start("[::1]:80"), Some(5));
        assert_eq!(port_start("[::1]"), None);
        assert_eq!(port_start("::1"), None);
    }
}
