//! Opening upstream connections: the cluster's connect timeout, socket
//! options, TLS handshake and connection stats, for every protocol that
//! proxies.

use super::lanes::Permit;
use super::pool::{CxGuard, UpstreamConn};
use super::{Cluster, Endpoint};
use crate::net::{set_int_option, Stream};
use crate::server::shard::Shard;
use crate::stats::sets::{Cluster as ClusterStat, Host as HostStat};
use crate::tls::{count_failure, count_handshake, tls_failure};
use std::time::Instant;

/// Why a new upstream connection failed: Envoy's reset reason, and the
/// transport's own account (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    /// `remote connection failure`, `connection timeout`.
    pub reason: &'static str,
    /// What the socket or TLS said, in Envoy's shape.
    pub transport: Option<String>,
}

impl ConnectFailure {
    fn remote(transport: String) -> Self {
        ConnectFailure {
            reason: "remote connection failure",
            transport: Some(transport),
        }
    }
}

/// Envoy's account of a failed TCP connect: `delayed connect error:
/// <strerror>`.
fn socket_failure(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("delayed connect error: {text}")
}

/// Opens a new upstream connection to `endpoint` within the cluster's
/// connect timeout, counted in `protocol`'s connection total when the
/// connection carries one, under the circuit breakers' `permit` (whose
/// key names the TLS server name to send).
pub async fn connect(
    shard: &Shard,
    cluster: &Cluster,
    endpoint: &Endpoint,
    protocol: Option<ClusterStat>,
    permit: Permit,
) -> Result<UpstreamConn, ConnectFailure> {
    let server_name = permit.key.server_name.as_deref();
    let w = shard.id;
    let stats = &cluster.stats;
    stats.inc(w, ClusterStat::upstream_cx_total);
    if let Some(protocol) = protocol {
        stats.inc(w, protocol);
    }
    endpoint.stats.inc(w, HostStat::cx_total);
    let started = Instant::now();
    // The TLS handshake is part of connecting, within the same timeout.
    let connecting = async {
        if cluster.tls.as_ref().is_some_and(|t| !t.check_ready(w)) {
            return Err(ConnectFailure::remote("TLS secrets are not ready".into()));
        }
        let stream = Stream::connect(&endpoint.addr)
            .await
            .map_err(|e| ConnectFailure::remote(socket_failure(&e)))?;
        stream.set_nodelay();
        if let (Some(k), Some(tcp)) = (&cluster.config.tcp_keepalive, stream.tcp()) {
            set_keepalive(tcp, k);
        }
        let (Some(tls), Some(ssl)) = (&cluster.tls, &cluster.ssl) else {
            return Ok(stream);
        };
        match tls
            .connect(stream, endpoint.addr.ip().map(|a| a.ip()), server_name)
            .await
        {
            Ok(session) => {
                session.with_state(|state| count_handshake(state, ssl, w));
                Ok(Stream::Tls(session))
            }
            Err(e) => {
                count_failure(&e, ssl, w);
                Err(ConnectFailure::remote(tls_failure(&e)))
            }
        }
    };
    let failure = match monoio::time::timeout(cluster.connect_timeout(), connecting).await {
        Ok(Ok(stream)) => {
            let micros = started.elapsed().as_micros() as u64;
            shard.histograms.record(cluster.connect_ms, micros);
            return Ok(UpstreamConn {
                stream,
                requests: 0,
                guard: CxGuard::new(stats.clone(), endpoint.stats.clone(), w, permit),
            });
        }
        Ok(Err(failure)) => failure,
        Err(_) => {
            stats.inc(w, ClusterStat::upstream_cx_connect_timeout);
            ConnectFailure {
                reason: "connection timeout",
                transport: None,
            }
        }
    };
    stats.inc(w, ClusterStat::upstream_cx_connect_fail);
    endpoint.stats.inc(w, HostStat::cx_connect_fail);
    Err(failure)
}

/// `upstream_connection_options.tcp_keepalive` on a new upstream socket;
/// fields left unset keep the kernel's values.
fn set_keepalive(stream: &monoio::net::TcpStream, k: &crate::config::TcpKeepalive) {
    let tcp = libc::IPPROTO_TCP;
    let settings = [
        Some((libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)),
        k.time.map(|t| (tcp, libc::TCP_KEEPIDLE, t)),
        k.interval.map(|i| (tcp, libc::TCP_KEEPINTVL, i)),
        k.probes.map(|p| (tcp, libc::TCP_KEEPCNT, p)),
    ];
    for (level, name, value) in settings.into_iter().flatten() {
        let value = i32::try_from(value).unwrap_or(i32::MAX);
        if let Err(e) = set_int_option(stream, level, name, value) {
            log::debug!("tcp_keepalive option {name}: {e}");
        }
    }
}
