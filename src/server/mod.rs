//! Process bootstrap: shard threads, listeners, signals, DNS refresh and drain.
//!
//! The main thread never touches a request. It binds nothing a shard
//! serves, publishes snapshots, watches signals and DNS, and runs the drain.

mod cert_watch;
pub mod drain;
mod ejections;
mod health_checks;
mod hot_restart;
pub mod listeners;
pub mod overload;
mod rolls;
pub mod shard;
mod socket;

use crate::access_log::{self, Sinks};
use crate::admin::{Admin, Command, ServerInfo};
use crate::config::NodeInfo;
use crate::net::{Address, Bound};
use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::Store;
use crate::upstream::{dns, Endpoint};
use crate::xds::{self, Xds};
use listeners::{Planned, Sockets};
use shard::Shard;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// io_uring submission queue entries per shard.
const RING_ENTRIES: u32 = 1024;
/// Outlier reports queued for the main thread at most (a shard drops one
/// past it; the host reports again at its next threshold).
const OUTLIER_EVENTS: usize = 1024;
/// Passive health-check failures queued for the health-check thread at
/// most (a shard drops one past it; the host's next answer reports again).
const PASSIVE_FAILURES: usize = 1024;
/// Listen backlog of every listening socket (the admin's and listeners').
const BACKLOG: i32 = 4096;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest a drain waits for in-flight requests before exiting.
    pub drain_time: Duration,
    /// The admin API, if any.
    pub admin: Option<crate::config::AdminConfig>,
    /// The command line as `/server_info` reports it.
    pub command_line: serde_json::Value,
    /// The bootstrap `node`.
    pub node: Option<NodeInfo>,
    /// The merged bootstrap, for `/config_dump`.
    pub bootstrap: serde_json::Value,
    /// Hot restart: which epoch this is.
    pub restart: Restart,
    /// `overload_manager`.
    pub overload: crate::config::Overload,
    /// `cluster_manager.outlier_detection.event_log_path`.
    pub outlier_event_log: Option<std::path::PathBuf>,
}

/// `--restart-epoch`, `--base-id`, `--parent-shutdown-time-s` and
/// `--disable-hot-restart`.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// `--restart-epoch`.
    pub epoch: u64,
    /// `--base-id`.
    pub base_id: u64,
    /// `--parent-shutdown-time-s`.
    pub parent_shutdown: Duration,
    /// Whether a next epoch may take this process's sockets.
    pub enabled: bool,
}

/// Runs the proxy until SIGTERM/SIGINT (or `/quitquitquit`) and the drain
/// that follows, with one shard per row of `store` (`Store::new(shards)`);
/// `xds`, when given, keeps the listeners and clusters it serves current.
pub fn run(
    snapshot: ConfigSnapshot,
    options: &Options,
    store: Arc<Store>,
    sinks: Arc<Sinks>,
    xds: Option<Xds>,
) -> Result<(), String> {
    // Signal handlers first: a SIGTERM that arrives once shards accept
    // traffic must drain, not kill the process with its default action.
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let restart = options.restart;
    let open = Arc::new(hot_restart::OpenSockets::default());
    let mut sockets = Sockets::new(open.clone());
    let mut inherited = Vec::new();
    if restart.epoch > 0 {
        match hot_restart::inherit(restart.base_id, restart.epoch) {
            Ok(list) => inherited = list,
            Err(e) => log::warn!("hot restart: {e}; binding the sockets afresh"),
        }
    }
    let took_over = !inherited.is_empty();
    let admin_inherited = take_admin(&mut inherited, options.admin.as_ref());
    sockets.inherit(inherited);
    let plan = sockets.plan(&snapshot)?;
    sinks.start()?;
    store.register("filesystem.", sinks.clone());
    let admin_listener = options
        .admin
        .as_ref()
        .map(|a| admin_socket(a, &sinks, admin_inherited))
        .transpose()?;
    if let (Some((admin, _)), Some(a)) = (&admin_listener, &options.admin) {
        open.describe(
            hot_restart::ADMIN,
            hot_restart::ADMIN_NAME,
            &a.address,
            false,
        );
        open.add(hot_restart::ADMIN, 0, admin.as_fd());
    }
    store.set_first_cert_expiry(crate::admin::first_cert_expiry(&snapshot));
    if xds.is_none() {
        // With xDS, the start already counted what it loaded.
        xds::count_changes(&store, &ConfigSnapshot::empty(), &snapshot);
    }
    let published = Arc::new(Published::new(snapshot));
    let concurrency = store.shards();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Result<(), String>>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    let (outlier_tx, outlier_rx) = crossbeam_channel::bounded(OUTLIER_EVENTS);
    let (passive_tx, passive_rx) = flume::bounded(PASSIVE_FAILURES);
    let mut plans = Vec::with_capacity(concurrency);
    for id in 0..concurrency {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let published = published.clone();
        let store = store.clone();
        let sinks = sinks.clone();
        let (plan_tx, plan_rx) = flume::unbounded();
        let _ = plan_tx.send(plan.clone());
        plans.push(plan_tx);
        let stop_rx = stop_rx.clone();
        let ready_tx = ready_tx.clone();
        let done_tx = done_tx.clone();
        let reports = shard::Reports {
            outlier: outlier_tx.clone(),
            passive: passive_tx.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ringway-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let ready = ready_tx.clone();
                let shard_run = move || {
                    let shard = Rc::new(Shard::new(id, published, store, sinks, reports));
                    run_shard(shard, plan_rx, stop_rx, ready)
                };
                if let Err(e) = block_on(shard_run) {
                    let _ = ready_tx.send(Err(format!("shard {id}: cannot start a runtime: {e}")));
                }
                let _ = done_tx.send(id);
            })
            .map_err(|e| format!("cannot spawn shard {id}: {e}"))?;
    }
    drop(stop_rx);
    drop(ready_tx);
    for _ in 0..concurrency {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard exited during start-up".to_string()),
        }
    }
    let bound = Arc::new(Mutex::new(sockets.addresses()));
    for (name, addr) in lock(&bound).iter() {
        log::info!("listener {name} serving on {addr}");
    }
    let (command_tx, command_rx) = crossbeam_channel::unbounded();
    if restart.enabled {
        let serving = hot_restart::serve(
            restart.base_id,
            restart.epoch,
            open.clone(),
            store.clone(),
            command_tx.clone(),
        );
        if let Err(e) = serving {
            log::warn!("{e}; a next restart epoch cannot take over from this one");
        }
    }
    if took_over {
        if let Err(e) =
            hot_restart::retire_parent(restart.base_id, restart.epoch, restart.parent_shutdown)
        {
            log::warn!("hot restart: the previous epoch could not be told to drain: {e}");
        }
    }
    if let Some((listener, logs)) = admin_listener {
        let info = ServerInfo {
            command_line: options.command_line.clone(),
            node: options.node.clone(),
            bootstrap: options.bootstrap.clone(),
            listeners: bound.clone(),
            dynamic: xds.as_ref().map(Xds::dump),
        };
        Admin::new(store.clone(), published.clone(), info, command_tx)
            .with_access_logs(logs, sinks.clone())
            .spawn(listener)?;
    }
    log::info!(
        "ringway {} started with {concurrency} shards",
        env!("CARGO_PKG_VERSION")
    );
    let mut control = Control {
        published: &published,
        store: &store,
        sinks: &sinks,
        sockets,
        plans,
        bound,
        xds,
        stop: Some(stop_tx),
        handed_over: None,
        overload: overload::OverloadManager::new(&options.overload, &store)
            .map(|m| (m, options.overload.refresh)),
        ejections: ejections::Ejections::new(outlier_rx, outlier_log(options)),
        health: health_checks::HealthChecks::start(passive_rx, published.clone())?,
    };
    control.supervise(signals, &command_rx)?;
    let handed_over = control.handed_over;
    let drain_time = match handed_over {
        Some(Some(shutdown)) => options.drain_time.min(shutdown),
        _ => options.drain_time,
    };
    if handed_over.is_some() {
        // Busy clients' next request closes their connection with
        // `connection: close`; closing an idle one at once would race a
        // request on its way.
        store.set_drain_linger(drain_time);
    }
    store.set_draining();
    log::info!("draining: no new connections; waiting up to {drain_time:?} for in-flight requests");
    drop(control);
    let deadline = Instant::now() + drain_time;
    let mut finished = 0;
    while finished < concurrency {
        match done_rx.recv_deadline(deadline) {
            Ok(_) => finished += 1,
            Err(_) => {
                log::warn!(
                    "drain time elapsed with {} shards still busy; exiting",
                    concurrency - finished
                );
                break;
            }
        }
    }
    sinks.drain(Duration::from_secs(2));
    if handed_over.is_some() {
        hot_restart::hand_counters(restart.base_id, restart.epoch, &store);
    }
    log::info!("shutdown complete");
    Ok(())
}

/// The admin socket among the `inherited` ones, when it is bound where
/// `admin` says (it is taken out of the list).
fn take_admin(
    inherited: &mut Vec<hot_restart::Inherited>,
    admin: Option<&crate::config::AdminConfig>,
) -> Option<Bound> {
    let admin = admin?;
    let address = admin.address.to_string();
    let i = inherited
        .iter()
        .position(|s| s.name == hot_restart::ADMIN_NAME && s.address == address)?;
    let fd = inherited.remove(i).fds.pop()?;
    Some(listeners::bound_from(fd, &admin.address))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds the shard's runtime and runs the future `make` returns on it:
/// io_uring with cooperative task running where the kernel has it, plain
/// io_uring where not, epoll where io_uring is unavailable.
pub(crate) fn block_on<F: Future<Output = ()>>(make: impl FnOnce() -> F) -> std::io::Result<()> {
    // COOP_TASKRUN: completions are processed at the shard's next ring
    // entry instead of by interrupting it (each shard is the ring's only
    // user, hence SINGLE_ISSUER too).
    let mut tuned = io_uring::IoUring::builder();
    tuned.setup_coop_taskrun().setup_single_issuer();
    let attempts = [Some(tuned), None];
    for urb in attempts {
        let mut builder = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .with_entries(RING_ENTRIES);
        let tuned = urb.is_some();
        if let Some(urb) = urb {
            builder = builder.uring_builder(urb);
        }
        match builder.build() {
            Ok(mut rt) => {
                rt.block_on(make());
                return Ok(());
            }
            Err(e) if tuned => log::debug!("io_uring with COOP_TASKRUN unavailable ({e})"),
            Err(e) => log::warn!("io_uring runtime failed to start ({e}); using epoll"),
        }
    }
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()?
        .block_on(make());
    Ok(())
}

/// Binds the admin API's socket with its socket options (start-up fails if
/// it cannot, as Envoy's does) and opens its access logs.
fn admin_socket(
    config: &crate::config::AdminConfig,
    sinks: &Sinks,
    inherited: Option<Bound>,
) -> Result<(Bound, Vec<crate::access_log::AccessLog>), String> {
    let listener = match inherited {
        Some(bound) => bound,
        None => socket::listen(
            &config.address,
            false,
            &config.socket_options,
            BACKLOG,
            config.pipe_mode,
        )
        .map_err(|e| format!("admin: cannot bind {}: {e}", config.address))?,
    };
    let logs = config
        .access_logs
        .iter()
        .map(|l| {
            sinks
                .compile(l, true)
                .map_err(|e| format!("admin access log: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok((listener, logs))
}

/// How often a shard hands memory its allocator no longer uses back to
/// the system.
const MEMORY_RETURN_INTERVAL: Duration = Duration::from_secs(5);

/// Gives the shard's freed memory back to the system now and then:
/// mimalloc keeps a thread's free pages for reuse and purges them only
/// when that thread allocates again, so after a burst of connections an
/// idle shard would keep the burst's memory for good. While the overload
/// manager's `shrink_heap` is in force, the collect is forced (every free
/// page returned, Envoy's release of free memory), counted once per round
/// by shard 0.
async fn return_free_memory(store: Arc<Store>, counts: bool) {
    loop {
        monoio::time::sleep(MEMORY_RETURN_INTERVAL).await;
        // Not forced otherwise: a forced collect walks every page of the
        // heap, and returned no more memory after a 10k-connection burst.
        let shrink = store
            .overload
            .shrink_heap
            .load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: mi_collect only walks this thread's mimalloc heap.
        unsafe { libmimalloc_sys::mi_collect(shrink) };
        if shrink && counts {
            store
                .overload
                .shrink_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn run_shard(
    shard: Rc<Shard>,
    plans: flume::Receiver<Vec<Planned>>,
    stop: flume::Receiver<()>,
    ready: crossbeam_channel::Sender<Result<(), String>>,
) {
    if shard.id == 0 {
        if monoio::utils::is_legacy() {
            log::warn!("io_uring is unavailable on this host; shards use epoll");
        } else {
            log::info!("shards use io_uring");
        }
    }
    let (collect_tx, collect_rx) = flume::unbounded();
    shard.stats.histograms.attach(collect_tx);
    let histograms = shard.clone();
    monoio::spawn(async move { histograms.histograms.serve(collect_rx).await });
    let logs = shard.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(access_log::FLUSH_INTERVAL).await;
            logs.logs.flush();
        }
    });
    monoio::spawn(return_free_memory(shard.stats.clone(), shard.id == 0));
    let first = plans.recv_async().await.unwrap_or_default();
    if let Err(e) = shard.listeners.apply(&shard, &first) {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    loop {
        monoio::select! {
            plan = plans.recv_async() => match plan {
                Ok(plan) => {
                    if let Err(e) = shard.listeners.apply(&shard, &plan) {
                        log::error!("shard {}: {e}", shard.id);
                    }
                }
                Err(_) => break,
            },
            _ = stop.recv_async() => break,
        }
    }
    shard.drain.start();
    shard.pool.clear();
    shard.h2_pool.clear();
    while shard.connections.get() > 0 {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    shard.logs.flush();
}

/// Decrements the shard's connection count however the task ends.
struct ConnectionGuard(Rc<Shard>);

impl ConnectionGuard {
    /// Counts a connection open on `shard`.
    fn open(shard: &Rc<Shard>) -> Self {
        shard.connections.set(shard.connections.get() + 1);
        ConnectionGuard(shard.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Runs a connection task so a panic ends only that connection.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                log::error!("a connection task panicked; the connection was closed");
                Poll::Ready(())
            }
        }
    }
}

/// The main thread's state while the proxy serves.
struct Control<'a> {
    published: &'a Published,
    store: &'a Store,
    sinks: &'a Arc<Sinks>,
    sockets: Sockets,
    /// Each shard's listener plans.
    plans: Vec<flume::Sender<Vec<Planned>>>,
    /// Listener names and bound addresses, as `/listeners` shows them.
    bound: Arc<Mutex<Vec<(String, Address)>>>,
    xds: Option<Xds>,
    /// Dropped to make the shards drain.
    stop: Option<flume::Sender<()>>,
    /// Set when a next restart epoch took over (with its shutdown time).
    handed_over: Option<Option<Duration>>,
    /// The heap monitor and its actions, when configured.
    overload: Option<(overload::OverloadManager, Duration)>,
    /// Outlier detection's decisions.
    ejections: ejections::Ejections,
    /// The active health checker's thread.
    health: health_checks::HealthChecks,
}

impl Control<'_> {
    /// Main-thread loop: re-resolves STRICT_DNS clusters, reloads rotated
    /// certificates and xDS files, publishing new snapshots, and carries
    /// out admin commands, until a termination signal or `/quitquitquit`.
    /// `/drain_listeners` drops `stop` (the shards drain) and the loop
    /// goes on.
    fn supervise(
        &mut self,
        mut signals: signal_hook::iterator::Signals,
        commands: &crossbeam_channel::Receiver<Command>,
    ) -> Result<(), String> {
        let (sig_tx, sig_rx) = crossbeam_channel::bounded::<i32>(4);
        std::thread::Builder::new()
            .name("ringway-signals".into())
            .spawn(move || {
                let mut draining = false;
                for sig in signals.forever() {
                    if draining {
                        // A second signal during the drain ends the process at once.
                        log::warn!("second termination signal: exiting now");
                        std::process::exit(0);
                    }
                    draining = true;
                    if sig_tx.send(sig).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot spawn the signal thread: {e}"))?;
        let mut due = dns_due(&self.published.load(), &HashMap::new());
        let mut certs = cert_watch::CertWatch::new(self.published);
        let cert_ticks = if certs.is_empty() && self.xds.is_none() {
            crossbeam_channel::never()
        } else {
            crossbeam_channel::tick(cert_watch::INTERVAL)
        };
        let overload_ticks = self
            .overload
            .as_ref()
            .map_or_else(crossbeam_channel::never, |(_, every)| {
                crossbeam_channel::tick(*every)
            });
        let updates = match &mut self.xds {
            Some(xds) => xds.watch()?,
            None => crossbeam_channel::never(),
        };
        let control_plane = self
            .xds
            .as_ref()
            .map_or_else(crossbeam_channel::never, Xds::ads_events);
        let outlier_events = self.ejections.events();
        let health_reports = self.health.reports();
        self.follow_clusters();
        loop {
            let timer = match due.values().min() {
                Some(t) => crossbeam_channel::at(*t),
                None => crossbeam_channel::never(),
            };
            let reviews = self
                .ejections
                .due()
                .map_or_else(crossbeam_channel::never, crossbeam_channel::at);
            crossbeam_channel::select! {
                recv(sig_rx) -> sig => {
                    if let Ok(sig) = sig {
                        log::info!("received signal {sig}");
                    }
                    return Ok(());
                }
                recv(commands) -> command => match command {
                    Ok(Command::Quit) => {
                        log::info!("admin: /quitquitquit");
                        return Ok(());
                    }
                    Ok(Command::DrainListeners) => {
                        log::info!("admin: draining listeners");
                        self.stop.take();
                    }
                    Ok(Command::HandedOver(shutdown)) => {
                        self.handed_over = Some(shutdown);
                        return Ok(());
                    }
                    Err(_) => {}
                },
                recv(timer) -> _ => {
                    if refresh_dns(self.published, self.store, &mut due) {
                        self.follow_clusters();
                    }
                }
                recv(outlier_events) -> event => {
                    if let Ok(event) = event {
                        self.ejections.on_event(event, self.published, self.store);
                    }
                }
                recv(reviews) -> _ => self.ejections.review(self.published, self.store),
                recv(health_reports) -> report => {
                    if let Ok(report) = report {
                        let passed = self.health.publish(report, self.published, self.store);
                        for (cluster, pool_id, addr) in passed {
                            let host = (cluster.as_str(), pool_id, &addr);
                            self.ejections.health_check_passed(host, self.published, self.store);
                        }
                    }
                }
                recv(overload_ticks) -> _ => {
                    if let Some((manager, _)) = &self.overload {
                        manager.refresh();
                    }
                }
                recv(cert_ticks) -> _ => {
                    let reloaded = certs.check(self.published, self.store);
                    if let Some(xds) = &mut self.xds {
                        xds.expire_draining(self.store);
                    }
                    let updated = self.update(xds::Change::Tick);
                    if updated {
                        due = dns_due(&self.published.load(), &due);
                        certs = cert_watch::CertWatch::new(self.published);
                    }
                    // A rotated certificate reaches the health checks too.
                    if reloaded || updated {
                        self.follow_clusters();
                    }
                }
                recv(updates) -> kind => {
                    if let Ok(kind) = kind {
                        if self.update(xds::Change::File(kind)) {
                            due = dns_due(&self.published.load(), &due);
                            self.follow_clusters();
                            certs = cert_watch::CertWatch::new(self.published);
                        }
                    }
                }
                recv(control_plane) -> event => {
                    if let Ok(event) = event {
                        if self.update(xds::Change::Ads(event)) {
                            due = dns_due(&self.published.load(), &due);
                            self.follow_clusters();
                            certs = cert_watch::CertWatch::new(self.published);
                        }
                    }
                }
            }
        }
    }

    /// Points outlier detection and health checking at the clusters
    /// published now.
    fn follow_clusters(&mut self) {
        let current = self.published.load();
        self.ejections.follow(&current);
        self.health.follow(&current, self.store);
    }

    /// Takes an xDS change: publishes the snapshot an update makes and
    /// hands the shards their listeners. True when one was taken.
    fn update(&mut self, change: xds::Change) -> bool {
        let Some(xds) = &mut self.xds else {
            return false;
        };
        let current = self.published.load();
        let sockets = &mut self.sockets;
        let mut plan = Vec::new();
        let taken = xds.update(change, &current, self.store, self.sinks, |next| {
            plan = sockets.plan(next)?;
            Ok(())
        });
        let Some(next) = taken else {
            return false;
        };
        // Shards learn of their sockets only once the snapshot whose
        // listeners those sockets serve is out.
        self.published.publish(next);
        for shard in &self.plans {
            let _ = shard.send(plan.clone());
        }
        *lock(&self.bound) = self.sockets.addresses();
        self.store
            .set_first_cert_expiry(crate::admin::first_cert_expiry(&self.published.load()));
        true
    }
}

/// When each STRICT_DNS or LOGICAL_DNS cluster of `snapshot` is next
/// resolved, by name: as it was in `before`, or one refresh from now.
fn dns_due(
    snapshot: &ConfigSnapshot,
    before: &HashMap<String, Instant>,
) -> HashMap<String, Instant> {
    snapshot
        .clusters
        .iter()
        .filter(|c| c.config.discovery.uses_dns())
        .map(|c| {
            let due = before
                .get(c.name())
                .copied()
                .unwrap_or_else(|| Instant::now() + c.config.dns_refresh_rate);
            (c.name().to_string(), due)
        })
        .collect()
}

/// Re-resolves the STRICT_DNS clusters that are due and publishes a new
/// snapshot for each whose endpoint set changed (true when any did).
fn refresh_dns(published: &Published, store: &Store, due: &mut HashMap<String, Instant>) -> bool {
    let now = Instant::now();
    let mut changed = false;
    for (name, when) in due.iter_mut() {
        if *when > now {
            continue;
        }
        let current = published.load();
        let Some(index) = current.cluster_position(name) else {
            continue;
        };
        let cluster = &current.clusters[index];
        *when = now + cluster.config.dns_refresh_rate;
        let resolved = dns::resolve(&cluster.config);
        if resolved.is_empty() || Endpoint::same_set(&cluster.endpoints, &resolved) {
            continue;
        }
        log::info!(
            "cluster {}: DNS now gives {} endpoints: {:?}",
            cluster.name(),
            resolved.len(),
            resolved
                .iter()
                .map(|e| e.addr.to_string())
                .collect::<Vec<_>>()
        );
        published.publish(current.with_endpoints(index, resolved, store));
        store.forget_unused_hosts();
        changed = true;
    }
    changed
}

/// Opens the outlier event log, if one is configured (the configuration
/// check already opened it once; a failure now is logged).
fn outlier_log(options: &Options) -> Option<crate::upstream::outlier::EventLog> {
    let path = options.outlier_event_log.as_ref()?;
    crate::upstream::outlier::EventLog::open(path)
        .map_err(|e| log::warn!("outlier event log {}: {e}", path.display()))
        .ok()
}
