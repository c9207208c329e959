//! What updates count: each subscription's `update_*` stats, and the
//! managers' `cluster_*` / `listener_*` changes.

use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::{
    Cds as CdsStat, Cluster as ClusterStat, ClusterManager as ClusterManagerStat, Eds as EdsStat,
    Lds as LdsStat, ListenerManager as ListenerStat, Rds as RdsStat,
};
use crate::stats::Store;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

/// What an update attempt came to.
#[derive(Clone, Copy)]
pub(super) enum Counted {
    Attempt,
    Success,
    Rejected,
    Failure,
}

/// Where one subscription counts.
pub(super) enum Stats {
    /// `listener_manager.lds.*`.
    Lds,
    /// `cluster_manager.cds.*`.
    Cds,
    /// `http.<stat_prefix>.rds.<name>.*`, this whole prefix (the stat
    /// prefix of the first connection manager that named the route
    /// configuration, as in Envoy).
    Rds(String),
    /// `cluster.<stat_name>.*`: an EDS cluster's own stats.
    Eds(String),
    /// A subscription dropped meanwhile: nothing counts.
    Dropped,
}

impl Stats {
    /// The prefix its stats have (`listener_manager.lds.`, …).
    pub fn prefix(&self) -> String {
        match self {
            Stats::Lds => "listener_manager.lds.".into(),
            Stats::Cds => "cluster_manager.cds.".into(),
            Stats::Rds(prefix) => prefix.clone(),
            Stats::Eds(name) => format!("cluster.{name}."),
            Stats::Dropped => String::new(),
        }
    }

    /// Counts an attempt's outcome.
    pub fn count(&self, store: &Store, what: Counted) {
        let main = store.main_row();
        fn pick<T>(what: Counted, attempt: T, success: T, rejected: T, failure: T) -> T {
            match what {
                Counted::Attempt => attempt,
                Counted::Success => success,
                Counted::Rejected => rejected,
                Counted::Failure => failure,
            }
        }
        match self {
            Stats::Lds => store.lds().inc(
                main,
                pick(
                    what,
                    LdsStat::update_attempt,
                    LdsStat::update_success,
                    LdsStat::update_rejected,
                    LdsStat::update_failure,
                ),
            ),
            Stats::Cds => store.cds().inc(
                main,
                pick(
                    what,
                    CdsStat::update_attempt,
                    CdsStat::update_success,
                    CdsStat::update_rejected,
                    CdsStat::update_failure,
                ),
            ),
            Stats::Rds(prefix) => store.rds(prefix).inc(
                main,
                pick(
                    what,
                    RdsStat::update_attempt,
                    RdsStat::update_success,
                    RdsStat::update_rejected,
                    RdsStat::update_failure,
                ),
            ),
            Stats::Dropped => {}
            Stats::Eds(name) if matches!(what, Counted::Rejected) => {
                store.eds(name).inc(main, EdsStat::update_rejected)
            }
            Stats::Eds(name) => store.cluster(name).inc(
                main,
                pick(
                    what,
                    ClusterStat::update_attempt,
                    ClusterStat::update_success,
                    ClusterStat::update_failure,
                    ClusterStat::update_failure,
                ),
            ),
        }
    }

    /// Counts a first update that did not come within
    /// `initial_fetch_timeout`.
    pub fn fetch_timed_out(&self, store: &Store) {
        let main = store.main_row();
        match self {
            Stats::Lds => store.lds().inc(main, LdsStat::init_fetch_timeout),
            Stats::Cds => store.cds().inc(main, CdsStat::init_fetch_timeout),
            Stats::Rds(prefix) => store.rds(prefix).inc(main, RdsStat::init_fetch_timeout),
            Stats::Eds(name) => store.eds(name).inc(main, EdsStat::init_fetch_timeout),
            Stats::Dropped => {}
        }
    }

    /// Counts an accepted update that held nothing (EDS: the endpoints
    /// stay as they were).
    pub fn empty(&self, store: &Store) {
        if let Stats::Eds(name) = self {
            store
                .cluster(name)
                .inc(store.main_row(), ClusterStat::update_empty);
        }
    }

    /// Notes that the subscription started: its `version_text` exists,
    /// empty, until an update is accepted, and an EDS cluster's
    /// subscription stats exist while it warms (as Envoy creates them).
    pub fn started(&self, store: &Store) {
        if let Stats::Eds(name) = self {
            store.eds(name);
        }
        if !matches!(self, Stats::Dropped) {
            store.init_text(format!("{}version_text", self.prefix()));
        }
    }

    /// Records an accepted update's version and time.
    pub fn accepted(&self, store: &Store, version: &str, at: SystemTime) {
        let main = store.main_row();
        let hash = xxhash_rust::xxh64::xxh64(version.as_bytes(), 0);
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match self {
            Stats::Lds => {
                let stats = store.lds();
                stats.set(main, LdsStat::version, hash);
                stats.set(main, LdsStat::update_time, millis);
            }
            Stats::Cds => {
                let stats = store.cds();
                stats.inc(main, CdsStat::config_reload);
                stats.set(main, CdsStat::config_reload_time_ms, millis);
                stats.set(main, CdsStat::version, hash);
                stats.set(main, CdsStat::update_time, millis);
            }
            Stats::Rds(prefix) => {
                let stats = store.rds(prefix);
                stats.inc(main, RdsStat::config_reload);
                stats.set(main, RdsStat::config_reload_time_ms, millis);
                stats.set(main, RdsStat::version, hash);
                stats.set(main, RdsStat::update_time, millis);
            }
            Stats::Eds(name) => {
                store.cluster(name).set(main, ClusterStat::version, hash);
                store.eds(name).set(main, EdsStat::update_time, millis);
            }
            Stats::Dropped => return,
        }
        let text = format!("{}version_text", self.prefix());
        store.set_text(text, version.to_string());
    }
}

/// Drops the stats of the clusters that served (`before`) or warmed
/// (`warmed`, by stat name) and are gone: neither serving (`after`) nor
/// warming (`warming`, by stat name). Envoy drops them with the cluster.
pub(super) fn forget_removed_clusters<'a>(
    store: &Store,
    (before, warmed): (&'a ConfigSnapshot, impl Iterator<Item = &'a str>),
    (after, warming): (&'a ConfigSnapshot, impl Iterator<Item = &'a str>),
) {
    let mut live: HashSet<&str> = after.clusters.iter().map(|c| c.stat_name()).collect();
    live.extend(warming);
    let was = before.clusters.iter().map(|c| c.stat_name());
    let gone: HashSet<&str> = was.chain(warmed).filter(|n| !live.contains(n)).collect();
    store.forget_clusters(&gone, &live);
}

/// Counts what an update changed in `cluster_manager.*` and
/// `listener_manager.*` (everything is added for the first snapshot).
pub fn count_changes(store: &Store, before: &ConfigSnapshot, after: &ConfigSnapshot) {
    count_changes_but(store, before, after, (&HashSet::new(), &HashSet::new()));
}

/// As [`count_changes`], but not the listeners and clusters named in
/// `warmed`: they were counted when they began to warm, as Envoy counts
/// them.
pub(super) fn count_changes_but(
    store: &Store,
    before: &ConfigSnapshot,
    after: &ConfigSnapshot,
    (warmed, warmed_clusters): (&HashSet<&str>, &HashSet<&str>),
) {
    let main = store.main_row();
    let clusters = &store.cluster_manager;
    let named = |list: &[Arc<crate::upstream::Cluster>]| -> HashMap<String, u64> {
        let fingerprints = list
            .iter()
            .map(|c| (c.name().to_string(), c.config.fingerprint));
        fingerprints.collect()
    };
    let (was, is) = (named(&before.clusters), named(&after.clusters));
    let counted = is
        .iter()
        .filter(|(name, _)| !warmed_clusters.contains(&name.as_str()));
    for (name, fingerprint) in counted {
        match was.get(name) {
            None => clusters.inc(main, ClusterManagerStat::cluster_added),
            Some(f) if f != fingerprint => clusters.inc(main, ClusterManagerStat::cluster_modified),
            Some(_) => {}
        }
    }
    for name in was.keys() {
        if !is.contains_key(name) {
            clusters.inc(main, ClusterManagerStat::cluster_removed);
        }
    }
    let listeners = &store.listener_manager;
    for l in after
        .listeners
        .iter()
        .filter(|l| !warmed.contains(&l.name.as_str()))
    {
        match before.listener_index.get(&l.name) {
            None => listeners.inc(main, ListenerStat::listener_added),
            Some(&i) if before.listeners[i].fingerprint != l.fingerprint => {
                listeners.inc(main, ListenerStat::listener_modified);
                if before.listeners[i].shell == l.shell {
                    listeners.inc(main, ListenerStat::listener_in_place_updated);
                }
            }
            Some(_) => {}
        }
    }
    for b in &before.listeners {
        if !after.listener_index.contains_key(&b.name) {
            listeners.inc(main, ListenerStat::listener_removed);
        }
    }
    listeners.set(
        main,
        ListenerStat::total_listeners_active,
        after.listeners.len() as u64,
    );
}
