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

/// What every step of answering one request needs.
struct Exchange<'a> {
    shard: &'a Shard,
    http: &'a HttpSettings,
    req: Request,
    /// The client asked to close, or the shard was draining when it arrived.
    close: bool,
}

impl Exchange<'_> {
    /// Whether the connection closes after this response: asked for, or a
    /// drain began meanwhile.
    fn closing(&self) -> bool {
        self.close || self.shard.drain.is_draining()
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

impl Conn {
    /// Reads one request and answers it.
    async fn exchange(&mut self, shard: &Shard, view: &View, http: &HttpSettings) -> Next {
        let (req, plan) = loop {
            match head::parse_request(self.rbuf.data(), http, self.local_port, shard) {
                ParsedRequest::Request(req, plan) => break (req, plan),
                ParsedRequest::Reject(reply) => {
                    self.write_reply(shard, http, &reply, false, true).await;
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
        let x = Exchange {
            shard,
            http,
            close: !req.keep_alive || shard.drain.is_draining(),
            req,
        };
        match plan {
            Plan::Local(reply) => self.reply(&x, &reply).await,
            Plan::Forward { route, head } => self.forward(&x, view, route, head).await,
        }
    }

    /// Writes a local reply; the connection stays open only if the request
    /// body (if any) is already buffered and can be skipped.
    async fn reply(&mut self, x: &Exchange<'_>, reply: &LocalReply<'_>) -> Next {
        let skippable = match x.req.framing {
            Framing::Empty => true,
            Framing::Length(n) if (self.rbuf.data().len() as u64) >= n => {
                self.rbuf.consume(n as usize);
                true
            }
            _ => false,
        };
        let close = x.closing() || reply.close || !skippable;
        let written = self
            .write_reply(x.shard, x.http, reply, x.req.is_head, close)
            .await;
        if written && !close {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Encodes and writes a local reply; false when the client is gone.
    async fn write_reply(
        &mut self,
        shard: &Shard,
        http: &HttpSettings,
        reply: &LocalReply<'_>,
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
    async fn forward(
        &mut self,
        x: &Exchange<'_>,
        view: &View,
        route: &Forward,
        mut head: Vec<u8>,
    ) -> Next {
        let cluster = view.snapshot.clusters.get(route.cluster);
        let (Some(cluster), Some(endpoint)) = (cluster, view.pick(route.cluster)) else {
            return self
                .reply(x, &LocalReply::new(503, "no healthy upstream"))
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
                x.shard.pool.take(addr, started)
            };
            // A bodiless request that meets a dead pooled connection before
            // any response byte is retried once on a new connection.
            let retryable = pooled.is_some() && x.req.framing == Framing::Empty;
            let mut up = match pooled {
                Some(up) => up,
                None => match connect(addr, cluster.connect_timeout()).await {
                    Ok(up) => up,
                    Err(reason) => return self.reply(x, &LocalReply::upstream_reset(reason)).await,
                },
            };
            if x.req.expect_continue && x.req.framing != Framing::Empty && !sent_continue {
                sent_continue = true;
                let continue_line = &b"HTTP/1.1 100 Continue\r\n\r\n"[..];
                if self.down.write_all(continue_line).await.0.is_err() {
                    return Next::Close;
                }
            }
            if x.req.framing == Framing::Empty {
                let (res, buf) = up.write_all(head).await;
                head = buf;
                if res.is_err() {
                    if retryable {
                        fresh_only = true;
                        continue;
                    }
                    let reply = LocalReply::upstream_reset("connection termination");
                    return self.reply(x, &reply).await;
                }
            } else {
                let out_framing = match x.req.framing {
                    Framing::Chunked => OutFraming::Chunked,
                    _ => OutFraming::Raw,
                };
                let body = std::mem::take(&mut head);
                let sent = pump(
                    &mut self.down,
                    &mut self.rbuf,
                    x.req.framing,
                    &mut up,
                    body,
                    out_framing,
                )
                .await;
                // The request body is not fully read after a failure: close.
                let failed = match sent {
                    Ok(_) => None,
                    Err(PumpError::Destination) => {
                        Some(LocalReply::upstream_reset("connection termination"))
                    }
                    Err(PumpError::Malformed) => Some(LocalReply::closing(400, "Bad Request")),
                    Err(PumpError::Source) => return Next::Close,
                };
                if let Some(mut reply) = failed {
                    reply.close = true;
                    return self.reply(x, &reply).await;
                }
            }
            // The route timeout runs from the end of the request to the end
            // of the response, as Envoy's does.
            let headers_sent = Cell::new(false);
            self.ubuf.clear();
            let receive = self.receive(x, &mut up, started, &headers_sent);
            let result = match route.timeout {
                Some(t) => monoio::time::timeout(t, receive).await.ok(),
                None => Some(receive.await),
            };
            let reply = match result {
                Some(Ok(reusable)) => {
                    if reusable {
                        x.shard.pool.put(addr, up);
                    }
                    return if x.closing() {
                        Next::Close
                    } else {
                        Next::KeepAlive
                    };
                }
                Some(Err(Failure::BeforeHeaders(_))) if retryable && self.ubuf.is_empty() => {
                    fresh_only = true;
                    continue;
                }
                Some(Err(Failure::BeforeHeaders(reason))) => LocalReply::upstream_reset(reason),
                Some(Err(Failure::Protocol)) => LocalReply::new(
                    502,
                    "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
                ),
                None if !headers_sent.get() => LocalReply::new(504, "upstream request timeout"),
                // Past the response headers the only signal left is closing.
                Some(Err(Failure::Broken)) | None => return Next::Close,
            };
            return self.reply(x, &reply).await;
        }
    }

    /// Reads the upstream response and streams it downstream. Returns
    /// whether the upstream connection can go back to the pool.
    async fn receive(
        &mut self,
        x: &Exchange<'_>,
        up: &mut TcpStream,
        started: Instant,
        headers_sent: &Cell<bool>,
    ) -> Result<bool, Failure> {
        loop {
            let mut out = Vec::new();
            let elapsed = started.elapsed().as_millis();
            let parsed = head::parse_response(
                self.ubuf.data(),
                x.req.is_head,
                x.http,
                elapsed,
                x.closing(),
                &mut out,
            );
            match parsed {
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
                    let streamed = pump(
                        up,
                        &mut self.ubuf,
                        resp.framing,
                        &mut self.down,
                        out,
                        out_framing,
                    )
                    .await;
                    return match streamed {
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
