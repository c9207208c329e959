//! `http_filters`: the connection manager's HTTP filter chain, decoded
//! into the filters Ringway runs before its terminal router.

mod buffer;
mod cors;
mod csrf;
mod ext_authz;
mod fault;
mod grpc_service;
mod header_mutation;
mod health_check;
mod jwt_authn;
mod local_ratelimit;
mod ratelimit;
mod rbac;

pub use buffer::BufferConfig;
pub use cors::{decode_policy as cors_policy, CorsPolicy};
pub use csrf::CsrfPolicy;
pub use ext_authz::{AuthzService, ExtAuthzConfig, ExtAuthzPerRoute, HttpAuthzService};
pub use fault::{AbortWith, DelayBy, FaultConfig, Fraction};
pub use grpc_service::GrpcService;
pub use header_mutation::{HeaderMutationConfig, HeaderOp};
pub use health_check::HealthCheckFilter;
pub use jwt_authn::{
    JwksSource, JwtAuthnConfig, JwtPerRoute, JwtProvider, JwtRequirement, JwtRule, RemoteJwks,
};
pub use local_ratelimit::{LocalDescriptor, LocalRateLimitConfig, VhRateLimits};
pub use ratelimit::RateLimitFilterConfig;
pub use rbac::{Permission, Principal, RbacAction, RbacConfig, RbacPolicy, RbacRules};

use super::bootstrap::type_url;
use super::node::{Errors, Fields, Node, Obj};

/// The terminal router's type and name.
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTER_NAME: &str = "envoy.filters.http.router";

/// The per-route wrapper of a filter's config.
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

#[rustfmt::skip]
static FILTER_CONFIG: Fields = Fields {
    known: &["@type", "config", "is_optional", "disabled"],
    unsupported: &[],
};
#[rustfmt::skip]
static HTTP_FILTER: Fields = Fields {
    known: &["name", "typed_config", "is_optional", "disabled"],
    unsupported: &["config_discovery"],
};
#[rustfmt::skip]
static ROUTER: Fields = Fields {
    known: &["@type"],
    unsupported: &[
        "dynamic_stats", "start_child_span", "upstream_log", "upstream_log_options",
        "suppress_envoy_headers", "strict_check_headers", "respect_expected_rq_timeout",
        "suppress_grpc_request_failure_code_stats", "upstream_http_filters",
    ],
};

/// One filter of the chain before the router.
#[derive(Debug, Clone)]
pub struct HttpFilter {
    /// `name`: what `typed_per_filter_config` refers to it by.
    pub name: String,
    /// `disabled`: off unless a route's per-filter config turns it on.
    pub disabled: bool,
    /// What it is and its config.
    pub kind: FilterKind,
}

/// The filters Ringway implements.
#[derive(Debug, Clone)]
pub enum FilterKind {
    /// `envoy.filters.http.health_check`.
    HealthCheck(HealthCheckFilter),
    /// `envoy.filters.http.fault`.
    Fault(FaultConfig),
    /// `envoy.filters.http.local_ratelimit`.
    LocalRateLimit(LocalRateLimitConfig),
    /// `envoy.filters.http.cors` (its policies are the routes').
    Cors,
    /// `envoy.filters.http.csrf`.
    Csrf(CsrfPolicy),
    /// `envoy.filters.http.rbac`.
    Rbac(RbacConfig),
    /// `envoy.filters.http.header_mutation`.
    HeaderMutation(HeaderMutationConfig),
    /// `envoy.filters.http.jwt_authn`.
    JwtAuthn(Box<JwtAuthnConfig>),
    /// `envoy.filters.http.buffer`.
    Buffer(BufferConfig),
    /// `envoy.filters.http.ext_authz`.
    ExtAuthz(Box<ExtAuthzConfig>),
    /// `envoy.filters.http.ratelimit`.
    RateLimit(Box<RateLimitFilterConfig>),
}

impl FilterKind {
    /// The runtime keys it reads.
    pub fn runtime_keys(&self) -> Vec<&str> {
        match self {
            FilterKind::LocalRateLimit(c) => c.runtime_keys().collect(),
            FilterKind::Csrf(c) => c.runtime_keys().collect(),
            FilterKind::HealthCheck(_)
            | FilterKind::Fault(_)
            | FilterKind::Cors
            | FilterKind::Rbac(_)
            | FilterKind::HeaderMutation(_)
            | FilterKind::JwtAuthn(_)
            | FilterKind::Buffer(_)
            | FilterKind::ExtAuthz(_)
            | FilterKind::RateLimit(_) => Vec::new(),
        }
    }
}

#[rustfmt::skip]
static RUNTIME_PERCENT: Fields = Fields {
    known: &["default_value", "runtime_key"],
    unsupported: &[],
};

/// A `RuntimeFractionalPercent`: a share of requests, which the runtime
/// key (when set) may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePercent {
    /// `runtime_key`.
    pub runtime_key: Option<String>,
    /// `default_value`.
    pub default: Fraction,
}

/// Decodes a `RuntimeFractionalPercent`.
pub fn runtime_percent(node: &Node, errs: &mut Errors) -> Option<RuntimePercent> {
    let obj = node.object(errs, &RUNTIME_PERCENT)?;
    let value = obj.require(errs, "default_value")?;
    let (numerator, denominator) = super::route_action::fractional_percent(&value, errs)?;
    let runtime_key = match obj.get("runtime_key") {
        Some(k) => Some(k.str(errs)?.to_string()).filter(|k| !k.is_empty()),
        None => None,
    };
    Some(RuntimePercent {
        runtime_key,
        default: Fraction {
            numerator,
            denominator,
        },
    })
}

/// What a virtual host or route says about one filter
/// (`typed_per_filter_config`).
#[derive(Debug, Clone)]
pub enum RouteFilterConfig {
    /// `FilterConfig{disabled: true}`: the filter does not run here.
    Disabled,
    /// The fault filter's settings for here.
    Fault(FaultConfig),
    /// The local rate limit filter's settings (and bucket) for here.
    LocalRateLimit(LocalRateLimitConfig),
    /// The CORS filter's policy for here.
    Cors(CorsPolicy),
    /// The CSRF filter's policy for here.
    Csrf(CsrfPolicy),
    /// The RBAC filter's rules for here.
    Rbac(RbacConfig),
    /// The header mutation filter's mutations for here.
    HeaderMutation(HeaderMutationConfig),
    /// The JWT filter's requirement for here.
    JwtAuthn(JwtPerRoute),
    /// The buffer filter's settings for here.
    Buffer(BufferConfig),
    /// The external authorization filter's settings for here.
    ExtAuthz(ExtAuthzPerRoute),
}

impl RouteFilterConfig {
    /// The runtime keys it reads.
    pub fn runtime_keys(&self) -> Vec<&str> {
        match self {
            RouteFilterConfig::LocalRateLimit(c) => c.runtime_keys().collect(),
            RouteFilterConfig::Cors(c) => c.runtime_keys().collect(),
            RouteFilterConfig::Csrf(c) => c.runtime_keys().collect(),
            RouteFilterConfig::Disabled
            | RouteFilterConfig::Fault(_)
            | RouteFilterConfig::Rbac(_)
            | RouteFilterConfig::HeaderMutation(_)
            | RouteFilterConfig::JwtAuthn(_)
            | RouteFilterConfig::Buffer(_)
            | RouteFilterConfig::ExtAuthz(_) => Vec::new(),
        }
    }
}

/// A virtual host's or route's `typed_per_filter_config`, by filter name.
pub type PerFilterConfigs = Vec<(String, RouteFilterConfig)>;

/// Decodes `typed_per_filter_config`. A filter config Ringway has no
/// per-route form for is an error (Envoy's words when the filter has
/// none; "not supported yet" when Ringway lacks it), unless the
/// `FilterConfig` wrapping it `is_optional`.
pub fn per_filter_configs(obj: &Obj, errs: &mut Errors) -> PerFilterConfigs {
    let Some(map) = obj.get("typed_per_filter_config") else {
        return Vec::new();
    };
    let Some(names) = map.value().as_object() else {
        errs.add(map.path(), "expected a map of filter names to configs");
        return Vec::new();
    };
    let mut configs = Vec::new();
    for name in names.keys() {
        let Some(entry) = map.entry(name) else {
            continue;
        };
        let Some(outer) = type_url(&entry, errs) else {
            continue;
        };
        let (config, optional) = if outer == FILTER_CONFIG_TYPE {
            let Some(wrapper) = entry.object(errs, &FILTER_CONFIG) else {
                continue;
            };
            let flag = |errs: &mut Errors, field: &str| {
                wrapper
                    .get(field)
                    .and_then(|b| b.bool(errs))
                    .unwrap_or(false)
            };
            if flag(errs, "disabled") {
                configs.push((name.clone(), RouteFilterConfig::Disabled));
                continue;
            }
            let optional = flag(errs, "is_optional");
            match wrapper.get("config") {
                Some(config) => (config, optional),
                None => {
                    errs.add(
                        entry.path(),
                        format!(
                            "Empty route/virtual host per filter configuration for {name} filter"
                        ),
                    );
                    continue;
                }
            }
        } else {
            (entry, false)
        };
        let Some(inner) = type_url(&config, errs) else {
            continue;
        };
        let decoded = match inner {
            fault::TYPE => fault::decode(&config, errs).map(RouteFilterConfig::Fault),
            csrf::TYPE => csrf::decode(&config, errs).map(RouteFilterConfig::Csrf),
            cors::POLICY_TYPE => cors::decode_policy(&config, errs).map(RouteFilterConfig::Cors),
            header_mutation::PER_ROUTE_TYPE => header_mutation::decode_per_route(&config, errs)
                .map(RouteFilterConfig::HeaderMutation),
            rbac::PER_ROUTE_TYPE => {
                rbac::decode_per_route(&config, errs).map(RouteFilterConfig::Rbac)
            }
            buffer::PER_ROUTE_TYPE => {
                buffer::decode_per_route(&config, errs).map(RouteFilterConfig::Buffer)
            }
            jwt_authn::PER_ROUTE_TYPE => {
                jwt_authn::decode_per_route(&config, errs).map(RouteFilterConfig::JwtAuthn)
            }
            local_ratelimit::TYPE => {
                local_ratelimit::decode(&config, errs, true).map(RouteFilterConfig::LocalRateLimit)
            }
            ext_authz::PER_ROUTE_TYPE => {
                ext_authz::decode_per_route(&config, errs).map(RouteFilterConfig::ExtAuthz)
            }
            _ if optional => continue,
            health_check::TYPE => {
                errs.add(config.path(), format!("The filter {name} doesn't support virtual host or route specific configurations"));
                continue;
            }
            _ => {
                errs.add(
                    config.path(),
                    format!("per-route config {inner:?} of filter {name:?} is not supported yet"),
                );
                continue;
            }
        };
        if let Some(c) = decoded {
            configs.push((name.clone(), c));
        }
    }
    configs
}

/// Decodes every item of a list with `item`; None unless all decode.
fn decode_all<T>(
    node: &Node,
    errs: &mut Errors,
    item: fn(&Node, &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    let items = node.list(errs);
    let decoded: Vec<T> = items.iter().filter_map(|i| item(i, errs)).collect();
    (decoded.len() == items.len()).then_some(decoded)
}

/// The one field set in a oneof mapping (Envoy requires exactly one
/// of `fields.known`), and its value.
pub(super) fn one_of<'a>(
    node: &Node<'a>,
    errs: &mut Errors,
    fields: &Fields,
    what: &str,
) -> Option<(&'static str, Node<'a>)> {
    let obj = node.object(errs, fields)?;
    let set: Vec<&'static str> = fields
        .known
        .iter()
        .copied()
        .filter(|f| obj.get(f).is_some())
        .collect();
    let [field] = set.as_slice() else {
        errs.add(
            node.path(),
            format!(
                "a {what} has one of {}, found {set:?}",
                fields.known.join(", ")
            ),
        );
        return None;
    };
    Some((field, obj.get(field)?))
}

/// Decodes `http_filters`: every filter before the router, which must be
/// last. A filter Ringway does not implement is an error naming its type,
/// unless it `is_optional` (Envoy's contract: a proxy that does not
/// support it may skip it).
pub fn http_filters(obj: &Obj, errs: &mut Errors) -> Vec<HttpFilter> {
    let Some(list) = obj.get("http_filters") else {
        errs.add(
            &format!("{}.http_filters", obj.path()),
            format!("required field is missing: the chain must end with {ROUTER_NAME}"),
        );
        return Vec::new();
    };
    let items = list.list(errs);
    if items.is_empty() {
        errs.add(
            list.path(),
            format!("the chain must end with {ROUTER_NAME}"),
        );
    }
    let count = items.len();
    let mut filters = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Some(f) = item.object(errs, &HTTP_FILTER) else {
            continue;
        };
        let name = f
            .get("name")
            .and_then(|n| n.str(errs))
            .unwrap_or_default()
            .to_string();
        let flag = |errs: &mut Errors, field: &str| f.get(field).and_then(|b| b.bool(errs));
        let is_optional = flag(errs, "is_optional").unwrap_or(false);
        let disabled = flag(errs, "disabled").unwrap_or(false);
        // Envoy 1.40 finds a filter by its typed_config's type, never by
        // its name alone.
        let Some(tc) = f.get("typed_config") else {
            errs.add(
                &format!("{}.typed_config", item.path()),
                format!("required field is missing (HTTP filter {name:?})"),
            );
            continue;
        };
        let Some(type_url) = type_url(&tc, errs) else {
            continue;
        };
        let last = i + 1 == count;
        if type_url == ROUTER_TYPE {
            tc.object(errs, &ROUTER);
            if !last {
                errs.add(
                    item.path(),
                    format!("{ROUTER_NAME} must be the last HTTP filter"),
                );
            }
            continue;
        }
        if last {
            errs.add(
                item.path(),
                format!("the chain must end with {ROUTER_NAME}"),
            );
        }
        let kind = match type_url {
            health_check::TYPE => health_check::decode(&tc, errs).map(FilterKind::HealthCheck),
            fault::TYPE => fault::decode(&tc, errs).map(FilterKind::Fault),
            local_ratelimit::TYPE => {
                local_ratelimit::decode(&tc, errs, false).map(FilterKind::LocalRateLimit)
            }
            cors::TYPE => cors::decode_filter(&tc, errs).map(|()| FilterKind::Cors),
            csrf::TYPE => csrf::decode(&tc, errs).map(FilterKind::Csrf),
            rbac::TYPE => rbac::decode(&tc, errs).map(FilterKind::Rbac),
            header_mutation::TYPE => {
                header_mutation::decode(&tc, errs).map(FilterKind::HeaderMutation)
            }
            jwt_authn::TYPE => {
                jwt_authn::decode(&tc, errs).map(|c| FilterKind::JwtAuthn(Box::new(c)))
            }
            buffer::TYPE => buffer::decode(&tc, errs).map(FilterKind::Buffer),
            ext_authz::TYPE => {
                ext_authz::decode(&tc, errs).map(|c| FilterKind::ExtAuthz(Box::new(c)))
            }
            ratelimit::TYPE => {
                ratelimit::decode(&tc, errs).map(|c| FilterKind::RateLimit(Box::new(c)))
            }
            _ if is_optional => {
                log::warn!(
                    "{}: skipping optional HTTP filter {type_url:?}: Ringway does not implement it",
                    item.path()
                );
                continue;
            }
            _ => {
                errs.add(
                    item.path(),
                    format!("HTTP filter {type_url:?} is not supported yet"),
                );
                continue;
            }
        };
        if let Some(kind) = kind {
            filters.push(HttpFilter {
                name,
                disabled,
                kind,
            });
        }
    }
    filters
}
