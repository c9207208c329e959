//! Circuit breakers against Envoy 1.40 on the same configs: overflow
//! answers, queueing at `max_connections`, route priorities, retry and
//! pool limits, stats and `/clusters`; and a saturation run where a slow
//! upstream never lets the pending queue grow past its limit.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::time::{Duration, Instant};

const ROUTES: &str = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/high/" }
                route: { cluster: c, priority: HIGH, prefix_rewrite: "/" }
              - match: { prefix: "/retry/" }
                route:
                  cluster: c
                  prefix_rewrite: "/"
                  retry_policy: { retry_on: 5xx, num_retries: 2, retry_back_off: { base_interval: 0.001s, max_interval: 0.002s } }
              - match: { prefix: "/" }
                route: { cluster: c }
"#;

/// Both proxies over cluster `c` (`backends`) with `breakers` as its
/// `circuit_breakers` block (four-space indent).
fn pair(test: &str, breakers: &str, backends: Vec<Backend>) -> Option<Pair> {
    let members: Vec<(&Backend, u32)> = backends.iter().map(|b| (b, 1)).collect();
    let cluster = static_cluster("c", &members, breakers);
    Pair::start(test, &with_admin(&http_config(ROUTES, &cluster)), backends)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").into_bytes()
}

/// Sends a request to `port` on a thread of its own; its status comes
/// back when joined.
fn in_background(port: u16, path: &str) -> std::thread::JoinHandle<u16> {
    let raw = get(path);
    std::thread::spawn(move || {
        let mut c = Client::connect(port);
        c.set_timeout(Duration::from_secs(10));
        c.send(&raw);
        c.read_response(false).map_or(0, |r| r.status)
    })
}

/// Waits until `backend` has seen `n` requests.
fn until_seen(backend_seen: impl Fn() -> usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend_seen() < n {
        assert!(
            Instant::now() < deadline,
            "the backend never saw {n} requests"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stats the breakers move.
const STATS: &[&str] = &[
    "cluster.c.upstream_rq_total",
    "cluster.c.upstream_rq_pending_total",
    "cluster.c.upstream_rq_pending_overflow",
    "cluster.c.upstream_rq_active_overflow",
    "cluster.c.upstream_rq_retry",
    "cluster.c.upstream_rq_retry_overflow",
    "cluster.c.upstream_cx_total",
    "cluster.c.upstream_cx_overflow",
    "cluster.c.upstream_cx_pool_overflow",
    "cluster.c.upstream_rq_pending_active",
    "cluster.c.upstream_rq_active",
    "cluster.c.circuit_breakers.default.cx_open",
    "cluster.c.circuit_breakers.default.cx_pool_open",
    "cluster.c.circuit_breakers.default.rq_open",
    "cluster.c.circuit_breakers.default.rq_pending_open",
    "cluster.c.circuit_breakers.default.rq_retry_open",
    "cluster.c.circuit_breakers.default.remaining_cx",
    "cluster.c.circuit_breakers.default.remaining_cx_pools",
    "cluster.c.circuit_breakers.default.remaining_pending",
    "cluster.c.circuit_breakers.default.remaining_retries",
    "cluster.c.circuit_breakers.default.remaining_rq",
    "cluster.c.circuit_breakers.high.cx_open",
    "cluster.c.circuit_breakers.high.rq_open",
    "cluster.c.circuit_breakers.high.remaining_rq",
];

/// The `/clusters` lines that are not per host.
fn cluster_lines(body: &str) -> String {
    body.lines()
        .filter(|l| !l.contains("::127.0.0.1:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn request_overflow_matches_envoy() {
    let slow = Backend::start("slow");
    let seen = slow.requests.clone();
    let breakers = "    circuit_breakers:\n      thresholds:\n      - { max_requests: 1, track_remaining: true }\n      - { priority: HIGH, max_requests: 5, max_retries: 1 }\n";
    let Some(pair) = pair("request_overflow_matches_envoy", breakers, vec![slow]) else {
        return;
    };
    // One slow request on each side holds the only request slot...
    let held = [
        in_background(pair.ringway.port, "/delay/1500"),
        in_background(pair.envoy.port, "/delay/1500"),
    ];
    until_seen(|| seen.lock().expect("lock").len(), 2);
    // ...so the next is pending until it connects, then turned away; the
    // one after finds that connection idle and is turned away at once.
    let answers = pair.assert_all_same(&[get("/a"), get("/b")]);
    assert_eq!(answers[0].status, 503);
    // The HIGH thresholds are the route's own.
    assert_eq!(pair.assert_same(&get("/high/c")).status, 200);
    for h in held {
        assert_eq!(h.join().expect("join"), 200);
    }
    pair.assert_same_stats(STATS);
    pair.assert_same_admin("/clusters", cluster_lines);
    pair.assert_same_admin("/clusters?format=json", |body| {
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        v["cluster_statuses"][0]["circuit_breakers"].to_string()
    });
}

#[test]
fn max_connections_queue_and_pending_overflow_match_envoy() {
    let slow = Backend::start("slow");
    let seen = slow.requests.clone();
    let breakers = "    circuit_breakers:\n      thresholds:\n      - { max_connections: 1, max_pending_requests: 2, track_remaining: true }\n";
    let Some(pair) = pair("max_connections_queue_matches_envoy", breakers, vec![slow]) else {
        return;
    };
    // One request on the only connection, two queued behind it: all
    // three are served, one after another, on that connection.
    let mut queued = Vec::new();
    for port in [pair.ringway.port, pair.envoy.port] {
        queued.push(in_background(port, "/delay/600"));
    }
    until_seen(|| seen.lock().expect("lock").len(), 2);
    for port in [pair.ringway.port, pair.envoy.port] {
        queued.push(in_background(port, "/delay/100"));
        queued.push(in_background(port, "/delay/100"));
    }
    // Both queues are full: a fourth request overflows.
    std::thread::sleep(Duration::from_millis(200));
    let overflow = pair.assert_same(&get("/d"));
    assert_eq!(overflow.status, 503);
    for q in queued {
        assert_eq!(q.join().expect("join"), 200);
    }
    pair.assert_same_stats(STATS);
}

#[test]
fn retry_overflow_and_priorities_match_envoy() {
    let failing = Backend::start_forced("failing", "/status/503");
    let breakers = "    circuit_breakers:\n      thresholds:\n      - { max_retries: 0 }\n      - { priority: HIGH, max_requests: 0 }\n";
    let Some(pair) = pair("retry_overflow_matches_envoy", breakers, vec![failing]) else {
        return;
    };
    // No retry may start: the 503 goes out as it came.
    let answers = pair.assert_all_same(&[get("/retry/x"), get("/high/x")]);
    assert_eq!(answers[0].status, 503);
    assert_eq!(answers[0].upstream.len(), 1);
    // HIGH admits no request at all.
    assert!(answers[1].upstream.is_empty());
    pair.assert_same_stats(STATS);
}

#[test]
fn connection_pool_limit_matches_envoy() {
    let (one, two) = (Backend::start("one"), Backend::start("two"));
    let breakers = "    circuit_breakers:\n      thresholds:\n      - { max_connection_pools: 1, track_remaining: true }\n";
    let Some(pair) = pair(
        "connection_pool_limit_matches_envoy",
        breakers,
        vec![one, two],
    ) else {
        return;
    };
    // Round robin alternates hosts; only the first host's pool may exist.
    let statuses = |port: u16| -> Vec<u16> {
        let mut s: Vec<u16> = (0..4).map(|_| get_status(port)).collect();
        s.sort_unstable();
        s
    };
    assert_eq!(statuses(pair.ringway.port), vec![200, 200, 503, 503]);
    assert_eq!(statuses(pair.envoy.port), vec![200, 200, 503, 503]);
    pair.assert_same_stats(STATS);
}

fn get_status(port: u16) -> u16 {
    let mut c = Client::connect(port);
    c.send(&get("/"));
    c.read_response(false).map_or(0, |r| r.status)
}

#[test]
fn tcp_proxy_connection_overflow_matches_envoy() {
    let backend = Backend::start("tcp");
    let config = format!(
        r#"static_resources:
  listeners:
  - name: t
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: c
  clusters:
{}"#,
        static_cluster(
            "c",
            &[(&backend, 1)],
            "    circuit_breakers: { thresholds: [ { max_connections: 1 } ] }\n"
        )
    );
    let Some(pair) = Pair::start(
        "tcp_proxy_connection_overflow_matches_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    // Each side's readiness probe was proxied too: wait until it is gone.
    for admin in [pair.ringway_admin, pair.envoy.admin] {
        admin_until(admin, "/stats", |b| {
            b.contains("cluster.c.upstream_cx_active: 0")
        });
    }
    for port in [pair.ringway.port, pair.envoy.port] {
        // The first connection holds the cluster's only connection...
        let mut first = Client::connect(port);
        first.set_timeout(Duration::from_secs(5));
        first.send(&get("/"));
        assert_eq!(first.read_response(false).expect("first").status, 200);
        // ...so the second is closed without reaching the upstream.
        let mut second = Client::connect(port);
        second.set_timeout(Duration::from_secs(5));
        assert!(second.is_closed(), "a second connection should be refused");
    }
    pair.assert_same_stats(&[
        "cluster.c.upstream_cx_total",
        "cluster.c.upstream_cx_overflow",
        "cluster.c.upstream_rq_pending_total",
        "cluster.c.circuit_breakers.default.cx_open",
    ]);
}

#[test]
fn breaker_fields_validate_as_in_envoy() {
    let Some(bin) = common::oracle::envoy_or_skip("breaker_fields_validate_as_in_envoy") else {
        return;
    };
    let backend = Backend::start("b");
    for (breakers, valid) in [
        ("{ per_host_thresholds: [ { max_connections: 2 } ] }", true),
        ("{ per_host_thresholds: [ { max_requests: 2 } ] }", false),
        ("{ thresholds: [ { retry_budget: {} } ] }", true),
        (
            "{ thresholds: [ { retry_budget: { budget_percent: { value: 150 } } } ] }",
            false,
        ),
        ("{ thresholds: [ { priority: URGENT } ] }", false),
        ("{ thresholds: [ { max_connections: -1 } ] }", false),
    ] {
        let cluster = static_cluster(
            "c",
            &[(&backend, 1)],
            &format!("    circuit_breakers: {breakers}\n"),
        );
        let config = http_config(ROUTES, &cluster).replace("{port}", "0");
        let (envoy_ok, envoy_says) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_says) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{breakers}: {envoy_says}");
        assert_eq!(ringway_ok, valid, "{breakers}: {ringway_says}");
    }
}

/// A slow upstream under far more concurrent requests than the breakers
/// allow: the pending queue never passes `max_pending_requests`, every
/// request turned away is Envoy's overflow 503, and the rest are served.
#[test]
fn a_saturated_cluster_never_queues_past_its_limits() {
    let slow = Backend::start_forced("slow", "/delay/50");
    let cluster = static_cluster(
        "c",
        &[(&slow, 1)],
        "    circuit_breakers: { thresholds: [ { max_connections: 4, max_pending_requests: 8, max_requests: 4 } ] }\n",
    );
    let admin = free_port();
    let config = format!("{}{}", admin_block(admin), http_config(ROUTES, &cluster));
    let p = Proxy::start(&config, &["--concurrency", "2"]);
    let port = p.port;
    let stop = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..48)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut served, mut refused) = (0, 0);
                while Instant::now() < stop {
                    let mut c = Client::connect(port);
                    c.set_timeout(Duration::from_secs(10));
                    c.send(&get("/"));
                    let r = c.read_response(false).expect("an answer to every request");
                    match r.status {
                        200 => served += 1,
                        503 => {
                            assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
                            refused += 1;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                (served, refused)
            })
        })
        .collect();
    // Gauges are summed over the shards' rows read one after another: a
    // request ending on one shard as another starts on the other can be
    // seen twice, so each reading may be one over the limit.
    let mut most_pending = 0;
    let stat = |body: &str, name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
            .unwrap_or(0)
    };
    while Instant::now() < stop {
        let (_, body) = admin_request(admin, "GET", "/stats");
        let pending = stat(&body, "cluster.c.upstream_rq_pending_active");
        let active = stat(&body, "cluster.c.upstream_rq_active");
        assert!(active <= 5, "{active} requests active past max_requests 4");
        most_pending = most_pending.max(pending);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (served, refused) = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .fold((0, 0), |(a, b), (s, r)| (a + s, b + r));
    assert!(
        most_pending <= 9,
        "{most_pending} pending past max_pending_requests 8"
    );
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    // At most max_connections, plus (as in Envoy) one per shard whose lane
    // had none when the limit was reached.
    assert!(slow.connection_count() <= 6, "{}", slow.connection_count());
}
