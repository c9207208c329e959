//! Process bootstrap: shard threads, listeners, signals, DNS refresh and drain.
//!
//! The main thread never touches a request. It binds nothing a shard
//! serves, publishes snapshots, watches signals and DNS, and runs the drain.

mod cert_watch;
pub mod drain;
pub mod shard;
mod socket;

use crate::access_log::{self, Sinks};
use crate::admin::{Admin, Command, ServerInfo};
use crate::config::ListenerSocket;
use crate::config::NodeInfo;
use crate::net::{Address, Bound, Listener};
use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::Store;
use crate::upstream::{dns, Endpoint};
use shard::Shard;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// io_uring submission queue entries per shard.
const RING_ENTRIES: u32 = 1024;
/// Listen backlog per shard socket.
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
}

/// Runs the proxy until SIGTERM/SIGINT (or `/quitquitquit`) and the drain
/// that follows, with one shard per row of `store` (`Store::new(shards)`).
pub fn run(
    snapshot: ConfigSnapshot,
    options: &Options,
    store: Arc<Store>,
    sinks: Arc<Sinks>,
) -> Result<(), String> {
    // Signal handlers first: a SIGTERM that arrives once shards accept
    // traffic must drain, not kill the process with its default action.
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let binds = bind_plan(&snapshot)?;
    sinks.start()?;
    store.register("filesystem.", sinks.clone());
    let admin_listener = options
        .admin
        .as_ref()
        .map(|a| admin_socket(a, &sinks))
        .transpose()?;
    store.set_first_cert_expiry(crate::admin::first_cert_expiry(&snapshot));
    let published = Arc::new(Published::new(snapshot));
    let concurrency = store.shards();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Result<(), String>>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    for id in 0..concurrency {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let published = published.clone();
        let store = store.clone();
        let sinks = sinks.clone();
        let binds = binds.clone();
        let stop_rx = stop_rx.clone();
        let ready_tx = ready_tx.clone();
        let done_tx = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("ringway-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let ready = ready_tx.clone();
                let shard_run = move || {
                    let shard = Rc::new(Shard::new(id, published, store, sinks));
                    run_shard(shard, binds, stop_rx, ready)
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
    let listeners: Vec<(String, Address)> = published
        .load()
        .listeners
        .iter()
        .zip(&binds)
        .map(|(l, bind)| (l.name.clone(), bind.address()))
        .collect();
    for (name, addr) in &listeners {
        log::info!("listener {name} serving on {addr}");
    }
    let (command_tx, command_rx) = crossbeam_channel::unbounded();
    if let Some((listener, logs)) = admin_listener {
        let info = ServerInfo {
            command_line: options.command_line.clone(),
            node: options.node.clone(),
            bootstrap: options.bootstrap.clone(),
            listeners,
        };
        Admin::new(store.clone(), published.clone(), info, command_tx)
            .with_access_logs(logs, sinks.clone())
            .spawn(listener)?;
    }
    log::info!(
        "ringway {} started with {concurrency} shards",
        env!("CARGO_PKG_VERSION")
    );
    let mut stop = Some(stop_tx);
    supervise(signals, &published, &store, &command_rx, &mut stop)?;
    store.set_draining();
    log::info!(
        "draining: no new connections; waiting up to {:?} for in-flight requests",
        options.drain_time
    );
    drop(stop);
    let deadline = Instant::now() + options.drain_time;
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
    log::info!("shutdown complete");
    Ok(())
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
) -> Result<(Bound, Vec<crate::access_log::AccessLog>), String> {
    let listener = socket::listen(
        &config.address,
        false,
        &config.socket_options,
        BACKLOG,
        config.pipe_mode,
    )
    .map_err(|e| format!("admin: cannot bind {}: {e}", config.address))?;
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

/// How the shards get their socket for one listener.
#[derive(Clone)]
enum Bind {
    /// Each shard binds its own with SO_REUSEPORT (the kernel spreads
    /// connections over them).
    PerShard(SocketAddr, ListenerSocket),
    /// One socket, bound here, that every shard accepts on
    /// (`enable_reuse_port: false`, and every pipe).
    Shared(Arc<Bound>),
    /// A UDP listener: each shard binds its own with SO_REUSEPORT.
    Datagram(SocketAddr, ListenerSocket),
}

/// A shard's socket for one listener.
enum Opened {
    /// Connections to accept.
    Stream(Listener),
    /// Datagrams to receive.
    Datagram(monoio::net::udp::UdpSocket),
}

impl Bind {
    fn address(&self) -> Address {
        match self {
            Bind::PerShard(addr, _) | Bind::Datagram(addr, _) => Address::Ip(*addr),
            Bind::Shared(l) => l
                .local_address()
                .unwrap_or(Address::Ip(SocketAddr::from(([0, 0, 0, 0], 0)))),
        }
    }

    /// This shard's socket.
    fn open(&self) -> std::io::Result<Opened> {
        let bound = match self {
            Bind::PerShard(addr, spec) => {
                socket::listen(&(*addr).into(), true, &spec.options, BACKLOG, 0)?
            }
            Bind::Shared(l) => l.try_clone()?,
            Bind::Datagram(addr, spec) => {
                let socket = socket::bind_udp(*addr, &spec.options)?;
                return monoio::net::udp::UdpSocket::from_std(socket).map(Opened::Datagram);
            }
        };
        bound.adopt().map(Opened::Stream)
    }
}

/// Decides each listener's binding: a port of 0 is bound once here to
/// pick a free port, which every shard then binds with SO_REUSEPORT; a
/// listener without reuse_port, or on a pipe (a Unix socket has no
/// SO_REUSEPORT group), is bound here once, for all shards.
fn bind_plan(snapshot: &ConfigSnapshot) -> Result<Vec<Bind>, String> {
    snapshot
        .listeners
        .iter()
        .map(|l| {
            let failed =
                |e: std::io::Error| format!("listener {}: cannot bind {}: {e}", l.name, l.address);
            if l.udp.is_some() {
                let Some(mut ip) = l.address.ip() else {
                    return Err(format!("listener {}: UDP needs an IP address", l.name));
                };
                if ip.port() == 0 {
                    ip = std::net::UdpSocket::bind(ip)
                        .and_then(|s| s.local_addr())
                        .map_err(failed)?;
                }
                return Ok(Bind::Datagram(ip, l.socket.clone()));
            }
            let ip = match l.address.ip() {
                Some(ip) if l.socket.reuse_port => ip,
                _ => {
                    let spec = &l.socket;
                    let shared =
                        socket::listen(&l.address, false, &spec.options, BACKLOG, spec.pipe_mode)
                            .map_err(failed)?;
                    return Ok(Bind::Shared(Arc::new(shared)));
                }
            };
            if ip.port() != 0 {
                return Ok(Bind::PerShard(ip, l.socket.clone()));
            }
            let probe = std::net::TcpListener::bind(ip)
                .and_then(|s| s.local_addr())
                .map_err(failed)?;
            Ok(Bind::PerShard(probe, l.socket.clone()))
        })
        .collect()
}

/// How often a shard hands memory its allocator no longer uses back to
/// the system.
const MEMORY_RETURN_INTERVAL: Duration = Duration::from_secs(5);

/// Gives the shard's freed memory back to the system now and then:
/// mimalloc keeps a thread's free pages for reuse and purges them only
/// when that thread allocates again, so after a burst of connections an
/// idle shard would keep the burst's memory for good.
async fn return_free_memory() {
    loop {
        monoio::time::sleep(MEMORY_RETURN_INTERVAL).await;
        // Not forced: a forced collect walks every page of the heap, and
        // returned no more memory after a 10k-connection burst.
        // SAFETY: mi_collect only walks this thread's mimalloc heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

async fn run_shard(
    shard: Rc<Shard>,
    binds: Vec<Bind>,
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
    monoio::spawn(return_free_memory());
    let mut listeners = Vec::with_capacity(binds.len());
    for bind in &binds {
        match bind.open() {
            Ok(l) => listeners.push(l),
            Err(e) => {
                let _ = ready.send(Err(format!("cannot bind {}: {e}", bind.address())));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    for (index, opened) in listeners.into_iter().enumerate() {
        match opened {
            Opened::Stream(l) => monoio::spawn(accept_loop(l, index, shard.clone())),
            Opened::Datagram(socket) => monoio::spawn(crate::listener::udp_proxy::serve(
                socket,
                index,
                shard.clone(),
            )),
        };
    }
    let _ = stop.recv_async().await;
    shard.drain.start();
    shard.pool.clear();
    shard.h2_pool.clear();
    while shard.connections.get() > 0 {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    shard.logs.flush();
}

async fn accept_loop(listener: Listener, index: usize, shard: Rc<Shard>) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = shard.drain.wait() => None,
        };
        match accepted {
            // Dropping the socket takes this shard out of the REUSEPORT group.
            None => return,
            Some(Ok((stream, peer))) => {
                log::debug!("accepted connection from {peer}");
                let local = listener.local_address(&stream);
                shard.connections.set(shard.connections.get() + 1);
                let guard = ConnectionGuard(shard.clone());
                monoio::spawn(CatchUnwind(Box::pin(async move {
                    let shard = guard.0.clone();
                    crate::listener::serve(stream, peer, local, shard, index).await;
                    drop(guard);
                })));
            }
            Some(Err(e)) => {
                log::warn!("shard {}: accept failed: {e}", shard.id);
                // Out of descriptors or memory: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Decrements the shard's connection count however the task ends.
struct ConnectionGuard(Rc<Shard>);

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

/// Main-thread loop: re-resolves STRICT_DNS clusters and reloads rotated
/// certificates, publishing new snapshots, and carries out admin
/// commands, until a termination signal
/// or `/quitquitquit`. `/drain_listeners` drops `stop` (the shards drain)
/// and the loop goes on.
fn supervise(
    mut signals: signal_hook::iterator::Signals,
    published: &Published,
    store: &Store,
    commands: &crossbeam_channel::Receiver<Command>,
    stop: &mut Option<flume::Sender<()>>,
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
    let snapshot = published.load();
    let mut due: Vec<(usize, Instant)> = snapshot
        .clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.config.discovery.uses_dns())
        .map(|(i, c)| (i, Instant::now() + c.config.dns_refresh_rate))
        .collect();
    let mut certs = cert_watch::CertWatch::new(published);
    let cert_ticks = if certs.is_empty() {
        crossbeam_channel::never()
    } else {
        crossbeam_channel::tick(cert_watch::INTERVAL)
    };
    loop {
        let timer = match due.iter().map(|(_, t)| *t).min() {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
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
                    stop.take();
                }
                Err(_) => {}
            },
            recv(timer) -> _ => refresh_dns(published, store, &mut due),
            recv(cert_ticks) -> _ => certs.check(published, store),
        }
    }
}

/// Re-resolves the STRICT_DNS clusters that are due and publishes a new
/// snapshot for each whose endpoint set changed.
fn refresh_dns(published: &Published, store: &Store, due: &mut [(usize, Instant)]) {
    let now = Instant::now();
    for (index, when) in due.iter_mut() {
        if *when > now {
            continue;
        }
        let current = published.load();
        let cluster = &current.clusters[*index];
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
        published.publish(current.with_endpoints(*index, resolved, store));
        store.forget_unused_hosts();
    }
}
