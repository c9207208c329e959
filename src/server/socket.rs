//! Listening sockets made as a listener's config says: SO_REUSEPORT or
//! one shared socket, and `socket_options` applied in their state.

use crate::config::{SocketOption, SocketState};
use crate::net::set_int_option;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;

/// Opens a listening socket on `addr` (with SO_REUSEPORT when
/// `reuse_port`), its `options` set in their state; non-blocking, ready for
/// a runtime to adopt.
pub fn listen(
    addr: SocketAddr,
    reuse_port: bool,
    options: &[SocketOption],
    backlog: i32,
) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    set_int_option(
        &socket,
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        i32::from(reuse_port),
    )?;
    apply(&socket, options, SocketState::Prebind)?;
    socket.bind(&addr.into())?;
    apply(&socket, options, SocketState::Bound)?;
    socket.listen(backlog)?;
    apply(&socket, options, SocketState::Listening)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
