//! `envoy.filters.http.local_ratelimit`: each request the filter is
//! enabled for takes a token from a bucket shared by every shard (or, with
//! `local_rate_limit_per_downstream_connection`, from its connection's);
//! without one it is limited, and when enforced answered with the
//! configured status (429) and body `local_rate_limited` (flag RL). A
//! route or virtual host may bring its own settings and bucket.

use super::{ConnectionState, Decision, ResponseStep};
use crate::config::LocalRateLimitConfig;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::http::mutate;
use crate::router::RequestView;
use crate::runtime::Share;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope, Store};
use crate::token_bucket::{Taken, TokenBucket};
use std::sync::Arc;

/// The filter (or a route's own settings), compiled.
#[derive(Debug)]
pub struct LocalRateLimit {
    config: LocalRateLimitConfig,
    /// The bucket every shard takes from (none: nothing is limited).
    bucket: Option<TokenBucket>,
    enabled: Option<Share>,
    enforced: Option<Share>,
    /// `response_headers_to_add`, rendered.
    response_headers: Vec<(String, Vec<u8>)>,
    stats: Arc<Scope<sets::HttpLocalRateLimit>>,
}

/// gRPC `RESOURCE_EXHAUSTED`.
const RESOURCE_EXHAUSTED: u8 = 8;

impl LocalRateLimit {
    /// Compiles `config`, its stats in `store` and its fractions read from
    /// the store's runtime.
    pub fn compile(config: &LocalRateLimitConfig, store: &Store) -> LocalRateLimit {
        let to_add = crate::config::HeaderMutations {
            add: config.response_headers.clone(),
            remove: Vec::new(),
        };
        let response_headers = mutate::plan_literal(&to_add, &|_| false).added;
        LocalRateLimit {
            bucket: config.bucket.as_ref().map(TokenBucket::new),
            enabled: config.enabled.as_ref().map(|p| store.runtime.share(p)),
            enforced: config.enforced.as_ref().map(|p| store.runtime.share(p)),
            response_headers,
            stats: store.http_local_ratelimit(&config.stat_prefix),
            config: config.clone(),
        }
    }

    /// The request-headers phase.
    pub fn on_request(
        &self,
        request: &RequestView,
        connection: &ConnectionState,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let drawn =
            |share: &Option<Share>| share.as_ref().is_some_and(|s| s.admits(shard.random()));
        if !drawn(&self.enabled) {
            return;
        }
        let w = shard.id;
        self.stats.inc(w, sets::HttpLocalRateLimit::enabled);
        let bucket = self.bucket(connection);
        let taken = bucket.map(TokenBucket::take);
        if let (Some(bucket), Some(taken), true) = (bucket, taken, self.config.x_ratelimit_headers)
        {
            x_ratelimit_headers(bucket, taken, decision);
        }
        if taken.is_none_or(|t| t.allowed) {
            self.stats.inc(w, sets::HttpLocalRateLimit::ok);
            return;
        }
        self.stats.inc(w, sets::HttpLocalRateLimit::rate_limited);
        if !drawn(&self.enforced) {
            let present = |name: &str| request.header(name).is_some();
            let edits = mutate::plan_literal(&self.config.request_headers, &present);
            decision.request_edits = std::mem::take(&mut decision.request_edits).then(edits);
            return;
        }
        self.stats.inc(w, sets::HttpLocalRateLimit::enforced);
        let mut reply = LocalReply::new(self.config.status, "local_rate_limited");
        reply.headers = self.response_headers.clone();
        if self.config.resource_exhausted {
            reply.grpc_status = Some(RESOURCE_EXHAUSTED);
        }
        decision.reply = Some((reply, ResponseFlags::RATE_LIMITED));
    }

    /// The bucket a request takes from: the shared one, or its
    /// connection's — one per connection, made from the settings of the
    /// first request that needs it (as Envoy keeps one in the connection's
    /// filter state). None without a `token_bucket`: nothing is limited.
    fn bucket<'a>(&'a self, connection: &'a ConnectionState) -> Option<&'a TokenBucket> {
        let config = self.config.bucket.as_ref()?;
        if self.config.per_connection {
            Some(
                connection
                    .rate_limit
                    .get_or_init(|| TokenBucket::new(config)),
            )
        } else {
            self.bucket.as_ref()
        }
    }
}

/// `x-ratelimit-limit`, `-remaining` and `-reset` (seconds until the next
/// token, rounded up; 0 while one is left), as Envoy's draft-03 headers.
fn x_ratelimit_headers(bucket: &TokenBucket, taken: Taken, decision: &mut Decision) {
    let reset = if taken.remaining >= 1 {
        0
    } else {
        let millis = bucket.token_interval().as_nanos().div_ceil(1_000_000);
        millis.div_ceil(1000)
    };
    for (name, value) in [
        ("x-ratelimit-limit", bucket.max_tokens().to_string()),
        ("x-ratelimit-remaining", taken.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        decision
            .filtered
            .response
            .push(ResponseStep::Add(name.to_string(), value.into_bytes()));
    }
}
