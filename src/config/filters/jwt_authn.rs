//! `envoy.filters.http.jwt_authn`: JWT providers with local key sets,
//! where their tokens are found, what a verified token forwards, and the
//! requirements (by route `rules`, `requirement_map` names and routes'
//! own `PerRouteConfig`) that say which providers a request must satisfy.

use super::super::node::{Errors, Fields, Node, Obj};
use super::super::route_match::{route_match, string_matcher, RouteMatch, StringMatcher};
use super::super::tls::data_source;
use super::one_of;
use std::time::Duration;

/// The filter's type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// A virtual host's or route's own settings.
pub(super) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig";

#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &[
        "@type", "providers", "rules", "requirement_map", "bypass_cors_preflight",
        "strip_failure_response", "stat_prefix",
    ],
    unsupported: &["filter_state_rules"],
};
#[rustfmt::skip]
static PROVIDER: Fields = Fields {
    known: &[
        "issuer", "audiences", "subjects", "require_expiration", "max_lifetime", "local_jwks",
        "forward", "from_headers", "from_params", "from_cookies", "forward_payload_header",
        "pad_forward_payload_header", "clock_skew_seconds", "jwt_cache_config",
        "claim_to_headers", "clear_route_cache", "remote_jwks",
    ],
    unsupported: &[
        "payload_in_metadata", "normalize_payload_in_metadata",
        "header_in_metadata", "failed_status_in_metadata",
    ],
};
#[rustfmt::skip]
static REMOTE_JWKS: Fields = Fields {
    known: &["http_uri", "cache_duration"],
    unsupported: &["async_fetch", "retry_policy"],
};
#[rustfmt::skip]
static HTTP_URI: Fields = Fields { known: &["uri", "cluster", "timeout"], unsupported: &[] };
#[rustfmt::skip]
static JWT_HEADER: Fields = Fields { known: &["name", "value_prefix"], unsupported: &[] };
#[rustfmt::skip]
static CLAIM_TO_HEADER: Fields = Fields { known: &["header_name", "claim_name"], unsupported: &[] };
#[rustfmt::skip]
static CACHE: Fields = Fields {
    known: &["jwt_cache_size", "jwt_max_token_size"],
    unsupported: &[],
};
#[rustfmt::skip]
static RULE: Fields = Fields { known: &["match", "requires", "requirement_name"], unsupported: &[] };
#[rustfmt::skip]
static REQUIREMENT: Fields = Fields {
    known: &[
        "provider_name", "provider_and_audiences", "requires_any", "requires_all",
        "allow_missing_or_failed", "allow_missing",
    ],
    unsupported: &[],
};
#[rustfmt::skip]
static WITH_AUDIENCES: Fields = Fields { known: &["provider_name", "audiences"], unsupported: &[] };
#[rustfmt::skip]
static LIST: Fields = Fields { known: &["requirements"], unsupported: &[] };
#[rustfmt::skip]
static EMPTY: Fields = Fields { known: &[], unsupported: &[] };
#[rustfmt::skip]
static PER_ROUTE: Fields = Fields {
    known: &["@type", "disabled", "requirement_name"],
    unsupported: &[],
};

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// `local_jwks`, as read.
    Local(Vec<u8>),
    /// `remote_jwks`: fetched through a cluster, and kept a while.
    Remote(RemoteJwks),
}

/// `remote_jwks`.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    /// `http_uri.cluster`.
    pub cluster: String,
    /// `http_uri.uri`'s authority: the fetch's `host`.
    pub host: String,
    /// `http_uri.uri`'s path (and query).
    pub path: String,
    /// `http_uri.timeout`.
    pub timeout: Duration,
    /// `cache_duration` (10 minutes by default).
    pub cache_duration: Duration,
}

/// The filter's config.
#[derive(Debug, Clone, Default)]
pub struct JwtAuthnConfig {
    /// `providers`, by name, in config order.
    pub providers: Vec<(String, JwtProvider)>,
    /// `rules`: the first whose match accepts a request says what it
    /// requires.
    pub rules: Vec<JwtRule>,
    /// `requirement_map`, by name.
    pub requirement_map: Vec<(String, JwtRequirement)>,
    /// `bypass_cors_preflight`.
    pub bypass_cors_preflight: bool,
    /// `strip_failure_response`: refusals without body or
    /// `www-authenticate`.
    pub strip_failure_response: bool,
    /// `stat_prefix`.
    pub stat_prefix: String,
}

/// A JWT provider.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    /// `issuer` (empty: any).
    pub issuer: String,
    /// `audiences` (none: any).
    pub audiences: Vec<String>,
    /// `subjects`: what `sub` must match.
    pub subjects: Option<StringMatcher>,
    /// `require_expiration`.
    pub require_expiration: bool,
    /// `max_lifetime`: the most `exp - iat` may be.
    pub max_lifetime: Option<Duration>,
    /// Where its keys come from.
    pub keys: JwksSource,
    /// `forward`: keep the token in the request.
    pub forward: bool,
    /// `from_headers`: lower-case names and value prefixes.
    pub from_headers: Vec<(String, String)>,
    /// `from_params`.
    pub from_params: Vec<String>,
    /// `from_cookies`.
    pub from_cookies: Vec<String>,
    /// `forward_payload_header` (empty: none).
    pub forward_payload_header: String,
    /// `pad_forward_payload_header`.
    pub pad_forward_payload_header: bool,
    /// `claim_to_headers`: (lower-case header, claim).
    pub claim_to_headers: Vec<(String, String)>,
    /// `clock_skew_seconds` (0: Envoy's 60).
    pub clock_skew_seconds: u64,
    /// `jwt_cache_config`: (entries, largest token cached), when set.
    pub jwt_cache: Option<(usize, usize)>,
    /// `clear_route_cache`: match the route again once claims are headers.
    pub clear_route_cache: bool,
}

/// What a request must carry.
#[derive(Debug, Clone)]
pub enum JwtRequirement {
    /// `provider_name`, or `provider_and_audiences` (with audiences).
    Provider(String, Option<Vec<String>>),
    /// `requires_any`.
    Any(Vec<JwtRequirement>),
    /// `requires_all`.
    All(Vec<JwtRequirement>),
    /// `allow_missing_or_failed`.
    AllowMissingOrFailed,
    /// `allow_missing`.
    AllowMissing,
    /// An empty requirement: every request passes.
    AllowAll,
}

/// One of `rules`.
#[derive(Debug, Clone)]
pub struct JwtRule {
    /// `match`.
    pub matcher: RouteMatch,
    /// `requires`, or the `requirement_map` entry `requirement_name`
    /// names; None: no verification.
    pub requires: Option<JwtRequirement>,
}

/// A virtual host's or route's `PerRouteConfig`.
#[derive(Debug, Clone)]
pub enum JwtPerRoute {
    /// `disabled: true`.
    Disabled,
    /// `requirement_name`.
    RequirementName(String),
}

/// Decodes the filter's `JwtAuthentication`.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<JwtAuthnConfig> {
    let obj = node.object(errs, &FILTER)?;
    let before = errs.0.len();
    let flag = |errs: &mut Errors, name: &str| obj.get(name).and_then(|b| b.bool(errs));
    let mut config = JwtAuthnConfig {
        bypass_cors_preflight: flag(errs, "bypass_cors_preflight").unwrap_or(false),
        strip_failure_response: flag(errs, "strip_failure_response").unwrap_or(false),
        stat_prefix: match obj.get("stat_prefix") {
            Some(p) => p.str(errs)?.to_string(),
            None => String::new(),
        },
        ..JwtAuthnConfig::default()
    };
    for (name, entry) in map_entries(obj.get("providers"), errs) {
        if let Some(p) = provider(&name, &entry, errs) {
            config.providers.push((name, p));
        }
    }
    let names: Vec<&str> = config.providers.iter().map(|(n, _)| n.as_str()).collect();
    for (name, entry) in map_entries(obj.get("requirement_map"), errs) {
        if let Some(r) = requirement(&entry, errs, &names) {
            config.requirement_map.push((name, r));
        }
    }
    for item in obj.get("rules").map(|r| r.list(errs)).unwrap_or_default() {
        if let Some(r) = rule(&item, errs, &names, &config.requirement_map) {
            config.rules.push(r);
        }
    }
    (errs.0.len() == before).then_some(config)
}

/// A map field's entries, in order.
fn map_entries<'a>(node: Option<Node<'a>>, errs: &mut Errors) -> Vec<(String, Node<'a>)> {
    let Some(node) = node else {
        return Vec::new();
    };
    let Some(map) = node.value().as_object() else {
        errs.add(node.path(), "expected a map");
        return Vec::new();
    };
    map.keys()
        .filter_map(|k| Some((k.clone(), node.entry(k)?)))
        .collect()
}

fn strings(node: Option<Node>, errs: &mut Errors) -> Vec<String> {
    node.map(|l| l.list(errs))
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.str(errs).map(str::to_string))
        .collect()
}

fn provider(name: &str, node: &Node, errs: &mut Errors) -> Option<JwtProvider> {
    let obj = node.object(errs, &PROVIDER)?;
    let flag =
        |errs: &mut Errors, field: &str| obj.get(field).and_then(|b| b.bool(errs)).unwrap_or(false);
    let text = |errs: &mut Errors, field: &str| {
        obj.get(field)
            .and_then(|s| s.str(errs).map(str::to_string))
            .unwrap_or_default()
    };
    let keys = jwks_source(&obj, node, name, errs)?;
    let mut from_headers = Vec::new();
    for h in obj
        .get("from_headers")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(h) = h.object(errs, &JWT_HEADER) else {
            continue;
        };
        let Some(header) = h.non_empty_str(errs, "name") else {
            continue;
        };
        let prefix = h
            .get("value_prefix")
            .and_then(|p| p.str(errs).map(str::to_string))
            .unwrap_or_default();
        from_headers.push((header.to_ascii_lowercase(), prefix));
    }
    let mut claim_to_headers = Vec::new();
    for c in obj
        .get("claim_to_headers")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(c) = c.object(errs, &CLAIM_TO_HEADER) else {
            continue;
        };
        let (Some(header), Some(claim)) = (
            c.non_empty_str(errs, "header_name"),
            c.non_empty_str(errs, "claim_name"),
        ) else {
            continue;
        };
        claim_to_headers.push((header.to_ascii_lowercase(), claim));
    }
    let jwt_cache = match obj.get("jwt_cache_config") {
        Some(c) => {
            let c = c.object(errs, &CACHE)?;
            let size = |errs: &mut Errors, field: &str, default: u64| match c
                .get(field)
                .and_then(|n| n.uint(errs, u64::from(u32::MAX)))
            {
                Some(0) | None => default,
                Some(n) => n,
            };
            Some((
                size(errs, "jwt_cache_size", 100) as usize,
                size(errs, "jwt_max_token_size", 4096) as usize,
            ))
        }
        None => None,
    };
    Some(JwtProvider {
        issuer: text(errs, "issuer"),
        audiences: strings(obj.get("audiences"), errs),
        subjects: match obj.get("subjects") {
            Some(s) => Some(string_matcher(&s, errs)?),
            None => None,
        },
        require_expiration: flag(errs, "require_expiration"),
        max_lifetime: match obj.get("max_lifetime") {
            Some(d) => Some(d.duration(errs)?),
            None => None,
        },
        keys,
        forward: flag(errs, "forward"),
        from_headers,
        from_params: strings(obj.get("from_params"), errs),
        from_cookies: strings(obj.get("from_cookies"), errs),
        forward_payload_header: text(errs, "forward_payload_header").to_ascii_lowercase(),
        pad_forward_payload_header: flag(errs, "pad_forward_payload_header"),
        claim_to_headers,
        clock_skew_seconds: obj
            .get("clock_skew_seconds")
            .and_then(|n| n.uint(errs, u64::from(u32::MAX)))
            .unwrap_or(0),
        jwt_cache,
        clear_route_cache: flag(errs, "clear_route_cache"),
    })
}

/// Where a provider's keys come from: `local_jwks` (checked now) or
/// `remote_jwks`.
fn jwks_source(obj: &Obj, node: &Node, name: &str, errs: &mut Errors) -> Option<JwksSource> {
    let jwks = match (obj.get("local_jwks"), obj.get("remote_jwks")) {
        (Some(local), None) => local,
        (None, Some(remote)) => return remote_jwks(&remote, errs).map(JwksSource::Remote),
        _ => {
            errs.add(
                node.path(),
                format!("provider {name:?} needs one of local_jwks, remote_jwks"),
            );
            return None;
        }
    };
    let source = data_source(&jwks, errs)?;
    let local_jwks = match source.load() {
        Ok(bytes) => bytes,
        Err(e) => {
            errs.add(jwks.path(), e);
            return None;
        }
    };
    if let Err(status) = crate::jwt::jwks::Jwks::parse(&local_jwks) {
        errs.add(
            jwks.path(),
            format!(
                "Provider '{name}' in jwt_authn config has invalid local jwks: {}",
                status.message()
            ),
        );
        return None;
    }
    Some(JwksSource::Local(local_jwks))
}

/// Decodes `remote_jwks`.
fn remote_jwks(node: &Node, errs: &mut Errors) -> Option<RemoteJwks> {
    let obj = node.object(errs, &REMOTE_JWKS)?;
    let uri = obj.require(errs, "http_uri")?;
    let uri = uri.object(errs, &HTTP_URI)?;
    let text = uri.non_empty_str(errs, "uri")?;
    let Some((host, path)) = text
        .split_once("://")
        .map(|(_, rest)| {
            rest.split_once('/')
                .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")))
        })
        .filter(|(h, _)| !h.is_empty())
    else {
        errs.add(uri.path(), format!("http_uri {text:?} is not a URI"));
        return None;
    };
    Some(RemoteJwks {
        cluster: uri.non_empty_str(errs, "cluster")?,
        host: host.to_string(),
        path,
        timeout: uri.require(errs, "timeout")?.duration(errs)?,
        cache_duration: match obj.get("cache_duration") {
            Some(d) => {
                let duration = d.duration(errs)?;
                if duration < Duration::from_millis(1) {
                    errs.add(d.path(), "value must be inside range [1ms, 2500000h0m0s)");
                    return None;
                }
                duration
            }
            None => Duration::from_secs(600),
        },
    })
}

/// Decodes a `JwtRequirement`; `providers` are the configured names.
fn requirement(node: &Node, errs: &mut Errors, providers: &[&str]) -> Option<JwtRequirement> {
    if node.value().as_object().is_some_and(|o| o.is_empty()) {
        return Some(JwtRequirement::AllowAll);
    }
    let (field, value) = one_of(node, errs, &REQUIREMENT, "requirement")?;
    let known = |errs: &mut Errors, name: &str, at: &Node| {
        let ok = providers.contains(&name);
        if !ok {
            errs.add(
                at.path(),
                format!("Required provider ['{name}'] is not configured."),
            );
        }
        ok
    };
    match field {
        "provider_name" => {
            let name = value.str(errs)?;
            known(errs, name, &value).then(|| JwtRequirement::Provider(name.to_string(), None))
        }
        "provider_and_audiences" => {
            let obj = value.object(errs, &WITH_AUDIENCES)?;
            let name = obj.non_empty_str(errs, "provider_name")?;
            let audiences = strings(obj.get("audiences"), errs);
            known(errs, &name, &value).then_some(JwtRequirement::Provider(name, Some(audiences)))
        }
        "requires_any" | "requires_all" => {
            let obj = value.object(errs, &LIST)?;
            let items = obj
                .get("requirements")
                .map(|l| l.list(errs))
                .unwrap_or_default();
            if items.len() < 2 {
                errs.add(value.path(), "requirements: expected at least 2 items");
                return None;
            }
            let list = items
                .iter()
                .map(|i| requirement(i, errs, providers))
                .collect::<Option<Vec<_>>>()?;
            Some(if field == "requires_any" {
                JwtRequirement::Any(list)
            } else {
                JwtRequirement::All(list)
            })
        }
        "allow_missing_or_failed" => {
            value.object(errs, &EMPTY)?;
            Some(JwtRequirement::AllowMissingOrFailed)
        }
        _ => {
            value.object(errs, &EMPTY)?;
            Some(JwtRequirement::AllowMissing)
        }
    }
}

fn rule(
    node: &Node,
    errs: &mut Errors,
    providers: &[&str],
    named: &[(String, JwtRequirement)],
) -> Option<JwtRule> {
    let obj = node.object(errs, &RULE)?;
    let matcher = route_match(&obj.require(errs, "match")?, errs, true)?;
    let requires = match (obj.get("requires"), obj.get("requirement_name")) {
        (Some(_), Some(_)) => {
            errs.add(
                node.path(),
                "a rule has one of requires or requirement_name",
            );
            return None;
        }
        (Some(r), None) => Some(requirement(&r, errs, providers)?),
        (None, Some(n)) => {
            let name = n.str(errs)?;
            let Some((_, r)) = named.iter().find(|(k, _)| k == name) else {
                errs.add(
                    n.path(),
                    format!(
                        "Wrong requirement_name: {name}. It should be one of [{}]",
                        {
                            let names: Vec<&str> = named.iter().map(|(k, _)| k.as_str()).collect();
                            names.join(",")
                        }
                    ),
                );
                return None;
            };
            Some(r.clone())
        }
        (None, None) => None,
    };
    Some(JwtRule { matcher, requires })
}

/// Decodes a `PerRouteConfig`.
pub(super) fn decode_per_route(node: &Node, errs: &mut Errors) -> Option<JwtPerRoute> {
    let obj = node.object(errs, &PER_ROUTE)?;
    match (obj.get("disabled"), obj.get("requirement_name")) {
        (Some(d), None) if d.bool(errs)? => Some(JwtPerRoute::Disabled),
        (None, Some(n)) if !n.str(errs)?.is_empty() => {
            Some(JwtPerRoute::RequirementName(n.str(errs)?.to_string()))
        }
        _ => {
            errs.add(
                node.path(),
                "a PerRouteConfig has disabled: true or a requirement_name",
            );
            None
        }
    }
}
