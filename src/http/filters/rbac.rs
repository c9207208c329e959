//! `envoy.filters.http.rbac`: a request is judged by policies of
//! permissions (what it asks: headers, path, destination, SNI) and
//! principals (who asks: addresses, TLS identity, headers). Shadow rules
//! are judged and counted only; enforced rules refuse a request with 403
//! `RBAC: access denied`. A route's or virtual host's own rules replace
//! the filter's (no rules there: the route is open).

use super::{Decision, Downstream};
use crate::config::{
    Cidr, HeaderMatcher, Permission, Principal, RbacAction, RbacConfig, RbacPolicy, RbacRules,
};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::RequestView;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope, Store};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// The filter, compiled: its rules and stats.
#[derive(Debug)]
pub struct Rbac {
    rules: Rules,
    stats: Arc<Scope<sets::Rbac>>,
    shadow_stats: Arc<Scope<sets::RbacShadow>>,
    /// Where per-policy counters are named (`…rbac.policy.`), enforced
    /// and shadow.
    policy_prefixes: [String; 2],
}

/// Enforced and shadow rules, compiled: the filter's or a route's.
#[derive(Debug)]
pub struct Rules {
    enforced: Option<Engine>,
    shadow: Option<Engine>,
    track_per_rule_stats: bool,
}

impl Rules {
    /// Compiles `config`'s rules.
    pub fn compile(config: &RbacConfig) -> Rules {
        Rules {
            enforced: config.rules.as_ref().map(Engine::compile),
            shadow: config.shadow_rules.as_ref().map(Engine::compile),
            track_per_rule_stats: config.track_per_rule_stats,
        }
    }
}

/// One `RBAC` message: an action over named policies.
#[derive(Debug)]
struct Engine {
    action: RbacAction,
    policies: Vec<Policy>,
}

/// A policy and its per-policy counters, made when first counted (as
/// Envoy makes them): `[allowed, denied]`.
#[derive(Debug)]
struct Policy {
    name: String,
    policy: RbacPolicy,
    counters: [OnceLock<Arc<Scope<sets::Single>>>; 2],
}

impl Engine {
    fn compile(rules: &RbacRules) -> Engine {
        Engine {
            action: rules.action,
            policies: rules
                .policies
                .iter()
                .map(|(name, policy)| Policy {
                    name: name.clone(),
                    policy: policy.clone(),
                    counters: Default::default(),
                })
                .collect(),
        }
    }

    /// Whether the request passes, and the policy that decided (the
    /// first match in name order).
    fn judge(&self, asked: &Asked) -> (bool, Option<&Policy>) {
        let matched = self.policies.iter().find(|p| {
            p.policy.permissions.iter().any(|m| asked.permits(m))
                && p.policy.principals.iter().any(|m| asked.is(m))
        });
        let allowed = match self.action {
            RbacAction::Allow => matched.is_some(),
            RbacAction::Deny => matched.is_none(),
            RbacAction::Log => true,
        };
        (allowed, matched)
    }
}

/// What the rules see of a request.
struct Asked<'a> {
    request: &'a RequestView<'a>,
    downstream: &'a Downstream<'a>,
}

impl Asked<'_> {
    /// A header matcher over each of the header's values (a pseudo-header
    /// has one).
    fn header(&self, matcher: &HeaderMatcher) -> bool {
        let name = matcher.name.as_str();
        if name.starts_with(':') || name == "host" {
            return matcher.matches(self.request.header(name).as_deref());
        }
        let values = self
            .request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value));
        matcher.matches_each(values)
    }

    fn permits(&self, permission: &Permission) -> bool {
        let local = self.downstream.peer.local.as_ref().and_then(|a| a.ip());
        match permission {
            Permission::And(all) => all.iter().all(|p| self.permits(p)),
            Permission::Or(any) => any.iter().any(|p| self.permits(p)),
            Permission::Any => true,
            Permission::Header(h) => self.header(h),
            Permission::UrlPath(m) => m.matches(path_only(self.request.path)),
            Permission::DestinationIp(cidr) => in_range(cidr, local),
            Permission::DestinationPort(port) => local.is_some_and(|a| a.port() == *port),
            Permission::DestinationPortRange(start, end) => {
                local.is_some_and(|a| (*start..*end).contains(&u32::from(a.port())))
            }
            Permission::Not(p) => !self.permits(p),
            Permission::RequestedServerName(m) => {
                let tls = self.downstream.peer.tls.as_deref();
                m.matches(tls.and_then(|t| t.server_name.as_deref()).unwrap_or(""))
            }
        }
    }

    fn is(&self, principal: &Principal) -> bool {
        let peer = self.downstream.peer;
        match principal {
            Principal::And(all) => all.iter().all(|p| self.is(p)),
            Principal::Or(any) => any.iter().any(|p| self.is(p)),
            Principal::Any => true,
            Principal::Authenticated(name) => {
                let Some(tls) = peer.tls.as_deref() else {
                    return false;
                };
                let Some(name) = name else {
                    return true;
                };
                tls.peer_uri_sans.iter().any(|s| name.matches(s))
                    || tls.peer_dns_sans.iter().any(|s| name.matches(s))
                    || name.matches(tls.peer_subject.as_deref().unwrap_or(""))
            }
            Principal::SourceIp(cidr) => in_range(cidr, peer.remote.ip()),
            Principal::DirectRemoteIp(cidr) => {
                let direct = peer.direct_remote.as_ref().unwrap_or(&peer.remote);
                in_range(cidr, direct.ip())
            }
            Principal::RemoteIp(cidr) => in_range(cidr, self.downstream.client.ip()),
            Principal::Header(h) => self.header(h),
            Principal::UrlPath(m) => m.matches(path_only(self.request.path)),
            Principal::Not(p) => !self.is(p),
        }
    }
}

fn in_range(cidr: &Cidr, address: Option<SocketAddr>) -> bool {
    address.is_some_and(|a| cidr.contains(a.ip()))
}

/// The path without its query or fragment, as `url_path` sees it.
fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Envoy's stat prefix joining: `rbac.` then the configured prefix, a
/// dot after it unless it ends in one.
fn join(base: &str, prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('.') {
        format!("{base}{prefix}")
    } else {
        format!("{base}{prefix}.")
    }
}

impl Rbac {
    /// Compiles the filter, its stats under `http.<stat_prefix>.rbac.`.
    pub fn compile(config: &RbacConfig, store: &Store, stat_prefix: &str) -> Rbac {
        let base = format!("http.{stat_prefix}.rbac.");
        let enforced = join(&base, &config.rules_stat_prefix);
        let shadow = join(&base, &config.shadow_rules_stat_prefix);
        Rbac {
            rules: Rules::compile(config),
            stats: store.rbac(enforced.clone()),
            shadow_stats: store.rbac_shadow(shadow.clone()),
            policy_prefixes: [format!("{enforced}policy."), format!("{shadow}policy.")],
        }
    }

    /// The request-headers phase, under the route's own rules if it has
    /// them.
    pub fn on_request(
        &self,
        request: &RequestView,
        downstream: &Downstream,
        own: Option<&Rules>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let rules = own.unwrap_or(&self.rules);
        let asked = Asked {
            request,
            downstream,
        };
        let w = shard.id;
        if let Some(shadow) = &rules.shadow {
            let (allowed, by) = shadow.judge(&asked);
            let stat = if allowed {
                sets::RbacShadow::shadow_allowed
            } else {
                sets::RbacShadow::shadow_denied
            };
            self.shadow_stats.inc(w, stat);
            if rules.track_per_rule_stats {
                self.count_policy(by, allowed, true, shard);
            }
        }
        let Some(enforced) = &rules.enforced else {
            return;
        };
        let (allowed, by) = enforced.judge(&asked);
        if rules.track_per_rule_stats {
            self.count_policy(by, allowed, false, shard);
        }
        if allowed {
            self.stats.inc(w, sets::Rbac::allowed);
        } else {
            self.stats.inc(w, sets::Rbac::denied);
            let reply = LocalReply::new(403, "RBAC: access denied");
            decision.reply = Some((reply, ResponseFlags::default()));
        }
    }

    /// Counts the deciding policy: `…policy.<name>.allowed` (or `denied`,
    /// `shadow_allowed`, `shadow_denied`).
    fn count_policy(&self, policy: Option<&Policy>, allowed: bool, shadow: bool, shard: &Shard) {
        let Some(policy) = policy else {
            return;
        };
        let outcome = if allowed { "allowed" } else { "denied" };
        let counter = policy.counters[usize::from(!allowed)].get_or_init(|| {
            let (prefix, lead) = if shadow {
                (&self.policy_prefixes[1], "shadow_")
            } else {
                (&self.policy_prefixes[0], "")
            };
            shard
                .stats
                .counter(format!("{prefix}{}.{lead}{outcome}", policy.name))
        });
        counter.inc(shard.id, sets::Single);
    }
}

#[cfg(test)]
mod tests {
    use super::{join, path_only};

    #[test]
    fn stat_prefixes_join_as_in_envoy() {
        assert_eq!(join("http.a.rbac.", ""), "http.a.rbac.");
        assert_eq!(join("http.a.rbac.", "pre_"), "http.a.rbac.pre_.");
        assert_eq!(join("http.a.rbac.", "pre."), "http.a.rbac.pre.");
    }

    #[test]
    fn url_paths_leave_the_query_out() {
        assert_eq!(path_only("/a/b?c=d"), "/a/b");
        assert_eq!(path_only("/a#f"), "/a");
        assert_eq!(path_only("/"), "/");
    }
}
