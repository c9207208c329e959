//! HTTP/2 as the shared path sees it (on h2 0.4): heads translated to
//! and from the HTTP/1.1 head blocks the request analysis and response
//! shaping read and write, a stream's DATA presented as the framing its
//! head block announced, DATA written within flow control, and
//! connection keepalive. Both the downstream codec (http::conn::h2) and
//! the upstream pools use it.

use super::body::{Sink, Source};
use super::codec::{encode_chunk, is_hop_by_hop, push_header, Patience, ReadBuf, LAST_CHUNK};
use bytes::Bytes;
use h2::{RecvStream, SendStream};
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

/// Resolves when a `connection_keepalive` PING goes unanswered for its
/// timeout; never without keepalive.
pub(crate) async fn keepalive(
    ping: Option<h2::PingPong>,
    options: Option<crate::config::Keepalive>,
) {
    let (Some(mut ping), Some(options)) = (ping, options) else {
        return std::future::pending().await;
    };
    loop {
        monoio::time::sleep(options.interval).await;
        if ping.send_ping(h2::Ping::opaque()).is_err() {
            return std::future::pending().await;
        }
        let pong = poll_fn(|cx| ping.poll_pong(cx));
        match monoio::time::timeout(options.timeout, pong).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// The HTTP/1.1 head block the request analysis reads, for an HTTP/2
/// request: `:authority` becomes `host`, split `cookie` headers are
/// joined with `; ` (RFC 9113 §8.2.3), an extended CONNECT becomes the
/// upgrade it names, and a body without a length is announced as chunked
/// (and presented so by [`H2Body`]).
pub(crate) fn request_head(parts: &http::request::Parts, chunked: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    // An extended CONNECT (RFC 8441) is the HTTP/1.1 upgrade its
    // `:protocol` names, as Envoy turns it into one.
    let upgrade = parts.extensions.get::<h2::ext::Protocol>();
    let method = match upgrade {
        Some(_) => "GET",
        None => parts.method.as_str(),
    };
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    let authority = parts.uri.authority().map(|a| a.as_str());
    let target = match (&parts.method, authority) {
        (&http::Method::CONNECT, Some(a)) if upgrade.is_none() => a,
        _ => parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(a) = authority {
        push_header(&mut head, "host", a.as_bytes());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
        } else if !(authority.is_some() && name == http::header::HOST) {
            push_header(&mut head, name.as_str(), value.as_bytes());
        }
    }
    if !cookies.is_empty() {
        push_header(&mut head, "cookie", &cookies.join(&b"; "[..]));
    }
    if let Some(protocol) = upgrade {
        push_header(&mut head, "upgrade", protocol.as_str().as_bytes());
        push_header(&mut head, "connection", b"upgrade");
    }
    if chunked {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// An HTTP/1.1 response head block (as the shared path shapes it) as an
/// HTTP/2 response, without the hop-by-hop headers HTTP/2 forbids; with
/// the block's length.
pub(crate) fn response_from_head(block: &[u8]) -> Option<(http::Response<()>, usize)> {
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut storage);
    let Ok(httparse::Status::Complete(len)) = parsed.parse(block) else {
        return None;
    };
    let mut response = http::Response::builder().status(parsed.code?);
    let headers = response.headers_mut()?;
    for h in parsed.headers.iter() {
        // The length stays: it describes the DATA frames that follow.
        if is_hop_by_hop(h.name) && !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some((response.body(()).ok()?, len))
}

/// An HTTP/1.1 request head block (as the analysis shaped it for the
/// upstream) as an HTTP/2 request: `host` becomes `:authority`, and the
/// hop-by-hop headers HTTP/2 forbids go (the length stays).
pub(crate) fn request_from_head(block: &[u8]) -> Option<http::Request<()>> {
    let mut storage = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Request::new(&mut storage);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(block) else {
        return None;
    };
    let host = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map_or(&b""[..], |h| h.value);
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(host)
        .path_and_query(parsed.path?)
        .build()
        .ok()?;
    let mut request = http::Request::builder()
        .method(parsed.method?)
        .uri(uri)
        .version(http::Version::HTTP_2);
    let headers = request.headers_mut()?;
    for h in parsed.headers.iter() {
        let te_trailers =
            h.name.eq_ignore_ascii_case("te") && h.value.eq_ignore_ascii_case(b"trailers");
        let keep = !h.name.eq_ignore_ascii_case("host")
            && (!is_hop_by_hop(h.name) || h.name.eq_ignore_ascii_case("content-length"))
            || te_trailers;
        if !keep {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            headers.append(name, value);
        }
    }
    request.body(()).ok()
}

/// The HTTP/1.1 head block the response shaping reads, for an HTTP/2
/// response: a body without a length is announced as chunked (and
/// presented so by [`H2Body`]).
pub(crate) fn response_head(parts: &http::response::Parts, chunked: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let status = parts.status;
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        push_header(&mut head, name.as_str(), value.as_bytes());
    }
    if chunked {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Waits for send capacity on `stream` for up to `want` bytes: the
/// capacity granted, or None when the stream is gone.
pub(crate) fn poll_capacity(
    stream: &mut SendStream<Bytes>,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<Option<usize>> {
    stream.reserve_capacity(want);
    match stream.capacity() {
        0 => match stream.poll_capacity(cx) {
            Poll::Ready(Some(Ok(n))) => Poll::Ready(Some(n)),
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        },
        n => Poll::Ready(Some(n)),
    }
}

/// Writes a request body as DATA frames on an upstream stream.
pub(crate) struct DataSink<'a>(pub(crate) &'a mut SendStream<Bytes>);

impl Sink for DataSink<'_> {
    async fn write(&mut self, out: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = out.len();
        let mut data = Bytes::from(out);
        while !data.is_empty() {
            let Some(n) = poll_fn(|cx| poll_capacity(self.0, data.len(), cx)).await else {
                return (Err(io::ErrorKind::BrokenPipe.into()), Vec::new());
            };
            let n = n.min(data.len());
            if n > 0 && self.0.send_data(data.split_to(n), false).is_err() {
                return (Err(io::ErrorKind::BrokenPipe.into()), Vec::new());
            }
        }
        (Ok(len), Vec::new())
    }
}

/// A stream's body (a request's or a response's), presented as the
/// framing its head block announced: as it is under a `content-length`,
/// else as chunks.
pub(crate) struct H2Body {
    /// None once the body has been taken away to be read elsewhere.
    recv: Option<RecvStream>,
    chunked: bool,
    ended: bool,
    trailers: Option<http::HeaderMap>,
}

impl H2Body {
    /// The body of a stream whose head announced `chunked` framing (else
    /// a length, or none).
    pub(crate) fn new(recv: RecvStream, chunked: bool) -> Self {
        H2Body {
            recv: Some(recv),
            chunked,
            ended: false,
            trailers: None,
        }
    }

    /// Takes the body away (to be read by someone else), leaving an ended
    /// one in its place.
    pub(crate) fn take(&mut self) -> H2Body {
        std::mem::replace(
            self,
            H2Body {
                recv: None,
                chunked: false,
                ended: true,
                trailers: None,
            },
        )
    }
}

impl Source for H2Body {
    fn trailers(&self) -> Option<&http::HeaderMap> {
        self.trailers.as_ref()
    }

    fn may_have_trailers(&self) -> bool {
        true
    }

    async fn fill(
        &mut self,
        rbuf: &mut ReadBuf,
        _limit: usize,
        patience: Patience,
    ) -> io::Result<usize> {
        let (false, Some(recv)) = (self.ended, self.recv.as_mut()) else {
            return Ok(0);
        };
        loop {
            let next = match patience.wait() {
                None => recv.data().await,
                Some(wait) => monoio::time::timeout(wait, recv.data())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?,
            };
            match next {
                Some(Ok(data)) if data.is_empty() => {}
                Some(Ok(data)) => {
                    // The window reopens as the bytes move on: what a stream
                    // holds is bounded by what the path buffers.
                    let _ = recv.flow_control().release_capacity(data.len());
                    if self.chunked {
                        let mut chunk = Vec::with_capacity(data.len() + 16);
                        encode_chunk(&mut chunk, &data);
                        rbuf.append(&chunk);
                    } else {
                        rbuf.append(&data);
                    }
                    return Ok(data.len());
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => {
                    self.ended = true;
                    self.trailers = recv.trailers().await.ok().flatten();
                    if self.chunked {
                        rbuf.append(LAST_CHUNK);
                        return Ok(LAST_CHUNK.len());
                    }
                    return Ok(0);
                }
            }
        }
    }
}
