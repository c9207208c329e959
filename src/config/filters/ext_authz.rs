//! `envoy.filters.http.ext_authz`: an authorization service asked about
//! every request (over HTTP or gRPC), and a virtual host's or route's own
//! settings.

use super::super::node::{Errors, Fields, Node, Obj};
use super::super::route_match::{string_matcher, StringMatcher};
use super::grpc_service::{self, GrpcService};
use crate::access_log::Template;
use std::time::Duration;

/// The filter's type.
pub(super) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
/// A virtual host's or route's own settings.
pub(super) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

#[rustfmt::skip]
static FILTER: Fields = Fields {
    known: &[
        "@type", "http_service", "grpc_service", "transport_api_version", "failure_mode_allow",
        "failure_mode_allow_header_add", "clear_route_cache", "status_on_error", "stat_prefix",
        "charge_cluster_response_stats", "allowed_headers", "disallowed_headers",
    ],
    unsupported: &[
        "with_request_body", "validate_mutations", "metadata_context_namespaces",
        "typed_metadata_context_namespaces", "route_metadata_context_namespaces",
        "route_typed_metadata_context_namespaces", "filter_enabled", "filter_enabled_metadata",
        "deny_at_disable", "include_peer_certificate", "bootstrap_metadata_labels_key",
        "include_tls_session", "encode_raw_headers",
        "decoder_header_mutation_rules", "enable_dynamic_metadata_ingestion", "filter_metadata",
        "emit_filter_state_stats", "max_denied_response_body_bytes",
        "enforce_response_header_limits",
    ],
};
#[rustfmt::skip]
static HTTP_SERVICE: Fields = Fields {
    known: &["server_uri", "path_prefix", "authorization_request", "authorization_response"],
    unsupported: &["retry_policy"],
};
#[rustfmt::skip]
static SERVER_URI: Fields = Fields { known: &["uri", "cluster", "timeout"], unsupported: &[] };
#[rustfmt::skip]
static AUTHORIZATION_REQUEST: Fields = Fields {
    known: &["allowed_headers", "headers_to_add"],
    unsupported: &[],
};
#[rustfmt::skip]
static AUTHORIZATION_RESPONSE: Fields = Fields {
    known: &[
        "allowed_upstream_headers", "allowed_upstream_headers_to_append",
        "allowed_client_headers", "allowed_client_headers_on_success",
    ],
    unsupported: &["dynamic_metadata_from_headers"],
};
#[rustfmt::skip]
static LIST_MATCHER: Fields = Fields { known: &["patterns"], unsupported: &[] };
#[rustfmt::skip]
static HEADER_VALUE: Fields = Fields { known: &["key", "value"], unsupported: &["raw_value"] };
#[rustfmt::skip]
static HTTP_STATUS: Fields = Fields { known: &["code"], unsupported: &[] };
#[rustfmt::skip]
static PER_ROUTE: Fields = Fields {
    known: &["@type", "disabled", "check_settings"],
    unsupported: &[],
};
#[rustfmt::skip]
static CHECK_SETTINGS: Fields = Fields {
    known: &["context_extensions", "disable_request_body_buffering"],
    unsupported: &["with_request_body", "grpc_service", "http_service"],
};

/// The filter's config.
#[derive(Debug, Clone)]
pub struct ExtAuthzConfig {
    /// The service asked.
    pub service: AuthzService,
    /// `failure_mode_allow`: a failed call lets the request through.
    pub failure_mode_allow: bool,
    /// `failure_mode_allow_header_add`: such a request carries
    /// `x-envoy-auth-failure-mode-allowed: true`.
    pub failure_mode_allow_header_add: bool,
    /// `clear_route_cache`: headers the service adds have the route
    /// matched again.
    pub clear_route_cache: bool,
    /// `status_on_error` (403 by default).
    pub status_on_error: u16,
    /// `stat_prefix`: `http.<prefix>.ext_authz.<this>.`.
    pub stat_prefix: String,
    /// `charge_cluster_response_stats`: a denial counts as a response of
    /// the route's cluster.
    pub charge_cluster_response_stats: bool,
    /// `allowed_headers`: the only request headers a gRPC check carries
    /// (an HTTP service's list, besides its four, is its own).
    pub allowed_headers: Option<Vec<StringMatcher>>,
    /// `disallowed_headers`: request headers no check carries.
    pub disallowed_headers: Vec<StringMatcher>,
}

/// The authorization service.
#[derive(Debug, Clone)]
pub enum AuthzService {
    /// `http_service`.
    Http(HttpAuthzService),
    /// `grpc_service` (`envoy.service.auth.v3.Authorization`), with its
    /// timeout (200 ms by default).
    Grpc(GrpcService, Duration),
}

/// `http_service`.
#[derive(Debug, Clone)]
pub struct HttpAuthzService {
    /// `server_uri.cluster`.
    pub cluster: String,
    /// `server_uri.timeout`.
    pub timeout: Duration,
    /// `path_prefix`: put before the request's path.
    pub path_prefix: String,
    /// `authorization_request.allowed_headers`: request headers the check
    /// carries besides `authorization`, `:method`, `:path` and `host`.
    pub allowed_headers: Vec<StringMatcher>,
    /// `authorization_request.headers_to_add` (literal values).
    pub headers_to_add: Vec<(String, String)>,
    /// `authorization_response.allowed_upstream_headers`: an allowing
    /// answer's headers that replace the request's.
    pub upstream_headers: Vec<StringMatcher>,
    /// `authorization_response.allowed_upstream_headers_to_append`: an
    /// allowing answer's headers added to the request's.
    pub upstream_headers_to_append: Vec<StringMatcher>,
    /// `authorization_response.allowed_client_headers`: a denying
    /// answer's headers the client gets (None: all but `host`).
    pub client_headers: Option<Vec<StringMatcher>>,
    /// `authorization_response.allowed_client_headers_on_success`: an
    /// allowing answer's headers added to the response.
    pub client_headers_on_success: Vec<StringMatcher>,
}

/// A virtual host's or route's `ExtAuthzPerRoute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAuthzPerRoute {
    /// `disabled: true`: requests here are not checked.
    Disabled,
    /// `disabled: false`, or `check_settings`: checked as the filter
    /// says, with these `context_extensions` (which only a gRPC service
    /// is sent; `disable_request_body_buffering` changes nothing, as no
    /// body is buffered).
    Check(Vec<(String, String)>),
}

/// Decodes the filter's config.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<ExtAuthzConfig> {
    let obj = node.object(errs, &FILTER)?;
    let mut allowed_headers = match obj.get("allowed_headers") {
        Some(l) => Some(list_matcher(&l, errs)?),
        None => None,
    };
    let service = match (obj.get("http_service"), obj.get("grpc_service")) {
        (Some(http), None) => {
            let mut service = http_service(&http, errs)?;
            if let Some(allowed) = allowed_headers.take() {
                if !service.allowed_headers.is_empty() {
                    errs.add(
                        obj.path(),
                        "Invalid duplicate configuration for allowed_headers.",
                    );
                    return None;
                }
                service.allowed_headers = allowed;
            }
            AuthzService::Http(service)
        }
        (None, Some(grpc)) => {
            let grpc = grpc_service::decode(&grpc, errs)?;
            let timeout = grpc.timeout.unwrap_or(Duration::from_millis(200));
            AuthzService::Grpc(grpc, timeout)
        }
        _ => {
            errs.add(
                obj.path(),
                "ext_authz needs one of http_service, grpc_service",
            );
            return None;
        }
    };
    if let Some(v) = obj.get("transport_api_version") {
        v.enumeration(errs, &["AUTO", "V2", "V3"])?;
    }
    let flag = |errs: &mut Errors, field: &str, default: bool| {
        obj.get(field).and_then(|b| b.bool(errs)).unwrap_or(default)
    };
    let status_on_error = match obj.get("status_on_error") {
        Some(s) => status(&s, errs)?,
        None => 403,
    };
    Some(ExtAuthzConfig {
        service,
        failure_mode_allow: flag(errs, "failure_mode_allow", false),
        failure_mode_allow_header_add: flag(errs, "failure_mode_allow_header_add", false),
        clear_route_cache: flag(errs, "clear_route_cache", false),
        status_on_error,
        stat_prefix: match obj.get("stat_prefix") {
            Some(p) => p.str(errs)?.to_string(),
            None => String::new(),
        },
        charge_cluster_response_stats: flag(errs, "charge_cluster_response_stats", true),
        allowed_headers,
        disallowed_headers: match obj.get("disallowed_headers") {
            Some(l) => list_matcher(&l, errs)?,
            None => Vec::new(),
        },
    })
}

/// `status_on_error`: an `HttpStatus`, whose code Envoy takes as given
/// (an unknown one is 403).
fn status(node: &Node, errs: &mut Errors) -> Option<u16> {
    let obj = node.object(errs, &HTTP_STATUS)?;
    let code = obj.require(errs, "code")?.uint(errs, 599)?;
    Some(if code < 100 { 403 } else { code as u16 })
}

fn http_service(node: &Node, errs: &mut Errors) -> Option<HttpAuthzService> {
    let obj = node.object(errs, &HTTP_SERVICE)?;
    let uri = obj.require(errs, "server_uri")?;
    let uri = uri.object(errs, &SERVER_URI)?;
    // Required; the check goes to the cluster, without the URI's host or path.
    uri.non_empty_str(errs, "uri")?;
    let cluster = uri.non_empty_str(errs, "cluster")?;
    let timeout = uri.require(errs, "timeout")?.duration(errs)?;
    let path_prefix = match obj.get("path_prefix") {
        Some(p) => p.str(errs)?.to_string(),
        None => String::new(),
    };
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        errs.add(
            &format!("{}.path_prefix", obj.path()),
            "value does not match regex pattern \"^/\"",
        );
        return None;
    }
    let request = obj.get("authorization_request");
    let request = match &request {
        Some(r) => Some(r.object(errs, &AUTHORIZATION_REQUEST)?),
        None => None,
    };
    let response = obj.get("authorization_response");
    let response = match &response {
        Some(r) => Some(r.object(errs, &AUTHORIZATION_RESPONSE)?),
        None => None,
    };
    let list = |errs: &mut Errors, level: &Option<Obj>, field: &str| match level
        .as_ref()
        .and_then(|o| o.get(field))
    {
        Some(l) => list_matcher(&l, errs).map(Some),
        None => Some(None),
    };
    let headers_to_add = match request.as_ref().and_then(|r| r.get("headers_to_add")) {
        Some(l) => header_values(&l, errs)?,
        None => Vec::new(),
    };
    Some(HttpAuthzService {
        cluster,
        timeout,
        path_prefix,
        allowed_headers: list(errs, &request, "allowed_headers")?.unwrap_or_default(),
        headers_to_add,
        upstream_headers: list(errs, &response, "allowed_upstream_headers")?.unwrap_or_default(),
        upstream_headers_to_append: list(errs, &response, "allowed_upstream_headers_to_append")?
            .unwrap_or_default(),
        client_headers: list(errs, &response, "allowed_client_headers")?.filter(|l| !l.is_empty()),
        client_headers_on_success: list(errs, &response, "allowed_client_headers_on_success")?
            .unwrap_or_default(),
    })
}

/// A `ListStringMatcher`.
fn list_matcher(node: &Node, errs: &mut Errors) -> Option<Vec<StringMatcher>> {
    let obj = node.object(errs, &LIST_MATCHER)?;
    let items = obj
        .get("patterns")
        .map(|p| p.list(errs))
        .unwrap_or_default();
    let matchers: Vec<StringMatcher> = items
        .iter()
        .filter_map(|m| string_matcher(m, errs))
        .collect();
    (matchers.len() == items.len()).then_some(matchers)
}

/// `headers_to_add`: `HeaderValue`s whose values must be literal.
fn header_values(node: &Node, errs: &mut Errors) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in node.list(errs) {
        let obj = item.object(errs, &HEADER_VALUE)?;
        let key = obj.non_empty_str(errs, "key")?.to_ascii_lowercase();
        let raw = match obj.get("value") {
            Some(v) => v.str(errs)?,
            None => "",
        };
        let literal = Template::parse(raw).ok().and_then(|t| t.literal());
        let Some(value) = literal else {
            errs.add(
                item.path(),
                "substitution formatters in ext_authz headers_to_add are not supported yet",
            );
            return None;
        };
        out.push((key, value.to_string()));
    }
    Some(out)
}

/// Decodes an `ExtAuthzPerRoute`.
pub(super) fn decode_per_route(node: &Node, errs: &mut Errors) -> Option<ExtAuthzPerRoute> {
    let obj = node.object(errs, &PER_ROUTE)?;
    let disabled = obj.get("disabled").and_then(|d| d.bool(errs));
    let settings = obj.get("check_settings");
    match (disabled, settings) {
        (Some(_), Some(_)) => {
            errs.add(
                obj.path(),
                "an ExtAuthzPerRoute has one of disabled, check_settings",
            );
            None
        }
        (Some(true), None) => Some(ExtAuthzPerRoute::Disabled),
        (Some(false), None) => Some(ExtAuthzPerRoute::Check(Vec::new())),
        (None, None) => {
            errs.add(
                obj.path(),
                "an ExtAuthzPerRoute needs disabled: true or check_settings",
            );
            None
        }
        (None, Some(s)) => {
            let settings = s.object(errs, &CHECK_SETTINGS)?;
            let mut extensions = Vec::new();
            if let Some(map) = settings.get("context_extensions") {
                let Some(entries) = map.value().as_object() else {
                    errs.add(map.path(), "expected a map of strings");
                    return None;
                };
                for key in entries.keys() {
                    let value = map.entry(key)?.str(errs)?.to_string();
                    extensions.push((key.clone(), value));
                }
            }
            Some(ExtAuthzPerRoute::Check(extensions))
        }
    }
}
