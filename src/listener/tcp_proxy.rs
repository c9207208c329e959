//! `envoy.filters.network.tcp_proxy`: a connection relayed byte for byte
//! to an endpoint of a cluster, each direction closed on its own (a
//! client's half-close reaches the upstream as a FIN, and back), under the
//! idle timeout and the connection's maximum duration.

use crate::access_log::Record;
use crate::config::Priority;
use crate::http::body::{quiet_for, relay, Relayed, Source};
use crate::http::flags::ResponseFlags;
use crate::http::head::Peer;
use crate::net::Stream;
use crate::server::shard::Shard;
use crate::snapshot::TcpProxy;
use crate::stats::sets::{Cluster as ClusterStat, TcpProxy as TcpStat};
use crate::upstream::breakers::Resource;
use crate::upstream::connect::connect;
use crate::upstream::hashing;
use crate::upstream::lanes::{Admitted, Pending};
use crate::upstream::pool::PoolKey;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use std::cell::Cell;
use std::pin::pin;
use std::time::{Instant, SystemTime};

/// How a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides finished (or one failed).
    Closed,
    /// `idle_timeout`.
    Idle,
    /// `max_downstream_connection_duration`.
    Duration,
}

/// Relays `down` (with `replay`, bytes already read from it) to an
/// upstream of `proxy`'s cluster.
pub(super) async fn serve(
    mut down: Stream,
    replay: Vec<u8>,
    peer: Peer,
    shard: &Shard,
    proxy: &TcpProxy,
) {
    let w = shard.id;
    let started = Instant::now();
    let wall = SystemTime::now();
    proxy.stats.inc(w, TcpStat::downstream_cx_total);
    let view = shard.view();
    let Some(cluster_index) = pick_cluster(proxy, shard) else {
        proxy.stats.inc(w, TcpStat::downstream_cx_no_route);
        return;
    };
    let Some(cluster) = view.snapshot.clusters.get(cluster_index) else {
        proxy.stats.inc(w, TcpStat::downstream_cx_no_route);
        return;
    };
    let hash = if proxy.hash_source_ip {
        peer.remote
            .ip()
            .map(|a| hashing::hash_value(a.ip().to_string().as_bytes()))
    } else {
        None
    };
    let random = || shard.random();
    let mut flags = ResponseFlags::default();
    let mut upstream = None;
    let mut transport_failure = None;
    // As in Envoy, a connection over the cluster's max_connections is
    // refused at once rather than queued.
    let attempts = if cluster
        .breakers
        .can_create(Priority::Default, Resource::Connections)
    {
        proxy.max_connect_attempts
    } else {
        cluster.stats.inc(w, ClusterStat::upstream_cx_overflow);
        flags.insert(ResponseFlags::UPSTREAM_OVERFLOW);
        0
    };
    for _ in 0..attempts {
        let Some(endpoint) = view.pick(cluster_index, hash, None, &random) else {
            cluster.stats.inc(w, ClusterStat::upstream_cx_none_healthy);
            flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
            break;
        };
        let key = PoolKey {
            cluster: cluster.pool_id,
            server_name: cluster.server_name(endpoint, None).map(Box::from),
            priority: Priority::Default,
        };
        let Some(lane) = shard.lanes.lane(&endpoint.addr, &key, &cluster.breakers) else {
            cluster.stats.inc(w, ClusterStat::upstream_cx_pool_overflow);
            flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
            break;
        };
        let Some(_pending) = Pending::start(cluster, endpoint, Priority::Default, w) else {
            flags.insert(ResponseFlags::UPSTREAM_OVERFLOW);
            break;
        };
        // TCP connections are never pooled: nothing to retake.
        let none = || None::<std::convert::Infallible>;
        let permit = match lane.admit(cluster, w, endpoint, key, none).await {
            Admitted::Open(permit) => permit,
            Admitted::Pooled(never) => match never {},
        };
        match connect(shard, cluster, endpoint, None, permit).await {
            Ok(up) => {
                upstream = Some((up, endpoint.addr.clone()));
                break;
            }
            Err(failure) => {
                flags.insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                transport_failure = failure.transport;
            }
        }
    }
    let mut record = Record::new(wall, &[], peer.remote.clone(), peer.local.clone());
    record.protocol = "-";
    record.tls = peer.tls.as_deref();
    record.direct_remote = Some(
        peer.direct_remote
            .clone()
            .unwrap_or_else(|| peer.remote.clone()),
    );
    record.upstream_cluster = Some(cluster.name());
    let Some((mut up, addr)) = upstream else {
        record.upstream_transport_failure = transport_failure;
        if flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE) {
            flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        }
        record.flags = flags;
        record.duration = started.elapsed();
        shard.logs.log(&proxy.access_logs, &record);
        return;
    };
    record.upstream_host = Some(addr);
    let received = Cell::new(0u64);
    let sent = Cell::new(0u64);
    let end = both_ways(&mut down, replay, &mut up.stream, proxy, &received, &sent).await;
    match end {
        End::Idle => proxy.stats.inc(w, TcpStat::idle_timeout),
        End::Duration => {
            proxy
                .stats
                .inc(w, TcpStat::max_downstream_connection_duration);
            record.flags.insert(ResponseFlags::DURATION_TIMEOUT);
        }
        End::Closed => {}
    }
    let (rx, tx) = (received.get(), sent.get());
    proxy
        .stats
        .add(w, TcpStat::downstream_cx_rx_bytes_total, rx);
    proxy
        .stats
        .add(w, TcpStat::downstream_cx_tx_bytes_total, tx);
    cluster
        .stats
        .add(w, ClusterStat::upstream_cx_tx_bytes_total, rx);
    cluster
        .stats
        .add(w, ClusterStat::upstream_cx_rx_bytes_total, tx);
    record.bytes_received = rx;
    record.bytes_sent = tx;
    record.duration = started.elapsed();
    shard.logs.log(&proxy.access_logs, &record);
}

/// `cluster`, or a weighted draw among `weighted_clusters`.
fn pick_cluster(proxy: &TcpProxy, shard: &Shard) -> Option<usize> {
    let total: u64 = proxy.clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut draw = shard.random() % total;
    for (index, weight) in &proxy.clusters {
        let weight = u64::from(*weight);
        if draw < weight {
            return Some(*index);
        }
        draw -= weight;
    }
    None
}

/// Copies both ways until both directions have ended (each passing its
/// end on as a half-close), one fails, or a timeout fires.
async fn both_ways(
    down: &mut Stream,
    replay: Vec<u8>,
    up: &mut Stream,
    proxy: &TcpProxy,
    received: &Cell<u64>,
    sent: &Cell<u64>,
) -> End {
    let (Some(mut down_reader), Some(mut up_reader)) = (down.reader(), up.reader()) else {
        return End::Closed;
    };
    let last = Cell::new(Instant::now());
    if !replay.is_empty() {
        let n = replay.len() as u64;
        if up.write_all(replay).await.0.is_err() {
            return End::Closed;
        }
        received.set(n);
    }
    let mut upward = pin!(copy(&mut down_reader, up, received, &last));
    let mut downward = pin!(copy(&mut up_reader, down, sent, &last));
    let deadline = proxy.max_duration.map(|d| monoio::time::Instant::now() + d);
    let mut duration = pin!(async {
        match deadline {
            Some(at) => monoio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    });
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let idle = quiet_for(&last, proxy.idle_timeout);
        monoio::select! {
            ok = &mut upward, if !up_done => {
                if !ok { return End::Closed; }
                up_done = true;
            }
            ok = &mut downward, if !down_done => {
                if !ok { return End::Closed; }
                down_done = true;
            }
            _ = idle => return End::Idle,
            _ = &mut duration => return End::Duration,
        }
    }
    End::Closed
}

/// Copies `src` to `dst` until `src` ends, then shuts `dst`'s write side.
/// False when either side failed.
async fn copy<R: Source>(
    src: &mut R,
    dst: &mut Stream,
    moved: &Cell<u64>,
    last: &Cell<Instant>,
) -> bool {
    match relay(src, dst, moved, last).await {
        Relayed::SourceEnded => dst.shutdown().await.is_ok(),
        Relayed::SourceFailed | Relayed::DestinationFailed => false,
    }
}
