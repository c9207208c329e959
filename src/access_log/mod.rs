//! Access logs: `envoy.access_loggers.stdout`, `.stderr` and `.file` with
//! Envoy's format strings.
//!
//! A shard renders each line into its own buffer for that destination; the
//! buffer is handed whole to the writer thread when it fills or when the
//! shard's flush timer fires, so a shard never waits on a disk. Lines are
//! only ever written whole, by one thread, so they never interleave or tear.
//! Memory is bounded: when the writer falls behind by [`MAX_PENDING`]
//! batches, new batches are dropped and counted rather than queued.

pub mod format;

pub use format::{Format, Template};

use crate::http::flags::ResponseFlags;
use crate::net::Address;
use crate::stats::{Kind, Visit};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// A shard hands its buffer over once it holds this much.
const FLUSH_BYTES: usize = 64 * 1024;
/// How often a shard hands over a partly filled buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Batches queued for the writer before new ones are dropped.
const MAX_PENDING: usize = 256;

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, opened for appending.
    File(String),
}

/// One `access_log` entry as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// Where lines go.
    pub destination: Destination,
    /// How a line looks.
    pub format: Format,
}

/// A compiled access log: a sink index and a format.
#[derive(Debug)]
pub struct AccessLog {
    sink: usize,
    format: Format,
}

/// The machine's host name (`%HOSTNAME%`).
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "-".to_string())
    })
}

/// What one finished request looked like, for rendering.
pub struct Record<'a> {
    /// When the request began.
    pub start: SystemTime,
    /// From the request's start to the end of the response.
    pub duration: Duration,
    /// From the request's start to the upstream's response headers.
    pub response_duration: Option<Duration>,
    /// The request head as received.
    pub request_head: &'a [u8],
    /// The generated `x-request-id`, when the client sent none (or its
    /// was replaced).
    pub generated_request_id: Option<&'a str>,
    /// The upstream response head, when there was one.
    pub response_head: &'a [u8],
    /// `x-envoy-upstream-service-time`, in ms, when there was an upstream response.
    pub upstream_service_time: Option<u128>,
    /// The status sent (0 when none was).
    pub status: u16,
    /// Envoy's response flags.
    pub flags: ResponseFlags,
    /// Request body bytes.
    pub bytes_received: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// The endpoint the request went to.
    pub upstream_host: Option<Address>,
    /// The cluster it went to.
    pub upstream_cluster: Option<&'a str>,
    /// What the transport said of a failed upstream connect.
    pub upstream_transport_failure: Option<String>,
    /// The matched route's name.
    pub route_name: Option<&'a str>,
    /// The client's address (trusted, after `x-forwarded-for` rules).
    pub remote: Option<Address>,
    /// The address of the connection's peer.
    pub direct_remote: Option<Address>,
    /// The address the client connected to.
    pub local: Option<Address>,
    /// For a gRPC request, the response's gRPC status (-1 when its
    /// `grpc-status` is malformed).
    pub grpc_status: Option<i64>,
    /// `%PROTOCOL%`: the downstream protocol.
    pub protocol: &'static str,
    /// The downstream TLS session, if any.
    pub tls: Option<&'a crate::tls::SessionInfo>,
}

impl<'a> Record<'a> {
    /// A record of a request that has only just arrived: nothing about its
    /// response or upstream is known yet.
    pub fn new(
        start: SystemTime,
        request_head: &'a [u8],
        remote: Address,
        local: Option<Address>,
    ) -> Self {
        Record {
            start,
            duration: Duration::ZERO,
            response_duration: None,
            request_head,
            generated_request_id: None,
            response_head: &[],
            upstream_service_time: None,
            status: 0,
            flags: ResponseFlags::default(),
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            upstream_cluster: None,
            upstream_transport_failure: None,
            route_name: None,
            remote: Some(remote.clone()),
            direct_remote: Some(remote),
            local,
            grpc_status: None,
            protocol: "HTTP/1.1",
            tls: None,
        }
    }
}

/// Finds header `name` (lower case) in a raw HTTP/1 head.
pub(crate) fn find_header<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    let mut lines = head.split(|b| *b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

impl Record<'_> {
    fn request_line(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        let line = self
            .request_head
            .split(|b| *b == b'\r')
            .next()
            .unwrap_or(&[]);
        // No head (a request refused before one was read): no method.
        let mut parts = line.split(|b| *b == b' ').filter(|p| !p.is_empty());
        (parts.next(), parts.next())
    }

    fn request_one(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => self.request_line().0,
            // A CONNECT target is an authority, not a path (Envoy has none).
            ":path" => match self.request_line() {
                (Some(b"CONNECT"), _) => None,
                (_, path) => path,
            },
            ":authority" => find_header(self.request_head, "host"),
            // A generated id replaced (or stood in for) the client's.
            "x-request-id" => self
                .generated_request_id
                .map(str::as_bytes)
                .or_else(|| find_header(self.request_head, name)),
            _ => find_header(self.request_head, name),
        }
    }

    /// A request header (`:method`, `:path`, `:authority` included), or the
    /// alternative when the first is absent.
    pub fn request_header(&self, name: &str, alt: Option<&str>) -> Option<&[u8]> {
        self.request_one(name)
            .or_else(|| alt.and_then(|a| self.request_one(a)))
    }

    fn response_one(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        if name == "x-envoy-upstream-service-time" {
            let ms = self.upstream_service_time?;
            return Some(Cow::Owned(ms.to_string().into_bytes()));
        }
        find_header(self.response_head, name).map(Cow::Borrowed)
    }

    /// A response header (with the `x-envoy-upstream-service-time` Ringway
    /// adds), or the alternative when the first is absent.
    pub fn response_header(&self, name: &str, alt: Option<&str>) -> Option<Cow<'_, [u8]>> {
        self.response_one(name)
            .or_else(|| alt.and_then(|a| self.response_one(a)))
    }
}

/// An open destination, written only by the writer thread.
enum Output {
    Stdout,
    Stderr,
    File(std::fs::File),
}

/// The destinations in use and the writer thread that owns them.
pub struct Sinks {
    by_destination: Mutex<HashMap<Destination, usize>>,
    outputs: Mutex<Vec<Option<Output>>>,
    sender: OnceLock<crossbeam_channel::Sender<(usize, Vec<u8>)>>,
    /// Batches sent and not yet written.
    pending: AtomicU64,
    /// `filesystem.*` counters, in [`FILESYSTEM_STATS`] order: batches
    /// handed to the writer, written, failed, dropped.
    counts: [AtomicU64; 4],
}

/// The counters `Sinks` reports (Envoy's `filesystem.*`, plus the batches
/// Ringway drops instead of queueing without bound).
const FILESYSTEM_STATS: [&str; 4] = [
    "filesystem.write_buffered",
    "filesystem.write_completed",
    "filesystem.write_failed",
    "filesystem.write_dropped",
];
const BUFFERED: usize = 0;
const COMPLETED: usize = 1;
const FAILED: usize = 2;
const DROPPED: usize = 3;

impl Sinks {
    /// An empty set; nothing is opened until a log is compiled.
    pub fn new() -> Arc<Sinks> {
        Arc::new(Sinks {
            by_destination: Mutex::default(),
            outputs: Mutex::default(),
            sender: OnceLock::new(),
            pending: AtomicU64::new(0),
            counts: Default::default(),
        })
    }

    /// Compiles a log, opening its destination once (`open` false: only
    /// checks the config, as `--mode validate` does).
    pub fn compile(&self, config: &AccessLogConfig, open: bool) -> Result<AccessLog, String> {
        let mut by = lock(&self.by_destination);
        if let Some(&sink) = by.get(&config.destination) {
            return Ok(AccessLog {
                sink,
                format: config.format.clone(),
            });
        }
        let output = match (&config.destination, open) {
            (_, false) => None,
            (Destination::Stdout, true) => Some(Output::Stdout),
            (Destination::Stderr, true) => Some(Output::Stderr),
            (Destination::File(path), true) => Some(Output::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open access log {path:?}: {e}"))?,
            )),
        };
        let mut outputs = lock(&self.outputs);
        outputs.push(output);
        let sink = outputs.len() - 1;
        by.insert(config.destination.clone(), sink);
        Ok(AccessLog {
            sink,
            format: config.format.clone(),
        })
    }

    /// Starts the writer thread (once; later calls do nothing).
    pub fn start(self: &Arc<Self>) -> Result<(), String> {
        if self.sender.get().is_some() {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Vec<u8>)>(MAX_PENDING);
        let sinks = self.clone();
        std::thread::Builder::new()
            .name("ringway-access-log".into())
            .spawn(move || {
                for (sink, batch) in rx {
                    sinks.write(sink, &batch);
                    sinks.pending.fetch_sub(1, Ordering::Release);
                }
            })
            .map_err(|e| format!("cannot spawn the access-log writer: {e}"))?;
        let _ = self.sender.set(tx);
        Ok(())
    }

    fn write(&self, sink: usize, batch: &[u8]) {
        let mut outputs = lock(&self.outputs);
        let result = match outputs.get_mut(sink) {
            Some(Some(Output::Stdout)) => std::io::stdout().lock().write_all(batch),
            Some(Some(Output::Stderr)) => std::io::stderr().lock().write_all(batch),
            Some(Some(Output::File(f))) => f.write_all(batch),
            _ => Ok(()),
        };
        match result {
            Ok(()) => self.counts[COMPLETED].fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                log::warn!("access log write failed: {e}");
                self.counts[FAILED].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Hands a batch to the writer; drops it (counted) when the writer is
    /// behind or not running.
    fn send(&self, sink: usize, batch: Vec<u8>) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .sender
            .get()
            .is_some_and(|tx| tx.try_send((sink, batch)).is_ok());
        let outcome = if sent {
            BUFFERED
        } else {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            DROPPED
        };
        // One shared atomic per batch (64 KiB or 100 ms of lines), not per line.
        self.counts[outcome].fetch_add(1, Ordering::Relaxed);
    }

    /// Waits (up to `limit`) until every batch sent has been written: the
    /// last lines of a shutdown are not lost.
    pub fn drain(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.pending.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Visit for Sinks {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        for (name, count) in FILESYSTEM_STATS.iter().zip(&self.counts) {
            f(name, Kind::Counter, count.load(Ordering::Relaxed));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One shard's pending lines, per sink.
pub struct ShardLogs {
    sinks: Arc<Sinks>,
    buffers: RefCell<Vec<Vec<u8>>>,
    line: RefCell<String>,
}

impl ShardLogs {
    /// Buffers for a shard writing through `sinks`.
    pub fn new(sinks: Arc<Sinks>) -> Self {
        ShardLogs {
            sinks,
            buffers: RefCell::default(),
            line: RefCell::default(),
        }
    }

    /// Renders `record` for every log in `logs`.
    pub fn log(&self, logs: &[AccessLog], record: &Record) {
        let mut line = self.line.borrow_mut();
        let mut buffers = self.buffers.borrow_mut();
        for l in logs {
            line.clear();
            l.format.render(record, &mut line);
            if buffers.len() <= l.sink {
                buffers.resize_with(l.sink + 1, Vec::new);
            }
            let buffer = &mut buffers[l.sink];
            buffer.extend_from_slice(line.as_bytes());
            if buffer.len() >= FLUSH_BYTES {
                self.sinks.send(l.sink, std::mem::take(buffer));
            }
        }
    }

    /// Hands every non-empty buffer to the writer.
    pub fn flush(&self) {
        for (sink, buffer) in self.buffers.borrow_mut().iter_mut().enumerate() {
            if !buffer.is_empty() {
                self.sinks.send(sink, std::mem::take(buffer));
            }
        }
    }
}
