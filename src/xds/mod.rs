//! xDS: listeners (LDS), clusters (CDS) and route configurations (RDS) from
//! files, validated by the bootstrap's own decoder and compiled, with the
//! static resources, into the next snapshot.
//!
//! An update is all or nothing: any error in it (a resource that does not
//! decode, a route to a cluster that does not exist, a listener that cannot
//! bind) rejects the whole update, and what was accepted before keeps
//! serving. (Envoy applies the good resources of a rejected update; a
//! rejected update here changes nothing.)

mod stats;
mod subscription;
mod watch;

pub use stats::count_changes;

use crate::access_log::Sinks;
use crate::config::{self, Bootstrap, ConfigError, FileSource};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::ListenerManager as ListenerStat;
use crate::stats::Store;
use serde_json::{json, Value};
use stats::{Counted, Stats};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use subscription::{Entry, Outcome, Resource, Subscription};
use watch::Watcher;

/// A subscription: what an update of a watched file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Listeners (`lds_config`).
    Listeners,
    /// Clusters (`cds_config`).
    Clusters,
    /// One route configuration (an HCM's `rds`), by its subscription's id.
    Routes(u64),
    /// One EDS cluster's endpoints, by its subscription's id.
    Endpoints(u64),
}

impl Kind {
    /// The API's name, for logs.
    pub fn api(self) -> &'static str {
        match self {
            Kind::Listeners => "LDS",
            Kind::Clusters => "CDS",
            Kind::Routes(_) => "RDS",
            Kind::Endpoints(_) => "EDS",
        }
    }
}

/// A listener an update removed or replaced (not in place), shown as
/// draining for the drain time, as Envoy shows it.
struct Draining {
    name: String,
    entry: Entry,
    until: Instant,
    /// The route configurations it names (their subscriptions stay while
    /// it drains, as in Envoy).
    routes: Vec<String>,
}

/// A route configuration subscription and where it counts.
struct Routes {
    /// `route_config_name`.
    name: String,
    /// `http.<stat_prefix>.rds.<name>.`.
    stats: Stats,
    sub: Subscription<config::RouteConfiguration>,
}

/// An EDS cluster's endpoint subscription.
struct Endpoints {
    /// The cluster's name.
    cluster: String,
    /// `eds_cluster_config`.
    source: config::EdsSource,
    /// `cluster.<stat_name>.*`.
    stats: Stats,
    sub: Subscription<config::Assignment>,
}

/// The dynamic resources and the static bootstrap they are served with.
pub struct Xds {
    base: Bootstrap,
    drain_time: Duration,
    draining: Vec<Draining>,
    lds: Option<Subscription<config::Listener>>,
    cds: Option<Subscription<config::Cluster>>,
    /// Route configuration subscriptions by id, dropped when no listener
    /// names them any more.
    rds: BTreeMap<u64, Routes>,
    /// EDS subscriptions by id, dropped when their cluster goes.
    eds: BTreeMap<u64, Endpoints>,
    next_id: u64,
    /// Watches the files, once serving.
    watcher: Option<Watcher>,
    /// What `/config_dump` shows of them, kept current for the admin API.
    dump: Arc<Mutex<Value>>,
}

/// The resources of an update being tried.
enum Decoded {
    Listeners(Vec<config::Listener>),
    Clusters(Vec<config::Cluster>),
    Routes(Vec<config::RouteConfiguration>),
    Endpoints(Vec<config::Assignment>),
}

/// An update read from its file.
struct Read {
    /// `version_info` ("" when absent).
    version: String,
    /// Its resources as delivered.
    raw: Vec<Value>,
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

/// Reads a `DiscoveryResponse` file: its tree, version and resources.
fn read(path: &std::path::Path, read: &mut Read) -> Result<Value, Refusal> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refusal::Failure(format!("cannot read {origin}: {e}")))?;
    let tree =
        config::parse_document(&text, &origin).map_err(|e| Refusal::Failure(e.to_string()))?;
    if let Some(v) = tree.get("version_info").and_then(Value::as_str) {
        read.version = v.to_string();
    }
    if let Some(resources) = tree.get("resources").and_then(Value::as_array) {
        read.raw.clone_from(resources);
    }
    Ok(tree)
}

impl Xds {
    /// The subscriptions `boot` names, served beside its static resources;
    /// a listener an update removes or replaces drains for `drain_time`.
    pub fn new(boot: &Bootstrap, drain_time: Duration) -> Self {
        let mut xds = Xds {
            drain_time,
            draining: Vec::new(),
            lds: boot
                .dynamic
                .lds
                .clone()
                .map(|s| Subscription::new(Kind::Listeners, s)),
            cds: boot
                .dynamic
                .cds
                .clone()
                .map(|s| Subscription::new(Kind::Clusters, s)),
            rds: BTreeMap::new(),
            eds: BTreeMap::new(),
            next_id: 0,
            watcher: None,
            base: boot.clone(),
            dump: Arc::default(),
        };
        xds.subscribe_routes(&boot.listeners);
        xds.subscribe_endpoints(&boot.clusters);
        xds
    }

    /// Names each subscription's `update_duration` histogram, which Envoy
    /// lists (and, for file sources, never records).
    fn name_histograms(&self, store: &Store) {
        let names = [
            self.lds
                .as_ref()
                .map(|_| "listener_manager.lds.".to_string()),
            self.cds
                .as_ref()
                .map(|_| "cluster_manager.cds.".to_string()),
        ];
        let rds = self.rds.values().filter_map(|r| match &r.stats {
            Stats::Rds(prefix) => Some(prefix.clone()),
            _ => None,
        });
        let eds = self.eds.values().filter_map(|e| match &e.stats {
            Stats::Eds(name) => Some(format!("cluster.{name}.")),
            _ => None,
        });
        for prefix in names.into_iter().flatten().chain(rds).chain(eds) {
            store.histograms.id(&format!("{prefix}update_duration"));
        }
    }

    /// Whether anything is dynamic.
    pub fn is_dynamic(&self) -> bool {
        self.lds.is_some() || self.cds.is_some() || !self.rds.is_empty() || !self.eds.is_empty()
    }

    /// Every file source with its kind.
    fn sources(&self) -> Vec<(Kind, FileSource)> {
        let cds = self.cds.iter().map(|s| (s.kind, s.source.clone()));
        let lds = self.lds.iter().map(|s| (s.kind, s.source.clone()));
        let rds = self
            .rds
            .values()
            .map(|r| (r.sub.kind, r.sub.source.clone()));
        let eds = self
            .eds
            .values()
            .map(|e| (e.sub.kind, e.sub.source.clone()));
        cds.chain(lds).chain(rds).chain(eds).collect()
    }

    /// Starts watching the files; updates arrive on the channel.
    pub fn watch(&mut self) -> Result<crossbeam_channel::Receiver<Kind>, String> {
        let (watcher, updates) = Watcher::spawn(&self.sources())?;
        self.watcher = Some(watcher);
        Ok(updates)
    }

    /// The dynamic part of `/config_dump`, kept current: `{"listeners":
    /// …, "clusters": …, "routes": […]}`, each with its version,
    /// resources, when they were accepted and the last refused update.
    pub fn dump(&self) -> Arc<Mutex<Value>> {
        self.dump.clone()
    }

    /// The first load, as Envoy starts: a source file that does not exist
    /// stops the start; a bad one is counted and the proxy starts without
    /// it. The static clusters' endpoints come first, then clusters (and
    /// their endpoints), the static listeners' routes, and listeners (and
    /// the routes they name).
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
        self.name_histograms(store);
        let mut current = first;
        let static_endpoints: Vec<Kind> = self.eds.keys().map(|&i| Kind::Endpoints(i)).collect();
        let static_routes: Vec<Kind> = self.rds.keys().map(|&i| Kind::Routes(i)).collect();
        let kinds: Vec<Kind> = static_endpoints
            .into_iter()
            .chain([Kind::Clusters])
            .chain(static_routes)
            .chain([Kind::Listeners])
            .collect();
        for kind in kinds {
            if let Some(next) = self.reload(kind, &current, store, sinks, |_| Ok(())) {
                current = next;
            }
        }
        Ok(current)
    }

    fn source(&self, kind: Kind) -> Option<&FileSource> {
        match kind {
            Kind::Listeners => self.lds.as_ref().map(|s| &s.source),
            Kind::Clusters => self.cds.as_ref().map(|s| &s.source),
            Kind::Routes(i) => self.rds.get(&i).map(|r| &r.sub.source),
            Kind::Endpoints(i) => self.eds.get(&i).map(|e| &e.sub.source),
        }
    }

    /// Where `kind` counts (nowhere once its subscription was dropped).
    fn stats(&self, kind: Kind) -> &Stats {
        let stats = match kind {
            Kind::Listeners => Some(&Stats::Lds),
            Kind::Clusters => Some(&Stats::Cds),
            Kind::Routes(i) => self.rds.get(&i).map(|r| &r.stats),
            Kind::Endpoints(i) => self.eds.get(&i).map(|e| &e.stats),
        };
        stats.unwrap_or(&Stats::Dropped)
    }

    /// Reads the `kind` source again and, when the update is valid and
    /// `accept` (which plans its listeners' sockets) agrees, returns the
    /// snapshot it made. Anything refused leaves the subscription as it
    /// was, counted and remembered for `/config_dump`. Route configurations
    /// a listener update names for the first time are read with it.
    pub fn reload(
        &mut self,
        kind: Kind,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        let path = self.source(kind)?.path.clone();
        self.stats(kind).count(store, Counted::Attempt);
        let mut got = Read {
            version: String::new(),
            raw: Vec::new(),
        };
        let mut decoded = None;
        let candidate = self.candidate(kind, &path, &mut got, &mut decoded);
        if matches!(&decoded, Some(Decoded::Endpoints(e)) if e.is_empty()) {
            // An empty EDS update changes no endpoint: nothing to compile.
            self.take(kind, decoded, got, SystemTime::now(), store);
            return None;
        }
        let result = candidate
            .and_then(|mut boot| {
                match &decoded {
                    Some(Decoded::Listeners(listeners)) => {
                        for kind in self.subscribe_routes(listeners) {
                            self.load_new(kind, store);
                        }
                        boot.route_configs = self.route_configs();
                    }
                    Some(Decoded::Clusters(clusters)) => {
                        for kind in self.subscribe_endpoints(clusters) {
                            self.load_new(kind, store);
                        }
                        boot.assignments = self.assignments();
                    }
                    _ => {}
                }
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
                self.refused(kind, refusal, got, at, store);
                return None;
            }
        };
        count_changes(store, current, &next);
        self.take(kind, decoded, got, at, store);
        if matches!(kind, Kind::Listeners | Kind::Clusters) {
            self.drop_unused(store);
            self.name_histograms(store);
        }
        self.publish_dump();
        Some(next)
    }

    /// Counts an accepted update and keeps what it delivered. As in
    /// Envoy, an empty EDS update is taken (its version too) and keeps the
    /// endpoints there were.
    fn take(
        &mut self,
        kind: Kind,
        decoded: Option<Decoded>,
        got: Read,
        at: SystemTime,
        store: &Store,
    ) {
        let stats = self.stats(kind);
        stats.count(store, Counted::Success);
        if matches!(&decoded, Some(Decoded::Endpoints(e)) if e.is_empty()) {
            stats.empty(store);
        }
        stats.accepted(store, &got.version, at);
        match decoded {
            Some(Decoded::Listeners(resources)) => {
                self.drain_replaced(&resources, store);
                if let Some(s) = &mut self.lds {
                    s.accept(resources, got.raw, &got.version, at);
                }
            }
            Some(Decoded::Clusters(resources)) => {
                if let Some(s) = &mut self.cds {
                    s.accept(resources, got.raw, &got.version, at);
                }
            }
            Some(Decoded::Routes(resources)) => {
                if let Some(r) = self.routes_mut(kind) {
                    r.sub.accept(resources, got.raw, &got.version, at);
                }
            }
            Some(Decoded::Endpoints(resources)) if !resources.is_empty() => {
                if let Some(e) = self.endpoints_mut(kind) {
                    e.sub.accept(resources, got.raw, &got.version, at);
                }
            }
            _ => {}
        }
    }

    fn routes_mut(&mut self, kind: Kind) -> Option<&mut Routes> {
        match kind {
            Kind::Routes(i) => self.rds.get_mut(&i),
            _ => None,
        }
    }

    fn endpoints_mut(&mut self, kind: Kind) -> Option<&mut Endpoints> {
        match kind {
            Kind::Endpoints(i) => self.eds.get_mut(&i),
            _ => None,
        }
    }

    /// Drops the route and endpoint subscriptions no listener (active or
    /// draining) or cluster names any more, as Envoy does: under a control
    /// plane that keeps renaming them, they would otherwise pile up.
    fn drop_unused(&mut self, store: &Store) {
        let boot = self.merged();
        let active = boot.listeners.iter().flat_map(|l| l.rds_sources());
        let draining = self.draining.iter().flat_map(|d| &d.routes);
        let routes: Vec<&str> = active
            .map(|(_, r)| r.name.as_str())
            .chain(draining.map(String::as_str))
            .collect();
        let clusters: Vec<(&str, &config::EdsSource)> = boot
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.eds.as_ref()?)))
            .collect();
        let mut gone = Vec::new();
        self.rds.retain(|&id, r| {
            let used = routes.contains(&r.name.as_str());
            if !used {
                if let Stats::Rds(prefix) = &r.stats {
                    store.forget_rds(prefix);
                }
                gone.push(Kind::Routes(id));
            }
            used
        });
        self.eds.retain(|&id, e| {
            let used = clusters
                .iter()
                .any(|(name, source)| *name == e.cluster && **source == e.source);
            if !used {
                gone.push(Kind::Endpoints(id));
            }
            used
        });
        if let Some(w) = &mut self.watcher {
            for kind in gone {
                w.remove(kind);
            }
        }
    }

    /// Counts, logs and remembers a refused update.
    fn refused(&mut self, kind: Kind, refusal: Refusal, got: Read, at: SystemTime, store: &Store) {
        let (error, counted) = match refusal {
            Refusal::Failure(m) => (m, Counted::Failure),
            Refusal::Rejected(m) => (m, Counted::Rejected),
        };
        self.stats(kind).count(store, counted);
        let path = self.source(kind).map(|s| s.path.display().to_string());
        log::warn!(
            "{} update from {} refused (the last accepted config stays): {error}",
            kind.api(),
            path.unwrap_or_default(),
        );
        let rejected = Some(Outcome {
            version: got.version,
            at,
            error,
            raw: got.raw,
        });
        match (kind, &mut self.lds, &mut self.cds) {
            (Kind::Listeners, Some(s), _) => s.rejected = rejected,
            (Kind::Clusters, _, Some(s)) => s.rejected = rejected,
            (Kind::Routes(_), _, _) => {
                if let Some(r) = self.routes_mut(kind) {
                    r.sub.rejected = rejected;
                }
            }
            (Kind::Endpoints(_), _, _) => {
                if let Some(e) = self.endpoints_mut(kind) {
                    e.sub.rejected = rejected;
                }
            }
            _ => {}
        }
        if matches!(kind, Kind::Listeners | Kind::Clusters) {
            // The refused update may have subscribed to what it named.
            self.drop_unused(store);
        }
        self.publish_dump();
    }

    /// Starts draining (for `/config_dump`) the accepted listeners that
    /// `next` removes or replaces other than in place.
    fn drain_replaced(&mut self, next: &[config::Listener], store: &Store) {
        let Some(s) = &self.lds else {
            return;
        };
        let until = Instant::now() + self.drain_time;
        let by_name: HashMap<&str, &config::Listener> =
            next.iter().map(|r| (r.name.as_str(), r)).collect();
        for (old, entry) in s.resources.iter().zip(&s.entries) {
            let now = by_name.get(old.name.as_str());
            if now.is_none_or(|r| !r.keeps_version_of(old)) {
                self.draining.push(Draining {
                    name: old.name.clone(),
                    entry: entry.clone(),
                    until,
                    routes: old.rds_sources().map(|(_, r)| r.name.clone()).collect(),
                });
            }
        }
        store.listener_manager.set(
            store.main_row(),
            ListenerStat::total_listeners_draining,
            self.draining.len() as u64,
        );
    }

    /// Subscribes to the route configurations `listeners` name that have no
    /// subscription yet; returns their kinds.
    fn subscribe_routes(&mut self, listeners: &[config::Listener]) -> Vec<Kind> {
        let mut new = Vec::new();
        for (stat_prefix, rds) in listeners.iter().flat_map(|l| l.rds_sources()) {
            if self.rds.values().any(|r| r.name == rds.name) {
                continue;
            }
            self.next_id += 1;
            let kind = Kind::Routes(self.next_id);
            if let Some(w) = &mut self.watcher {
                if let Err(e) = w.add(kind, &rds.source) {
                    log::error!("RDS {}: {e}", rds.name);
                }
            }
            new.push(kind);
            let routes = Routes {
                name: rds.name.clone(),
                stats: Stats::Rds(format!("http.{stat_prefix}.rds.{}.", rds.name)),
                sub: Subscription::new(kind, rds.source.clone()),
            };
            self.rds.insert(self.next_id, routes);
        }
        new
    }

    /// Subscribes to the endpoints of the EDS clusters among `clusters`
    /// that have no subscription yet; returns their kinds. A CDS update
    /// that changes a cluster keeps its subscription, and so the endpoints
    /// it holds (control planes do not resend an unchanged assignment).
    fn subscribe_endpoints(&mut self, clusters: &[config::Cluster]) -> Vec<Kind> {
        let mut new = Vec::new();
        for c in clusters {
            let Some(eds) = &c.eds else {
                continue;
            };
            let subscribed = self.eds.values();
            if subscribed
                .into_iter()
                .any(|e| e.cluster == c.name && e.source == *eds)
            {
                continue;
            }
            self.next_id += 1;
            let kind = Kind::Endpoints(self.next_id);
            if let Some(w) = &mut self.watcher {
                if let Err(e) = w.add(kind, &eds.source) {
                    log::error!("EDS {}: {e}", c.name);
                }
            }
            new.push(kind);
            let stat_name = c.alt_stat_name.clone().unwrap_or_else(|| c.name.clone());
            let endpoints = Endpoints {
                cluster: c.name.clone(),
                source: eds.clone(),
                stats: Stats::Eds(stat_name),
                sub: Subscription::new(kind, eds.source.clone()),
            };
            self.eds.insert(self.next_id, endpoints);
        }
        new
    }

    /// The first read of a route configuration or an assignment that an
    /// update names: counted as its own update, taken if it decodes (the
    /// update it came with compiles it).
    fn load_new(&mut self, kind: Kind, store: &Store) {
        let Some(path) = self.source(kind).map(|s| s.path.clone()) else {
            return;
        };
        self.stats(kind).count(store, Counted::Attempt);
        let mut got = Read {
            version: String::new(),
            raw: Vec::new(),
        };
        let mut decoded = None;
        let at = SystemTime::now();
        match self.candidate(kind, &path, &mut got, &mut decoded) {
            Ok(_) => self.take(kind, decoded, got, at, store),
            Err(refusal) => self.refused(kind, refusal, got, at, store),
        }
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
        self.drop_unused(store);
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
        let routes: Vec<Value> = self.rds.values().map(|r| r.sub.dump()).collect();
        let dump = json!({
            "listeners": listeners,
            "clusters": self.cds.as_ref().map(Subscription::dump),
            "routes": routes,
        });
        *self.dump.lock().unwrap_or_else(|p| p.into_inner()) = dump;
    }

    /// The bootstrap the `kind` file's update would make; what was read
    /// and decoded is written to the last two.
    fn candidate(
        &self,
        kind: Kind,
        path: &std::path::Path,
        got: &mut Read,
        decoded: &mut Option<Decoded>,
    ) -> Result<Bootstrap, Refusal> {
        let tree = read(path, got)?;
        let rejected = |e: Vec<ConfigError>| Refusal::Rejected(listed(&e));
        let mut boot = self.merged();
        match kind {
            Kind::Listeners => {
                let update = config::decode_listener_update(&tree).map_err(rejected)?;
                let mut listeners = update.resources;
                for l in &mut listeners {
                    l.set_strip_fragment(self.base.strip_fragment);
                }
                boot.listeners.truncate(self.base.listeners.len());
                boot.listeners.extend(listeners.iter().cloned());
                *decoded = Some(Decoded::Listeners(listeners));
            }
            Kind::Clusters => {
                let update = config::decode_cluster_update(&tree).map_err(rejected)?;
                boot.clusters.truncate(self.base.clusters.len());
                boot.clusters.extend(update.resources.iter().cloned());
                *decoded = Some(Decoded::Clusters(update.resources));
            }
            Kind::Endpoints(i) => {
                let Some(e) = self.eds.get(&i) else {
                    return Err(Refusal::Failure("no such EDS subscription".into()));
                };
                let eds = &e.source;
                let update =
                    config::decode_assignment_update(&tree, &eds.service_name).map_err(rejected)?;
                if let Some(a) = update.resources.first() {
                    boot.assignments.insert(eds.service_name.clone(), a.clone());
                }
                *decoded = Some(Decoded::Endpoints(update.resources));
            }
            Kind::Routes(i) => {
                let Some(r) = self.rds.get(&i) else {
                    return Err(Refusal::Failure("no such RDS subscription".into()));
                };
                let name = &r.name;
                let update = config::decode_route_update(&tree, name).map_err(rejected)?;
                if let Some(rc) = update.resources.first() {
                    boot.route_configs.insert(name.clone(), rc.clone());
                }
                *decoded = Some(Decoded::Routes(update.resources));
            }
        }
        Ok(boot)
    }

    /// The route configurations accepted so far, by name.
    fn route_configs(&self) -> HashMap<String, config::RouteConfiguration> {
        let accepted = self.rds.values().filter_map(|r| {
            let rc = r.sub.resources.first()?;
            Some((r.name.clone(), rc.clone()))
        });
        accepted.collect()
    }

    /// The endpoint assignments accepted so far, by EDS service name.
    fn assignments(&self) -> HashMap<String, config::Assignment> {
        let accepted = self.eds.values().filter_map(|e| {
            let a = e.sub.resources.first()?;
            Some((e.source.service_name.clone(), a.clone()))
        });
        accepted.collect()
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
        boot.route_configs = self.route_configs();
        boot.assignments = self.assignments();
        boot
    }
}
