//! Looking at a socket's receive queue without reading it.

use monoio::net::TcpStream;
use std::mem::MaybeUninit;

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
pub fn peek(stream: &TcpStream) -> Peeked {
    use std::os::fd::{AsRawFd, BorrowedFd};
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
