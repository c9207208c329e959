//! The HTTP/1.1 connection manager: one task per downstream connection,
//! requests answered in order (pipelining falls out of the loop), upstream
//! connections taken from and returned to the shard's pool.

use super::body::{pump, OutFraming, PumpError};
use super::codec::{Framing, ReadBuf, READ_CHUNK};
use super::head::{self, ParsedRequest, ParsedResponse, Plan, Request, MAX_RESPONSE_HEAD};
use super::local_reply::LocalReply;
use crate::router::Forward;
use crate::server::shard::{Shard, View};
use crate::snapshot::HttpSettings;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What happens to the downstream connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// The buffers one downstream connection reuses across requests.
struct Conn {
    down: TcpStream,
    rbuf: ReadBuf,
    ubuf: ReadBuf,
    local_port: u16,
}

/// Serves one downstream connection until it closes or the shard drains.
pub async fn serve(down: TcpStream, shard: Rc<Shard>, listener: usize) {
    let _ = down.set_nodelay(true);
    let local_port = down.local_addr().map_or(0, |a| a.port());
    let mut conn = Conn {
        down,
        rbuf: ReadBuf::default(),
        ubuf: ReadBuf::default(),
        local_port,
    };
    loop {
        if conn.rbuf.is_empty() {
            // Read straight away (one ring op). If the drain wins, the read is
            // abandoned, which is fine: the connection closes either way.
            let read = monoio::select! {
                r = conn.rbuf.fill(&mut conn.down, READ_CHUNK) => r,
                _ = shard.drain.wait() => return,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        }
        let view = shard.view();
        let Some(listener) = view.snapshot.listeners.get(listener) else {
            return;
        };
        if conn.exchange(&shard, &view, &listener.http).await == Next::Close {
            return;
        }
    }
}

/// Why a forwarded request failed.
enum Failure {
    /// Before response headers: answer 503 with this reset reason.
    BeforeHeaders(&'static str),
    /// The upstream's response was not valid HTTP/1.1.
    Protocol,
    /// The downstream went away, or the response broke after its headers.
    Broken,
}

impl Conn {
    /// Reads one request and answers it.
    async fn exchange(&mut self, shard: &Shard, view: &View, http: &HttpSettings) -> Next {
        let (req, plan) = loop {
            match head::parse_request(self.rbuf.data(), http, self.local_port, shard) {
                ParsedRequest::Request(req, plan) => break (req, plan),
                ParsedRequest::Reject(reply) => {
                    self.write_reply(&reply, http, shard, false, true).await;
                    return Next::Close;
                }
                ParsedRequest::Partial => {
                    let limit = http.max_request_headers_bytes + READ_CHUNK;
                    match self.rbuf.fill(&mut self.down, limit).await {
                        Ok(n) if n > 0 => {}
                        _ => return Next::Close,
                    }
                }
            }
        };
        self.rbuf.consume(req.head_len);
        self.rbuf.shrink();
        let close = !req.keep_alive || shard.drain.is_draining();
        match plan {
            Plan::Local(reply) => self.reply(&req, &reply, http, shard, close).await,
            Plan::Forward { route, head } => {
                self.forward(&req, route, head, shard, view, http, close)
                    .await
            }
        }
    }

    /// Writes a local reply; the connection stays open only if the request
    /// body (if any) is already buffered and can be skipped.
    async fn reply(
        &mut self,
        req: &Request,
        reply: &LocalReply<'_>,
        http: &HttpSettings,
        shard: &Shard,
        close: bool,
    ) -> Next {
        let skippable = match req.framing {
            Framing::Empty => true,
            Framing::Length(n) if (self.rbuf.data().len() as u64) >= n => {
                self.rbuf.consume(n as usize);
                true
            }
            _ => false,
        };
        let close = close || reply.close || !skippable || shard.drain.is_draining();
        if self
            .write_reply(reply, http, shard, req.is_head, close)
            .await
            && !close
        {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    async fn write_reply(
        &mut self,
        reply: &LocalReply<'_>,
        http: &HttpSettings,
        shard: &Shard,
        head_only: bool,
        close: bool,
    ) -> bool {
        let bytes = shard
            .date
            .with(|date| reply.encode(http, date, head_only, close));
        let (res, _) = self.down.write_all(bytes).await;
        res.is_ok()
    }

    /// Forwards a request to an endpoint of the route's cluster.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &mut self,
        req: &Request,
        route: &Forward,
        mut head: Vec<u8>,
        shard: &Shard,
        view: &View,
        http: &HttpSettings,
        close: bool,
    ) -> Next {
        let Some(cluster) = view.snapshot.clusters.get(route.cluster) else {
            return self
                .reply(
                    req,
                    &LocalReply::new(503, "no healthy upstream"),
                    http,
                    shard,
                    close,
                )
                .await;
        };
        let Some(endpoint) = view.pick(route.cluster) else {
            return self
                .reply(
                    req,
                    &LocalReply::new(503, "no healthy upstream"),
                    http,
                    shard,
                    close,
                )
                .await;
        };
        let addr = endpoint.addr;
        let started = Instant::now();
        let mut fresh_only = false;
        let mut sent_continue = false;
        loop {
            let pooled = if fresh_only {
                None
            } else {
                shard.pool.take(addr, started)
            };
            let reused = pooled.is_some();
            let mut up = match pooled {
                Some(up) => up,
                None => match connect(addr, cluster.connect_timeout()).await {
                    Ok(up) => up,
                    Err(reason) => {
                        let reply = LocalReply::upstream_reset(reason);
                        return self.reply(req, &reply, http, shard, close).await;
                    }
                },
            };
            if req.expect_continue && req.framing != Framing::Empty && !sent_continue {
                sent_continue = true;
                let (res, _) = self
                    .down
                    .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
                    .await;
                if res.is_err() {
                    return Next::Close;
                }
            }
            // Send the head and body. A bodiless request on a pooled
            // connection that turns out dead is retried once on a new one.
            let retryable = reused && req.framing == Framing::Empty;
            if req.framing == Framing::Empty {
                let (res, buf) = up.write_all(head).await;
                head = buf;
                if res.is_err() {
                    if retryable {
                        fresh_only = true;
                        continue;
                    }
                    let reply = LocalReply::upstream_reset("connection termination");
                    return self.reply(req, &reply, http, shard, close).await;
                }
            } else {
                let out_framing = match req.framing {
                    Framing::Chunked => OutFraming::Chunked,
                    _ => OutFraming::Raw,
                };
                let sent = pump(
                    &mut self.down,
                    &mut self.rbuf,
                    req.framing,
                    &mut up,
                    std::mem::take(&mut head),
                    out_framing,
                )
                .await;
                match sent {
                    Ok(_) => {}
                    Err(PumpError::Destination) => {
                        let reply = LocalReply::upstream_reset("connection termination");
                        return self.reply(req, &reply, http, shard, true).await;
                    }
                    Err(PumpError::Malformed) => {
                        let reply = LocalReply::closing(400, "Bad Request");
                        return self.reply(req, &reply, http, shard, true).await;
                    }
                    Err(PumpError::Source) => return Next::Close,
                }
            }
            // Receive the response within the route timeout.
            let headers_sent = Cell::new(false);
            self.ubuf.clear();
            let receive = self.receive(&mut up, req, http, started, close, shard, &headers_sent);
            let result = match route.timeout {
                Some(t) => monoio::time::timeout(t, receive).await.ok(),
                None => Some(receive.await),
            };
            return match result {
                Some(Ok(reusable)) => {
                    if reusable {
                        shard.pool.put(addr, up);
                    }
                    if close || shard.drain.is_draining() {
                        Next::Close
                    } else {
                        Next::KeepAlive
                    }
                }
                Some(Err(Failure::BeforeHeaders(_))) if retryable && self.ubuf.is_empty() => {
                    fresh_only = true;
                    continue;
                }
                Some(Err(Failure::BeforeHeaders(reason))) => {
                    let reply = LocalReply::upstream_reset(reason);
                    self.reply(req, &reply, http, shard, close).await
                }
                Some(Err(Failure::Protocol)) if !headers_sent.get() => {
                    let reply = LocalReply::new(
                        502,
                        "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
                    );
                    self.reply(req, &reply, http, shard, close).await
                }
                None if !headers_sent.get() => {
                    let reply = LocalReply::new(504, "upstream request timeout");
                    self.reply(req, &reply, http, shard, close).await
                }
                Some(Err(_)) | None => Next::Close,
            };
        }
    }

    /// Reads the upstream response and streams it downstream. Returns
    /// whether the upstream connection can go back to the pool.
    #[allow(clippy::too_many_arguments)]
    async fn receive(
        &mut self,
        up: &mut TcpStream,
        req: &Request,
        http: &HttpSettings,
        started: Instant,
        close: bool,
        shard: &Shard,
        headers_sent: &Cell<bool>,
    ) -> Result<bool, Failure> {
        loop {
            let mut out = Vec::new();
            let elapsed = started.elapsed().as_millis();
            // A drain that began while waiting still closes this connection.
            let close = close || shard.drain.is_draining();
            match head::parse_response(
                self.ubuf.data(),
                req.is_head,
                http,
                elapsed,
                close,
                &mut out,
            ) {
                ParsedResponse::Partial => {
                    match self.ubuf.fill(up, MAX_RESPONSE_HEAD + READ_CHUNK).await {
                        Ok(n) if n > 0 => {}
                        _ => return Err(Failure::BeforeHeaders("connection termination")),
                    }
                }
                ParsedResponse::Interim(n) => self.ubuf.consume(n),
                ParsedResponse::Invalid => return Err(Failure::Protocol),
                ParsedResponse::Final(resp) => {
                    self.ubuf.consume(resp.head_len);
                    let out_framing = match resp.framing {
                        Framing::Chunked | Framing::UntilClose => OutFraming::Chunked,
                        _ => OutFraming::Raw,
                    };
                    headers_sent.set(true);
                    return match pump(
                        up,
                        &mut self.ubuf,
                        resp.framing,
                        &mut self.down,
                        out,
                        out_framing,
                    )
                    .await
                    {
                        Ok(_) => Ok(resp.reusable && self.ubuf.is_empty()),
                        Err(_) => Err(Failure::Broken),
                    };
                }
            }
        }
    }
}

/// Opens a new upstream connection within `timeout`.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, &'static str> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(_)) => Err("connection failure"),
        Err(_) => Err("connection timeout"),
    }
}
