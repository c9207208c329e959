//! `envoy.filters.udp_listener.udp_proxy`: datagrams relayed to a cluster
//! in sessions, one per client address. Each shard has its own socket
//! (SO_REUSEPORT keeps a client on one shard), so a session lives on one
//! shard: its own connected upstream socket, a task carrying the answers
//! back, and an idle timeout over both directions.

use crate::server::drain::LocalDrain;
use crate::server::shard::Shard;
use crate::snapshot::UdpProxy;
use crate::stats::sets::{Cluster as ClusterStat, ClusterUdp, Udp as UdpStat};
use crate::upstream::hashing;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::net::udp::UdpSocket;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// The largest datagram read.
const MAX_DATAGRAM: usize = 64 * 1024;

/// One client's session.
struct Session {
    upstream: UdpSocket,
    last_active: Cell<Instant>,
}

type Sessions = Rc<RefCell<HashMap<SocketAddr, Rc<Session>>>>;

/// Receives datagrams on the socket of the listener `name` until the shard
/// drains or the socket is `stopped`.
pub async fn serve(socket: UdpSocket, name: Arc<str>, stopped: Rc<LocalDrain>, shard: Rc<Shard>) {
    let socket = Rc::new(socket);
    let sessions: Sessions = Rc::default();
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    // The listener's place, looked up by name once per snapshot epoch.
    let mut at: Option<(u64, Option<usize>)> = None;
    loop {
        let received = monoio::select! {
            r = socket.recv_from(buf.slice_mut(..MAX_DATAGRAM)) => r,
            _ = shard.drain.wait() => return,
            _ = stopped.wait() => return,
        };
        let (res, slice) = received;
        buf = slice.into_inner();
        let Ok((n, client)) = res else {
            continue;
        };
        let view = shard.view();
        let snapshot = &view.snapshot;
        let index = match at {
            Some((epoch, index)) if epoch == snapshot.epoch => index,
            _ => {
                let index = snapshot.listener_index.get(&*name).copied();
                at = Some((snapshot.epoch, index));
                index
            }
        };
        let listener = index.and_then(|i| snapshot.listeners.get(i));
        let Some(proxy) = listener.and_then(|l| l.udp.clone()) else {
            continue;
        };
        let w = shard.id;
        proxy.stats.inc(w, UdpStat::downstream_sess_rx_datagrams);
        proxy
            .stats
            .add(w, UdpStat::downstream_sess_rx_bytes, n as u64);
        let existing = sessions.borrow().get(&client).cloned();
        let session = match existing {
            Some(s) => s,
            None => match open(&shard, &proxy, client).await {
                Some(s) => {
                    sessions.borrow_mut().insert(client, s.clone());
                    monoio::spawn(answer(
                        socket.clone(),
                        s.clone(),
                        client,
                        proxy.clone(),
                        shard.clone(),
                        sessions.clone(),
                    ));
                    s
                }
                None => continue,
            },
        };
        session.last_active.set(Instant::now());
        // The receive buffer goes out as it is and comes back for the next.
        let (res, back) = session.upstream.send(buf.slice(..n)).await;
        buf = back.into_inner();
        match res {
            Ok(sent) => {
                proxy.cluster_stats.inc(w, ClusterUdp::sess_tx_datagrams);
                if let Some(c) = view.snapshot.clusters.get(proxy.cluster) {
                    c.stats
                        .add(w, ClusterStat::upstream_cx_tx_bytes_total, sent as u64);
                }
            }
            Err(_) => proxy.cluster_stats.inc(w, ClusterUdp::sess_tx_errors),
        }
    }
}

/// Opens a session for `client`: an endpoint of the cluster and a socket
/// connected to it. None (counted) when no endpoint can be had.
async fn open(shard: &Shard, proxy: &UdpProxy, client: SocketAddr) -> Option<Rc<Session>> {
    let w = shard.id;
    let view = shard.view();
    let hash = proxy
        .hash_source_ip
        .then(|| hashing::hash_value(client.ip().to_string().as_bytes()));
    let random = || shard.random();
    let Some(endpoint) = view.pick(proxy.cluster, hash, None, &random) else {
        proxy.stats.inc(w, UdpStat::downstream_sess_no_route);
        if let Some(c) = view.snapshot.clusters.get(proxy.cluster) {
            c.stats.inc(w, ClusterStat::upstream_cx_none_healthy);
        }
        return None;
    };
    let target = endpoint.addr.ip()?;
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = UdpSocket::bind(local).ok()?;
    upstream.connect(target).await.ok()?;
    proxy.stats.inc(w, UdpStat::downstream_sess_total);
    proxy.stats.inc(w, UdpStat::downstream_sess_active);
    Some(Rc::new(Session {
        upstream,
        last_active: Cell::new(Instant::now()),
    }))
}

/// Carries the upstream's datagrams back to `client` until the session
/// has been idle for the proxy's idle timeout, then closes it.
async fn answer(
    socket: Rc<UdpSocket>,
    session: Rc<Session>,
    client: SocketAddr,
    proxy: Arc<UdpProxy>,
    shard: Rc<Shard>,
    sessions: Sessions,
) {
    let w = shard.id;
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        let idle = async {
            let Some(idle) = proxy.idle_timeout else {
                return std::future::pending().await;
            };
            loop {
                let due = session.last_active.get() + idle;
                if Instant::now() >= due {
                    return;
                }
                monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
            }
        };
        let received = monoio::select! {
            r = session.upstream.recv(buf.slice_mut(..MAX_DATAGRAM)) => Some(r),
            _ = idle => None,
            _ = shard.drain.wait() => None,
        };
        let Some((res, slice)) = received else {
            proxy.stats.inc(w, UdpStat::idle_timeout);
            break;
        };
        buf = slice.into_inner();
        let Ok(n) = res else {
            proxy.cluster_stats.inc(w, ClusterUdp::sess_rx_errors);
            continue;
        };
        session.last_active.set(Instant::now());
        proxy.cluster_stats.inc(w, ClusterUdp::sess_rx_datagrams);
        if let Some(c) = shard.view().snapshot.clusters.get(proxy.cluster) {
            c.stats
                .add(w, ClusterStat::upstream_cx_rx_bytes_total, n as u64);
        }
        let (res, back) = socket.send_to(buf.slice(..n), client).await;
        buf = back.into_inner();
        match res {
            Ok(sent) => {
                proxy.stats.inc(w, UdpStat::downstream_sess_tx_datagrams);
                proxy
                    .stats
                    .add(w, UdpStat::downstream_sess_tx_bytes, sent as u64);
            }
            Err(_) => proxy.stats.inc(w, UdpStat::downstream_sess_tx_errors),
        }
    }
    sessions.borrow_mut().remove(&client);
    proxy.stats.dec(w, UdpStat::downstream_sess_active);
}
