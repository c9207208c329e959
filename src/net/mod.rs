//! Sockets: addresses, streams and listeners over TCP or Unix-domain
//! sockets, and helpers for looking at a receive queue without reading it,
//! waiting on a socket another operation is using, and integer socket
//! options.

mod address;
mod poll;
mod ring_io;
mod stream;
mod tls;

pub use address::Address;
pub use poll::{ByteCounts, PollStream};
pub use stream::{Bound, Listener, Stream};
pub use tls::TlsStream;

use monoio::net::TcpStream;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

/// What a non-blocking peek finds on a connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// Nothing to read yet; the peer has not closed.
    Nothing,
    /// Bytes are waiting.
    Data,
    /// The peer closed (EOF) or the socket failed.
    Closed,
}

/// Peeks at `stream` (one `recv(MSG_PEEK | MSG_DONTWAIT)`, no byte consumed).
pub fn peek(stream: &impl std::os::fd::AsRawFd) -> Peeked {
    use std::os::fd::BorrowedFd;
    // SAFETY: the descriptor is owned by `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let sock = socket2::SockRef::from(&fd);
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    match sock.recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Peeked::Nothing,
        Ok(n) if n > 0 => Peeked::Data,
        _ => Peeked::Closed,
    }
}

/// A duplicate of the socket `fd` to wait on while the original is busy
/// with another operation. `fd` must be open; any stream socket will do,
/// as only its readiness is awaited.
fn watcher(fd: RawFd) -> Option<TcpStream> {
    use std::os::fd::BorrowedFd;
    // SAFETY: the caller keeps `fd` open for this call; the borrow only
    // lasts for the duplication.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
        .and_then(TcpStream::from_std)
        .ok()
}

/// Another stream on the socket `fd` (a duplicated descriptor), to read
/// from while the original is written to. `fd` must be open.
pub fn duplicate(fd: RawFd) -> Option<Stream> {
    watcher(fd).map(Stream::Tcp)
}

/// Resolves once the socket `fd` has bytes to read, or its peer closed
/// or reset it. `fd` must stay open while this future lives.
pub async fn peer_spoke(fd: RawFd) {
    match watcher(fd) {
        Some(watched) => {
            let _ = watched.readable(false).await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves once the peer of the socket `fd` has closed, watching from
/// `after` on (so quick exchanges pay only a timer). Never resolves while
/// the peer is there, nor once it has sent more bytes (a pipelined
/// request: its close can no longer be told from data). `fd` must stay
/// open while this future lives.
pub async fn peer_closed(fd: RawFd, after: Duration) {
    monoio::time::sleep(after).await;
    let Some(watched) = watcher(fd) else {
        return std::future::pending().await;
    };
    loop {
        if watched.readable(false).await.is_err() {
            return;
        }
        match peek(&watched) {
            Peeked::Closed => return,
            Peeked::Data => return std::future::pending().await,
            Peeked::Nothing => {}
        }
    }
}

/// `setsockopt(level, name)` with an integer value, on any socket.
pub fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    level: i32,
    name: i32,
    value: i32,
) -> std::io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: `value` is a live c_int and its size is passed with it; the
    // descriptor belongs to `socket`, borrowed for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The destination a connection was addressed to before a NAT redirect
/// (iptables `REDIRECT`/`DNAT`), from conntrack (`SO_ORIGINAL_DST`); None
/// when the kernel has no such record.
pub fn original_destination(
    socket: &impl std::os::fd::AsRawFd,
    ipv6: bool,
) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    // SAFETY: sockaddr_storage is plain data for which all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST)
    } else {
        (libc::SOL_IP, libc::SO_ORIGINAL_DST)
    };
    // SAFETY: `storage` is live and large enough for any address, and its
    // size goes with it; the descriptor is borrowed for the whole call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (its family says so),
            // which fits in and is aligned like sockaddr_storage.
            let a = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let a = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
