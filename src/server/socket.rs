//! Listening sockets made as a listener's config says: SO_REUSEPORT or
//! one shared socket, TCP or a Unix-domain socket (`pipe`, with its
//! `mode`), and `socket_options` applied in their state.

use crate::config::{SocketOption, SocketState};
use crate::net::{set_int_option, Address, Bound};
use socket2::{Domain, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

/// Whether the shards will be able to bind `addr` with SO_REUSEPORT: a
/// socket is bound (not listening, so it takes no connection) and closed.
pub fn probe_reuse_port(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    socket.bind(&SockAddr::from(addr))
}

/// Opens a listening socket on `addr` (with SO_REUSEPORT when
/// `reuse_port` and it is TCP), its `options` set in their state;
/// non-blocking, ready for a runtime to adopt. A pipe gets file mode
/// `mode` unless it is 0 or abstract, and replaces a stale socket file left
/// at its path, as Envoy does (any other kind of file is left alone and
/// the bind fails).
pub fn listen(
    addr: &Address,
    reuse_port: bool,
    options: &[SocketOption],
    backlog: i32,
    mode: u32,
) -> std::io::Result<Bound> {
    let (socket, sockaddr) = match addr {
        Address::Ip(ip) => {
            let socket = Socket::new(Domain::for_address(*ip), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            set_int_option(
                &socket,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                i32::from(reuse_port),
            )?;
            (socket, SockAddr::from(*ip))
        }
        Address::Pipe(path) => {
            if !addr.is_abstract() {
                remove_stale_socket(path)?;
            }
            let sockaddr = SockAddr::unix(addr.pipe_path().unwrap_or_default())?;
            (Socket::new(Domain::UNIX, Type::STREAM, None)?, sockaddr)
        }
    };
    apply(&socket, options, SocketState::Prebind)?;
    socket.bind(&sockaddr)?;
    if let Address::Pipe(path) = addr {
        if mode != 0 && !addr.is_abstract() {
            std::fs::set_permissions(&**path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    apply(&socket, options, SocketState::Bound)?;
    socket.listen(backlog)?;
    apply(&socket, options, SocketState::Listening)?;
    socket.set_nonblocking(true)?;
    Ok(match addr {
        Address::Ip(_) => Bound::Tcp(socket.into()),
        Address::Pipe(_) => Bound::Unix(OwnedFd::from(socket).into(), addr.clone()),
    })
}

/// Binds a UDP socket on `addr` with SO_REUSEPORT (the kernel then keeps
/// each client on one shard's socket), its `options` set; non-blocking.
pub fn bind_udp(
    addr: SocketAddr,
    options: &[SocketOption],
) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    apply(&socket, options, SocketState::Prebind)?;
    socket.bind(&SockAddr::from(addr))?;
    apply(&socket, options, SocketState::Bound)?;
    apply(&socket, options, SocketState::Listening)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Removes the socket file a previous run left at `path`.
fn remove_stale_socket(path: &str) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        _ => Ok(()),
    }
}

/// Sets the options meant for `state`.
fn apply(socket: &Socket, options: &[SocketOption], state: SocketState) -> std::io::Result<()> {
    for o in options.iter().filter(|o| o.state == state) {
        set_int_option(socket, o.level, o.name, o.value).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("socket option level {} name {}: {e}", o.level, o.name),
            )
        })?;
    }
    Ok(())
}
