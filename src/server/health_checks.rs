//! Active health checking, off the request shards: a thread of its own
//! with its own io_uring runtime runs one task per checked host. A host
//! whose flags change is reported to the main thread, which publishes
//! them in a new snapshot.

use crate::config::{HealthCheck, Locality};
use crate::net::Address;
use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::sets::{Cluster as ClusterStat, HealthCheck as Stat};
use crate::stats::{Scope, Store};
use crate::tls::ClientTls;
use crate::upstream::health::events::{EventLog, Judged};
use crate::upstream::health::probe::{Prober, Target};
use crate::upstream::health::session::{first_wait, next_wait, Session, Transition, Verdict};
use crate::upstream::health::{PassiveFailure, DEGRADED, FAILED};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// What the health checker tells the main thread about a host.
#[derive(Debug)]
pub struct Report {
    cluster: String,
    pool_id: usize,
    addr: Address,
    change: Change,
}

/// What changed.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Its active health-check flags are now these.
    Flags(u8),
    /// It passed a check while outlier detection has it ejected.
    PassedWhileEjected,
}

/// A cluster with health checks, as its checker needs it.
struct Checked {
    name: String,
    pool_id: usize,
    config: Arc<HealthCheck>,
    tls: Option<Arc<ClientTls>>,
    cluster_stats: Arc<Scope<ClusterStat>>,
    stats: Arc<Scope<Stat>>,
    hosts: Vec<Host>,
    /// A passed check ends an outlier ejection.
    uneject: bool,
}

/// A checked host.
struct Host {
    addr: Address,
    /// The TLS server name a check sends it.
    server_name: Option<String>,
    locality: Locality,
}

/// The main thread's handle on the health-check thread.
pub struct HealthChecks {
    clusters: flume::Sender<Vec<Checked>>,
    reports: crossbeam_channel::Receiver<Report>,
}

impl HealthChecks {
    /// Starts the health-check thread (it ends when this is dropped),
    /// taking the shards' `passive` failures; it reads `published` to
    /// learn which hosts outlier detection has ejected.
    pub fn start(
        passive: flume::Receiver<PassiveFailure>,
        published: Arc<Published>,
    ) -> Result<Self, String> {
        let (clusters_tx, clusters_rx) = flume::unbounded();
        let (reports_tx, reports_rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("ringway-health".into())
            .spawn(move || {
                let run = move || run(clusters_rx, passive, reports_tx, published);
                if let Err(e) = super::block_on(run) {
                    log::error!("health checks cannot start a runtime: {e}");
                }
            })
            .map_err(|e| format!("cannot spawn the health-check thread: {e}"))?;
        Ok(HealthChecks {
            clusters: clusters_tx,
            reports: reports_rx,
        })
    }

    /// Where the hosts' changes arrive.
    pub fn reports(&self) -> crossbeam_channel::Receiver<Report> {
        self.reports.clone()
    }

    /// Checks the hosts of `snapshot`'s clusters that have health checks
    /// (and stops checking any other).
    pub fn follow(&self, snapshot: &ConfigSnapshot, store: &Store) {
        let clusters = snapshot
            .clusters
            .iter()
            .filter_map(|c| {
                let config = c.config.health_check.as_ref()?;
                Some(Checked {
                    name: c.name().to_string(),
                    pool_id: c.pool_id,
                    config: Arc::new(config.clone()),
                    tls: c.tls.clone(),
                    cluster_stats: c.stats.clone(),
                    stats: store.health_check(c.stat_name()),
                    uneject: c
                        .config
                        .outlier_detection
                        .as_ref()
                        .is_some_and(|o| o.uneject_on_health_check),
                    hosts: c
                        .endpoints
                        .iter()
                        .map(|e| Host {
                            addr: e.addr.clone(),
                            server_name: c.server_name(e, None).map(str::to_string),
                            locality: e.locality.clone(),
                        })
                        .collect(),
                })
            })
            .collect();
        let _ = self.clusters.send(clusters);
    }

    /// Publishes the flags in `first` and every other report waiting: one
    /// new snapshot per cluster whose hosts changed. Returns the ejected
    /// hosts that passed a check (cluster, pool id, address), for outlier
    /// detection.
    pub fn publish(
        &self,
        first: Report,
        published: &Published,
        store: &Store,
    ) -> Vec<(String, usize, Address)> {
        let mut by_cluster: HashMap<(String, usize), Vec<(Address, u8)>> = HashMap::new();
        let mut passed = Vec::new();
        for r in std::iter::once(first).chain(self.reports.try_iter()) {
            match r.change {
                Change::Flags(flags) => by_cluster
                    .entry((r.cluster, r.pool_id))
                    .or_default()
                    .push((r.addr, flags)),
                Change::PassedWhileEjected => passed.push((r.cluster, r.pool_id, r.addr)),
            }
        }
        for ((name, pool_id), changes) in by_cluster {
            let current = published.load();
            let Some(index) = current.cluster_position(&name) else {
                continue;
            };
            let cluster = &current.clusters[index];
            if cluster.pool_id != pool_id {
                continue;
            }
            let mut active = (*cluster.active_hc).clone();
            for (addr, flags) in changes {
                if cluster.endpoints.iter().any(|e| e.addr == addr) {
                    active.insert(addr, flags);
                }
            }
            let next = cluster.with_active_hc(store, active);
            published.publish(current.with_cluster(index, next, store));
        }
        passed
    }
}

/// A checked cluster on the health-check thread.
struct Running {
    cluster: Rc<ClusterChecks>,
    /// Each host's task's inbox: a message is a passive failure; the task
    /// ends when its sender drops.
    hosts: HashMap<Address, flume::Sender<()>>,
}

/// What every host task of one cluster shares.
struct ClusterChecks {
    name: String,
    pool_id: usize,
    config: Arc<HealthCheck>,
    /// The `host` of HTTP checks and `:authority` of gRPC ones: the
    /// configured one, else the cluster's name.
    authority: String,
    tls: RefCell<Option<Arc<ClientTls>>>,
    cluster_stats: Arc<Scope<ClusterStat>>,
    stats: Arc<Scope<Stat>>,
    reports: crossbeam_channel::Sender<Report>,
    events: RefCell<Option<EventLog>>,
    /// The snapshots, when a passed check ends an outlier ejection
    /// (`successful_active_health_check_uneject_host`).
    uneject: Option<Arc<Published>>,
    rng: Cell<u64>,
}

impl ClusterChecks {
    /// The next jitter roll.
    fn random(&self) -> u64 {
        let mut state = self.rng.get();
        let roll = super::rolls::next(&mut state);
        self.rng.set(state);
        roll
    }

    /// Whether the cluster has ever opened a connection for traffic
    /// (until then, Envoy checks at the no-traffic intervals).
    fn had_traffic(&self) -> bool {
        self.cluster_stats.value(ClusterStat::upstream_cx_total) > 0
    }

    /// Takes a verdict on the host at `addr`: counts it, moves the
    /// gauges, and reports the host's new flags when they changed.
    fn judge(&self, host: &Host, session: &mut Session, verdict: Verdict) -> Transition {
        let row = self.stats.main_row();
        match verdict {
            Verdict::Healthy { .. } => self.stats.inc(row, Stat::success),
            Verdict::Failed { .. } | Verdict::Passive => self.stats.inc(row, Stat::failure),
            Verdict::Network | Verdict::Timeout => {
                self.stats.inc(row, Stat::failure);
                self.stats.inc(row, Stat::network_failure);
            }
        }
        let (before, first) = (session.flags, session.first_check());
        let transition = session.take(verdict, &self.config);
        self.count(before, session.flags);
        if let Some(log) = self.events.borrow_mut().as_mut() {
            log.record(&Judged {
                addr: &host.addr,
                locality: &host.locality,
                verdict,
                before,
                after: session.flags,
                first,
            });
        }
        if session.flags != before {
            self.report(host, Change::Flags(session.flags));
        }
        if matches!(verdict, Verdict::Healthy { .. }) && self.ejected(&host.addr) {
            self.report(host, Change::PassedWhileEjected);
        }
        transition
    }

    fn report(&self, host: &Host, change: Change) {
        let _ = self.reports.send(Report {
            cluster: self.name.clone(),
            pool_id: self.pool_id,
            addr: host.addr.clone(),
            change,
        });
    }

    /// Whether outlier detection has `addr` ejected now (asked only when
    /// a passed check would end the ejection).
    fn ejected(&self, addr: &Address) -> bool {
        let Some(published) = &self.uneject else {
            return false;
        };
        let current = published.load();
        current
            .cluster_position(&self.name)
            .map(|i| &current.clusters[i])
            .is_some_and(|c| c.pool_id == self.pool_id && c.ejected.contains(addr))
    }

    /// Moves the `healthy` and `degraded` gauges from a host's `before`
    /// flags to its `after` ones.
    fn count(&self, before: u8, after: u8) {
        let row = self.stats.main_row();
        for (bit, gauge, counts_when_set) in [
            (FAILED, Stat::healthy, false),
            (DEGRADED, Stat::degraded, true),
        ] {
            let was = (before & bit != 0) == counts_when_set;
            let is = (after & bit != 0) == counts_when_set;
            match (was, is) {
                (false, true) => self.stats.inc(row, gauge),
                (true, false) => self.stats.dec(row, gauge),
                _ => {}
            }
        }
    }
}

/// The health-check thread: follows the clusters it is sent, starting a
/// task for each new host and stopping those of hosts that went, and
/// hands each passive failure to its host's task.
async fn run(
    clusters: flume::Receiver<Vec<Checked>>,
    passive: flume::Receiver<PassiveFailure>,
    reports: crossbeam_channel::Sender<Report>,
    published: Arc<Published>,
) {
    let mut running: HashMap<(String, usize), Running> = HashMap::new();
    let seed = super::rolls::seed();
    loop {
        let list = monoio::select! {
            list = clusters.recv_async() => match list {
                Ok(list) => list,
                Err(_) => break,
            },
            failure = passive.recv_async() => {
                if let Ok(f) = failure {
                    let inbox = running
                        .get(&(f.cluster, f.pool_id))
                        .and_then(|r| r.hosts.get(&f.addr));
                    // One waiting is enough: the host is failed by then.
                    if let Some(inbox) = inbox {
                        let _ = inbox.try_send(());
                    }
                }
                continue;
            },
        };
        let mut next = HashMap::new();
        for c in list {
            let key = (c.name.clone(), c.pool_id);
            let mut r = running.remove(&key).unwrap_or_else(|| Running {
                cluster: Rc::new(ClusterChecks {
                    authority: match &c.config.probe {
                        crate::config::Probe::Http(h) => h.host.clone(),
                        crate::config::Probe::Grpc(g) => g.authority.clone(),
                        crate::config::Probe::Tcp(_) => None,
                    }
                    .unwrap_or_else(|| c.name.clone()),
                    events: RefCell::new(EventLog::open(&c.config, &c.name)),
                    uneject: c.uneject.then(|| published.clone()),
                    name: c.name,
                    pool_id: c.pool_id,
                    config: c.config,
                    tls: RefCell::new(None),
                    cluster_stats: c.cluster_stats,
                    stats: c.stats,
                    reports: reports.clone(),
                    rng: Cell::new(seed ^ (c.pool_id as u64).wrapping_mul(0x100_0000_01b3)),
                }),
                hosts: HashMap::new(),
            });
            *r.cluster.tls.borrow_mut() = c.tls;
            let mut hosts = HashMap::new();
            for host in c.hosts {
                let addr = host.addr.clone();
                let inbox = match r.hosts.remove(&addr) {
                    Some(inbox) => inbox,
                    None => {
                        let (inbox_tx, inbox_rx) = flume::bounded(1);
                        let cluster = r.cluster.clone();
                        monoio::spawn(check_host(cluster, host, inbox_rx));
                        inbox_tx
                    }
                };
                hosts.insert(addr, inbox);
            }
            r.hosts = hosts;
            next.insert(key, r);
        }
        // Dropping the others' senders ends their tasks.
        running = next;
    }
}

/// Checks one host until told to stop (its inbox's sender dropped); a
/// message in the inbox is a passive failure, taken between checks
/// without moving the next one.
async fn check_host(cluster: Rc<ClusterChecks>, host: Host, inbox: flume::Receiver<()>) {
    let config = cluster.config.clone();
    let mut session = Session::default();
    let mut prober = Prober::default();
    let mut due = Instant::now() + first_wait(&config, cluster.random());
    let row = cluster.stats.main_row();
    loop {
        monoio::select! {
            _ = monoio::time::sleep_until(due.into()) => {}
            message = inbox.recv_async() => {
                if message.is_err() {
                    break;
                }
                cluster.stats.inc(row, Stat::passive_failure);
                cluster.judge(&host, &mut session, Verdict::Passive);
                continue;
            },
        }
        cluster.stats.inc(row, Stat::attempt);
        let tls = cluster.tls.borrow().clone();
        let target = Target {
            addr: &host.addr,
            tls: tls.as_ref().map(|t| (t, host.server_name.as_deref())),
            authority: &cluster.authority,
        };
        // A host removed meanwhile stops once this check ends (within
        // the timeout).
        let outcome = prober
            .check(
                &config.probe,
                &target,
                config.timeout,
                config.reuse_connection,
            )
            .await;
        if outcome.verified_cluster {
            cluster.stats.inc(row, Stat::verify_cluster);
        }
        let transition = cluster.judge(&host, &mut session, outcome.verdict);
        let wait = next_wait(
            &config,
            session.is_healthy(),
            transition,
            cluster.had_traffic(),
            || cluster.random(),
        );
        due = Instant::now() + wait;
    }
    // The host leaves the gauges with its checks.
    cluster.count(session.flags, FAILED);
}
