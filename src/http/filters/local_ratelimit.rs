//! `envoy.filters.http.local_ratelimit`: each request the filter is
//! enabled for takes a token from a bucket shared by every shard (or, with
//! `local_rate_limit_per_downstream_connection`, from its connection's);
//! without one it is limited, and when enforced answered with the
//! configured status (429) and body `local_rate_limited` (flag RL). A
//! route or virtual host may bring its own settings and bucket. With
//! `descriptors`, a request whose route `rate_limits` make a matching
//! descriptor takes from that descriptor's bucket too (the slowest
//! filling first), and from the default one unless
//! `always_consume_default_token_bucket` is off.

use super::descriptors::{self, Descriptor, Facts};
use super::{ConnectionState, Decision, ResponseStep};
use crate::config::{LocalDescriptor, LocalRateLimitConfig};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::http::mutate;
use crate::router::{Matched, RequestView};
use crate::runtime::Share;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope, Store};
use crate::token_bucket::{Taken, TokenBucket};
use std::sync::{Arc, Mutex};

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
    /// `descriptors` whose entries all have values, with their buckets.
    fixed: Vec<(Descriptor, Arc<TokenBucket>, f64)>,
    /// `descriptors` with a wildcard entry: a bucket per value seen.
    wildcards: Vec<Wildcard>,
    stats: Arc<Scope<sets::HttpLocalRateLimit>>,
}

/// A descriptor with an empty value: each descriptor it matches gets its
/// own bucket, the least recently used dropped past
/// `max_dynamic_descriptors`.
#[derive(Debug)]
struct Wildcard {
    config: LocalDescriptor,
    fill_rate: f64,
    /// Most recently used first.
    buckets: Mutex<Vec<(Descriptor, Arc<TokenBucket>)>>,
}

impl Wildcard {
    fn matches(&self, descriptor: &Descriptor) -> bool {
        self.config.entries.len() == descriptor.len()
            && self
                .config
                .entries
                .iter()
                .zip(descriptor)
                .all(|((k, v), (rk, rv))| k == rk && (v.is_empty() || v == rv))
    }

    fn bucket(&self, descriptor: &Descriptor, most: usize) -> Arc<TokenBucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = buckets.iter().position(|(d, _)| d == descriptor) {
            let found = buckets.remove(i);
            let bucket = found.1.clone();
            buckets.insert(0, found);
            return bucket;
        }
        let bucket = Arc::new(TokenBucket::new(&self.config.bucket));
        buckets.insert(0, (descriptor.clone(), bucket.clone()));
        buckets.truncate(most.max(1));
        bucket
    }
}

/// Tokens per second a bucket gains.
fn fill_rate(bucket: &crate::config::TokenBucket) -> f64 {
    bucket.tokens_per_fill as f64 / bucket.fill_interval.as_secs_f64()
}

/// What the filter needs to know of the request besides its headers.
pub struct Context<'a> {
    /// The filter state of its connection.
    pub connection: &'a ConnectionState,
    /// Its route.
    pub matched: Option<Matched<'a>>,
    /// What the route's rate limit actions read.
    pub facts: Facts<'a>,
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
            fixed: config
                .descriptors
                .iter()
                .filter(|d| d.entries.iter().all(|(_, v)| !v.is_empty()))
                .map(|d| {
                    let bucket = Arc::new(TokenBucket::new(&d.bucket));
                    (d.entries.clone(), bucket, fill_rate(&d.bucket))
                })
                .collect(),
            wildcards: config
                .descriptors
                .iter()
                .filter(|d| d.entries.iter().any(|(_, v)| v.is_empty()))
                .map(|d| Wildcard {
                    config: d.clone(),
                    fill_rate: fill_rate(&d.bucket),
                    buckets: Mutex::new(Vec::new()),
                })
                .collect(),
            stats: store.http_local_ratelimit(&config.stat_prefix),
            config: config.clone(),
        }
    }

    /// The request-headers phase.
    pub fn on_request(
        &self,
        request: &RequestView,
        cx: &Context,
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
        let (allowed, decided) = self.take(cx);
        if let (Some(decided), true) = (decided, self.config.x_ratelimit_headers) {
            x_ratelimit_headers(decided, decision);
        }
        if allowed {
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

    /// Takes tokens for a request, as Envoy's limiter does: from each
    /// matched descriptor's bucket (slowest filling first) until one is
    /// empty, then from the default bucket when nothing matched or
    /// `always_consume_default_token_bucket`. Whether it may pass, and
    /// the bucket that decided (for the `x-ratelimit-*` headers).
    fn take(&self, cx: &Context) -> (bool, Option<Decided>) {
        let mut matched: Vec<(Arc<TokenBucket>, f64)> = Vec::new();
        if !self.fixed.is_empty() || !self.wildcards.is_empty() {
            let wanted = if self.config.rate_limits.is_empty() {
                descriptors::for_route(
                    cx.matched,
                    self.config.stage,
                    self.config.vh_rate_limits,
                    &cx.facts,
                )
            } else {
                descriptors::for_filter(&self.config.rate_limits, &cx.facts)
            };
            for d in &wanted {
                if let Some((_, bucket, rate)) = self.fixed.iter().find(|(e, _, _)| e == d) {
                    matched.push((bucket.clone(), *rate));
                } else if let Some(w) = self.wildcards.iter().find(|w| w.matches(d)) {
                    let bucket = w.bucket(d, self.config.max_dynamic_descriptors);
                    matched.push((bucket, w.fill_rate));
                }
            }
            matched.sort_by(|a, b| a.1.total_cmp(&b.1));
        }
        let mut first: Option<Decided> = None;
        for (bucket, _) in &matched {
            let taken = bucket.take();
            if !taken.allowed {
                return (false, Some(Decided::by(bucket, taken)));
            }
            first.get_or_insert(Decided::by(bucket, taken));
        }
        if matched.is_empty() || self.config.always_consume_default {
            if let Some(default) = self.bucket(cx.connection) {
                let taken = default.take();
                if !taken.allowed || matched.is_empty() {
                    return (taken.allowed, Some(Decided::by(default, taken)));
                }
            }
        }
        (true, first)
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

/// The bucket that decided a request, as its `x-ratelimit-*` headers
/// need it.
#[derive(Debug, Clone, Copy)]
struct Decided {
    max_tokens: u64,
    token_interval: std::time::Duration,
    taken: Taken,
}

impl Decided {
    fn by(bucket: &TokenBucket, taken: Taken) -> Decided {
        Decided {
            max_tokens: bucket.max_tokens(),
            token_interval: bucket.token_interval(),
            taken,
        }
    }
}

/// `x-ratelimit-limit`, `-remaining` and `-reset` (seconds until the next
/// token, rounded up; 0 while one is left), as Envoy's draft-03 headers.
fn x_ratelimit_headers(decided: Decided, decision: &mut Decision) {
    let taken = decided.taken;
    let reset = if taken.remaining >= 1 {
        0
    } else {
        let millis = decided.token_interval.as_nanos().div_ceil(1_000_000);
        millis.div_ceil(1000)
    };
    for (name, value) in [
        ("x-ratelimit-limit", decided.max_tokens.to_string()),
        ("x-ratelimit-remaining", taken.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        decision
            .filtered
            .response
            .push(ResponseStep::Add(name.to_string(), value.into_bytes()));
    }
}
