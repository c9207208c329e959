//! Per-shard, per-endpoint HTTP/2 upstream connections: streams are
//! multiplexed on a connection up to its cap, a new connection opens when
//! every one is full, and a connection the peer closed or sent GOAWAY on
//! leaves the pool. Owned by one shard: `Rc`/`RefCell`, no lock.

use super::lanes::Lane;
use super::pool::{IdleCounter, PoolKey, PoolWant, UpstreamConn};
use crate::config::Http2Options;
use crate::http::codec::READ_CHUNK;
use crate::net::{Address, ByteCounts};
use bytes::Bytes;
use h2::client::SendRequest;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Streams opened on a new connection before the peer's SETTINGS say how
/// many it allows (h2 would otherwise open any number).
const INITIAL_STREAMS: usize = 100;

/// One HTTP/2 connection to an endpoint.
pub struct H2Conn {
    send: SendRequest<Bytes>,
    /// What it may be used for besides its endpoint.
    key: PoolKey,
    /// Streams open on it now.
    in_flight: Cell<usize>,
    /// Most streams Ringway opens on it at once (`max_concurrent_streams`;
    /// the peer's own limit applies too).
    cap: usize,
    /// Streams opened on it so far, and how many it may carry in all
    /// (`max_requests_per_connection`).
    opened: Cell<u32>,
    max_streams: Option<u32>,
    /// When its last stream ended (or it opened).
    idle_since: Cell<Instant>,
    idle_counter: IdleCounter,
    /// Cleared when the connection ends (closed, failed, or drained after
    /// a GOAWAY).
    alive: Rc<Cell<bool>>,
    /// Bytes moved, for the cluster's byte counters.
    pub counts: Rc<ByteCounts>,
    /// Its lane: requests waiting for a stream on it.
    lane: Rc<Lane>,
}

impl H2Conn {
    /// Opens a stream slot (counted until the slot drops) and the handle
    /// to send its request on.
    pub fn open(self: &Rc<Self>) -> (StreamSlot, SendRequest<Bytes>) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.opened.set(self.opened.get().saturating_add(1));
        (StreamSlot(self.clone()), self.send.clone())
    }

    /// Whether this stream is the last `max_requests_per_connection`
    /// allows on the connection.
    pub fn spent(&self) -> bool {
        self.max_streams.is_some_and(|max| self.opened.get() >= max)
    }

    fn usable(&self) -> bool {
        self.alive.get() && self.in_flight.get() < self.cap && !self.spent()
    }

    /// Whether the pool should let it go: ended, spent, or without a
    /// stream for longer than `idle_timeout` (its streams, if any, keep
    /// it open until they end).
    fn retired(&self, now: Instant, idle_timeout: Option<Duration>) -> bool {
        let idle = self.in_flight.get() == 0;
        let idled = now.saturating_duration_since(self.idle_since.get());
        if idle && self.alive.get() && idle_timeout.is_some_and(|t| idled > t) {
            self.idle_counter.count();
            return true;
        }
        !self.alive.get() || (idle && self.spent())
    }
}

/// A stream's place on its connection.
pub struct StreamSlot(Rc<H2Conn>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.in_flight.set(conn.in_flight.get().saturating_sub(1));
        conn.idle_since.set(Instant::now());
        conn.lane.notify();
    }
}

/// The HTTP/2 connections of one shard, by endpoint address.
#[derive(Default)]
pub struct H2Pool {
    conns: RefCell<HashMap<Address, Vec<Rc<H2Conn>>>>,
}

impl H2Pool {
    /// The least busy live connection to `addr` that serves `want`, with
    /// room for a stream.
    /// Connections retired meanwhile (`idle_timeout`: the cluster's) leave
    /// the pool; once their last handle goes, h2 closes them.
    pub fn take(
        &self,
        addr: &Address,
        want: &PoolWant<'_>,
        now: Instant,
        idle_timeout: Option<Duration>,
    ) -> Option<Rc<H2Conn>> {
        let mut conns = self.conns.borrow_mut();
        let list = conns.get_mut(addr)?;
        list.retain(|c| !c.retired(now, idle_timeout));
        list.iter()
            .filter(|c| c.usable() && c.key.matches(want))
            .min_by_key(|c| c.in_flight.get())
            .cloned()
    }

    /// Adds a new connection to `addr`.
    pub fn add(&self, addr: Address, conn: Rc<H2Conn>) {
        self.conns.borrow_mut().entry(addr).or_default().push(conn);
    }

    /// Forgets every connection (used when the shard drains): each ends
    /// once its streams do.
    pub fn clear(&self) {
        self.conns.borrow_mut().clear();
    }
}

/// Speaks HTTP/2 (prior knowledge) on a connected socket: the handshake,
/// then the connection's driver task on this shard, which holds the
/// connection's stats guard until the connection ends.
pub async fn handshake(
    up: UpstreamConn,
    options: &Http2Options,
    max_streams: Option<u32>,
) -> std::io::Result<Rc<H2Conn>> {
    let UpstreamConn { stream, guard, .. } = up;
    let counts = Rc::new(ByteCounts::default());
    let io = stream.into_poll(Vec::new(), counts.clone());
    let cap = options.max_concurrent_streams as usize;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(options.initial_stream_window_size)
        .initial_connection_window_size(options.initial_connection_window_size)
        .header_table_size(options.hpack_table_size)
        .initial_max_send_streams(cap.min(INITIAL_STREAMS))
        .max_send_buffer_size(READ_CHUNK)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(std::io::Error::other)?;
    let alive = Rc::new(Cell::new(true));
    let ended = alive.clone();
    let idle_counter = guard.idle_counter();
    let lane = guard.lane().clone();
    let key = guard.key().clone();
    let keepalive = options.keepalive;
    monoio::spawn(async move {
        let mut connection = connection;
        let ping = connection.ping_pong();
        let driving = std::pin::pin!(&mut connection);
        monoio::select! {
            _ = driving => {}
            _ = crate::http::h2::keepalive(ping, keepalive) => {}
        }
        ended.set(false);
        drop(guard);
    });
    Ok(Rc::new(H2Conn {
        send,
        key,
        in_flight: Cell::new(0),
        cap,
        opened: Cell::new(0),
        max_streams,
        idle_since: Cell::new(Instant::now()),
        idle_counter,
        alive,
        counts,
        lane,
    }))
}
