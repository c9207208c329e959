//! Streaming a message body from one socket to another with bounded memory,
//! re-framing it on the way (Envoy re-frames rather than forwarding framing).

use super::codec::{
    encode_chunk, ChunkedDecoder, Framing, Patience, ReadBuf, LAST_CHUNK, READ_CHUNK,
};
use crate::net::Stream;
use monoio::io::AsyncWriteRentExt;
use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

/// Output is flushed once this much is pending.
const FLUSH_AT: usize = 64 * 1024;

/// Why a body transfer stopped early.
#[derive(Debug)]
pub enum PumpError {
    /// The source closed or failed before the body ended.
    Source,
    /// The source sent nothing for longer than its patience allowed.
    SourceTimeout,
    /// The source's chunked framing was malformed.
    Malformed,
    /// Writing to the destination failed after this many bytes were written.
    Destination(u64),
}

/// What a completed transfer moved.
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    /// Body bytes (before re-framing).
    pub body: u64,
    /// Bytes written to the destination (head, framing and body).
    pub written: u64,
}

/// How the destination receives the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    /// Bytes as they are (the destination was told a Content-Length, or
    /// reads until close).
    Raw,
    /// Re-encoded as chunks, ended with the last chunk.
    Chunked,
}

/// Where a body's bytes come from: a socket, or a codec's stream that
/// presents its body as the framing its head announced.
pub(crate) trait Source {
    /// Reads more into `rbuf` (up to `limit` unread bytes), giving up with
    /// `ErrorKind::TimedOut` once `patience` runs out; 0 at the end.
    async fn fill(
        &mut self,
        rbuf: &mut ReadBuf,
        limit: usize,
        patience: Patience,
    ) -> io::Result<usize>;

    /// The trailers that ended the body, once it has ended with some
    /// (HTTP/2; an HTTP/1.1 source's chunked trailers are not kept).
    fn trailers(&self) -> Option<&http::HeaderMap> {
        None
    }

    /// Whether trailers may follow the body's last bytes.
    fn may_have_trailers(&self) -> bool {
        false
    }
}

impl Source for Stream {
    async fn fill(
        &mut self,
        rbuf: &mut ReadBuf,
        limit: usize,
        patience: Patience,
    ) -> io::Result<usize> {
        rbuf.fill_within(self, limit, patience).await
    }
}

/// Where a body's bytes go.
pub(crate) trait Sink {
    /// Writes all of `out`, handing the buffer back for reuse.
    async fn write(&mut self, out: Vec<u8>) -> (io::Result<usize>, Vec<u8>);

    /// Writes all of `head` (possibly empty), then `body[start..]`, handing
    /// both buffers back.
    async fn write_parts(
        &mut self,
        mut head: Vec<u8>,
        body: Vec<u8>,
        start: usize,
    ) -> (io::Result<usize>, Vec<u8>, Vec<u8>) {
        if head.is_empty() && start == 0 {
            let (res, body) = self.write(body).await;
            return (res, head, body);
        }
        head.extend_from_slice(&body[start..]);
        let (res, head) = self.write(head).await;
        (res, head, body)
    }
}

impl Sink for Stream {
    async fn write(&mut self, out: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.write_all(out).await
    }

    async fn write_parts(
        &mut self,
        head: Vec<u8>,
        body: Vec<u8>,
        start: usize,
    ) -> (io::Result<usize>, Vec<u8>, Vec<u8>) {
        self.write_head_and_body(head, body, start).await
    }
}

/// Sends `out` (a head, possibly empty) followed by the body read from
/// `src` per `framing`, written to `dst` per `out_framing`. Bytes already in
/// `rbuf` are used first; bytes past the body's end stay there.
/// Returns the number of body bytes moved and of bytes written to `dst`.
pub(crate) async fn pump<S: Source, D: Sink>(
    src: &mut S,
    rbuf: &mut ReadBuf,
    framing: Framing,
    dst: &mut D,
    mut out: Vec<u8>,
    out_framing: OutFraming,
    patience: Patience,
) -> Result<Moved, PumpError> {
    if out_framing == OutFraming::Raw {
        match framing {
            Framing::Length(n) => return pump_raw(src, rbuf, Some(n), dst, out, patience).await,
            Framing::UntilClose => return pump_raw(src, rbuf, None, dst, out, patience).await,
            Framing::Empty | Framing::Chunked => {}
        }
    }
    let mut moved = 0u64;
    let mut written = 0u64;
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut decoder = ChunkedDecoder::default();
    loop {
        // Move what is buffered into `out`.
        let done = match framing {
            Framing::Empty => true,
            Framing::Length(_) => {
                let n = (rbuf.data().len() as u64).min(remaining) as usize;
                emit(&mut out, &rbuf.data()[..n], out_framing);
                rbuf.consume(n);
                remaining -= n as u64;
                moved += n as u64;
                remaining == 0
            }
            Framing::UntilClose => {
                let n = rbuf.data().len();
                emit(&mut out, rbuf.data(), out_framing);
                rbuf.consume(n);
                moved += n as u64;
                false
            }
            Framing::Chunked => {
                while !decoder.is_done() && !rbuf.is_empty() && out.len() < FLUSH_AT {
                    let step = decoder
                        .step(rbuf.data())
                        .map_err(|_| PumpError::Malformed)?;
                    if let Some((start, len)) = step.data {
                        emit(&mut out, &rbuf.data()[start..start + len], out_framing);
                        moved += len as u64;
                    }
                    rbuf.consume(step.consumed);
                }
                decoder.is_done()
            }
        };
        if done && out_framing == OutFraming::Chunked && framing != Framing::Empty {
            out.extend_from_slice(LAST_CHUNK);
        }
        if !out.is_empty() && (done || out.len() >= FLUSH_AT || rbuf.is_empty()) {
            let (res, buf) = dst.write(out).await;
            written += res.map_err(|_| PumpError::Destination(written))? as u64;
            out = buf;
            out.clear();
        }
        if done {
            return Ok(Moved {
                body: moved,
                written,
            });
        }
        if rbuf.is_empty() && !refill(src, rbuf, patience).await? {
            if framing != Framing::UntilClose {
                return Err(PumpError::Source);
            }
            if out_framing == OutFraming::Chunked {
                let (res, _) = dst.write(LAST_CHUNK.to_vec()).await;
                written += res.map_err(|_| PumpError::Destination(written))? as u64;
            }
            return Ok(Moved {
                body: moved,
                written,
            });
        }
    }
}

/// Reads more of a body into `rbuf`: true with new bytes, false at the
/// source's end.
async fn refill<S: Source>(
    src: &mut S,
    rbuf: &mut ReadBuf,
    patience: Patience,
) -> Result<bool, PumpError> {
    match src.fill(rbuf, READ_CHUNK, patience).await {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(PumpError::SourceTimeout),
        Err(_) => Err(PumpError::Source),
    }
}

/// Body bytes from which [`pump_raw`] hands its read buffer over rather than
/// copying: below it one `send` of head and body beats a `writev` of two.
const HAND_OVER_FROM: usize = 2048;

/// [`pump`] for a body that leaves as it came (`length` bytes, or until the
/// source closes): the read buffer itself is written, behind the head on
/// the first write, and a second buffer takes its place for the next read,
/// so body bytes are never copied in user space.
async fn pump_raw<S: Source, D: Sink>(
    src: &mut S,
    rbuf: &mut ReadBuf,
    length: Option<u64>,
    dst: &mut D,
    mut head: Vec<u8>,
    patience: Patience,
) -> Result<Moved, PumpError> {
    let mut remaining = length.unwrap_or(u64::MAX);
    let mut moved = 0u64;
    let mut written = 0u64;
    let mut spare = Vec::new();
    loop {
        let n = (rbuf.data().len() as u64).min(remaining) as usize;
        if n > 0 || !head.is_empty() {
            let res = if n >= HAND_OVER_FROM && n == rbuf.data().len() {
                let (body, start) = rbuf.swap_out(spare);
                let (res, h, body) = dst.write_parts(head, body, start).await;
                head = h;
                spare = body;
                res
            } else {
                // Small, or bytes past the body's end stay buffered: copy.
                head.extend_from_slice(&rbuf.data()[..n]);
                rbuf.consume(n);
                let (res, h) = dst.write(head).await;
                head = h;
                res
            };
            written += res.map_err(|_| PumpError::Destination(written))? as u64;
            head.clear();
            moved += n as u64;
            remaining -= n as u64;
        }
        if remaining == 0 {
            return Ok(Moved {
                body: moved,
                written,
            });
        }
        if !refill(src, rbuf, patience).await? {
            if length.is_some() {
                return Err(PumpError::Source);
            }
            return Ok(Moved {
                body: moved,
                written,
            });
        }
    }
}

fn emit(out: &mut Vec<u8>, data: &[u8], framing: OutFraming) {
    match framing {
        OutFraming::Raw => out.extend_from_slice(data),
        OutFraming::Chunked => encode_chunk(out, data),
    }
}

/// Size of each direction's read buffer in a byte relay.
const RELAY_CHUNK: usize = 16 * 1024;

/// How a byte relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relayed {
    /// The source reached its end.
    SourceEnded,
    /// Reading the source failed.
    SourceFailed,
    /// Writing the destination failed.
    DestinationFailed,
}

impl Relayed {
    /// Whether the source side stopped it (ended or failed).
    pub(crate) fn by_source(self) -> bool {
        self != Relayed::DestinationFailed
    }
}

/// Copies from `src` to `dst` until one ends or fails, counting into
/// `moved` and noting activity in `last` (tunnels and the TCP proxy).
pub(crate) async fn relay<R: Source, W: Sink>(
    src: &mut R,
    dst: &mut W,
    moved: &Cell<u64>,
    last: &Cell<Instant>,
) -> Relayed {
    let mut rbuf = ReadBuf::default();
    loop {
        match src.fill(&mut rbuf, RELAY_CHUNK, Patience::default()).await {
            Ok(0) => return Relayed::SourceEnded,
            Ok(_) => {}
            Err(_) => return Relayed::SourceFailed,
        }
        last.set(Instant::now());
        let data = rbuf.data().to_vec();
        rbuf.clear();
        let n = data.len() as u64;
        if dst.write(data).await.0.is_err() {
            return Relayed::DestinationFailed;
        }
        moved.set(moved.get() + n);
        last.set(Instant::now());
    }
}

/// Resolves once nothing has moved for `idle` since `last` (never without
/// a limit).
pub(crate) async fn quiet_for(last: &Cell<Instant>, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let due = last.get() + idle;
        let now = Instant::now();
        if now >= due {
            return;
        }
        monoio::time::sleep(due - now).await;
    }
}
