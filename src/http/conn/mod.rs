//! The HTTP/1.1 connection manager: one task per downstream connection,
//! requests answered in order (pipelining falls out of the loop), upstream
//! connections taken from and returned to the shard's pool.

mod call;
mod downstream;
mod forward;
mod h2;
mod mirror;

use downstream::{Downstream, H1Down};
use forward::Upstream;

use super::codec::{Framing, Patience, ReadBuf, READ_CHUNK};
use super::filters;
use super::flags::ResponseFlags;
use super::grpc;
use super::head::{self, ParsedRequest, Peer, Plan, Request, Resume};
use super::local_reply::LocalReply;
use super::mutate;
use crate::access_log::Record;
use crate::config::{Codec, HeaderMutations};
use crate::net::{Address, Stream};
use crate::router::Matched;
use crate::server::drain::LocalDrain;
use crate::server::shard::{Shard, View};
pub use crate::snapshot::ChainAt;
use crate::snapshot::{HttpChain, HttpSettings};
use crate::stats::sets::{Http as HttpStat, ListenerHttp as ListenerHttpStat};
use crate::stats::Scope;
use monoio::io::AsyncWriteRent;
use std::cell::{Cell, OnceCell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What happens to the downstream connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// One exchange's two sides: the downstream codec, and the buffer the
/// upstream response is read into. Everything between them (routing
/// decisions applied, retries, timeouts, replies) is written once, for
/// any [`Downstream`].
struct Proxy<D> {
    down: D,
    ubuf: ReadBuf,
}

/// The protocol a downstream connection speaks, once its first bytes
/// have said which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// The name `%PROTOCOL%` gives it.
    fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// A downstream connection's place in the stats, from accept to close.
/// The protocol's own counts start when its codec does (on the first
/// bytes, as Envoy's do).
struct CxStats {
    shard: Rc<Shard>,
    listener: Arc<HttpChain>,
    protocol: Option<Protocol>,
    /// The client closed (rather than Ringway).
    closed_by_peer: bool,
}

impl CxStats {
    fn open(shard: Rc<Shard>, listener: Arc<HttpChain>) -> Self {
        let w = shard.id;
        let http = &listener.http.stats;
        http.inc(w, HttpStat::downstream_cx_total);
        http.inc(w, HttpStat::downstream_cx_active);
        CxStats {
            shard,
            listener,
            protocol: None,
            closed_by_peer: false,
        }
    }

    /// Counts the connection as speaking `protocol` from now on.
    fn speaks(&mut self, protocol: Protocol) {
        let (total, active) = match protocol {
            Protocol::Http1 => (
                HttpStat::downstream_cx_http1_total,
                HttpStat::downstream_cx_http1_active,
            ),
            Protocol::Http2 => (
                HttpStat::downstream_cx_http2_total,
                HttpStat::downstream_cx_http2_active,
            ),
        };
        let (w, http) = (self.shard.id, &self.listener.http.stats);
        http.inc(w, total);
        http.inc(w, active);
        self.protocol = Some(protocol);
    }
}

impl Drop for CxStats {
    fn drop(&mut self) {
        let (w, http) = (self.shard.id, &self.listener.http.stats);
        http.dec(w, HttpStat::downstream_cx_active);
        match self.protocol {
            Some(Protocol::Http1) => http.dec(w, HttpStat::downstream_cx_http1_active),
            Some(Protocol::Http2) => http.dec(w, HttpStat::downstream_cx_http2_active),
            None => {}
        }
        http.inc(w, HttpStat::downstream_cx_destroy);
        let side = if self.closed_by_peer {
            HttpStat::downstream_cx_destroy_remote
        } else {
            HttpStat::downstream_cx_destroy_local
        };
        http.inc(w, side);
    }
}

/// One HTTP/1.1 downstream connection: its buffers, reused across
/// requests.
struct Conn {
    cx: CxStats,
    proxy: Proxy<H1Down>,
    /// Requests answered on this connection so far.
    requests: u32,
    /// When the last request finished (or the connection opened).
    last_active: Instant,
    /// The client's and the listener's addresses.
    peer: Peer,
    /// The newest view in which the connection's filter chain was found:
    /// once an update changes or removes the chain, the connection's next
    /// request is served by it, and the connection then closes.
    home: Rc<View>,
    /// Fires when the socket the connection came through is closed (its
    /// listener went away or moved): an idle connection then closes.
    stopped: Rc<LocalDrain>,
}

impl Conn {
    fn open(
        down: Stream,
        peer: Peer,
        cx: CxStats,
        home: Rc<View>,
        stopped: Rc<LocalDrain>,
    ) -> Self {
        let mut rbuf = ReadBuf::default();
        rbuf.set_chunk(cx.listener.buffer_limit);
        Conn {
            peer,
            proxy: Proxy {
                down: H1Down {
                    stream: down,
                    rbuf,
                    tx: 0,
                    closed_by_peer: false,
                },
                ubuf: ReadBuf::default(),
            },
            requests: 0,
            last_active: Instant::now(),
            cx,
            home,
            stopped,
        }
    }

    /// Counts the bytes moved since the last call into the connection
    /// manager's totals.
    fn count_bytes(&mut self) {
        let (w, http) = (self.cx.shard.id, &self.cx.listener.http);
        let down = &mut self.proxy.down;
        let moved = (down.rbuf.take_received(), std::mem::take(&mut down.tx));
        count_cx_bytes(http, w, moved);
    }
}

/// Adds a connection's bytes moved since its last count, (received,
/// sent), to its connection manager's totals.
fn count_cx_bytes(http: &HttpSettings, w: usize, (rx, tx): (u64, u64)) {
    http.stats
        .add(w, HttpStat::downstream_cx_rx_bytes_total, rx);
    http.stats
        .add(w, HttpStat::downstream_cx_tx_bytes_total, tx);
}

const HTTP_CLASSES: [HttpStat; 5] = [
    HttpStat::downstream_rq_1xx,
    HttpStat::downstream_rq_2xx,
    HttpStat::downstream_rq_3xx,
    HttpStat::downstream_rq_4xx,
    HttpStat::downstream_rq_5xx,
];

const LISTENER_HTTP_CLASSES: [ListenerHttpStat; 5] = [
    ListenerHttpStat::downstream_rq_1xx,
    ListenerHttpStat::downstream_rq_2xx,
    ListenerHttpStat::downstream_rq_3xx,
    ListenerHttpStat::downstream_rq_4xx,
    ListenerHttpStat::downstream_rq_5xx,
];

/// The wall-clock time of `instant` (for `%START_TIME%`), worked out only
/// when a log line or header value needs it rather than read per request.
fn wall_clock(instant: Instant) -> SystemTime {
    SystemTime::now() - instant.elapsed()
}

/// Resolves once the connection has been idle for `idle` since
/// `last_active`, re-arming `timer` when it fires early; never without a
/// limit.
async fn idle_since(
    timer: &mut Option<Pin<Box<monoio::time::Sleep>>>,
    idle: Option<Duration>,
    last_active: Instant,
) {
    let (Some(timer), Some(idle)) = (timer.as_mut(), idle) else {
        return std::future::pending().await;
    };
    let due = monoio::time::Instant::from_std(last_active + idle);
    loop {
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().await;
        if monoio::time::Instant::now() >= due {
            return;
        }
        timer.as_mut().reset(due);
    }
}

/// The 408 Envoy answers when a request's patience ran out, counted in
/// `downstream_rq_timeout` (request_timeout) or
/// `downstream_rq_idle_timeout` (stream_idle_timeout).
fn timeout_reply(http: &HttpSettings, w: usize, patience: Patience) -> LocalReply<'static> {
    let (stat, body) = if patience.past_deadline() {
        (HttpStat::downstream_rq_timeout, "request timeout")
    } else {
        (HttpStat::downstream_rq_idle_timeout, "stream timeout")
    };
    http.stats.inc(w, stat);
    LocalReply::closing(408, body)
}

/// What every step of answering one request needs.
struct Exchange<'a> {
    shard: &'a Rc<Shard>,
    http: &'a HttpSettings,
    /// The connection manager (its settings are `http`; its listener's
    /// own HTTP stats are `chain.http_stats`).
    chain: &'a HttpChain,
    view: &'a Rc<View>,
    req: Request,
    /// The matched route, if any.
    matched: Option<Matched<'a>>,
    /// The request head as received, kept when a log or a header quotes it.
    request_head: Vec<u8>,
    /// When the request began.
    started: Instant,
    peer: Peer,
    /// A hash-policy cookie to set on the response.
    set_cookie: OnceCell<Vec<u8>>,
    /// `100 Continue` was sent.
    sent_continue: Cell<bool>,
    /// Upstream attempts made so far (for `x-envoy-attempt-count`).
    attempts: Cell<u32>,
    /// A gRPC request's status, once a response says it (a local reply's
    /// mapped status, an upstream's `grpc-status`).
    grpc_status: Cell<Option<i64>>,
    /// The stream idle timeout (the route's `idle_timeout` if it has one).
    stream_idle: Option<Duration>,
    /// When the request timeout ends.
    request_deadline: Option<Instant>,
    /// When `max_stream_duration` (or a gRPC deadline) ends the stream.
    stream_ends: Option<Instant>,
    /// The client asked to close, or the shard was draining when it arrived.
    close: bool,
    /// The upstream answered before the client's streamed body was all
    /// sent: the rest is never read, so the response closes the
    /// connection, as Envoy's does.
    request_cut: Cell<bool>,
    /// The downstream protocol.
    protocol: Protocol,
    /// The status sent downstream (0 until one is).
    status: Cell<u16>,
    /// Why the response is what it is.
    flags: Cell<ResponseFlags>,
    /// What the access log needs besides status and flags.
    log: LogDetails,
}

/// Facts about one request kept for its access-log line; the heads are
/// copied only when the connection manager has access logs.
#[derive(Default)]
struct LogDetails {
    enabled: bool,
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    /// The cluster index and endpoint the request went to.
    upstream: RefCell<Option<(usize, Address)>>,
    /// When the upstream's response headers arrived.
    response_at: Cell<Option<Instant>>,
    /// What the transport said of the last failed upstream connect.
    transport_failure: RefCell<Option<String>>,
    response_head: OnceCell<Vec<u8>>,
}

impl<'a> Exchange<'a> {
    /// How long reads of the request may wait.
    fn request_patience(&self) -> Patience {
        Patience {
            idle: self.stream_idle,
            deadline: self.request_deadline,
        }
    }

    /// Everything known about the request so far, for a log line or a
    /// header substitution.
    fn record(&self) -> Record<'_> {
        let upstream = self.log.upstream.borrow();
        let generated = self.req.generated_id.as_ref();
        let response_duration = self.log.response_at.get().map(|t| t - self.started);
        Record {
            duration: self.started.elapsed(),
            response_duration,
            upstream_service_time: response_duration.map(|d| d.as_millis()),
            generated_request_id: generated.and_then(|id| std::str::from_utf8(id).ok()),
            status: self.status.get(),
            flags: self.flags.get(),
            bytes_received: self.log.bytes_received.get(),
            bytes_sent: self.log.bytes_sent.get(),
            upstream_host: upstream.as_ref().map(|(_, addr)| addr.clone()),
            // Before any attempt, a route to one cluster names it (as
            // Envoy's log does for, say, a refused upgrade).
            upstream_cluster: upstream
                .as_ref()
                .map(|(c, _)| *c)
                .or_else(|| self.matched.and_then(|m| m.route.single_cluster()))
                .and_then(|c| self.view.snapshot.clusters.get(c))
                .map(|c| c.name()),
            upstream_transport_failure: self.log.transport_failure.borrow().clone(),
            protocol: self.protocol.name(),
            route_name: self.matched.map(|m| m.route.name.as_str()),
            response_head: self.log.response_head.get().map_or(&[], Vec::as_slice),
            remote: Some(
                self.req
                    .client
                    .clone()
                    .unwrap_or_else(|| self.peer.remote.clone()),
            ),
            // Without a grpc-status, Envoy infers one from the HTTP status.
            // None at all when no response reached the client.
            grpc_status: (self.req.grpc && self.status.get() != 0).then(|| {
                self.grpc_status
                    .get()
                    .unwrap_or_else(|| i64::from(grpc::status_for_http(self.status.get())))
            }),
            tls: self.peer.tls.as_deref(),
            direct_remote: Some(
                self.peer
                    .direct_remote
                    .clone()
                    .unwrap_or_else(|| self.peer.remote.clone()),
            ),
            ..Record::new(
                wall_clock(self.started),
                &self.request_head,
                self.peer.remote.clone(),
                self.peer.local.clone(),
            )
        }
    }

    /// The matched route's response header mutations, when there are any.
    fn response_mutations(&self) -> Option<[&'a HeaderMutations; 3]> {
        let levels = self.matched?.response_headers();
        levels.iter().any(|l| !l.is_empty()).then_some(levels)
    }

    fn flag(&self, flag: ResponseFlags) {
        let mut f = self.flags.get();
        f.insert(flag);
        self.flags.set(f);
    }

    /// Whether the connection closes after this response: asked for, or a
    /// drain began meanwhile, or this proxy fails its health checks
    /// (`/healthcheck/fail`; Envoy's drain-close then closes too).
    fn closing(&self) -> bool {
        self.close
            || self.request_cut.get()
            || self.shard.drain.is_draining()
            || self.shard.stats.healthcheck_failed()
    }

    /// Counts a response sent (interim ones too, as Envoy does).
    fn count_response(&self, status: u16) {
        count_response(self.http, &self.chain.http_stats, self.shard.id, status);
    }
}

impl<'a> Exchange<'a> {
    /// Starts an exchange for a request and the plan made for it, counting
    /// it as active.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        shard: &'a Rc<Shard>,
        view: &'a Rc<View>,
        listener: &'a HttpChain,
        req: Request,
        plan: &Plan<'a>,
        request_head: Vec<u8>,
        started: Instant,
        peer: Peer,
        close: bool,
        protocol: Protocol,
    ) -> Self {
        let (w, http) = (shard.id, &*listener.http);
        http.stats.inc(w, HttpStat::downstream_rq_total);
        http.stats.inc(w, HttpStat::downstream_rq_active);
        Exchange {
            shard,
            http,
            chain: listener,
            view,
            close,
            request_cut: Cell::new(false),
            protocol,
            req,
            status: Cell::new(0),
            flags: Cell::new(ResponseFlags::default()),
            matched: plan.matched(),
            request_head,
            started,
            peer,
            set_cookie: OnceCell::new(),
            sent_continue: Cell::new(false),
            attempts: Cell::new(0),
            grpc_status: Cell::new(None),
            stream_idle: match plan {
                Plan::Forward { forward, .. } => {
                    forward.idle_timeout.unwrap_or(http.stream_idle_timeout)
                }
                _ => http.stream_idle_timeout,
            },
            request_deadline: http.request_timeout.map(|t| started + t),
            stream_ends: match plan {
                Plan::Forward {
                    stream_duration, ..
                } => stream_duration.map(|limit| started + limit),
                _ => None,
            },
            log: LogDetails {
                enabled: !http.access_logs.is_empty(),
                ..LogDetails::default()
            },
        }
    }

    /// An exchange for a mirrored copy of a request forwarded by
    /// `forward`: nothing of it is counted downstream or logged.
    fn mirrored(
        shard: &'a Rc<Shard>,
        view: &'a Rc<View>,
        chain: &'a HttpChain,
        req: Request,
        peer: Peer,
        protocol: Protocol,
        forward: &crate::router::Forward,
    ) -> Self {
        let http = &*chain.http;
        Exchange {
            shard,
            http,
            chain,
            view,
            close: false,
            request_cut: Cell::new(false),
            protocol,
            req,
            status: Cell::new(0),
            flags: Cell::new(ResponseFlags::default()),
            matched: None,
            request_head: Vec::new(),
            started: Instant::now(),
            peer,
            set_cookie: OnceCell::new(),
            sent_continue: Cell::new(false),
            attempts: Cell::new(0),
            grpc_status: Cell::new(None),
            stream_idle: forward.idle_timeout.unwrap_or(http.stream_idle_timeout),
            request_deadline: None,
            stream_ends: None,
            log: LogDetails::default(),
        }
    }

    /// Ends the exchange: counts its response and duration, and logs it.
    fn finish(&self) {
        let w = self.shard.id;
        self.http.stats.dec(w, HttpStat::downstream_rq_active);
        if !self.req.filtered.health_check {
            count_finished(
                self.shard,
                self.http,
                &self.chain.http_stats,
                self.status.get(),
                self.started,
            );
        }
        if self.log.enabled {
            self.shard.logs.log(&self.http.access_logs, &self.record());
        }
    }
}

/// The request head kept only when a log line or a header value may
/// quote it: as forwarded when forwarded (after rewrites and header
/// mutations, as Envoy's %REQ()% sees it), else as `received`.
fn kept_head(plan: &Plan, http: &HttpSettings, received: &[u8]) -> Vec<u8> {
    let quoted = plan
        .matched()
        .is_some_and(|m| m.response_headers().iter().any(|l| !l.is_empty()));
    match plan {
        _ if !quoted && http.access_logs.is_empty() => Vec::new(),
        Plan::Forward { head, .. } => head.clone(),
        _ => received.to_vec(),
    }
}

/// Answers a request whose head never became a request (malformed,
/// refused, too large or too slow) with `reply`; it is counted and logged
/// like any request.
async fn answer_unparsed<D: Downstream>(
    down: &mut D,
    shard: &Shard,
    listener: &HttpChain,
    peer: &Peer,
    reply: &LocalReply<'_>,
    flags: ResponseFlags,
    started: Instant,
) {
    let http = &*listener.http;
    http.stats.inc(shard.id, HttpStat::downstream_rq_total);
    let sent = down.send_reply(shard, http, reply, false, true).await;
    let status = if sent { reply.status } else { 0 };
    count_finished(shard, http, &listener.http_stats, status, started);
    if http.access_logs.is_empty() {
        return;
    }
    let record = Record {
        status,
        flags,
        bytes_sent: if sent { reply.body.len() as u64 } else { 0 },
        duration: started.elapsed(),
        tls: peer.tls.as_deref(),
        direct_remote: Some(
            peer.direct_remote
                .clone()
                .unwrap_or_else(|| peer.remote.clone()),
        ),
        ..Record::new(
            wall_clock(started),
            &[],
            peer.remote.clone(),
            peer.local.clone(),
        )
    };
    shard.logs.log(&http.access_logs, &record);
}

/// Counts a finished request's response and its duration.
fn count_finished(
    shard: &Shard,
    http: &HttpSettings,
    listener_http: &Scope<ListenerHttpStat>,
    status: u16,
    started: Instant,
) {
    count_response(http, listener_http, shard.id, status);
    let micros = started.elapsed().as_micros() as u64;
    shard.histograms.record(http.rq_time, micros);
}

/// Counts a response sent by its status class, for the connection manager
/// and for its listener.
fn count_response(
    http: &HttpSettings,
    listener_http: &Scope<ListenerHttpStat>,
    w: usize,
    status: u16,
) {
    if http.stats.inc_status(w, status, HTTP_CLASSES) {
        http.stats.inc(w, HttpStat::downstream_rq_completed);
        listener_http.inc_status(w, status, LISTENER_HTTP_CLASSES);
        listener_http.inc(w, ListenerHttpStat::downstream_rq_completed);
    }
}

/// Serves one downstream connection until it closes or the shard drains.
pub async fn serve(
    down: Stream,
    replay: Vec<u8>,
    peer: Peer,
    shard: Rc<Shard>,
    at: ChainAt,
    h2: bool,
    stopped: Rc<LocalDrain>,
) {
    let mut at = at;
    let home = shard.view();
    let Some(current) = home.snapshot.locate(&mut at).cloned() else {
        return;
    };
    let mut cx = CxStats::open(shard.clone(), current);
    if h2 {
        cx.speaks(Protocol::Http2);
        Box::pin(h2::serve(down, replay, cx, peer, at, stopped)).await;
        return;
    }
    let mut conn = Conn::open(down, peer, cx, home, stopped.clone());
    conn.proxy.down.rbuf.append(&replay);
    let served = conn.serve_http1(&shard, at).await;
    conn.count_bytes();
    conn.cx.closed_by_peer |= conn.proxy.down.closed_by_peer;
    if served == Some(Protocol::Http2) {
        let Conn {
            mut cx,
            proxy,
            peer,
            ..
        } = conn;
        cx.speaks(Protocol::Http2);
        let H1Down { stream, rbuf, .. } = proxy.down;
        // Boxed: an HTTP/1.1 connection's task stays as small as it was.
        Box::pin(h2::serve(stream, rbuf.into_unread(), cx, peer, at, stopped)).await;
    }
}

/// The view a connection's next request (or stream) is served by: the
/// newest, where its filter chain is found (`at` follows it there, and it
/// becomes `home`); else `home`, with true: the chain changed or went away,
/// and the connection should close after this request.
fn follow(shard: &Shard, home: &mut Rc<View>, at: &mut ChainAt) -> (Rc<View>, bool) {
    let view = shard.view();
    if view.snapshot.locate(at).is_none() {
        return (home.clone(), true);
    }
    if !Rc::ptr_eq(&view, home) {
        *home = view.clone();
    }
    (view, false)
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol a connection's first bytes speak under `codec`; None
/// while too few have arrived to tell.
fn detect(codec: Codec, first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(H2_PREFACE.len());
    match codec {
        Codec::Http1 => Some(Protocol::Http1),
        Codec::Http2 => Some(Protocol::Http2),
        Codec::Auto if first[..n] != H2_PREFACE[..n] => Some(Protocol::Http1),
        // "PRI " is no HTTP/1.1 method Ringway serves: four bytes tell.
        Codec::Auto if n >= 4 => Some(Protocol::Http2),
        Codec::Auto => None,
    }
}

impl Conn {
    /// Serves HTTP/1.1 requests until the connection closes or the shard
    /// drains; returns HTTP/2 instead when the first bytes asked for it.
    async fn serve_http1(&mut self, shard: &Rc<Shard>, mut at: ChainAt) -> Option<Protocol> {
        // One idle timer for the connection's life, re-armed only when it
        // fires early: a keep-alive request costs no timer operation.
        let idle = self.cx.listener.http.idle_timeout;
        let mut idle_timer = idle.map(|d| Box::pin(monoio::time::sleep(d)));
        // Once draining with a linger (a hot restart's hand-over), until
        // when an idle connection waits for a last request.
        let mut lingering: Option<monoio::time::Instant> = None;
        loop {
            while self.proxy.down.rbuf.is_empty() || self.cx.protocol.is_none() {
                // The first bytes (perhaps read by a listener filter) say
                // which protocol the connection speaks.
                if self.cx.protocol.is_none() && !self.proxy.down.rbuf.is_empty() {
                    match detect(self.cx.listener.http.codec, self.proxy.down.rbuf.data()) {
                        Some(Protocol::Http2) => return Some(Protocol::Http2),
                        Some(Protocol::Http1) => {
                            self.cx.speaks(Protocol::Http1);
                            continue;
                        }
                        None => {}
                    }
                }
                // Idle between requests: hold no buffer, wait for readiness
                // (one ring op), then read what is there with one recv.
                self.proxy.down.rbuf.release();
                self.proxy.ubuf.release();
                let last_active = self.last_active;
                let http_stats = &self.cx.listener.http.stats;
                let linger_done = async {
                    match lingering {
                        Some(until) => monoio::time::sleep_until(until).await,
                        None => std::future::pending().await,
                    }
                };
                let ready = monoio::select! {
                    r = self.proxy.down.stream.readable(false) => r,
                    _ = shard.drain.wait(), if lingering.is_none() => {
                        let linger = shard.stats.drain_linger();
                        if !linger.is_zero() {
                            lingering = Some(monoio::time::Instant::now() + linger);
                            continue;
                        }
                        http_stats.inc(shard.id, HttpStat::downstream_cx_drain_close);
                        return None;
                    }
                    _ = linger_done => {
                        http_stats.inc(shard.id, HttpStat::downstream_cx_drain_close);
                        return None;
                    }
                    _ = self.stopped.wait() => {
                        http_stats.inc(shard.id, HttpStat::downstream_cx_drain_close);
                        return None;
                    }
                    _ = idle_since(&mut idle_timer, idle, last_active) => {
                        http_stats.inc(shard.id, HttpStat::downstream_cx_idle_timeout);
                        return None;
                    }
                };
                // Ok(None): a spurious wake-up, nothing to read yet.
                let down = &mut self.proxy.down;
                if let Ok(Some(0)) | Err(_) =
                    ready.and_then(|()| down.rbuf.fill_ready(&down.stream))
                {
                    down.closed_by_peer = true;
                    return None;
                }
            }
            let (view, retired) = follow(shard, &mut self.home, &mut at);
            let listener = view
                .snapshot
                .listeners
                .get(at.listener)?
                .http_chain(at.chain)?;
            // Boxed: the exchange's state (several KiB) exists only while a
            // request is in flight, not for the whole life of an idle
            // connection.
            let exchange = Box::pin(self.exchange(shard, &view, listener, retired));
            if exchange.await == Next::Close {
                self.close_gracefully(listener.http.delayed_close_timeout)
                    .await;
                return None;
            }
        }
    }
}

/// Most unread client bytes discarded while a closing connection drains.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

impl Conn {
    /// Whether this request is the last `max_requests_per_connection`
    /// allows (counted in `downstream_cx_max_requests_reached`).
    fn last_allowed(&self, http: &HttpSettings, w: usize) -> bool {
        let last = http
            .max_requests_per_connection
            .is_some_and(|max| self.requests + 1 >= max);
        if last {
            http.stats
                .inc(w, HttpStat::downstream_cx_max_requests_reached);
        }
        last
    }

    /// Envoy's `delayed_close_timeout`: after a response that ends the
    /// connection, half-close so the client sees the end, then read and
    /// discard what it still sends (for at most `delay` and
    /// [`DRAIN_LIMIT`] bytes) before closing. Closing with unread bytes
    /// would make the kernel answer with a reset, which can destroy the
    /// response before the client reads it.
    async fn close_gracefully(&mut self, delay: Option<Duration>) {
        let Some(delay) = delay else { return };
        let down = &mut self.proxy.down;
        if down.closed_by_peer || down.stream.shutdown().await.is_err() {
            return;
        }
        let drain = async {
            let mut left = DRAIN_LIMIT;
            loop {
                down.rbuf.clear();
                match down.rbuf.fill(&mut down.stream, READ_CHUNK).await {
                    Ok(n) if n > 0 && n < left => left -= n,
                    _ => return,
                }
            }
        };
        let _ = monoio::time::timeout(delay, drain).await;
    }

    /// Reads one request and answers it.
    /// `retired`: the connection's chain is no longer served (an update
    /// changed or removed it), so the connection closes after this request.
    async fn exchange(
        &mut self,
        shard: &Rc<Shard>,
        view: &Rc<View>,
        listener: &HttpChain,
        retired: bool,
    ) -> Next {
        let http = &*listener.http;
        let started = Instant::now();
        let request_deadline = http.request_timeout.map(|t| started + t);
        // The head's own deadline runs from its first byte, which is here.
        let header_deadline = http.request_headers_timeout.map(|t| started + t);
        let head_deadline = match (request_deadline, header_deadline) {
            (Some(r), Some(h)) => Some(r.min(h)),
            (r, h) => r.or(h),
        };
        let mut resume = None;
        let (req, plan) = loop {
            let data = self.proxy.down.rbuf.data();
            match head::parse_request(data, http, &self.peer, shard, resume.take()) {
                ParsedRequest::Request(req, plan) => break (req, plan),
                ParsedRequest::Suspended(mut suspended) => {
                    let answer = match suspended.decision.call.take() {
                        Some(c) => {
                            call::make(shard, view, listener, &self.peer, Protocol::Http1, c).await
                        }
                        None => filters::Answer::default(),
                    };
                    resume = Some(Resume { suspended, answer });
                }
                ParsedRequest::Reject(reply) => {
                    if reply.status == 400 {
                        http.stats
                            .inc(shard.id, HttpStat::downstream_cx_protocol_error);
                    }
                    let flag = ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR;
                    return self
                        .answer_head(shard, listener, &reply, flag, started)
                        .await;
                }
                ParsedRequest::Partial => {
                    let limit = http.max_request_headers_bytes + READ_CHUNK;
                    let patience = Patience {
                        idle: http.stream_idle_timeout,
                        deadline: head_deadline,
                    };
                    let down = &mut self.proxy.down;
                    match down
                        .rbuf
                        .fill_within(&mut down.stream, limit, patience)
                        .await
                    {
                        Ok(n) if n > 0 => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            let reply = if header_deadline.is_some_and(|d| Instant::now() >= d) {
                                http.stats
                                    .inc(shard.id, HttpStat::downstream_rq_header_timeout);
                                LocalReply::closing(408, "request header timeout")
                            } else {
                                timeout_reply(http, shard.id, patience)
                            };
                            let flag = if patience.past_deadline() {
                                ResponseFlags::default()
                            } else {
                                ResponseFlags::STREAM_IDLE_TIMEOUT
                            };
                            return self
                                .answer_head(shard, listener, &reply, flag, started)
                                .await;
                        }
                        _ => {
                            self.proxy.down.closed_by_peer = true;
                            return Next::Close;
                        }
                    }
                }
            }
        };
        let request_head = kept_head(&plan, http, &self.proxy.down.rbuf.data()[..req.head_len]);
        let rbuf = &mut self.proxy.down.rbuf;
        rbuf.consume(req.head_len);
        rbuf.shrink();
        let w = shard.id;
        let close =
            !req.keep_alive || retired || shard.drain.is_draining() || self.last_allowed(http, w);
        http.stats.inc(w, HttpStat::downstream_rq_http1_total);
        let x = Exchange::begin(
            shard,
            view,
            listener,
            req,
            &plan,
            request_head,
            started,
            self.peer.clone(),
            close,
            Protocol::Http1,
        );
        let next = self.proxy.run(&x, plan).await;
        x.finish();
        self.finish_request();
        next
    }

    /// Answers a request whose head never became a request (malformed, too
    /// large, or too slow) with `reply` and closes; it is counted and
    /// logged like any request.
    async fn answer_head(
        &mut self,
        shard: &Shard,
        listener: &HttpChain,
        reply: &LocalReply<'_>,
        flags: ResponseFlags,
        started: Instant,
    ) -> Next {
        listener
            .http
            .stats
            .inc(shard.id, HttpStat::downstream_rq_http1_total);
        let down = &mut self.proxy.down;
        answer_unparsed(down, shard, listener, &self.peer, reply, flags, started).await;
        self.finish_request();
        Next::Close
    }

    /// Counts a finished request on the connection, and the connection's
    /// bytes so far.
    fn finish_request(&mut self) {
        self.requests = self.requests.saturating_add(1);
        self.last_active = Instant::now();
        self.count_bytes();
    }
}

impl<D: Downstream> Proxy<D> {
    /// Carries out the plan made for a request: a local answer, or a
    /// forward (bounded by `max_stream_duration`).
    async fn run(&mut self, x: &Exchange<'_>, plan: Plan<'_>) -> Next {
        let (w, http) = (x.shard.id, x.http);
        if let Some(delay) = x.req.filtered.delay {
            x.flag(ResponseFlags::DELAY_INJECTED);
            monoio::time::sleep(delay).await;
        }
        match plan {
            Plan::Local(reply, _) => self.reply(x, &reply).await,
            Plan::Filter(reply, flags, _) => {
                x.flag(flags);
                self.reply(x, &reply).await
            }
            // Envoy counts a route's redirect as a direct response too.
            Plan::Direct(reply, _) | Plan::Redirect(reply, _) => {
                http.stats.inc(w, HttpStat::rq_direct_response);
                self.reply(x, &reply).await
            }
            Plan::NoRoute => {
                http.stats.inc(w, HttpStat::no_route);
                x.flag(ResponseFlags::NO_ROUTE_FOUND);
                self.reply(x, &LocalReply::new(404, "")).await
            }
            Plan::Overloaded => {
                http.stats.inc(w, HttpStat::downstream_rq_overload_close);
                x.flag(ResponseFlags::OVERLOAD_MANAGER);
                self.reply(x, &LocalReply::new(503, "envoy overloaded"))
                    .await
            }
            Plan::NoCluster(status, _) => {
                http.stats.inc(w, HttpStat::no_cluster);
                x.flag(ResponseFlags::NO_CLUSTER_FOUND);
                self.reply(x, &LocalReply::new(status, "")).await
            }
            Plan::Forward {
                forward,
                cluster,
                criteria,
                head,
                slots,
                hash,
                set_cookie,
                overrides,
                stream_duration,
                ..
            } => {
                if let Some(cookie) = set_cookie {
                    let _ = x.set_cookie.set(cookie);
                }
                if x.req.upgrade {
                    http.stats.inc(w, HttpStat::downstream_cx_upgrades_total);
                }
                let upstream = Upstream {
                    forward,
                    cluster,
                    criteria,
                    slots,
                    hash,
                    overrides,
                };
                // A gRPC deadline its offset used up: over before it began.
                if stream_duration.is_some_and(|limit| limit.is_zero()) {
                    return self.stream_duration_reached(x).await;
                }
                {
                    // Pinned where it is made and awaited only through its
                    // pin: the forward, most of this future's size, is then
                    // stored once rather than once per await that holds it.
                    let mut forwarding = std::pin::pin!(self.forward(x, upstream, head));
                    let Some(ends) = x.stream_ends else {
                        return forwarding.await;
                    };
                    // Before a response head is chosen the limit cuts the
                    // attempt short for a 504. After, bytes may be on their
                    // way to the client: the relay itself stops at the limit
                    // (see `Failure::StreamDuration`), between writes, never
                    // in one.
                    monoio::select! {
                        biased;
                        next = &mut forwarding => return next,
                        _ = monoio::time::sleep_until(ends.into()) => {}
                    }
                    if x.status.get() != 0 {
                        return forwarding.await;
                    }
                }
                // The attempt is dropped with nothing sent downstream.
                self.stream_duration_reached(x).await
            }
        }
    }

    /// The stream outlived `max_stream_duration` before a response began:
    /// Envoy's 504 (a gRPC request's status is DEADLINE_EXCEEDED).
    async fn stream_duration_reached(&mut self, x: &Exchange<'_>) -> Next {
        x.http
            .stats
            .inc(x.shard.id, HttpStat::downstream_rq_max_duration_reached);
        let mut reply = LocalReply::new(504, "downstream duration timeout");
        reply.grpc_status = Some(grpc::DEADLINE_EXCEEDED);
        // A request body may be partly read: that connection cannot go on.
        reply.close = x.req.framing != Framing::Empty;
        self.reply(x, &reply).await
    }

    /// Writes a local reply; the connection stays open only if the request
    /// body (if any) is already buffered and can be skipped.
    async fn reply(&mut self, x: &Exchange<'_>, reply: &LocalReply<'_>) -> Next {
        let skippable = self.down.skip_body(x.req.framing);
        // An upgrade answered locally is not going to be tunnelled: close,
        // as Envoy does.
        let close = x.closing() || reply.close || !skippable || x.req.upgrade;
        let as_grpc;
        let reply = if x.req.grpc {
            let status = reply
                .grpc_status
                .unwrap_or_else(|| grpc::status_for_http(reply.status));
            x.grpc_status.set(Some(i64::from(status)));
            as_grpc = reply.for_grpc(status);
            &as_grpc
        } else {
            reply
        };
        // The route's response header mutations apply to its local replies
        // too, and then the headers the filters add.
        let mutated;
        let levels = x.response_mutations();
        let filtered = &x.req.filtered;
        let reply = if levels.is_none() && filtered.response.is_empty() {
            reply
        } else {
            let mut edits = match levels {
                Some(levels) => {
                    let record = Record {
                        status: reply.status,
                        ..x.record()
                    };
                    let present = |name: &str| reply.headers.iter().any(|(n, _)| n == name);
                    mutate::plan(&levels, &present, &record)
                }
                None => mutate::Edits::default(),
            };
            let originals: Vec<&str> = reply.headers.iter().map(|(n, _)| n.as_str()).collect();
            filters::shape_response(&filtered.response, &mut edits, &originals);
            let mut edited = reply.clone();
            edited.headers.retain(|(n, _)| edits.keeps(n));
            edited.headers.extend(edits.added);
            mutated = edited;
            &mutated
        };
        let written = self
            .down
            .send_reply(x.shard, x.http, reply, x.req.is_head, close)
            .await;
        if written {
            x.status.set(reply.status);
            if !x.req.is_head {
                x.log.bytes_sent.set(reply.body.len() as u64);
            }
        } else {
            x.flag(D::GONE);
        }
        if written && !close {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}
