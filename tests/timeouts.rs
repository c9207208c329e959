//! Timeouts, black-box: connection idle, stream idle (HCM and route),
//! request timeout, and the timeout request headers, each with Envoy's
//! local reply.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn config(hcm_extra: &str, route_extra: &str, backend: &Backend) -> String {
    http_config(
        &catch_all("backend", route_extra),
        &static_cluster("backend", &[(backend, 1)], ""),
    )
    .replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n{hcm_extra}"),
    )
}

/// Reads whatever the proxy sends until it closes (or 5 s pass).
fn read_all(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn idle_connections_are_closed() {
    let backend = Backend::start("b");
    let idle = "          common_http_protocol_options: { idle_timeout: 0.3s }\n";
    let p = Proxy::start(&config(idle, "", &backend), &[]);
    let mut c = Client::connect(p.port);
    assert_eq!(c.get("h", "/").status, 200);
    let started = Instant::now();
    assert!(c.is_closed(), "the proxy closes an idle connection");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The default (1 h) keeps it open.
    let p = Proxy::start(&config("", "", &backend), &[]);
    let mut c = Client::connect(p.port);
    assert_eq!(c.get("h", "/").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.get("h", "/").status, 200);
}

#[test]
fn stream_idle_timeout_answers_408() {
    let backend = Backend::start("b");
    let hcm = "          stream_idle_timeout: 0.3s\n";
    let admin = free_port();
    let p = Proxy::start(
        &(admin_block(admin) + &config(hcm, ", timeout: 0s", &backend)),
        &[],
    );
    // A head that stops half way.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n")
        .expect("write");
    let answer = read_all(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.ends_with("stream timeout"), "{answer}");
    // It is counted like any answered request.
    let stats = admin_until(admin, "/stats?filter=ingress_http%5C.downstream_rq_", |s| {
        s.contains("http.ingress_http.downstream_rq_4xx: 1\n")
    });
    for line in [
        "http.ingress_http.downstream_rq_4xx: 1",
        "http.ingress_http.downstream_rq_idle_timeout: 1",
        "http.ingress_http.downstream_rq_total: 1",
    ] {
        assert!(stats.lines().any(|l| l == line), "{line} in\n{stats}");
    }
    // An upstream that takes longer than the idle timeout (no route timeout).
    let r = get(p.port, "h", "/delay/1000");
    assert_eq!((r.status, r.text().as_str()), (408, "stream timeout"));
    // A route's idle_timeout overrides the connection manager's.
    let p = Proxy::start(
        &config("", ", idle_timeout: 0.2s, timeout: 0s", &backend),
        &[],
    );
    let started = Instant::now();
    assert_eq!(get(p.port, "h", "/delay/1000").status, 408);
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[test]
fn request_timeout_bounds_the_whole_request() {
    let backend = Backend::start("b");
    let hcm = "          request_timeout: 0.4s\n";
    let p = Proxy::start(&config(hcm, "", &backend), &[]);
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    // The body trickles in: each byte resets idleness, not the request timeout.
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 20\r\n\r\n")
        .expect("write");
    let started = Instant::now();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b"x").is_err() {
            break;
        }
    }
    let answer = read_all(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.ends_with("request timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn timeout_headers_override_the_route() {
    let backend = Backend::start("b");
    let p = Proxy::start(&internal_loopback(&config("", "", &backend)), &[]);
    let send = |headers: &str| {
        let mut c = Client::connect(p.port);
        c.send(format!("GET /delay/800 HTTP/1.1\r\nhost: h\r\n{headers}\r\n").as_bytes());
        let started = Instant::now();
        let r = c.read_response(false).expect("response");
        (r.status, started.elapsed())
    };
    let (status, took) = send("x-envoy-upstream-rq-timeout-ms: 200\r\n");
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(700), "{took:?}");
    // The backend sees the effective timeout, not the override header (on
    // a request that completes: one cut at its deadline may reach the
    // backend only in part on a loaded machine).
    let mut c = Client::connect(p.port);
    c.send(b"GET /status/200 HTTP/1.1\r\nhost: h\r\nx-envoy-upstream-rq-timeout-ms: 4000\r\n\r\n");
    assert_eq!(c.read_response(false).expect("response").status, 200);
    let seen = backend.seen();
    let last = seen.last().expect("seen");
    assert_eq!(last.header("x-envoy-expected-rq-timeout-ms"), Some("4000"));
    assert_eq!(last.header("x-envoy-upstream-rq-timeout-ms"), None);
    let (status, took) = send("x-envoy-upstream-rq-per-try-timeout-ms: 200\r\n");
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(700), "{took:?}");
    // 0 disables the route timeout for this request.
    assert_eq!(send("x-envoy-upstream-rq-timeout-ms: 0\r\n").0, 200);
}

#[test]
fn a_client_that_leaves_ends_the_upstream_request() {
    let backend = Backend::start("b");
    let admin = free_port();
    let p = Proxy::start(&(admin_block(admin) + &config("", "", &backend)), &[]);
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.write_all(b"GET /delay/5000 HTTP/1.1\r\nhost: h\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let (_, stats) = admin_request(admin, "GET", "/stats?filter=upstream_rq_active");
    assert!(
        stats.contains("cluster.backend.upstream_rq_active: 1"),
        "{stats}"
    );
    let left = Instant::now();
    drop(s);
    // The upstream request ends long before the upstream would answer.
    loop {
        let (_, stats) = admin_request(admin, "GET", "/stats?filter=upstream_rq_active");
        if stats.contains("cluster.backend.upstream_rq_active: 0") {
            break;
        }
        assert!(left.elapsed() < Duration::from_secs(3), "{stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(left.elapsed() < Duration::from_secs(2));
}

/// A cluster's `common_http_protocol_options.max_stream_duration` cuts
/// each upstream request, as Envoy does: 504 `upstream max stream duration
/// reached`, retried under `5xx`, flags `URX,UMSDR`, counted per attempt.
#[test]
fn cluster_max_stream_duration_matches_envoy() {
    let backend = Backend::start("b");
    let format = "%RESPONSE_CODE% %RESPONSE_FLAGS%\\n";
    let cluster = static_cluster(
        "backend",
        &[(&backend, 1)],
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http_protocol_options: {} }\n        common_http_protocol_options: { max_stream_duration: 0.3s }\n",
    );
    let config = with_admin(&http_config(
        // No route timeout: the retry's expected-timeout header would
        // carry what is left of it, which differs by milliseconds.
        &catch_all(
            "backend",
            ", timeout: 0s, retry_policy: { retry_on: \"5xx\", num_retries: 1 }",
        ),
        &cluster,
    ))
    .replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{{log}}\"\n              log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}\n"),
    );
    let Some(pair) = Pair::start(
        "cluster_max_stream_duration_matches_envoy",
        &config,
        vec![backend],
    ) else {
        return;
    };
    let raws = [
        b"GET /delay/1000 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"GET /fast HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
    ];
    let seen = pair.assert_all_same(&raws);
    assert_eq!(seen[0].status, 504);
    assert_eq!(seen[0].body, "upstream max stream duration reached");
    assert_eq!(
        log_lines(&pair.logs.0, 2),
        log_lines(&pair.logs.1, 2),
        "access-log lines"
    );
    pair.assert_same_stats(&[
        "cluster.backend.upstream_rq_max_duration_reached",
        "cluster.backend.upstream_rq_retry",
        "cluster.backend.upstream_rq_timeout",
        "cluster.backend.upstream_rq_total",
    ]);
}

/// A limit that runs out while the response is leaving must not swallow
/// it: the client reads either the response or the limit's 504, never a
/// bare close. Envoy, whose timers cannot interleave with its own write,
/// behaves the same; here each limit is set to expire around the moment an
/// instant backend's answer is relayed.
#[test]
fn limits_expiring_as_the_response_leaves_never_lose_it() {
    let backend = Backend::start("b");
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/grpc/" }
                route: { cluster: backend, prefix_rewrite: "/", max_stream_duration: { grpc_timeout_header_max: 5s } }
              - match: { prefix: "/route/" }
                route: { cluster: backend, prefix_rewrite: "/", timeout: 0.001s }
"#;
    let config = http_config(routes, &static_cluster("backend", &[(&backend, 1)], ""));
    let p = Proxy::start(&config, &[]);
    // gRPC deadlines sweep the instant of the relay in 25 µs steps.
    let requests = (0..200)
        .map(|i| format!("GET /grpc/delay/1 HTTP/1.1\r\nhost: h\r\ncontent-type: application/grpc\r\ngrpc-timeout: {}u\r\nconnection: close\r\n\r\n", 500 + 10 * i))
        .chain((0..100).map(|_| "GET /route/delay/1 HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n".to_string()));
    let mut seen = std::collections::BTreeMap::new();
    for request in requests {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(request.as_bytes()).expect("write");
        let answer = read_all(&mut s);
        assert!(
            answer.starts_with("HTTP/1.1 200 ") || answer.starts_with("HTTP/1.1 504 "),
            "{request:?} got {answer:?}"
        );
        let deadline = answer.contains("grpc-status: 4\r\n");
        *seen
            .entry((answer[..12].to_string(), deadline))
            .or_insert(0) += 1;
    }
    eprintln!("answers: {seen:?}");
}
