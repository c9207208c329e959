//! The listener layer: what happens to an accepted connection before a
//! protocol serves it. Listener filters look at its first bytes, a filter
//! chain is chosen, the chain's transport socket (TLS or plaintext) is set
//! up, and its terminal network filter (the HTTP connection manager or
//! the TCP proxy) takes over.

pub mod chain;
pub mod inspect;
mod tcp_proxy;

use crate::http::conn::{self, ChainAt};
use crate::http::head::Peer;
use crate::net::{Address, Stream};
use crate::server::shard::Shard;
use crate::snapshot::{Listener, Serve};
use crate::stats::sets::{Listener as ListenerStat, Server as ServerStat};
use crate::tls::SessionInfo;
use chain::ConnInfo;
use inspect::{Inspected, Inspectors};
use std::rc::Rc;
use std::sync::Arc;

/// Serves one accepted connection on listener `index`.
pub async fn serve(
    mut stream: Stream,
    remote: Address,
    local: Option<Address>,
    shard: Rc<Shard>,
    index: usize,
) {
    let Some(listener) = shard.view().snapshot.listeners.get(index).cloned() else {
        return;
    };
    let w = shard.id;
    let inspected = if listener.tls_inspector.is_some() || listener.http_inspector.is_some() {
        let which = Inspectors {
            tls: listener.tls_inspector.as_deref(),
            http: listener.http_inspector.as_deref(),
            w,
        };
        match inspect::inspect(&mut stream, which, listener.filters.timeout).await {
            Some(found) if !found.timed_out || listener.filters.continue_on_timeout => found,
            _ => return,
        }
    } else {
        Inspected::default()
    };
    let Some(chain) = choose(&listener, &inspected, &remote, local.as_ref()) else {
        listener.stats.inc(w, ListenerStat::no_filter_chain_match);
        return;
    };
    let _counted = Accepted::open(&shard, &listener);
    stream.set_nodelay();
    let Inspected { bytes, hello, .. } = inspected;
    let chain_config = &listener.chains[chain];
    let mut session_info = None;
    let (stream, replay, alpn_h2) = match &chain_config.tls {
        Some(tls) => {
            // A parsed ClientHello carries the bytes it was read from.
            let (accepted, replay) = match hello {
                Some(h) => (Some(h.accepted), Vec::new()),
                None => (None, bytes),
            };
            let Some(session) = tls.accept(stream, accepted, replay, &listener.ssl, w).await else {
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
        remote,
        local,
        tls: session_info,
    };
    let at = ChainAt {
        listener: index,
        chain,
    };
    match &chain_config.serve {
        Serve::Http(http) => {
            let h2 = alpn_h2 && http.http.codec != crate::config::Codec::Http1;
            let http1_only = http.http.codec == crate::config::Codec::Http1;
            conn::serve(stream, replay, peer, shard.clone(), at, h2 && !http1_only).await;
        }
        Serve::Tcp(proxy) => {
            let proxy = Arc::clone(proxy);
            tcp_proxy::serve(stream, replay, peer, &shard, &proxy).await;
        }
    }
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
