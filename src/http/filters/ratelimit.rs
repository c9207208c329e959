//! `envoy.filters.http.ratelimit`: the global rate limit filter. A
//! request whose route (or the filter's own `rate_limits`) makes
//! descriptors waits on a `ShouldRateLimit` call to the rate limit
//! service over gRPC; `OVER_LIMIT` answers the request with 429 and
//! `x-envoy-ratelimited: true`, any other code lets it through, and a
//! failed call lets it through unless `failure_mode_deny`. The service's
//! `request_headers_to_add` go upstream and its `response_headers_to_add`
//! on the response, as in Envoy.

use super::cluster_counters::ClusterCounters;
use super::descriptors::{self, Facts};
use super::{Answer, Call, Context, Decision, ResponseStep};
use crate::config::{AppendAction, HeaderMutations, RateLimitFilterConfig, VhRateLimits};
use crate::http::flags::ResponseFlags;
use crate::http::grpc;
use crate::http::local_reply::LocalReply;
use crate::http::mutate;
use crate::router::{Forward, Matched};
use crate::server::shard::Shard;
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{
    rate_limit_response::Code, RateLimitRequest, RateLimitResponse,
};
use prost::Message;
use std::borrow::Cow;
use std::sync::Arc;

/// The rate limit service's method.
const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The outcomes counted under the route's cluster
/// (`cluster.<name>.ratelimit.[<stat_prefix>.]<outcome>`).
const OUTCOMES: [&str; 4] = ["ok", "over_limit", "error", "failure_mode_allowed"];
const OK: usize = 0;
const OVER_LIMIT: usize = 1;
const ERROR: usize = 2;
const FAILURE_MODE_ALLOWED: usize = 3;

/// The filter, compiled.
#[derive(Debug)]
pub struct RateLimit {
    config: RateLimitFilterConfig,
    /// How calls are forwarded, and the service's cluster by position
    /// (None: no cluster of that name).
    to: Option<(Arc<Forward>, usize)>,
    counters: ClusterCounters,
    /// `response_headers_to_add`, as mutations.
    response_headers: HeaderMutations,
}

impl RateLimit {
    /// Compiles the filter's config.
    pub fn compile(config: &RateLimitFilterConfig, cx: &Context) -> RateLimit {
        let to = cx
            .clusters
            .get(&config.cluster)
            .map(|&c| (Arc::new(Forward::service_call(c, config.timeout)), c));
        let scope = if config.stat_prefix.is_empty() {
            "ratelimit.".to_string()
        } else {
            format!("ratelimit.{}.", config.stat_prefix)
        };
        RateLimit {
            config: config.clone(),
            to,
            counters: ClusterCounters::new(scope, &OUTCOMES, cx.clusters),
            response_headers: HeaderMutations {
                add: config.response_headers.clone(),
                remove: Vec::new(),
            },
        }
    }

    /// Asks the service about the request's descriptors, if it has any
    /// (and a route to a cluster: Envoy asks about no other).
    pub fn on_request(
        &self,
        matched: Option<Matched>,
        cluster: Option<usize>,
        facts: &Facts,
        decision: &mut Decision,
    ) {
        if matched.is_none() || cluster.is_none() {
            return;
        }
        let wanted = if self.config.rate_limits.is_empty() {
            descriptors::for_route(matched, self.config.stage, VhRateLimits::Override, facts)
        } else {
            descriptors::for_filter(&self.config.rate_limits, facts)
        };
        if wanted.is_empty() {
            return;
        }
        let request = RateLimitRequest {
            domain: self.config.domain.clone(),
            descriptors: wanted
                .into_iter()
                .map(|entries| RateLimitDescriptor {
                    entries: entries
                        .into_iter()
                        .map(|(key, value)| Entry { key, value })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            hits_addend: 0,
        };
        let timeout = grpc::format_timeout(self.config.timeout);
        let headers: [(&str, &[u8]); 3] = [
            ("content-type", b"application/grpc"),
            ("te", b"trailers"),
            ("grpc-timeout", timeout.as_bytes()),
        ];
        let call = Call::new(
            self.to.clone(),
            "POST",
            PATH,
            &self.config.authority,
            &headers,
            self.config.timeout,
            grpc::frame(&request.encode_to_vec()),
        );
        decision.wait_on(call, 0);
    }

    /// Acts on the service's `answer` for a request going to `cluster`.
    pub fn on_answer(
        &self,
        answer: Answer,
        cluster: Option<usize>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let count = |outcome: usize| {
            if let Some(c) = cluster {
                self.counters.inc(shard, c, outcome);
            }
        };
        let Some(response) = decode(&answer) else {
            count(ERROR);
            if self.config.failure_mode_deny {
                let reply = LocalReply::new(self.config.status_on_error, "");
                decision.reply = Some((reply, ResponseFlags::RATE_LIMIT_SERVICE_ERROR));
            } else {
                count(FAILURE_MODE_ALLOWED);
            }
            return;
        };
        let headers = |list: Vec<HeaderValue>| -> Vec<(String, Vec<u8>)> {
            list.into_iter()
                .filter(|h| !h.key.is_empty())
                .map(|h| (h.key.to_ascii_lowercase(), h.value.into_bytes()))
                .collect()
        };
        let response_headers = headers(response.response_headers_to_add);
        if response.overall_code == Code::OverLimit as i32 {
            count(OVER_LIMIT);
            let mut reply = LocalReply {
                status: self.config.rate_limited_status,
                body: Cow::Owned(response.raw_body),
                close: false,
                headers: response_headers,
                grpc_status: None,
            };
            if !self.config.disable_ratelimited_header {
                reply
                    .headers
                    .push(("x-envoy-ratelimited".into(), b"true".to_vec()));
            }
            // The filter's own headers, over the service's.
            let present = |name: &str| reply.headers.iter().any(|(n, _)| n == name);
            let edits = mutate::plan_literal(&self.response_headers, &present);
            reply.headers.retain(|(name, _)| edits.keeps(name));
            reply.headers.extend(edits.added);
            decision.reply = Some((reply, ResponseFlags::RATE_LIMITED));
            return;
        }
        count(OK);
        for (name, value) in headers(response.request_headers_to_add) {
            decision
                .request_edits
                .append(&name, value, AppendAction::AppendIfExistsOrAdd, true);
        }
        for (name, value) in response_headers {
            decision
                .filtered
                .response
                .push(ResponseStep::Add(name, value));
        }
    }
}

/// The service's response, when the call succeeded.
fn decode(answer: &Answer) -> Option<RateLimitResponse> {
    RateLimitResponse::decode(answer.grpc_message()?).ok()
}
