//! The listener manager: which listening sockets the shards run, and how
//! they follow the published listeners.
//!
//! The main thread plans a socket per listener ([`Sockets::plan`]): a
//! listener keeps its socket while its name, address and socket settings
//! stay, whatever happens to its filter chains; a new or re-addressed one
//! gets a new socket. Each shard receives the whole plan and makes its set
//! of accept loops match it ([`ShardListeners::apply`]): it opens what is
//! new and stops what is gone (closing its socket takes the shard out of
//! the SO_REUSEPORT group; the kernel hands new connections to the other
//! sockets). A stopped listener's idle connections close; its busy ones
//! finish their request and close. After a hot restart, a listener's
//! sockets are the ones the previous epoch handed over (shards split them;
//! one left without binds its own into the same SO_REUSEPORT group).

use super::drain::LocalDrain;
use super::hot_restart::{Inherited, OpenSockets};
use super::shard::Shard;
use super::socket;
use super::BACKLOG;
use crate::config::ListenerSocket;
use crate::net::{Address, Bound, Listener};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::ListenerManager as ManagerStat;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How the shards get their socket for one listener.
#[derive(Clone)]
pub enum Bind {
    /// Each shard binds its own with SO_REUSEPORT (the kernel spreads
    /// connections over them).
    PerShard(SocketAddr, ListenerSocket),
    /// One socket, bound here, that every shard accepts on
    /// (`enable_reuse_port: false`, and every pipe).
    Shared(Arc<Bound>),
    /// A UDP listener: each shard binds its own with SO_REUSEPORT.
    Datagram(SocketAddr, ListenerSocket),
    /// The SO_REUSEPORT sockets (TCP or UDP) the previous restart epoch
    /// handed over: shard i takes every n-th from the i-th; a shard left
    /// without one opens its own as `then` says.
    Inherited {
        /// The handed-over descriptors.
        fds: Arc<Vec<OwnedFd>>,
        /// How a shard left without one opens its socket.
        then: Box<Bind>,
    },
}

/// A shard's socket for one listener.
enum Opened {
    /// Connections to accept.
    Stream(Listener),
    /// Datagrams to receive.
    Datagram(monoio::net::udp::UdpSocket),
}

impl Bind {
    /// The address the socket is bound to.
    pub fn address(&self) -> Address {
        match self {
            Bind::PerShard(addr, _) | Bind::Datagram(addr, _) => Address::Ip(*addr),
            Bind::Shared(l) => l
                .local_address()
                .unwrap_or(Address::Ip(SocketAddr::from(([0, 0, 0, 0], 0)))),
            Bind::Inherited { then, .. } => then.address(),
        }
    }
}

/// Shard `shard`'s sockets of `planned` (of `shards` shards), each noted
/// in the sockets a next restart epoch is handed.
fn open(planned: &Planned, shard: usize, shards: usize) -> std::io::Result<Vec<Opened>> {
    let note = |fd: std::os::fd::BorrowedFd| planned.open.add(planned.id, shard, fd);
    let bound = match &planned.bind {
        Bind::PerShard(addr, spec) => {
            socket::listen(&(*addr).into(), true, &spec.options, BACKLOG, 0)?
        }
        Bind::Shared(l) => l.try_clone()?,
        Bind::Datagram(addr, spec) => {
            let socket = socket::bind_udp(*addr, &spec.options)?;
            note(socket.as_fd());
            return Ok(vec![Opened::Datagram(
                monoio::net::udp::UdpSocket::from_std(socket)?,
            )]);
        }
        Bind::Inherited { fds, then } => {
            let mine: Vec<&OwnedFd> = fds.iter().skip(shard).step_by(shards.max(1)).collect();
            if mine.is_empty() {
                let own = Planned {
                    bind: (**then).clone(),
                    ..planned.clone()
                };
                return open(&own, shard, shards);
            }
            let udp = matches!(**then, Bind::Datagram(..));
            let mut opened = Vec::with_capacity(mine.len());
            for fd in mine {
                let fd = fd.try_clone()?;
                note(fd.as_fd());
                opened.push(if udp {
                    let socket = std::net::UdpSocket::from(fd);
                    Opened::Datagram(monoio::net::udp::UdpSocket::from_std(socket)?)
                } else {
                    Opened::Stream(bound_from(fd, &then.address()).adopt()?)
                });
            }
            return Ok(opened);
        }
    };
    note(bound.as_fd());
    Ok(vec![Opened::Stream(bound.adopt()?)])
}

/// A listening socket handed over by the previous restart epoch, bound at
/// `address`.
pub fn bound_from(fd: OwnedFd, address: &Address) -> Bound {
    match address {
        Address::Ip(_) => Bound::Tcp(std::net::TcpListener::from(fd)),
        Address::Pipe(_) => {
            Bound::Unix(std::os::unix::net::UnixListener::from(fd), address.clone())
        }
    }
}

/// One listener's socket as planned.
#[derive(Clone)]
pub struct Planned {
    /// Stays the same while the listener keeps its socket.
    pub id: u64,
    /// The listener's name.
    pub name: Arc<str>,
    /// How shards get the socket.
    pub bind: Bind,
    /// Where the sockets shards open are noted for a next restart epoch.
    open: Arc<OpenSockets>,
}

/// What makes a listener's socket: it is kept while these stay.
#[derive(PartialEq)]
struct SocketKey {
    name: String,
    address: Address,
    socket: ListenerSocket,
    udp: bool,
}

/// The main thread's plan of listening sockets.
pub struct Sockets {
    planned: Vec<(SocketKey, Planned)>,
    next_id: u64,
    open: Arc<OpenSockets>,
    /// Sockets the previous restart epoch handed over, not yet planned.
    inherited: Vec<Inherited>,
}

impl Sockets {
    /// No sockets yet; the ones shards open are noted in `open`.
    pub fn new(open: Arc<OpenSockets>) -> Self {
        Sockets {
            planned: Vec::new(),
            next_id: 0,
            open,
            inherited: Vec::new(),
        }
    }

    /// Takes the sockets the previous restart epoch handed over: the next
    /// plan uses them for the listeners of the same name and address.
    pub fn inherit(&mut self, inherited: Vec<Inherited>) {
        self.inherited = inherited;
    }

    /// The sockets for `snapshot`'s listeners, in its order: the ones
    /// kept from the last plan, and new ones bound or probed here. Nothing
    /// changes on an error (a listener that cannot bind).
    pub fn plan(&mut self, snapshot: &ConfigSnapshot) -> Result<Vec<Planned>, String> {
        let mut planned = Vec::with_capacity(snapshot.listeners.len());
        let mut next_id = self.next_id;
        for l in &snapshot.listeners {
            let key = SocketKey {
                name: l.name.clone(),
                address: l.address.clone(),
                socket: l.socket.clone(),
                udp: l.udp.is_some(),
            };
            let kept = self.planned.iter().find(|(k, _)| *k == key);
            let entry = match kept {
                Some((_, p)) => p.clone(),
                None => {
                    next_id += 1;
                    let inherited = self.inherited.iter().position(|s| {
                        s.name == l.name
                            && s.address == l.address.to_string()
                            && s.udp == l.udp.is_some()
                    });
                    let bind = match inherited {
                        Some(i) => adopt(l, self.inherited.remove(i).fds)?,
                        None => bind(l)?,
                    };
                    self.open
                        .describe(next_id, &l.name, &l.address, l.udp.is_some());
                    Planned {
                        id: next_id,
                        name: Arc::from(l.name.as_str()),
                        bind,
                        open: self.open.clone(),
                    }
                }
            };
            planned.push((key, entry));
        }
        self.next_id = next_id;
        self.planned = planned;
        Ok(self.planned.iter().map(|(_, p)| p.clone()).collect())
    }

    /// Each listener's name and bound address, as `/listeners` shows them.
    pub fn addresses(&self) -> Vec<(String, Address)> {
        self.planned
            .iter()
            .map(|(k, p)| (k.name.clone(), p.bind.address()))
            .collect()
    }
}

/// Decides a listener's binding: a port of 0 is bound once here to pick a
/// free port, which every shard then binds with SO_REUSEPORT; a listener
/// without reuse_port, or on a pipe (a Unix socket has no SO_REUSEPORT
/// group), is bound here once, for all shards.
fn bind(l: &crate::snapshot::Listener) -> Result<Bind, String> {
    let failed = |e: std::io::Error| format!("listener {}: cannot bind {}: {e}", l.name, l.address);
    if l.udp.is_some() {
        let Some(mut ip) = l.address.ip() else {
            return Err(format!("listener {}: UDP needs an IP address", l.name));
        };
        if ip.port() == 0 {
            ip = std::net::UdpSocket::bind(ip)
                .and_then(|s| s.local_addr())
                .map_err(failed)?;
        }
        return Ok(Bind::Datagram(ip, l.socket.clone()));
    }
    let ip = match l.address.ip() {
        Some(ip) if l.socket.reuse_port => ip,
        _ => {
            let spec = &l.socket;
            let shared = socket::listen(&l.address, false, &spec.options, BACKLOG, spec.pipe_mode)
                .map_err(failed)?;
            return Ok(Bind::Shared(Arc::new(shared)));
        }
    };
    if ip.port() != 0 {
        // A port another process holds refuses the update here rather
        // than failing in every shard after it was taken.
        socket::probe_reuse_port(ip).map_err(failed)?;
        return Ok(Bind::PerShard(ip, l.socket.clone()));
    }
    let probe = std::net::TcpListener::bind(ip)
        .and_then(|s| s.local_addr())
        .map_err(failed)?;
    Ok(Bind::PerShard(probe, l.socket.clone()))
}

/// A listener's binding from the sockets the previous restart epoch
/// handed over for it.
fn adopt(l: &crate::snapshot::Listener, fds: Vec<OwnedFd>) -> Result<Bind, String> {
    let failed = |e: std::io::Error| format!("listener {}: a handed-over socket: {e}", l.name);
    let Some(first) = fds.first() else {
        return bind(l);
    };
    let first = first.try_clone().map_err(failed)?;
    let spec = l.socket.clone();
    let then = if l.udp.is_some() {
        let addr = std::net::UdpSocket::from(first)
            .local_addr()
            .map_err(failed)?;
        Bind::Datagram(addr, spec)
    } else {
        let bound = bound_from(first, &l.address);
        match bound.local_address().map_err(failed)? {
            Address::Ip(addr) if spec.reuse_port => Bind::PerShard(addr, spec),
            // One socket every shard accepts on: the first is it.
            _ => return Ok(Bind::Shared(Arc::new(bound))),
        }
    };
    Ok(Bind::Inherited {
        fds: Arc::new(fds),
        then: Box::new(then),
    })
}

/// A running listener's stop signal and where its sockets are noted.
type Running = (Rc<LocalDrain>, Arc<OpenSockets>);

/// A shard's running listeners, by plan id.
#[derive(Default)]
pub struct ShardListeners {
    running: RefCell<HashMap<u64, Running>>,
}

impl ShardListeners {
    /// Makes this shard's accept loops match `plan`: opens the new
    /// sockets and stops the ones the plan no longer has. Errors name the
    /// sockets that could not be opened (the others run).
    pub fn apply(&self, shard: &Rc<Shard>, plan: &[Planned]) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut running = self.running.borrow_mut();
        running.retain(|id, (stop, open)| {
            let keep = plan.iter().any(|p| p.id == *id);
            if !keep {
                open.remove(*id, shard.id);
                stop.start();
                shard
                    .stats
                    .listener_manager
                    .inc(shard.id, ManagerStat::listener_stopped);
            }
            keep
        });
        for p in plan {
            if running.contains_key(&p.id) {
                continue;
            }
            let opened = match open(p, shard.id, shard.stats.shards()) {
                Ok(o) => o,
                Err(e) => {
                    shard
                        .stats
                        .listener_manager
                        .inc(shard.id, ManagerStat::listener_create_failure);
                    errors.push(format!(
                        "listener {}: cannot bind {}: {e}",
                        p.name,
                        p.bind.address()
                    ));
                    continue;
                }
            };
            shard
                .stats
                .listener_manager
                .inc(shard.id, ManagerStat::listener_create_success);
            let stop = Rc::new(LocalDrain::default());
            running.insert(p.id, (stop.clone(), p.open.clone()));
            for socket in opened {
                let (name, stop, shard) = (p.name.clone(), stop.clone(), shard.clone());
                let (open, id) = (p.open.clone(), p.id);
                monoio::spawn(async move {
                    let w = shard.id;
                    match socket {
                        Opened::Stream(l) => accept_loop(l, name, stop, shard).await,
                        Opened::Datagram(socket) => {
                            crate::listener::udp_proxy::serve(socket, name, stop, shard).await
                        }
                    }
                    // Stopped or drained: no duplicate kept for a next
                    // restart epoch may hold the socket open.
                    open.remove(id, w);
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

async fn accept_loop(listener: Listener, name: Arc<str>, stop: Rc<LocalDrain>, shard: Rc<Shard>) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = shard.drain.wait() => None,
            _ = stop.wait() => None,
        };
        match accepted {
            // Dropping the socket takes this shard out of the REUSEPORT group.
            None => return,
            Some(Ok((stream, peer))) => {
                log::debug!("shard {}: accepted connection from {peer}", shard.id);
                let local = listener.local_address(&stream);
                let guard = super::ConnectionGuard::open(&shard);
                let name = name.clone();
                let stop = stop.clone();
                monoio::spawn(super::CatchUnwind(Box::pin(async move {
                    let shard = guard.0.clone();
                    crate::listener::serve(stream, peer, local, shard, &name, stop).await;
                    drop(guard);
                })));
            }
            Some(Err(e)) => {
                log::warn!("shard {}: accept failed: {e}", shard.id);
                // Out of descriptors or memory: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
