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
//! finish their request and close.

use super::drain::LocalDrain;
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
        }
    }

    /// This shard's socket.
    fn open(&self) -> std::io::Result<Opened> {
        let bound = match self {
            Bind::PerShard(addr, spec) => {
                socket::listen(&(*addr).into(), true, &spec.options, BACKLOG, 0)?
            }
            Bind::Shared(l) => l.try_clone()?,
            Bind::Datagram(addr, spec) => {
                let socket = socket::bind_udp(*addr, &spec.options)?;
                return monoio::net::udp::UdpSocket::from_std(socket).map(Opened::Datagram);
            }
        };
        bound.adopt().map(Opened::Stream)
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
#[derive(Default)]
pub struct Sockets {
    planned: Vec<(SocketKey, Planned)>,
    next_id: u64,
}

impl Sockets {
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
                    Planned {
                        id: next_id,
                        name: Arc::from(l.name.as_str()),
                        bind: bind(l)?,
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

/// A shard's running listeners: each one's stop signal, by plan id.
#[derive(Default)]
pub struct ShardListeners {
    running: RefCell<HashMap<u64, Rc<LocalDrain>>>,
}

impl ShardListeners {
    /// Makes this shard's accept loops match `plan`: opens the new
    /// sockets and stops the ones the plan no longer has. Errors name the
    /// sockets that could not be opened (the others run).
    pub fn apply(&self, shard: &Rc<Shard>, plan: &[Planned]) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut running = self.running.borrow_mut();
        running.retain(|id, stop| {
            let keep = plan.iter().any(|p| p.id == *id);
            if !keep {
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
            let opened = match p.bind.open() {
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
            running.insert(p.id, stop.clone());
            let name = p.name.clone();
            match opened {
                Opened::Stream(l) => monoio::spawn(accept_loop(l, name, stop, shard.clone())),
                Opened::Datagram(socket) => monoio::spawn(crate::listener::udp_proxy::serve(
                    socket,
                    name,
                    stop,
                    shard.clone(),
                )),
            };
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
                log::debug!("accepted connection from {peer}");
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
