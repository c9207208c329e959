//! HTTP/1.1 framing: the connection read buffer, body framing, a streaming
//! chunked decoder and the small header helpers the proxy needs.

use crate::net::Stream;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use std::io::Write;
use std::time::{Duration, Instant};

/// Size of a connection's read buffer when it is not holding a large head.
pub const READ_CHUNK: usize = 64 * 1024;

/// A connection's read buffer: `buf[start..]` is unread data. It holds no
/// memory until the first read, and gives it back on [`release`](Self::release)
/// so that an idle connection costs no buffer.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    received: u64,
    /// Most bytes one read takes.
    chunk: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            buf: Vec::new(),
            start: 0,
            received: 0,
            chunk: READ_CHUNK,
        }
    }
}

impl ReadBuf {
    /// A buffer whose unread bytes are `bytes`.
    pub fn holding(bytes: Vec<u8>) -> Self {
        ReadBuf {
            buf: bytes,
            ..ReadBuf::default()
        }
    }

    /// The unread bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Marks `n` bytes as read.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Gives up the buffer (its unread bytes start at the returned offset)
    /// and continues in `spare`'s memory, emptied: a body leaves in the
    /// buffer it was read into.
    pub fn swap_out(&mut self, mut spare: Vec<u8>) -> (Vec<u8>, usize) {
        spare.clear();
        let start = std::mem::replace(&mut self.start, 0);
        (std::mem::replace(&mut self.buf, spare), start)
    }

    /// Bounds each read to `limit` bytes (`per_connection_buffer_limit_bytes`);
    /// at most [`READ_CHUNK`], at least 1 KiB.
    pub fn set_chunk(&mut self, limit: usize) {
        self.chunk = limit.clamp(1024, READ_CHUNK);
    }

    /// Frees the buffer's memory when it holds no unread data.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Makes room for another read, growing the buffer up to `limit`
    /// bytes of unread data.
    fn make_room(&mut self, limit: usize) -> std::io::Result<()> {
        let chunk = self.chunk;
        if self.start > 0 && (self.buf.len() == self.buf.capacity() || self.start > chunk / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            let unread = self.buf.len() - self.start;
            let want = (unread * 2).clamp(chunk, limit.max(chunk));
            if want <= unread {
                return Err(std::io::Error::other("read buffer limit reached"));
            }
            self.buf.reserve(want - self.buf.len());
        }
        Ok(())
    }

    /// Reads what `stream` has ready without waiting (one non-blocking
    /// `recv`): `Ok(None)` when nothing is there yet, else the bytes read
    /// (0 at EOF). Meant for right after the socket polled readable, so
    /// that the buffer exists only once data does.
    pub fn fill_ready(&mut self, stream: &Stream) -> std::io::Result<Option<usize>> {
        use std::os::fd::AsRawFd;
        self.make_room(READ_CHUNK)?;
        let spare = self.buf.spare_capacity_mut();
        let read = match stream {
            Stream::Tls(tls) => tls.try_read(spare),
            _ => {
                // SAFETY: `spare` is the Vec's own unused capacity, valid
                // for `spare.len()` bytes of writes; recv writes at most
                // that many.
                let n = unsafe {
                    libc::recv(
                        stream.as_raw_fd(),
                        spare.as_mut_ptr().cast(),
                        spare.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    let err = std::io::Error::last_os_error();
                    match err.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {
                            Ok(None)
                        }
                        _ => Err(err),
                    }
                } else {
                    Ok(Some(n as usize))
                }
            }
        };
        match read {
            Ok(Some(n)) => {
                // SAFETY: the read initialised the first `n` bytes of the
                // spare capacity.
                unsafe { self.buf.set_len(self.buf.len() + n) };
                self.received += n as u64;
                Ok(Some(n))
            }
            other => {
                self.release();
                other
            }
        }
    }

    /// Reads more from `stream`, growing the buffer up to `limit` bytes of
    /// unread data. Returns the number of bytes read (0 at EOF).
    pub async fn fill(&mut self, stream: &mut Stream, limit: usize) -> std::io::Result<usize> {
        self.make_room(limit)?;
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len();
        let cap = buf.capacity();
        let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        if let Ok(n) = res {
            self.received += n as u64;
        }
        res
    }

    /// Like [`fill`](Self::fill), giving up with `ErrorKind::TimedOut`
    /// once `patience` runs out.
    pub async fn fill_within(
        &mut self,
        stream: &mut Stream,
        limit: usize,
        patience: Patience,
    ) -> std::io::Result<usize> {
        match patience.wait() {
            None => self.fill(stream, limit).await,
            Some(wait) => match monoio::time::timeout(wait, self.fill(stream, limit)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            },
        }
    }

    /// Bytes read from the socket since the last call (for byte counters).
    pub fn take_received(&mut self) -> u64 {
        std::mem::take(&mut self.received)
    }

    /// Takes the unread bytes, leaving the buffer empty.
    pub fn into_unread(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }

    /// Appends bytes another codec decoded (an HTTP/2 stream's body).
    pub fn append(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Drops all buffered data.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Shrinks the buffer back after a large head was consumed.
    pub fn shrink(&mut self) {
        let chunk = self.chunk;
        if self.buf.capacity() > chunk && self.buf.len() - self.start <= chunk {
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.shrink_to(chunk);
        }
    }
}

/// Percent-decodes a query-string component (`+` is a space); invalid
/// escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a read may wait: at most `idle` for the next bytes, and not
/// past `deadline`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Patience {
    /// The stream idle timeout.
    pub idle: Option<Duration>,
    /// The end of the request timeout.
    pub deadline: Option<Instant>,
}

impl Patience {
    /// How long one read may wait, or None for as long as it takes.
    pub fn wait(&self) -> Option<Duration> {
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        match (self.idle, left) {
            (Some(i), Some(l)) => Some(i.min(l)),
            (i, l) => i.or(l),
        }
    }

    /// Whether the deadline (rather than idleness) is what ran out.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Malformed chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    FinalLf,
    Done,
}

/// Longest chunk-size line or trailer section accepted.
const MAX_CHUNK_META: usize = 16 * 1024;

/// A streaming decoder for chunked bodies.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    remaining: u64,
    meta: usize,
}

/// One step of chunked decoding.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkStep {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Body data within the input: `start..start+len`.
    pub data: Option<(usize, usize)>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::SizeStart,
            remaining: 0,
            meta: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, stopping after at most one run of body data.
    pub fn step(&mut self, input: &[u8]) -> Result<ChunkStep, BadChunk> {
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                let n = (input.len() - i).min(self.remaining as usize);
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                return Ok(ChunkStep {
                    consumed: i + n,
                    data: Some((i, n)),
                });
            }
            let b = input[i];
            i += 1;
            self.meta += 1;
            if self.meta > MAX_CHUNK_META {
                return Err(BadChunk);
            }
            self.state = match (self.state, b) {
                (ChunkState::SizeStart | ChunkState::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).ok_or(BadChunk)? as u64;
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|r| r.checked_add(digit))
                        .filter(|r| *r < (1 << 62))
                        .ok_or(BadChunk)?;
                    ChunkState::Size
                }
                (ChunkState::Size, b';') => ChunkState::Extension,
                (ChunkState::Size, b'\r') => ChunkState::SizeLf,
                (ChunkState::Extension, b'\r') => ChunkState::SizeLf,
                (ChunkState::Extension, b) if b != b'\n' => ChunkState::Extension,
                (ChunkState::SizeLf, b'\n') => {
                    self.meta = 0;
                    if self.remaining == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => {
                    self.meta = 0;
                    ChunkState::SizeStart
                }
                (ChunkState::TrailerStart, b'\r') => ChunkState::FinalLf,
                (ChunkState::TrailerStart | ChunkState::Trailer, b'\n') => ChunkState::TrailerStart,
                (ChunkState::TrailerStart | ChunkState::Trailer, _) => ChunkState::Trailer,
                (ChunkState::FinalLf, b'\n') => ChunkState::Done,
                _ => return Err(BadChunk),
            };
        }
        Ok(ChunkStep {
            consumed: i,
            data: None,
        })
    }
}

/// Appends one chunk of `data` in chunked encoding.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The terminating chunk.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Headers that describe one hop and are never forwarded.
pub fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "transfer-encoding",
        "content-length",
        "trailer",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Parses a `Content-Length` value: ASCII digits only.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Appends `name: value\r\n` with the name lower-cased, as Envoy writes HTTP/1 headers.
pub fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: number\r\n` without an intermediate string.
pub fn push_number_header(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    let _ = write!(out, ": {value}\r\n");
}

/// The standard reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, bool, usize), BadChunk> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut pos = 0;
        for piece in input.chunks(split.max(1)) {
            let mut i = 0;
            while i < piece.len() && !d.is_done() {
                let step = d.step(&piece[i..])?;
                if let Some((s, n)) = step.data {
                    out.extend_from_slice(&piece[i + s..i + s + n]);
                }
                i += step.consumed;
            }
            pos += i;
            if d.is_done() {
                break;
            }
        }
        Ok((out, d.is_done(), pos))
    }

    #[test]
    fn chunked_decodes_at_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 1..body.len() {
            let (out, done, used) = decode_all(body, split).expect("valid");
            assert_eq!(out, b"hello world");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        assert!(decode_all(b"zz\r\n", 64).is_err());
        assert!(decode_all(b"5\r\nhelloXX", 64).is_err());
        assert!(decode_all(b"fffffffffffffffffff\r\n", 64).is_err());
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"+4"), None);
        assert_eq!(parse_content_length(b" 4"), None);
        assert_eq!(parse_content_length(b""), None);
    }

    #[test]
    fn tokens_are_case_insensitive() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
    }
}
