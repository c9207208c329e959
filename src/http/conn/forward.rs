//! Forwarding one request upstream: picking endpoints, buffering bodies
//! for replay, attempts with retries and timeouts, and relaying the
//! response.

mod admission;
mod upstream_h2;

use upstream_h2::Negotiated;

use super::downstream::Downstream;
use super::{mirror, timeout_reply, Exchange, Next, Protocol, Proxy};
use crate::config::{HostRewrite, LbMetadata, Priority, UpstreamProtocol};
use crate::http::body::{pump, OutFraming, PumpError, Source};
use crate::http::codec::{ChunkedDecoder, Framing, Patience, READ_CHUNK};
use crate::http::flags::ResponseFlags;
use crate::http::grpc;
use crate::http::head::{self, HeadSlots, Overrides, ParsedResponse, MAX_RESPONSE_HEAD};
use crate::http::local_reply::LocalReply;
use crate::http::retry::{FailKind, Retries};
use crate::http::upgrade;
use crate::net::{peer_spoke, Address, Stream};
use crate::router::Forward;
use crate::server::shard::Shard;
use crate::stats::sets::Retry as RetryStat;
use crate::stats::sets::{Cluster as ClusterStat, Host as HostStat, Http as HttpStat};
use crate::upstream::breakers::{Resource, Slot};
use crate::upstream::connect::{connect, ConnectFailure};
use crate::upstream::health::PassiveFailure;
use crate::upstream::lanes::Admitted;
use crate::upstream::outlier::{Event as OutlierEvent, Outcome};
use crate::upstream::pool::PoolWant;
use crate::upstream::{Cluster, Endpoint};
use monoio::io::AsyncWriteRentExt;
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

const RETRY_CLASSES: [RetryStat; 5] = [
    RetryStat::upstream_rq_1xx,
    RetryStat::upstream_rq_2xx,
    RetryStat::upstream_rq_3xx,
    RetryStat::upstream_rq_4xx,
    RetryStat::upstream_rq_5xx,
];

/// Where a forward goes: the route's action, the chosen cluster, and
/// where the upstream head's per-attempt values are.
pub(super) struct Upstream<'a> {
    pub(super) forward: &'a Forward,
    pub(super) cluster: usize,
    /// The subset criteria for the cluster (`metadata_match`).
    pub(super) criteria: Option<&'a LbMetadata>,
    pub(super) slots: HeadSlots,
    pub(super) hash: Option<u64>,
    pub(super) overrides: Overrides,
}

/// How an upstream response ended.
enum Received {
    /// Relayed in full; whether the upstream connection may be reused.
    Complete { reusable: bool },
    /// The upstream switched protocols (`101` to an upgrade): the head is
    /// sent and the connection is now a tunnel.
    Switched,
}

/// Why a forwarded request failed.
enum Failure {
    /// Before response headers: answer 503 with this reset reason.
    BeforeHeaders(&'static str),
    /// The upstream's response was not valid HTTP/1.1.
    Protocol,
    /// An HTTP/2 upstream refused the stream (REFUSED_STREAM) before
    /// answering.
    Refused,
    /// The upstream broke the response after its headers.
    UpstreamBroke,
    /// The downstream went away during the response.
    DownstreamGone,
    /// The response has a status the retry policy retries; it was not sent.
    Retriable(u16),
    /// The upstream sent nothing for the stream idle timeout.
    StreamIdle,
    /// `max_stream_duration` ended the response's relay.
    StreamDuration,
    /// The attempt's own limit (route, per-try or the cluster's stream
    /// duration) ended the response's relay.
    Deadline,
}

/// What waiting for one attempt's response came to.
struct Awaited {
    /// None: the route or per-try timeout ran out.
    result: Option<Result<Received, Failure>>,
    /// Which limit would end the attempt first.
    cut: Cut,
    /// The response head went downstream.
    headers_sent: bool,
}

/// The limits on waiting for an attempt's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The route timeout (across attempts).
    Route,
    /// The retry policy's per-try timeout.
    PerTry,
    /// The cluster's `max_stream_duration`, from the attempt's start.
    StreamDuration,
}

/// What one upstream attempt came to.
enum Tried {
    /// The client got its answer (or is gone): the connection's fate.
    Done(Next),
    /// Failed before anything reached the client; the reply that would
    /// answer it, and what kind of failure it was.
    Failed(LocalReply<'static>, FailKind),
    /// The upstream answered with a status the policy retries; nothing was
    /// sent downstream.
    Retriable(u16),
    /// A circuit breaker (or the route timeout while waiting under one)
    /// turned the attempt away before it had a connection: answer with
    /// this, never retried.
    Refused(LocalReply<'static>),
}

/// Why an attempt has no connection.
enum NoConnection {
    /// Connecting (or the handshake) failed: the reply that says why.
    Failed(LocalReply<'static>),
    /// A circuit breaker turned it away: the reply.
    Refused(LocalReply<'static>),
}

/// Where and how one attempt goes.
struct AttemptPlan<'a> {
    cluster: &'a Cluster,
    endpoint: &'a Endpoint,
    cluster_index: usize,
    /// The buffered body (empty for bodiless requests), or None to stream it.
    body: Option<&'a [u8]>,
    /// How the buffered body is framed upstream (a chunked body the
    /// buffer filter decoded goes with its length).
    framing: Framing,
    /// The route timeout.
    timeout: Option<Duration>,
    /// When the route timeout ends, if it has started.
    deadline: Option<Instant>,
    /// Check response heads against the retry policy before relaying them.
    watch_responses: bool,
    /// The route's priority: which circuit-breaker thresholds apply.
    priority: Priority,
    /// The cluster retry slot the request holds while it retries.
    retry_slot: &'a Slot<'a>,
}

impl AttemptPlan<'_> {
    /// When the route timeout ends: its deadline if it has started, else
    /// one timeout from `now`.
    fn route_deadline(&self, now: Instant) -> Option<Instant> {
        self.deadline.or(self.timeout.map(|t| now + t))
    }
}

impl<D: Downstream> Proxy<D> {
    /// Forwards a request to the chosen cluster, retrying as the route's
    /// retry policy (and the request's `x-envoy-*` headers) allow.
    pub(super) async fn forward(
        &mut self,
        x: &Exchange<'_>,
        mut to: Upstream<'_>,
        mut head: Vec<u8>,
    ) -> Next {
        let view = x.view;
        let Some(cluster) = view.snapshot.clusters.get(to.cluster) else {
            return self
                .reply(x, &LocalReply::new(503, "no healthy upstream"))
                .await;
        };
        let mut retries = Retries::new(to.forward.retry.as_ref(), &to.overrides);
        if x.req.upgrade {
            // A tunnel cannot be replayed.
            retries.remaining = 0;
        }
        // A body is replayed on retry (and copied to mirrors) only when it
        // fits the buffer limit; otherwise it is streamed once and the
        // request is neither retried nor mirrored.
        // The buffer filter's limit is the request's (Envoy's decoder
        // buffer limit), and past it the answer is 413.
        let must_buffer = x.req.filtered.buffer;
        let buffered = retries.enabled() || !to.forward.mirrors.is_empty() || must_buffer.is_some();
        let limit = must_buffer.unwrap_or(to.forward.buffer_limit);
        let mut framing = x.req.framing;
        let body = match x.req.framing {
            Framing::Empty => Some(Vec::new()),
            Framing::Length(n) if must_buffer.is_some() && n > limit => {
                let (_, rbuf) = self.down.request_body();
                x.log.bytes_received.set((rbuf.data().len() as u64).min(n));
                return self.too_large(x).await;
            }
            Framing::Length(n) if buffered && n <= limit => {
                if x.req.expect_continue && !self.send_continue(x).await {
                    return Next::Close;
                }
                match self.buffer_body(n as usize, x.request_patience()).await {
                    Ok(body) => {
                        x.log.bytes_received.set(n);
                        Some(body)
                    }
                    Err(e) => return self.body_read_failed(x, &e).await,
                }
            }
            Framing::Chunked if buffered => {
                if x.req.expect_continue && !self.send_continue(x).await {
                    return Next::Close;
                }
                // The filter's limit is on the data; the chunk framing
                // around it may take as much again (and 64 KiB) in memory.
                let (raw_limit, data_limit) = match must_buffer {
                    Some(l) => (l.saturating_mul(2).saturating_add(65_536), Some(l)),
                    None => (limit, None),
                };
                let raw_limit = usize::try_from(raw_limit).unwrap_or(usize::MAX);
                let patience = x.request_patience();
                match self.buffer_chunked(raw_limit, data_limit, patience).await {
                    Ok(Ok((raw, data_len))) => {
                        x.log.bytes_received.set(data_len);
                        Some(raw)
                    }
                    Ok(Err(data_len)) if must_buffer.is_some() => {
                        x.log.bytes_received.set(data_len);
                        return self.too_large(x).await;
                    }
                    // Past the limit: streamed once from what is buffered.
                    Ok(Err(_)) => {
                        retries.remaining = 0;
                        None
                    }
                    Err(e) => return self.body_read_failed(x, &e).await,
                }
            }
            _ => {
                retries.remaining = 0;
                None
            }
        };
        if !to.forward.mirrors.is_empty() && !x.req.upgrade {
            let original = mirror::Original {
                head: &head,
                slots: &to.slots,
                body: body.as_deref(),
            };
            mirror::mirror(x, &to, &original);
        }
        // A chunked body the buffer filter read goes on with its length,
        // as Envoy's filter sets one.
        let body = match body {
            Some(raw) if must_buffer.is_some() && x.req.framing == Framing::Chunked => {
                let data = dechunk(&raw);
                drop_header(&mut head, &mut to.slots, "transfer-encoding");
                append_header(
                    &mut head,
                    "content-length",
                    data.len().to_string().as_bytes(),
                );
                framing = Framing::Length(data.len() as u64);
                Some(data)
            }
            body => body,
        };
        // Response heads are held for inspection only when retries can happen.
        let watch_responses = retries.enabled() && retries.watches_responses();
        let timeout = to.overrides.timeout.unwrap_or(to.forward.timeout);
        // With the body in hand the route timeout starts now and bounds
        // every attempt; a streamed body starts it once it is sent.
        let deadline = body.as_ref().and(timeout).map(|t| Instant::now() + t);
        let mut tried: Vec<Address> = Vec::new();
        // A cluster retry slot is held from a retry's decision to the
        // next decision (or the end of the request).
        let priority = to.forward.priority;
        let slot = Slot::new(&cluster.breakers, priority, Resource::Retries);
        let random = || x.shard.random();
        loop {
            let Some(endpoint) = self.pick(x, &to, &retries, &tried, &random) else {
                cluster
                    .stats
                    .inc(x.shard.id, ClusterStat::upstream_cx_none_healthy);
                x.flag(ResponseFlags::NO_HEALTHY_UPSTREAM);
                return self
                    .reply(x, &LocalReply::new(503, "no healthy upstream"))
                    .await;
            };
            // Only another attempt looks at the hosts tried (and a request
            // without one allocates nothing for it).
            if retries.remaining > 0 && retries.previous_hosts {
                tried.push(endpoint.addr.clone());
            }
            x.attempts.set(retries.done + 1);
            // The head is copied only while another attempt may need it.
            let mut attempt_head = if retries.remaining > 0 {
                head.clone()
            } else {
                std::mem::take(&mut head)
            };
            // The upstream learns how long this attempt may take: the per-try
            // timeout, or what is left of the route's (its value sits after
            // the host, so it is rewritten before the host may move).
            if let Some(slot) = &to.slots.expected_timeout {
                let left = match deadline {
                    Some(d) if retries.done > 0 => {
                        Some(d.saturating_duration_since(Instant::now()))
                    }
                    _ => timeout,
                };
                let expected = match (retries.per_try_timeout, left) {
                    (Some(p), Some(l)) => Some(p.min(l)),
                    (p, l) => p.or(l),
                };
                if expected != timeout {
                    if let Some(e) = expected {
                        let ms = e.as_millis().to_string();
                        attempt_head.splice(slot.clone(), ms.into_bytes());
                    }
                }
            }
            // Envoy rewrites to the endpoint's hostname: a configured one, or
            // the DNS name of a STRICT_DNS endpoint.
            let auto_host = (to.forward.host_rewrite == HostRewrite::Auto)
                .then(|| cluster.endpoint_hostname(endpoint))
                .flatten();
            if let Some(hostname) = auto_host {
                let original = attempt_head[to.slots.host.clone()].to_vec();
                attempt_head.splice(to.slots.host.clone(), hostname.bytes());
                append_header(&mut attempt_head, "x-envoy-original-host", &original);
            }
            if x.matched.is_some_and(|m| m.vhost.attempt_count_in_request) {
                let count = (retries.done + 1).to_string();
                append_header(&mut attempt_head, "x-envoy-attempt-count", count.as_bytes());
            }
            let plan = AttemptPlan {
                cluster,
                endpoint,
                cluster_index: to.cluster,
                body: body.as_deref(),
                framing,
                timeout,
                deadline,
                watch_responses,
                priority,
                retry_slot: &slot,
            };
            let outcome = self.attempt(x, &plan, attempt_head, &retries).await;
            let (reply, retriable, status) = match outcome {
                Tried::Done(next) => {
                    // A relayed response the policy wanted retried says why
                    // it was not; otherwise a retried request succeeded.
                    let flags = x.flags.get();
                    let stat = if flags.contains(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED) {
                        Some(ClusterStat::upstream_rq_retry_limit_exceeded)
                    } else if flags.contains(ResponseFlags::UPSTREAM_OVERFLOW) {
                        Some(ClusterStat::upstream_rq_retry_overflow)
                    } else {
                        (retries.done > 0).then_some(ClusterStat::upstream_rq_retry_success)
                    };
                    if let Some(stat) = stat {
                        cluster.stats.inc(x.shard.id, stat);
                    }
                    return next;
                }
                // A circuit breaker turned it away: never retried.
                Tried::Refused(reply) => return self.reply(x, &reply).await,
                Tried::Failed(reply, kind) => (Some(reply), retries.retries_failure(kind), None),
                // The response was held back with a slot already taken.
                Tried::Retriable(status) => (None, true, Some(status)),
            };
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            let wanted = retriable && retries.remaining > 0 && !out_of_time;
            let retrying = wanted && (status.is_some() || slot.take());
            if retrying {
                let w = x.shard.id;
                cluster.stats.inc(w, ClusterStat::upstream_rq_retry);
                if let Some(status) = status {
                    cluster.retry_stats.inc_status(w, status, RETRY_CLASSES);
                }
                retries.remaining -= 1;
                retries.done += 1;
                cluster
                    .stats
                    .inc(w, ClusterStat::upstream_rq_retry_backoff_exponential);
                let pause = retries.back_off(random());
                let pause = deadline.map_or(pause, |d| {
                    pause.min(d.saturating_duration_since(Instant::now()))
                });
                monoio::time::sleep(pause).await;
                // A client that left during the back-off gets no more attempts.
                if self.down.is_gone() {
                    x.flag(D::GONE);
                    self.down.lost();
                    return Next::Close;
                }
                continue;
            }
            slot.release();
            if wanted {
                // Too many retries in progress cluster-wide (circuit breaking).
                cluster
                    .stats
                    .inc(x.shard.id, ClusterStat::upstream_rq_retry_overflow);
                x.flag(ResponseFlags::UPSTREAM_OVERFLOW);
            } else if retriable && retries.done > 0 {
                cluster
                    .stats
                    .inc(x.shard.id, ClusterStat::upstream_rq_retry_limit_exceeded);
                x.flag(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            return match reply {
                Some(reply) => self.reply(x, &reply).await,
                // A held-back response whose retry ran out of time.
                None => {
                    x.flag(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                    self.reply(x, &LocalReply::new(504, "upstream request timeout"))
                        .await
                }
            };
        }
    }

    /// Runs the tunnel an upgrade became, with the stream idle timeout,
    /// counting it in `downstream_cx_upgrades_active` while it lasts; the
    /// connection ends with it.
    async fn tunnel(&mut self, x: &Exchange<'_>, up: &mut Stream) -> Next {
        let (w, stats) = (x.shard.id, &x.http.stats);
        stats.inc(w, HttpStat::downstream_cx_upgrades_active);
        let from_upstream = self.ubuf.data().to_vec();
        self.ubuf.clear();
        let moved = self.down.tunnel(up, from_upstream, x.stream_idle).await;
        stats.dec(w, HttpStat::downstream_cx_upgrades_active);
        x.log.bytes_received.set(moved.to_upstream);
        x.log.bytes_sent.set(moved.to_downstream);
        match moved.end {
            upgrade::End::Downstream => {
                self.down.lost();
                x.flag(D::GONE);
            }
            upgrade::End::Upstream => x.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION),
            upgrade::End::Idle => x.flag(ResponseFlags::STREAM_IDLE_TIMEOUT),
        }
        Next::Close
    }

    /// Picks an endpoint, avoiding those already tried when the policy has
    /// `previous_hosts` (up to `host_selection_retry_max_attempts` re-picks).
    fn pick<'v>(
        &self,
        x: &'v Exchange<'_>,
        to: &Upstream<'_>,
        retries: &Retries,
        tried: &[Address],
        random: &dyn Fn() -> u64,
    ) -> Option<&'v Endpoint> {
        let criteria = to.criteria;
        let mut picked = x.view.pick(to.cluster, to.hash, criteria, random)?;
        if retries.previous_hosts {
            for _ in 0..retries.host_selection_attempts {
                if !tried.contains(&picked.addr) {
                    break;
                }
                picked = x.view.pick(to.cluster, to.hash, criteria, random)?;
            }
        }
        Some(picked)
    }

    /// Answers `Expect: 100-continue` once per request; false when the
    /// client is gone.
    async fn send_continue(&mut self, x: &Exchange<'_>) -> bool {
        if x.sent_continue.replace(true) {
            return true;
        }
        if self.down.send_continue().await {
            // Envoy counts the interim response as a response of its own.
            x.count_response(100);
            true
        } else {
            x.flag(D::GONE);
            false
        }
    }

    /// Reads a `Content-Length` body of `len` bytes into memory (for
    /// replay on retry); an error when the client goes away or is too slow.
    async fn buffer_body(&mut self, len: usize, patience: Patience) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(len);
        let (src, rbuf) = self.down.request_body();
        loop {
            let take = (len - body.len()).min(rbuf.data().len());
            body.extend_from_slice(&rbuf.data()[..take]);
            rbuf.consume(take);
            if body.len() == len {
                return Ok(body);
            }
            if src.fill(rbuf, READ_CHUNK, patience).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads a chunked body into the read buffer without consuming it,
    /// until its end or until more than `limit` bytes (or `data_limit`
    /// bytes of data) are buffered. With the end in hand, takes the raw
    /// chunked bytes (replayed as they are) and the decoded length; past
    /// a limit, leaves everything buffered for streaming and returns the
    /// data length so far.
    async fn buffer_chunked(
        &mut self,
        limit: usize,
        data_limit: Option<u64>,
        patience: Patience,
    ) -> std::io::Result<Result<(Vec<u8>, u64), u64>> {
        let mut decoder = ChunkedDecoder::default();
        let (mut scanned, mut data_len) = (0, 0u64);
        let (src, rbuf) = self.down.request_body();
        loop {
            while !decoder.is_done() && scanned < rbuf.data().len().min(limit + 1) {
                let end = rbuf.data().len().min(limit + 1);
                let step = decoder
                    .step(&rbuf.data()[scanned..end])
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                scanned += step.consumed;
                data_len += step.data.map_or(0, |(_, n)| n as u64);
            }
            if scanned > limit || data_limit.is_some_and(|d| data_len > d) {
                return Ok(Err(data_len));
            }
            if decoder.is_done() {
                let raw = rbuf.data()[..scanned].to_vec();
                rbuf.consume(scanned);
                return Ok(Ok((raw, data_len)));
            }
            let read = src.fill(rbuf, limit + READ_CHUNK, patience).await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Answers a request whose body is larger than the buffer filter
    /// allows: 413, and the connection closes (the rest is not read).
    async fn too_large(&mut self, x: &Exchange<'_>) -> Next {
        x.http
            .stats
            .inc(x.shard.id, HttpStat::downstream_rq_too_large);
        self.reply(x, &LocalReply::closing(413, "Payload Too Large"))
            .await
    }

    /// Answers a request whose body could not be buffered: 408 when it
    /// was too slow, 400 when its chunked framing was malformed, nothing
    /// (the connection closes) when the client went away.
    async fn body_read_failed(&mut self, x: &Exchange<'_>, e: &std::io::Error) -> Next {
        match e.kind() {
            std::io::ErrorKind::TimedOut => self.request_timed_out(x).await,
            std::io::ErrorKind::InvalidData => {
                x.flag(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR);
                self.reply(x, &LocalReply::closing(400, "Bad Request"))
                    .await
            }
            _ => {
                x.flag(D::GONE);
                self.down.lost();
                Next::Close
            }
        }
    }

    /// Answers a request whose head or body did not arrive in time: 408
    /// and close (the rest of the request is unread).
    async fn request_timed_out(&mut self, x: &Exchange<'_>) -> Next {
        let patience = x.request_patience();
        if !patience.past_deadline() {
            x.flag(ResponseFlags::STREAM_IDLE_TIMEOUT);
        }
        let reply = timeout_reply(x.http, x.shard.id, patience);
        self.reply(x, &reply).await;
        Next::Close
    }

    /// One attempt against `plan.endpoint`: sends the request (buffered or
    /// streamed) and relays the response, unless the retry policy wants
    /// the response retried, in which case nothing is sent downstream.
    async fn attempt(
        &mut self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        mut head: Vec<u8>,
        retries: &Retries<'_>,
    ) -> Tried {
        let (cluster, endpoint) = (plan.cluster, plan.endpoint);
        let attempt = Attempt::start(x.shard, cluster, endpoint, plan.priority);
        let addr = &endpoint.addr;
        x.log
            .upstream
            .replace(Some((plan.cluster_index, addr.clone())));
        // A connection ALPN chose HTTP/1.1 on (`auto_config`).
        let mut negotiated = None;
        let http2 = match &cluster.config.upstream_protocol {
            UpstreamProtocol::Http1 => None,
            UpstreamProtocol::Http2(_) => Some(None),
            UpstreamProtocol::FollowDownstream(_) => {
                (x.protocol == Protocol::Http2).then_some(None)
            }
            UpstreamProtocol::Auto(options) => {
                let requested = cluster.requested_server_name(&head);
                let server_name = cluster.server_name(endpoint, requested);
                match Box::pin(self.auto_connection(x, plan, options, server_name)).await {
                    Ok(Negotiated::Http2(conn)) => Some(Some(conn)),
                    Ok(Negotiated::Http1(conn)) => {
                        negotiated = conn;
                        None
                    }
                    Err(NoConnection::Refused(reply)) => return Tried::Refused(reply),
                    Err(NoConnection::Failed(reply)) => {
                        x.flag(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                        attempt.charge(503);
                        attempt.observe(Outcome::ConnectFailed);
                        return Tried::Failed(reply, FailKind::ConnectFailure);
                    }
                }
            }
        };
        if let Some(conn) = http2 {
            // Boxed: the HTTP/1.1 attempt's future stays as small as it was.
            let h2 = self.attempt_h2(x, plan, head, retries, attempt, conn);
            return Box::pin(h2).await;
        }
        // HTTP/2 attempts find their own server name; HTTP/1.1 moves the
        // head into each write, so what it names is copied out first.
        let requested = cluster.requested_server_name(&head).map(Box::<str>::from);
        let server_name = cluster.server_name(endpoint, requested.as_deref());
        if let Some(body) = plan.body.filter(|b| !b.is_empty()) {
            head.extend_from_slice(body);
        }
        let want = PoolWant {
            cluster: cluster.pool_id,
            server_name,
            priority: plan.priority,
        };
        let mut fresh_only = false;
        // The upstream answered or stopped reading before the whole request
        // was sent: its connection is not reused, and a streamed body's
        // unread rest ends the client's connection after the response.
        let mut body_unfinished = false;
        loop {
            let fresh = negotiated.take();
            let idle_timeout = cluster.config.idle_timeout;
            let pooled = if fresh_only || fresh.is_some() {
                None
            } else {
                x.shard
                    .pool
                    .take(addr, &want, attempt.started, idle_timeout)
            };
            // A buffered request that meets a dead pooled connection before
            // any response byte is resent once on a new connection (not a
            // retry: the upstream never saw it).
            let resendable = pooled.is_some() && plan.body.is_some();
            let mut pending = None;
            let mut up = match fresh.or(pooled) {
                Some(up) => up,
                None => {
                    let retake = || {
                        let now = Instant::now();
                        let pool = &x.shard.pool;
                        (!fresh_only).then(|| pool.take(addr, &want, now, idle_timeout))?
                    };
                    let protocol = Some(ClusterStat::upstream_cx_http1_total);
                    let admitted = match admission::admitted(x, plan, &want, retake).await {
                        Ok((admitted, waiting)) => {
                            pending = Some(waiting);
                            admitted
                        }
                        Err(reply) => return Tried::Refused(reply),
                    };
                    match admitted {
                        Admitted::Pooled(up) => up,
                        Admitted::Open(permit) => {
                            match connect(x.shard, cluster, endpoint, protocol, permit).await {
                                Ok(up) => up,
                                Err(failure) => {
                                    x.flag(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                                    attempt.charge(503);
                                    attempt.observe(Outcome::ConnectFailed);
                                    let reply = connect_failed(x, failure);
                                    return Tried::Failed(reply, FailKind::ConnectFailure);
                                }
                            }
                        }
                    }
                }
            };
            if !attempt.connected(x) {
                // Over max_requests: the connection, unused, goes back.
                x.shard.pool.put(addr.clone(), up);
                return Tried::Refused(admission::overflow_reply());
            }
            drop(pending);
            if plan.body.is_some() {
                let (res, buf) = up.stream.write_all(head).await;
                head = buf;
                match res {
                    Ok(n) => attempt.sent(n as u64),
                    Err(_) if resendable => {
                        fresh_only = true;
                        continue;
                    }
                    // The upstream stopped reading: it may have answered
                    // early (a 413, say) before closing; read what it said.
                    Err(_) => body_unfinished = true,
                }
            } else {
                if x.req.expect_continue && !self.send_continue(x).await {
                    return Tried::Done(Next::Close);
                }
                let out_framing = match x.req.framing {
                    Framing::Chunked => OutFraming::Chunked,
                    _ => OutFraming::Raw,
                };
                let up_fd = up.stream.as_raw_fd();
                let (src, rbuf) = self.down.request_body();
                let pumping = pump(
                    src,
                    rbuf,
                    x.req.framing,
                    &mut up.stream,
                    std::mem::take(&mut head),
                    out_framing,
                    x.request_patience(),
                );
                // Full duplex: an upstream that answers (or closes) while the
                // body still streams ends the upload; its answer is relayed.
                // The pump goes first, so that an upload that has ended is
                // never taken for an unfinished one; a request without a
                // body needs no watch.
                let sent = if x.req.framing == Framing::Empty {
                    Some(pumping.await)
                } else {
                    monoio::select! {
                        biased;
                        sent = pumping => Some(sent),
                        _ = peer_spoke(up_fd) => None,
                    }
                };
                // The request body is not fully read after a failure: close.
                match sent {
                    None => {
                        body_unfinished = true;
                        x.request_cut.set(true);
                    }
                    Some(Ok(moved)) => {
                        attempt.sent(moved.written);
                        x.log.bytes_received.set(moved.body);
                    }
                    Some(Err(PumpError::Destination(_))) => {
                        body_unfinished = true;
                        x.request_cut.set(true);
                    }
                    Some(Err(PumpError::Malformed)) => {
                        x.flag(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR);
                        let reply = LocalReply::closing(400, "Bad Request");
                        return Tried::Done(self.reply(x, &reply).await);
                    }
                    Some(Err(PumpError::Source)) => {
                        x.flag(D::GONE);
                        self.down.lost();
                        return Tried::Done(Next::Close);
                    }
                    Some(Err(PumpError::SourceTimeout)) => {
                        return Tried::Done(self.request_timed_out(x).await);
                    }
                }
            }
            let awaited = self
                .await_response(x, &mut up.stream, plan, retries, &attempt)
                .await;
            attempt.received(self.ubuf.take_received());
            match awaited.result {
                Some(Ok(Received::Switched)) => {
                    attempt.charge(x.status.get());
                    // Boxed: a rare path that would otherwise size every
                    // attempt's future.
                    let tunnel = Box::pin(self.tunnel(x, &mut up.stream));
                    return Tried::Done(tunnel.await);
                }
                Some(Ok(Received::Complete { reusable })) => {
                    up.requests += 1;
                    let spent = cluster
                        .config
                        .max_requests_per_connection
                        .is_some_and(|max| up.requests >= max);
                    if spent {
                        cluster
                            .stats
                            .inc(x.shard.id, ClusterStat::upstream_cx_max_requests);
                    }
                    if reusable && !body_unfinished && !spent {
                        x.shard.pool.put(addr.clone(), up);
                    }
                }
                Some(Err(Failure::BeforeHeaders(_))) if resendable && self.ubuf.is_empty() => {
                    fresh_only = true;
                    continue;
                }
                _ => {}
            }
            // A streamed body the upstream did not read to its end.
            let client_unread = body_unfinished && plan.body.is_none();
            return self.settle(x, plan, &attempt, awaited, client_unread).await;
        }
    }

    /// Waits for the response to an attempt whose request is sent, within
    /// the route timeout (from the end of the request to the end of the
    /// response, across attempts) and the per-try timeout, relaying it
    /// downstream unless the retry policy wants it retried; a client that
    /// leaves meanwhile ends the attempt (Envoy resets the upstream
    /// request).
    async fn await_response<U: Source>(
        &mut self,
        x: &Exchange<'_>,
        up: &mut U,
        plan: &AttemptPlan<'_>,
        retries: &Retries<'_>,
        attempt: &Attempt<'_>,
    ) -> Awaited {
        let started = attempt.started;
        // Only a health-checked cluster's hosts can fail their checks
        // passively; the others' responses are not searched.
        let checked = plan
            .cluster
            .config
            .health_check
            .is_some()
            .then_some(attempt);
        let now = Instant::now();
        let deadline = plan.route_deadline(now);
        let per_try = retries.per_try_timeout.map(|t| now + t);
        let stream_end = plan.cluster.config.max_stream_duration.map(|d| started + d);
        // The earliest limit cuts the attempt; on a tie the route's wins,
        // then the per-try timeout.
        let (limit, cut) = [
            (deadline, Cut::Route),
            (per_try, Cut::PerTry),
            (stream_end, Cut::StreamDuration),
        ]
        .into_iter()
        .filter_map(|(at, cut)| at.map(|at| (at, cut)))
        .min_by_key(|&(at, _)| at)
        .map_or((None, Cut::Route), |(at, cut)| (Some(at), cut));
        let headers_sent = Cell::new(false);
        self.ubuf.clear();
        self.ubuf.set_chunk(plan.cluster.config.buffer_limit);
        let watch = plan.watch_responses.then_some((retries, plan.retry_slot));
        // One hand-written select over the three, each pinned where it is
        // made: select! would move them into a tuple and store each twice.
        let mut client_gone = std::pin::pin!(self.down.closed());
        let mut receive =
            std::pin::pin!(self.receive(x, up, started, &headers_sent, (watch, checked), limit));
        let mut timer = std::pin::pin!(limit.map(|l| monoio::time::sleep_until(l.into())));
        let result = poll_fn(|cx| {
            // The response first, as monoio's own timeout polls it.
            if let Poll::Ready(r) = receive.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if client_gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Failure::DownstreamGone)));
            }
            // Once the head is chosen its bytes may be on their way
            // downstream: the relay stops itself at the limit, between
            // writes, never in the middle of one.
            if !headers_sent.get() {
                if let Some(timer) = timer.as_mut().as_pin_mut() {
                    if timer.poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
            }
            Poll::Pending
        })
        .await;
        let result = result.filter(|r| !matches!(r, Err(Failure::Deadline)));
        Awaited {
            result,
            cut,
            headers_sent: headers_sent.get(),
        }
    }

    /// What an attempt came to, the same for every upstream protocol once
    /// the protocol's own concerns (reuse, tunnels, resending) are dealt
    /// with. `client_unread`: the client's body was not read to its end,
    /// so its connection ends after the response.
    async fn settle(
        &mut self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        attempt: &Attempt<'_>,
        awaited: Awaited,
        client_unread: bool,
    ) -> Tried {
        let headers_sent = awaited.headers_sent;
        match awaited.result {
            Some(Ok(_)) => {
                attempt.charge(x.status.get());
                attempt.observe(Outcome::Status(x.status.get()));
                Tried::Done(if x.closing() || client_unread || x.req.upgrade {
                    Next::Close
                } else {
                    Next::KeepAlive
                })
            }
            Some(Err(Failure::Retriable(status))) => {
                // A response retried rather than relayed counts, as in
                // Envoy, in retry.upstream_rq_<code> (by the retry) and
                // for its host, not in the cluster's upstream_rq_<code>.
                attempt.charge_host(status);
                attempt.observe(Outcome::Status(status));
                Tried::Retriable(status)
            }
            // Only the relay ends this way: the response has begun, so
            // the connection ends as Envoy resets the stream.
            Some(Err(Failure::StreamDuration)) => {
                x.http
                    .stats
                    .inc(x.shard.id, HttpStat::downstream_rq_max_duration_reached);
                attempt.charge(x.status.get());
                Tried::Done(Next::Close)
            }
            Some(Err(Failure::StreamIdle)) => {
                x.flag(ResponseFlags::STREAM_IDLE_TIMEOUT);
                x.http
                    .stats
                    .inc(x.shard.id, HttpStat::downstream_rq_idle_timeout);
                attempt.charge(x.status.get());
                if headers_sent {
                    return Tried::Done(Next::Close);
                }
                let mut reply = LocalReply::new(408, "stream timeout");
                reply.close = true;
                Tried::Done(self.reply(x, &reply).await)
            }
            Some(Err(Failure::BeforeHeaders(reason))) => {
                x.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                attempt.charge(503);
                attempt.observe(Outcome::ConnectFailed);
                let mut reply = LocalReply::upstream_reset(reason);
                // A body the client is still sending is never read.
                reply.close = client_unread;
                Tried::Failed(reply, FailKind::Reset)
            }
            Some(Err(Failure::Refused)) => {
                x.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                attempt.charge(503);
                attempt.observe(Outcome::ConnectFailed);
                let mut reply = LocalReply::upstream_reset("remote refused stream reset");
                reply.close = client_unread;
                Tried::Failed(reply, FailKind::RefusedStream)
            }
            Some(Err(Failure::Protocol)) => {
                x.flag(ResponseFlags::UPSTREAM_PROTOCOL_ERROR);
                attempt.charge(502);
                attempt.observe(Outcome::Status(502));
                let reply = LocalReply::new(
                    502,
                    "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
                );
                Tried::Failed(reply, FailKind::Protocol)
            }
            None if awaited.cut == Cut::StreamDuration => {
                // Envoy resets the upstream stream and treats it as a reset.
                plan.cluster
                    .stats
                    .inc(x.shard.id, ClusterStat::upstream_rq_max_duration_reached);
                x.flag(ResponseFlags::UPSTREAM_MAX_STREAM_DURATION_REACHED);
                if headers_sent {
                    attempt.charge(x.status.get());
                    return Tried::Done(Next::Close);
                }
                attempt.charge(504);
                let reply = LocalReply::new(504, "upstream max stream duration reached");
                Tried::Failed(reply, FailKind::Reset)
            }
            None => {
                attempt.timed_out();
                attempt.observe(Outcome::Timeout);
                x.flag(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                if headers_sent {
                    // Past the response headers the only signal left is closing.
                    attempt.charge(x.status.get());
                    return Tried::Done(Next::Close);
                }
                attempt.charge(504);
                let reply = LocalReply::new(504, "upstream request timeout");
                if awaited.cut == Cut::PerTry {
                    plan.cluster
                        .stats
                        .inc(x.shard.id, ClusterStat::upstream_rq_per_try_timeout);
                    Tried::Failed(reply, FailKind::PerTryTimeout)
                } else {
                    // The route timeout bounds all attempts: no retry.
                    Tried::Done(self.reply(x, &reply).await)
                }
            }
            Some(Err(failure)) => {
                x.flag(match failure {
                    Failure::DownstreamGone => D::GONE,
                    _ => ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                });
                attempt.charge(x.status.get());
                Tried::Done(Next::Close)
            }
        }
    }

    /// Reads the upstream response and streams it downstream. Returns
    /// whether the upstream connection can go back to the pool.
    /// `checked`: the attempt, when its cluster has health checks (an
    /// answer with `x-envoy-immediate-health-check-fail` fails its host's).
    async fn receive<U: Source>(
        &mut self,
        x: &Exchange<'_>,
        up: &mut U,
        started: Instant,
        headers_sent: &Cell<bool>,
        (retries, checked): (Option<(&Retries<'_>, &Slot<'_>)>, Option<&Attempt<'_>>),
        deadline: Option<Instant>,
    ) -> Result<Received, Failure> {
        loop {
            let mut out = Vec::new();
            let elapsed = started.elapsed().as_millis();
            let parsed = x.shard.date.with(|date| {
                let shaping = head::Shaping {
                    is_head: x.req.is_head,
                    // Envoy reports no upstream service time for an answer
                    // that came before the request was all sent.
                    service_time_ms: (!x.request_cut.get()).then_some(elapsed),
                    close: x.closing(),
                    mutations: x.response_mutations().map(|levels| (levels, x.record())),
                    set_cookie: x.set_cookie.get().map(Vec::as_slice),
                    attempt_count: x
                        .matched
                        .filter(|m| m.vhost.attempt_count_in_response)
                        .map(|_| x.attempts.get()),
                    filter_steps: &x.req.filtered.response,
                    upgrade: x.req.upgrade,
                    websocket: x.req.websocket,
                    date,
                };
                head::parse_response(self.ubuf.data(), x.http, shaping, &mut out)
            });
            match parsed {
                ParsedResponse::Partial => {
                    let patience = Patience {
                        idle: x.stream_idle,
                        deadline: None,
                    };
                    match up
                        .fill(&mut self.ubuf, MAX_RESPONSE_HEAD + READ_CHUNK, patience)
                        .await
                    {
                        Ok(n) if n > 0 => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            return Err(Failure::StreamIdle)
                        }
                        // An HTTP/2 upstream refused the stream: it never
                        // saw the request.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            return Err(Failure::Refused)
                        }
                        _ => return Err(Failure::BeforeHeaders("connection termination")),
                    }
                }
                ParsedResponse::Interim(n) => self.ubuf.consume(n),
                ParsedResponse::Invalid => return Err(Failure::Protocol),
                ParsedResponse::Final(resp) => {
                    let head = &self.ubuf.data()[..resp.head_len];
                    if let Some(attempt) = checked {
                        let header = "x-envoy-immediate-health-check-fail";
                        if crate::access_log::find_header(head, header).is_some() {
                            attempt.fail_health_check();
                        }
                    }
                    if let Some((r, slots)) =
                        retries.filter(|(r, _)| r.retries_response(resp.status, head))
                    {
                        if r.remaining == 0 {
                            // Retriable, but the budget is spent: it goes out as is.
                            x.flag(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                        } else if slots.take() {
                            // Nothing has gone downstream: drop this response
                            // and retry (holding a cluster retry slot).
                            return Err(Failure::Retriable(resp.status));
                        } else {
                            // Too many retries in progress: this one goes out.
                            x.flag(ResponseFlags::UPSTREAM_OVERFLOW);
                        }
                    }
                    if x.req.grpc {
                        let status = crate::access_log::find_header(head, "grpc-status");
                        x.grpc_status.set(status.map(grpc::parse_status));
                    }
                    if x.log.enabled {
                        x.log.response_at.set(Some(Instant::now()));
                        let head = self.ubuf.data()[..resp.head_len].to_vec();
                        let _ = x.log.response_head.set(head);
                    }
                    self.ubuf.consume(resp.head_len);
                    headers_sent.set(true);
                    x.status.set(resp.status);
                    if resp.switched {
                        return match self.down.send_switch(out).await {
                            true => Ok(Received::Switched),
                            false => Err(Failure::DownstreamGone),
                        };
                    }
                    let patience = Patience {
                        idle: x.stream_idle,
                        deadline: [deadline, x.stream_ends].into_iter().flatten().min(),
                    };
                    let streamed = self
                        .down
                        .relay(out, up, &mut self.ubuf, resp.framing, patience)
                        .await;
                    // A gRPC status in the trailers is the call's final word.
                    let trailer_status = up.trailers().and_then(|t| t.get("grpc-status"));
                    if let Some(status) = trailer_status.filter(|_| x.req.grpc) {
                        x.grpc_status
                            .set(Some(grpc::parse_status(status.as_bytes())));
                    }
                    return match streamed {
                        Ok(moved) => {
                            x.log.bytes_sent.set(moved.body);
                            Ok(Received::Complete {
                                reusable: resp.reusable && self.ubuf.is_empty(),
                            })
                        }
                        Err(PumpError::Destination(written)) => {
                            if written == 0 {
                                // Nothing reached the client: no status was sent.
                                x.status.set(0);
                            }
                            Err(Failure::DownstreamGone)
                        }
                        Err(PumpError::SourceTimeout) => {
                            let now = Instant::now();
                            let passed = |t: Option<Instant>| t.is_some_and(|t| now >= t);
                            Err(if passed(x.stream_ends) {
                                Failure::StreamDuration
                            } else if passed(deadline) {
                                Failure::Deadline
                            } else {
                                Failure::StreamIdle
                            })
                        }
                        Err(_) => Err(Failure::UpstreamBroke),
                    };
                }
            }
        }
    }
}

/// The reply to a failed connect, with the transport's account of it
/// kept for the access log.
fn connect_failed(x: &Exchange<'_>, failure: ConnectFailure) -> LocalReply<'static> {
    x.log.transport_failure.replace(failure.transport);
    LocalReply::upstream_reset(failure.reason)
}

/// One upstream request: picked from start to drop (least-request counts
/// it), active once it has a connection, charged with its status once.
struct Attempt<'a> {
    shard: &'a Shard,
    cluster: &'a Cluster,
    endpoint: &'a Endpoint,
    started: Instant,
    /// Its place under the cluster's `max_requests`, from its connection
    /// on (and so in `upstream_rq_total` and `upstream_rq_active`).
    request: Slot<'a>,
}

impl<'a> Attempt<'a> {
    fn start(
        shard: &'a Shard,
        cluster: &'a Cluster,
        endpoint: &'a Endpoint,
        priority: Priority,
    ) -> Self {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        Attempt {
            shard,
            cluster,
            endpoint,
            started: Instant::now(),
            request: Slot::new(&cluster.breakers, priority, Resource::Requests),
        }
    }

    /// The attempt has a connection to send on: only now is it an upstream
    /// request in `upstream_rq_total` (a failed connect is not one, as in
    /// Envoy), if the cluster's `max_requests` lets it be one; false (and
    /// counted in `upstream_rq_active_overflow`) when it does not.
    fn connected(&self, x: &Exchange<'_>) -> bool {
        // A later attempt that connects clears an earlier one's failure.
        x.log.transport_failure.replace(None);
        if self.request.is_held() {
            return true;
        }
        let w = self.shard.id;
        if !self.request.take() {
            self.cluster
                .stats
                .inc(w, ClusterStat::upstream_rq_active_overflow);
            x.flag(ResponseFlags::UPSTREAM_OVERFLOW);
            return false;
        }
        self.cluster.stats.inc(w, ClusterStat::upstream_rq_total);
        self.cluster.stats.inc(w, ClusterStat::upstream_rq_active);
        self.endpoint.stats.inc(w, HostStat::rq_total);
        self.endpoint.stats.inc(w, HostStat::rq_active);
        true
    }

    fn sent(&self, bytes: u64) {
        let w = self.shard.id;
        self.cluster
            .stats
            .add(w, ClusterStat::upstream_cx_tx_bytes_total, bytes);
    }

    fn received(&self, bytes: u64) {
        let w = self.shard.id;
        self.cluster
            .stats
            .add(w, ClusterStat::upstream_cx_rx_bytes_total, bytes);
    }

    fn timed_out(&self) {
        let w = self.shard.id;
        self.cluster.stats.inc(w, ClusterStat::upstream_rq_timeout);
        self.endpoint.stats.inc(w, HostStat::rq_timeout);
    }

    /// Tells the health checker that the host asked, in its answer, to
    /// fail its health checks at once.
    fn fail_health_check(&self) {
        let failure = PassiveFailure {
            cluster: self.cluster.name().to_string(),
            pool_id: self.cluster.pool_id,
            addr: self.endpoint.addr.clone(),
        };
        // A full queue drops it: the host's next answer reports again.
        let _ = self.shard.passive_failures.try_send(failure);
    }

    /// Tells the cluster's outlier detection what the attempt came to; a
    /// host that reaches a consecutive-error threshold is reported to the
    /// main thread.
    fn observe(&self, outcome: Outcome) {
        let Some(config) = &self.cluster.config.outlier_detection else {
            return;
        };
        for kind in self.endpoint.outlier.report(config, outcome).kinds() {
            let event = OutlierEvent {
                cluster: self.cluster.name().to_string(),
                pool_id: self.cluster.pool_id,
                addr: self.endpoint.addr.clone(),
                kind,
            };
            // A full queue drops it: the host reports again at its next
            // threshold.
            let _ = self.shard.outlier_events.try_send(event);
        }
    }

    /// Counts the response status (upstream's, or the local reply standing
    /// in for it) and the request's upstream time.
    fn charge(&self, status: u16) {
        self.cluster.count_response(self.shard.id, status);
        self.charge_host(status);
    }

    /// The host's success or error, and the request's upstream time.
    fn charge_host(&self, status: u16) {
        let w = self.shard.id;
        let outcome = if (500..600).contains(&status) || status == 0 {
            HostStat::rq_error
        } else {
            HostStat::rq_success
        };
        self.endpoint.stats.inc(w, outcome);
        let micros = self.started.elapsed().as_micros() as u64;
        self.shard.histograms.record(self.cluster.rq_time, micros);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let w = self.shard.id;
        if self.request.is_held() {
            self.cluster.stats.dec(w, ClusterStat::upstream_rq_active);
            self.endpoint.stats.dec(w, HostStat::rq_active);
        }
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds a header line to a complete head, before the blank line ending it.
/// The data of a whole chunked body (already checked by the decoder
/// that buffered it).
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut decoder = ChunkedDecoder::default();
    let (mut data, mut at) = (Vec::new(), 0);
    while at < raw.len() && !decoder.is_done() {
        let Ok(step) = decoder.step(&raw[at..]) else {
            break;
        };
        if let Some((start, n)) = step.data {
            data.extend_from_slice(&raw[at + start..at + start + n]);
        }
        if step.consumed == 0 {
            break;
        }
        at += step.consumed;
    }
    data
}

/// Removes every line of header `name` from a head block, keeping the
/// slots that follow in place.
fn drop_header(head: &mut Vec<u8>, slots: &mut crate::http::head::HeadSlots, name: &str) {
    let Some(mut at) = head.windows(2).position(|w| w == b"\r\n").map(|p| p + 2) else {
        return;
    };
    while at + 2 < head.len() {
        let Some(len) = head[at..].windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &head[at..at + len];
        let named = line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes());
        if !named {
            at += len + 2;
            continue;
        }
        let gone = len + 2;
        head.drain(at..at + gone);
        let shift = |r: &mut std::ops::Range<usize>| {
            if r.start >= at {
                r.start -= gone;
                r.end -= gone;
            }
        };
        shift(&mut slots.host);
        if let Some(r) = &mut slots.expected_timeout {
            shift(r);
        }
    }
}

pub(super) fn append_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
    crate::http::codec::push_header(&mut line, name, value);
    let at = head.len() - 2;
    head.splice(at..at, line);
}
