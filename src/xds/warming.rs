//! Resource warming, as Envoy's listener and cluster managers do it: a
//! listener whose route configuration comes from the control plane does not
//! serve until that configuration's first update has come, nor does an EDS
//! cluster until its first endpoints have (or, either way, until the
//! `initial_fetch_timeout` is over, or the update was refused). Meanwhile
//! the version it replaces, if any, keeps serving.

use super::subscription::Entry;
use super::{Kind, Xds};
use crate::config;
use crate::stats::sets::{ClusterManager as ClusterStat, ListenerManager as ListenerStat};
use crate::stats::Store;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The EDS sources whose first endpoints are awaited, by cluster name.
type AwaitedEndpoints<'a> = HashMap<&'a str, Vec<&'a config::EdsSource>>;

/// A listener whose latest version is warming, and the version that
/// serves meanwhile (None: it serves nothing yet).
#[derive(Clone)]
pub(super) struct Warming {
    pub serving: Option<(config::Listener, Entry)>,
}

/// A cluster whose latest version is warming, and the version that serves
/// meanwhile (None: none does).
#[derive(Clone)]
pub(super) struct ClusterWarming {
    pub serving: Option<(config::Cluster, Entry)>,
    /// The warming version's fingerprint: a change while it warms is a
    /// modification, as Envoy counts it.
    fingerprint: u64,
    /// The name its stats carry.
    pub stat_name: String,
}

impl Xds {
    /// Whether `listener` waits for a route configuration from the control
    /// plane, the `arriving` updates counted as come.
    fn waits_for_routes(&self, listener: &config::Listener, arriving: &HashSet<Kind>) -> bool {
        listener.rds_sources().any(|(_, rds)| {
            self.rds.values().any(|r| {
                r.name == rds.name
                    && r.sub.awaited_until().is_some()
                    && !arriving.contains(&r.sub.kind)
            })
        })
    }

    /// The dynamic listeners that serve when `latest` are the accepted
    /// ones and `arriving` updates have come, and which of `latest` warm.
    pub(super) fn in_effect(
        &self,
        latest: &[config::Listener],
        arriving: &HashSet<Kind>,
    ) -> (Vec<config::Listener>, BTreeMap<String, Warming>) {
        let mut serving = Vec::with_capacity(latest.len());
        let mut warming = BTreeMap::new();
        for listener in latest {
            if !self.waits_for_routes(listener, arriving) {
                serving.push(listener.clone());
                continue;
            }
            let before = match self.warming.get(&listener.name) {
                Some(w) => w.serving.clone(),
                None => self.active(&listener.name),
            };
            if let Some((l, _)) = &before {
                serving.push(l.clone());
            }
            warming.insert(listener.name.clone(), Warming { serving: before });
        }
        (serving, warming)
    }

    /// The accepted version of `name` that serves now (with its dump
    /// entry), unless it is warming.
    fn active(&self, name: &str) -> Option<(config::Listener, Entry)> {
        if self.warming.contains_key(name) {
            return None;
        }
        let lds = self.lds.as_ref()?;
        let i = lds.resources.iter().position(|l| l.name == name)?;
        Some((lds.resources[i].clone(), lds.entries[i].clone()))
    }

    /// The listeners that warmed and do not in `next`: they serve now.
    pub(super) fn warmed_now<'a>(&'a self, next: &BTreeMap<String, Warming>) -> HashSet<&'a str> {
        let names = self.warming.keys().filter(|n| !next.contains_key(*n));
        names.map(String::as_str).collect()
    }

    /// Counts the listeners that begin to warm in `next` as Envoy counts
    /// them then: `listener_added`, or `listener_modified` when another
    /// version serves meanwhile.
    pub(super) fn count_warming_starts(&self, next: &BTreeMap<String, Warming>, store: &Store) {
        for (name, w) in next {
            if self.warming.contains_key(name) {
                continue;
            }
            let stat = match w.serving {
                Some(_) => ListenerStat::listener_modified,
                None => ListenerStat::listener_added,
            };
            store.listener_manager.inc(store.main_row(), stat);
        }
    }

    /// Takes `warming` as the listeners that warm now.
    pub(super) fn set_warming(&mut self, warming: BTreeMap<String, Warming>, store: &Store) {
        self.warming = warming;
        store.listener_manager.set(
            store.main_row(),
            ListenerStat::total_listeners_warming,
            self.warming.len() as u64,
        );
    }

    /// Whether a listener or cluster that warms no longer waits (what it
    /// waited for came, or the wait timed out).
    pub(super) fn warmed(&self) -> bool {
        let listener_waits = |name: &String| {
            let mut latest = self.lds.iter().flat_map(|s| &s.resources);
            latest
                .find(|l| &l.name == name)
                .is_some_and(|l| self.waits_for_routes(l, &HashSet::new()))
        };
        let awaited = self.awaited_endpoints(&HashSet::new());
        !self.warming.keys().all(listener_waits)
            || !self
                .warming_clusters
                .keys()
                .all(|name| awaited.contains_key(name.as_str()))
    }

    /// The EDS subscriptions whose first update is awaited, the `arriving`
    /// updates counted as come.
    fn awaited_endpoints(&self, arriving: &HashSet<Kind>) -> AwaitedEndpoints<'_> {
        let mut awaited: AwaitedEndpoints = HashMap::new();
        let waiting = self
            .eds
            .values()
            .filter(|e| e.sub.awaited_until().is_some() && !arriving.contains(&e.sub.kind));
        for e in waiting {
            awaited.entry(&e.cluster).or_default().push(&e.source);
        }
        awaited
    }

    /// The dynamic clusters that serve when `latest` are the accepted ones
    /// and `arriving` updates have come, and which of `latest` warm.
    pub(super) fn clusters_in_effect(
        &self,
        latest: &[config::Cluster],
        arriving: &HashSet<Kind>,
    ) -> (Vec<config::Cluster>, BTreeMap<String, ClusterWarming>) {
        let awaited = self.awaited_endpoints(arriving);
        let waits = |c: &config::Cluster| {
            let sources = awaited.get(c.name.as_str());
            c.eds
                .as_ref()
                .is_some_and(|eds| sources.is_some_and(|s| s.contains(&eds)))
        };
        let accepted = self.cds.as_ref().map_or(&[][..], |s| &s.resources);
        let positions: HashMap<&str, usize> = accepted
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        // The accepted version that serves now, with its dump entry.
        let active = |name: &str| {
            let cds = self.cds.as_ref()?;
            let i = *positions.get(name)?;
            Some((cds.resources[i].clone(), cds.entries[i].clone()))
        };
        let mut serving = Vec::with_capacity(latest.len());
        let mut warming = BTreeMap::new();
        for cluster in latest {
            if !waits(cluster) {
                serving.push(cluster.clone());
                continue;
            }
            let before = match self.warming_clusters.get(&cluster.name) {
                Some(w) => w.serving.clone(),
                None => active(&cluster.name),
            };
            if let Some((c, _)) = &before {
                serving.push(c.clone());
            }
            let w = ClusterWarming {
                serving: before,
                fingerprint: cluster.fingerprint,
                stat_name: cluster.stat_name().to_string(),
            };
            warming.insert(cluster.name.clone(), w);
        }
        (serving, warming)
    }

    /// The clusters that warmed and do not in `next`: they serve now (or
    /// are gone).
    pub(super) fn clusters_warmed_now<'a>(
        &'a self,
        next: &BTreeMap<String, ClusterWarming>,
    ) -> HashSet<&'a str> {
        let names = self.warming_clusters.keys();
        let warmed = names.filter(|n| !next.contains_key(*n));
        warmed.map(String::as_str).collect()
    }

    /// Counts as Envoy's cluster manager does what `next`, the clusters
    /// that warm now, changes in those that warm: a cluster that begins to
    /// warm is added (or modified, when another version serves meanwhile),
    /// one changed while it warms is modified, and one removed before it
    /// ever served is removed. `serving` names the clusters that serve.
    pub(super) fn count_cluster_warming(
        &self,
        next: &BTreeMap<String, ClusterWarming>,
        serving: &HashSet<&str>,
        store: &Store,
    ) {
        let main = store.main_row();
        for (name, w) in next {
            let stat = match self.warming_clusters.get(name) {
                None if w.serving.is_none() => ClusterStat::cluster_added,
                Some(before) if before.fingerprint == w.fingerprint => continue,
                _ => ClusterStat::cluster_modified,
            };
            store.cluster_manager.inc(main, stat);
        }
        for (name, w) in &self.warming_clusters {
            let gone = !next.contains_key(name) && !serving.contains(name.as_str());
            if gone && w.serving.is_none() {
                store
                    .cluster_manager
                    .inc(main, ClusterStat::cluster_removed);
            }
        }
    }

    /// Takes `warming` as the clusters that warm now.
    pub(super) fn set_cluster_warming(
        &mut self,
        warming: BTreeMap<String, ClusterWarming>,
        store: &Store,
    ) {
        self.warming_clusters = warming;
        store.cluster_manager.set(
            store.main_row(),
            ClusterStat::warming_clusters,
            self.warming_clusters.len() as u64,
        );
    }
}
