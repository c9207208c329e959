//! Envoy's admin API on its own thread: stats, clusters, listeners,
//! config dump, readiness, logging and the server-state mutations.
//!
//! It runs beside the main thread and never on a shard. Each connection
//! carries one request (`connection: close`) and is served by a task of
//! its own on the admin thread's event loop, up to [`MAX_CONNECTIONS`] at
//! once, with deadlines for reading the request and writing the reply: an
//! idle, slow or non-reading client never delays a readiness probe or
//! `/quitquitquit`. The admin API is for operators and
//! scrapers, not for load.

mod certs;
pub mod dump;

pub use certs::first_expiry as first_cert_expiry;
pub use dump::rfc3339;

use crate::access_log::{AccessLog, Record, ShardLogs, Sinks};
use crate::config::NodeInfo;
use crate::http::codec::percent_decode;
use crate::net::{Address, Bound, Stream};
use crate::snapshot::Published;
use crate::stats::render::{self, Selection};
use crate::stats::Store;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Longest request head the admin API reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its whole request head.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long a client may take to read its whole reply.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Admin connections served at once; past it, new ones get a 503.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a client turned away may take to read its 503.
const BUSY_DEADLINE: Duration = Duration::from_millis(100);

/// What the admin API asks of the main thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `/drain_listeners`: stop accepting, let connections finish, keep
    /// running.
    DrainListeners,
    /// `/quitquitquit`: drain and exit.
    Quit,
    /// The next restart epoch took the listening sockets: drain and exit,
    /// within the given time if it set one.
    HandedOver(Option<std::time::Duration>),
}

/// Facts `/server_info` and `/config_dump` report.
pub struct ServerInfo {
    /// `command_line_options` as Envoy names them.
    pub command_line: Value,
    /// The bootstrap `node`.
    pub node: Option<NodeInfo>,
    /// The merged bootstrap as loaded.
    pub bootstrap: Value,
    /// Every listener's name and bound address.
    pub listeners: Arc<std::sync::Mutex<Vec<(String, Address)>>>,
    /// What xDS delivered, for `/config_dump` (`xds::Xds::dump`).
    pub dynamic: Option<Arc<std::sync::Mutex<Value>>>,
}

/// This binary's version as a `SemanticVersion`.
fn build_version() -> Value {
    let part = |p: &str| p.parse::<u64>().unwrap_or(0);
    json!({
        "major_number": part(env!("CARGO_PKG_VERSION_MAJOR")),
        "minor_number": part(env!("CARGO_PKG_VERSION_MINOR")),
        "patch": part(env!("CARGO_PKG_VERSION_PATCH")),
    })
}

/// The bootstrap's `node` as Envoy shows it (`/server_info`) and sends it to
/// a control plane.
pub fn node_json(n: &crate::config::NodeInfo) -> Value {
    let mut node = json!({
        "id": n.id,
        "cluster": n.cluster,
        "user_agent_name": n.user_agent_name.as_deref().unwrap_or("ringway"),
        "user_agent_build_version": {"version": build_version()},
    });
    if !n.metadata.is_null() {
        node["metadata"] = n.metadata.clone();
    }
    if let Some(l) = &n.locality {
        node["locality"] = dump::locality_json(l);
    }
    node
}

/// Everything a request to the admin API can read or change.
pub struct Admin {
    store: Arc<Store>,
    published: Arc<Published>,
    info: ServerInfo,
    commands: crossbeam_channel::Sender<Command>,
    started: std::time::SystemTime,
    access_logs: Vec<AccessLog>,
    sinks: Option<Arc<Sinks>>,
}

/// A response: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=UTF-8",
            body: body.into().into_bytes(),
        }
    }

    /// The reply as an HTTP/1.1 response that closes the connection.
    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
             cache-control: no-cache, max-age=0\r\nx-content-type-options: nosniff\r\n\
             connection: close\r\n\r\n",
            self.status,
            crate::http::codec::reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    fn json(value: &Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }
}

/// The endpoints, with whether they change server state (POST only) and
/// their help text.
const ENDPOINTS: [(&str, bool, &str); 19] = [
    ("/", false, "Admin home page"),
    ("/certs", false, "print certs on machine"),
    ("/clusters", false, "upstream cluster status"),
    ("/config_dump", false, "dump current Envoy configs"),
    ("/drain_listeners", true, "drain listeners"),
    (
        "/healthcheck/fail",
        true,
        "cause the server to fail health checks",
    ),
    (
        "/healthcheck/ok",
        true,
        "cause the server to pass health checks",
    ),
    ("/help", false, "print out list of admin commands"),
    ("/listeners", false, "print listener info"),
    ("/logging", true, "query/change logging levels"),
    ("/memory", false, "print current allocation/heap usage"),
    ("/quitquitquit", true, "exit the server"),
    (
        "/ready",
        false,
        "print server state, return 200 if LIVE, otherwise return 503",
    ),
    ("/reset_counters", true, "reset all counters to zero"),
    ("/runtime", false, "print runtime values"),
    (
        "/runtime_modify",
        true,
        "Adds or modifies runtime values as passed in query parameters. To delete a previously added key, use an empty string as the value.",
    ),
    (
        "/server_info",
        false,
        "print server version/status information",
    ),
    ("/stats", false, "print server stats"),
    (
        "/stats/prometheus",
        false,
        "print server stats in prometheus format",
    ),
];

fn help() -> String {
    let mut out = String::from("admin commands are:\n");
    for (path, _, text) in ENDPOINTS {
        out.push_str(&format!("  {path}: {text}\n"));
    }
    out
}

impl Admin {
    /// An admin API over the process's stats and snapshots.
    pub fn new(
        store: Arc<Store>,
        published: Arc<Published>,
        info: ServerInfo,
        commands: crossbeam_channel::Sender<Command>,
    ) -> Self {
        Admin {
            store,
            published,
            info,
            commands,
            started: std::time::SystemTime::now(),
            access_logs: Vec::new(),
            sinks: None,
        }
    }

    /// Logs every admin request to `logs` (`admin.access_log`,
    /// `admin.access_log_path`), written through `sinks`.
    pub fn with_access_logs(mut self, logs: Vec<AccessLog>, sinks: Arc<Sinks>) -> Self {
        self.access_logs = logs;
        self.sinks = Some(sinks);
        self
    }

    /// Serves `listener` on a thread of its own for the life of the
    /// process, one task per connection on a monoio runtime.
    pub fn spawn(self, listener: Bound) -> Result<(), String> {
        let addr = listener.local_address().map_err(|e| e.to_string())?;
        log::info!("admin address: {addr}");
        std::thread::Builder::new()
            .name("ringway-admin".into())
            .spawn(move || {
                let logs = self.sinks.clone().map(ShardLogs::new);
                let admin = Rc::new(self);
                let served = crate::server::block_on(|| accept_loop(admin, listener, logs));
                if let Err(e) = served {
                    log::error!("admin: cannot start its event loop: {e}");
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot spawn the admin thread: {e}"))
    }

    /// Answers one connection: its request within [`READ_DEADLINE`], its
    /// reply within [`WRITE_DEADLINE`].
    async fn serve(
        &self,
        mut stream: Stream,
        peer: Address,
        local: Option<Address>,
        logs: Option<&ShardLogs>,
    ) {
        let started = std::time::SystemTime::now();
        let head = monoio::time::timeout(READ_DEADLINE, read_head(&mut stream)).await;
        let (raw, (reply, command)) = match head {
            Ok(Some((raw, method, target))) => (raw, self.handle(&method, &target)),
            _ => (Vec::new(), (Reply::text(400, "bad request\n"), None)),
        };
        let written = monoio::time::timeout(WRITE_DEADLINE, stream.write_all(reply.encode())).await;
        if let Some(logs) = logs {
            let sent = matches!(written, Ok((Ok(_), _)));
            let raw = as_forwarded(raw, &peer);
            let record = Record {
                status: if sent { reply.status } else { 0 },
                bytes_sent: if sent { reply.body.len() as u64 } else { 0 },
                duration: started.elapsed().unwrap_or_default(),
                ..Record::new(started, &raw, peer, local)
            };
            logs.log(&self.access_logs, &record);
            logs.flush();
        }
        drop(stream);
        // Only now: `/quitquitquit` may end the process.
        if let Some(command) = command {
            let _ = self.commands.send(command);
        }
    }

    /// Dispatches one request: the reply, and a command for the main
    /// thread to carry out once the reply is sent.
    fn handle(&self, method: &str, target: &str) -> (Reply, Option<Command>) {
        match target.split_once('?').unwrap_or((target, "")).0 {
            "/drain_listeners" if method == "POST" => {
                self.store.set_draining();
                (Reply::text(200, "OK\n"), Some(Command::DrainListeners))
            }
            "/quitquitquit" if method == "POST" => (Reply::text(200, "OK\n"), Some(Command::Quit)),
            _ => (self.answer(method, target), None),
        }
    }

    /// Answers a request that needs nothing from the main thread.
    fn answer(&self, method: &str, target: &str) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params = parse_query(query);
        let Some((path, mutates, _)) = ENDPOINTS.iter().find(|(p, _, _)| *p == path) else {
            return Reply::text(404, format!("invalid path. {}", help()));
        };
        if *mutates && method != "POST" {
            log::error!("admin path {path:?} mutates state, method={method} rather than POST");
            return Reply::text(405, format!("Method {method} not allowed, POST required."));
        }
        match *path {
            "/" | "/help" => Reply::text(200, help()),
            "/stats" => self.stats(&params, None),
            "/stats/prometheus" => self.stats(&params, Some("prometheus")),
            "/clusters" => match format_param(&params) {
                Some("json") => Reply::json(&dump::clusters_json(&self.published.load())),
                _ => Reply::text(200, dump::clusters_text(&self.published.load())),
            },
            "/listeners" => {
                let listeners = self
                    .info
                    .listeners
                    .lock()
                    .map_or_else(|p| p.into_inner().clone(), |l| l.clone());
                match format_param(&params) {
                    Some("json") => Reply::json(&dump::listeners_json(&listeners)),
                    _ => Reply::text(200, dump::listeners_text(&listeners)),
                }
            }
            "/config_dump" => {
                let dynamic = self.info.dynamic.as_ref().map(|d| {
                    d.lock()
                        .map_or_else(|p| p.into_inner().clone(), |d| d.clone())
                });
                let mut all =
                    dump::config_dump(&self.info.bootstrap, self.started, dynamic.as_ref());
                if param(&params, "include_eds").is_some() {
                    // After the clusters, as Envoy places it.
                    let endpoints =
                        dump::endpoints_dump(&self.published.load(), &self.info.bootstrap);
                    if let Some(configs) = all["configs"].as_array_mut() {
                        configs.insert(2.min(configs.len()), endpoints);
                    }
                }
                match dump::select(all, param(&params, "resource"), param(&params, "mask")) {
                    Ok(v) => Reply::json(&v),
                    Err(e) => Reply::text(404, format!("{e}\n")),
                }
            }
            "/ready" => {
                if self.store.ready() {
                    Reply::text(200, "LIVE\n")
                } else {
                    Reply::text(503, format!("{}\n", self.state_name()))
                }
            }
            "/server_info" => Reply::json(&self.server_info()),
            "/certs" => Reply::json(&certs::certs_json(&self.published.load())),
            "/memory" => {
                let rss = crate::stats::resident_bytes().to_string();
                Reply::json(&json!({
                    "allocated": rss,
                    "heap_size": rss,
                    "pageheap_unmapped": "0",
                    "pageheap_free": "0",
                    "total_thread_cache": "0",
                    "total_physical_bytes": rss,
                }))
            }
            "/logging" => logging(&params),
            "/healthcheck/fail" => {
                self.store.set_healthcheck_failed(true);
                Reply::text(200, "OK\n")
            }
            "/healthcheck/ok" => {
                self.store.set_healthcheck_failed(false);
                Reply::text(200, "OK\n")
            }
            "/reset_counters" => {
                self.store.reset_counters();
                Reply::text(200, "OK\n")
            }
            "/runtime" => Reply::json(&self.store.runtime.dump()),
            "/runtime_modify" => match self.store.runtime.modify(&params) {
                Ok(()) => Reply::text(200, "OK\n"),
                Err((status, message)) => Reply::text(status, message),
            },
            _ => Reply::text(404, format!("invalid path. {}", help())),
        }
    }

    fn state_name(&self) -> &'static str {
        match self.store.state() {
            crate::stats::ServerState::Live => "LIVE",
            crate::stats::ServerState::Draining => "DRAINING",
        }
    }

    fn stats(&self, params: &[(String, String)], forced: Option<&str>) -> Reply {
        let filter = match param(params, "filter").filter(|f| !f.is_empty()) {
            Some(f) => match regex::Regex::new(f) {
                Ok(r) => Some(r),
                Err(e) => return Reply::text(400, format!("Invalid re2 regex: {e}\n")),
            },
            None => None,
        };
        let selection = Selection {
            filter,
            used_only: params.iter().any(|(k, _)| k == "usedonly"),
        };
        let values = self.store.values();
        let texts = self.store.texts();
        let histograms = self.store.histogram_values();
        match forced.or(format_param(params)) {
            Some("json") => Reply::json(&render::json(&values, &texts, &histograms, &selection)),
            Some("prometheus") => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=UTF-8",
                body: render::prometheus(&values, &histograms, &selection, self.store.tags())
                    .into_bytes(),
            },
            None | Some("text") => {
                Reply::text(200, render::text(&values, &texts, &histograms, &selection))
            }
            Some(other) => Reply::text(
                404,
                format!("usage: /stats?format=json|prometheus|text (not {other:?})\n"),
            ),
        }
    }

    fn server_info(&self) -> Value {
        let uptime = format!("{}s", self.store.uptime_secs());
        let node = self.info.node.as_ref().map_or_else(|| json!({}), node_json);
        json!({
            "version": format!("ringway/{}", env!("CARGO_PKG_VERSION")),
            "state": self.state_name(),
            // Ringway's own hand-over protocol (src/server/hot_restart.rs).
            "hot_restart_version": if self.info.command_line["disable_hot_restart"] == true {
                "disabled"
            } else {
                "ringway.1"
            },
            "command_line_options": self.info.command_line,
            "node": node,
            "uptime_current_epoch": uptime,
            "uptime_all_epochs": uptime,
        })
    }
}

/// `POST /logging`: lists loggers; `?level=L` sets all, `?name=L` one.
fn logging(params: &[(String, String)]) -> Reply {
    for (key, value) in params {
        let Some(level) = crate::logger::parse_level(value) else {
            return Reply::text(404, format!("error: unknown level {value:?}\n"));
        };
        if key == "level" {
            crate::logger::set_all_levels(level);
        } else if !crate::logger::set_logger_level(key, level) {
            return Reply::text(404, format!("error: unknown logger {key:?}\n"));
        }
    }
    let mut out = String::from("active loggers:\n");
    for (name, level) in crate::logger::loggers() {
        out.push_str(&format!("  {name}: {}\n", crate::logger::level_name(level)));
    }
    Reply::text(200, out)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn format_param(params: &[(String, String)]) -> Option<&str> {
    param(params, "format")
}

/// Reads a request head; returns its method and target.
/// Accepts admin connections, each served by a task of its own; past
/// [`MAX_CONNECTIONS`] at once a new one gets a 503 straight away.
async fn accept_loop(admin: Rc<Admin>, listener: Bound, logs: Option<ShardLogs>) {
    let logs = Rc::new(logs);
    let listener = match listener.adopt() {
        Ok(l) => l,
        Err(e) => return log::error!("admin: {e}"),
    };
    let active = Rc::new(Cell::new(0usize));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("admin: accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.get() >= MAX_CONNECTIONS {
            monoio::spawn(async move {
                let busy = Reply::text(503, "too many admin connections\n").encode();
                let _ = monoio::time::timeout(BUSY_DEADLINE, stream.write_all(busy)).await;
            });
            continue;
        }
        active.set(active.get() + 1);
        let (admin, active, logs) = (admin.clone(), active.clone(), logs.clone());
        let local = listener.local_address(&stream);
        monoio::spawn(async move {
            admin
                .serve(stream, peer, local, logs.as_ref().as_ref())
                .await;
            active.set(active.get() - 1);
        });
    }
}

/// The request head as Envoy's admin connection manager sees it for its
/// log: it uses the remote address, so `x-forwarded-for` gains the peer
/// (the host's own address for a loopback peer).
/// A head that already carries one is logged as it is.
fn as_forwarded(mut head: Vec<u8>, peer: &Address) -> Vec<u8> {
    if !head.ends_with(b"\r\n\r\n")
        || crate::access_log::find_header(&head, "x-forwarded-for").is_some()
    {
        return head;
    }
    let settings = crate::config::XffSettings {
        use_remote_address: true,
        ..Default::default()
    };
    let peer = peer.ip().map(|a| a.ip());
    let local = crate::http::xff::local_address(peer.is_some_and(|ip| ip.is_ipv6()));
    if let Some(xff) = crate::http::xff::resolve(&settings, peer, local, None).xff {
        head.truncate(head.len() - 2);
        head.extend_from_slice(format!("x-forwarded-for: {xff}\r\n\r\n").as_bytes());
    }
    head
}

/// Reads a request head (at most [`MAX_HEAD`] bytes): the head as read,
/// its method and its target.
async fn read_head(stream: &mut Stream) -> Option<(Vec<u8>, String, String)> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        let len = buf.len();
        let cap = buf.capacity().min(MAX_HEAD);
        let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
        buf = slice.into_inner();
        if res.ok()? == 0 {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let (method, target) = (req.method?.to_string(), req.path?.to_string());
                buf.truncate(n);
                return Some((buf, method, target));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return None,
        }
    }
}

/// Splits and percent-decodes a query string (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = parse_query("filter=cluster%5C.a&usedonly&x=a+b");
        assert_eq!(q[0], ("filter".to_string(), "cluster\\.a".to_string()));
        assert_eq!(q[1], ("usedonly".to_string(), String::new()));
        assert_eq!(q[2].1, "a b");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
