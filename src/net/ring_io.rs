//! tokio's IO traits over monoio's completion-based (io_uring) socket
//! operations, for the codecs written against them (h2, rustls).
//!
//! Reads land in an owned buffer the codec copies from; writes are copied
//! into an owned buffer and sent by one operation while later bytes gather
//! behind it. A request then costs one receive and one send submission,
//! batched with the shard's other operations, and no syscall of its own:
//! the readiness path paid a `recv` per request only to learn the socket
//! was drained, and a `writev` per response (`perf/issue8-http2.md`).
//! monoio-compat works the same way but sends one 8 KiB buffer at a time,
//! which measured 0.5–0.8× at 100 streams per connection.

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::BufResult;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// The first receive buffer (small: an idle connection holds one); a
/// receive that fills its buffer doubles the next one (up to
/// [`MAX_READ`]), one that uses under a quarter halves it.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;
/// Bytes gathered behind the send in flight before writers must wait.
const WRITE_LIMIT: usize = 256 * 1024;
/// How long bytes already accepted may take to leave once the stream is
/// dropped (a reader that stopped reading).
const LINGER: Duration = Duration::from_secs(10);

type ReadOp<S> = Pin<Box<dyn Future<Output = (OwnedReadHalf<S>, BufResult<usize, Vec<u8>>)>>>;
type WriteOp<S> = Pin<Box<dyn Future<Output = (OwnedWriteHalf<S>, BufResult<usize, Vec<u8>>)>>>;

/// A socket driven by io_uring operations, seen through tokio's IO traits.
pub struct RingIo<S: Split + AsyncReadRent + AsyncWriteRent + 'static> {
    reader: Reader<S>,
    writer: Writer<S>,
}

impl<S: Split + AsyncReadRent + AsyncWriteRent + 'static> RingIo<S> {
    pub fn new(stream: S) -> Self {
        let (read, write) = stream.into_split();
        RingIo {
            reader: Reader {
                half: Some(read),
                op: None,
                buf: Vec::new(),
                pos: 0,
                size: MIN_READ,
            },
            writer: Writer {
                half: Some(write),
                op: None,
                pending: Vec::new(),
            },
        }
    }
}

/// The receiving side: bytes received and not yet taken, or the receive
/// in flight (which then holds the half and the buffer).
struct Reader<S: Split + AsyncReadRent + 'static> {
    half: Option<OwnedReadHalf<S>>,
    op: Option<ReadOp<S>>,
    buf: Vec<u8>,
    pos: usize,
    size: usize,
}

impl<S: Split + AsyncReadRent + 'static> Reader<S> {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.buf.len() {
                let n = (self.buf.len() - self.pos).min(out.remaining());
                out.put_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            let op = match &mut self.op {
                Some(op) => op,
                None => {
                    let Some(mut half) = self.half.take() else {
                        return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
                    };
                    let mut buf = std::mem::take(&mut self.buf);
                    buf.clear();
                    if buf.capacity() != self.size {
                        buf = Vec::with_capacity(self.size);
                    }
                    self.op.insert(Box::pin(async move {
                        let received = half.read(buf).await;
                        (half, received)
                    }))
                }
            };
            let (half, (received, buf)) = ready!(op.as_mut().poll(cx));
            self.op = None;
            self.half = Some(half);
            self.buf = buf;
            self.pos = 0;
            let n = received?;
            if n == 0 {
                // End of stream: nothing added to `out`.
                return Poll::Ready(Ok(()));
            }
            if n == self.size {
                self.size = (self.size * 2).min(MAX_READ);
            } else if n < self.size / 4 {
                self.size = (self.size / 2).max(MIN_READ);
            }
        }
    }
}

/// The sending side: the send in flight (holding the half and its buffer)
/// and the bytes gathered behind it.
struct Writer<S: Split + AsyncWriteRent + 'static> {
    half: Option<OwnedWriteHalf<S>>,
    op: Option<WriteOp<S>>,
    /// Allocated when bytes come, freed once sent: an idle connection
    /// holds no send buffer.
    pending: Vec<u8>,
}

impl<S: Split + AsyncWriteRent + 'static> Writer<S> {
    /// Polls the send in flight, if any: ready once none is.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(op) = self.op.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (half, (sent, _)) = ready!(op.as_mut().poll(cx));
        self.op = None;
        self.half = Some(half);
        Poll::Ready(sent.map(|_| ()))
    }

    /// Starts sending the gathered bytes (none may be in flight).
    fn send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(mut half) = self.half.take() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let buf = std::mem::take(&mut self.pending);
        self.op = Some(Box::pin(async move {
            let sent = half.write_all(buf).await;
            (half, sent)
        }));
        // The first poll submits the operation.
        self.poll_sent(cx)
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Poll::Ready(Err(e)) = self.poll_sent(cx) {
                return Poll::Ready(Err(e));
            }
            if self.pending.len() < WRITE_LIMIT {
                break;
            }
            if self.op.is_some() {
                // The send in flight wakes this task when it is done.
                return Poll::Pending;
            }
            ready!(self.send_pending(cx))?;
        }
        let room = WRITE_LIMIT - self.pending.len();
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room - taken);
            self.pending.extend_from_slice(&buf[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        if self.op.is_none() {
            if let Poll::Ready(Err(e)) = self.send_pending(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_sent(cx))?;
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.send_pending(cx))?;
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        let Some(half) = self.half.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        // monoio shuts a socket down with a direct syscall: ready at once.
        std::pin::pin!(half.shutdown()).poll(cx)
    }
}

impl<S: Split + AsyncWriteRent + 'static> Drop for Writer<S> {
    /// Bytes the codec was told are written still leave: a task finishes
    /// the send in flight and the gathered bytes (bounded by [`LINGER`]).
    fn drop(&mut self) {
        let op = self.op.take();
        let pending = std::mem::take(&mut self.pending);
        let half = self.half.take();
        if op.is_none() && pending.is_empty() {
            return;
        }
        monoio::spawn(monoio::time::timeout(LINGER, async move {
            let mut half = match (op, half) {
                (Some(op), _) => match op.await {
                    (half, (Ok(_), _)) => half,
                    _ => return,
                },
                (None, Some(half)) => half,
                (None, None) => return,
            };
            if !pending.is_empty() {
                let _ = half.write_all(pending).await;
            }
        }));
    }
}

impl<S: Split + AsyncReadRent + AsyncWriteRent + Unpin + 'static> tokio::io::AsyncRead
    for RingIo<S>
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().reader.poll_read(cx, buf)
    }
}

impl<S: Split + AsyncReadRent + AsyncWriteRent + Unpin + 'static> tokio::io::AsyncWrite
    for RingIo<S>
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .writer
            .poll_write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().writer.poll_write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_shutdown(cx)
    }
}
