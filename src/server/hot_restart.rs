//! Upgrading the binary without dropping a connection, the way Envoy's
//! `--restart-epoch` is used but without its shared memory: each process
//! listens on an abstract Unix socket named by `--base-id` and its epoch;
//! the process of epoch N asks the one of epoch N-1 for its listening
//! sockets (passed with `SCM_RIGHTS`, so connections waiting in their
//! accept queues are the new process's to accept), serves, then tells the
//! old one to drain, which stops accepting, finishes its connections within
//! its drain time (or the new one's `--parent-shutdown-time-s`) and, as it
//! exits, hands its counters over to be added to the new process's.
//!
//! Messages are JSON, one per `SOCK_SEQPACKET` packet.

use crate::admin::Command;
use crate::net::Address;
use crate::stats::Store;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most descriptors one packet carries (the kernel's SCM_MAX_FD is 253).
const FDS_PER_PACKET: usize = 200;
/// The largest packet read.
const PACKET: usize = 64 * 1024;

/// The abstract socket name of epoch `epoch`'s process.
fn socket_name(base_id: u64, epoch: u64) -> Vec<u8> {
    format!("ringway_hot_restart_{base_id}_{epoch}").into_bytes()
}

/// One listening socket as handed over: what it is for and its
/// descriptors (one per shard for SO_REUSEPORT sockets).
pub struct Inherited {
    /// The listener's name (`@admin` for the admin API).
    pub name: String,
    /// Its configured address.
    pub address: String,
    /// Whether it is a UDP socket.
    pub udp: bool,
    /// Its descriptors.
    pub fds: Vec<OwnedFd>,
}

/// The listening descriptors this process has open, by plan id: what a
/// next epoch is handed.
#[derive(Default)]
pub struct OpenSockets {
    entries: Mutex<BTreeMap<u64, Entry>>,
}

struct Entry {
    name: String,
    address: String,
    udp: bool,
    /// A duplicate of each shard's descriptor, by shard.
    fds: Vec<(usize, OwnedFd)>,
}

/// The plan id the admin API's socket is kept under.
pub const ADMIN: u64 = u64::MAX;
/// The name it is handed over as.
pub const ADMIN_NAME: &str = "@admin";

impl OpenSockets {
    /// Notes a listener's socket set (before any shard opens one).
    pub fn describe(&self, id: u64, name: &str, address: &Address, udp: bool) {
        lock(&self.entries).entry(id).or_insert_with(|| Entry {
            name: name.to_string(),
            address: address.to_string(),
            udp,
            fds: Vec::new(),
        });
    }

    /// Keeps a duplicate of `shard`'s descriptor of listener `id`.
    pub fn add(&self, id: u64, shard: usize, fd: BorrowedFd) {
        let Ok(fd) = fd.try_clone_to_owned() else {
            return;
        };
        if let Some(e) = lock(&self.entries).get_mut(&id) {
            e.fds.push((shard, fd));
        }
    }

    /// Drops `shard`'s descriptor of listener `id` (it stops accepting on
    /// it: no duplicate may keep the socket in its SO_REUSEPORT group);
    /// the listener is forgotten with its last one.
    pub fn remove(&self, id: u64, shard: usize) {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get_mut(&id) {
            e.fds.retain(|(s, _)| *s != shard);
            if e.fds.is_empty() {
                entries.remove(&id);
            }
        }
    }
}

/// Asks the process of epoch `epoch - 1` for its listening sockets.
pub fn inherit(base_id: u64, epoch: u64) -> Result<Vec<Inherited>, String> {
    let parent = connect(base_id, epoch - 1)?;
    send(&parent, &json!({"op": "sockets"}), &[])?;
    let mut inherited = Vec::new();
    loop {
        let (message, fds) = receive(&parent)?;
        if message["done"] == true {
            return Ok(inherited);
        }
        inherited.push(Inherited {
            name: message["name"].as_str().unwrap_or_default().to_string(),
            address: message["address"].as_str().unwrap_or_default().to_string(),
            udp: message["udp"] == true,
            fds,
        });
    }
}

/// Tells the process of epoch `epoch - 1` to drain and exit, within
/// `shutdown` at most.
pub fn retire_parent(base_id: u64, epoch: u64, shutdown: Duration) -> Result<(), String> {
    let parent = connect(base_id, epoch - 1)?;
    send(
        &parent,
        &json!({"op": "drain", "shutdown_s": shutdown.as_secs()}),
        &[],
    )?;
    receive(&parent).map(|_| ())
}

/// Hands this process's counters to the process of epoch `epoch + 1`, if
/// there is one (this one is exiting after handing over).
pub fn hand_counters(base_id: u64, epoch: u64, store: &Store) {
    let Ok(next) = connect(base_id, epoch + 1) else {
        return;
    };
    let counters: Vec<(String, u64)> = store
        .values()
        .into_iter()
        .filter(|(_, kind, v)| *kind == crate::stats::Kind::Counter && *v != 0)
        .map(|(name, _, v)| (name, v))
        .collect();
    // Each packet stays within what the receiver reads at once (a longer
    // one would be cut short): about half of it, by the names' lengths.
    let mut chunk: Vec<&(String, u64)> = Vec::new();
    let mut size = 0;
    for counter in &counters {
        size += counter.0.len() + 32;
        chunk.push(counter);
        if size >= PACKET / 2 {
            if send(&next, &json!({"op": "counters", "counters": chunk}), &[]).is_err() {
                return;
            }
            chunk.clear();
            size = 0;
        }
    }
    if !chunk.is_empty() {
        let _ = send(&next, &json!({"op": "counters", "counters": chunk}), &[]);
    }
    let _ = send(&next, &json!({"op": "done"}), &[]);
}

/// Serves the next epoch on this epoch's socket, on a thread of its own:
/// its listening sockets, the drain command (sent to the main thread) and
/// the counters a retiring parent hands over.
pub fn serve(
    base_id: u64,
    epoch: u64,
    open: Arc<OpenSockets>,
    store: Arc<Store>,
    commands: crossbeam_channel::Sender<Command>,
) -> Result<(), String> {
    let listener = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        SocketType::SEQPACKET,
        None,
    )
    .map_err(|e| format!("hot restart: cannot make a socket: {e}"))?;
    let name = socket_name(base_id, epoch);
    let addr = SocketAddrUnix::new_abstract_name(&name).map_err(|e| e.to_string())?;
    rustix::net::bind(&listener, &addr).map_err(|e| {
        format!(
            "hot restart: cannot bind @{} (is another process of this --base-id and --restart-epoch running?): {e}",
            String::from_utf8_lossy(&name)
        )
    })?;
    rustix::net::listen(&listener, 4).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("ringway-hot-restart".into())
        .spawn(move || loop {
            let peer = match rustix::net::accept(&listener) {
                Ok(peer) => peer,
                Err(e) => {
                    log::warn!("hot restart: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // An abstract socket has no file permissions: only a process
            // of this user may take the sockets or make this one drain.
            let ours = rustix::net::sockopt::socket_peercred(&peer)
                .is_ok_and(|c| c.uid == rustix::process::geteuid());
            if !ours {
                log::warn!("hot restart: a process of another user was refused");
                continue;
            }
            if let Err(e) = answer(&peer, &open, &store, &commands) {
                log::warn!("hot restart: {e}");
            }
        })
        .map_err(|e| format!("cannot spawn the hot restart thread: {e}"))?;
    Ok(())
}

/// Answers one peer's requests until it hangs up.
fn answer(
    peer: &OwnedFd,
    open: &OpenSockets,
    store: &Store,
    commands: &crossbeam_channel::Sender<Command>,
) -> Result<(), String> {
    loop {
        let Ok((message, _)) = receive(peer) else {
            return Ok(());
        };
        match message["op"].as_str() {
            Some("sockets") => {
                let entries = lock(&open.entries);
                for e in entries.values() {
                    let fds: Vec<BorrowedFd> = e.fds.iter().map(|(_, fd)| fd.as_fd()).collect();
                    for chunk in fds.chunks(FDS_PER_PACKET) {
                        let m = json!({"name": e.name, "address": e.address, "udp": e.udp});
                        send(peer, &m, chunk)?;
                    }
                }
                send(peer, &json!({"done": true}), &[])?;
            }
            Some("drain") => {
                let shutdown = message["shutdown_s"].as_u64().map(Duration::from_secs);
                log::info!("hot restart: the next epoch took over; draining");
                let _ = commands.send(Command::HandedOver(shutdown));
                send(peer, &json!({"ok": true}), &[])?;
            }
            Some("counters") => {
                let counters = message["counters"].as_array().cloned().unwrap_or_default();
                let carried = counters
                    .iter()
                    .filter_map(|c| Some((c.get(0)?.as_str()?.to_string(), c.get(1)?.as_u64()?)));
                store.carry_counters(carried);
            }
            _ => {}
        }
    }
}

fn connect(base_id: u64, epoch: u64) -> Result<OwnedFd, String> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        SocketType::SEQPACKET,
        None,
    )
    .map_err(|e| e.to_string())?;
    let addr = SocketAddrUnix::new_abstract_name(&socket_name(base_id, epoch))
        .map_err(|e| e.to_string())?;
    rustix::net::connect(&socket, &addr)
        .map_err(|e| format!("cannot reach the process of restart epoch {epoch}: {e}"))?;
    let ours = rustix::net::sockopt::socket_peercred(&socket)
        .is_ok_and(|c| c.uid == rustix::process::geteuid());
    if !ours {
        return Err(format!(
            "the process of restart epoch {epoch} belongs to another user"
        ));
    }
    Ok(socket)
}

fn send(socket: &OwnedFd, message: &Value, fds: &[BorrowedFd]) -> Result<(), String> {
    let bytes = message.to_string();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_PACKET))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err("too many descriptors for one packet".into());
    }
    rustix::net::sendmsg(
        socket.as_fd(),
        &[IoSlice::new(bytes.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
    .map_err(|e| format!("hot restart: send failed: {e}"))
}

fn receive(socket: &OwnedFd) -> Result<(Value, Vec<OwnedFd>), String> {
    let mut buffer = vec![0u8; PACKET];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_PACKET))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket.as_fd(),
        &mut [IoSliceMut::new(&mut buffer)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("hot restart: receive failed: {e}"))?;
    if got.bytes == 0 {
        return Err("hot restart: the peer hung up".into());
    }
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let message = serde_json::from_slice(&buffer[..got.bytes])
        .map_err(|e| format!("hot restart: a packet is not JSON: {e}"))?;
    Ok((message, fds))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
