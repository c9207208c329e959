//! Outlier detection, as Envoy does it: shards count each host's
//! consecutive errors and its successes per interval in shared atomics,
//! and tell the main thread when a host reaches a consecutive-error
//! threshold; the main thread decides ejections (within
//! `max_ejection_percent`, rolled against `enforcing_*`), reviews them
//! every `interval` (unejection after `base_ejection_time` times the
//! host's ejection count, capped; success-rate and failure-percentage
//! ejections), and publishes the hosts left for load balancing as a new
//! snapshot.

use crate::config::OutlierDetection;
use crate::net::Address;
use crate::stats::sets::Outlier as Stat;
use crate::stats::Scope;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one attempt came to, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection could not be made, or broke before an answer.
    ConnectFailed,
    /// No answer in time.
    Timeout,
}

/// Why a host is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ejection {
    /// `consecutive_5xx`.
    Consecutive5xx,
    /// `consecutive_gateway_failure`.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure`.
    ConsecutiveLocalOriginFailure,
    /// The success-rate detector.
    SuccessRate,
    /// The success-rate detector over local-origin errors.
    LocalOriginSuccessRate,
    /// The failure-percentage detector.
    FailurePercentage,
    /// The failure-percentage detector over local-origin errors.
    LocalOriginFailurePercentage,
}

impl Ejection {
    /// Its `enforcing_*` percentage.
    fn enforcing(self, c: &OutlierDetection) -> u64 {
        match self {
            Ejection::Consecutive5xx => c.consecutive_5xx.1,
            Ejection::ConsecutiveGatewayFailure => c.consecutive_gateway_failure.1,
            Ejection::ConsecutiveLocalOriginFailure => c.consecutive_local_origin_failure.1,
            Ejection::SuccessRate => c.enforcing_success_rate,
            Ejection::LocalOriginSuccessRate => c.enforcing_local_origin_success_rate,
            Ejection::FailurePercentage => c.enforcing_failure_percentage,
            Ejection::LocalOriginFailurePercentage => c.enforcing_failure_percentage_local_origin,
        }
    }

    /// Its name in the event log (`OutlierEjectionType`).
    fn event_name(self) -> &'static str {
        match self {
            Ejection::Consecutive5xx => "CONSECUTIVE_5XX",
            Ejection::ConsecutiveGatewayFailure => "CONSECUTIVE_GATEWAY_FAILURE",
            Ejection::ConsecutiveLocalOriginFailure => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
            Ejection::SuccessRate => "SUCCESS_RATE",
            Ejection::LocalOriginSuccessRate => "SUCCESS_RATE_LOCAL_ORIGIN",
            Ejection::FailurePercentage => "FAILURE_PERCENTAGE",
            Ejection::LocalOriginFailurePercentage => "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
        }
    }

    /// Its `ejections_detected_*` and `ejections_enforced_*` counters.
    fn stats(self) -> (Stat, Stat) {
        match self {
            Ejection::Consecutive5xx => (
                Stat::ejections_detected_consecutive_5xx,
                Stat::ejections_enforced_consecutive_5xx,
            ),
            Ejection::ConsecutiveGatewayFailure => (
                Stat::ejections_detected_consecutive_gateway_failure,
                Stat::ejections_enforced_consecutive_gateway_failure,
            ),
            Ejection::ConsecutiveLocalOriginFailure => (
                Stat::ejections_detected_consecutive_local_origin_failure,
                Stat::ejections_enforced_consecutive_local_origin_failure,
            ),
            Ejection::SuccessRate => (
                Stat::ejections_detected_success_rate,
                Stat::ejections_enforced_success_rate,
            ),
            Ejection::LocalOriginSuccessRate => (
                Stat::ejections_detected_local_origin_success_rate,
                Stat::ejections_enforced_local_origin_success_rate,
            ),
            Ejection::FailurePercentage => (
                Stat::ejections_detected_failure_percentage,
                Stat::ejections_enforced_failure_percentage,
            ),
            Ejection::LocalOriginFailurePercentage => (
                Stat::ejections_detected_local_origin_failure_percentage,
                Stat::ejections_enforced_local_origin_failure_percentage,
            ),
        }
    }
}

/// Requests and successes in the current interval.
#[derive(Debug, Default)]
struct Bucket {
    total: AtomicU64,
    success: AtomicU64,
}

impl Bucket {
    fn count(&self, success: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if success {
            self.success.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The interval's (success rate %, requests), starting the next.
    fn take(&self) -> Option<(f64, u64)> {
        let total = self.total.swap(0, Ordering::Relaxed);
        let success = self.success.swap(0, Ordering::Relaxed);
        (total > 0).then(|| (success.min(total) as f64 * 100.0 / total as f64, total))
    }
}

/// One host's counts, shared by every shard and carried to the next
/// snapshot's copy of the host.
#[derive(Debug, Default)]
pub struct HostMonitor {
    consecutive_5xx: AtomicU64,
    consecutive_gateway: AtomicU64,
    consecutive_local: AtomicU64,
    external: Bucket,
    local: Bucket,
}

impl HostMonitor {
    /// Counts an attempt's outcome; the consecutive-error ejections it
    /// brings the host to (each exactly at its threshold, as Envoy fires
    /// them once per bout).
    pub fn report(&self, c: &OutlierDetection, outcome: Outcome) -> Fired {
        let mut fired = Fired::default();
        let status = match (outcome, c.split_local_origin) {
            (Outcome::Status(s), _) => s,
            (Outcome::ConnectFailed, false) => 503,
            (Outcome::Timeout, false) => 504,
            (_, true) => {
                self.local.count(false);
                let n = self.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                if n == c.consecutive_local_origin_failure.0 {
                    fired.push(Ejection::ConsecutiveLocalOriginFailure);
                }
                return fired;
            }
        };
        if c.split_local_origin {
            // The connection worked: a local-origin success.
            self.local.count(true);
            self.consecutive_local.store(0, Ordering::Relaxed);
        }
        if (500..600).contains(&status) {
            self.external.count(false);
            if matches!(status, 502..=504) {
                let n = self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
                if n == c.consecutive_gateway_failure.0 {
                    fired.push(Ejection::ConsecutiveGatewayFailure);
                }
            } else {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
            }
            let n = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            if n == c.consecutive_5xx.0 {
                fired.push(Ejection::Consecutive5xx);
            }
        } else {
            self.external.count(true);
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        fired
    }

    fn reset(&self, kind: Ejection) {
        let counter = match kind {
            Ejection::Consecutive5xx => &self.consecutive_5xx,
            Ejection::ConsecutiveGatewayFailure => &self.consecutive_gateway,
            Ejection::ConsecutiveLocalOriginFailure => &self.consecutive_local,
            _ => return,
        };
        counter.store(0, Ordering::Relaxed);
    }
}

/// The consecutive-error thresholds one outcome reached (at most two: a
/// gateway error counts as a 5xx too).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fired([Option<Ejection>; 2]);

impl Fired {
    fn push(&mut self, kind: Ejection) {
        if let Some(slot) = self.0.iter_mut().find(|s| s.is_none()) {
            *slot = Some(kind);
        }
    }

    /// The thresholds reached.
    pub fn kinds(&self) -> impl Iterator<Item = Ejection> + '_ {
        self.0.iter().flatten().copied()
    }
}

/// A shard's word to the main thread: a host of a cluster reached a
/// consecutive-error threshold.
#[derive(Debug, Clone)]
pub struct Event {
    /// The cluster's name.
    pub cluster: String,
    /// Its pooled connections' id (a changed configuration has another).
    pub pool_id: usize,
    /// The host.
    pub addr: Address,
    /// Which threshold.
    pub kind: Ejection,
}

/// The main thread's record of one host.
#[derive(Debug, Default)]
struct HostRecord {
    ejected_at: Option<Instant>,
    /// How many base ejection times the next ejection lasts.
    backoff: u32,
    jitter: Duration,
    last_unejected: Option<Instant>,
    /// When it was last ejected.
    last_ejected: Option<Instant>,
    /// How many times it has been ejected.
    ejections: u32,
}

/// What the event log says of a success-rate or failure-percentage
/// ejection: the host's success rate, and the cluster's average and
/// ejection threshold (success rate only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    host: f64,
    cluster: Option<(f64, f64)>,
}

/// `cluster_manager.outlier_detection.event_log_path`: one JSON line per
/// ejection and unejection, as Envoy writes its `OutlierDetectionEvent`s.
#[derive(Debug)]
pub struct EventLog {
    file: std::fs::File,
}

impl EventLog {
    /// Opens (appending, creating) the log at `path`.
    pub fn open(path: &std::path::Path) -> std::io::Result<EventLog> {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog { file })
    }

    /// Writes one event, its fields in Envoy's (proto) order.
    fn write(&self, event: &LogEvent<'_>) {
        let since = event
            .since
            .map(|at| format!(",\"secs_since_last_action\":\"{}\"", at.elapsed().as_secs()))
            .unwrap_or_default();
        let (action, detail) = match event.ejection {
            Some((kind, _, rates)) => ("EJECT", detail(kind, rates)),
            None => ("UNEJECT", String::new()),
        };
        let kind = event
            .ejection
            .map_or(Ejection::Consecutive5xx, |(k, _, _)| k);
        let enforced = event.ejection.is_some_and(|(_, enforced, _)| enforced);
        let line = format!(
            "{{\"type\":\"{}\",\"timestamp\":\"{}\"{since},\"cluster_name\":{},\"upstream_url\":{},\"action\":\"{action}\",\"num_ejections\":{},\"enforced\":{enforced}{detail}}}\n",
            kind.event_name(),
            crate::admin::dump::rfc3339(std::time::SystemTime::now()),
            serde_json::json!(event.cluster),
            serde_json::json!(event.addr.to_string()),
            event.ejections,
        );
        if let Err(e) = (&self.file).write_all(line.as_bytes()) {
            log::warn!("outlier detection event log: {e}");
        }
    }
}

/// The event-specific part of an ejection's line.
fn detail(kind: Ejection, rates: Option<Rates>) -> String {
    let percent = |rate: f64| rate.clamp(0.0, 100.0) as u32;
    match (kind, rates) {
        (Ejection::SuccessRate | Ejection::LocalOriginSuccessRate, Some(r)) => {
            let (average, threshold) = r.cluster.unwrap_or_default();
            format!(
                ",\"eject_success_rate_event\":{{\"host_success_rate\":{},\"cluster_average_success_rate\":{},\"cluster_success_rate_ejection_threshold\":{}}}",
                percent(r.host),
                percent(average),
                percent(threshold)
            )
        }
        (Ejection::FailurePercentage | Ejection::LocalOriginFailurePercentage, Some(r)) => {
            format!(
                ",\"eject_failure_percentage_event\":{{\"host_success_rate\":{}}}",
                percent(r.host)
            )
        }
        _ => ",\"eject_consecutive_event\":{}".to_string(),
    }
}

/// One line of the event log.
struct LogEvent<'a> {
    cluster: &'a str,
    addr: &'a Address,
    /// An ejection (its kind, whether enforced, its rates), or None for
    /// an unejection.
    ejection: Option<(Ejection, bool, Option<Rates>)>,
    /// The host's last action before this one.
    since: Option<Instant>,
    ejections: u32,
}

/// Ends a host's ejection at `now`; its consecutive-error counts start
/// over, so that a few new errors do not eject it again at once.
fn uneject(record: &mut HostRecord, monitor: &HostMonitor, now: Instant) {
    record.ejected_at = None;
    record.last_unejected = Some(now);
    for kind in [
        Ejection::Consecutive5xx,
        Ejection::ConsecutiveGatewayFailure,
        Ejection::ConsecutiveLocalOriginFailure,
    ] {
        monitor.reset(kind);
    }
}

/// One cluster's detector, on the main thread.
pub struct Detector {
    /// The configuration it runs (and its cluster's pool id: a changed
    /// configuration starts a new detector).
    pub pool_id: usize,
    config: OutlierDetection,
    stats: std::sync::Arc<Scope<Stat>>,
    hosts: HashMap<Address, HostRecord>,
    /// Its cluster's name (for the event log).
    cluster: String,
    log: Option<Arc<EventLog>>,
    /// When the next interval review is due.
    pub due: Instant,
}

/// A host of the cluster, as the detector sees it.
pub struct Host<'a> {
    /// Its address.
    pub addr: &'a Address,
    /// Its shared counts.
    pub monitor: &'a HostMonitor,
}

impl Detector {
    /// A detector for cluster `cluster` with `config` and stats `stats`,
    /// writing its events to `log`, if any.
    pub fn new(
        pool_id: usize,
        config: OutlierDetection,
        stats: std::sync::Arc<Scope<Stat>>,
        cluster: &str,
        log: Option<Arc<EventLog>>,
    ) -> Self {
        Detector {
            pool_id,
            due: Instant::now() + config.interval,
            config,
            stats,
            hosts: HashMap::new(),
            cluster: cluster.to_string(),
            log,
        }
    }

    /// Writes an unejection of `addr` (whose record is `record`) to the
    /// event log, if there is one.
    fn log_uneject(&self, addr: &Address, record: &HostRecord) {
        if let Some(log) = &self.log {
            log.write(&LogEvent {
                cluster: &self.cluster,
                addr,
                ejection: None,
                since: record.last_ejected,
                ejections: record.ejections,
            });
        }
    }

    /// The hosts ejected now.
    pub fn ejected(&self) -> HashSet<Address> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.ejected_at.is_some())
            .map(|(a, _)| a.clone())
            .collect()
    }

    fn is_ejected(&self, addr: &Address) -> bool {
        self.hosts.get(addr).is_some_and(|h| h.ejected_at.is_some())
    }

    /// Forgets hosts the cluster no longer has.
    pub fn keep_only(&mut self, hosts: &[Host<'_>]) {
        let present: HashSet<&Address> = hosts.iter().map(|h| h.addr).collect();
        self.hosts.retain(|a, _| present.contains(a));
        self.publish_active();
    }

    fn publish_active(&self) {
        let active = self
            .hosts
            .values()
            .filter(|h| h.ejected_at.is_some())
            .count();
        self.stats
            .set(self.stats.main_row(), Stat::ejections_active, active as u64);
    }

    /// An active health check passed on `host`: with
    /// `successful_active_health_check_uneject_host`, its ejection ends.
    /// True when it was ejected.
    pub fn health_check_passed(&mut self, host: &Host<'_>) -> bool {
        if !self.config.uneject_on_health_check {
            return false;
        }
        let Some(record) = self.hosts.get_mut(host.addr) else {
            return false;
        };
        if record.ejected_at.is_none() {
            return false;
        }
        uneject(record, host.monitor, Instant::now());
        if let Some(record) = self.hosts.get(host.addr) {
            self.log_uneject(host.addr, record);
        }
        self.publish_active();
        true
    }

    /// A host reached a consecutive-error threshold: ejects it (unless it
    /// is ejected already); true when the set of ejected hosts changed.
    pub fn on_event(
        &mut self,
        hosts: &[Host<'_>],
        addr: &Address,
        kind: Ejection,
        random: u64,
    ) -> bool {
        let Some(host) = hosts.iter().find(|h| h.addr == addr) else {
            return false;
        };
        if self.is_ejected(addr) {
            return false;
        }
        let w = self.stats.main_row();
        self.stats.inc(w, kind.stats().0);
        let changed = self.eject(hosts.len(), addr, (kind, None), random);
        if kind == Ejection::Consecutive5xx {
            self.stats.inc(w, Stat::ejections_consecutive_5xx);
        }
        host.monitor.reset(kind);
        changed
    }

    /// Ejects `addr` for `kind` (found with `rates`) if
    /// `max_ejection_percent` allows and the `enforcing_*` roll says so;
    /// true when it was ejected.
    fn eject(
        &mut self,
        host_count: usize,
        addr: &Address,
        (kind, rates): (Ejection, Option<Rates>),
        random: u64,
    ) -> bool {
        let w = self.stats.main_row();
        let active = self
            .hosts
            .values()
            .filter(|h| h.ejected_at.is_some())
            .count();
        let percent = 100.0 * (active + 1) as f64 / host_count.max(1) as f64;
        let allowed = percent <= self.config.max_ejection_percent.min(100) as f64
            || (self.config.always_eject_one_host && active == 0);
        if !allowed {
            self.stats.inc(w, Stat::ejections_overflow);
            return false;
        }
        if matches!(kind, Ejection::Consecutive5xx | Ejection::SuccessRate) {
            self.stats.inc(w, Stat::ejections_total);
        }
        let enforced = random % 100 < kind.enforcing(&self.config);
        if let Some(log) = &self.log {
            let record = self.hosts.get(addr);
            log.write(&LogEvent {
                cluster: &self.cluster,
                addr,
                ejection: Some((kind, enforced, rates)),
                since: record.and_then(|r| r.last_unejected),
                ejections: record.map_or(0, |r| r.ejections) + u32::from(enforced),
            });
        }
        if !enforced {
            return false;
        }
        self.stats.inc(w, Stat::ejections_enforced_total);
        self.stats.inc(w, kind.stats().1);
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        let jitter_ms = self.config.max_ejection_time_jitter.as_millis() as u64;
        let record = self.hosts.entry(addr.clone()).or_default();
        record.ejected_at = Some(Instant::now());
        record.last_ejected = record.ejected_at;
        record.ejections += 1;
        record.jitter = Duration::from_millis(random.rotate_left(17) % (jitter_ms + 1));
        if base * record.backoff < max + base {
            record.backoff += 1;
        }
        self.publish_active();
        true
    }

    /// The interval review: unejects hosts whose time is up, judges
    /// success rates and failure percentages, and eases the backoff of
    /// hosts that stayed in. True when the ejected set changed.
    pub fn review(&mut self, hosts: &[Host<'_>], mut random: impl FnMut() -> u64) -> bool {
        let now = Instant::now();
        self.due = now + self.config.interval;
        let mut changed = false;
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        for host in hosts {
            let Some(record) = self.hosts.get_mut(host.addr) else {
                continue;
            };
            let Some(at) = record.ejected_at else {
                continue;
            };
            if (base * record.backoff).min(max) + record.jitter <= now - at {
                uneject(record, host.monitor, now);
                changed = true;
                if let Some(record) = self.hosts.get(host.addr) {
                    self.log_uneject(host.addr, record);
                }
            }
        }
        let external: Vec<_> = hosts.iter().map(|h| h.monitor.external.take()).collect();
        let local: Vec<_> = hosts.iter().map(|h| h.monitor.local.take()).collect();
        for (rates, kinds) in [
            (
                external,
                (Ejection::SuccessRate, Ejection::FailurePercentage),
            ),
            (
                local,
                (
                    Ejection::LocalOriginSuccessRate,
                    Ejection::LocalOriginFailurePercentage,
                ),
            ),
        ] {
            for (i, kind, found) in self.judge(hosts, &rates, kinds) {
                let w = self.stats.main_row();
                self.stats.inc(w, kind.stats().0);
                if kind == Ejection::SuccessRate || kind == Ejection::LocalOriginSuccessRate {
                    self.stats.inc(w, Stat::ejections_success_rate);
                }
                changed |= self.eject(hosts.len(), hosts[i].addr, (kind, Some(found)), random());
            }
        }
        let interval = self.config.interval;
        for record in self.hosts.values_mut() {
            let stayed_in = record.ejected_at.is_none()
                && record.last_unejected.is_some_and(|u| now - u >= interval);
            if stayed_in {
                record.backoff = record.backoff.saturating_sub(1);
            }
        }
        self.publish_active();
        changed
    }

    /// The hosts (by index) the success-rate and failure-percentage
    /// detectors eject given each host's interval `(success %, volume)`.
    fn judge(
        &self,
        hosts: &[Host<'_>],
        rates: &[Option<(f64, u64)>],
        (by_rate, by_failures): (Ejection, Ejection),
    ) -> Vec<(usize, Ejection, Rates)> {
        let (sr, fp) = (self.config.success_rate, self.config.failure_percentage);
        let mut out = Vec::new();
        let total = hosts.len() as u64;
        if total < sr.minimum_hosts && total < fp.minimum_hosts {
            return out;
        }
        let eligible = |i: usize| !self.is_ejected(hosts[i].addr);
        let judged = |volume: u64| -> Vec<(usize, f64)> {
            rates
                .iter()
                .enumerate()
                .filter(|&(i, _)| eligible(i))
                .filter_map(|(i, r)| r.filter(|(_, v)| *v >= volume).map(|(rate, _)| (i, rate)))
                .collect()
        };
        let by_volume = judged(sr.request_volume);
        if !by_volume.is_empty() && by_volume.len() as u64 >= sr.minimum_hosts {
            let n = by_volume.len() as f64;
            let mean = by_volume.iter().map(|(_, r)| r).sum::<f64>() / n;
            let variance = by_volume
                .iter()
                .map(|(_, r)| (r - mean).powi(2))
                .sum::<f64>()
                / n;
            let threshold = mean - sr.stdev_factor * variance.sqrt();
            out.extend(
                by_volume
                    .iter()
                    .filter(|(_, r)| *r < threshold)
                    .map(|&(i, r)| {
                        let found = Rates {
                            host: r,
                            cluster: Some((mean, threshold)),
                        };
                        (i, by_rate, found)
                    }),
            );
        }
        let by_volume = judged(fp.request_volume);
        if !by_volume.is_empty() && by_volume.len() as u64 >= fp.minimum_hosts {
            out.extend(
                by_volume
                    .iter()
                    .filter(|(_, r)| 100.0 - r >= fp.threshold as f64)
                    .map(|&(i, r)| {
                        let found = Rates {
                            host: r,
                            cluster: None,
                        };
                        (i, by_failures, found)
                    }),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierDetection {
        OutlierDetection::default()
    }

    #[test]
    fn five_consecutive_5xx_fire_once() {
        let (m, c) = (HostMonitor::default(), config());
        let kinds = |f: Fired| f.kinds().collect::<Vec<_>>();
        for _ in 0..4 {
            assert!(kinds(m.report(&c, Outcome::Status(500))).is_empty());
        }
        assert_eq!(
            kinds(m.report(&c, Outcome::Status(500))),
            vec![Ejection::Consecutive5xx]
        );
        assert!(kinds(m.report(&c, Outcome::Status(500))).is_empty());
    }

    #[test]
    fn a_success_resets_the_bout_and_gateway_errors_count_both_ways() {
        let (m, c) = (HostMonitor::default(), config());
        for _ in 0..4 {
            m.report(&c, Outcome::Status(503));
        }
        m.report(&c, Outcome::Status(200));
        let kinds = |f: Fired| f.kinds().collect::<Vec<_>>();
        for _ in 0..4 {
            assert!(kinds(m.report(&c, Outcome::Timeout)).is_empty());
        }
        // A timeout is a 504 without the split: both bouts reach 5.
        assert_eq!(
            kinds(m.report(&c, Outcome::ConnectFailed)),
            vec![
                Ejection::ConsecutiveGatewayFailure,
                Ejection::Consecutive5xx
            ]
        );
    }

    #[test]
    fn success_rate_ejects_below_the_mean_less_the_deviations() {
        let store = crate::stats::Store::new(1);
        let config = OutlierDetection {
            max_ejection_percent: 20,
            ..config()
        };
        let mut d = Detector::new(0, config, store.outlier("c"), "c", None);
        let monitors: Vec<HostMonitor> = (0..5).map(|_| HostMonitor::default()).collect();
        let addrs: Vec<Address> = (0..5)
            .map(|i| Address::Ip(([127, 0, 0, 1], 1000 + i).into()))
            .collect();
        let hosts: Vec<Host> = addrs
            .iter()
            .zip(&monitors)
            .map(|(addr, monitor)| Host { addr, monitor })
            .collect();
        // Four hosts always succeed, one succeeds half the time.
        for (i, m) in monitors.iter().enumerate() {
            for n in 0..200 {
                let status = if i == 0 && n % 2 == 0 { 500 } else { 200 };
                m.report(&d.config, Outcome::Status(status));
            }
        }
        assert!(d.review(&hosts, || 0));
        assert_eq!(d.ejected(), HashSet::from([addrs[0].clone()]));
    }
}
