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
use crate::admin::rfc3339;
use crate::config::{self, Bootstrap, ConfigError, FileSource};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::{
    Cds as CdsStat, ClusterManager as ClusterStat, Lds as LdsStat, ListenerManager as ListenerStat,
};
use crate::stats::Store;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A resource type Ringway subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Listeners (`lds_config`).
    Listeners,
    /// Clusters (`cds_config`).
    Clusters,
}

/// A refused update.
#[derive(Debug, Clone)]
struct Outcome {
    /// `version_info` of the update.
    version: String,
    /// When it came.
    at: SystemTime,
    /// Why it was refused.
    error: String,
    /// Its resources as delivered (those that could be read).
    raw: Vec<Value>,
}

/// An accepted resource as `/config_dump` shows it.
#[derive(Clone)]
struct Entry {
    /// As delivered.
    raw: Value,
    /// The version that last added or replaced it, and when. As in Envoy,
    /// a listener changed in place (only its filter chains) keeps both.
    version: String,
    at: SystemTime,
}

impl Entry {
    fn dump(&self) -> Value {
        json!({"resource": self.raw, "version_info": self.version, "last_updated": rfc3339(self.at)})
    }
}

/// A resource type's decoded form, as an update compares it.
trait Resource: Clone {
    fn name(&self) -> &str;
    /// Whether `self`, replacing `old`, keeps `old`'s version in the dump.
    fn keeps_version_of(&self, old: &Self) -> bool;
}

impl Resource for config::Listener {
    fn name(&self) -> &str {
        &self.name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.shell == old.shell
    }
}

impl Resource for config::Cluster {
    fn name(&self) -> &str {
        &self.name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.fingerprint == old.fingerprint
    }
}

/// One subscription: its source, what it last accepted and rejected.
struct Subscription<T> {
    kind: Kind,
    source: FileSource,
    resources: Vec<T>,
    entries: Vec<Entry>,
    /// The version of the last update that changed anything (Envoy's
    /// `version_info` of the dump), and when.
    accepted: Option<(String, SystemTime)>,
    rejected: Option<Outcome>,
}

impl<T: Resource> Subscription<T> {
    fn new(kind: Kind, source: &Option<FileSource>) -> Option<Self> {
        source.clone().map(|source| Subscription {
            kind,
            source,
            resources: Vec::new(),
            entries: Vec::new(),
            accepted: None,
            rejected: None,
        })
    }

    /// Takes an accepted update: its resources decoded and as delivered.
    fn accept(&mut self, resources: Vec<T>, raw: Vec<Value>, version: &str, at: SystemTime) {
        let mut entries = Vec::with_capacity(resources.len());
        let mut changed = resources.len() != self.resources.len();
        let positions: HashMap<&str, usize> = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name(), i))
            .collect();
        for (resource, raw) in resources.iter().zip(raw) {
            let before = positions.get(resource.name()).copied();
            let kept = before.filter(|&i| resource.keeps_version_of(&self.resources[i]));
            changed |= before.is_none_or(|i| raw != self.entries[i].raw);
            entries.push(match kept {
                Some(i) => Entry {
                    raw,
                    version: self.entries[i].version.clone(),
                    at: self.entries[i].at,
                },
                None => Entry {
                    raw,
                    version: version.to_string(),
                    at,
                },
            });
        }
        if changed || self.accepted.is_none() {
            self.accepted = Some((version.to_string(), at));
        }
        self.resources = resources;
        self.entries = entries;
    }

    /// This subscription's part of `/config_dump`.
    fn dump(&self) -> Value {
        let resources: Vec<Value> = self.entries.iter().map(Entry::dump).collect();
        let mut dump = json!({
            "version_info": self.accepted.as_ref().map_or("", |(v, _)| v.as_str()),
            "resources": resources,
        });
        if let Some(r) = &self.rejected {
            // Beyond Envoy: the last refused update, so an operator sees
            // it without reading logs.
            dump["last_rejected"] = json!({
                "version_info": r.version,
                "last_update_attempt": rfc3339(r.at),
                "details": r.error,
                "resources": r.raw,
            });
        }
        dump
    }
}

/// A listener an update removed or replaced (not in place), shown as
/// draining for the drain time, as Envoy shows it.
struct Draining {
    name: String,
    entry: Entry,
    until: Instant,
}

/// The dynamic resources and the static bootstrap they are served with.
pub struct Xds {
    base: Bootstrap,
    drain_time: Duration,
    draining: Vec<Draining>,
    lds: Option<Subscription<config::Listener>>,
    cds: Option<Subscription<config::Cluster>>,
    /// What `/config_dump` shows of them, kept current for the admin API.
    dump: Arc<Mutex<Value>>,
}

/// The resources of an update being tried.
enum Decoded {
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
    /// The subscriptions `boot` names, served beside its static resources;
    /// a listener an update removes or replaces drains for `drain_time`.
    pub fn new(boot: &Bootstrap, drain_time: Duration) -> Self {
        Xds {
            drain_time,
            draining: Vec::new(),
            lds: Subscription::new(Kind::Listeners, &boot.dynamic.lds),
            cds: Subscription::new(Kind::Clusters, &boot.dynamic.cds),
            base: boot.clone(),
            dump: Arc::default(),
        }
    }

    /// Whether anything is dynamic.
    pub fn is_dynamic(&self) -> bool {
        self.lds.is_some() || self.cds.is_some()
    }

    /// Every file source with its kind.
    pub fn sources(&self) -> Vec<(Kind, FileSource)> {
        let cds = self.cds.iter().map(|s| (s.kind, s.source.clone()));
        let lds = self.lds.iter().map(|s| (s.kind, s.source.clone()));
        cds.chain(lds).collect()
    }

    /// The dynamic part of `/config_dump`, kept current: `{"listeners":
    /// …, "clusters": …}`, each with its version, resources, when they
    /// were accepted and the last rejected update.
    pub fn dump(&self) -> Arc<Mutex<Value>> {
        self.dump.clone()
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
    /// `accept` (which plans its listeners' sockets) agrees, returns the
    /// snapshot it made. Anything refused leaves the subscription as it
    /// was, counted and remembered for `/config_dump`.
    pub fn reload(
        &mut self,
        kind: Kind,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        let path = match kind {
            Kind::Listeners => self.lds.as_ref()?.source.path.clone(),
            Kind::Clusters => self.cds.as_ref()?.source.path.clone(),
        };
        count(store, kind, Counted::Attempt);
        let (mut version, mut raw, mut decoded) = (String::new(), Vec::new(), None);
        let result = self
            .candidate(kind, &path, &mut version, &mut raw, &mut decoded)
            .and_then(|boot| {
                ConfigSnapshot::compile_next(&boot, store, sinks, current)
                    .map_err(|e| Refusal::Rejected(listed(&e)))
            })
            .and_then(|next| match accept(&next) {
                Ok(()) => Ok(next),
                Err(e) => Err(Refusal::Rejected(e)),
            });
        let at = SystemTime::now();
        let next = match result {
            Ok(next) => next,
            Err(refusal) => {
                let (error, counted) = match refusal {
                    Refusal::Failure(m) => (m, Counted::Failure),
                    Refusal::Rejected(m) => (m, Counted::Rejected),
                };
                count(store, kind, counted);
                log::warn!(
                    "{} update from {} refused (the last accepted config stays): {error}",
                    kind.api(),
                    path.display()
                );
                let rejected = Some(Outcome {
                    version,
                    at,
                    error,
                    raw,
                });
                match kind {
                    Kind::Listeners => self
                        .lds
                        .iter_mut()
                        .for_each(|s| s.rejected = rejected.clone()),
                    Kind::Clusters => self
                        .cds
                        .iter_mut()
                        .for_each(|s| s.rejected = rejected.clone()),
                }
                self.publish_dump();
                return None;
            }
        };
        count_changes(store, current, &next);
        count(store, kind, Counted::Success);
        let hash = xxhash_rust::xxh64::xxh64(version.as_bytes(), 0);
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let main = store.main_row();
        match (decoded, &mut self.lds, &mut self.cds) {
            (Some(Decoded::Listeners(resources)), Some(s), _) => {
                let stats = store.lds();
                stats.set(main, LdsStat::version, hash);
                stats.set(main, LdsStat::update_time, millis);
                store.set_text("listener_manager.lds.version_text".into(), version.clone());
                let until = Instant::now() + self.drain_time;
                let by_name: HashMap<&str, &config::Listener> =
                    resources.iter().map(|r| (r.name.as_str(), r)).collect();
                for (old, entry) in s.resources.iter().zip(&s.entries) {
                    let now = by_name.get(old.name.as_str());
                    if now.is_none_or(|r| !r.keeps_version_of(old)) {
                        self.draining.push(Draining {
                            name: old.name.clone(),
                            entry: entry.clone(),
                            until,
                        });
                    }
                }
                s.accept(resources, raw, &version, at);
                store.listener_manager.set(
                    main,
                    ListenerStat::total_listeners_draining,
                    self.draining.len() as u64,
                );
            }
            (Some(Decoded::Clusters(resources)), _, Some(s)) => {
                let stats = store.cds();
                stats.inc(main, CdsStat::config_reload);
                stats.set(main, CdsStat::config_reload_time_ms, millis);
                stats.set(main, CdsStat::version, hash);
                stats.set(main, CdsStat::update_time, millis);
                store.set_text("cluster_manager.cds.version_text".into(), version.clone());
                s.accept(resources, raw, &version, at);
            }
            _ => {}
        }
        self.publish_dump();
        Some(next)
    }

    /// Ends the draining of listeners whose drain time is over; true when
    /// one ended.
    pub fn expire_draining(&mut self, store: &Store) -> bool {
        let now = Instant::now();
        let before = self.draining.len();
        self.draining.retain(|d| d.until > now);
        if self.draining.len() == before {
            return false;
        }
        store.listener_manager.set(
            store.main_row(),
            ListenerStat::total_listeners_draining,
            self.draining.len() as u64,
        );
        self.publish_dump();
        true
    }

    fn publish_dump(&self) {
        let mut listeners = self.lds.as_ref().map(Subscription::dump);
        if let Some(l) = &mut listeners {
            let draining: Vec<Value> = self
                .draining
                .iter()
                .map(|d| json!({"name": d.name, "entry": d.entry.dump()}))
                .collect();
            l["draining"] = json!(draining);
        }
        let dump = json!({
            "listeners": listeners,
            "clusters": self.cds.as_ref().map(Subscription::dump),
        });
        *self.dump.lock().unwrap_or_else(|p| p.into_inner()) = dump;
    }

    /// The bootstrap the `kind` file's update would make; its version, its
    /// resources as delivered and as decoded are written to the last three.
    fn candidate(
        &self,
        kind: Kind,
        path: &std::path::Path,
        version: &mut String,
        raw: &mut Vec<Value>,
        decoded: &mut Option<Decoded>,
    ) -> Result<Bootstrap, Refusal> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Refusal::Failure(format!("cannot read {origin}: {e}")))?;
        let tree =
            config::parse_document(&text, &origin).map_err(|e| Refusal::Failure(e.to_string()))?;
        if let Some(v) = tree.get("version_info").and_then(Value::as_str) {
            *version = v.to_string();
        }
        if let Some(resources) = tree.get("resources").and_then(Value::as_array) {
            raw.clone_from(resources);
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
                *decoded = Some(Decoded::Listeners(listeners));
            }
            Kind::Clusters => {
                let update = config::decode_cluster_update(&tree)
                    .map_err(|e| Refusal::Rejected(listed(&e)))?;
                boot.clusters.truncate(self.base.clusters.len());
                boot.clusters.extend(update.resources.iter().cloned());
                *decoded = Some(Decoded::Clusters(update.resources));
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
}

/// What an update attempt came to.
#[derive(Clone, Copy)]
enum Counted {
    Attempt,
    Success,
    Rejected,
    Failure,
}

/// Counts in `listener_manager.lds.*` or `cluster_manager.cds.*`.
fn count(store: &Store, kind: Kind, what: Counted) {
    let main = store.main_row();
    match kind {
        Kind::Listeners => store.lds().inc(
            main,
            match what {
                Counted::Attempt => LdsStat::update_attempt,
                Counted::Success => LdsStat::update_success,
                Counted::Rejected => LdsStat::update_rejected,
                Counted::Failure => LdsStat::update_failure,
            },
        ),
        Kind::Clusters => store.cds().inc(
            main,
            match what {
                Counted::Attempt => CdsStat::update_attempt,
                Counted::Success => CdsStat::update_success,
                Counted::Rejected => CdsStat::update_rejected,
                Counted::Failure => CdsStat::update_failure,
            },
        ),
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
    let named = |list: &[Arc<crate::upstream::Cluster>]| -> HashMap<String, u64> {
        let fingerprints = list
            .iter()
            .map(|c| (c.name().to_string(), c.config.fingerprint));
        fingerprints.collect()
    };
    let (was, is) = (named(&before.clusters), named(&after.clusters));
    for (name, fingerprint) in &is {
        match was.get(name) {
            None => clusters.inc(main, ClusterStat::cluster_added),
            Some(f) if f != fingerprint => clusters.inc(main, ClusterStat::cluster_modified),
            Some(_) => {}
        }
    }
    for name in was.keys() {
        if !is.contains_key(name) {
            clusters.inc(main, ClusterStat::cluster_removed);
        }
    }
    let listeners = &store.listener_manager;
    for l in &after.listeners {
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
