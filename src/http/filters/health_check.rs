//! `envoy.filters.http.health_check`: a request matching its `headers` is
//! a health check of this proxy. Outside pass-through mode it is answered
//! here: 200, or 503 when `/healthcheck/fail` was called or one of the
//! `cluster_min_healthy_percentages` clusters has too few healthy hosts.
//! In pass-through mode it goes upstream unless this proxy is failing.
//! Its responses name this proxy's service cluster; while failing, every
//! other response carries `x-envoy-immediate-health-check-fail`.

use super::{Context, Decision, ResponseStep};
use crate::config::{HeaderMatcher, HealthCheckFilter};
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::RequestView;
use crate::server::shard::{Shard, View};
use crate::stats::{sets, Scope};
use std::sync::Arc;

/// The filter, compiled.
#[derive(Debug)]
pub struct HealthCheck {
    pass_through: bool,
    headers: Vec<HeaderMatcher>,
    /// The clusters whose health decides, by position (None: no such
    /// cluster), with the percentage of hosts that must be healthy.
    min_healthy: Vec<(Option<usize>, f64)>,
    service_cluster: String,
    stats: Arc<Scope<sets::HealthCheckFilter>>,
}

impl HealthCheck {
    /// Compiles `config`.
    pub fn compile(config: &HealthCheckFilter, cx: &Context) -> HealthCheck {
        HealthCheck {
            pass_through: config.pass_through,
            headers: config.headers.clone(),
            min_healthy: config
                .min_healthy
                .iter()
                .map(|(name, percent)| (cx.clusters.get(name).copied(), *percent))
                .collect(),
            service_cluster: cx.service_cluster.to_string(),
            stats: cx.store.health_check_filter(cx.stat_prefix),
        }
    }

    /// The request-headers phase.
    pub fn on_request(&self, request: &RequestView, shard: &Shard, decision: &mut Decision) {
        let failing = shard.stats.healthcheck_failed();
        let is_check = self
            .headers
            .iter()
            .all(|h| h.matches(request.header(&h.name).as_deref()));
        if is_check {
            decision.filtered.health_check = true;
            decision.filtered.response.push(ResponseStep::Add(
                "x-envoy-upstream-healthchecked-cluster".to_string(),
                self.service_cluster.as_bytes().to_vec(),
            ));
        }
        if failing {
            decision.filtered.response.push(ResponseStep::Add(
                "x-envoy-immediate-health-check-fail".to_string(),
                b"true".to_vec(),
            ));
        }
        if !is_check || (self.pass_through && !failing) {
            return;
        }
        // Counted when answered here, as Envoy counts them.
        let w = shard.id;
        self.stats.inc(w, sets::HealthCheckFilter::request_total);
        let status = match failing {
            true => 503,
            false => self.status(&shard.view()),
        };
        let counter = match status {
            200 => sets::HealthCheckFilter::ok,
            _ => sets::HealthCheckFilter::failed,
        };
        self.stats.inc(w, counter);
        let flags = match status {
            200 => ResponseFlags::default(),
            _ => ResponseFlags::FAILED_LOCAL_HEALTH_CHECK,
        };
        decision.reply = Some((LocalReply::new(status, ""), flags));
    }

    /// 200, or 503 when a cluster it watches is missing, empty (unless 0%
    /// will do) or short of healthy hosts.
    fn status(&self, view: &View) -> u16 {
        let w = view.shard();
        for (at, percent) in &self.min_healthy {
            let Some(cluster) = at.and_then(|i| view.snapshot.clusters.get(i)) else {
                self.stats
                    .inc(w, sets::HealthCheckFilter::failed_cluster_not_found);
                return 503;
            };
            let total = cluster.endpoints.len();
            if total == 0 {
                if *percent == 0.0 {
                    continue;
                }
                self.stats
                    .inc(w, sets::HealthCheckFilter::failed_cluster_empty);
                return 503;
            }
            let healthy = cluster
                .endpoints
                .iter()
                .filter(|e| cluster.host_flags(e).healthy())
                .count();
            if (healthy as f64) < total as f64 * percent / 100.0 {
                self.stats
                    .inc(w, sets::HealthCheckFilter::failed_cluster_unhealthy);
                return 503;
            }
        }
        200
    }
}
