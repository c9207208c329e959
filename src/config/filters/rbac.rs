//! `envoy.filters.http.rbac`: role-based access control rules — policies
//! of permissions (what is asked) and principals (who asks) — enforced,
//! in shadow, or both; and a virtual host's or route's own rules.

use super::super::listener::{cidr, Cidr};
use super::super::node::{Errors, Fields, Node};
use super::super::route_match::{header_matcher, string_matcher, HeaderMatcher, StringMatcher};
use super::{decode_all, one_of};

/// The filter's type.
pub(super) const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// A virtual host's or route's own rules.
pub(super) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &[
        "@type", "rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix",
        "track_per_rule_stats",
    ],
    unsupported: &["matcher", "shadow_matcher"],
};
#[rustfmt::skip]
static PER_ROUTE: Fields = Fields { known: &["@type", "rbac"], unsupported: &[] };
#[rustfmt::skip]
static RULES: Fields = Fields {
    known: &["action", "policies"],
    unsupported: &["audit_logging_options"],
};
#[rustfmt::skip]
static POLICY: Fields = Fields {
    known: &["permissions", "principals"],
    unsupported: &["condition", "checked_condition", "cel_config"],
};
#[rustfmt::skip]
static PERMISSION: Fields = Fields {
    known: &[
        "and_rules", "or_rules", "any", "header", "url_path", "destination_ip",
        "destination_port", "destination_port_range", "not_rule", "requested_server_name",
    ],
    unsupported: &["metadata", "matcher", "uri_template", "sourced_metadata"],
};
#[rustfmt::skip]
static PRINCIPAL: Fields = Fields {
    known: &[
        "and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip",
        "remote_ip", "header", "url_path", "not_id",
    ],
    unsupported: &["metadata", "filter_state", "sourced_metadata", "custom"],
};
#[rustfmt::skip]
static RULE_SET: Fields = Fields { known: &["rules"], unsupported: &[] };
#[rustfmt::skip]
static ID_SET: Fields = Fields { known: &["ids"], unsupported: &[] };
#[rustfmt::skip]
static AUTHENTICATED: Fields = Fields { known: &["principal_name"], unsupported: &[] };
#[rustfmt::skip]
static PATH_MATCHER: Fields = Fields { known: &["path"], unsupported: &[] };
#[rustfmt::skip]
static INT32_RANGE: Fields = Fields { known: &["start", "end"], unsupported: &[] };

/// The filter's config (and, without stats of its own, a route's).
#[derive(Debug, Clone, Default)]
pub struct RbacConfig {
    /// `rules`: enforced (absent: every request passes).
    pub rules: Option<RbacRules>,
    /// `rules_stat_prefix`.
    pub rules_stat_prefix: String,
    /// `shadow_rules`: judged and counted, never enforced.
    pub shadow_rules: Option<RbacRules>,
    /// `shadow_rules_stat_prefix`.
    pub shadow_rules_stat_prefix: String,
    /// `track_per_rule_stats`: count each deciding policy by name.
    pub track_per_rule_stats: bool,
}

/// What a matching policy means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    /// `ALLOW`: only requests some policy matches pass.
    Allow,
    /// `DENY`: requests some policy matches are refused.
    Deny,
    /// `LOG`: every request passes.
    Log,
}

/// An `RBAC` message: the action and its policies, by name in name order
/// (Envoy keeps them in an ordered map: the first match in that order is
/// the one reported).
#[derive(Debug, Clone)]
pub struct RbacRules {
    /// `action`.
    pub action: RbacAction,
    /// `policies`.
    pub policies: Vec<(String, RbacPolicy)>,
}

/// A policy: it matches when any permission and any principal match.
#[derive(Debug, Clone)]
pub struct RbacPolicy {
    /// `permissions`.
    pub permissions: Vec<Permission>,
    /// `principals`.
    pub principals: Vec<Principal>,
}

/// What a request asks for.
#[derive(Debug, Clone)]
pub enum Permission {
    /// `and_rules`.
    And(Vec<Permission>),
    /// `or_rules`.
    Or(Vec<Permission>),
    /// `any`.
    Any,
    /// `header`.
    Header(HeaderMatcher),
    /// `url_path`: the path without its query.
    UrlPath(StringMatcher),
    /// `destination_ip`: the address the connection came to.
    DestinationIp(Cidr),
    /// `destination_port`.
    DestinationPort(u16),
    /// `destination_port_range`: `[start, end)`.
    DestinationPortRange(u32, u32),
    /// `not_rule`.
    Not(Box<Permission>),
    /// `requested_server_name`: the TLS SNI (empty without one).
    RequestedServerName(StringMatcher),
}

/// Who asks.
#[derive(Debug, Clone)]
pub enum Principal {
    /// `and_ids`.
    And(Vec<Principal>),
    /// `or_ids`.
    Or(Vec<Principal>),
    /// `any`.
    Any,
    /// `authenticated`: a TLS peer whose URI SANs, DNS SANs or subject
    /// match (no `principal_name`: any TLS connection).
    Authenticated(Option<StringMatcher>),
    /// `source_ip`: the connection's peer (a PROXY protocol header's
    /// source when there was one).
    SourceIp(Cidr),
    /// `direct_remote_ip`: the socket's peer.
    DirectRemoteIp(Cidr),
    /// `remote_ip`: the client, after `x-forwarded-for`.
    RemoteIp(Cidr),
    /// `header`.
    Header(HeaderMatcher),
    /// `url_path`.
    UrlPath(StringMatcher),
    /// `not_id`.
    Not(Box<Principal>),
}

/// Decodes the filter's `RBAC`.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<RbacConfig> {
    let obj = node.object(errs, &FILTER)?;
    let text = |errs: &mut Errors, name: &str| {
        obj.get(name)
            .and_then(|n| n.str(errs).map(str::to_string))
            .unwrap_or_default()
    };
    let rules_stat_prefix = text(errs, "rules_stat_prefix");
    let shadow_rules_stat_prefix = text(errs, "shadow_rules_stat_prefix");
    let rules = match obj.get("rules") {
        Some(r) => Some(decode_rules(&r, errs)?),
        None => None,
    };
    let shadow_rules = match obj.get("shadow_rules") {
        Some(r) => Some(decode_rules(&r, errs)?),
        None => None,
    };
    let track_per_rule_stats = match obj.get("track_per_rule_stats") {
        Some(b) => b.bool(errs)?,
        None => false,
    };
    Some(RbacConfig {
        rules,
        rules_stat_prefix,
        shadow_rules,
        shadow_rules_stat_prefix,
        track_per_rule_stats,
    })
}

/// Decodes an `RBACPerRoute`: its `rbac`, absent meaning no rules (the
/// filter lets every request of the route pass).
pub(super) fn decode_per_route(node: &Node, errs: &mut Errors) -> Option<RbacConfig> {
    let obj = node.object(errs, &PER_ROUTE)?;
    match obj.get("rbac") {
        Some(rbac) => decode(&rbac, errs),
        None => Some(RbacConfig::default()),
    }
}

fn decode_rules(node: &Node, errs: &mut Errors) -> Option<RbacRules> {
    let obj = node.object(errs, &RULES)?;
    let action = match obj.get("action") {
        Some(a) => match a.enumeration(errs, &["ALLOW", "DENY", "LOG"])? {
            "ALLOW" => RbacAction::Allow,
            "DENY" => RbacAction::Deny,
            _ => RbacAction::Log,
        },
        None => RbacAction::Allow,
    };
    let mut policies = Vec::new();
    if let Some(map) = obj.get("policies") {
        let Some(names) = map.value().as_object() else {
            errs.add(map.path(), "expected a map of policy names to policies");
            return None;
        };
        for name in names.keys() {
            if let Some(p) = map.entry(name).and_then(|p| policy(&p, errs)) {
                policies.push((name.clone(), p));
            }
        }
    }
    policies.sort_by(|a, b| a.0.cmp(&b.0));
    Some(RbacRules { action, policies })
}

fn policy(node: &Node, errs: &mut Errors) -> Option<RbacPolicy> {
    let obj = node.object(errs, &POLICY)?;
    let permissions = non_empty(&obj.require(errs, "permissions")?, errs, permission)?;
    let principals = non_empty(&obj.require(errs, "principals")?, errs, principal)?;
    Some(RbacPolicy {
        permissions,
        principals,
    })
}

/// A list of at least one item, each decoded by `item`.
fn non_empty<T>(
    node: &Node,
    errs: &mut Errors,
    item: fn(&Node, &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    if node.value().as_array().is_some_and(|a| a.is_empty()) {
        errs.add(node.path(), "expected at least one item");
        return None;
    }
    decode_all(node, errs, item)
}

/// A set (`and_rules`, `or_ids`, …): a mapping of `field` to a list.
fn set<T>(
    node: &Node,
    errs: &mut Errors,
    fields: &Fields,
    field: &str,
    item: fn(&Node, &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    let obj = node.object(errs, fields)?;
    non_empty(&obj.require(errs, field)?, errs, item)
}

/// `any` must be `true` (Envoy's proto rule).
fn any(node: &Node, errs: &mut Errors) -> Option<()> {
    if node.bool(errs)? {
        Some(())
    } else {
        errs.add(node.path(), "expected true");
        None
    }
}

fn url_path(node: &Node, errs: &mut Errors) -> Option<StringMatcher> {
    let obj = node.object(errs, &PATH_MATCHER)?;
    string_matcher(&obj.require(errs, "path")?, errs)
}

fn permission(node: &Node, errs: &mut Errors) -> Option<Permission> {
    let (field, value) = one_of(node, errs, &PERMISSION, "permission")?;
    Some(match field {
        "and_rules" => Permission::And(set(&value, errs, &RULE_SET, "rules", permission)?),
        "or_rules" => Permission::Or(set(&value, errs, &RULE_SET, "rules", permission)?),
        "any" => any(&value, errs).map(|()| Permission::Any)?,
        "header" => Permission::Header(header_matcher(value, errs)?),
        "url_path" => Permission::UrlPath(url_path(&value, errs)?),
        "destination_ip" => Permission::DestinationIp(cidr(&value, errs)?),
        "destination_port" => Permission::DestinationPort(value.uint(errs, 65535)? as u16),
        "destination_port_range" => {
            let range = value.object(errs, &INT32_RANGE)?;
            let bound = |errs: &mut Errors, name: &str| match range.get(name) {
                Some(n) => n.uint(errs, 65536),
                None => Some(0),
            };
            let (start, end) = (bound(errs, "start")?, bound(errs, "end")?);
            if start >= end {
                errs.add(
                    value.path(),
                    format!("range start {start} cannot be greater or equal than range end {end}"),
                );
                return None;
            }
            Permission::DestinationPortRange(start as u32, end as u32)
        }
        "not_rule" => Permission::Not(Box::new(permission(&value, errs)?)),
        _ => Permission::RequestedServerName(string_matcher(&value, errs)?),
    })
}

fn principal(node: &Node, errs: &mut Errors) -> Option<Principal> {
    let (field, value) = one_of(node, errs, &PRINCIPAL, "principal")?;
    Some(match field {
        "and_ids" => Principal::And(set(&value, errs, &ID_SET, "ids", principal)?),
        "or_ids" => Principal::Or(set(&value, errs, &ID_SET, "ids", principal)?),
        "any" => any(&value, errs).map(|()| Principal::Any)?,
        "authenticated" => {
            let obj = value.object(errs, &AUTHENTICATED)?;
            let name = match obj.get("principal_name") {
                Some(m) => Some(string_matcher(&m, errs)?),
                None => None,
            };
            Principal::Authenticated(name)
        }
        "source_ip" => Principal::SourceIp(cidr(&value, errs)?),
        "direct_remote_ip" => Principal::DirectRemoteIp(cidr(&value, errs)?),
        "remote_ip" => Principal::RemoteIp(cidr(&value, errs)?),
        "header" => Principal::Header(header_matcher(value, errs)?),
        "url_path" => Principal::UrlPath(url_path(&value, errs)?),
        _ => Principal::Not(Box::new(principal(&value, errs)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_document;

    fn decoded(yaml: &str) -> (Option<RbacConfig>, String) {
        let value = parse_document(yaml, "t").expect("parses");
        let mut errs = Errors::default();
        let config = decode(&Node::at(&value, "f"), &mut errs);
        let errs: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        (config, errs.join("\n"))
    }

    #[test]
    fn policies_are_kept_in_name_order() {
        let (config, errs) = decoded(
            "rules: { action: DENY, policies: { zeta: { permissions: [ { any: true } ], principals: [ { any: true } ] }, alpha: { permissions: [ { destination_port: 80 } ], principals: [ { not_id: { remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } } } ] } } }",
        );
        let rules = config.and_then(|c| c.rules).expect(&errs);
        assert_eq!(rules.action, RbacAction::Deny);
        let names: Vec<&str> = rules.policies.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
    }

    #[test]
    fn a_rule_in_json_spelling_decodes() {
        let (config, errs) = decoded(
            "rules: { policies: { p: { permissions: [ { andRules: { rules: [ { any: true } ] } } ], principals: [ { notId: { any: true } } ] } } }",
        );
        let rules = config.and_then(|c| c.rules).expect(&errs);
        assert!(matches!(
            rules.policies[0].1.permissions[0],
            Permission::And(_)
        ));
    }

    #[test]
    fn unsupported_and_malformed_rules_are_named() {
        for (yaml, expected) in [
            ("matcher: {}", "f.matcher"),
            ("rules: { policies: { p: { permissions: [ { metadata: {} } ], principals: [ { any: true } ] } } }", "f.rules.policies.p.permissions[0].metadata"),
            ("rules: { policies: { p: { permissions: [ { any: true } ], principals: [ { filter_state: {} } ] } } }", "f.rules.policies.p.principals[0].filter_state"),
            ("rules: { policies: { p: { permissions: [], principals: [ { any: true } ] } } }", "f.rules.policies.p.permissions"),
            ("rules: { policies: { p: { permissions: [ { any: false } ], principals: [ { any: true } ] } } }", "f.rules.policies.p.permissions[0].any"),
            ("rules: { policies: { p: { permissions: [ { any: true, destination_port: 1 } ], principals: [ { any: true } ] } } }", "f.rules.policies.p.permissions[0]"),
            ("rules: { policies: { p: { permissions: [ {} ], principals: [ { any: true } ] } } }", "f.rules.policies.p.permissions[0]"),
            ("rules: { policies: { p: { permissions: [ { destination_port_range: { start: 90, end: 80 } } ], principals: [ { any: true } ] } } }", "destination_port_range"),
            ("rules: { policies: { p: { permissions: [ { any: true } ], principals: [ { any: true } ], condition: {} } } }", "f.rules.policies.p.condition"),
        ] {
            let (_, errs) = decoded(yaml);
            assert!(errs.contains(expected), "{yaml}: {errs}");
        }
    }
}
