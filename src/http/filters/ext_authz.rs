//! `envoy.filters.http.ext_authz`: each request with a route waits on
//! a check of it by an authorization service, over HTTP or gRPC
//! ([`super::ext_authz_grpc`]). An allowing answer lets it through with
//! the headers the service sets, appends and removes upstream (and adds
//! to the response); an error (a 5xx or a failed gRPC call, a timeout, no
//! answer) answers `status_on_error` (403) unless `failure_mode_allow`;
//! anything else is a denial the client gets as the service gave it.
//! Over HTTP the check is the request's method, `path_prefix` + path,
//! `host`, `authorization` and the allowed headers, with an empty body.

use super::cluster_counters::ClusterCounters;
use super::ext_authz_grpc;
use super::{Answer, Call, Context, Decision, Downstream, ResponseStep};
use crate::config::{AppendAction, AuthzService, ExtAuthzConfig, HttpAuthzService, StringMatcher};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::{Forward, RequestView};
use crate::server::shard::Shard;
use crate::stats::{sets, Scope};
use std::borrow::Cow;
use std::sync::Arc;

/// The header in which an allowing service names request headers to
/// remove.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The outcomes counted under the route's cluster
/// (`cluster.<name>.ext_authz.[<stat_prefix>.]<outcome>`).
const OUTCOMES: [&str; 4] = ["ok", "denied", "error", "failure_mode_allowed"];
const OK: usize = 0;
const DENIED: usize = 1;
const ERROR: usize = 2;
const FAILURE_MODE_ALLOWED: usize = 3;

/// The filter, compiled.
#[derive(Debug)]
pub struct ExtAuthz {
    config: ExtAuthzConfig,
    /// How checks are forwarded, and the service's cluster by position
    /// (None: no cluster of that name).
    to: Option<(Arc<Forward>, usize)>,
    stats: Arc<Scope<sets::ExtAuthz>>,
    counters: ClusterCounters,
}

impl ExtAuthz {
    /// Compiles the filter's config.
    pub fn compile(config: &ExtAuthzConfig, cx: &Context) -> ExtAuthz {
        let (cluster, timeout) = match &config.service {
            AuthzService::Http(http) => (&http.cluster, http.timeout),
            AuthzService::Grpc(grpc, timeout) => (&grpc.cluster, *timeout),
        };
        let to = cx
            .clusters
            .get(cluster)
            .map(|&c| (Arc::new(Forward::service_call(c, timeout)), c));
        let scope = if config.stat_prefix.is_empty() {
            "ext_authz.".to_string()
        } else {
            format!("ext_authz.{}.", config.stat_prefix)
        };
        ExtAuthz {
            config: config.clone(),
            to,
            stats: cx
                .store
                .ext_authz(format!("http.{}.{scope}", cx.stat_prefix)),
            counters: ClusterCounters::new(scope, &OUTCOMES, cx.clusters),
        }
    }

    /// Asks the service about `request` (with a route's merged
    /// `context_extensions`): the chain waits on the check.
    pub fn on_request(
        &self,
        request: &RequestView,
        downstream: &Downstream,
        extensions: Vec<(String, String)>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let to = self.to.clone();
        let call = match &self.config.service {
            AuthzService::Http(service) => {
                http_check(to, request, service, &self.config.disallowed_headers)
            }
            AuthzService::Grpc(service, timeout) => {
                let check = ext_authz_grpc::CheckRequest {
                    request,
                    downstream,
                    extensions,
                    allowed: self.config.allowed_headers.as_deref(),
                    disallowed: &self.config.disallowed_headers,
                };
                check.call(to, &service.authority, *timeout, shard)
            }
        };
        decision.wait_on(call, 0);
    }

    /// Acts on the service's `answer` for `request` (as the filters before
    /// this one left it), going to `cluster`.
    pub fn on_answer(
        &self,
        answer: Answer,
        request: &RequestView,
        cluster: Option<usize>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let w = shard.id;
        let count = |outcome: usize| {
            if let Some(c) = cluster {
                self.counters.inc(shard, c, outcome);
            }
        };
        let verdict = match &self.config.service {
            AuthzService::Http(service) => http_verdict(answer, service),
            AuthzService::Grpc(..) => ext_authz_grpc::verdict(&answer),
        };
        match verdict {
            Verdict::Error => {
                count(ERROR);
                self.stats.inc(w, sets::ExtAuthz::error);
                if !self.config.failure_mode_allow {
                    let reply = LocalReply::new(self.config.status_on_error, "");
                    decision.reply = Some((reply, ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE));
                    return;
                }
                self.stats.inc(w, sets::ExtAuthz::failure_mode_allowed);
                count(FAILURE_MODE_ALLOWED);
                if self.config.failure_mode_allow_header_add {
                    decision.request_edits.append(
                        "x-envoy-auth-failure-mode-allowed",
                        b"true".to_vec(),
                        AppendAction::AppendIfExistsOrAdd,
                        true,
                    );
                }
            }
            Verdict::Allow(allowed) => {
                let edits = &mut decision.request_edits;
                for name in &allowed.remove {
                    edits.remove(name);
                }
                for (name, value) in &allowed.set {
                    edits.append(
                        name,
                        value.clone(),
                        AppendAction::OverwriteIfExistsOrAdd,
                        true,
                    );
                }
                for (name, value) in &allowed.append {
                    edits.append(name, value.clone(), AppendAction::AppendIfExistsOrAdd, true);
                }
                for (name, value) in &allowed.join {
                    if let Some(existing) = request.header(name) {
                        let mut joined = existing.into_owned().into_bytes();
                        joined.push(b',');
                        joined.extend_from_slice(value);
                        edits.append(name, joined, AppendAction::OverwriteIfExistsOrAdd, true);
                    }
                }
                let changed = !allowed.set.is_empty()
                    || !allowed.append.is_empty()
                    || !allowed.join.is_empty();
                if changed && self.config.clear_route_cache {
                    decision.clear_route_cache = true;
                }
                let response = &mut decision.filtered.response;
                response.extend(
                    allowed
                        .respond
                        .into_iter()
                        .map(|(name, value)| ResponseStep::Add(name, value)),
                );
                count(OK);
                self.stats.inc(w, sets::ExtAuthz::ok);
            }
            Verdict::Deny(reply) => {
                self.stats.inc(w, sets::ExtAuthz::denied);
                count(DENIED);
                if let Some(c) = cluster {
                    if self.config.charge_cluster_response_stats {
                        if let Some(up) = shard.view().snapshot.clusters.get(c) {
                            up.count_response(w, reply.status);
                        }
                    }
                }
                decision.reply = Some((reply, ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE));
            }
        }
    }
}

/// What an authorization service's answer says.
pub(super) enum Verdict {
    /// The request goes on, changed so.
    Allow(Allowed),
    /// The client gets this reply.
    Deny(LocalReply<'static>),
    /// The check failed.
    Error,
}

/// An allowing answer's changes.
#[derive(Default)]
pub(super) struct Allowed {
    /// Request headers set (replacing those of the name).
    pub set: Vec<(String, Vec<u8>)>,
    /// Request headers added as lines of their own.
    pub append: Vec<(String, Vec<u8>)>,
    /// Values appended to the request's header of the name, after a
    /// comma (nothing when it has none).
    pub join: Vec<(String, Vec<u8>)>,
    /// Request headers removed (first).
    pub remove: Vec<String>,
    /// Headers added to the response.
    pub respond: Vec<(String, Vec<u8>)>,
}

/// The check an HTTP service gets (never with a `disallowed` header).
fn http_check(
    to: Option<(Arc<Forward>, usize)>,
    request: &RequestView,
    service: &HttpAuthzService,
    disallowed: &[StringMatcher],
) -> Call {
    // The allowed headers the check carries (headers_to_add replace
    // those of their names).
    let allowed: Vec<(String, &[u8])> = request
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .filter(|(name, _)| {
            !matches!(name.as_str(), "host" | "content-length")
                && !service.headers_to_add.iter().any(|(n, _)| n == name)
                && (name == "authorization" || any_matches(&service.allowed_headers, name))
                && !any_matches(disallowed, name)
        })
        .collect();
    let headers: Vec<(&str, &[u8])> = allowed
        .iter()
        .map(|(n, v)| (n.as_str(), *v))
        .chain(
            service
                .headers_to_add
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )
        .collect();
    let path = [service.path_prefix.as_str(), request.path].concat();
    Call::new(
        to,
        request.method,
        &path,
        request.authority,
        &headers,
        service.timeout,
        Vec::new(),
    )
}

/// What an HTTP service's answer says: 200 allows, a 5xx (or none) is
/// an error, anything else denies.
fn http_verdict(answer: Answer, service: &HttpAuthzService) -> Verdict {
    if answer.status == 0 || answer.status >= 500 {
        return Verdict::Error;
    }
    if answer.status == 200 {
        let mut allowed = Allowed::default();
        if let Some(names) = answer.header(HEADERS_TO_REMOVE) {
            for name in String::from_utf8_lossy(names).split(',') {
                let name = name.trim().to_ascii_lowercase();
                if !name.is_empty() && !name.starts_with(':') && name != "host" {
                    allowed.remove.push(name);
                }
            }
        }
        for (name, value) in answer.headers {
            if name == HEADERS_TO_REMOVE {
                continue;
            }
            if any_matches(&service.upstream_headers, &name) {
                allowed.set.push((name.clone(), value.clone()));
            }
            if any_matches(&service.upstream_headers_to_append, &name) {
                allowed.append.push((name.clone(), value.clone()));
            }
            if any_matches(&service.client_headers_on_success, &name) {
                allowed.respond.push((name, value));
            }
        }
        return Verdict::Allow(allowed);
    }
    let headers = answer
        .headers
        .into_iter()
        .filter(|(name, _)| match &service.client_headers {
            None => name != "host",
            Some(allowed) => {
                matches!(
                    name.as_str(),
                    "www-authenticate" | "location" | "content-length"
                ) || any_matches(allowed, name)
            }
        })
        // The reply's own length, date and server stand (Envoy's
        // connection manager overwrites the latter two).
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "date" | "server" | HEADERS_TO_REMOVE
            )
        })
        .collect();
    Verdict::Deny(LocalReply {
        status: answer.status,
        body: Cow::Owned(answer.body),
        close: false,
        headers,
        grpc_status: None,
    })
}

/// Whether any of `matchers` takes header `name`.
pub(super) fn any_matches(matchers: &[StringMatcher], name: &str) -> bool {
    matchers.iter().any(|m| m.matches(name))
}
