//! `tcp_proxy` against Envoy 1.40 on the same bootstrap: bytes both ways
//! with half-close, the idle timeout, connect failures, and their stats
//! and access-log lines.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A listener on `{port}` whose one chain is a TCP proxy to cluster `c`
/// (`extra` lines go into the TcpProxy config), and cluster `c` on
/// `upstream`.
fn config(extra: &str, upstream: u16) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: c
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{log}}
              log_format: {{ text_format: "%RESPONSE_FLAGS% %RESPONSE_CODE% %PROTOCOL% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER%\n" }}
{extra}  clusters:
{}"#,
        port_cluster("c", upstream)
    ))
}

/// An upstream that reads until the client's half-close, then answers
/// with how many bytes it got and closes.
fn counting_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                let _ = s.write_all(format!("got {} bytes", got.len()).as_bytes());
            });
        }
    });
    port
}

/// Sends `size` bytes, half-closes, and reads the answer to the end.
fn send_and_half_close(port: u16, size: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&vec![b'x'; size]).expect("send");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn bytes_flow_both_ways_through_half_closes_as_in_envoy() {
    let upstream = counting_upstream();
    let Some(pair) = Pair::start("tcp half-close", &config("", upstream), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        assert_eq!(
            send_and_half_close(port, 100_000),
            "got 100000 bytes",
            "port {port}"
        );
        assert_eq!(send_and_half_close(port, 0), "got 0 bytes", "port {port}");
    }
    pair.assert_same_stats(&[
        "tcp.t.downstream_cx_total",
        "tcp.t.downstream_cx_rx_bytes_total",
        "tcp.t.downstream_cx_tx_bytes_total",
        "cluster.c.upstream_cx_total",
        "cluster.c.upstream_cx_rx_bytes_total",
        "cluster.c.upstream_cx_tx_bytes_total",
    ]);
    // The readiness probe's connection is logged too (three lines each),
    // and its end may come before or after the others'.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let ringway = sorted(log_lines(&pair.logs.0, 3));
    assert_eq!(ringway, sorted(log_lines(&pair.logs.1, 3)));
    assert!(
        ringway.contains(&"- 0 - 100000 16 c".to_string()),
        "{ringway:?}"
    );
}

#[test]
fn an_idle_connection_is_closed_after_idle_timeout_as_in_envoy() {
    // An upstream that accepts and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let extra = "          idle_timeout: 0.3s\n";
    let Some(pair) = Pair::start("tcp idle", &config(extra, upstream), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let started = Instant::now();
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).unwrap_or(0), 0, "port {port}: closed");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "port {port}: closed after {waited:?}"
        );
    }
    pair.assert_same_stats(&["tcp.t.idle_timeout", "tcp.t.downstream_cx_total"]);
}

#[test]
fn a_refused_upstream_is_logged_and_counted_as_in_envoy() {
    let closed = free_port();
    let Some(pair) = Pair::start("tcp refused", &config("", closed), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "port {port}: nothing comes back");
    }
    pair.assert_same_stats(&[
        "tcp.t.downstream_cx_total",
        "cluster.c.upstream_cx_connect_fail",
        "cluster.c.upstream_cx_total",
    ]);
    // Two connections each: the start-up probe's and the test's.
    let (ringway, envoy) = (log_lines(&pair.logs.0, 2), log_lines(&pair.logs.1, 2));
    assert_eq!(ringway, envoy);
    assert_eq!(ringway.trim(), "UF,URX 0 - 0 0 c\nUF,URX 0 - 0 0 c");
}

#[test]
fn max_downstream_connection_duration_ends_a_busy_connection_as_in_envoy() {
    // An upstream that answers each line, so the connection is never idle.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let extra = "          max_downstream_connection_duration: 0.5s\n";
    let Some(pair) = Pair::start("tcp duration", &config(extra, upstream), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let started = Instant::now();
        let mut byte = [0u8; 1];
        // Keep talking until the proxy ends the connection.
        let ended = loop {
            if s.write_all(b"x").is_err() || s.read(&mut byte).unwrap_or(0) == 0 {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "port {port}: never ended"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            ended >= Duration::from_millis(400),
            "port {port}: ended after {ended:?}"
        );
    }
    pair.assert_same_stats(&[
        "tcp.t.max_downstream_connection_duration",
        "tcp.t.idle_timeout",
    ]);
    let (ringway, envoy) = (log_lines(&pair.logs.0, 2), log_lines(&pair.logs.1, 2));
    let flags = |text: &str| {
        text.lines()
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        flags(&ringway),
        flags(&envoy),
        "ringway:\n{ringway}\nenvoy:\n{envoy}"
    );
}

/// A TCP upstream that greets each connection with `name` and closes.
fn greeting_upstream(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.write_all(name.as_bytes());
        }
    });
    port
}

/// Connects through the proxy and reads the upstream's greeting.
fn greeting(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn weighted_clusters_and_source_ip_hashing_pick_upstreams_as_in_envoy() {
    let names = ["u0", "u1", "u2"];
    let ports: Vec<u16> = names.iter().map(|n| greeting_upstream(n)).collect();
    let endpoints: String = ports
        .iter()
        .map(|p| format!("        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}\n"))
        .collect();
    let ring = format!(
        "  - name: ring\n    type: STATIC\n    lb_policy: RING_HASH\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: ring\n      endpoints:\n      - lb_endpoints:\n{endpoints}"
    );
    let clusters = format!(
        "{ring}{}{}",
        port_cluster("one", ports[0]),
        port_cluster("two", ports[1])
    );
    let listener = |prefix: &str, route: &str| {
        format!(
            r#"  - name: {prefix}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {prefix}
{route}"#
        )
    };
    let hashed = "          cluster: ring\n          hash_policy: [ { source_ip: {} } ]\n";
    let weighted = "          weighted_clusters:\n            clusters: [ { name: one, weight: 1 }, { name: two, weight: 1 } ]\n";
    // The first listener takes {port}; the second an ephemeral port found
    // through /listeners.
    let config = with_admin(&format!(
        "static_resources:\n  listeners:\n{}{}  clusters:\n{clusters}",
        listener("hashed", hashed).replacen("port_value: 0", "port_value: {port}", 1),
        listener("weighted", weighted),
    ));
    let Some(pair) = Pair::start("tcp hashing and weights", &config, vec![]) else {
        return;
    };
    // One client address: every connection lands on the same ring host,
    // the one Envoy's ring (xxHash64 of the address) picks.
    let hashed_on = |port: u16| {
        let seen: Vec<String> = (0..6).map(|_| greeting(port)).collect();
        assert!(seen.iter().all(|s| *s == seen[0]), "port {port}: {seen:?}");
        seen[0].clone()
    };
    assert_eq!(hashed_on(pair.ringway.port), hashed_on(pair.envoy.port));
    // Even weights: both clusters take connections.
    let (ringway, envoy) = pair.admin("/listeners?format=json");
    let weighted_port = |json: &str| {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["listener_statuses"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == "weighted"))
            .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
            .expect("the weighted listener's port") as u16
    };
    for port in [weighted_port(&ringway), weighted_port(&envoy)] {
        let seen: Vec<String> = (0..40).map(|_| greeting(port)).collect();
        for name in ["u0", "u1"] {
            assert!(
                seen.iter().any(|s| s == name),
                "port {port}: {name} never chosen"
            );
        }
    }
    pair.assert_same_stats(&[
        "tcp.hashed.downstream_cx_total",
        "tcp.weighted.downstream_cx_total",
        "cluster.ring.upstream_cx_total",
    ]);
}
