//! Connections and listening sockets over TCP or a Unix-domain socket,
//! one type for each so the HTTP path is written once for both.

use super::{Address, TlsStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use monoio::BufResult;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// A connected stream socket.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain stream socket (`pipe`).
    Unix(UnixStream),
    /// A TLS session (over either).
    Tls(TlsStream),
}

impl Stream {
    /// Connects to `addr`.
    pub async fn connect(addr: &Address) -> io::Result<Stream> {
        match addr {
            Address::Ip(a) => TcpStream::connect_addr(*a).await.map(Stream::Tcp),
            Address::Pipe(_) => {
                let path = addr.pipe_path().unwrap_or_default();
                UnixStream::connect(path).await.map(Stream::Unix)
            }
        }
    }

    /// Resolves once the socket is readable (or failed).
    pub async fn readable(&self, relaxed: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable(relaxed).await,
            Stream::Unix(s) => s.readable(relaxed).await,
            Stream::Tls(s) => s.readable().await,
        }
    }

    /// Another handle to read from while this one is written: a duplicate
    /// descriptor of a socket, or the same TLS session.
    pub fn reader(&self) -> Option<Stream> {
        match self {
            Stream::Tls(s) => Some(Stream::Tls(s.clone())),
            _ => super::duplicate(self.as_raw_fd()),
        }
    }

    /// Turns off Nagle's algorithm (TCP only; a pipe has none).
    pub fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// Whether TLS ALPN chose HTTP/2.
    pub fn alpn_h2(&self) -> bool {
        match self {
            Stream::Tls(t) => t.with_state(|s| s.alpn_protocol() == Some(b"h2")),
            Stream::Tcp(_) | Stream::Unix(_) => false,
        }
    }

    /// The TCP stream, when this is one (for TCP-only socket options).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) | Stream::Tls(_) => None,
        }
    }
}

/// A head and the bytes of a body buffer from `start` on, written by one
/// `writev` without copying either. Owned, so the kernel's view of them
/// stays valid even if the write is abandoned.
struct HeadAndBody {
    head: Vec<u8>,
    body: Vec<u8>,
    /// Boxed so it stays put while the value moves into the operation.
    iovecs: Box<[libc::iovec; 2]>,
}

impl HeadAndBody {
    /// `start` is at most `body.len()`.
    fn new(head: Vec<u8>, body: Vec<u8>, start: usize) -> Self {
        let tail = &body[start..];
        let iovecs = Box::new([
            libc::iovec {
                iov_base: head.as_ptr().cast_mut().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: tail.as_ptr().cast_mut().cast(),
                iov_len: tail.len(),
            },
        ]);
        HeadAndBody { head, body, iovecs }
    }
}

// SAFETY: both iovecs point into `head` and `body`, whose heap storage
// neither moves nor changes while this value lives (nothing mutates them
// until the value is taken apart after the write), and the array itself
// is boxed.
unsafe impl IoVecBuf for HeadAndBody {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

impl Stream {
    /// Writes all of `head`, then `body[start..]`: one `writev` when the
    /// socket takes both, no copy of either. Hands both buffers back.
    pub async fn write_head_and_body(
        &mut self,
        head: Vec<u8>,
        body: Vec<u8>,
        start: usize,
    ) -> (io::Result<usize>, Vec<u8>, Vec<u8>) {
        use monoio::io::AsyncWriteRentExt;
        let start = start.min(body.len());
        let total = head.len() + body.len() - start;
        let (res, both) = self.writev(HeadAndBody::new(head, body, start)).await;
        let HeadAndBody { head, body, .. } = both;
        let written = match res {
            Ok(0) if total > 0 => return (Err(io::ErrorKind::WriteZero.into()), head, body),
            Ok(n) => n,
            Err(e) => return (Err(e), head, body),
        };
        if written == total {
            return (Ok(total), head, body);
        }
        // A short write (the socket buffer filled): the rest one at a time.
        let head = if written < head.len() {
            let (res, rest) = self.write_all(head.slice(written..)).await;
            if let Err(e) = res {
                return (Err(e), rest.into_inner(), body);
            }
            rest.into_inner()
        } else {
            head
        };
        let from = start + written.saturating_sub(head.len());
        let (res, rest) = self.write_all(body.slice(from..)).await;
        (res.map(|_| total), head, rest.into_inner())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.raw_fd(),
        }
    }
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.readv(buf).await,
            Stream::Unix(s) => s.readv(buf).await,
            Stream::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.write(buf).await,
            Stream::Unix(s) => s.write(buf).await,
            Stream::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(s) => s.writev(buf).await,
            Stream::Unix(s) => s.writev(buf).await,
            Stream::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush().await,
            Stream::Unix(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        }
    }
}

/// A listening socket a runtime has adopted.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix-domain socket, with the address it was bound to.
    Unix(UnixListener, Address),
}

/// A listening socket bound but not yet adopted by a runtime (it can be
/// duplicated for every shard that accepts on it).
pub enum Bound {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// A Unix-domain socket, with the address it was bound to.
    Unix(std::os::unix::net::UnixListener, Address),
}

impl std::os::fd::AsFd for Bound {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Bound::Tcp(l) => l.as_fd(),
            Bound::Unix(l, _) => l.as_fd(),
        }
    }
}

impl Bound {
    /// Another descriptor for the same socket.
    pub fn try_clone(&self) -> io::Result<Bound> {
        Ok(match self {
            Bound::Tcp(l) => Bound::Tcp(l.try_clone()?),
            Bound::Unix(l, a) => Bound::Unix(l.try_clone()?, a.clone()),
        })
    }

    /// The address it is bound to (an IP listener's real port once 0 was
    /// asked for).
    pub fn local_address(&self) -> io::Result<Address> {
        match self {
            Bound::Tcp(l) => l.local_addr().map(Address::Ip),
            Bound::Unix(_, a) => Ok(a.clone()),
        }
    }

    /// Hands the socket to the current thread's runtime.
    pub fn adopt(self) -> io::Result<Listener> {
        Ok(match self {
            Bound::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            Bound::Unix(l, a) => Listener::Unix(UnixListener::from_std(l)?, a),
        })
    }
}

impl Listener {
    /// The next connection and its peer's address. A Unix peer is given
    /// the listener's own address, as Envoy does (the kernel names no
    /// client socket).
    pub async fn accept(&self) -> io::Result<(Stream, Address)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Stream::Tcp(s), Address::Ip(peer)))
            }
            Listener::Unix(l, a) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), a.clone()))
            }
        }
    }

    /// The address a connection accepted here reached: a TCP stream's own
    /// local address, else the listener's.
    pub fn local_address(&self, stream: &Stream) -> Option<Address> {
        match (self, stream) {
            (_, Stream::Tcp(s)) => s.local_addr().ok().map(Address::Ip),
            (Listener::Unix(_, a), Stream::Unix(_)) => Some(a.clone()),
            (Listener::Tcp(_), _) | (Listener::Unix(..), _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn head_and_body_arrive_whole_and_in_order_through_short_writes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let head = b"0123456789".repeat(50);
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let start = 1000;
        let expected = [&head[..], &body[start..]].concat();
        let reader = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().expect("accept");
            // Late, so the sender's small buffer fills and writes come up short.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("read");
            got
        });
        let (sent_head, sent_body) = (head.clone(), body.clone());
        crate::server::block_on(|| async move {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
            socket.connect(&addr.into()).expect("connect");
            let tcp = TcpStream::from_std(socket.into()).expect("monoio stream");
            let mut stream = Stream::Tcp(tcp);
            let (res, head, body) = stream
                .write_head_and_body(sent_head, sent_body, start)
                .await;
            assert_eq!(res.expect("written"), head.len() + body.len() - start);
            assert_eq!((head.len(), body.len()), (500, 4 << 20));
        })
        .expect("runtime");
        assert!(reader.join().expect("reader") == expected);
    }
}
