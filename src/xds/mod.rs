//! xDS: listeners (LDS), clusters (CDS), route configurations (RDS) and
//! endpoints (EDS) from files or a control plane's ADS stream, validated by
//! the bootstrap's own decoder and compiled, with the static resources, into
//! the next snapshot.
//!
//! An update is all or nothing: any error in it (a resource that does not
//! decode, a route to a cluster that does not exist, a listener that cannot
//! bind) rejects the whole update, and what was accepted before keeps
//! serving. (Envoy applies the good resources of a rejected update; a
//! rejected update here changes nothing.)

mod ads;
mod grpc;
mod proto;
mod secrets;
mod stats;
mod streams;
mod subscription;
mod warming;
mod watch;

pub use grpc::Event as AdsEvent;
use grpc::Said;
pub use stats::count_changes;
use streams::{OwnStream, Subject};

use crate::access_log::Sinks;
use crate::config::{self, Bootstrap, ConfigError, ConfigSource, FileSource};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::ListenerManager as ListenerStat;
use crate::stats::Store;
use ads::Ads;
use secrets::SecretSub;
use serde_json::{json, Value};
use stats::{Counted, Stats};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use subscription::{Entry, Outcome, Resource, Subscription, Waiting};
use warming::{ClusterWarming, Warming};
use watch::Watcher;

/// A subscription: what an update of a watched file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Something that changed at a source.
pub enum Change {
    /// The file of a subscription was replaced.
    File(Kind),
    /// The ADS stream said something.
    Ads(AdsEvent),
    /// A second passed: waits for first updates may be over.
    Tick,
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
    /// Listeners whose latest version waits for its routes, by name.
    warming: BTreeMap<String, Warming>,
    /// Clusters whose latest version waits for its endpoints, by name.
    warming_clusters: BTreeMap<String, ClusterWarming>,
    lds: Option<Subscription<config::Listener>>,
    cds: Option<Subscription<config::Cluster>>,
    /// Route configuration subscriptions by id, dropped when no listener
    /// names them any more.
    rds: BTreeMap<u64, Routes>,
    /// EDS subscriptions by id, dropped when their cluster goes.
    eds: BTreeMap<u64, Endpoints>,
    /// Secrets asked of the control plane, by name.
    sds: BTreeMap<String, SecretSub>,
    next_id: u64,
    /// Watches the files, once serving.
    watcher: Option<Watcher>,
    /// The ADS client, once started (stream 0).
    ads: Option<Ads>,
    /// The streams `api_config_source` subscriptions have of their own, by
    /// stream id (from 1).
    own: BTreeMap<u64, OwnStream>,
    next_stream: u64,
    /// Every control-plane stream's events.
    events: (
        crossbeam_channel::Sender<AdsEvent>,
        crossbeam_channel::Receiver<AdsEvent>,
    ),
    /// The static clusters a stream may connect to, by name.
    static_clusters: HashMap<String, Arc<crate::upstream::Cluster>>,
    /// The node, as sent to control planes.
    node: Value,
    /// Whether listeners are asked of the control plane yet (after the
    /// clusters, as Envoy's initialisation orders them).
    ads_listeners: bool,
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

impl Decoded {
    /// The update a removal makes for an RDS or EDS subscription (the
    /// only ones removals reach): none of its resource, nothing changed.
    fn nothing(kind: Kind) -> Decoded {
        match kind {
            Kind::Routes(_) => Decoded::Routes(Vec::new()),
            _ => Decoded::Endpoints(Vec::new()),
        }
    }

    /// An RDS or EDS update without its resource (a delta removal, an
    /// empty EDS response): it changes nothing served.
    fn is_empty(&self) -> bool {
        match self {
            Decoded::Routes(r) => r.is_empty(),
            Decoded::Endpoints(e) => e.is_empty(),
            Decoded::Listeners(_) | Decoded::Clusters(_) => false,
        }
    }
}

/// An update read from its file.
struct Read {
    /// `version_info` ("" when absent).
    version: String,
    /// Its resources as delivered.
    raw: Vec<Value>,
}

/// Why an update was not taken, in Envoy's two kinds.
#[derive(Clone)]
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

/// The resources that warm, each with the version serving meanwhile, as
/// the admin dump takes them.
fn warming_dump<'a, T: 'a>(
    warming: impl Iterator<Item = (&'a String, Option<&'a (T, Entry)>)>,
) -> Value {
    let entries = warming
        .map(|(name, serving)| json!({"name": name, "serving": serving.map(|(_, e)| e.dump())}));
    Value::Array(entries.collect())
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

impl Refusal {
    fn message(&self) -> &str {
        match self {
            Refusal::Failure(m) | Refusal::Rejected(m) => m,
        }
    }
}

/// An update for one subscription as it came: its `DiscoveryResponse`
/// tree (or why there is none) and what `/config_dump` keeps of it.
struct Delivery {
    kind: Kind,
    tree: Result<Value, Refusal>,
    got: Read,
    /// A delta removal of the subscription's one resource (RDS, EDS):
    /// Envoy keeps what it has and counts an update.
    removal: bool,
}

impl Xds {
    /// The subscriptions `boot` names, served beside its static resources;
    /// a listener an update removes or replaces drains for `drain_time`.
    pub fn new(boot: &Bootstrap, drain_time: Duration) -> Self {
        let mut xds = Xds {
            drain_time,
            draining: Vec::new(),
            warming: BTreeMap::new(),
            warming_clusters: BTreeMap::new(),
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
            sds: BTreeMap::new(),
            next_id: 0,
            watcher: None,
            ads: None,
            own: BTreeMap::new(),
            next_stream: 1,
            events: crossbeam_channel::unbounded(),
            static_clusters: HashMap::new(),
            node: boot
                .node
                .as_ref()
                .map(crate::admin::node_json)
                .unwrap_or_default(),
            ads_listeners: false,
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
        for (kind, _) in self.sources() {
            let prefix = self.stats(kind).prefix();
            store.histograms.id(&format!("{prefix}update_duration"));
        }
    }

    /// The static and the accepted dynamic listeners (warming ones in
    /// their latest version).
    fn accepted_listeners(&self) -> impl Iterator<Item = &config::Listener> {
        let accepted = self.lds.iter().flat_map(|s| &s.resources);
        self.base.listeners.iter().chain(accepted)
    }

    /// The static and the accepted dynamic clusters.
    fn accepted_clusters(&self) -> impl Iterator<Item = &config::Cluster> {
        let accepted = self.cds.iter().flat_map(|s| &s.resources);
        self.base.clusters.iter().chain(accepted)
    }

    /// Whether anything is dynamic.
    pub fn is_dynamic(&self) -> bool {
        let sources = self.lds.is_some() || self.cds.is_some();
        sources || !self.rds.is_empty() || !self.eds.is_empty() || self.base.dynamic.ads.is_some()
    }

    /// Every source with its kind.
    fn sources(&self) -> Vec<(Kind, &ConfigSource)> {
        let cds = self.cds.iter().map(|s| (s.kind, &s.source));
        let lds = self.lds.iter().map(|s| (s.kind, &s.source));
        let rds = self.rds.values().map(|r| (r.sub.kind, &r.sub.source));
        let eds = self.eds.values().map(|e| (e.sub.kind, &e.sub.source));
        cds.chain(lds).chain(rds).chain(eds).collect()
    }

    /// Every file source with its kind.
    fn files(&self) -> Vec<(Kind, FileSource)> {
        let files = self.sources().into_iter();
        files
            .filter_map(|(kind, s)| Some((kind, s.file()?.clone())))
            .collect()
    }

    /// Starts watching the files; updates arrive on the channel.
    pub fn watch(&mut self) -> Result<crossbeam_channel::Receiver<Kind>, String> {
        let (watcher, updates) = Watcher::spawn(&self.files())?;
        self.watcher = Some(watcher);
        Ok(updates)
    }

    /// The dynamic part of `/config_dump`, kept current: `{"listeners":
    /// …, "clusters": …, "routes": […]}`, each with its version,
    /// resources, when they were accepted and the last refused update.
    pub fn dump(&self) -> Arc<Mutex<Value>> {
        self.dump.clone()
    }

    /// The control-plane streams' events.
    pub fn ads_events(&self) -> crossbeam_channel::Receiver<AdsEvent> {
        self.events.1.clone()
    }

    /// The first load, as Envoy starts: a source file that does not exist
    /// stops the start; a bad one is counted and the proxy starts without
    /// it. Clusters and their endpoints come first, then listeners and the
    /// routes they name; what comes from the control plane is waited for,
    /// each subscription up to its `initial_fetch_timeout`.
    pub fn start(
        &mut self,
        first: ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
    ) -> Result<ConfigSnapshot, String> {
        for (_, source) in self.files() {
            if !source.path.exists() {
                return Err(format!(
                    "paths must refer to an existing path in the system: '{}' does not exist",
                    source.path.display()
                ));
            }
        }
        let statics = first
            .clusters
            .iter()
            .map(|c| (c.name().to_string(), c.clone()));
        self.static_clusters = statics.collect();
        if let Some(config) = &self.base.dynamic.ads {
            let cluster = self.static_clusters.get(&config.cluster);
            let cluster = cluster
                .ok_or_else(|| format!("Unknown gRPC client cluster '{}'", config.cluster))?;
            let stream = (0, self.events.0.clone());
            let cluster = cluster.clone();
            let ads = Ads::start(config, cluster, &self.node, None, stream, ("", store))?;
            self.ads = Some(ads);
        }
        count_changes(store, &ConfigSnapshot::empty(), &first);
        self.name_histograms(store);
        let mut current = first;
        for listeners in [false, true] {
            let files = self.files().into_iter().map(|(kind, _)| kind);
            let stage: Vec<Kind> = if listeners {
                files
                    .filter(|k| matches!(k, Kind::Routes(_)))
                    .chain([Kind::Listeners])
                    .collect()
            } else {
                files
                    .filter(|k| matches!(k, Kind::Endpoints(_)))
                    .chain([Kind::Clusters])
                    .collect()
            };
            for kind in stage {
                if self.source(kind).is_some_and(|s| s.file().is_some()) {
                    if let Some(next) = self.reload(kind, &current, store, sinks, |_| Ok(())) {
                        current = next;
                    }
                }
            }
            self.ads_listeners = listeners;
            current = self.await_first_updates(current, store, sinks);
        }
        Ok(current)
    }

    /// Takes what the control plane sends until every subscription waited
    /// for has its first update or its `initial_fetch_timeout` is over.
    fn await_first_updates(
        &mut self,
        mut current: ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
    ) -> ConfigSnapshot {
        self.sync_ads(store);
        let events = self.ads_events();
        loop {
            let waits = self.awaited();
            let secrets = self.awaited_secrets();
            if waits.is_empty() && secrets.is_empty() {
                return current;
            }
            let ends = waits.iter().filter_map(|(_, until)| *until);
            let deadline = ends.chain(secrets).min();
            let event = match deadline {
                Some(at) => events.recv_deadline(at).ok(),
                None => events.recv().ok(),
            };
            match event {
                Some(event) => {
                    if let Some(next) =
                        self.update(Change::Ads(event), &current, store, sinks, |_| Ok(()))
                    {
                        current = next;
                    }
                }
                None => {
                    let timed_out = self.update(Change::Tick, &current, store, sinks, |_| Ok(()));
                    if let Some(next) = timed_out {
                        current = next;
                    }
                }
            }
        }
    }

    /// The subscriptions whose first update is awaited, each with when
    /// the wait ends (None: never).
    fn awaited(&self) -> Vec<(Kind, Option<Instant>)> {
        let mut all = Vec::new();
        all.extend(self.cds.iter().map(|s| (s.kind, s.awaited_until())));
        all.extend(
            self.eds
                .values()
                .map(|e| (e.sub.kind, e.sub.awaited_until())),
        );
        if self.ads_listeners {
            all.extend(self.lds.iter().map(|s| (s.kind, s.awaited_until())));
            all.extend(
                self.rds
                    .values()
                    .map(|r| (r.sub.kind, r.sub.awaited_until())),
            );
        }
        all.into_iter()
            .filter_map(|(kind, until)| Some((kind, until?)))
            .collect()
    }

    /// Gives up waiting for the first update of the `waits` whose time is
    /// over, counting `init_fetch_timeout`.
    fn time_out(&mut self, waits: &[(Kind, Option<Instant>)], store: &Store) {
        let now = Instant::now();
        for (kind, until) in waits {
            if until.is_some_and(|t| t <= now) {
                log::warn!("{}: initial fetch timed out", kind.api());
                self.stats(*kind).fetch_timed_out(store);
                self.waiting(*kind, |w| w.timed_out = true);
            }
        }
    }

    /// Whether the `kind` subscription was asked of the control plane.
    fn asked(&self, kind: Kind) -> bool {
        let wait = match kind {
            Kind::Listeners => self.lds.as_ref().map(|s| &s.wait),
            Kind::Clusters => self.cds.as_ref().map(|s| &s.wait),
            Kind::Routes(i) => self.rds.get(&i).map(|r| &r.sub.wait),
            Kind::Endpoints(i) => self.eds.get(&i).map(|e| &e.sub.wait),
        };
        wait.is_some_and(|w| w.asked)
    }

    /// Runs `f` on where the `kind` subscription's first update stands.
    fn waiting(&mut self, kind: Kind, f: impl FnOnce(&mut Waiting)) {
        match kind {
            Kind::Listeners => self.lds.as_mut().map(|s| f(&mut s.wait)),
            Kind::Clusters => self.cds.as_mut().map(|s| f(&mut s.wait)),
            Kind::Routes(i) => self.rds.get_mut(&i).map(|r| f(&mut r.sub.wait)),
            Kind::Endpoints(i) => self.eds.get_mut(&i).map(|e| f(&mut e.sub.wait)),
        };
    }

    fn source(&self, kind: Kind) -> Option<&ConfigSource> {
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

    /// Takes a change at a source: an update when it is valid and `accept`
    /// (which plans its listeners' sockets) agrees, returning the snapshot
    /// it made. Anything refused leaves the subscriptions as they were,
    /// counted and remembered for `/config_dump` (and, from the control
    /// plane, NACKed).
    pub fn update(
        &mut self,
        change: Change,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        match change {
            Change::File(kind) => self.reload(kind, current, store, sinks, accept),
            Change::Ads(event) => self.control_plane_said(event, current, store, sinks, accept),
            Change::Tick => {
                let waits = self.awaited();
                self.time_out(&waits, store);
                self.time_out_secrets(store);
                if !self.warmed() {
                    return None;
                }
                self.apply(Vec::new(), current, store, sinks, accept)
                    .ok()
                    .flatten()
            }
        }
    }

    /// Reads the `kind` file again and takes it as an update.
    fn reload(
        &mut self,
        kind: Kind,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        let path = self.source(kind)?.file()?.path.clone();
        let mut got = Read {
            version: String::new(),
            raw: Vec::new(),
        };
        let tree = read(&path, &mut got);
        let delivery = Delivery {
            kind,
            tree,
            got,
            removal: false,
        };
        self.apply(vec![delivery], current, store, sinks, accept)
            .ok()
            .flatten()
    }

    /// Takes what the ADS stream said; a response is ACKed or NACKed.
    fn control_plane_said(
        &mut self,
        event: AdsEvent,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Option<ConfigSnapshot> {
        let stream = event.stream;
        let only = self.subject(stream)?;
        let ads = self.stream_mut(stream)?;
        let response = match event.said {
            Said::Connected(generation) => {
                ads.connected(generation);
                self.show_connected(store);
                return None;
            }
            Said::Disconnected(generation, _) => {
                ads.disconnected(generation);
                self.show_connected(store);
                self.lost_stream(only.as_ref(), store);
                return None;
            }
            Said::Response(generation, response) => {
                if !ads.current(generation) || !ads.wants(&response.type_url) {
                    return None;
                }
                response
            }
        };
        let result = if response.type_url == config::SECRET_TYPE {
            // The listeners stay as they are: their sockets are planned
            // again all the same, as every snapshot published is.
            let taken = self.take_secrets(&response, current, store, only.as_ref());
            taken.and_then(|next| match next {
                Some(next) => accept(&next).map(|()| Some(next)),
                None => Ok(None),
            })
        } else {
            let deliveries = self.deliveries(&response, only.as_ref());
            let kinds: Vec<Kind> = deliveries.iter().map(|d| d.kind).collect();
            let started = Instant::now();
            let applied = self.apply(deliveries, current, store, sinks, accept);
            if applied.is_ok() {
                // Envoy's `update_duration`: how long taking an update took.
                let micros = started.elapsed().as_micros() as u64;
                for kind in kinds {
                    let name = format!("{}update_duration", self.stats(kind).prefix());
                    let id = store.histograms.id(&name);
                    store.histograms.record_off_shard(id, micros);
                }
            }
            applied
        };
        let ads = self.stream_mut(stream)?;
        let (type_url, nonce) = (&response.type_url, &response.nonce);
        match &result {
            Ok(_) => ads.ack(&response),
            Err(error) => ads.nack(type_url, nonce, error),
        }
        self.sync_ads(store);
        result.ok().flatten()
    }

    /// A response's updates, one per subscription it is for: LDS and CDS
    /// take every resource; a route configuration or an EDS service its
    /// own (resources nobody subscribed to are ignored, as Envoy does).
    /// On a stream of its own (`only`), the response is for that one
    /// subscription.
    fn deliveries(&self, response: &grpc::Response, only: Option<&Subject>) -> Vec<Delivery> {
        let version = &response.version;
        let mine = |kind: Kind, s: &ConfigSource| match only {
            None => matches!(s, ConfigSource::Ads { .. }),
            Some(subject) => *subject == Subject::Kind(kind),
        };
        let delta = match only {
            None => self.base.dynamic.ads.as_ref().is_some_and(|a| a.delta),
            Some(Subject::Kind(kind)) => {
                let own = self.source(*kind).and_then(ConfigSource::own_stream);
                own.is_some_and(|a| a.delta)
            }
            Some(Subject::Secret(_)) => false,
        };
        let kinds: Vec<(Kind, Option<&str>)> = match response.type_url.as_str() {
            config::LISTENER_TYPE => self
                .lds
                .iter()
                .filter(|s| mine(s.kind, &s.source))
                .map(|s| (s.kind, None))
                .collect(),
            config::CLUSTER_TYPE => self
                .cds
                .iter()
                .filter(|s| mine(s.kind, &s.source))
                .map(|s| (s.kind, None))
                .collect(),
            config::ROUTE_TYPE => self
                .rds
                .iter()
                .filter(|(_, r)| mine(r.sub.kind, &r.sub.source))
                .map(|(&i, r)| (Kind::Routes(i), Some(r.name.as_str())))
                .collect(),
            config::ASSIGNMENT_TYPE => self
                .eds
                .iter()
                .filter(|(_, e)| mine(e.sub.kind, &e.sub.source))
                .map(|(&i, e)| (Kind::Endpoints(i), Some(e.source.service_name.as_str())))
                .collect(),
            _ => Vec::new(),
        };
        let name_field = match response.type_url.as_str() {
            config::ASSIGNMENT_TYPE => "cluster_name",
            _ => "name",
        };
        // RDS and EDS resources by name, each subscription taking its own.
        let mut by_name: HashMap<&str, Vec<Value>> = HashMap::new();
        let named = kinds.iter().any(|(_, name)| name.is_some());
        if let (Ok(all), true) = (&response.resources, named) {
            for r in all {
                let name = r[name_field].as_str().unwrap_or_default();
                by_name.entry(name).or_default().push(r.clone());
            }
        }
        let mut deliveries = Vec::new();
        for (kind, name) in kinds {
            let mut removal = false;
            let resources = match (&response.resources, name) {
                (Err(e), _) => Err(Refusal::Rejected(e.clone())),
                (Ok(changed), None) if delta => Ok(self.with_changes(kind, changed, response)),
                (Ok(all), None) => Ok(all.clone()),
                (Ok(_), Some(name)) => {
                    let mine = by_name.get(name).cloned().unwrap_or_default();
                    if mine.is_empty() {
                        removal = delta && response.removed.iter().any(|n| n == name);
                        if !removal {
                            continue;
                        }
                    }
                    Ok(mine)
                }
            };
            let got = Read {
                version: version.clone(),
                raw: resources.as_ref().map_or_else(|_| Vec::new(), Clone::clone),
            };
            let tree = resources.map(|r| json!({"version_info": version, "resources": r}));
            deliveries.push(Delivery {
                kind,
                tree,
                got,
                removal,
            });
        }
        deliveries
    }

    /// The whole set of listeners or clusters a delta `response` makes: the
    /// accepted ones with the `changed` ones replaced or added and the
    /// removed ones gone.
    fn with_changes(&self, kind: Kind, changed: &[Value], response: &grpc::Response) -> Vec<Value> {
        let mut all = match kind {
            Kind::Listeners => self.lds.as_ref().map(Subscription::delivered),
            Kind::Clusters => self.cds.as_ref().map(Subscription::delivered),
            _ => None,
        }
        .unwrap_or_default();
        for (resource, (name, _)) in changed.iter().zip(&response.named) {
            match all.iter_mut().find(|r| r["name"] == name.as_str()) {
                Some(r) => *r = resource.clone(),
                None => all.push(resource.clone()),
            }
        }
        all.retain(|r| !response.removed.iter().any(|n| r["name"] == n.as_str()));
        all
    }

    /// Asks the control plane for what the subscriptions now want: every
    /// cluster (then every listener, once the start reached them) and the
    /// named route configurations and EDS services.
    fn sync_ads(&mut self, store: &Store) {
        if self.ads.is_none() && !self.has_own_streams() {
            return;
        }
        let secrets = self.sync_secrets(store);
        // Envoy counts an update attempt when a subscription starts.
        let sources = self.sources().into_iter();
        let ads: Vec<Kind> = sources
            .filter(|(_, s)| s.initial_fetch_timeout().is_some())
            .map(|(kind, _)| kind)
            .collect();
        for kind in ads {
            let wanted = self.ads_listeners || !matches!(kind, Kind::Listeners | Kind::Routes(_));
            let mut start = false;
            self.waiting(kind, |w| {
                start = wanted && !w.asked;
                if start {
                    // Its initial fetch timeout runs from now.
                    w.asked = true;
                    w.since = Instant::now();
                }
            });
            if start {
                self.stats(kind).count(store, Counted::Attempt);
                self.stats(kind).started(store);
            }
        }
        self.sync_own_streams(store);
        let Some(ads) = &mut self.ads else {
            return;
        };
        let is_ads = |s: &ConfigSource| matches!(s, ConfigSource::Ads { .. });
        if self.cds.as_ref().is_some_and(|s| is_ads(&s.source)) {
            ads.want(config::CLUSTER_TYPE, Vec::new());
        }
        let mut services: Vec<String> = self
            .eds
            .values()
            .filter(|e| is_ads(&e.sub.source))
            .map(|e| e.source.service_name.clone())
            .collect();
        services.sort();
        services.dedup();
        if !services.is_empty() || ads.wants(config::ASSIGNMENT_TYPE) {
            ads.want(config::ASSIGNMENT_TYPE, services);
        }
        if !secrets.is_empty() || ads.wants(config::SECRET_TYPE) {
            ads.want(config::SECRET_TYPE, secrets);
        }
        if !self.ads_listeners {
            return;
        }
        if self.lds.as_ref().is_some_and(|s| is_ads(&s.source)) {
            ads.want(config::LISTENER_TYPE, Vec::new());
        }
        let mut routes: Vec<String> = self
            .rds
            .values()
            .filter(|r| is_ads(&r.sub.source))
            .map(|r| r.name.clone())
            .collect();
        routes.sort();
        if !routes.is_empty() || ads.wants(config::ROUTE_TYPE) {
            ads.want(config::ROUTE_TYPE, routes);
        }
    }

    /// Takes the `deliveries` of one update as a whole: all taken and one
    /// snapshot compiled (None when nothing needs one), or all refused
    /// with the error.
    fn apply(
        &mut self,
        deliveries: Vec<Delivery>,
        current: &ConfigSnapshot,
        store: &Store,
        sinks: &Sinks,
        accept: impl FnOnce(&ConfigSnapshot) -> Result<(), String>,
    ) -> Result<Option<ConfigSnapshot>, String> {
        for d in &deliveries {
            self.stats(d.kind).count(store, Counted::Attempt);
        }
        let mut boot = self.merged();
        let mut decoded = Vec::with_capacity(deliveries.len());
        let mut refusal = None;
        for d in &deliveries {
            let candidate = if d.removal {
                Ok(Decoded::nothing(d.kind))
            } else {
                d.tree
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|t| self.candidate(d.kind, t, &mut boot))
            };
            match candidate {
                Ok(update) => decoded.push(update),
                Err(r) => {
                    refusal = Some(r);
                    break;
                }
            }
        }
        let nothing_new = !decoded.is_empty() && decoded.iter().all(Decoded::is_empty);
        if refusal.is_none() && nothing_new {
            // Empty RDS and EDS updates change nothing: nothing to compile.
            let at = SystemTime::now();
            for (d, update) in deliveries.into_iter().zip(decoded) {
                self.take(d.kind, Some(update), d.got, at, store);
            }
            self.publish_dump();
            return Ok(None);
        }
        let mut warming = BTreeMap::new();
        let mut warming_clusters = BTreeMap::new();
        let compiled = match refusal {
            Some(r) => Err(r),
            None => {
                for update in &decoded {
                    match update {
                        Decoded::Listeners(listeners) => {
                            for kind in self.subscribe_routes(listeners) {
                                self.load_new(kind, store);
                            }
                            boot.route_configs = self.route_configs();
                        }
                        Decoded::Clusters(clusters) => {
                            for kind in self.subscribe_endpoints(clusters) {
                                self.load_new(kind, store);
                            }
                            boot.assignments = self.assignments();
                        }
                        _ => {}
                    }
                }
                // Clusters waiting for their endpoints and listeners
                // waiting for their routes serve as they did.
                let arriving: HashSet<Kind> = deliveries.iter().map(|d| d.kind).collect();
                let latest = decoded.iter().find_map(|u| match u {
                    Decoded::Clusters(c) => Some(c.as_slice()),
                    _ => None,
                });
                let accepted = self.cds.as_ref().map_or(&[][..], |s| &s.resources);
                let (serving, warms) =
                    self.clusters_in_effect(latest.unwrap_or(accepted), &arriving);
                boot.clusters.truncate(self.base.clusters.len());
                boot.clusters.extend(serving);
                boot.warming_clusters = warms.keys().cloned().collect();
                warming_clusters = warms;
                let latest = decoded.iter().find_map(|u| match u {
                    Decoded::Listeners(l) => Some(l.as_slice()),
                    _ => None,
                });
                let accepted = self.lds.as_ref().map_or(&[][..], |s| &s.resources);
                let (serving, warms) = self.in_effect(latest.unwrap_or(accepted), &arriving);
                warming = warms;
                boot.listeners.truncate(self.base.listeners.len());
                boot.listeners.extend(serving);
                ConfigSnapshot::compile_next(&boot, store, sinks, current)
                    .map_err(|e| Refusal::Rejected(listed(&e)))
                    .and_then(|next| match accept(&next) {
                        Ok(()) => Ok(next),
                        Err(e) => Err(Refusal::Rejected(e)),
                    })
            }
        };
        let at = SystemTime::now();
        let next = match compiled {
            Ok(next) => next,
            Err(refusal) => {
                let error = refusal.message().to_string();
                for d in deliveries {
                    self.refused(d.kind, refusal.clone(), d.got, at, store);
                }
                return Err(error);
            }
        };
        let warmed = self.warmed_now(&warming);
        let warmed_clusters = self.clusters_warmed_now(&warming_clusters);
        stats::count_changes_but(store, current, &next, (&warmed, &warmed_clusters));
        self.count_warming_starts(&warming, store);
        let serving: HashSet<&str> = next.clusters.iter().map(|c| c.name()).collect();
        self.count_cluster_warming(&warming_clusters, &serving, store);
        self.set_warming(warming, store);
        let warmed = self.warming_clusters.values().map(|w| w.stat_name.as_str());
        let warming = warming_clusters.values().map(|w| w.stat_name.as_str());
        stats::forget_removed_clusters(store, (current, warmed), (&next, warming));
        self.set_cluster_warming(warming_clusters, store);
        let mut managers = false;
        for (d, update) in deliveries.into_iter().zip(decoded) {
            managers |= matches!(d.kind, Kind::Listeners | Kind::Clusters);
            self.take(d.kind, Some(update), d.got, at, store);
        }
        if managers {
            self.drop_unused(store);
            self.name_histograms(store);
        }
        self.publish_dump();
        Ok(Some(next))
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
        self.waiting(kind, |w| w.answered = true);
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
            Some(Decoded::Routes(resources)) if !resources.is_empty() => {
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
        // Every accepted listener, warming ones and those they replace too.
        let serving = self
            .warming
            .values()
            .filter_map(|w| Some(&w.serving.as_ref()?.0));
        let listeners = self.accepted_listeners().chain(serving);
        let draining = self.draining.iter().flat_map(|d| &d.routes);
        // Owned: the subscriptions are pruned below (names, not configs,
        // are copied).
        let routes: HashSet<String> = listeners
            .flat_map(|l| l.rds_sources())
            .map(|(_, r)| r.name.clone())
            .chain(draining.cloned())
            .collect();
        let mut clusters: HashMap<String, Vec<config::EdsSource>> = HashMap::new();
        for c in self.accepted_clusters() {
            if let Some(eds) = &c.eds {
                clusters
                    .entry(c.name.clone())
                    .or_default()
                    .push(eds.clone());
            }
        }
        let mut gone = Vec::new();
        self.rds.retain(|&id, r| {
            let used = routes.contains(&r.name);
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
                .get(&e.cluster)
                .is_some_and(|sources| sources.contains(&e.source));
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
        self.waiting(kind, |w| w.answered = true);
        self.stats(kind).count(store, counted);
        let from = match self.source(kind) {
            Some(ConfigSource::File(f)) => f.path.display().to_string(),
            _ => "the control plane".to_string(),
        };
        log::warn!(
            "{} update from {from} refused (the last accepted config stays): {error}",
            kind.api(),
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
            // A replaced listener serves on while its successor warms.
            let serves_on = self.warming.contains_key(&old.name);
            if now.is_none_or(|r| !r.keeps_version_of(old)) && !serves_on {
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
            if let (Some(w), Some(file)) = (&mut self.watcher, rds.source.file()) {
                if let Err(e) = w.add(kind, file) {
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
        let mut subscribed: HashMap<String, Vec<config::EdsSource>> = HashMap::new();
        for e in self.eds.values() {
            let sources = subscribed.entry(e.cluster.clone()).or_default();
            sources.push(e.source.clone());
        }
        let mut new = Vec::new();
        for c in clusters {
            let Some(eds) = &c.eds else {
                continue;
            };
            if subscribed.get(&c.name).is_some_and(|s| s.contains(eds)) {
                continue;
            }
            self.next_id += 1;
            let kind = Kind::Endpoints(self.next_id);
            if let (Some(w), Some(file)) = (&mut self.watcher, eds.source.file()) {
                if let Err(e) = w.add(kind, file) {
                    log::error!("EDS {}: {e}", c.name);
                }
            }
            new.push(kind);
            let stat_name = c.stat_name().to_string();
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

    /// The first read of a route configuration or an assignment file that
    /// an update names: counted as its own update, taken if it decodes (the
    /// update it came with compiles it). One from the control plane is
    /// asked for once the update is taken.
    fn load_new(&mut self, kind: Kind, store: &Store) {
        let Some(path) = self.source(kind).and_then(|s| Some(s.file()?.path.clone())) else {
            return;
        };
        self.stats(kind).count(store, Counted::Attempt);
        let mut got = Read {
            version: String::new(),
            raw: Vec::new(),
        };
        let at = SystemTime::now();
        let mut boot = self.merged();
        let decoded = read(&path, &mut got).and_then(|tree| self.candidate(kind, &tree, &mut boot));
        match decoded {
            Ok(update) => self.take(kind, Some(update), got, at, store),
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
            let serving = self.warming.iter().map(|(n, w)| (n, w.serving.as_ref()));
            l["warming"] = warming_dump(serving);
        }
        let mut clusters = self.cds.as_ref().map(Subscription::dump);
        if let Some(c) = &mut clusters {
            let serving = self
                .warming_clusters
                .iter()
                .map(|(n, w)| (n, w.serving.as_ref()));
            c["warming"] = warming_dump(serving);
        }
        let routes: Vec<Value> = self.rds.values().map(|r| r.sub.dump()).collect();
        let dump = json!({
            "listeners": listeners,
            "clusters": clusters,
            "routes": routes,
            "secrets": self.secrets_dump(),
        });
        *self.dump.lock().unwrap_or_else(|p| p.into_inner()) = dump;
    }

    /// Decodes the `kind` update `tree` and puts what it delivers into
    /// `boot`, the bootstrap it would make.
    fn candidate(
        &self,
        kind: Kind,
        tree: &Value,
        boot: &mut Bootstrap,
    ) -> Result<Decoded, Refusal> {
        let rejected = |e: Vec<ConfigError>| Refusal::Rejected(listed(&e));
        let decoded = match kind {
            Kind::Listeners => {
                let update = config::decode_listener_update(tree).map_err(rejected)?;
                let listeners = update.resources;
                boot.listeners.truncate(self.base.listeners.len());
                boot.listeners.extend(listeners.iter().cloned());
                self.check_ads_sources(
                    listeners
                        .iter()
                        .flat_map(|l| l.rds_sources())
                        .map(|(_, r)| &r.source),
                )?;
                Decoded::Listeners(listeners)
            }
            Kind::Clusters => {
                let update = config::decode_cluster_update(tree).map_err(rejected)?;
                boot.clusters.truncate(self.base.clusters.len());
                boot.clusters.extend(update.resources.iter().cloned());
                self.check_ads_sources(
                    update
                        .resources
                        .iter()
                        .filter_map(|c| Some(&c.eds.as_ref()?.source)),
                )?;
                Decoded::Clusters(update.resources)
            }
            Kind::Endpoints(i) => {
                let Some(e) = self.eds.get(&i) else {
                    return Err(Refusal::Failure("no such EDS subscription".into()));
                };
                let eds = &e.source;
                let update =
                    config::decode_assignment_update(tree, &eds.service_name).map_err(rejected)?;
                if let Some(a) = update.resources.first() {
                    boot.assignments.insert(eds.service_name.clone(), a.clone());
                }
                Decoded::Endpoints(update.resources)
            }
            Kind::Routes(i) => {
                let Some(r) = self.rds.get(&i) else {
                    return Err(Refusal::Failure("no such RDS subscription".into()));
                };
                let name = &r.name;
                let update = config::decode_route_update(tree, name).map_err(rejected)?;
                if let Some(rc) = update.resources.first() {
                    boot.route_configs.insert(name.clone(), rc.clone());
                }
                Decoded::Routes(update.resources)
            }
        };
        Ok(decoded)
    }

    /// Refuses sources that name ADS when there is no `ads_config`.
    fn check_ads_sources<'s>(
        &self,
        mut sources: impl Iterator<Item = &'s ConfigSource>,
    ) -> Result<(), Refusal> {
        sources.try_for_each(|s| match s {
            ConfigSource::Ads { .. } if self.base.dynamic.ads.is_none() => Err(Refusal::Rejected(
                "a config source is ads, but there is no ads_config".into(),
            )),
            ConfigSource::Api { api, .. } if !self.static_clusters.contains_key(&api.cluster) => {
                Err(Refusal::Rejected(format!(
                    "Unknown gRPC client cluster '{}'",
                    api.cluster
                )))
            }
            _ => Ok(()),
        })
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
            boot.listeners
                .extend(self.in_effect(&s.resources, &HashSet::new()).0);
        }
        if let Some(s) = &self.cds {
            let (serving, warming) = self.clusters_in_effect(&s.resources, &HashSet::new());
            boot.clusters.extend(serving);
            boot.warming_clusters = warming.into_keys().collect();
        }
        boot.route_configs = self.route_configs();
        boot.assignments = self.assignments();
        boot
    }
}
