//! The main thread's side of outlier detection: one detector per cluster
//! that has `outlier_detection`, fed by the shards' reports and its own
//! interval reviews; a change in a cluster's ejected hosts is published
//! as a new snapshot.

use crate::net::Address;
use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::Store;
use crate::upstream::outlier::{Detector, Event, EventLog, Host};
use crate::upstream::Cluster;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The detectors, by cluster name.
pub struct Ejections {
    events: crossbeam_channel::Receiver<Event>,
    detectors: HashMap<String, Detector>,
    rng: u64,
    /// The outlier event log every detector writes, if configured.
    log: Option<Arc<EventLog>>,
}

/// The hosts of `cluster` as a detector sees them.
fn hosts(cluster: &Cluster) -> Vec<Host<'_>> {
    cluster
        .endpoints
        .iter()
        .map(|e| Host {
            addr: &e.addr,
            monitor: &e.outlier,
        })
        .collect()
}

impl Ejections {
    /// Detectors fed by `events` (from the shards), writing their events
    /// to `log`, if any.
    pub fn new(events: crossbeam_channel::Receiver<Event>, log: Option<EventLog>) -> Self {
        Ejections {
            events,
            log: log.map(Arc::new),
            detectors: HashMap::new(),
            rng: super::rolls::seed(),
        }
    }

    /// Where the shards' reports arrive.
    pub fn events(&self) -> crossbeam_channel::Receiver<Event> {
        self.events.clone()
    }

    /// Keeps one detector per cluster of `snapshot` with outlier
    /// detection: a new one for a new or changed configuration, none for
    /// a cluster that is gone.
    pub fn follow(&mut self, snapshot: &ConfigSnapshot) {
        let mut kept = HashMap::new();
        for c in &snapshot.clusters {
            let (Some(config), Some(stats)) = (&c.config.outlier_detection, &c.outlier_stats)
            else {
                continue;
            };
            let detector = match self.detectors.remove(c.name()) {
                Some(mut d) if d.pool_id == c.pool_id => {
                    d.keep_only(&hosts(c));
                    d
                }
                _ => {
                    let log = self.log.clone();
                    Detector::new(c.pool_id, config.clone(), stats.clone(), c.name(), log)
                }
            };
            kept.insert(c.name().to_string(), detector);
        }
        self.detectors = kept;
    }

    /// When the next interval review is due.
    pub fn due(&self) -> Option<Instant> {
        self.detectors.values().map(|d| d.due).min()
    }

    /// The published snapshot, where `cluster` is in it, and its
    /// detector, while both still run the configuration `pool_id` names.
    fn locate(
        &mut self,
        cluster: &str,
        pool_id: usize,
        published: &Published,
    ) -> Option<(Arc<ConfigSnapshot>, usize, &mut Detector)> {
        let current = published.load();
        let index = current.cluster_position(cluster)?;
        let detector = self.detectors.get_mut(cluster)?;
        (detector.pool_id == pool_id && current.clusters[index].pool_id == pool_id)
            .then_some((current, index, detector))
    }

    /// Takes a shard's report.
    pub fn on_event(&mut self, event: Event, published: &Published, store: &Store) {
        let random = super::rolls::next(&mut self.rng);
        let Some((current, index, detector)) =
            self.locate(&event.cluster, event.pool_id, published)
        else {
            return;
        };
        let hosts = hosts(&current.clusters[index]);
        if detector.on_event(&hosts, &event.addr, event.kind, random) {
            publish(published, store, &current, index, detector);
        }
    }

    /// An active health check passed on `addr` of `cluster` (configured
    /// as `pool_id`): ends its ejection, if any, as
    /// `successful_active_health_check_uneject_host` asks.
    pub fn health_check_passed(
        &mut self,
        (cluster, pool_id, addr): (&str, usize, &Address),
        published: &Published,
        store: &Store,
    ) {
        let Some((current, index, detector)) = self.locate(cluster, pool_id, published) else {
            return;
        };
        let hosts = hosts(&current.clusters[index]);
        let Some(host) = hosts.iter().find(|h| h.addr == addr) else {
            return;
        };
        if detector.health_check_passed(host) {
            publish(published, store, &current, index, detector);
        }
    }

    /// Runs the reviews that are due.
    pub fn review(&mut self, published: &Published, store: &Store) {
        let now = Instant::now();
        let rng = &mut self.rng;
        for (name, detector) in self.detectors.iter_mut().filter(|(_, d)| d.due <= now) {
            let current = published.load();
            let Some(index) = current.cluster_position(name) else {
                continue;
            };
            if detector.review(&hosts(&current.clusters[index]), || super::rolls::next(rng)) {
                publish(published, store, &current, index, detector);
            }
        }
    }
}

/// Publishes `current` with cluster `index` routing around the hosts
/// `detector` has ejected.
fn publish(
    published: &Published,
    store: &Store,
    current: &ConfigSnapshot,
    index: usize,
    detector: &Detector,
) {
    let next = current.clusters[index].with_ejected(store, detector.ejected());
    published.publish(current.with_cluster(index, next, store));
}
