//! Network filters before the terminal one, against Envoy 1.40 on the same
//! bootstrap: `connection_limit` (with its delay) and `local_ratelimit`
//! closing the connections past their limits, and their stats.

mod common;
use common::direct_response_filter;
use common::oracle::{with_admin, Pair};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A listener on `{port}` whose chain runs `filters` (each a `- name:`
/// item) before a connection manager answering "served".
fn config(filters: &str) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: limited
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - filters:
{filters}{hcm}"#,
        hcm = direct_response_filter("limited", "served"),
    ))
}

/// Opens a connection and asks once on it: the connection (kept open)
/// when it was served, else how long the proxy took to close it.
fn ask(port: u16) -> Result<TcpStream, Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.ends_with(b"served") {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => return Err(started.elapsed()),
        }
    }
    Ok(s)
}

#[test]
fn connection_limit_closes_connections_past_the_limit_as_envoy_does() {
    let filter = r#"      - name: envoy.filters.network.connection_limit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit
          stat_prefix: two
          max_connections: 2
          delay: 0.3s
"#;
    let Some(pair) = Pair::start("connection_limit", &config(filter), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let first = ask(port).expect("first connection served");
        let _second = ask(port).expect("second connection served");
        let took = ask(port).expect_err("a third is closed");
        assert!(
            took >= Duration::from_millis(250),
            "port {port}: closed after {took:?}"
        );
        // A place freed is a place taken.
        drop(first);
        std::thread::sleep(Duration::from_millis(200));
        let _third = ask(port).expect("a connection after one closed");
    }
    pair.assert_same_stats(&[
        "connection_limit.two.limited_connections",
        "connection_limit.two.active_connections",
    ]);
}

#[test]
fn local_ratelimit_closes_connections_without_a_token_as_envoy_does() {
    let filter = r#"      - name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: bucket
          token_bucket: { max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s }
"#;
    let Some(pair) = Pair::start("local_ratelimit", &config(filter), vec![]) else {
        return;
    };
    // Starting the pair took a token from each (its readiness probe).
    let served = |port: u16| (0..4).map(|_| ask(port).is_ok()).collect::<Vec<_>>();
    let ringway = served(pair.ringway.port);
    assert_eq!(ringway, served(pair.envoy.port), "served: ringway vs envoy");
    assert_eq!(ringway, [true, false, false, false]);
    pair.assert_same_stats(&["local_rate_limit.bucket.rate_limited"]);
}

#[test]
fn local_ratelimit_tokens_come_back_continuously_as_in_envoy() {
    // Five tokens a second: one every 200 ms, not five at each second.
    let filter = r#"      - name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: trickle
          token_bucket: { max_tokens: 1, tokens_per_fill: 5, fill_interval: 1s }
"#;
    let Some(pair) = Pair::start("local_ratelimit_trickle", &config(filter), vec![]) else {
        return;
    };
    let served = |port: u16| {
        let mut seen = Vec::new();
        for pause in [300, 0, 300] {
            std::thread::sleep(Duration::from_millis(pause));
            seen.push(ask(port).is_ok());
        }
        seen
    };
    let ringway = served(pair.ringway.port);
    assert_eq!(ringway, served(pair.envoy.port), "served: ringway vs envoy");
    assert_eq!(ringway, [true, false, true]);
}

#[test]
fn connection_filter_configs_get_envoys_verdicts() {
    let Some(bin) = common::oracle::envoy_or_skip("connection filter verdicts") else {
        return;
    };
    let limit = |body: &str| {
        format!("      - name: envoy.filters.network.connection_limit\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit\n{body}")
    };
    let rate = |bucket: &str| {
        format!("      - name: envoy.filters.network.local_ratelimit\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit\n          stat_prefix: r\n          token_bucket: {bucket}\n")
    };
    let cases = [
        (
            "a limit",
            limit("          stat_prefix: l\n          max_connections: 5\n"),
            true,
        ),
        (
            "no stat_prefix",
            limit("          max_connections: 5\n"),
            false,
        ),
        (
            "a zero limit",
            limit("          stat_prefix: l\n          max_connections: 0\n"),
            false,
        ),
        (
            "a bucket",
            rate("{ max_tokens: 1, fill_interval: 1s }"),
            true,
        ),
        (
            "a too short interval",
            rate("{ max_tokens: 1, fill_interval: 0.01s }"),
            false,
        ),
        (
            "no tokens at all",
            rate("{ max_tokens: 0, fill_interval: 1s }"),
            true,
        ),
    ];
    for (what, filters, valid) in cases {
        let config = config(&filters)
            .replace("{admin}", "0")
            .replace("{port}", "0");
        let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}
