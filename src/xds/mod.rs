//! xDS: listeners (LDS) and clusters (CDS) from `dynamic_resources`,
//! validated by the bootstrap's own decoder and compiled, with the static
//! resources, into the next snapshot.
//!
//! An update is all or nothing: any error in it (a resource that does not
//! decode, a route to a cluster that does not exist, a listener that cannot
//! bind) rejects the whole update, and what was accepted before keeps
//! serving. (Envoy applies the good resources of a rejected update; a
//! rejected update here changes nothing.)

mod watch;

pub use watch::spawn as watch_files;

use crate::access_log::Sinks;
use crate::config::{self, Bootstrap, ConfigError, FileSource};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::{
    Cds as CdsStat, ClusterManager as ClusterStat, Lds as LdsStat,
    ListenerManager as ListenerStat,
};
use crate::stats::Store;
use std::time::SystemTime;

/// A resource type Ringway subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Listeners (`lds_config`).
    Listeners,
    /// Clusters (`cds_config`).
    Clusters,
}

/// A version taken, or refused.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `version_info` of the update.
    pub version: String,
    /// When it came.
    pub at: SystemTime,
    /// Why it was refused (empty for an accepted one).
    pub error: String,
}

/// One subscription: its source, what it last accepted and rejected.
struct Subscription<T> {
    source: FileSource,
    resources: Vec<T>,
    accepted: Option<Outcome>,
    rejected: Option<Outcome>,
}

impl<T> Subscription<T> {
    fn new(source: &Option<FileSource>) -> Option<Self> {
        source.clone().map(|source| Subscription {
            source,
            resources: Vec::new(),
            accepted: None,
            rejected: None,
        })
    }
}

/// The dynamic resources and the static bootstrap they are served with.
pub struct Xds {
    base: Bootstrap,
    lds: Option<Subscription<config::Listener>>,
    cds: Option<Subscription<config::Cluster>>,
}

/// The resources of an update being tried.
enum Pending {
    Listeners(Vec<config::Listener>),
    Clusters(Vec<config::Cluster>),
}

/// Why an update was not taken, in Envoy's two kinds.
enum Refusal {
    /// The file could not be read or parsed (`update_failure`).
    Failure(String),
    /// It was read, but is not a valid update (`update_rejected`).
    Rejected(String),
}

fn listed(errors: &[ConfigError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

impl Xds {
    /// The subscriptions `boot` names, served beside its static resources.
    pub fn new(boot: &Bootstrap) -> Self {
        Xds {
            lds: Subscription::new(&boot.dynamic.lds),
            cds: Subscription::new(&boot.dynamic.cds),
            base: boot.clone(),
        }
    }

    /// Whether anything is dynamic.
    pub fn is_dynamic(&self) -> bool {
        self.lds.is_some() || self.cds.is_some()
    }

    /// Every file source with its kind.
    pub fn sources(&self) -> Vec<(Kind, FileSource)> {
        let cds = self.cds.iter().map(|s| (Kind::Clusters, s.source.clone()));
        let lds = self.lds.iter().map(|s| (Kind::Listeners, s.source.clone()));
        cds.chain(lds).collect()
    }

    /// The first load, as Envoy starts: a source file that does not exist
    /// stops the start; a bad one is counted and the proxy starts without
    /// it. Clusters come first (listeners' routes name them).
    pub fn start(
        &mut self,
        first: ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
    ) -> Result<ConfigSnapshot, String> {
        for (_, source) in self.sources() {
            if !source.path.exists() {
                return Err(format!(
                    "paths must refer to an existing path in the system: '{}' does not exist",
                    source.path.display()
                ));
            }
        }
        count_changes(store, &ConfigSnapshot::empty(), &first);
        let mut current = first;
        for kind in [Kind::Clusters, Kind::Listeners] {
            if let Some(next) = self.reload(kind, &current, store, sinks, |_| Ok(())) {
                current = next;
            }
        }
        Ok(current)
    }

    /// Reads the `kind` source again and, when the update is valid and
    /// `accept` (which publishes it) agrees, returns the snapshot it made.
    /// Anything refused leaves the subscription as it was, counted and
    /// remembered for `/config_dump`.
    pub fn reload(
        &mut self,
        kind: Kind,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        let main = store.main_row();
        let path = match kind {
            Kind::Listeners => self.lds.as_ref()?.source.path.clone(),
            Kind::Clusters => self.cds.as_ref()?.source.path.clone(),
        };
        match kind {
            Kind::Listeners => store.lds().inc(main, LdsStat::update_attempt),
            Kind::Clusters => store.cds().inc(main, CdsStat::update_attempt),
        }
        let mut version = String::new();
        let mut pending = None;
        let result = self
            .candidate(kind, &path, &mut version, &mut pending)
            .and_then(|boot| {
                ConfigSnapshot::compile_next(&boot, store, sinks, current)
                    .map_err(|e| Refusal::Rejected(listed(&e)))
            })
            .and_then(|next| match accept(&next) {
                Ok(()) => Ok(next),
                Err(e) => Err(Refusal::Rejected(e)),
            });
        let now = SystemTime::now();
        let outcome = |error: String| Outcome {
            version: version.clone(),
            at: now,
            error,
        };
        let next = match result {
            Ok(next) => next,
            Err(refusal) => {
                let (message, failure) = match refusal {
                    Refusal::Failure(m) => (m, true),
                    Refusal::Rejected(m) => (m, false),
                };
                log::warn!(
                    "{} update from {} rejected (the last accepted config stays): {message}",
                    kind.api(),
                    path.display()
                );
                let rejected = Some(outcome(message));
                match kind {
                    Kind::Listeners => {
                        let stat = if failure {
                            LdsStat::update_failure
                        } else {
                            LdsStat::update_rejected
                        };
                        store.lds().inc(main, stat);
                        if let Some(s) = &mut self.lds {
                            s.rejected = rejected;
                        }
                    }
                    Kind::Clusters => {
                        let stat = if failure {
                            CdsStat::update_failure
                        } else {
                            CdsStat::update_rejected
                        };
                        store.cds().inc(main, stat);
                        if let Some(s) = &mut self.cds {
                            s.rejected = rejected;
                        }
                    }
                }
                return None;
            }
        };
        let hash = xxhash_rust::xxh64::xxh64(version.as_bytes(), 0);
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        count_changes(store, current, &next);
        match kind {
            Kind::Listeners => {
                let stats = store.lds();
                stats.inc(main, LdsStat::update_success);
                stats.set(main, LdsStat::version, hash);
                stats.set(main, LdsStat::update_time, millis);
                store.set_text("listener_manager.lds.version_text".into(), version.clone());
                if let (Some(s), Some(Pending::Listeners(l))) = (&mut self.lds, pending) {
                    s.resources = l;
                    s.accepted = Some(outcome(String::new()));
                }
            }
            Kind::Clusters => {
                let stats = store.cds();
                stats.inc(main, CdsStat::update_success);
                stats.inc(main, CdsStat::config_reload);
                stats.set(main, CdsStat::config_reload_time_ms, millis);
                stats.set(main, CdsStat::version, hash);
                stats.set(main, CdsStat::update_time, millis);
                store.set_text("cluster_manager.cds.version_text".into(), version.clone());
                if let (Some(s), Some(Pending::Clusters(c))) = (&mut self.cds, pending) {
                    s.resources = c;
                    s.accepted = Some(outcome(String::new()));
                }
            }
        }
        Some(next)
    }

    /// The bootstrap the `kind` file's update would make; its version is
    /// written to `version` and its resources to `pending`.
    fn candidate(
        &self,
        kind: Kind,
        path: &std::path::Path,
        version: &mut String,
        pending: &mut Option<Pending>,
    ) -> Result<Bootstrap, Refusal> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Refusal::Failure(format!("cannot read {origin}: {e}")))?;
        let tree = config::parse_document(&text, &origin)
            .map_err(|e| Refusal::Failure(e.to_string()))?;
        if let Some(v) = tree.get("version_info").and_then(|v| v.as_str()) {
            *version = v.to_string();
        }
        let mut boot = self.merged();
        match kind {
            Kind::Listeners => {
                let update = config::decode_listener_update(&tree)
                    .map_err(|e| Refusal::Rejected(listed(&e)))?;
                let mut listeners = update.resources;
                for l in &mut listeners {
                    l.set_strip_fragment(self.base.strip_fragment);
                }
                boot.listeners.truncate(self.base.listeners.len());
                boot.listeners.extend(listeners.iter().cloned());
                *pending = Some(Pending::Listeners(listeners));
            }
            Kind::Clusters => {
                let update = config::decode_cluster_update(&tree)
                    .map_err(|e| Refusal::Rejected(listed(&e)))?;
                boot.clusters.truncate(self.base.clusters.len());
                boot.clusters.extend(update.resources.iter().cloned());
                *pending = Some(Pending::Clusters(update.resources));
            }
        }
        Ok(boot)
    }

    /// The static bootstrap with every accepted dynamic resource.
    fn merged(&self) -> Bootstrap {
        let mut boot = self.base.clone();
        if let Some(s) = &self.lds {
            boot.listeners.extend(s.resources.iter().cloned());
        }
        if let Some(s) = &self.cds {
            boot.clusters.extend(s.resources.iter().cloned());
        }
        boot
    }

    /// What each subscription last accepted and rejected, for
    /// `/config_dump`.
    pub fn outcomes(&self, kind: Kind) -> (Option<&Outcome>, Option<&Outcome>) {
        match kind {
            Kind::Listeners => self
                .lds
                .as_ref()
                .map_or((None, None), |s| (s.accepted.as_ref(), s.rejected.as_ref())),
            Kind::Clusters => self
                .cds
                .as_ref()
                .map_or((None, None), |s| (s.accepted.as_ref(), s.rejected.as_ref())),
        }
    }
}

impl Kind {
    /// The API's name, for logs.
    pub fn api(self) -> &'static str {
        match self {
            Kind::Listeners => "LDS",
            Kind::Clusters => "CDS",
        }
    }
}

/// Counts what an update changed in `cluster_manager.*` and
/// `listener_manager.*` (everything is added for the first snapshot).
pub fn count_changes(store: &Store, before: &ConfigSnapshot, after: &ConfigSnapshot) {
    let main = store.main_row();
    let clusters = &store.cluster_manager;
    for c in &after.clusters {
        match before.clusters.iter().find(|b| b.name() == c.name()) {
            None => clusters.inc(main, ClusterStat::cluster_added),
            Some(b) if b.config.fingerprint != c.config.fingerprint => {
                clusters.inc(main, ClusterStat::cluster_modified)
            }
            Some(_) => {}
        }
    }
    for b in &before.clusters {
        if !after.clusters.iter().any(|c| c.name() == b.name()) {
            clusters.inc(main, ClusterStat::cluster_removed);
        }
    }
    let listeners = &store.listener_manager;
    for l in &after.listeners {
        match before.listener_index.get(&l.name) {
            None => listeners.inc(main, ListenerStat::listener_added),
            Some(&i) if before.listeners[i].fingerprint != l.fingerprint => {
                listeners.inc(main, ListenerStat::listener_modified)
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
