//! `envoy.filters.http.fault`: delays and aborts a share of the requests
//! that match its `headers` (and go to its `upstream_cluster`), with the
//! delay and the status fixed in its config or asked for by the request's
//! `x-envoy-fault-*` headers. A route's `typed_per_filter_config` may
//! replace its settings. A delay holds the request before it is routed
//! further (flag DI); an abort answers "fault filter abort" (flag FI).

use super::{Context, Decision};
use crate::config::{AbortWith, DelayBy, FaultConfig, Fraction};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::RequestView;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The filter, compiled.
#[derive(Debug)]
pub struct Fault {
    config: FaultConfig,
    active: Arc<Active>,
}

/// The faults in progress across every shard, and the filter's stats.
#[derive(Debug)]
struct Active {
    count: AtomicU64,
    stats: Arc<Scope<sets::Fault>>,
}

/// A fault in progress: counted in `active_faults` until its request ends
/// (when this is dropped).
#[derive(Debug)]
pub struct ActiveFault {
    active: Arc<Active>,
    shard: usize,
}

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.active.count.fetch_sub(1, Ordering::Relaxed);
        self.active
            .stats
            .dec(self.shard, sets::Fault::active_faults);
    }
}

impl Fault {
    /// Compiles `config`.
    pub fn compile(config: &FaultConfig, cx: &Context) -> Fault {
        Fault {
            config: config.clone(),
            active: Arc::new(Active {
                count: AtomicU64::new(0),
                stats: cx.store.fault(cx.stat_prefix),
            }),
        }
    }

    /// The request-headers phase, with the route's own settings when it
    /// has them.
    pub fn on_request(
        &self,
        request: &RequestView,
        cluster: Option<usize>,
        route_config: Option<&FaultConfig>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let config = route_config.unwrap_or(&self.config);
        let applies = config
            .headers
            .iter()
            .all(|h| h.matches(request.header(&h.name).as_deref()));
        if !applies || !goes_to(config, cluster, shard) {
            return;
        }
        let delay = config.delay.and_then(|(by, share)| {
            let by = match by {
                DelayBy::Fixed(d) => d,
                DelayBy::Header => {
                    Duration::from_millis(header_number(request, "x-envoy-fault-delay-request")?)
                }
            };
            let share = header_share(request, "x-envoy-fault-delay-request-percentage", share);
            drawn(share, shard).then_some(by)
        });
        let abort = config.abort.and_then(|(with, share)| {
            let reply = match with {
                AbortWith::Http(status) => LocalReply::new(status, ABORT_BODY),
                AbortWith::Grpc(status) => grpc_abort(status),
                AbortWith::Header => header_abort(request)?,
            };
            let share = header_share(request, "x-envoy-fault-abort-request-percentage", share);
            drawn(share, shard).then_some(reply)
        });
        if delay.is_none() && abort.is_none() {
            return;
        }
        let stats = &self.active.stats;
        let w = shard.id;
        let limit = config.max_active_faults.unwrap_or(u64::MAX);
        if self.active.count.load(Ordering::Relaxed) >= limit {
            stats.inc(w, sets::Fault::faults_overflow);
            return;
        }
        self.active.count.fetch_add(1, Ordering::Relaxed);
        stats.inc(w, sets::Fault::active_faults);
        decision.filtered.fault = Some(ActiveFault {
            active: self.active.clone(),
            shard: w,
        });
        if let Some(delay) = delay {
            stats.inc(w, sets::Fault::delays_injected);
            decision.filtered.delay = Some(delay);
        }
        if let Some(reply) = abort {
            stats.inc(w, sets::Fault::aborts_injected);
            decision.reply = Some((reply, ResponseFlags::FAULT_INJECTED));
        }
    }
}

/// The body of an aborted request's answer.
const ABORT_BODY: &str = "fault filter abort";

/// Whether the request goes to `upstream_cluster` (its route's chosen
/// `cluster`); always, without one.
fn goes_to(config: &FaultConfig, cluster: Option<usize>, shard: &Shard) -> bool {
    let Some(wanted) = &config.upstream_cluster else {
        return true;
    };
    cluster.is_some_and(|c| {
        let view = shard.view();
        view.snapshot
            .clusters
            .get(c)
            .is_some_and(|c| c.name() == wanted)
    })
}

/// A gRPC abort: HTTP 200 carrying `status`.
fn grpc_abort(status: u32) -> LocalReply<'static> {
    let mut reply = LocalReply::new(200, ABORT_BODY);
    reply.grpc_status = Some(status.min(u32::from(u8::MAX)) as u8);
    reply
}

/// The abort a request asks for in its headers: an HTTP status in
/// [200, 600), else a gRPC status; none when neither is valid.
fn header_abort(request: &RequestView) -> Option<LocalReply<'static>> {
    let http = header_number(request, "x-envoy-fault-abort-request")
        .filter(|s| (200..600).contains(s))
        .map(|s| LocalReply::new(s as u16, ABORT_BODY));
    http.or_else(|| {
        let grpc = header_number(request, "x-envoy-fault-abort-grpc-request")?;
        Some(grpc_abort(u32::try_from(grpc).ok()?))
    })
}

/// A header's value as a number.
fn header_number(request: &RequestView, name: &str) -> Option<u64> {
    request.header(name)?.trim().parse().ok()
}

/// The share a request's percentage header asks for, at most the
/// configured one (with its denominator).
fn header_share(request: &RequestView, name: &str, configured: Fraction) -> Fraction {
    match header_number(request, name) {
        Some(n) => Fraction {
            numerator: n.min(configured.numerator),
            ..configured
        },
        None => configured,
    }
}

/// Whether this request falls in `share`.
fn drawn(share: Fraction, shard: &Shard) -> bool {
    share.numerator > 0 && shard.random() % share.denominator < share.numerator
}
