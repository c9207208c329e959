//! HTTP/2 downstream connections. The h2 codec drives the connection;
//! each stream is one exchange on the protocol-neutral path, run as its
//! own task on the shard so that one stream's slow upstream never holds
//! up another. A stream's head is translated into the head block the
//! request analysis reads, and response heads back into HEADERS frames.

use super::downstream::Downstream;
use super::{
    answer_unparsed, count_cx_bytes, follow, kept_head, ChainAt, CxStats, Exchange, Next, Protocol,
    Proxy,
};
use crate::http::body::{pump, Moved, OutFraming, PumpError, Sink, Source};
use crate::http::codec::{Framing, Patience, ReadBuf, READ_CHUNK};
use crate::http::filters::Answer;
use crate::http::flags::ResponseFlags;
use crate::http::h2::{keepalive, poll_capacity, request_head, response_from_head, H2Body};
use crate::http::head::{self, ParsedRequest, Peer, Resume};
use crate::http::local_reply::LocalReply;
use crate::http::upgrade::{self, End, Tunneled};
use crate::net::{ByteCounts, Stream};
use crate::server::drain::LocalDrain;
use crate::server::shard::{Shard, View};
use crate::snapshot::HttpSettings;
use crate::stats::sets::{Http as HttpStat, Http2 as Http2Stat};
use bytes::Bytes;
use h2::server::{Builder, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a client has to finish the connection preface and SETTINGS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves an HTTP/2 connection whose first bytes (`replay`) were already
/// read, until the client leaves or a drain's GOAWAY has let every
/// stream finish.
pub(super) async fn serve(
    stream: Stream,
    replay: Vec<u8>,
    cx: CxStats,
    peer: Peer,
    mut at: ChainAt,
    stopped: Rc<LocalDrain>,
) {
    let shard = cx.shard.clone();
    peer.filter_state.set_http2();
    // The newest view in which the connection's chain was found: once an
    // update changes or removes the chain, streams are served by it and
    // the connection goes away (GOAWAY).
    let mut home = shard.view();
    let http = &cx.listener.http;
    let options = &http.http2;
    let w = shard.id;
    let counts = Rc::new(ByteCounts::default());
    let io = stream.into_poll(replay, counts.clone());
    let mut builder = Builder::new();
    builder
        .max_concurrent_streams(options.max_concurrent_streams)
        .initial_window_size(options.initial_stream_window_size)
        .initial_connection_window_size(options.initial_connection_window_size)
        .header_table_size(options.hpack_table_size)
        .max_header_list_size(u32::try_from(http.max_request_headers_bytes).unwrap_or(u32::MAX))
        .max_send_buffer_size(READ_CHUNK);
    if options.allow_connect {
        builder.enable_connect_protocol();
    }
    let handshake = monoio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io));
    let mut conn = match handshake.await {
        Ok(Ok(conn)) => conn,
        _ => {
            http.stats.inc(w, HttpStat::downstream_cx_protocol_error);
            count_cx_bytes(http, w, counts.take());
            return;
        }
    };
    let h2_stats = shard.http2_stats();
    let streams = Rc::new(Streams {
        active: Cell::new(0),
        last_active: Cell::new(Instant::now()),
        close: Signal::default(),
    });
    let mut keepalive = std::pin::pin!(keepalive(conn.ping_pong(), options.keepalive));
    let mut idle = std::pin::pin!(idle(&streams, http.idle_timeout));
    let mut accepted = 0u32;
    let mut closing = false;
    loop {
        let event = monoio::select! {
            next = conn.accept() => Event::Accepted(next),
            _ = shard.drain.wait(), if !closing => {
                Event::GoAway(Some(HttpStat::downstream_cx_drain_close))
            }
            _ = stopped.wait(), if !closing => {
                Event::GoAway(Some(HttpStat::downstream_cx_drain_close))
            }
            _ = &mut idle, if !closing => Event::GoAway(Some(HttpStat::downstream_cx_idle_timeout)),
            _ = streams.close.fired(), if !closing => Event::GoAway(None),
            _ = &mut keepalive => Event::KeepaliveLost,
        };
        let next = match event {
            Event::Accepted(next) => next,
            Event::GoAway(stat) => {
                if let Some(stat) = stat {
                    http.stats.inc(w, stat);
                }
                h2_stats.inc(w, Http2Stat::goaway_sent);
                conn.graceful_shutdown();
                closing = true;
                continue;
            }
            Event::KeepaliveLost => {
                h2_stats.inc(w, Http2Stat::keepalive_timeout);
                conn.abrupt_shutdown(Reason::NO_ERROR);
                break;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                accepted = accepted.saturating_add(1);
                // max_requests_per_connection: this stream is the last.
                if !closing
                    && http
                        .max_requests_per_connection
                        .is_some_and(|max| accepted >= max)
                {
                    http.stats
                        .inc(w, HttpStat::downstream_cx_max_requests_reached);
                    h2_stats.inc(w, Http2Stat::goaway_sent);
                    conn.graceful_shutdown();
                    closing = true;
                }
                let (view, retired) = follow(&shard, &mut home, &mut at);
                if retired && !closing {
                    h2_stats.inc(w, Http2Stat::goaway_sent);
                    conn.graceful_shutdown();
                    closing = true;
                }
                let task = StreamTask {
                    shard: shard.clone(),
                    at,
                    view,
                    peer: peer.clone(),
                    streams: streams.clone(),
                };
                // Boxed before spawning: the task then moves a pointer, not
                // the stream's whole (10 KiB) future, on its way in.
                monoio::spawn(Box::pin(task.run(request, respond)));
            }
            Some(Err(e)) => {
                if e.is_go_away() || e.reason().is_some_and(|r| r != Reason::NO_ERROR) {
                    http.stats.inc(w, HttpStat::downstream_cx_protocol_error);
                    h2_stats.inc(w, Http2Stat::rx_messaging_error);
                }
                break;
            }
            None => break,
        }
        count_cx_bytes(http, w, counts.take());
    }
    count_cx_bytes(http, w, counts.take());
    let mut cx = cx;
    cx.closed_by_peer = !closing;
}

/// What woke an HTTP/2 connection's task.
enum Event<T> {
    /// The codec accepted a stream, failed, or ended.
    Accepted(T),
    /// Time to send GOAWAY, counted in this stat if any.
    GoAway(Option<HttpStat>),
    /// A keepalive PING went unanswered.
    KeepaliveLost,
}

/// What an HTTP/2 connection's task and its streams' tasks share.
struct Streams {
    /// Streams being served.
    active: Cell<usize>,
    /// When the last stream ended (or the connection opened).
    last_active: Cell<Instant>,
    /// Asks the connection for a GOAWAY.
    close: Signal,
}

/// Resolves once the connection has had no stream for `limit`.
async fn idle(streams: &Streams, limit: Option<Duration>) {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    let (active, last_active) = (&streams.active, &streams.last_active);
    loop {
        let due = last_active.get() + limit;
        monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
        if active.get() == 0 && Instant::now() >= last_active.get() + limit {
            return;
        }
        if active.get() > 0 {
            last_active.set(Instant::now());
        }
    }
}

/// What one stream's task needs from its connection.
struct StreamTask {
    shard: Rc<Shard>,
    at: ChainAt,
    /// The view the stream is served by.
    view: Rc<View>,
    peer: Peer,
    streams: Rc<Streams>,
}

/// A one-shot signal from stream tasks to their connection's task.
#[derive(Default)]
struct Signal {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves once fired.
    async fn fired(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

impl StreamTask {
    /// Serves one stream, counted active while it lasts.
    async fn run(self, request: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
        let (w, h2_stats) = (self.shard.id, self.shard.http2_stats());
        let streams = &self.streams;
        streams.active.set(streams.active.get() + 1);
        h2_stats.inc(w, Http2Stat::streams_active);
        // None: the listener went away meanwhile; dropping the stream
        // resets it.
        if let Some(down) = self.exchange(request, respond).await {
            down.end(h2_stats, w);
        }
        h2_stats.dec(w, Http2Stat::streams_active);
        streams.active.set(streams.active.get() - 1);
        streams.last_active.set(Instant::now());
    }

    /// Answers the stream's request on the shared path; returns the
    /// stream for its books to be closed.
    async fn exchange(
        &self,
        request: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
    ) -> Option<H2Down> {
        let shard = &self.shard;
        let w = shard.id;
        let started = Instant::now();
        let view = &self.view;
        let at = self.at;
        let listener = view
            .snapshot
            .listeners
            .get(at.listener)?
            .http_chain(at.chain)?;
        let http = &listener.http;
        let (parts, body) = request.into_parts();
        // An extended CONNECT's DATA is its tunnel, not a framed body.
        let chunked = !body.is_end_stream()
            && !parts.headers.contains_key("content-length")
            && parts.extensions.get::<h2::ext::Protocol>().is_none();
        let head = request_head(&parts, chunked);
        let mut down = H2Down::new(respond, body, chunked);
        http.stats.inc(w, HttpStat::downstream_rq_http2_total);
        let mut parsed = head::parse_request(&head, http, &self.peer, shard, None);
        // A filter waits on a call: make it, then go on with the answer.
        while let ParsedRequest::Suspended(mut suspended) = parsed {
            let answer = match suspended.decision.call.take() {
                Some(c) => {
                    super::call::make(shard, view, listener, &self.peer, Protocol::Http2, c).await
                }
                None => Answer::default(),
            };
            let resume = Resume { suspended, answer };
            parsed = head::parse_request(&head, http, &self.peer, shard, Some(resume));
        }
        let down = match parsed {
            ParsedRequest::Request(req, plan) => {
                let request_head = kept_head(&plan, http, &head);
                let x = Exchange::begin(
                    shard,
                    view,
                    listener,
                    req,
                    &plan,
                    request_head,
                    started,
                    self.peer.clone(),
                    false,
                    Protocol::Http2,
                );
                let mut proxy = Proxy {
                    down,
                    ubuf: ReadBuf::default(),
                };
                let next = proxy.run(&x, plan).await;
                // An upgrade that did not switch ends the connection, as
                // it does over HTTP/1.1: Envoy sends GOAWAY.
                if next == Next::Close && x.req.upgrade && x.status.get() != 101 {
                    self.streams.close.fire();
                }
                x.finish();
                proxy.down
            }
            // A head HTTP/2 carried but Ringway would not forward.
            ParsedRequest::Reject(reply) => {
                let flags = ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR;
                answer_unparsed(
                    &mut down, shard, listener, &self.peer, &reply, flags, started,
                )
                .await;
                down
            }
            ParsedRequest::Partial | ParsedRequest::Suspended(_) => down,
        };
        Some(down)
    }
}

/// Where an HTTP/2 stream's response stands.
enum Reply {
    /// No response head sent yet.
    Waiting(SendResponse<Bytes>),
    /// The head is sent; the body is going.
    Streaming(SendStream<Bytes>),
    /// The stream ended (or was abandoned).
    Done,
}

impl Reply {
    /// Whether the client reset the stream (or the connection is gone).
    fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Reply::Waiting(r) => r.poll_reset(cx).map(|_| ()),
            Reply::Streaming(s) => s.poll_reset(cx).map(|_| ()),
            Reply::Done => Poll::Pending,
        }
    }
}

/// An HTTP/2 stream as the shared path's downstream.
pub(super) struct H2Down {
    reply: Rc<RefCell<Reply>>,
    body: H2Body,
    rbuf: ReadBuf,
    /// The client reset the stream or left.
    gone: bool,
}

impl H2Down {
    fn new(respond: SendResponse<Bytes>, recv: RecvStream, chunked: bool) -> Self {
        H2Down {
            reply: Rc::new(RefCell::new(Reply::Waiting(respond))),
            body: H2Body::new(recv, chunked),
            rbuf: ReadBuf::default(),
            gone: false,
        }
    }

    /// Sends the response head; false when the stream is gone.
    fn start(&mut self, response: http::Response<()>, end: bool) -> bool {
        let mut reply = self.reply.borrow_mut();
        let Reply::Waiting(respond) = &mut *reply else {
            return false;
        };
        match respond.send_response(response, end) {
            Ok(stream) if !end => {
                *reply = Reply::Streaming(stream);
                true
            }
            Ok(_) => {
                *reply = Reply::Done;
                true
            }
            Err(_) => false,
        }
    }

    /// Ends the body with an empty DATA frame, unless its last bytes
    /// ended it; false when the stream is gone.
    fn finish(&mut self) -> bool {
        let mut reply = self.reply.borrow_mut();
        let ended = match &mut *reply {
            Reply::Streaming(s) => s.send_data(Bytes::new(), true).is_ok(),
            Reply::Done => true,
            Reply::Waiting(_) => false,
        };
        *reply = Reply::Done;
        ended
    }

    /// Ends the body with trailers; false when the stream is gone.
    fn send_trailers(&mut self, trailers: http::HeaderMap) -> bool {
        let mut reply = self.reply.borrow_mut();
        let sent = match &mut *reply {
            Reply::Streaming(s) => s.send_trailers(trailers).is_ok(),
            _ => false,
        };
        *reply = Reply::Done;
        sent
    }

    /// Closes the stream's books: a client reset counts in `rx_reset`; a
    /// response left unfinished is reset (`tx_reset`), as Envoy resets a
    /// stream whose upstream broke.
    fn end(self, stats: &crate::stats::Scope<Http2Stat>, w: usize) {
        let mut reply = self.reply.borrow_mut();
        let mut cx = Context::from_waker(Waker::noop());
        if self.gone || reply.poll_reset(&mut cx).is_ready() {
            stats.inc(w, Http2Stat::rx_reset);
            return;
        }
        match &mut *reply {
            Reply::Waiting(r) => r.send_reset(Reason::INTERNAL_ERROR),
            Reply::Streaming(s) => s.send_reset(Reason::INTERNAL_ERROR),
            Reply::Done => return,
        }
        stats.inc(w, Http2Stat::tx_reset);
    }
}

impl Downstream for H2Down {
    type Body = H2Body;
    const GONE: ResponseFlags = ResponseFlags::DOWNSTREAM_REMOTE_RESET;

    fn request_body(&mut self) -> (&mut H2Body, &mut ReadBuf) {
        (&mut self.body, &mut self.rbuf)
    }

    fn detach_body(&mut self) -> Option<(H2Body, ReadBuf)> {
        Some((self.body.take(), std::mem::take(&mut self.rbuf)))
    }

    async fn send_reply(
        &mut self,
        shard: &Shard,
        http: &HttpSettings,
        reply: &LocalReply<'_>,
        head_only: bool,
        _close: bool,
    ) -> bool {
        let block = shard
            .date
            .with(|date| reply.encode(http, date, head_only, false));
        let Some((mut response, len)) = response_from_head(&block) else {
            return false;
        };
        let body = &block[len..];
        // Envoy's HTTP/2 local replies say no length when they have no body.
        if reply.body.is_empty() {
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
        }
        if !self.start(response, body.is_empty()) {
            return false;
        }
        if body.is_empty() {
            return true;
        }
        let mut sink = H2Sink {
            reply: &self.reply,
            remaining: Some(body.len() as u64),
        };
        let (sent, _) = sink.write(body.to_vec()).await;
        sent.is_ok() && self.finish()
    }

    async fn send_continue(&mut self) -> bool {
        let mut reply = self.reply.borrow_mut();
        let Reply::Waiting(respond) = &mut *reply else {
            return false;
        };
        let interim = http::Response::builder()
            .status(100)
            .body(())
            .map_err(|_| ());
        interim.is_ok_and(|r| respond.send_informational(r).is_ok())
    }

    async fn relay<S: Source>(
        &mut self,
        head: Vec<u8>,
        up: &mut S,
        ubuf: &mut ReadBuf,
        framing: Framing,
        patience: Patience,
    ) -> Result<Moved, PumpError> {
        let Some((response, _)) = response_from_head(&head) else {
            return Err(PumpError::Destination(0));
        };
        let end = framing == Framing::Empty;
        if !self.start(response, end) {
            return Err(PumpError::Destination(0));
        }
        let written = head.len() as u64;
        if end {
            return Ok(Moved { body: 0, written });
        }
        // The last bytes end the stream, unless trailers may follow them.
        let remaining = match framing {
            Framing::Length(n) if !up.may_have_trailers() => Some(n),
            _ => None,
        };
        let mut sink = H2Sink {
            reply: &self.reply,
            remaining,
        };
        let moved = pump(
            up,
            ubuf,
            framing,
            &mut sink,
            Vec::new(),
            OutFraming::Raw,
            patience,
        )
        .await?;
        let ended = match up.trailers() {
            Some(trailers) => self.send_trailers(trailers.clone()),
            None => self.finish(),
        };
        if !ended {
            return Err(PumpError::Destination(written + moved.written));
        }
        Ok(Moved {
            body: moved.body,
            written: written + moved.written,
        })
    }

    async fn send_switch(&mut self, head: Vec<u8>) -> bool {
        // An extended CONNECT's tunnel opens with a 200 (RFC 8441 §5),
        // without the HTTP/1.1 upgrade headers, as Envoy answers it.
        let Some((mut response, _)) = response_from_head(&head) else {
            return false;
        };
        *response.status_mut() = http::StatusCode::OK;
        self.start(response, false)
    }

    async fn tunnel(
        &mut self,
        up: &mut Stream,
        from_upstream: Vec<u8>,
        idle: Option<Duration>,
    ) -> Tunneled {
        let from_client = self.rbuf.data().to_vec();
        self.rbuf.clear();
        let mut body = self.body.take();
        let mut sink = H2Sink {
            reply: &self.reply,
            remaining: None,
        };
        let moved =
            upgrade::tunnel(&mut body, &mut sink, up, from_client, from_upstream, idle).await;
        // An upstream that closed ends the stream cleanly; anything else
        // resets it when the stream's books close.
        if moved.end == End::Upstream {
            self.finish();
        }
        moved
    }

    fn skip_body(&mut self, _framing: Framing) -> bool {
        // The stream's unread body ends with the stream; the connection
        // goes on.
        true
    }

    fn closed(&self) -> impl Future<Output = ()> + use<> {
        let reply = self.reply.clone();
        poll_fn(move |cx| reply.borrow_mut().poll_reset(cx))
    }

    fn is_gone(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.reply.borrow_mut().poll_reset(&mut cx).is_ready()
    }

    fn lost(&mut self) {
        self.gone = true;
    }
}

/// Writes body bytes as DATA frames on the downstream stream, within its
/// flow-control window. A body of known length ends the stream with its
/// last bytes rather than with an empty frame after them.
struct H2Sink<'a> {
    reply: &'a RefCell<Reply>,
    /// Bytes still to come of a body with a known length.
    remaining: Option<u64>,
}

impl Sink for H2Sink<'_> {
    async fn write(&mut self, out: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = out.len();
        let mut data = Bytes::from(out);
        while !data.is_empty() {
            let capacity = poll_fn(|cx| match &mut *self.reply.borrow_mut() {
                Reply::Streaming(s) => poll_capacity(s, data.len(), cx),
                _ => Poll::Ready(None),
            })
            .await;
            let Some(n) = capacity.map(|n| n.min(data.len())) else {
                return (Err(io::ErrorKind::BrokenPipe.into()), Vec::new());
            };
            if n == 0 {
                continue;
            }
            let chunk = data.split_to(n);
            let left = self.remaining.map(|r| r.saturating_sub(n as u64));
            let last = left == Some(0);
            self.remaining = left;
            let mut reply = self.reply.borrow_mut();
            let sent = match &mut *reply {
                Reply::Streaming(s) => s.send_data(chunk, last).is_ok(),
                _ => false,
            };
            if sent && last {
                *reply = Reply::Done;
            }
            if !sent {
                return (Err(io::ErrorKind::BrokenPipe.into()), Vec::new());
            }
        }
        (Ok(len), Vec::new())
    }
}
