//! A TLS session over a socket, seen through monoio's owned-buffer IO so
//! the HTTP/1.1 path runs on it unchanged, and through tokio's traits for
//! the h2 codec.
//!
//! The session is rustls driven by `tokio-rustls` over a [`PollStream`]:
//! every read and write is a poll that either completes at once or
//! registers for readiness, so dropping one (a timeout, a `select!`) loses
//! nothing, which monoio's completion-based TLS adapters cannot promise.
//! Both directions share the one session, so a tunnel can read and write
//! it from two halves at once.

use super::PollStream;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::BufResult;
use rustls::CommonState;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

/// An established TLS session; clones are handles on the same session.
#[derive(Clone)]
pub struct TlsStream(Rc<RefCell<tokio_rustls::TlsStream<PollStream>>>);

impl TlsStream {
    /// Wraps an established session.
    pub fn new(inner: tokio_rustls::TlsStream<PollStream>) -> Self {
        TlsStream(Rc::new(RefCell::new(inner)))
    }

    /// Reads what the session has for `cx`, into `dst`.
    fn poll_read_into(&self, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, dst)
    }

    /// Reads into `buf`'s spare capacity; cancel-safe.
    pub async fn read<T: IoBufMut>(&self, mut buf: T) -> BufResult<usize, T> {
        let total = buf.bytes_total();
        // SAFETY: `write_ptr` points at `bytes_total` writable bytes that
        // `buf` owns for this call; ReadBuf treats them as uninitialised.
        let spare = unsafe {
            std::slice::from_raw_parts_mut(buf.write_ptr().cast::<MaybeUninit<u8>>(), total)
        };
        let mut dst = ReadBuf::uninit(spare);
        let res = poll_fn(|cx| self.poll_read_into(cx, &mut dst)).await;
        let n = dst.filled().len();
        match res {
            Ok(()) => {
                // SAFETY: the session wrote `n` bytes at the start of `buf`.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    /// Reads what is ready now without waiting: `Ok(None)` when the
    /// session has nothing yet (0 at the end of the stream).
    pub fn try_read(&self, spare: &mut [MaybeUninit<u8>]) -> io::Result<Option<usize>> {
        let mut dst = ReadBuf::uninit(spare);
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_read_into(&mut cx, &mut dst) {
            Poll::Ready(Ok(())) => Ok(Some(dst.filled().len())),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }

    /// Resolves once plaintext is ready to read (or the session ended),
    /// without consuming it.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut inner = self.0.borrow_mut();
            match Pin::new(&mut *inner).poll_fill_buf(cx) {
                Poll::Ready(r) => Poll::Ready(r.map(|_| ())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Writes what the session takes of `buf` and flushes it to the
    /// socket; cancel-safe (bytes the session took are sent by the next
    /// write or flush).
    pub async fn write<T: IoBuf>(&self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` points at `bytes_init` initialised bytes that
        // `buf` owns for this call.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let mut taken = None;
        let res = poll_fn(|cx| {
            let mut inner = self.0.borrow_mut();
            let n = match taken {
                Some(n) => n,
                None => {
                    let n = std::task::ready!(Pin::new(&mut *inner).poll_write(cx, bytes))?;
                    taken = Some(n);
                    n
                }
            };
            std::task::ready!(Pin::new(&mut *inner).poll_flush(cx))?;
            Poll::Ready(Ok(n))
        })
        .await;
        (res, buf)
    }

    /// Flushes what the session holds to the socket.
    pub async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)).await
    }

    /// Sends close_notify and shuts the socket's write side.
    pub async fn shutdown(&self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)).await
    }

    /// Runs `f` on the session's negotiated state.
    pub fn with_state<R>(&self, f: impl FnOnce(&CommonState) -> R) -> R {
        f(self.0.borrow().get_ref().1)
    }

    /// The SNI a client sent, on a server session.
    pub fn server_name(&self) -> Option<String> {
        match &*self.0.borrow() {
            tokio_rustls::TlsStream::Server(s) => s.get_ref().1.server_name().map(str::to_string),
            tokio_rustls::TlsStream::Client(_) => None,
        }
    }

    /// The socket under the session.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.borrow().get_ref().0.as_raw_fd()
    }

    /// Reads into the first non-empty buffer of `bufs`.
    pub async fn readv<T: IoVecBufMut>(&self, mut bufs: T) -> BufResult<usize, T> {
        let (ptr, len) = first_iovec_mut(&mut bufs);
        let Some(ptr) = ptr else {
            return (Ok(0), bufs);
        };
        // SAFETY: the iovec points at `len` writable bytes owned by `bufs`.
        let spare = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), len) };
        let mut dst = ReadBuf::uninit(spare);
        let res = poll_fn(|cx| self.poll_read_into(cx, &mut dst)).await;
        let n = dst.filled().len();
        match res {
            Ok(()) => {
                // SAFETY: `n` bytes were written at the start of the buffers.
                unsafe { bufs.set_init(n) };
                (Ok(n), bufs)
            }
            Err(e) => (Err(e), bufs),
        }
    }

    /// Writes every buffer of `bufs` in order.
    pub async fn writev<T: IoVecBuf>(&self, bufs: T) -> BufResult<usize, T> {
        let mut written = 0;
        // SAFETY: the iovecs point at initialised bytes owned by `bufs`,
        // which lives for this call.
        let slices: Vec<&[u8]> = unsafe {
            std::slice::from_raw_parts(bufs.read_iovec_ptr(), bufs.read_iovec_len())
                .iter()
                .map(|v| std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len))
                .collect()
        };
        for slice in slices {
            let mut at = 0;
            while at < slice.len() {
                let part = &slice[at..];
                let res = poll_fn(|cx| {
                    let mut inner = self.0.borrow_mut();
                    Pin::new(&mut *inner).poll_write(cx, part)
                })
                .await;
                match res {
                    Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), bufs),
                    Ok(n) => at += n,
                    Err(e) => return (Err(e), bufs),
                }
            }
            written += slice.len();
        }
        let flushed = self.flush().await;
        (flushed.map(|()| written), bufs)
    }
}

/// The first non-empty iovec of `bufs`.
fn first_iovec_mut<T: IoVecBufMut>(bufs: &mut T) -> (Option<*mut u8>, usize) {
    // SAFETY: the iovec array is owned by `bufs` and lives for this call.
    let iovecs =
        unsafe { std::slice::from_raw_parts(bufs.write_iovec_ptr(), bufs.write_iovec_len()) };
    iovecs
        .iter()
        .find(|v| v.iov_len > 0)
        .map_or((None, 0), |v| (Some(v.iov_base.cast::<u8>()), v.iov_len))
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_read_into(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)
    }
}
