//! `udp_proxy` against Envoy 1.40 on the same bootstrap: datagrams both
//! ways in a session per client, the idle timeout, and the stats.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::net::UdpSocket;
use std::time::Duration;

/// A UDP server answering each datagram with `echo:` and the datagram.
fn echo_server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = socket.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&[b"echo:".as_slice(), &buf[..n]].concat(), from);
        }
    });
    port
}

fn config(upstream: u16, route: &str) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: udp
    address: {{ socket_address: {{ protocol: UDP, address: 127.0.0.1, port_value: {{port}} }} }}
    listener_filters:
    - name: envoy.filters.udp_listener.udp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
        stat_prefix: svc
        idle_timeout: 1s
{route}  clusters:
{}"#,
        port_cluster("c", upstream)
    ))
}

const MATCHER: &str = "        matcher:\n          on_no_match:\n            action:\n              name: route\n              typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: c }\n";

/// Sends each datagram from one client socket and collects the answers.
fn talk(port: u16, datagrams: &[&[u8]]) -> Vec<String> {
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    datagrams
        .iter()
        .map(|d| {
            client.send_to(d, ("127.0.0.1", port)).expect("send");
            let mut buf = [0u8; 65536];
            match client.recv_from(&mut buf) {
                Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) => format!("no answer: {e}"),
            }
        })
        .collect()
}

/// Waits (up to 10 s) until the proxy on `port` relays a datagram: a UDP
/// listener may start relaying after the admin port a start-up waits on
/// answers (CI once lost a first datagram). Each try is a new client, so
/// a lost try leaves no half-used session behind.
fn wait_until_relaying(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        client
            .send_to(b"ready?", ("127.0.0.1", port))
            .expect("send");
        let mut buf = [0u8; 64];
        if client.recv_from(&mut buf).is_ok() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} never relayed"
        );
    }
}

#[test]
fn datagrams_are_relayed_in_sessions_as_in_envoy() {
    let upstream = echo_server();
    // The `matcher` form; `cluster` is the older spelling of the same.
    for route in [MATCHER.to_string(), "        cluster: c\n".to_string()] {
        let Some(pair) = Pair::start("udp proxy", &config(upstream, &route), vec![]) else {
            return;
        };
        // Envoy reads at most 1,500 bytes per datagram by default.
        let big = vec![b'x'; 1400];
        for port in [pair.ringway.port, pair.envoy.port] {
            wait_until_relaying(port);
            let answers = talk(port, &[b"one", b"two", &big]);
            assert_eq!(answers[..2], ["echo:one", "echo:two"], "port {port}");
            assert_eq!(answers[2].len(), 1405, "port {port}");
            // A second client is a second session.
            assert_eq!(talk(port, &[b"three"]), ["echo:three"], "port {port}");
        }
        pair.assert_same_stats(&[
            "udp.svc.downstream_sess_total",
            "udp.svc.downstream_sess_active",
            "udp.svc.downstream_sess_rx_datagrams",
            "udp.svc.downstream_sess_rx_bytes",
            "udp.svc.downstream_sess_tx_datagrams",
            "udp.svc.downstream_sess_tx_bytes",
            "cluster.c.udp.sess_tx_datagrams",
            "cluster.c.udp.sess_rx_datagrams",
            "cluster.c.upstream_cx_tx_bytes_total",
            "cluster.c.upstream_cx_rx_bytes_total",
        ]);
        // Idle sessions end after the idle timeout.
        std::thread::sleep(Duration::from_millis(2500));
        pair.assert_same_stats(&["udp.svc.idle_timeout", "udp.svc.downstream_sess_active"]);
    }
}

#[test]
fn udp_configs_get_envoys_verdicts() {
    let Some(bin) = common::oracle::envoy_or_skip("udp validate") else {
        return;
    };
    let cases = [
        ("matcher", MATCHER.to_string(), true),
        ("cluster", "        cluster: c\n".to_string(), true),
        ("no route", String::new(), false),
        ("both", format!("        cluster: c\n{MATCHER}"), false),
        // The cluster may come later (CDS): each session counts no_route.
        (
            "unknown cluster",
            "        cluster: nope\n".to_string(),
            true,
        ),
    ];
    for (what, route, valid) in cases {
        let config = config(9, &route)
            .replace("{admin}", "0")
            .replace("{port}", "0");
        let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}
