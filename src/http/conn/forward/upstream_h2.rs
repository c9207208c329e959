//! One attempt to an HTTP/2 upstream: a stream on a pooled connection of
//! the shard (a new connection when every one is full), the request head
//! block translated to HEADERS, the body (buffered or streamed) as DATA,
//! and the response presented to the shared response path as the head
//! block and framed body an HTTP/1.1 upstream would have sent.

use super::{admission, Attempt, AttemptPlan, NoConnection, Tried};
use crate::config::Http2Options;
use crate::http::body::{pump, OutFraming, PumpError, Source};
use crate::http::codec::{Framing, Patience, ReadBuf};
use crate::http::conn::downstream::Downstream;
use crate::http::conn::{Exchange, Next, Proxy};
use crate::http::flags::ResponseFlags;
use crate::http::h2::{request_from_head, response_head, DataSink, H2Body};
use crate::http::local_reply::LocalReply;
use crate::http::retry::{FailKind, Retries};
use crate::stats::sets::Cluster as ClusterStat;
use crate::upstream::connect::connect;
use crate::upstream::h2pool::{self, H2Conn};
use crate::upstream::lanes::Admitted;
use crate::upstream::outlier::Outcome;
use crate::upstream::pool::{PoolWant, UpstreamConn};
use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{Reason, RecvStream, SendStream};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The connection `auto_config` found or opened, by the protocol it speaks.
pub(super) enum Negotiated {
    /// HTTP/2.
    Http2(Rc<H2Conn>),
    /// HTTP/1.1: a new connection, or None to take one from the pool.
    Http1(Option<UpstreamConn>),
}

impl<D: Downstream> Proxy<D> {
    /// One attempt against `plan.endpoint` over HTTP/2 (on `negotiated`,
    /// when `auto_config` has opened it).
    pub(super) async fn attempt_h2(
        &mut self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        head: Vec<u8>,
        retries: &Retries<'_>,
        attempt: Attempt<'_>,
        negotiated: Option<Rc<H2Conn>>,
    ) -> Tried {
        let cluster = plan.cluster;
        let fallback;
        let options = match cluster.config.upstream_protocol.http2_options() {
            Some(options) => options,
            None => {
                fallback = Http2Options::default();
                &fallback
            }
        };
        let requested = cluster.requested_server_name(&head).map(Box::<str>::from);
        let server_name = cluster.server_name(plan.endpoint, requested.as_deref());
        let connection = match negotiated {
            Some(conn) => Ok(conn),
            None => self.h2_connection(x, plan, options, server_name).await,
        };
        let conn = match connection {
            Ok(conn) => conn,
            Err(NoConnection::Refused(reply)) => return Tried::Refused(reply),
            Err(NoConnection::Failed(reply)) => {
                x.flag(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                attempt.charge(503);
                attempt.observe(Outcome::ConnectFailed);
                return Tried::Failed(reply, FailKind::ConnectFailure);
            }
        };
        if !attempt.connected(x) {
            return Tried::Refused(admission::overflow_reply());
        }
        let Some(request) = request_from_head(&head) else {
            attempt.charge(503);
            let reply = LocalReply::upstream_reset("protocol error");
            return Tried::Failed(reply, FailKind::Protocol);
        };
        let (_slot, send) = conn.open();
        if conn.spent() {
            cluster
                .stats
                .inc(x.shard.id, ClusterStat::upstream_cx_max_requests);
        }
        let bodiless = x.req.framing == Framing::Empty;
        let sent = match send.ready().await {
            Ok(mut send) => send.send_request(request, bodiless),
            Err(e) => Err(e),
        };
        let (response, mut stream) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                x.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                attempt.charge(503);
                let (reason, kind) = reset_reason(&e);
                return Tried::Failed(LocalReply::upstream_reset(reason), kind);
            }
        };
        let mut client_unread = false;
        let mut up = H2Response::Head(response);
        // A streamed HTTP/2 request body goes up while the response comes
        // back (gRPC's bidirectional calls need both at once).
        let detached = match (bodiless, plan.body) {
            (false, None) => self.down.detach_body(),
            _ => None,
        };
        let awaited = if let Some((mut src, mut rbuf)) = detached {
            if x.req.expect_continue && !self.send_continue(x).await {
                stream.send_reset(Reason::CANCEL);
                return Tried::Done(Next::Close);
            }
            let patience = x.request_patience();
            let upload = upload(&mut src, &mut rbuf, x.req.framing, &mut stream, patience);
            let response = self.await_response(x, &mut up, plan, retries, &attempt);
            let (awaited, uploaded) = duplex(upload, response).await;
            match uploaded {
                Some(Ok(body)) => x.log.bytes_received.set(body),
                Some(Err(PumpError::Source)) => {
                    x.flag(D::GONE);
                }
                _ => {}
            }
            awaited
        } else {
            if !bodiless {
                // An upstream that answers before the whole body is sent
                // has its answer relayed, and the upload stops (as over
                // HTTP/1.1); the client's unread rest ends its connection.
                let upload = self.send_body(x, plan, &mut stream);
                let answered = poll_fn(|cx| up.poll_answer(cx));
                let sent = monoio::select! {
                    biased;
                    sent = upload => sent,
                    _ = answered => {
                        x.request_cut.set(plan.body.is_none());
                        Err(PumpError::Destination(0))
                    }
                };
                match sent {
                    Ok(()) => {}
                    // The upstream stopped taking the body: its answer, if
                    // it gave one, is still read.
                    Err(PumpError::Destination(_)) => client_unread = plan.body.is_none(),
                    Err(PumpError::Malformed) => {
                        x.flag(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR);
                        stream.send_reset(Reason::CANCEL);
                        let reply = LocalReply::closing(400, "Bad Request");
                        return Tried::Done(self.reply(x, &reply).await);
                    }
                    Err(PumpError::Source) => {
                        x.flag(D::GONE);
                        stream.send_reset(Reason::CANCEL);
                        self.down.lost();
                        return Tried::Done(Next::Close);
                    }
                    Err(PumpError::SourceTimeout) => {
                        stream.send_reset(Reason::CANCEL);
                        return Tried::Done(self.request_timed_out(x).await);
                    }
                }
            }
            self.await_response(x, &mut up, plan, retries, &attempt)
                .await
        };
        let (rx, tx) = conn.counts.take();
        attempt.sent(tx);
        attempt.received(rx);
        if !matches!(awaited.result, Some(Ok(_))) {
            // Whatever is left of the stream is abandoned.
            stream.send_reset(Reason::CANCEL);
        }
        self.settle(x, plan, &attempt, awaited, client_unread).await
    }

    /// A connection to the attempt's endpoint with room for a stream: a
    /// pooled one, or a new one; on failure, the reply that says why.
    async fn h2_connection(
        &self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        options: &Http2Options,
        server_name: Option<&str>,
    ) -> Result<Rc<H2Conn>, NoConnection> {
        let (cluster, endpoint) = (plan.cluster, plan.endpoint);
        let want = PoolWant {
            cluster: cluster.pool_id,
            server_name,
            priority: plan.priority,
        };
        let idle_timeout = cluster.config.idle_timeout;
        let take = || {
            let pool = &x.shard.h2_pool;
            pool.take(&endpoint.addr, &want, Instant::now(), idle_timeout)
        };
        if let Some(conn) = take() {
            return Ok(conn);
        }
        let admitted = admission::admitted(x, plan, &want, take).await;
        let (admitted, _pending) = admitted.map_err(NoConnection::Refused)?;
        let permit = match admitted {
            Admitted::Pooled(conn) => return Ok(conn),
            Admitted::Open(permit) => permit,
        };
        let protocol = ClusterStat::upstream_cx_http2_total;
        let up = connect(x.shard, cluster, endpoint, Some(protocol), permit)
            .await
            .map_err(|f| NoConnection::Failed(super::connect_failed(x, f)))?;
        self.h2_handshake(x, plan, options, up).await
    }

    /// `auto_config`: a pooled HTTP/2 connection if there is one; else the
    /// HTTP/1.1 pool if it has one; else a new connection, offering both
    /// protocols by ALPN and speaking the one the endpoint picked.
    pub(super) async fn auto_connection(
        &self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        options: &Http2Options,
        server_name: Option<&str>,
    ) -> Result<Negotiated, NoConnection> {
        let (cluster, endpoint) = (plan.cluster, plan.endpoint);
        let want = PoolWant {
            cluster: cluster.pool_id,
            server_name,
            priority: plan.priority,
        };
        let idle_timeout = cluster.config.idle_timeout;
        let shard = x.shard;
        let pooled = || {
            let now = Instant::now();
            if let Some(conn) = shard.h2_pool.take(&endpoint.addr, &want, now, idle_timeout) {
                return Some(Negotiated::Http2(conn));
            }
            let idle = shard.pool.has_idle(&endpoint.addr, &want);
            idle.then_some(Negotiated::Http1(None))
        };
        if let Some(negotiated) = pooled() {
            return Ok(negotiated);
        }
        let admitted = admission::admitted(x, plan, &want, pooled).await;
        let (admitted, _pending) = admitted.map_err(NoConnection::Refused)?;
        let permit = match admitted {
            Admitted::Pooled(negotiated) => return Ok(negotiated),
            Admitted::Open(permit) => permit,
        };
        let up = connect(x.shard, cluster, endpoint, None, permit)
            .await
            .map_err(|f| NoConnection::Failed(super::connect_failed(x, f)))?;
        if !up.stream.alpn_h2() {
            cluster
                .stats
                .inc(x.shard.id, ClusterStat::upstream_cx_http1_total);
            return Ok(Negotiated::Http1(Some(up)));
        }
        cluster
            .stats
            .inc(x.shard.id, ClusterStat::upstream_cx_http2_total);
        self.h2_handshake(x, plan, options, up)
            .await
            .map(Negotiated::Http2)
    }

    /// Starts HTTP/2 on a new connection and pools it.
    async fn h2_handshake(
        &self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        options: &Http2Options,
        up: UpstreamConn,
    ) -> Result<Rc<H2Conn>, NoConnection> {
        let (cluster, endpoint) = (plan.cluster, plan.endpoint);
        let max_streams = cluster.config.max_requests_per_connection;
        let handshake = h2pool::handshake(up, options, max_streams);
        match monoio::time::timeout(cluster.connect_timeout(), handshake).await {
            Ok(Ok(conn)) => {
                x.shard.h2_pool.add(endpoint.addr.clone(), conn.clone());
                Ok(conn)
            }
            _ => {
                cluster
                    .stats
                    .inc(x.shard.id, ClusterStat::upstream_cx_protocol_error);
                let reply = LocalReply::upstream_reset("protocol error");
                Err(NoConnection::Failed(reply))
            }
        }
    }

    /// Sends a buffered request body (replayed on retries), or the
    /// client's streamed after it (HTTP/1.1, whose body shares the socket
    /// the response goes out on); then the end of the stream.
    async fn send_body(
        &mut self,
        x: &Exchange<'_>,
        plan: &AttemptPlan<'_>,
        stream: &mut SendStream<Bytes>,
    ) -> Result<(), PumpError> {
        let patience = x.request_patience();
        let framing = plan.framing;
        let moved = match plan.body {
            Some(buffered) => {
                let mut rbuf = ReadBuf::default();
                rbuf.append(buffered);
                upload(&mut Buffered, &mut rbuf, framing, stream, patience).await?
            }
            None => {
                if x.req.expect_continue && !self.send_continue(x).await {
                    return Err(PumpError::Source);
                }
                let (src, rbuf) = self.down.request_body();
                upload(src, rbuf, framing, stream, patience).await?
            }
        };
        if plan.body.is_none() {
            x.log.bytes_received.set(moved);
        }
        Ok(())
    }
}

/// Streams a request body from `src` (framed as `framing`) as DATA frames
/// and ends the stream, with the source's trailers when it had some; a
/// failed source resets the stream. Returns the body bytes sent.
async fn upload<S: Source>(
    src: &mut S,
    rbuf: &mut ReadBuf,
    framing: Framing,
    stream: &mut SendStream<Bytes>,
    patience: Patience,
) -> Result<u64, PumpError> {
    let mut sink = DataSink(stream);
    let pumped = pump(
        src,
        rbuf,
        framing,
        &mut sink,
        Vec::new(),
        OutFraming::Raw,
        patience,
    )
    .await;
    let moved = match pumped {
        Ok(moved) => moved,
        Err(e) => {
            if !matches!(e, PumpError::Destination(_)) {
                stream.send_reset(Reason::CANCEL);
            }
            return Err(e);
        }
    };
    let ended = match src.trailers() {
        Some(trailers) => stream.send_trailers(trailers.clone()),
        None => stream.send_data(Bytes::new(), true),
    };
    ended.map_err(|_| PumpError::Destination(0))?;
    Ok(moved.body)
}

/// Runs an upload beside the response it belongs to: the response's
/// outcome, and the upload's if it finished first (an upload still going
/// when the response is over is dropped).
async fn duplex<U: Future, R: Future>(upload: U, response: R) -> (R::Output, Option<U::Output>) {
    let mut upload = std::pin::pin!(upload);
    let mut response = std::pin::pin!(response);
    let mut uploaded = None;
    loop {
        monoio::select! {
            done = &mut upload, if uploaded.is_none() => uploaded = Some(done),
            awaited = &mut response => return (awaited, uploaded),
        }
    }
}

/// Why a stream could not start: Envoy's reset reason, and how the retry
/// policy sees it.
fn reset_reason(e: &h2::Error) -> (&'static str, FailKind) {
    match e.reason() {
        Some(Reason::REFUSED_STREAM) => ("remote refused stream reset", FailKind::RefusedStream),
        _ if e.is_go_away() => ("remote refused stream reset", FailKind::RefusedStream),
        _ => ("connection termination", FailKind::Reset),
    }
}

/// A buffered body: nothing more to read beyond what is in the buffer.
struct Buffered;

impl Source for Buffered {
    async fn fill(&mut self, _: &mut ReadBuf, _: usize, _: Patience) -> io::Result<usize> {
        Ok(0)
    }
}

/// An HTTP/2 response, read as the shared response path reads an
/// HTTP/1.1 one: first its head block, then its framed body.
enum H2Response {
    /// Waiting for the response head.
    Head(ResponseFuture),
    /// The head arrived (while the request body was still going up).
    Answered(Option<Result<http::Response<RecvStream>, h2::Error>>),
    Body(H2Body),
}

impl H2Response {
    /// Resolves once the response head is in (and keeps it).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let H2Response::Head(response) = self else {
            return Poll::Ready(());
        };
        match Pin::new(response).poll(cx) {
            Poll::Ready(answered) => {
                *self = H2Response::Answered(Some(answered));
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Source for H2Response {
    async fn fill(
        &mut self,
        rbuf: &mut ReadBuf,
        limit: usize,
        patience: Patience,
    ) -> io::Result<usize> {
        let answered = match self {
            H2Response::Body(body) => return body.fill(rbuf, limit, patience).await,
            H2Response::Answered(answered) => answered
                .take()
                .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionReset))?,
            H2Response::Head(response) => match patience.wait() {
                None => response.await,
                Some(wait) => monoio::time::timeout(wait, response)
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?,
            },
        };
        let (parts, recv) = answered
            .map_err(|e| {
                // A refused stream is told apart: it may be retried.
                let kind = match e.reason() {
                    Some(Reason::REFUSED_STREAM) => io::ErrorKind::ConnectionRefused,
                    _ => io::ErrorKind::ConnectionReset,
                };
                io::Error::new(kind, e)
            })?
            .into_parts();
        let length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
        let ended = recv.is_end_stream();
        let mut block = response_head(&parts, !ended && !length);
        if ended && !length {
            // Nothing follows the head: say so, rather than leave the body
            // to run until a close that never comes.
            block.truncate(block.len() - 2);
            block.extend_from_slice(b"content-length: 0\r\n\r\n");
        }
        rbuf.append(&block);
        *self = H2Response::Body(H2Body::new(recv, !ended && !length));
        Ok(block.len())
    }

    fn trailers(&self) -> Option<&http::HeaderMap> {
        match self {
            H2Response::Body(body) => body.trailers(),
            H2Response::Head(_) | H2Response::Answered(_) => None,
        }
    }

    fn may_have_trailers(&self) -> bool {
        true
    }
}
