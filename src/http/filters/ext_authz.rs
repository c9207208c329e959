//! `envoy.filters.http.ext_authz` with an HTTP authorization service:
//! each request waits on a check sent to the service's cluster (the
//! request's method, `path_prefix` + path, `host`, `authorization` and the
//! allowed headers, an empty body). A 200 lets it through with the
//! headers the service allows upstream (and on the response); a 5xx, a
//! timeout or no answer is an error (`status_on_error`, 403, unless
//! `failure_mode_allow`); anything else is a denial the client gets as
//! the service gave it.

use super::cluster_counters::ClusterCounters;
use super::{Answer, Call, Context, Decision, ResponseStep};
use crate::config::{AppendAction, ExtAuthzConfig, HttpAuthzService, StringMatcher};
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
        let service = &config.service;
        let to = cx
            .clusters
            .get(&service.cluster)
            .map(|&c| (Arc::new(Forward::service_call(c, service.timeout)), c));
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

    /// Asks the service about `request`: the chain waits on the check.
    pub fn on_request(&self, request: &RequestView, decision: &mut Decision) {
        let service = &self.config.service;
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
        decision.call = Some(Call::new(
            self.to.clone(),
            request.method,
            &path,
            request.authority,
            &headers,
            service.timeout,
            Vec::new(),
        ));
    }

    /// Acts on the service's `answer` for a request going to `cluster`.
    pub fn on_answer(
        &self,
        answer: Answer,
        cluster: Option<usize>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let w = shard.id;
        let service = &self.config.service;
        let count = |outcome: usize| {
            if let Some(c) = cluster {
                self.counters.inc(shard, c, outcome);
            }
        };
        if answer.status == 0 || answer.status >= 500 {
            count(ERROR);
            self.stats.inc(w, sets::ExtAuthz::error);
            if self.config.failure_mode_allow {
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
            } else {
                let reply = LocalReply::new(self.config.status_on_error, "");
                decision.reply = Some((reply, ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE));
            }
            return;
        }
        if answer.status == 200 {
            self.allow(&answer, service, decision);
            count(OK);
            self.stats.inc(w, sets::ExtAuthz::ok);
            return;
        }
        self.stats.inc(w, sets::ExtAuthz::denied);
        count(DENIED);
        if let Some(c) = cluster {
            if self.config.charge_cluster_response_stats {
                if let Some(up) = shard.view().snapshot.clusters.get(c) {
                    up.count_response(w, answer.status);
                }
            }
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
        let reply = LocalReply {
            status: answer.status,
            body: Cow::Owned(answer.body),
            close: false,
            headers,
            grpc_status: None,
        };
        decision.reply = Some((reply, ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE));
    }

    /// An allowing answer's effects on the request and its response.
    fn allow(&self, answer: &Answer, service: &HttpAuthzService, decision: &mut Decision) {
        let edits = &mut decision.request_edits;
        if let Some(names) = answer.header(HEADERS_TO_REMOVE) {
            for name in String::from_utf8_lossy(names).split(',') {
                let name = name.trim().to_ascii_lowercase();
                if !name.is_empty() && !name.starts_with(':') && name != "host" {
                    edits.remove(&name);
                }
            }
        }
        let mut changed = false;
        for (name, value) in &answer.headers {
            if name == HEADERS_TO_REMOVE {
                continue;
            }
            if any_matches(&service.upstream_headers, name) {
                edits.append(
                    name,
                    value.clone(),
                    AppendAction::OverwriteIfExistsOrAdd,
                    true,
                );
                changed = true;
            }
            if any_matches(&service.upstream_headers_to_append, name) {
                edits.append(name, value.clone(), AppendAction::AppendIfExistsOrAdd, true);
                changed = true;
            }
            if any_matches(&service.client_headers_on_success, name) {
                decision
                    .filtered
                    .response
                    .push(ResponseStep::Add(name.clone(), value.clone()));
            }
        }
        if changed && self.config.clear_route_cache {
            decision.clear_route_cache = true;
        }
    }
}

/// Whether any of `matchers` takes header `name`.
fn any_matches(matchers: &[StringMatcher], name: &str) -> bool {
    matchers.iter().any(|m| m.matches(name))
}
