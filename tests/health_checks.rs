//! Active health checking against Envoy 1.40 on the same configs and the
//! same upstreams: the flags `/clusters` shows as hosts fail, time out,
//! degrade, ask to be excluded and recover; the `health_check.*` and
//! membership stats; the requests the checks send; routing around a
//! failed host; an upstream Envoy put in `/healthcheck/fail`; and the
//! validation verdicts.

mod common;
use common::oracle::{with_admin, Envoy, Pair};
use common::*;
use std::time::Duration;

/// A `health_checks` block (four-space indent) with `probe` as its
/// checker and `extra` fields.
fn health_checks(probe: &str, extra: &str) -> String {
    format!(
        "    health_checks:\n    - {{ timeout: 0.5s, interval: 0.1s, unhealthy_threshold: 2, healthy_threshold: 2{extra}, {probe} }}\n"
    )
}

/// Every host's `/clusters` health flags, with its cluster and address
/// (both proxies check the same upstreams).
fn flags(body: &str) -> String {
    let mut lines: Vec<&str> = body
        .lines()
        .filter(|l| l.contains("::health_flags::"))
        .collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Waits until Ringway's `/clusters` shows the flags of the host on
/// `port` as `expected`, then for both proxies to agree.
fn until_flags(pair: &Pair, port: u16, expected: &str, what: &str) {
    let line = format!(":{port}::health_flags::{expected}");
    let shown = |body: &str| flags(body).lines().any(|l| l.ends_with(&line));
    admin_until(pair.ringway_admin, "/clusters", shown);
    let (_, clusters) = admin_request(pair.ringway_admin, "GET", "/clusters");
    assert!(shown(&clusters), "{what}: {clusters}");
    pair.assert_same_admin("/clusters", flags);
}

/// Both proxies over `clusters`, every request routed to `cluster`, or
/// None when Envoy is unavailable outside CI.
fn pair(test: &str, cluster: &str, clusters: &str) -> Option<Pair> {
    Pair::start(
        test,
        &with_admin(&http_config(&catch_all(cluster, ""), clusters)),
        Vec::new(),
    )
}

/// Waits until Ringway's `/clusters` shows, cluster by cluster (one host
/// each, in name order), the `expected` flags; then for both proxies to
/// agree.
fn until_cluster_flags(pair: &Pair, expected: &[(&str, &str)]) {
    let shown = |body: &str| {
        flags(body)
            .lines()
            .map(|l| {
                let cluster = l.split("::").next().unwrap_or_default();
                (
                    cluster.to_string(),
                    l.rsplit("::").next().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let matches = |body: &str| {
        shown(body)
            .iter()
            .map(|(c, f)| (c.as_str(), f.as_str()))
            .eq(expected.iter().copied())
    };
    admin_until(pair.ringway_admin, "/clusters", matches);
    let (_, body) = admin_request(pair.ringway_admin, "GET", "/clusters");
    assert!(matches(&body), "{body}");
    pair.assert_same_admin("/clusters", flags);
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

const STATS: &[&str] = &[
    "cluster.c.health_check.attempt",
    "cluster.c.health_check.success",
    "cluster.c.health_check.failure",
    "cluster.c.health_check.network_failure",
    "cluster.c.health_check.passive_failure",
    "cluster.c.health_check.verify_cluster",
    "cluster.c.health_check.healthy",
    "cluster.c.health_check.degraded",
    "cluster.c.membership_total",
    "cluster.c.membership_healthy",
    "cluster.c.membership_degraded",
    "cluster.c.membership_excluded",
];

#[test]
fn a_dead_host_fails_its_check_and_requests_go_around_it_as_in_envoy() {
    let good = Backend::start("good");
    let dead = dead_port();
    // No traffic yet: one check per host, then the 60 s no-traffic wait.
    let cluster = format!(
        "{}{}        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead} }} }} }}\n",
        static_cluster(
            "c",
            &[(&good, 1)],
            &health_checks("http_health_check: { path: /healthz }", ""),
        ),
        ""
    );
    let Some(pair) = pair("a_dead_host_fails_its_check_as_in_envoy", "c", &cluster) else {
        return;
    };
    pair.assert_same_admin("/clusters", flags);
    let (_, clusters) = admin_request(pair.ringway_admin, "GET", "/clusters");
    assert!(flags(&clusters).contains(&format!(
        "127.0.0.1:{dead}::health_flags::/failed_active_hc"
    )));
    pair.assert_same_stats(STATS);
    // Both proxies' checks asked the same: GET /healthz, host: the
    // cluster's name, user-agent Envoy/HC, nothing else.
    let seen = good.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/healthz"));
        let mut headers: Vec<(String, String)> = s
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        headers.sort();
        assert_eq!(
            headers,
            [
                ("host".into(), "c".into()),
                ("user-agent".into(), "Envoy/HC".into())
            ]
        );
    }
    for port in [pair.ringway.port, pair.envoy.port] {
        for _ in 0..6 {
            assert_eq!(get(port, "a", "/").status, 200);
        }
    }
}

#[test]
fn answers_move_the_flags_as_in_envoy() {
    let peer = PortPeer::start(&["python3", "tests/peers/hc_backend.py"]);
    let cluster = checked_cluster(peer.1, ", no_traffic_interval: 0.1s");
    let Some(pair) = pair("answers_move_the_flags_as_in_envoy", "c", &cluster) else {
        return;
    };
    let set = |query: &str| {
        assert_eq!(get(peer.1, "peer", &format!("/set?{query}")).status, 200);
    };
    let mut degraded_once = false;
    for (query, expected) in [
        ("status=200", "healthy"),
        // A status outside expected_statuses fails the host at once.
        ("status=503", "/failed_active_hc"),
        (
            "status=503&immediate=1",
            "/failed_active_hc/excluded_via_immediate_hc_fail",
        ),
        // healthy_threshold successes bring it back, excluded no more.
        ("status=200", "healthy"),
        ("status=200&degraded=1", "/degraded_active_hc"),
        ("status=200", "healthy"),
    ] {
        set(query);
        until_flags(&pair, peer.1, expected, query);
        // Not membership_excluded: Envoy recounts membership only when a
        // host's health changes, and an already failed host that starts
        // asking to be excluded does not. Not health_check.degraded once
        // a host was degraded: Envoy never takes it back down (README,
        // deviations).
        let compared = if degraded_once {
            &STATS[8..11]
        } else {
            &STATS[6..11]
        };
        pair.assert_same_stats(compared);
        degraded_once |= query.contains("degraded");
    }
    let (_, stats) = admin_request(pair.ringway_admin, "GET", "/stats");
    assert!(
        stats.contains("cluster.c.health_check.degraded: 0\n"),
        "{stats}"
    );
    assert!(
        stats.contains("cluster.c.health_check.healthy: 1\n"),
        "{stats}"
    );
}

#[test]
fn tcp_checks_match_payloads_and_time_out_as_in_envoy() {
    let backend = Backend::start("b");
    let dead = dead_port();
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let request = hex("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    let cluster = |name: &str, port: u16, probe: &str| {
        with_cluster_fields(port_cluster(name, port), &health_checks(probe, ""))
    };
    let clusters = [
        cluster(
            "answers",
            backend.port(),
            &format!(
                "tcp_health_check: {{ send: {{ text: '{request}' }}, receive: [{{ text: '{}' }}, {{ text: '{}' }}] }}",
                hex("HTTP/1.1"),
                hex("200")
            ),
        ),
        cluster(
            "wrong_answer",
            backend.port(),
            &format!(
                "tcp_health_check: {{ send: {{ text: '{request}' }}, receive: [{{ text: '{}' }}] }}",
                hex("HTTP/1.1 404")
            ),
        ),
        cluster("connects", backend.port(), "tcp_health_check: {}"),
        cluster("refused", dead, "tcp_health_check: {}"),
    ]
    .concat();
    let Some(pair) = pair(
        "tcp_checks_match_payloads_and_time_out_as_in_envoy",
        "answers",
        &clusters,
    ) else {
        return;
    };
    pair.assert_same_admin("/clusters", flags);
    let (_, body) = admin_request(pair.ringway_admin, "GET", "/clusters");
    let shown = flags(&body);
    for expected in ["answers::", "connects::", "refused::", "wrong_answer::"] {
        assert!(shown.contains(expected), "{shown}");
    }
    assert!(
        shown.contains("::health_flags::/failed_active_hc/active_hc_timeout"),
        "{shown}"
    );
}

/// An upstream proxy, Envoy or Ringway, whose health-check filter fails
/// its checks after `/healthcheck/fail`: the checkers of both proxies
/// exclude it at once, and take it back after `/healthcheck/ok`.
#[test]
fn an_upstream_in_healthcheck_fail_is_excluded_at_once() {
    let Some(bin) = common::oracle::envoy_or_skip("an_upstream_in_healthcheck_fail") else {
        return;
    };
    let config = upstream_config();
    let envoy = Envoy::start(&bin, &config);
    let ringway_admin = free_port();
    let ringway = Proxy::start(
        &config.replace("{admin}", &ringway_admin.to_string()),
        &["--concurrency", "1"],
    );
    for (port, admin) in [(envoy.port, envoy.admin), (ringway.port, ringway_admin)] {
        let cluster = checked_cluster(port, ", no_traffic_interval: 0.1s");
        let Some(pair) = pair(
            "an_upstream_in_healthcheck_fail_is_excluded_at_once",
            "c",
            &cluster,
        ) else {
            return;
        };
        pair.assert_same_admin("/clusters", flags);
        for (command, expected) in [
            (
                "/healthcheck/fail",
                "/failed_active_hc/excluded_via_immediate_hc_fail",
            ),
            ("/healthcheck/ok", "healthy"),
        ] {
            assert_eq!(admin_request(admin, "POST", command).0, 200);
            until_flags(&pair, port, expected, command);
        }
    }
}

/// An upstream proxy's config: its health_check filter answers /healthz
/// itself; once its admin's /healthcheck/fail is called, /healthz answers
/// 503 and every response carries x-envoy-immediate-health-check-fail.
fn upstream_config() -> String {
    let hcm = direct_response_filter("up", "hi").replace(
        "          http_filters:\n",
        "          http_filters:\n          - name: envoy.filters.http.health_check\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck\n              pass_through_mode: false\n              headers: [{ name: ':path', string_match: { exact: /healthz } }]\n",
    );
    with_admin(&format!(
        "static_resources:\n  listeners:\n  - name: up\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}\n    filter_chains:\n    - filters:\n{hcm}"
    ))
}

/// Cluster `c` on `port` with an HTTP check of /healthz and `extra`
/// fields.
fn checked_cluster(port: u16, extra: &str) -> String {
    with_cluster_fields(
        port_cluster("c", port),
        &health_checks("http_health_check: { path: /healthz }", extra),
    )
}

/// `cluster` (as `port_cluster` makes it) with `fields` (four-space
/// indent) added.
fn with_cluster_fields(cluster: String, fields: &str) -> String {
    cluster.replacen(
        "    load_assignment:",
        &format!("{fields}    load_assignment:"),
        1,
    )
}

#[test]
fn a_proxied_answer_asking_to_fail_checks_fails_the_host_at_once_as_in_envoy() {
    let Some(bin) = common::oracle::envoy_or_skip("a_proxied_answer_asking_to_fail_checks") else {
        return;
    };
    let upstream = Envoy::start(&bin, &upstream_config());
    // Checks far apart: only the proxied answer can fail the host.
    let cluster = checked_cluster(upstream.port, "")
        .replace("interval: 0.1s", "interval: 60s, no_traffic_interval: 60s");
    let Some(pair) = pair(
        "a_proxied_answer_asking_to_fail_checks_fails_the_host_at_once_as_in_envoy",
        "c",
        &cluster,
    ) else {
        return;
    };
    until_flags(&pair, upstream.port, "healthy", "start");
    assert_eq!(
        admin_request(upstream.admin, "POST", "/healthcheck/fail").0,
        200
    );
    for port in [pair.ringway.port, pair.envoy.port] {
        let r = get(port, "a", "/");
        assert_eq!(r.status, 200);
        assert!(r.header("x-envoy-immediate-health-check-fail").is_some());
    }
    until_flags(
        &pair,
        upstream.port,
        "/failed_active_hc/excluded_via_immediate_hc_fail",
        "after a proxied answer",
    );
    pair.assert_same_stats(&STATS[..8]);
}

#[test]
fn health_check_fields_validate_as_in_envoy() {
    let Some(bin) = common::oracle::envoy_or_skip("health_check_fields_validate_as_in_envoy")
    else {
        return;
    };
    let backend = Backend::start("b");
    let base = "timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1";
    for (check, valid) in [
        (format!("{{ {base}, http_health_check: {{ path: /h }} }}"), true),
        (
            format!("{{ {base}, http_health_check: {{ path: /h, expected_statuses: [{{ start: 200, end: 200 }}] }} }}"),
            false,
        ),
        (
            format!("{{ {base}, http_health_check: {{ path: /h, retriable_statuses: [{{ start: 99, end: 200 }}] }} }}"),
            false,
        ),
        (
            format!("{{ {base}, http_health_check: {{ path: /h, method: CONNECT }} }}"),
            false,
        ),
        (format!("{{ {base}, http_health_check: {{ path: '' }} }}"), false),
        (format!("{{ {base}, tcp_health_check: {{ send: {{ text: zz }} }} }}"), false),
        (format!("{{ {base}, tcp_health_check: {{}}, no_traffic_interval: 0s }}"), false),
        (
            "{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, tcp_health_check: {} }".into(),
            false,
        ),
        (
            "{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }".into(),
            false,
        ),
        (
            format!("{{ {base}, http_health_check: {{ path: /h, receive: [{{ text: '6f6b' }}], response_buffer_size: 1 }} }}"),
            false,
        ),
        // A gRPC check on a cluster that speaks HTTP/1.1 only.
        (format!("{{ {base}, grpc_health_check: {{ service_name: s }} }}"), false),
        (
            format!("{{ {base}, http_health_check: {{ path: /h, codec_client_type: HTTP2, service_name_matcher: {{ prefix: c }} }} }}"),
            true,
        ),
    ] {
        let cluster = static_cluster(
            "c",
            &[(&backend, 1)],
            &format!("    health_checks: [{check}]\n"),
        );
        let config = http_config(&catch_all("c", ""), &cluster).replace("{port}", "0");
        let (envoy_ok, envoy_says) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_says) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{check}: {envoy_says}");
        assert_eq!(ringway_ok, valid, "{check}: {ringway_says}");
    }
}

#[test]
fn a_healthy_host_is_checked_less_often_until_the_cluster_has_traffic() {
    // Envoy's documented intervals: until the cluster opens a connection
    // for traffic, a healthy host waits `no_traffic_healthy_interval`
    // between checks; after, `interval`.
    let backend = Backend::start("b");
    let cluster = static_cluster(
        "c",
        &[(&backend, 1)],
        &health_checks(
            "http_health_check: { path: /healthz }",
            ", no_traffic_interval: 0.1s, no_traffic_healthy_interval: 0.5s",
        ),
    );
    let admin = free_port();
    let config = format!(
        "{}{}",
        admin_block(admin),
        http_config(&catch_all("c", ""), &cluster)
    );
    let proxy = Proxy::start(&config, &[]);
    let checks = || {
        backend
            .seen()
            .iter()
            .filter(|s| s.path == "/healthz")
            .count()
    };
    let in_a_second = || {
        let before = checks();
        std::thread::sleep(Duration::from_secs(1));
        checks() - before
    };
    let quiet = in_a_second();
    assert!((1..=3).contains(&quiet), "{quiet} checks in a quiet second");
    assert_eq!(get(proxy.port, "a", "/").status, 200);
    std::thread::sleep(Duration::from_millis(600));
    let busy = in_a_second();
    // 0.1 s apart: about ten, allowing a slow machine.
    assert!(
        (6..=12).contains(&busy),
        "{busy} checks in a second after traffic"
    );
}

#[test]
fn grpc_and_http2_checks_judge_grpcios_health_service_as_envoy_does() {
    if !tool_or_skip(
        "grpc_and_http2_checks",
        &["python3", "-c", "import grpc_health.v1.health"],
    ) {
        return;
    }
    let peer = PortPeer::start(&["python3", "tests/peers/grpc_peer.py", "health"]);
    let cluster = |name: &str, probe: &str| {
        with_cluster_fields(
            port_cluster(name, peer.1),
            &format!(
                "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http2_protocol_options: {{}} }}\n{}",
                // Python answers slower than the other peers under a
                // loaded test run.
                health_checks(probe, "").replace("timeout: 0.5s", "timeout: 3s")
            ),
        )
    };
    let clusters = [
        cluster("whole_server", "grpc_health_check: {}"),
        cluster(
            "serving",
            "grpc_health_check: { service_name: up, authority: svc.local }",
        ),
        cluster("not_serving", "grpc_health_check: { service_name: down }"),
        cluster(
            "unknown_service",
            "grpc_health_check: { service_name: nope }",
        ),
        // grpcio answers an unknown method with HTTP 200 (and a gRPC
        // error in the trailers): healthy to an HTTP check.
        cluster(
            "http2",
            "http_health_check: { path: /anything, codec_client_type: HTTP2 }",
        ),
    ]
    .concat();
    let Some(pair) = pair(
        "grpc_and_http2_checks_judge_grpcios_health_service_as_envoy_does",
        "serving",
        &clusters,
    ) else {
        return;
    };
    let expected = [
        ("http2", "healthy"),
        ("not_serving", "/failed_active_hc"),
        ("serving", "healthy"),
        ("unknown_service", "/failed_active_hc"),
        ("whole_server", "healthy"),
    ];
    until_cluster_flags(&pair, &expected);
}

#[test]
fn the_event_log_says_what_envoys_says() {
    let peer = PortPeer::start(&["python3", "tests/peers/hc_backend.py"]);
    let dead = dead_port();
    let cluster = format!(
        "{}        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead} }} }} }}\n",
        checked_cluster(peer.1, ", no_traffic_interval: 0.1s, event_log_path: '{log}'")
    );
    let Some(pair) = pair("the_event_log_says_what_envoys_says", "c", &cluster) else {
        return;
    };
    let set = |query: &str| {
        assert_eq!(get(peer.1, "peer", &format!("/set?{query}")).status, 200);
    };
    until_flags(&pair, peer.1, "healthy", "start");
    for (query, expected) in [
        ("status=503", "/failed_active_hc"),
        ("status=200&degraded=1", "/degraded_active_hc"),
        ("status=200", "healthy"),
    ] {
        set(query);
        until_flags(&pair, peer.1, expected, query);
    }
    // Each host's events in order, timestamps left out (once all six are
    // written: the flags can show before a log line is).
    let events = |path: &std::path::Path| -> Vec<String> {
        let mut lines: Vec<String> = log_lines(path, 6)
            .lines()
            .map(|l| {
                let at = l.find("\"timestamp\":\"").map_or(0, |i| i + 13);
                let end = l[at..].find('"').map_or(at, |e| at + e);
                format!("{}<time>{}", &l[..at], &l[end..])
            })
            .collect();
        lines.sort_by_key(|l| l.contains(&format!("\"port_value\":{dead},")));
        lines
    };
    let (ringway, envoy) = (events(&pair.logs.0), events(&pair.logs.1));
    assert_eq!(
        ringway,
        envoy,
        "--- ringway\n{}\n--- envoy\n{}",
        ringway.join("\n"),
        envoy.join("\n")
    );
    assert_eq!(ringway.len(), 6, "{}", ringway.join("\n"));
}

#[test]
fn checks_speak_the_clusters_tls_as_envoys_do() {
    if !tool_or_skip("health checks over TLS", &["nginx", "-v"]) {
        return;
    }
    let certs = common::tls::Certs::generate();
    let nginx = common::tls::NginxTls::start(&certs, "b", false);
    let tls_cluster = |name: &str, tls_extra: &str| {
        format!(
            "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n{tls_extra}        common_tls_context:\n          validation_context: {{ trusted_ca: {{ filename: {} }} }}\n",
            with_cluster_fields(
                port_cluster(name, nginx.port),
                &health_checks("http_health_check: { path: / }", ""),
            ),
            certs.path("ca.crt"),
        )
    };
    let clusters = [
        tls_cluster("trusted", "        sni: b.example.com\n"),
        // The certificate does not name what the check asks for: the
        // handshake fails, a network failure.
        tls_cluster(
            "wrong_name",
            "        sni: other.example.com\n        auto_sni_san_validation: true\n",
        ),
    ]
    .concat();
    let Some(pair) = pair(
        "checks_speak_the_clusters_tls_as_envoys_do",
        "trusted",
        &clusters,
    ) else {
        return;
    };
    until_cluster_flags(
        &pair,
        &[("trusted", "healthy"), ("wrong_name", "/failed_active_hc")],
    );
    assert_eq!(get(pair.ringway.port, "b.example.com", "/").status, 200);
}

#[test]
fn a_passed_check_ends_an_outlier_ejection_as_in_envoy() {
    // The host answers 503 to proxied requests (ejected after one) and
    // 200 to its checks: with successful_active_health_check_uneject_host
    // (the default) the next passed check ends the ejection; without it
    // the ejection lasts its base_ejection_time.
    let backend = Backend::start("b");
    let cluster = |name: &str, uneject: &str| {
        with_cluster_fields(
            port_cluster(name, backend.port()),
            &format!(
                "    outlier_detection: {{ consecutive_5xx: 1, base_ejection_time: 60s, max_ejection_percent: 100{uneject} }}\n{}",
                health_checks(
                    "http_health_check: { path: /healthz }",
                    ", no_traffic_interval: 0.1s"
                )
            ),
        )
    };
    let clusters = [
        cluster("unejected", ""),
        cluster(
            "stays",
            ", successful_active_health_check_uneject_host: false",
        ),
    ]
    .concat();
    let route = |prefix: &str, cluster: &str| {
        format!("              - match: {{ prefix: \"/{prefix}\" }}\n                route: {{ cluster: {cluster}, prefix_rewrite: /status/503 }}\n")
    };
    let routes = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{}{}",
        route("u", "unejected"),
        route("s", "stays"),
    );
    let Some(pair) = Pair::start(
        "a_passed_check_ends_an_outlier_ejection_as_in_envoy",
        &with_admin(&http_config(&routes, &clusters)),
        Vec::new(),
    ) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        assert_eq!(get(port, "a", "/u").status, 503);
        assert_eq!(get(port, "a", "/s").status, 503);
    }
    let stats = [
        "cluster.unejected.outlier_detection.ejections_total",
        "cluster.unejected.outlier_detection.ejections_active",
        "cluster.stays.outlier_detection.ejections_total",
        "cluster.stays.outlier_detection.ejections_active",
    ];
    admin_until(pair.ringway_admin, "/stats", |body| {
        body.contains("cluster.unejected.outlier_detection.ejections_active: 0")
            && body.contains("cluster.stays.outlier_detection.ejections_active: 1")
    });
    pair.assert_same_stats(&stats);
    let (_, body) = admin_request(pair.ringway_admin, "GET", "/stats");
    for expected in [
        "cluster.unejected.outlier_detection.ejections_total: 1",
        "cluster.unejected.outlier_detection.ejections_active: 0",
        "cluster.stays.outlier_detection.ejections_active: 1",
    ] {
        assert!(body.contains(expected), "{expected}\n{body}");
    }
}
