//! The downstream side of one exchange, as the protocol-neutral part of
//! the connection manager sees it: where the request body comes from,
//! where replies and the relayed response go, and whether the client is
//! still there. Each downstream codec implements it; the HTTP/1.1 one
//! writes heads as they are (the fast path), HTTP/2 translates them.
//!
//! Heads cross this seam as HTTP/1.1 head blocks: the request analysis
//! and the response shaping in [`crate::http::head`] read and write that
//! form once for every protocol, and a codec translates at its edge.

use crate::http::body::{pump, Moved, OutFraming, PumpError, Source};
use crate::http::codec::{Framing, Patience, ReadBuf};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::http::upgrade::{self, End, Tunneled};
use crate::net::{peek, peer_closed, Peeked, Stream};
use crate::server::shard::Shard;
use crate::snapshot::HttpSettings;
use monoio::io::AsyncWriteRentExt;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How long an attempt runs before Ringway starts watching for the client
/// leaving (a quick exchange costs only a timer).
const WATCH_AFTER: Duration = Duration::from_millis(500);

/// The downstream side of one exchange.
pub(super) trait Downstream {
    /// Where the request body is read from.
    type Body: Source;

    /// The response flag for a client that went away mid-exchange.
    const GONE: ResponseFlags;

    /// The request body's source and the bytes of it already buffered.
    fn request_body(&mut self) -> (&mut Self::Body, &mut ReadBuf);

    /// Takes the request body away, when this protocol reads it apart
    /// from writing the response (an HTTP/2 stream), so that it can
    /// stream upstream while the response streams back (gRPC's
    /// bidirectional calls); None for HTTP/1.1, whose body and response
    /// share the socket.
    fn detach_body(&mut self) -> Option<(Self::Body, ReadBuf)> {
        None
    }

    /// Sends a local reply; false when the client is gone.
    async fn send_reply(
        &mut self,
        shard: &Shard,
        http: &HttpSettings,
        reply: &LocalReply<'_>,
        head_only: bool,
        close: bool,
    ) -> bool;

    /// Sends `100 Continue`; false when the client is gone.
    async fn send_continue(&mut self) -> bool;

    /// Sends the response `head` (an HTTP/1.1 head block, shaped for the
    /// client) and then the body read from `up` as `framing` says, and
    /// the trailers that ended it where the protocol carries them
    /// (HTTP/1.1 drops them, as Envoy does by default).
    async fn relay<S: Source>(
        &mut self,
        head: Vec<u8>,
        up: &mut S,
        ubuf: &mut ReadBuf,
        framing: Framing,
        patience: Patience,
    ) -> Result<Moved, PumpError>;

    /// Sends a `101 Switching Protocols` head before a tunnel; false when
    /// the client is gone.
    async fn send_switch(&mut self, head: Vec<u8>) -> bool;

    /// Relays an upgraded exchange's bytes both ways with the upstream
    /// socket (`from_upstream`: bytes it sent after its `101`) until one
    /// side ends or nothing moves for `idle`.
    async fn tunnel(
        &mut self,
        up: &mut Stream,
        from_upstream: Vec<u8>,
        idle: Option<Duration>,
    ) -> Tunneled;

    /// Skips a request body that will not be forwarded; false when it
    /// cannot be skipped (not all buffered), so the connection must close.
    fn skip_body(&mut self, framing: Framing) -> bool;

    /// Resolves once the client has gone while an attempt runs (holding
    /// no borrow of the downstream, which the attempt keeps using).
    fn closed(&self) -> impl Future<Output = ()> + use<Self>;

    /// Whether the client has gone, checked without waiting.
    fn is_gone(&self) -> bool;

    /// Notes that the client went away (the close was its doing).
    fn lost(&mut self);
}

/// An HTTP/1.1 client connection: requests and responses are written and
/// read as bytes on the socket.
pub(super) struct H1Down {
    pub(super) stream: Stream,
    pub(super) rbuf: ReadBuf,
    /// Bytes written and not yet counted.
    pub(super) tx: u64,
    /// The client closed (rather than Ringway).
    pub(super) closed_by_peer: bool,
}

impl H1Down {
    /// Writes `bytes`, counting them; false when the client is gone.
    pub(super) async fn send<B: monoio::buf::IoBuf + 'static>(&mut self, bytes: B) -> bool {
        let (res, _) = self.stream.write_all(bytes).await;
        match res {
            Ok(n) => {
                self.tx += n as u64;
                true
            }
            Err(_) => false,
        }
    }
}

impl Downstream for H1Down {
    type Body = Stream;
    const GONE: ResponseFlags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;

    fn request_body(&mut self) -> (&mut Stream, &mut ReadBuf) {
        (&mut self.stream, &mut self.rbuf)
    }

    async fn send_reply(
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
        self.send(bytes).await
    }

    async fn send_continue(&mut self) -> bool {
        self.send(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await
    }

    async fn relay<S: Source>(
        &mut self,
        head: Vec<u8>,
        up: &mut S,
        ubuf: &mut ReadBuf,
        framing: Framing,
        patience: Patience,
    ) -> Result<Moved, PumpError> {
        // The head and the first body bytes leave in one write.
        let out_framing = match framing {
            Framing::Chunked | Framing::UntilClose => OutFraming::Chunked,
            _ => OutFraming::Raw,
        };
        let moved = pump(
            up,
            ubuf,
            framing,
            &mut self.stream,
            head,
            out_framing,
            patience,
        )
        .await;
        self.tx += match &moved {
            Ok(m) => m.written,
            Err(PumpError::Destination(written)) => *written,
            Err(_) => 0,
        };
        moved
    }

    async fn send_switch(&mut self, head: Vec<u8>) -> bool {
        self.send(head).await
    }

    async fn tunnel(
        &mut self,
        up: &mut Stream,
        from_upstream: Vec<u8>,
        idle: Option<Duration>,
    ) -> Tunneled {
        let from_client = self.rbuf.data().to_vec();
        self.rbuf.clear();
        // The client's socket is read through a second handle while the
        // first is written.
        let Some(mut reader) = self.stream.reader() else {
            return Tunneled {
                to_upstream: 0,
                to_downstream: 0,
                end: End::Downstream,
            };
        };
        let moved = upgrade::tunnel(
            &mut reader,
            &mut self.stream,
            up,
            from_client,
            from_upstream,
            idle,
        )
        .await;
        self.tx += moved.to_downstream;
        moved
    }

    fn skip_body(&mut self, framing: Framing) -> bool {
        match framing {
            Framing::Empty => true,
            Framing::Length(n) if (self.rbuf.data().len() as u64) >= n => {
                self.rbuf.consume(n as usize);
                true
            }
            _ => false,
        }
    }

    fn closed(&self) -> impl Future<Output = ()> + use<> {
        peer_closed(self.stream.as_raw_fd(), WATCH_AFTER)
    }

    fn is_gone(&self) -> bool {
        peek(&self.stream) == Peeked::Closed
    }

    fn lost(&mut self) {
        self.closed_by_peer = true;
    }
}
