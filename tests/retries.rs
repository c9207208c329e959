//! Retries, black-box at --concurrency 2: each retry_on condition retried
//! and others not, the x-envoy-* request headers, previous_hosts, body
//! replay within the buffer limit, per-try and route timeouts, back-off
//! bounds, stats and the URX flag.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// A catch-all route to cluster `pool` with `route_extra` inside `route:`.
fn config(route_extra: &str, pool: &[&Backend], dead: Option<u16>, vhost_extra: &str) -> String {
    let mut eps = String::new();
    for b in pool {
        eps.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n",
            b.port()
        ));
    }
    if let Some(port) = dead {
        eps.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
        ));
    }
    let clusters = format!(
        "  - name: pool\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: pool\n      endpoints:\n      - lb_endpoints:\n{eps}"
    );
    let routes = format!(
        "            - name: all\n              domains: [\"*\"]\n{vhost_extra}              routes:\n              - match: {{ prefix: \"/\" }}\n                route:\n                  cluster: pool\n{route_extra}"
    );
    http_config(&routes, &clusters)
}

fn send(port: u16, extra_headers: &str) -> Response {
    let mut c = Client::connect(port);
    c.send(format!("GET /x HTTP/1.1\r\nhost: h\r\n{extra_headers}\r\n").as_bytes());
    c.read_response(false).expect("response")
}

const RETRY_5XX: &str = "                  retry_policy:\n                    retry_on: 5xx\n                    num_retries: 1\n                    retry_host_predicate: [ { name: envoy.retry_host_predicates.previous_hosts, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate } } ]\n                    host_selection_retry_max_attempts: 5\n";

#[test]
fn five_xx_is_retried_on_another_host() {
    let bad = Backend::start_forced("bad", "/status/503");
    let good = Backend::start("good");
    let p = Proxy::start(
        &config(RETRY_5XX, &[&bad, &good], None, ""),
        &["--concurrency", "2"],
    );
    for _ in 0..20 {
        let r = send(p.port, "");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some("good"));
    }
    // Every request reached the good host exactly once; each try on the
    // bad host was retried once, never back to it.
    assert_eq!(good.seen().len(), 20);
    assert!((1..=20).contains(&bad.seen().len()), "{}", bad.seen().len());
}

#[test]
fn conditions_that_do_not_apply_are_not_retried() {
    let bad = Backend::start_forced("bad", "/status/503");
    let only_connect =
        "                  retry_policy: { retry_on: connect-failure, num_retries: 3 }\n";
    let p = Proxy::start(&config(only_connect, &[&bad], None, ""), &[]);
    assert_eq!(send(p.port, "").status, 503);
    assert_eq!(bad.seen().len(), 1, "a 503 is not a connect failure");
    let conflict = Backend::start_forced("conflict", "/status/409");
    let p = Proxy::start(
        &config(
            "                  retry_policy: { retry_on: 5xx, num_retries: 3 }\n",
            &[&conflict],
            None,
            "",
        ),
        &[],
    );
    assert_eq!(send(p.port, "").status, 409);
    assert_eq!(conflict.seen().len(), 1, "409 is retriable-4xx, not 5xx");
}

#[test]
fn each_retry_on_condition_retries_its_failure() {
    let good = Backend::start("good");
    let reset = Backend::start_forced("reset", "/close-before");
    let garbage = Backend::start_forced("garbage", "/garbage");
    let conflict = Backend::start_forced("conflict", "/status/409");
    let teapot = Backend::start_forced("teapot", "/status/418");
    let gateway = Backend::start_forced("gateway", "/status/502");
    let internal = Backend::start_forced("internal", "/status/500");
    let cases: Vec<(&str, Option<&Backend>, Option<u16>)> = vec![
        ("connect-failure", None, Some(free_port())),
        ("reset", Some(&reset), None),
        ("reset", Some(&garbage), None),
        ("retriable-4xx", Some(&conflict), None),
        ("gateway-error", Some(&gateway), None),
        ("5xx", Some(&internal), None),
    ];
    for (on, failing, dead) in cases {
        let policy = format!(
            "                  retry_policy:\n                    retry_on: {on}\n                    num_retries: 2\n                    retry_host_predicate: [ {{ name: envoy.retry_host_predicates.previous_hosts, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }} }} ]\n                    host_selection_retry_max_attempts: 5\n"
        );
        let pool: Vec<&Backend> = failing.into_iter().chain([&good]).collect();
        let p = Proxy::start(&config(&policy, &pool, dead, ""), &[]);
        for _ in 0..4 {
            assert_eq!(send(p.port, "").status, 200, "retry_on {on}");
        }
    }
    // gateway-error does not cover a plain 500.
    let policy = "                  retry_policy: { retry_on: gateway-error, num_retries: 2 }\n";
    let p = Proxy::start(&config(policy, &[&internal], None, ""), &[]);
    let before = internal.seen().len();
    assert_eq!(send(p.port, "").status, 500);
    assert_eq!(internal.seen().len(), before + 1);
    // retriable-status-codes, from the config and from the header.
    let policy = "                  retry_policy: { retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 1, retry_host_predicate: [ { name: envoy.retry_host_predicates.previous_hosts, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate } } ], host_selection_retry_max_attempts: 5 }\n";
    let p = Proxy::start(&config(policy, &[&teapot, &good], None, ""), &[]);
    for _ in 0..4 {
        assert_eq!(send(p.port, "").status, 200);
    }
}

#[test]
fn request_headers_drive_retries() {
    let bad = Backend::start_forced("bad", "/status/503");
    let good = Backend::start("good");
    // From a client that is not internal the headers are ignored (and
    // removed), as in Envoy: any client could multiply upstream load.
    let external = Proxy::start(&config("", &[&bad, &good], None, ""), &[]);
    let ignored: Vec<u16> = (0..10)
        .map(|_| {
            send(
                external.port,
                "x-envoy-retry-on: 5xx\r\nx-envoy-max-retries: 3\r\n",
            )
            .status
        })
        .collect();
    assert!(
        ignored.contains(&503),
        "an external client cannot ask for retries"
    );
    // No retry policy on the route: an internal client's headers alone ask
    // for retries.
    let p = Proxy::start(
        &internal_loopback(&config("", &[&bad, &good], None, "")),
        &[],
    );
    let statuses: Vec<u16> = (0..10).map(|_| send(p.port, "").status).collect();
    assert!(
        statuses.contains(&503),
        "without headers a 503 goes through"
    );
    for _ in 0..10 {
        let r = send(
            p.port,
            "x-envoy-retry-on: 5xx\r\nx-envoy-max-retries: 3\r\n",
        );
        assert_eq!(r.status, 200);
    }
    // The headers are consumed, not forwarded.
    assert!(good
        .seen()
        .iter()
        .all(|s| s.header("x-envoy-retry-on").is_none()));
    // x-envoy-max-retries: 0 turns retries off.
    let before = bad.seen().len() + good.seen().len();
    let zero: Vec<u16> = (0..10)
        .map(|_| {
            send(
                p.port,
                "x-envoy-retry-on: 5xx\r\nx-envoy-max-retries: 0\r\n",
            )
            .status
        })
        .collect();
    assert!(zero.contains(&503));
    assert_eq!(bad.seen().len() + good.seen().len(), before + 10);
    // x-envoy-retriable-status-codes with retriable-status-codes.
    let teapot = Backend::start_forced("teapot", "/status/418");
    let p = Proxy::start(
        &internal_loopback(&config("", &[&teapot, &good], None, "")),
        &[],
    );
    for _ in 0..6 {
        let r = send(
            p.port,
            "x-envoy-retry-on: retriable-status-codes\r\nx-envoy-retriable-status-codes: 418\r\nx-envoy-max-retries: 5\r\n",
        );
        assert_eq!(r.status, 200);
    }
}

#[test]
fn bodies_are_replayed_within_the_buffer_limit() {
    let bad = Backend::start_forced("bad", "/status/503");
    let good = Backend::start("good");
    let route = format!("{RETRY_5XX}                per_request_buffer_limit_bytes: 4096\n");
    let p = Proxy::start(
        &config(&route, &[&bad, &good], None, ""),
        &["--concurrency", "1"],
    );
    let post = |len: usize| {
        let mut c = Client::connect(p.port);
        let body = "b".repeat(len);
        c.send(
            format!("POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: {len}\r\n\r\n{body}")
                .as_bytes(),
        );
        c.read_response(false).expect("response")
    };
    for _ in 0..4 {
        assert_eq!(post(3000).status, 200);
    }
    assert!(good.seen().iter().all(|s| s.body_len == 3000));
    assert!(bad.seen().iter().all(|s| s.body_len == 3000));
    // Past the limit the request is streamed once and not retried.
    let statuses: Vec<u16> = (0..6).map(|_| post(5000).status).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(good.seen().iter().filter(|s| s.body_len == 5000).count() < 6);
    // Chunked bodies too: replayed when they fit, streamed once when not.
    let chunked = |chunks: usize| {
        let mut c = Client::connect(p.port);
        let mut req =
            String::from("POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n");
        for _ in 0..chunks {
            req.push_str(&format!("3e8\r\n{}\r\n", "c".repeat(1000)));
        }
        req.push_str("0\r\n\r\n");
        c.send(req.as_bytes());
        c.read_response(false).expect("response")
    };
    for _ in 0..4 {
        assert_eq!(chunked(3).status, 200);
    }
    assert!(good.seen().iter().filter(|s| s.body_len == 3000).count() >= 8);
    let statuses: Vec<u16> = (0..6).map(|_| chunked(6).status).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(good
        .seen()
        .iter()
        .all(|s| s.body_len != 6000 || s.method == "POST"));
}

#[test]
fn per_try_timeout_retries_and_route_timeout_bounds_all() {
    let slow = Backend::start_forced("slow", "/delay/1000");
    let good = Backend::start("good");
    let policy = "                  timeout: 2s\n                  retry_policy:\n                    retry_on: 5xx\n                    num_retries: 2\n                    per_try_timeout: 0.2s\n                    retry_host_predicate: [ { name: envoy.retry_host_predicates.previous_hosts, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate } } ]\n                    host_selection_retry_max_attempts: 5\n";
    let p = Proxy::start(&config(policy, &[&slow, &good], None, ""), &[]);
    for _ in 0..4 {
        let started = Instant::now();
        assert_eq!(send(p.port, "").status, 200);
        assert!(started.elapsed() < Duration::from_millis(900));
    }
    // Only slow hosts: every try times out, and the route timeout ends it.
    let policy = "                  timeout: 0.5s\n                  retry_policy: { retry_on: 5xx, num_retries: 10, per_try_timeout: 0.2s }\n";
    let p = Proxy::start(&config(policy, &[&slow], None, ""), &[]);
    let started = Instant::now();
    let r = send(p.port, "");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream request timeout");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(900),
        "{took:?}"
    );
}

#[test]
fn back_off_stays_within_bounds() {
    let bad = Backend::start_forced("bad", "/status/503");
    let policy = "                  retry_policy: { retry_on: 5xx, num_retries: 3, retry_back_off: { base_interval: 0.1s, max_interval: 0.15s } }\n";
    let p = Proxy::start(&config(policy, &[&bad], None, ""), &[]);
    for _ in 0..3 {
        let before = bad.seen().len();
        let started = Instant::now();
        assert_eq!(send(p.port, "").status, 503);
        let took = started.elapsed();
        assert_eq!(bad.seen().len(), before + 4, "one try and three retries");
        // Back-offs are drawn from [0, 100ms), [0, 150ms), [0, 150ms).
        assert!(
            took < Duration::from_millis(400) + Duration::from_millis(150),
            "{took:?}"
        );
    }
}

/// `config` with a file access log of `%RESPONSE_CODE% %RESPONSE_FLAGS%`.
fn with_log(config: String, log: &std::path::Path) -> String {
    config.replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{ text_format: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" }}\n", log.display()),
    )
}

/// A counter's value in an admin /stats text.
fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn stats_and_attempt_count() {
    let bad = Backend::start_forced("bad", "/status/503");
    let good = Backend::start("good");
    let admin = free_port();
    let vhost = "              include_request_attempt_count: true\n              include_attempt_count_in_response: true\n";
    let cfg = admin_block(admin) + &config(RETRY_5XX, &[&bad, &good], None, vhost);
    let p = Proxy::start(&cfg, &["--concurrency", "2"]);
    let mut counts = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = send(p.port, "");
        assert_eq!(r.status, 200);
        counts.insert(r.header("x-envoy-attempt-count").map(str::to_string));
    }
    // Responses say how many attempts they took (1, or 2 after a retry).
    assert!(
        counts
            .iter()
            .all(|c| matches!(c.as_deref(), Some("1") | Some("2"))),
        "{counts:?}"
    );
    // The retried attempts said which attempt they were.
    assert!(good
        .seen()
        .iter()
        .any(|s| s.header("x-envoy-attempt-count") == Some("2")));
    assert!(bad
        .seen()
        .iter()
        .all(|s| s.header("x-envoy-attempt-count") == Some("1")));
    let retried = bad.seen().len() as u64;
    let stats = admin_until(admin, "/stats?filter=%5Ecluster%5C.pool%5C.", |s| {
        stat(s, "cluster.pool.upstream_rq_retry_success") == retried
    });
    assert_eq!(stat(&stats, "cluster.pool.upstream_rq_retry"), retried);
    assert_eq!(
        stat(&stats, "cluster.pool.upstream_rq_retry_success"),
        retried
    );
    assert_eq!(stat(&stats, "cluster.pool.retry.upstream_rq_503"), retried);
    assert_eq!(
        stat(&stats, "cluster.pool.upstream_rq_retry_backoff_exponential"),
        retried
    );
    assert_eq!(stat(&stats, "cluster.pool.upstream_rq_total"), 10 + retried);
}

#[test]
fn exhausted_retries_are_flagged_urx() {
    let bad = Backend::start_forced("bad", "/status/503");
    let admin = free_port();
    let dir = TempDir::new();
    let log = dir.0.join("access.log");
    let policy = "                  retry_policy: { retry_on: 5xx, num_retries: 2 }\n";
    let cfg = admin_block(admin) + &with_log(config(policy, &[&bad], None, ""), &log);
    let p = Proxy::start(&cfg, &[]);
    assert_eq!(send(p.port, "").status, 503);
    assert_eq!(bad.seen().len(), 3);
    let stats = admin_until(admin, "/stats?filter=retry", |s| {
        stat(s, "cluster.pool.upstream_rq_retry_limit_exceeded") == 1
    });
    assert_eq!(
        stat(&stats, "cluster.pool.upstream_rq_retry_limit_exceeded"),
        1,
        "{stats}"
    );
    assert_eq!(stat(&stats, "cluster.pool.upstream_rq_retry"), 2);
    assert_eq!(stat(&stats, "cluster.pool.upstream_rq_retry_success"), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l == "503 URX") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_retries_are_capped_per_cluster() {
    let bad = Backend::start_forced("bad", "/status/503");
    let admin = free_port();
    // Long back-offs keep retries in progress while the others fail.
    let policy = "                  retry_policy: { retry_on: 5xx, num_retries: 3, retry_back_off: { base_interval: 0.3s, max_interval: 0.3s } }\n";
    let p = Proxy::start(
        &(admin_block(admin) + &config(policy, &[&bad], None, "")),
        &["--concurrency", "2"],
    );
    let port = p.port;
    let clients: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || send(port, "").status))
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), 503);
    }
    // Settled once every retry the backend saw is counted and some overflowed.
    let stats = admin_until(admin, "/stats?filter=retry", |s| {
        stat(s, "cluster.pool.upstream_rq_retry") + 10 == bad.seen().len() as u64
            && stat(s, "cluster.pool.upstream_rq_retry_overflow") > 0
    });
    let overflow = stat(&stats, "cluster.pool.upstream_rq_retry_overflow");
    let retried = stat(&stats, "cluster.pool.upstream_rq_retry");
    // At most 3 retries run at once (Envoy's default max_retries): with ten
    // requests failing together, most cannot retry at first.
    assert!(overflow > 0, "{stats}");
    assert!(retried < 30, "{stats}");
    assert_eq!(bad.seen().len() as u64, 10 + retried);
}

#[test]
fn a_client_that_leaves_gets_no_more_attempts() {
    let bad = Backend::start_forced("bad", "/status/503");
    let policy = "                  retry_policy: { retry_on: 5xx, num_retries: 5, retry_back_off: { base_interval: 0.2s, max_interval: 0.2s } }\n";
    let p = Proxy::start(&config(policy, &[&bad], None, ""), &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    std::io::Write::write_all(&mut s, b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n").expect("write");
    // Gone before the first back-off can end (a back-off may be ~0 ms, so
    // waiting here would let a second attempt through by chance).
    drop(s);
    // Six attempts would take about a second of back-offs; give it that.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        bad.seen().len() <= 2,
        "{} attempts for a client that left",
        bad.seen().len()
    );
}
