//! Circuit breakers: a cluster's connections, pending requests, requests,
//! retries and connection pools, counted across every shard in shared
//! atomics (as Envoy shares its resource managers across workers), per
//! routing priority.

use crate::config::{CircuitBreakers, Priority, Thresholds};
use crate::stats::{Kind, Visit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a priority's thresholds limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Open upstream connections (`max_connections`).
    Connections,
    /// Requests waiting for a connection (`max_pending_requests`).
    Pending,
    /// Requests on a connection (`max_requests`).
    Requests,
    /// Retries in progress (`max_retries`, or the `retry_budget`).
    Retries,
    /// Per-shard, per-endpoint connection pools (`max_connection_pools`).
    Pools,
}

const RESOURCES: [Resource; 5] = [
    Resource::Connections,
    Resource::Pending,
    Resource::Requests,
    Resource::Retries,
    Resource::Pools,
];

/// One priority's occupancy.
#[derive(Debug, Default)]
struct Occupancy {
    counts: [AtomicU64; 5],
}

impl Occupancy {
    fn count(&self, r: Resource) -> u64 {
        self.counts[r as usize].load(Ordering::Relaxed)
    }
}

/// A cluster's circuit breakers: the configured thresholds and what is in
/// use under them, shared by every snapshot that keeps the cluster's
/// configuration.
#[derive(Debug)]
pub struct Breakers {
    config: CircuitBreakers,
    levels: [Occupancy; 2],
}

/// One unit of a resource, given back when dropped.
#[derive(Debug)]
pub struct Held<'a>(&'a AtomicU64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One unit of a resource held past any one request (a connection, a
/// connection pool), given back when dropped.
#[derive(Debug)]
pub struct Owned {
    breakers: Arc<Breakers>,
    priority: Priority,
    resource: Resource,
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.breakers
            .counter(self.priority, self.resource)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Breakers {
    /// Breakers with `config`'s thresholds, nothing in use.
    pub fn new(config: CircuitBreakers) -> Arc<Breakers> {
        Arc::new(Breakers {
            config,
            levels: Default::default(),
        })
    }

    fn thresholds(&self, priority: Priority) -> &Thresholds {
        self.config.thresholds(priority)
    }

    fn counter(&self, priority: Priority, r: Resource) -> &AtomicU64 {
        &self.levels[priority as usize].counts[r as usize]
    }

    /// The most of `r` that may be in use at `priority` now (a retry
    /// budget follows the requests active and pending).
    pub fn max(&self, priority: Priority, r: Resource) -> u64 {
        let t = self.thresholds(priority);
        match r {
            Resource::Connections => t.max_connections,
            Resource::Pending => t.max_pending_requests,
            Resource::Requests => t.max_requests,
            Resource::Pools => t.max_connection_pools,
            Resource::Retries => match t.retry_budget {
                None => t.max_retries,
                Some(b) => {
                    let level = &self.levels[priority as usize];
                    let load = level.count(Resource::Requests) + level.count(Resource::Pending);
                    ((b.percent / 100.0 * load as f64) as u64).max(b.min_concurrency)
                }
            },
        }
    }

    /// Whether one more of `r` fits under its threshold.
    pub fn can_create(&self, priority: Priority, r: Resource) -> bool {
        self.counter(priority, r).load(Ordering::Relaxed) < self.max(priority, r)
    }

    /// Counts one more of `r` unless the threshold is reached.
    fn count_in(&self, priority: Priority, r: Resource) -> bool {
        let max = self.max(priority, r);
        self.counter(priority, r)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes one unit of `r` for the length of a request, or None when the
    /// threshold is reached.
    pub fn take(&self, priority: Priority, r: Resource) -> Option<Held<'_>> {
        self.count_in(priority, r)
            .then(|| Held(self.counter(priority, r)))
    }

    /// Counts one unit of `r` whatever the threshold (a connection Envoy
    /// opens past `max_connections` still counts), until dropped.
    pub fn hold(self: &Arc<Self>, priority: Priority, r: Resource) -> Owned {
        self.counter(priority, r).fetch_add(1, Ordering::Relaxed);
        Owned {
            breakers: self.clone(),
            priority,
            resource: r,
        }
    }

    /// Takes one unit of `r` past any one request, or None at the threshold.
    pub fn try_hold(self: &Arc<Self>, priority: Priority, r: Resource) -> Option<Owned> {
        self.count_in(priority, r).then(|| Owned {
            breakers: self.clone(),
            priority,
            resource: r,
        })
    }

    /// `per_host_thresholds[].max_connections` of `priority`.
    pub fn per_host_max_connections(&self, priority: Priority) -> Option<u64> {
        self.config.per_host_max_connections[priority as usize]
    }
}

/// At most one unit of a resource, taken and given back as a request's
/// state changes (a retry holds one from its decision to the end of its
/// attempt).
pub struct Slot<'a> {
    breakers: &'a Breakers,
    priority: Priority,
    resource: Resource,
    held: std::cell::Cell<bool>,
}

impl<'a> Slot<'a> {
    /// A slot for `resource` at `priority`, empty.
    pub fn new(breakers: &'a Breakers, priority: Priority, resource: Resource) -> Self {
        Slot {
            breakers,
            priority,
            resource,
            held: Default::default(),
        }
    }

    /// Gives back the unit held, if any, then takes one; false at the
    /// threshold (as Envoy ends one retry before it decides the next).
    pub fn take(&self) -> bool {
        self.release();
        let taken = self.breakers.count_in(self.priority, self.resource);
        self.held.set(taken);
        taken
    }

    /// Whether it holds a unit.
    pub fn is_held(&self) -> bool {
        self.held.get()
    }

    /// Gives back the unit held, if any.
    pub fn release(&self) {
        if self.held.replace(false) {
            self.breakers
                .counter(self.priority, self.resource)
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// `cluster.<name>.circuit_breakers.<priority>.*`: whether each resource is
/// at its threshold (`*_open`), and with `track_remaining` how much is
/// left (`remaining_*`), read from the shared counts.
pub struct BreakerGauges {
    prefix: String,
    breakers: Arc<Breakers>,
}

impl BreakerGauges {
    /// The gauges of the cluster whose stats carry `stat_name`.
    pub fn new(stat_name: &str, breakers: Arc<Breakers>) -> Self {
        BreakerGauges {
            prefix: format!("cluster.{stat_name}.circuit_breakers."),
            breakers,
        }
    }

    /// The key the store registers them under.
    pub fn key(&self) -> &str {
        &self.prefix
    }
}

impl Visit for BreakerGauges {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        let b = &self.breakers;
        for priority in [Priority::Default, Priority::High] {
            let base = format!("{}{}.", self.prefix, priority.stat_name());
            // As Envoy sets them when a count changes: a resource never
            // taken (a threshold of 0 included) is not open.
            let state = |r| {
                let max = b.max(priority, r);
                let count = b.counter(priority, r).load(Ordering::Relaxed);
                (
                    u64::from(count > 0 && count >= max),
                    max.saturating_sub(count),
                )
            };
            for r in RESOURCES {
                f(&format!("{base}{}", open_name(r)), Kind::Gauge, state(r).0);
            }
            if b.thresholds(priority).track_remaining {
                for r in RESOURCES {
                    f(
                        &format!("{base}{}", remaining_name(r)),
                        Kind::Gauge,
                        state(r).1,
                    );
                }
            }
        }
    }
}

fn open_name(r: Resource) -> &'static str {
    match r {
        Resource::Connections => "cx_open",
        Resource::Pending => "rq_pending_open",
        Resource::Requests => "rq_open",
        Resource::Retries => "rq_retry_open",
        Resource::Pools => "cx_pool_open",
    }
}

fn remaining_name(r: Resource) -> &'static str {
    match r {
        Resource::Connections => "remaining_cx",
        Resource::Pending => "remaining_pending",
        Resource::Requests => "remaining_rq",
        Resource::Retries => "remaining_retries",
        Resource::Pools => "remaining_cx_pools",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryBudget;

    fn breakers(t: Thresholds) -> Arc<Breakers> {
        Breakers::new(CircuitBreakers {
            default: t,
            ..Default::default()
        })
    }

    #[test]
    fn a_threshold_caps_what_is_taken_and_a_drop_gives_it_back() {
        let b = breakers(Thresholds {
            max_requests: 2,
            ..Default::default()
        });
        let one = b.take(Priority::Default, Resource::Requests);
        let two = b.take(Priority::Default, Resource::Requests);
        assert!(one.is_some() && two.is_some());
        assert!(b.take(Priority::Default, Resource::Requests).is_none());
        // The other priority has thresholds of its own.
        assert!(b.take(Priority::High, Resource::Requests).is_some());
        drop(one);
        assert!(b.take(Priority::Default, Resource::Requests).is_some());
    }

    #[test]
    fn held_connections_count_past_the_threshold() {
        let b = breakers(Thresholds {
            max_connections: 1,
            ..Default::default()
        });
        let first = b.hold(Priority::Default, Resource::Connections);
        assert!(!b.can_create(Priority::Default, Resource::Connections));
        let second = b.hold(Priority::Default, Resource::Connections);
        drop(first);
        assert!(!b.can_create(Priority::Default, Resource::Connections));
        drop(second);
        assert!(b.can_create(Priority::Default, Resource::Connections));
    }

    #[test]
    fn a_retry_budget_follows_the_load_with_a_floor() {
        let b = breakers(Thresholds {
            retry_budget: Some(RetryBudget {
                percent: 25.0,
                min_concurrency: 2,
            }),
            ..Default::default()
        });
        assert_eq!(b.max(Priority::Default, Resource::Retries), 2);
        let load: Vec<_> = (0..12)
            .map(|_| b.take(Priority::Default, Resource::Requests))
            .collect();
        assert_eq!(b.max(Priority::Default, Resource::Retries), 3);
        drop(load);
        assert_eq!(b.max(Priority::Default, Resource::Retries), 2);
    }

    #[test]
    fn gauges_show_open_and_remaining() {
        let b = breakers(Thresholds {
            max_pending_requests: 1,
            track_remaining: true,
            ..Default::default()
        });
        let _pending = b.take(Priority::Default, Resource::Pending);
        let mut seen = Vec::new();
        BreakerGauges::new("c", b.clone()).visit(&mut |n, _, v| seen.push((n.to_string(), v)));
        let value = |name: &str| seen.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let base = "cluster.c.circuit_breakers.";
        assert_eq!(value(&format!("{base}default.rq_pending_open")), Some(1));
        assert_eq!(value(&format!("{base}default.remaining_pending")), Some(0));
        assert_eq!(value(&format!("{base}default.remaining_rq")), Some(1024));
        assert_eq!(value(&format!("{base}high.rq_pending_open")), Some(0));
        // Only a priority that tracks them has remaining_* gauges.
        assert_eq!(value(&format!("{base}high.remaining_rq")), None);
    }
}
