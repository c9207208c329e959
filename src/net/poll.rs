//! A [`Stream`] seen through tokio's IO traits, for the codecs written
//! against them (h2, rustls): plain sockets through io_uring operations
//! ([`RingIo`]), a TLS session through its own stream.

use super::ring_io::RingIo;
use super::{Stream, TlsStream};
use monoio::net::{TcpStream, UnixStream};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream for a poll-based codec; bytes read before the switch are
/// replayed first.
pub struct PollStream {
    replay: Vec<u8>,
    replayed: usize,
    io: PollIo,
    counts: Rc<ByteCounts>,
    /// The socket's descriptor (for readiness watches beside the codec).
    fd: std::os::fd::RawFd,
}

/// Bytes a [`PollStream`] moved, for the connection's byte counters
/// (the codec owns the stream; its connection task reads these).
#[derive(Default)]
pub struct ByteCounts {
    rx: Cell<u64>,
    tx: Cell<u64>,
}

impl ByteCounts {
    /// Bytes (received, sent) since the last call.
    pub fn take(&self) -> (u64, u64) {
        (self.rx.take(), self.tx.take())
    }

    fn count(cell: &Cell<u64>, n: usize) {
        cell.set(cell.get() + n as u64);
    }
}

enum PollIo {
    Tcp(RingIo<TcpStream>),
    Unix(RingIo<UnixStream>),
    /// A TLS session, itself over a socket in poll mode.
    Tls(TlsStream),
}

impl Stream {
    /// Hands the stream to a poll-based codec; `replay` holds bytes
    /// already read from it that the codec must see first.
    pub fn into_poll(self, replay: Vec<u8>, counts: Rc<ByteCounts>) -> PollStream {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self);
        let io = match self {
            Stream::Tcp(s) => PollIo::Tcp(RingIo::new(s)),
            Stream::Unix(s) => PollIo::Unix(RingIo::new(s)),
            Stream::Tls(s) => PollIo::Tls(s),
        };
        PollStream {
            replay,
            replayed: 0,
            io,
            counts,
            fd,
        }
    }
}

impl std::os::fd::AsRawFd for PollStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = match &mut this.io {
            PollIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PollIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            PollIo::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        ByteCounts::count(&this.counts.rx, buf.filled().len() - before);
        read
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = match &mut self.io {
            PollIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            PollIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
            PollIo::Tls(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = written {
            ByteCounts::count(&self.counts.tx, n);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = match &mut self.io {
            PollIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PollIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PollIo::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = written {
            ByteCounts::count(&self.counts.tx, n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            PollIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            PollIo::Unix(s) => Pin::new(s).poll_flush(cx),
            PollIo::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            PollIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PollIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            PollIo::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
