//! One host's active health-check state, as Envoy's
//! `ActiveHealthCheckSession` keeps it: a new host starts failed, its
//! first result decides at once, later ones move it only after the
//! thresholds; and the wait before the next check.

use super::{DEGRADED, EXCLUDED, FAILED, TIMEOUT};
use crate::config::HealthCheck;
use std::time::Duration;

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The host answered as expected (`degraded`: with `x-envoy-degraded`).
    Healthy {
        /// It asked to be treated as degraded.
        degraded: bool,
    },
    /// It answered, but not as expected: fails at once unless `retriable`.
    /// `exclude`: it also sent `x-envoy-immediate-health-check-fail`.
    Failed {
        /// The HTTP status it answered (0: none, as for gRPC).
        status: u16,
        /// A `retriable_statuses` status: counts toward the threshold.
        retriable: bool,
        /// It sent `x-envoy-immediate-health-check-fail`.
        exclude: bool,
    },
    /// The connection failed or closed before the answer.
    Network,
    /// No answer within `timeout`.
    Timeout,
    /// The host answered a proxied request with
    /// `x-envoy-immediate-health-check-fail`: failed and excluded at once.
    Passive,
}

/// Whether a result moved the host (Envoy's `HealthTransition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    Unchanged,
    /// The host's health changed.
    Changed,
    /// A threshold is being counted toward.
    Pending,
}

/// One host's checking state.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its flags ([`FAILED`] until a check passes).
    pub flags: u8,
    first_check: bool,
    healthy_in_a_row: u64,
    unhealthy_in_a_row: u64,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            flags: FAILED,
            first_check: true,
            healthy_in_a_row: 0,
            unhealthy_in_a_row: 0,
        }
    }
}

impl Session {
    /// Takes a check's verdict under `config`'s thresholds.
    pub fn take(&mut self, verdict: Verdict, config: &HealthCheck) -> Transition {
        let transition = match verdict {
            Verdict::Healthy { degraded } => self.succeed(degraded, config.healthy_threshold),
            Verdict::Failed {
                retriable, exclude, ..
            } => {
                if exclude {
                    self.flags |= EXCLUDED;
                }
                self.fail(!retriable, false, config.unhealthy_threshold)
            }
            Verdict::Network => self.fail(false, false, config.unhealthy_threshold),
            Verdict::Timeout => self.fail(false, true, config.unhealthy_threshold),
            Verdict::Passive => {
                self.flags |= EXCLUDED;
                self.fail(true, false, config.unhealthy_threshold)
            }
        };
        self.first_check = false;
        transition
    }

    fn succeed(&mut self, degraded: bool, threshold: u64) -> Transition {
        self.unhealthy_in_a_row = 0;
        let mut transition = Transition::Unchanged;
        if self.flags & FAILED != 0 {
            // The first result ever on a host decides at once.
            self.healthy_in_a_row += 1;
            if self.first_check || self.healthy_in_a_row == threshold {
                self.flags &= !(FAILED | TIMEOUT | EXCLUDED);
                transition = Transition::Changed;
            } else {
                transition = Transition::Pending;
            }
        }
        if degraded != (self.flags & DEGRADED != 0) {
            self.flags ^= DEGRADED;
            if transition == Transition::Unchanged {
                transition = Transition::Changed;
            }
        }
        transition
    }

    /// `immediate`: an answer that was not a success fails the host at
    /// once; network failures and timeouts count toward the threshold.
    fn fail(&mut self, immediate: bool, timeout: bool, threshold: u64) -> Transition {
        self.healthy_in_a_row = 0;
        let mut transition = Transition::Unchanged;
        if self.flags & FAILED == 0 {
            self.unhealthy_in_a_row += 1;
            if immediate || self.unhealthy_in_a_row == threshold {
                self.flags |= FAILED;
                transition = Transition::Changed;
            } else {
                transition = Transition::Pending;
            }
        }
        // A failed host shows whether its latest failure was a timeout.
        if timeout && self.flags & FAILED != 0 {
            self.flags |= TIMEOUT;
        } else {
            self.flags &= !TIMEOUT;
        }
        transition
    }

    /// Whether no result has been taken yet.
    pub fn first_check(&self) -> bool {
        self.first_check
    }

    /// Whether the host passes its checks.
    pub fn is_healthy(&self) -> bool {
        self.flags & FAILED == 0
    }
}

/// The wait before the next check, as Envoy picks it: the no-traffic
/// intervals while the cluster has never opened a connection for
/// traffic, else the edge intervals while a threshold is being counted
/// toward, the unhealthy interval for a failed host and `interval` for a
/// healthy one; then the jitters. `random` gives uniform 64-bit values.
pub fn next_wait(
    config: &HealthCheck,
    healthy: bool,
    transition: Transition,
    traffic: bool,
    mut random: impl FnMut() -> u64,
) -> Duration {
    let pending = transition == Transition::Pending;
    let base = match (traffic, healthy, pending) {
        (false, true, false) => config.no_traffic_healthy_interval,
        (false, _, _) => config.no_traffic_interval,
        (true, false, true) => config.unhealthy_edge_interval,
        (true, false, false) => config.unhealthy_interval,
        (true, true, true) => config.healthy_edge_interval,
        (true, true, false) => config.interval,
    };
    let mut ms = base.as_millis() as u64;
    let percent_bound = config.interval_jitter_percent.saturating_mul(ms) / 100;
    if percent_bound > 0 {
        ms += random() % percent_bound;
    }
    let jitter = config.interval_jitter.as_millis() as u64;
    if jitter > 0 {
        ms += random() % jitter;
    }
    Duration::from_millis(ms.max(1))
}

/// The wait before a host's first check: a random share of
/// `initial_jitter`.
pub fn first_wait(config: &HealthCheck, random: u64) -> Duration {
    let jitter = config.initial_jitter.as_millis() as u64;
    if jitter == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis((random % jitter).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpCheck, Probe};

    fn config(unhealthy: u64, healthy: u64) -> HealthCheck {
        let s = Duration::from_secs;
        HealthCheck {
            timeout: s(1),
            interval: s(10),
            initial_jitter: Duration::ZERO,
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            reuse_connection: true,
            no_traffic_interval: s(60),
            no_traffic_healthy_interval: s(70),
            unhealthy_interval: s(20),
            unhealthy_edge_interval: s(30),
            healthy_edge_interval: s(40),
            probe: Probe::Http(HttpCheck::get("/")),
            event_logs: Vec::new(),
            always_log_failures: false,
            always_log_success: false,
        }
    }

    const OK: Verdict = Verdict::Healthy { degraded: false };

    #[test]
    fn first_success_marks_healthy_then_thresholds_count() {
        let c = config(2, 3);
        let mut s = Session::default();
        assert!(!s.is_healthy());
        assert_eq!(s.take(OK, &c), Transition::Changed);
        assert!(s.is_healthy());
        assert_eq!(s.take(Verdict::Network, &c), Transition::Pending);
        assert!(s.is_healthy());
        assert_eq!(s.take(Verdict::Timeout, &c), Transition::Changed);
        assert_eq!(s.flags, FAILED | TIMEOUT);
        assert_eq!(s.take(OK, &c), Transition::Pending);
        assert_eq!(s.take(OK, &c), Transition::Pending);
        assert_eq!(s.flags, FAILED | TIMEOUT);
        assert_eq!(s.take(OK, &c), Transition::Changed);
        assert_eq!(s.flags, 0);
    }

    #[test]
    fn a_wrong_status_fails_at_once_unless_retriable() {
        let c = config(3, 1);
        let mut s = Session::default();
        s.take(OK, &c);
        let retriable = Verdict::Failed {
            status: 500,
            retriable: true,
            exclude: false,
        };
        assert_eq!(s.take(retriable, &c), Transition::Pending);
        let failed = Verdict::Failed {
            status: 503,
            retriable: false,
            exclude: true,
        };
        assert_eq!(s.take(failed, &c), Transition::Changed);
        assert_eq!(s.flags, FAILED | EXCLUDED);
        assert_eq!(s.take(OK, &c), Transition::Changed);
        assert_eq!(s.flags, 0);
    }

    #[test]
    fn degraded_changes_without_threshold() {
        let c = config(1, 1);
        let mut s = Session::default();
        s.take(OK, &c);
        let degraded = Verdict::Healthy { degraded: true };
        assert_eq!(s.take(degraded, &c), Transition::Changed);
        assert_eq!(s.flags, DEGRADED);
        assert_eq!(s.take(degraded, &c), Transition::Unchanged);
    }

    #[test]
    fn waits_follow_envoys_interval_choice() {
        let c = config(1, 1);
        let wait = |healthy, t, traffic| next_wait(&c, healthy, t, traffic, || 0).as_secs();
        assert_eq!(wait(true, Transition::Changed, false), 70);
        assert_eq!(wait(true, Transition::Pending, false), 60);
        assert_eq!(wait(false, Transition::Unchanged, false), 60);
        assert_eq!(wait(true, Transition::Unchanged, true), 10);
        assert_eq!(wait(true, Transition::Pending, true), 40);
        assert_eq!(wait(false, Transition::Unchanged, true), 20);
        assert_eq!(wait(false, Transition::Pending, true), 30);
    }
}
