//! The listener layer: what happens to an accepted connection before a
//! protocol serves it. Listener filters look at its first bytes, a filter
//! chain is chosen, the chain's transport socket (TLS or plaintext) is set
//! up, and its terminal network filter (the HTTP connection manager or
//! the TCP proxy) takes over.

pub mod chain;
mod connection_filters;
pub mod inspect;
mod proxy_protocol;
mod tcp_proxy;
pub mod udp_proxy;

pub use connection_filters::ConnectionFilters;

use crate::http::conn::{self, ChainAt};
use crate::http::head::Peer;
use crate::net::{Address, Stream};
use crate::server::drain::LocalDrain;
use crate::server::shard::Shard;
use crate::snapshot::{Listener, Serve};
use crate::stats::sets::{
    Listener as ListenerStat, ProxyProto as ProxyStat, Root as RootStat, Server as ServerStat,
};
use crate::tls::SessionInfo;
use chain::ConnInfo;
use inspect::{Inspected, Inspectors};
use std::rc::Rc;
use std::sync::Arc;

/// Serves one connection accepted on the socket of the listener `name`;
/// `stopped` fires when that socket is closed (the listener went away or
/// moved), which ends the connection's idle waits.
pub async fn serve(
    mut stream: Stream,
    remote: Address,
    local: Option<Address>,
    shard: Rc<Shard>,
    name: &str,
    stopped: Rc<LocalDrain>,
) {
    let view = shard.view();
    let Some(&index) = view.snapshot.listener_index.get(name) else {
        return;
    };
    let listener = view.snapshot.listeners[index].clone();
    drop(view);
    let w = shard.id;
    let stats = shard.stats.clone();
    let slot = if listener.global_limit {
        stats.open_downstream()
    } else {
        Some(crate::stats::DownstreamSlot::exempt())
    };
    let Some(_slot) = slot else {
        // Over the overload manager's global limit: closed at once.
        listener
            .stats
            .inc(w, ListenerStat::downstream_global_cx_overflow);
        return;
    };
    let timeout = listener.filters.timeout;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let direct = remote.clone();
    let (mut remote, mut local) = (remote, local);
    let mut first = Vec::new();
    if listener.filters.original_dst {
        let ipv6 = matches!(&local, Some(Address::Ip(a)) if a.is_ipv6());
        if let Some(original) = crate::net::original_destination(&stream, ipv6) {
            local = Some(Address::Ip(original));
        }
    }
    if let (Some(config), Some(stats)) =
        (&listener.filters.proxy_protocol, &listener.proxy_protocol)
    {
        // The steps only some listeners take are boxed: inline, the largest
        // of them would size every connection's task, idle ones included.
        let read = Box::pin(proxy_protocol::read(&mut stream));
        let read = match timeout {
            Some(t) => monoio::time::timeout(t, read).await.ok(),
            None => Some(read.await),
        };
        // The listener filters' time ran out reading the header: Envoy's
        // pre-connection timeout, not a PROXY protocol error.
        let Some(read) = read else {
            listener
                .stats
                .inc(w, ListenerStat::downstream_pre_cx_timeout);
            return;
        };
        match proxied(read, config, &stats.filter, w) {
            Ok((header, rest)) => {
                if let proxy_protocol::Header::Proxied {
                    source,
                    destination,
                    ..
                } = header
                {
                    remote = source;
                    local = Some(destination);
                }
                first = rest;
            }
            Err(counted) => {
                if counted {
                    stats.root.inc(w, RootStat::downstream_cx_proxy_proto_error);
                }
                return;
            }
        }
    }
    let inspected = if listener.tls_inspector.is_some() || listener.http_inspector.is_some() {
        let which = Inspectors {
            tls: listener.tls_inspector.as_deref(),
            http: listener.http_inspector.as_deref(),
            w,
        };
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        match Box::pin(inspect::inspect(&mut stream, which, left, first)).await {
            Some(found) if !found.timed_out || listener.filters.continue_on_timeout => found,
            Some(_) => {
                listener
                    .stats
                    .inc(w, ListenerStat::downstream_pre_cx_timeout);
                return;
            }
            None => return,
        }
    } else {
        Inspected {
            bytes: first,
            ..Inspected::default()
        }
    };
    let Some(chain) = choose(&listener, &inspected, &remote, local.as_ref()) else {
        listener.stats.inc(w, ListenerStat::no_filter_chain_match);
        return;
    };
    let _counted = Accepted::open(&shard, &listener);
    let chain_config = &listener.chains[chain];
    let Some(_admitted) = chain_config.connection_filters.admit(w).await else {
        return;
    };
    stream.set_nodelay();
    let Inspected { bytes, hello, .. } = inspected;
    let mut session_info = None;
    let (stream, replay, alpn_h2) = match &chain_config.tls {
        Some(tls) => {
            // A parsed ClientHello carries the bytes it was read from.
            let (accepted, replay) = match hello {
                Some(h) => (Some(h.accepted), Vec::new()),
                None => (None, bytes),
            };
            let accept = Box::pin(tls.accept(stream, accepted, replay, &listener.ssl, w));
            let Some(session) = accept.await else {
                return;
            };
            let sni = session.server_name();
            let (h2, info) =
                session.with_state(|s| (s.alpn_protocol() == Some(b"h2"), SessionInfo::of(s, sni)));
            session_info = Some(Rc::new(info));
            (Stream::Tls(session), Vec::new(), h2)
        }
        None => (stream, bytes, false),
    };
    let peer = Peer {
        direct_remote: (direct != remote).then_some(direct),
        remote,
        local,
        tls: session_info,
        filter_state: Default::default(),
    };
    let at = ChainAt {
        listener: index,
        chain,
        fingerprint: chain_config.fingerprint,
    };
    match &chain_config.serve {
        Serve::Http(http) => {
            // ALPN's h2 is served as HTTP/2 unless the manager is HTTP/1.1 only.
            let h2 = alpn_h2 && http.http.codec != crate::config::Codec::Http1;
            conn::serve(stream, replay, peer, shard.clone(), at, h2, stopped).await;
        }
        Serve::Tcp(proxy) => Box::pin(tcp_proxy::serve(stream, replay, peer, &shard, proxy)).await,
    }
}

/// Counts what the PROXY protocol filter read and gives the header and the
/// bytes after it. Err when the connection must close: true when that
/// counts as `downstream_cx_proxy_proto_error` (a malformed or missing
/// header, or a timeout), false when the client just left or sent a
/// version refused by `disallowed_versions`.
fn proxied(
    read: Result<proxy_protocol::Read, proxy_protocol::Failure>,
    config: &crate::config::ProxyProtocol,
    stats: &crate::stats::Scope<ProxyStat>,
    w: usize,
) -> Result<(proxy_protocol::Header, Vec<u8>), bool> {
    use proxy_protocol::{Failure, Header};
    // (found, disallowed, error) of a version.
    let of = |version: u8| match version {
        1 => (
            ProxyStat::V1Found,
            ProxyStat::V1Disallowed,
            ProxyStat::V1Error,
        ),
        _ => (
            ProxyStat::V2Found,
            ProxyStat::V2Disallowed,
            ProxyStat::V2Error,
        ),
    };
    let read = match read {
        Ok(read) => read,
        Err(Failure::Malformed(version)) => {
            stats.inc(w, of(version).2);
            return Err(true);
        }
        Err(Failure::Closed) => return Err(false),
    };
    let version = match &read.header {
        Header::Proxied { version, .. } | Header::Local { version } => *version,
        Header::Absent if config.allow_without => {
            stats.inc(w, ProxyStat::NotFoundAllowed);
            return Ok((Header::Absent, read.bytes));
        }
        Header::Absent => {
            stats.inc(w, ProxyStat::NotFoundDisallowed);
            return Err(true);
        }
    };
    if config.disallowed.contains(&version) {
        // As Envoy 1.40: where a header may be missing, a refused version
        // is taken for no header (its bytes go on as they came); where
        // not, it is found, refused, and the connection closed.
        if config.allow_without {
            stats.inc(w, ProxyStat::NotFoundAllowed);
            return Ok((Header::Absent, read.bytes));
        }
        stats.inc(w, of(version).0);
        stats.inc(w, of(version).1);
        return Err(false);
    }
    stats.inc(w, of(version).0);
    let mut rest = read.bytes;
    rest.drain(..read.header_len);
    Ok((read.header, rest))
}

/// The chain that serves the connection, by `filter_chain_match`, else
/// the default chain.
fn choose(
    listener: &Listener,
    inspected: &Inspected,
    remote: &Address,
    local: Option<&Address>,
) -> Option<usize> {
    let mut alpn = Vec::new();
    let (transport, server_name) = match &inspected.hello {
        Some(h) => {
            alpn.clone_from(&h.alpn);
            ("tls", h.server_name.as_deref())
        }
        None => ("raw_buffer", None),
    };
    if let Some(p) = inspected.http {
        alpn.push(p.to_string());
    }
    let ip = |a: &Address| a.ip().map(|s| (s.ip(), s.port()));
    let info = ConnInfo {
        destination: local.and_then(ip),
        source: ip(remote),
        server_name,
        transport,
        application_protocols: &alpn,
    };
    let matched = listener.chains.len() - usize::from(listener.has_default);
    let matchers = listener.chains[..matched].iter().map(|c| &c.matcher);
    chain::select(matchers, &info).or(listener.has_default.then_some(matched))
}

/// A connection counted on its listener and the server from the moment a
/// chain took it until it closes.
struct Accepted {
    shard: Rc<Shard>,
    listener: Arc<Listener>,
}

impl Accepted {
    fn open(shard: &Rc<Shard>, listener: &Arc<Listener>) -> Self {
        let w = shard.id;
        listener.stats.inc(w, ListenerStat::downstream_cx_total);
        listener.stats.inc(w, ListenerStat::downstream_cx_active);
        shard.stats.server.inc(w, ServerStat::total_connections);
        Accepted {
            shard: shard.clone(),
            listener: listener.clone(),
        }
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        let w = self.shard.id;
        let stats = &self.listener.stats;
        stats.dec(w, ListenerStat::downstream_cx_active);
        stats.inc(w, ListenerStat::downstream_cx_destroy);
        self.shard
            .stats
            .server
            .dec(w, ServerStat::total_connections);
    }
}
