//! An attempt without a pooled connection under the cluster's circuit
//! breakers: it is pending (counted against `max_pending_requests`) until
//! it has a connection, and it may wait — within the route timeout — for
//! one of its lane's connections at `max_connections`.

use super::AttemptPlan;
use crate::http::conn::Exchange;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::stats::sets::Cluster as ClusterStat;
use crate::upstream::lanes::{Admitted, Pending};
use crate::upstream::pool::PoolWant;
use std::time::Instant;

/// The 503 Envoy answers a request a circuit breaker turned away.
pub(super) fn overflow_reply() -> LocalReply<'static> {
    let mut reply = LocalReply::upstream_reset("overflow");
    reply
        .headers
        .push(("x-envoy-overloaded".into(), b"true".to_vec()));
    reply
}

/// For an attempt that found no usable pooled connection for `want`: its
/// connection pool (Envoy's per-worker pool to the host), then its place
/// as a pending request, then leave to open a connection or a pooled one
/// `retake` found after waiting for the lane. The pending place is kept
/// until the attempt has its connection. Err is the answer when the
/// cluster has no room for another pool or another pending request, or
/// the route timeout ran out while waiting.
pub(super) async fn admitted<'a, T>(
    x: &Exchange<'_>,
    plan: &AttemptPlan<'a>,
    want: &PoolWant<'_>,
    retake: impl FnMut() -> Option<T>,
) -> Result<(Admitted<T>, Pending<'a>), LocalReply<'static>> {
    let (cluster, w) = (plan.cluster, x.shard.id);
    let key = want.key();
    let Some(lane) = x
        .shard
        .lanes
        .lane(&plan.endpoint.addr, &key, &cluster.breakers)
    else {
        cluster.stats.inc(w, ClusterStat::upstream_cx_pool_overflow);
        x.flag(ResponseFlags::NO_HEALTHY_UPSTREAM);
        return Err(LocalReply::new(503, "no healthy upstream"));
    };
    let Some(pending) = Pending::start(cluster, plan.endpoint, plan.priority, w) else {
        x.flag(ResponseFlags::UPSTREAM_OVERFLOW);
        return Err(overflow_reply());
    };
    let admit = lane.admit(cluster, w, plan.endpoint, key, retake);
    let deadline = plan.route_deadline(Instant::now());
    let admitted = match deadline {
        Some(at) => monoio::time::timeout_at(at.into(), admit).await.ok(),
        None => Some(admit.await),
    };
    match admitted {
        Some(admitted) => Ok((admitted, pending)),
        None => {
            cluster.stats.inc(w, ClusterStat::upstream_rq_timeout);
            x.flag(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
            Err(LocalReply::new(504, "upstream request timeout"))
        }
    }
}
