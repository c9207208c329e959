//! Stats and the admin API, black-box: exact counters under load at
//! `--concurrency 2`, every endpoint's format, Prometheus through a real
//! parser, readiness, run-time log levels and the state mutations.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A proxy with an admin API; `{admin}` in the config is its port.
struct Admined {
    proxy: Proxy,
    admin: u16,
}

fn start(config: &str, args: &[&str]) -> Admined {
    let admin = free_port();
    let config = format!("{}{config}", admin_block(admin));
    let mut proxy = Proxy::start(&config, args);
    let log = proxy.log.clone();
    wait_for_port(admin, &mut proxy.child, &log);
    Admined { proxy, admin }
}

fn admin(port: u16, method: &str, path: &str) -> (u16, String) {
    admin_request(port, method, path)
}

fn get_ok(port: u16, path: &str) -> String {
    let (status, body) = admin(port, "GET", path);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// `/stats?format=json` as name → value.
fn stats(port: u16) -> std::collections::HashMap<String, u64> {
    let v: serde_json::Value =
        serde_json::from_str(&get_ok(port, "/stats?format=json")).expect("json");
    v["stats"]
        .as_array()
        .expect("stats array")
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_u64()?)))
        .collect()
}

fn config_with(backend: &Backend) -> String {
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
              - match: { prefix: "/api" }
                route: { cluster: backend }
              - match: { prefix: "/delay" }
                route: { cluster: backend }
              - match: { prefix: "/status" }
                route: { cluster: backend }
"#;
    http_config(routes, &static_cluster("backend", &[(backend, 1)], ""))
}

#[test]
fn counters_equal_what_clients_sent_and_received() {
    let backend = Backend::start("b");
    let p = start(&config_with(&backend), &["--concurrency", "2"]);
    let per_connection: Vec<&str> = std::iter::repeat_n("/api/x", 10)
        .chain(std::iter::repeat_n("/direct", 3))
        .chain(std::iter::repeat_n("/nothing", 2))
        .chain(["/status/503"])
        .collect();
    let connections = 6;
    let (mut sent, mut received) = (0u64, 0u64);
    for _ in 0..connections {
        let mut s = TcpStream::connect(("127.0.0.1", p.proxy.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut raw = String::new();
        for (i, path) in per_connection.iter().enumerate() {
            let close = if i + 1 == per_connection.len() {
                "connection: close\r\n"
            } else {
                ""
            };
            raw.push_str(&format!("GET {path} HTTP/1.1\r\nhost: a\r\n{close}\r\n"));
        }
        s.write_all(raw.as_bytes()).expect("write");
        sent += raw.len() as u64;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("read");
        received += answer.len() as u64;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(text.matches("HTTP/1.1 ").count(), per_connection.len());
    }
    // Closing connections flush their byte counts; wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = stats(p.admin);
        if s["http.ingress_http.downstream_cx_active"] == 0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = connections * per_connection.len() as u64;
    // Start-up's readiness probe was one more connection (with no bytes).
    let accepted = connections + 1;
    let expect = [
        ("http.ingress_http.downstream_cx_total", accepted),
        ("http.ingress_http.downstream_cx_active", 0),
        ("http.ingress_http.downstream_rq_total", total),
        ("http.ingress_http.downstream_rq_completed", total),
        ("http.ingress_http.downstream_rq_active", 0),
        ("http.ingress_http.downstream_rq_2xx", connections * 13),
        ("http.ingress_http.downstream_rq_4xx", connections * 2),
        ("http.ingress_http.downstream_rq_5xx", connections),
        ("http.ingress_http.no_route", connections * 2),
        ("http.ingress_http.rq_direct_response", connections * 3),
        ("http.ingress_http.downstream_cx_rx_bytes_total", sent),
        ("http.ingress_http.downstream_cx_tx_bytes_total", received),
        (
            &format!("listener.127.0.0.1_{}.downstream_cx_total", p.proxy.port),
            accepted,
        ),
        ("cluster.backend.upstream_rq_total", connections * 11),
        ("cluster.backend.upstream_rq_completed", connections * 11),
        ("cluster.backend.upstream_rq_200", connections * 10),
        ("cluster.backend.upstream_rq_2xx", connections * 10),
        ("cluster.backend.upstream_rq_503", connections),
        ("cluster.backend.upstream_rq_5xx", connections),
        ("cluster.backend.upstream_rq_active", 0),
        ("cluster.backend.membership_total", 1),
        ("cluster_manager.active_clusters", 1),
        ("server.concurrency", 2),
        ("server.live", 1),
    ];
    for (name, value) in expect {
        assert_eq!(s.get(name), Some(&value), "{name}");
    }
    // Every upstream connection the backend saw was counted.
    assert_eq!(
        s["cluster.backend.upstream_cx_total"],
        backend.connection_count() as u64
    );

    // The same numbers through a real Prometheus parser.
    let text = get_ok(p.admin, "/stats/prometheus");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus exposition");
    let find = |metric: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
            .map(|s| s.value.clone())
    };
    let counter = |v: Option<prometheus_parse::Value>| match v {
        Some(prometheus_parse::Value::Counter(n)) => n,
        other => panic!("expected a counter, got {other:?}"),
    };
    assert_eq!(
        counter(find(
            "envoy_cluster_upstream_rq",
            ("envoy_response_code", "200")
        )),
        (connections * 10) as f64
    );
    let class2 = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "envoy_http_downstream_rq_xx"
                && s.labels.get("envoy_response_code_class") == Some("2")
                && s.labels.get("envoy_http_conn_manager_prefix") == Some("ingress_http")
        })
        .expect("downstream 2xx series");
    assert_eq!(
        counter(Some(class2.value.clone())),
        (connections * 13) as f64
    );
    let histogram = find(
        "envoy_http_downstream_rq_time",
        ("envoy_http_conn_manager_prefix", "ingress_http"),
    );
    match histogram {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let inf = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(inf, total as f64, "every request timed: {buckets:?}");
        }
        other => panic!("expected a histogram, got {other:?}"),
    }

    // Text format: histograms with interval and cumulative percentiles.
    let text = get_ok(p.admin, "/stats?filter=downstream_rq_time%24");
    assert!(
        text.starts_with("http.ingress_http.downstream_rq_time: P0(") && text.contains(" P99.9("),
        "{text}"
    );
}

#[test]
fn admin_endpoints_answer_in_envoy_formats() {
    let backend = Backend::start("b");
    let p = start(&config_with(&backend), &["--concurrency", "1"]);
    assert_eq!(get(p.proxy.port, "a", "/api/1").status, 200);
    let help = get_ok(p.admin, "/help");
    assert!(help.starts_with("admin commands are:\n") && help.contains("  /stats: "));
    assert_eq!(get_ok(p.admin, "/"), help);

    let host = format!("backend::127.0.0.1:{}", backend.port());
    let settled = format!("{host}::rq_active::0");
    let clusters = admin_until(p.admin, "/clusters", |c| c.lines().any(|l| l == settled));
    for line in [
        "backend::default_priority::max_connections::1024".to_string(),
        "backend::added_via_api::false".to_string(),
        format!("{host}::cx_total::1"),
        format!("{host}::cx_active::1"),
        format!("{host}::rq_total::1"),
        format!("{host}::rq_success::1"),
        format!("{host}::rq_error::0"),
        format!("{host}::rq_active::0"),
        format!("{host}::cx_connect_fail::0"),
        // A bare STATIC address has no host name (as in Envoy).
        format!("{host}::hostname::"),
        format!("{host}::health_flags::healthy"),
        format!("{host}::weight::1"),
    ] {
        assert!(clusters.lines().any(|l| l == line), "{line} in\n{clusters}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/clusters?format=json")).expect("json");
    let status = &json["cluster_statuses"][0];
    assert_eq!(status["name"], "backend");
    assert_eq!(
        status["host_statuses"][0]["address"]["socket_address"]["port_value"],
        backend.port()
    );
    assert_eq!(
        status["host_statuses"][0]["health_status"]["eds_health_status"],
        "HEALTHY"
    );

    let listeners = get_ok(p.admin, "/listeners");
    assert_eq!(listeners, format!("test::127.0.0.1:{}\n", p.proxy.port));
    let json: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/listeners?format=json")).expect("json");
    assert_eq!(
        json["listener_statuses"][0]["local_address"]["socket_address"]["port_value"],
        p.proxy.port
    );

    let dump: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/config_dump")).expect("json");
    let types: Vec<&str> = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["@type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ]
    );
    assert_eq!(
        dump["configs"][1]["static_clusters"][0]["cluster"]["name"],
        "backend"
    );
    assert_eq!(
        dump["configs"][3]["static_route_configs"][0]["route_config"]["name"],
        "local_route"
    );
    let one: serde_json::Value = serde_json::from_str(&get_ok(
        p.admin,
        "/config_dump?resource=static_clusters&mask=cluster.name",
    ))
    .expect("json");
    assert_eq!(
        one,
        serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster",
            "cluster": {"name": "backend"},
        }]})
    );

    let info: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/server_info")).expect("json");
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 1);
    assert!(info["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("ringway/")));
    let memory: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/memory")).expect("json");
    let allocated: u64 = memory["allocated"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("allocated");
    assert!(allocated > 0);

    let filtered = get_ok(
        p.admin,
        "/stats?filter=%5Ecluster%5C.backend%5C.upstream_rq_2",
    );
    assert_eq!(
        filtered,
        "cluster.backend.upstream_rq_200: 1\ncluster.backend.upstream_rq_2xx: 1\n"
    );
    let used = get_ok(p.admin, "/stats?usedonly");
    assert!(!used.lines().any(|l| l.ends_with(": 0")), "{used}");
    assert!(used.contains("http.ingress_http.downstream_rq_total: 1\n"));
    assert_eq!(admin(p.admin, "GET", "/stats?filter=(").0, 400);
    let (status, body) = admin(p.admin, "GET", "/nope");
    assert_eq!(status, 404);
    assert!(body.starts_with("invalid path. admin commands are:"));
    for mutation in [
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/drain_listeners",
        "/quitquitquit",
        "/reset_counters",
        "/logging",
    ] {
        let (status, body) = admin(p.admin, "GET", mutation);
        assert_eq!(status, 405, "{mutation}");
        assert_eq!(body, "Method GET not allowed, POST required.");
    }
    // Nothing above changed the server.
    assert_eq!(get_ok(p.admin, "/ready"), "LIVE\n");
}

#[test]
fn reset_counters_zeroes_counters_but_not_gauges() {
    let backend = Backend::start("b");
    let p = start(&config_with(&backend), &["--concurrency", "2"]);
    for _ in 0..3 {
        assert_eq!(get(p.proxy.port, "a", "/api/1").status, 200);
    }
    assert_eq!(stats(p.admin)["cluster.backend.upstream_rq_total"], 3);
    assert_eq!(
        admin(p.admin, "POST", "/reset_counters"),
        (200, "OK\n".into())
    );
    let s = stats(p.admin);
    assert_eq!(s["cluster.backend.upstream_rq_total"], 0);
    assert_eq!(s["cluster.backend.membership_total"], 1);
    assert_eq!(get(p.proxy.port, "a", "/api/1").status, 200);
    assert_eq!(stats(p.admin)["cluster.backend.upstream_rq_total"], 1);
}

#[test]
fn ready_follows_healthcheck_and_drain() {
    let backend = Backend::start("b");
    let mut p = start(&config_with(&backend), &["--concurrency", "2"]);
    assert_eq!(admin(p.admin, "GET", "/ready"), (200, "LIVE\n".into()));
    assert_eq!(admin(p.admin, "POST", "/healthcheck/fail").0, 200);
    assert_eq!(admin(p.admin, "GET", "/ready").0, 503);
    assert_eq!(admin(p.admin, "POST", "/healthcheck/ok").0, 200);
    assert_eq!(admin(p.admin, "GET", "/ready"), (200, "LIVE\n".into()));

    let port = p.proxy.port;
    let slow = std::thread::spawn(move || get(port, "a", "/delay/1500").status);
    std::thread::sleep(Duration::from_millis(300));
    p.proxy.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(admin(p.admin, "GET", "/ready"), (503, "DRAINING\n".into()));
    let info: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/server_info")).expect("json");
    assert_eq!(info["state"], "DRAINING");
    assert_eq!(slow.join().expect("slow request"), 200);
    assert_eq!(p.proxy.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn log_levels_change_at_run_time() {
    let backend = Backend::start("b");
    let p = start(&config_with(&backend), &["-l", "info"]);
    assert_eq!(get(p.proxy.port, "a", "/direct").status, 200);
    assert!(!p.proxy.log_text().contains("accepted connection from"));
    let (status, body) = admin(p.admin, "POST", "/logging?main=debug");
    assert_eq!(status, 200);
    assert!(body.starts_with("active loggers:\n") && body.contains("  main: debug\n"));
    assert!(body.contains("  http: info\n"), "{body}");
    assert_eq!(get(p.proxy.port, "a", "/direct").status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.proxy.log_text().contains("accepted connection from") {
        assert!(Instant::now() < deadline, "{}", p.proxy.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, body) = admin(p.admin, "POST", "/logging?level=warning");
    assert!(body.contains("  main: warning\n") && body.contains("  http: warning\n"));
    assert_eq!(admin(p.admin, "POST", "/logging?nosuch=debug").0, 404);
    assert_eq!(admin(p.admin, "POST", "/logging?main=loud").0, 404);
}

#[test]
fn drain_listeners_then_quitquitquit() {
    let backend = Backend::start("b");
    let mut p = start(&config_with(&backend), &["--concurrency", "2"]);
    assert_eq!(admin(p.admin, "POST", "/drain_listeners").0, 200);
    assert_eq!(admin(p.admin, "GET", "/ready").0, 503);
    // The listeners close; the admin API and the process stay.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", p.proxy.port)).is_ok() {
        assert!(Instant::now() < deadline, "listener still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.proxy.wait_exit(Duration::from_millis(300)), None);
    assert_eq!(admin(p.admin, "POST", "/quitquitquit").0, 200);
    assert_eq!(p.proxy.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn no_admin_listener_without_admin_in_the_bootstrap() {
    let backend = Backend::start("b");
    let p = Proxy::start(&config_with(&backend), &[]);
    assert_eq!(get(p.port, "a", "/direct").status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.log_text().contains("started with") {
        assert!(Instant::now() < deadline, "{}", p.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!p.log_text().contains("admin address"));
}

#[test]
fn proxy_config_prints_istioctl_style_tables() {
    let backend = Backend::start("b");
    let p = start(&config_with(&backend), &["--concurrency", "1"]);
    let admin = format!("127.0.0.1:{}", p.admin);
    let run = |what: &str| {
        let out = std::process::Command::new(binary())
            .args(["proxy-config", what, "--admin", &admin])
            .output()
            .expect("proxy-config");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let listeners = run("listeners");
    let lines: Vec<&str> = listeners.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "ADDRESS", "PORT", "MATCH", "DESTINATION"]
    );
    assert_eq!(
        words(lines[1]),
        [
            "test",
            "127.0.0.1",
            &p.proxy.port.to_string(),
            "ALL",
            "Route:",
            "local_route"
        ]
    );
    // Columns line up: every row starts its second column where the header does.
    let column = lines[0].find("ADDRESS").expect("header");
    assert_eq!(lines[1].find("127.0.0.1"), Some(column));

    let routes = run("routes");
    assert!(
        routes
            .lines()
            .any(|l| words(l) == ["local_route", "all", "*", "/api*", "cluster:", "backend"]),
        "{routes}"
    );
    assert!(routes.lines().any(|l| words(l)
        == [
            "local_route",
            "all",
            "*",
            "/direct*",
            "direct_response:",
            "200"
        ]));
    let clusters = run("clusters");
    assert_eq!(
        words(clusters.lines().nth(1).unwrap_or_default()),
        ["backend", "STATIC", "ROUND_ROBIN", "1", "1s"]
    );
    let endpoints = run("endpoints");
    assert_eq!(
        words(endpoints.lines().nth(1).unwrap_or_default()),
        [
            &format!("127.0.0.1:{}", backend.port()),
            "HEALTHY",
            "OK",
            "1",
            "backend"
        ]
    );
    let dump: serde_json::Value = serde_json::from_str(&run("dump")).expect("json");
    assert!(dump["configs"].is_array());

    let out = std::process::Command::new(binary())
        .args(["proxy-config", "routes", "--admin", "127.0.0.1:1"])
        .output()
        .expect("proxy-config");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API"));
}

#[test]
fn clusters_show_endpoint_hostname_and_locality() {
    let backend = Backend::start("b");
    let cluster = format!(
        "  - name: zoned\n    type: STATIC\n    load_assignment:\n      cluster_name: zoned\n      endpoints:\n      - locality: {{ region: eu-west-1, zone: eu-west-1a }}\n        lb_endpoints:\n        - endpoint:\n            hostname: api.internal\n            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}\n",
        backend.port()
    );
    let p = start(
        &http_config(&catch_all("zoned", ", auto_host_rewrite: true"), &cluster),
        &[],
    );
    let host = format!("zoned::127.0.0.1:{}", backend.port());
    let clusters = get_ok(p.admin, "/clusters");
    for line in [
        format!("{host}::hostname::api.internal"),
        format!("{host}::region::eu-west-1"),
        format!("{host}::zone::eu-west-1a"),
        format!("{host}::sub_zone::"),
    ] {
        assert!(clusters.lines().any(|l| l == line), "{line} in\n{clusters}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&get_ok(p.admin, "/clusters?format=json")).expect("json");
    assert_eq!(
        json["cluster_statuses"][0]["host_statuses"][0]["locality"],
        serde_json::json!({"region": "eu-west-1", "zone": "eu-west-1a"})
    );
    // A configured hostname is what auto_host_rewrite uses, whatever the
    // cluster type.
    assert_eq!(get(p.proxy.port, "front", "/").status, 200);
    let seen = backend.seen();
    assert_eq!(
        seen.last().and_then(|s| s.header("host")),
        Some("api.internal")
    );
}

/// Idle, slow-drip and non-reading admin clients, many at once, never
/// delay a readiness probe or `/quitquitquit` past 100 ms.
#[test]
fn misbehaving_admin_clients_do_not_block_probes() {
    let backend = Backend::start("b");
    let mut a = start(&config_with(&backend), &["--concurrency", "1"]);
    let connect = || TcpStream::connect(("127.0.0.1", a.admin)).expect("admin connect");
    // Silent connections, and ones that stop half-way through a head.
    let mut held: Vec<TcpStream> = (0..200).map(|_| connect()).collect();
    for _ in 0..20 {
        let mut s = connect();
        s.write_all(b"GET /stats HTTP/1.1\r\nhost: a")
            .expect("write");
        held.push(s);
    }
    // Clients that ask for the largest reply and never read it.
    for _ in 0..20 {
        let mut s = connect();
        s.write_all(b"GET /stats?format=json HTTP/1.1\r\nhost: a\r\n\r\n")
            .expect("write");
        held.push(s);
    }
    let timed = |path: &str, method: &str| {
        let started = Instant::now();
        let (status, body) = admin(a.admin, method, path);
        (status, body, started.elapsed())
    };
    for _ in 0..5 {
        let (status, body, took) = timed("/ready", "GET");
        assert_eq!((status, body.as_str()), (200, "LIVE\n"));
        assert!(took < Duration::from_millis(100), "/ready took {took:?}");
    }
    let (status, _, took) = timed("/quitquitquit", "POST");
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(100),
        "/quitquitquit took {took:?}"
    );
    assert_eq!(a.proxy.wait_exit(Duration::from_secs(10)), Some(0));
    drop(held);
}

/// A request head that trickles in is cut off at the read deadline.
#[test]
fn slow_admin_request_is_cut_off() {
    let backend = Backend::start("b");
    let a = start(&config_with(&backend), &["--concurrency", "1"]);
    let mut s = TcpStream::connect(("127.0.0.1", a.admin)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let started = Instant::now();
    let mut reply = Vec::new();
    // One byte a second: each read times out, the whole head never arrives.
    while started.elapsed() < Duration::from_secs(9) {
        if s.write_all(b"G").is_err() {
            break;
        }
        let mut byte = [0u8; 512];
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&byte[..n]),
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "{reply:?}"
    );
    assert!(took < Duration::from_secs(7), "{took:?}");
}

/// `/server_info`'s `node` shows the bootstrap's identity, locality,
/// metadata and user agent name as Envoy 1.40 shows them.
#[test]
fn server_info_node_matches_envoy() {
    let config = format!(
        "{}node:\n  id: sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local\n  cluster: reviews.ns\n  locality: {{ region: eu-west1, zone: eu-west1-b, sub_zone: rack-7 }}\n  metadata: {{ ISTIO_VERSION: \"1.24\", LABELS: {{ app: reviews, version: v2 }}, INTERCEPTION_MODE: REDIRECT }}\n  user_agent_name: sidecar\n  user_agent_version: \"0.1\"\n{}",
        oracle::with_admin(""),
        http_config(
            "            - name: all\n              domains: [\"*\"]\n              routes: [ { match: { prefix: \"/\" }, direct_response: { status: 200 } } ]\n",
            "    []"
        )
    );
    let Some(pair) = oracle::Pair::start("server_info node", &config, Vec::new()) else {
        return;
    };
    let node = |admin: u16| {
        let info: serde_json::Value =
            serde_json::from_str(&get_ok(admin, "/server_info")).expect("json");
        let keys = ["id", "cluster", "locality", "metadata", "user_agent_name"];
        let picked: serde_json::Map<_, _> = keys
            .iter()
            .map(|k| (k.to_string(), info["node"][k].clone()))
            .collect();
        serde_json::Value::Object(picked)
    };
    let (envoy, ringway) = (node(pair.envoy.admin), node(pair.ringway_admin));
    assert_eq!(envoy, ringway);
    assert_eq!(ringway["metadata"]["LABELS"]["version"], "v2");
}
