//! HTTP/1.1 proxying against the real binary and real backends.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn proxy_to(backend: &Backend, route_extra: &str) -> Proxy {
    let config = http_config(
        &catch_all("backend", route_extra),
        &static_cluster("backend", &[(backend, 1)], ""),
    );
    Proxy::start(&config, &["--concurrency", "1"])
}

#[test]
fn routes_by_host_and_path_in_envoy_order() {
    let a = Backend::start("exact");
    let b = Backend::start("suffix");
    let c = Backend::start("prefix");
    let d = Backend::start("default");
    let routes = r#"            - name: exact
              domains: ["api.example.com", "api.example.com:8080"]
              routes:
              - match: { path: "/only" }
                route: { cluster: exact }
              - match: { prefix: "/CaSe", case_sensitive: false }
                route: { cluster: exact }
            - name: suffix
              domains: ["*.example.com"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: suffix }
            - name: prefix
              domains: ["api.*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: prefix }
            - name: default
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: default }
"#;
    let clusters = [
        static_cluster("exact", &[(&a, 1)], ""),
        static_cluster("suffix", &[(&b, 1)], ""),
        static_cluster("prefix", &[(&c, 1)], ""),
        static_cluster("default", &[(&d, 1)], ""),
    ]
    .concat();
    let proxy = Proxy::start(&http_config(routes, &clusters), &["--concurrency", "1"]);
    let who = |host: &str, path: &str| {
        let r = get(proxy.port, host, path);
        (r.status, r.header("x-backend").unwrap_or("").to_string())
    };
    assert_eq!(who("api.example.com", "/only"), (200, "exact".into()));
    assert_eq!(who("API.Example.COM", "/only?x=1"), (200, "exact".into()));
    assert_eq!(who("api.example.com:8080", "/only"), (200, "exact".into()));
    assert_eq!(who("api.example.com", "/cAsE/x"), (200, "exact".into()));
    // Exact vhost matched but no route in it: 404, no fallback to other vhosts.
    assert_eq!(who("api.example.com", "/only/more").0, 404);
    assert_eq!(who("www.example.com", "/x"), (200, "suffix".into()));
    assert_eq!(who("api.other.org", "/x"), (200, "prefix".into()));
    assert_eq!(who("elsewhere", "/x"), (200, "default".into()));
    // The wildcard never matches an empty label.
    assert_eq!(who(".example.com", "/x"), (200, "default".into()));
}

#[test]
fn prefix_rewrite_and_forwarded_headers() {
    let backend = Backend::start("b");
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/api/" }
                route: { cluster: backend, prefix_rewrite: "/v2/" }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let proxy = Proxy::start(
        &http_config(routes, &static_cluster("backend", &[(&backend, 1)], "")),
        &["--concurrency", "1"],
    );
    let mut client = Client::connect(proxy.port);
    client.send(
        b"GET /api/users?id=7 HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Custom: Kept\r\n\r\n",
    );
    let r = client.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("server"),
        Some("ringway"),
        "OVERWRITE is the default"
    );
    assert!(r.header("x-envoy-upstream-service-time").is_some());
    let seen = backend.seen();
    let s = &seen[0];
    assert_eq!(s.path, "/v2/users?id=7");
    assert_eq!(s.header("host"), Some("svc"));
    assert_eq!(s.header("x-custom"), Some("Kept"));
    assert_eq!(s.header("x-forwarded-proto"), Some("http"));
    assert_eq!(s.header("x-envoy-expected-rq-timeout-ms"), Some("15000"));
    let id = s.header("x-request-id").expect("request id generated");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version-4 UUID: {id}");
    for hop in ["connection", "x-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(s.header(hop), None, "{hop} must not be forwarded");
    }
    // `te: trailers` is the one TE value Envoy forwards.
    assert_eq!(s.header("te"), Some("trailers"));
    // An existing x-request-id is kept.
    client.send(b"GET / HTTP/1.1\r\nHost: svc\r\nx-request-id: abc\r\n\r\n");
    client.read_response(false).expect("response");
    assert_eq!(backend.seen()[1].header("x-request-id"), Some("abc"));
}

#[test]
fn server_header_transformations() {
    let backend = Backend::start("b");
    for (mode, expected) in [
        ("APPEND_IF_ABSENT", "test-backend"),
        ("PASS_THROUGH", "test-backend"),
        ("OVERWRITE", "edge"),
    ] {
        let config = http_config(
            &catch_all("backend", ""),
            &static_cluster("backend", &[(&backend, 1)], ""),
        )
        .replace(
            "stat_prefix: ingress_http",
            &format!("stat_prefix: ingress_http\n          server_name: edge\n          server_header_transformation: {mode}"),
        );
        let proxy = Proxy::start(&config, &["--concurrency", "1"]);
        let r = get(proxy.port, "h", "/");
        assert_eq!(r.header("server"), Some(expected), "{mode}");
        let local = get(proxy.port, "h", "/status/200");
        assert_eq!(local.status, 200);
    }
}

#[test]
fn direct_response_and_no_route() {
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { path: "/health" }
                direct_response: { status: 200, body: { inline_string: "ok\n" } }
              - match: { prefix: "/gone" }
                direct_response: { status: 410 }
"#;
    let proxy = Proxy::start(&http_config(routes, "    []\n"), &["--concurrency", "1"]);
    let mut client = Client::connect(proxy.port);
    let r = client.get("h", "/health");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("date").is_some());
    let r = client.get("h", "/gone/x");
    assert_eq!((r.status, r.body.len()), (410, 0));
    let r = client.get("h", "/nothing");
    assert_eq!((r.status, r.body.len()), (404, 0));
    // All on one keep-alive connection.
    assert_eq!(client.get("h", "/health").status, 200);
}

#[test]
fn weighted_round_robin_distribution() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let config = http_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(&a, 3), (&b, 1), (&c, 1)], ""),
    );
    let proxy = Proxy::start(&config, &["--concurrency", "1"]);
    let mut client = Client::connect(proxy.port);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..500 {
        let r = client.get("h", "/");
        *counts
            .entry(r.header("x-backend").unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    // Smooth weighted round robin is exact over each cycle of 5.
    assert_eq!(counts.get("a"), Some(&300), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&100), "{counts:?}");
}

#[test]
fn upstream_connections_are_reused() {
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    for _ in 0..10 {
        let mut client = Client::connect(proxy.port);
        for _ in 0..20 {
            assert_eq!(client.get("h", "/").status, 200);
        }
    }
    assert_eq!(backend.seen().len(), 200);
    assert!(
        backend.connection_count() <= 2,
        "200 requests used {} upstream connections",
        backend.connection_count()
    );
    // An upstream that says Connection: close is not reused.
    let before = backend.connection_count();
    let mut client = Client::connect(proxy.port);
    assert_eq!(
        client.get("h", "/until-close").text(),
        "all of it until close"
    );
    assert_eq!(client.get("h", "/").status, 200);
    assert!(backend.connection_count() > before);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    let mut client = Client::connect(proxy.port);
    let mut batch = Vec::new();
    for i in 0..10 {
        if i == 4 {
            batch.extend_from_slice(
                b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nfive!",
            );
        } else {
            batch.extend_from_slice(
                format!("GET /delay/{} HTTP/1.1\r\nhost: h\r\n\r\n", (10 - i) * 3).as_bytes(),
            );
        }
    }
    client.send(&batch);
    for i in 0..10 {
        let r = client.read_response(false).expect("response");
        assert_eq!(r.status, 200);
        if i == 4 {
            assert_eq!(r.text(), "five!");
        } else {
            assert_eq!(r.text(), "delayed");
        }
    }
}

#[test]
fn chunked_bodies_both_ways() {
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    let mut client = Client::connect(proxy.port);
    client.send(b"POST /echo HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: t\r\n\r\n");
    let r = client.read_response(false).expect("response");
    assert_eq!(r.text(), "Wikipedia");
    let seen = backend.seen();
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    let r = client.get("h", "/chunked");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello world");
    // A close-delimited upstream body is re-framed as chunked; the client keeps its connection.
    let r = client.get("h", "/until-close");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "all of it until close");
    assert_eq!(client.get("h", "/").status, 200);
    // HEAD: no body, the upstream's content-length passes through.
    client.send(b"HEAD /big/1234 HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = client.read_response(true).expect("response");
    assert_eq!(r.header("content-length"), Some("1234"));
    assert_eq!(client.get("h", "/").status, 200);
}

#[test]
fn expect_continue_is_answered_by_the_proxy() {
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    let mut client = Client::connect(proxy.port);
    client.send(
        b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n",
    );
    std::thread::sleep(Duration::from_millis(50));
    client.send(b"abc");
    let r = client.read_response(false).expect("response");
    assert_eq!(r.text(), "abc");
    assert_eq!(backend.seen()[0].header("expect"), None);
}

#[test]
fn bodies_keep_every_byte_in_order_both_ways() {
    // Patterned, so a lost, repeated or reordered buffer shows; 3 MiB, so
    // each direction takes many reads and the client's late reading fills
    // the proxy's socket buffer (short writes).
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut client = Client::connect(proxy.port);
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    std::thread::sleep(Duration::from_millis(300));
    let r = client.read_response(false).expect("echo");
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "the echoed body differs ({} bytes back)",
        r.body.len()
    );
    // The connection stays usable: the next response's bytes are its own.
    assert_eq!(client.get("h", "/").status, 200);
}

#[test]
fn large_bodies_stream_with_flat_memory() {
    use std::io::{Read, Write};
    const GIB: usize = 1 << 30;
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, ", timeout: 0s");
    let baseline = proxy.rss_kib();
    // Upload 1 GiB.
    let mut up = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    up.write_all(
        format!("POST /upload HTTP/1.1\r\nhost: h\r\ncontent-length: {GIB}\r\n\r\n").as_bytes(),
    )
    .expect("head");
    let block = vec![b'u'; 1 << 20];
    let mut peak = 0;
    for i in 0..1024 {
        up.write_all(&block).expect("body");
        if i % 64 == 0 {
            peak = peak.max(proxy.rss_kib());
        }
    }
    let mut client = Client::from_stream(up);
    let r = client.read_response(false).expect("upload response");
    assert_eq!(r.status, 200);
    assert_eq!(backend.seen()[0].body_len, GIB);
    // Download 1 GiB.
    let mut down = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    down.write_all(format!("GET /big/{GIB} HTTP/1.1\r\nhost: h\r\n\r\n").as_bytes())
        .expect("request");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let mut head_done = false;
    let mut n_reads = 0;
    while total < GIB {
        let n = down.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {total} bytes");
        let mut data = &buf[..n];
        if !head_done {
            let end = data
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head in first read")
                + 4;
            data = &data[end..];
            head_done = true;
        }
        total += data.len();
        n_reads += 1;
        if n_reads % 256 == 0 {
            peak = peak.max(proxy.rss_kib());
        }
    }
    assert_eq!(total, GIB);
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 32 * 1024,
        "proxy RSS grew by {growth} KiB moving 2 GiB (baseline {baseline} KiB)"
    );
}

#[test]
fn local_replies_match_envoy() {
    let backend = Backend::start("b");
    let dead_port = free_port();
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/dead" }
                route: { cluster: dead }
              - match: { prefix: "/empty" }
                route: { cluster: empty }
              - match: { prefix: "/slow" }
                route: { cluster: backend, prefix_rewrite: "/delay/2000", timeout: 0.2s }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let clusters = format!(
        "{}  - name: dead\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: dead\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead_port} }} }} }}\n  - name: empty\n    type: STATIC\n",
        static_cluster("backend", &[(&backend, 1)], "")
    );
    let proxy = Proxy::start(&http_config(routes, &clusters), &["--concurrency", "1"]);
    let mut client = Client::connect(proxy.port);
    let r = client.get("h", "/dead");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure");
    let r = client.get("h", "/empty");
    assert_eq!((r.status, r.text().as_str()), (503, "no healthy upstream"));
    let started = Instant::now();
    let r = client.get("h", "/slow");
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "upstream request timeout")
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    let r = client.get("h", "/close-before");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
    let r = client.get("h", "/garbage");
    assert_eq!(r.status, 502);
    // After all of that the same connection still works.
    assert_eq!(client.get("h", "/").status, 200);
    // A response cut after its headers closes the downstream connection.
    client.send(b"GET /close-mid HTTP/1.1\r\nhost: h\r\n\r\n");
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut client.reader_mut(), &mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn malformed_requests_get_400_431_and_the_shard_keeps_serving() {
    let backend = Backend::start("b");
    let proxy = proxy_to(&backend, "");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: -3\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(), 501),
        (b"GET nopath HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.0\r\nhost: a\r\n\r\n".to_vec(), 426),
        (b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n".to_vec(), 403),
        (format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n", "a".repeat(61 * 1024)).into_bytes(), 431),
        (
            format!("GET / HTTP/1.1\r\nhost: a\r\n{}\r\n", "x: y\r\n".repeat(101)).into_bytes(),
            431,
        ),
        (b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n".to_vec(), 400),
    ];
    for (raw, status) in cases {
        let mut client = Client::connect(proxy.port);
        client.send(&raw);
        let r = client.read_response(false).expect("a reply");
        assert_eq!(
            r.status,
            status,
            "for {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        );
        if status != 403 {
            assert!(client.is_closed(), "connection closed after {status}");
        }
    }
    // Binary noise and abrupt closes.
    for noise in [
        &[0u8, 255, 13, 10, 13, 10][..],
        &[0xff; 4096][..],
        b"GET / HTTP/1.1\r\nhost",
    ] {
        let mut client = Client::connect(proxy.port);
        client.send(noise);
        drop(client);
    }
    assert_eq!(
        get(proxy.port, "h", "/").status,
        200,
        "the shard still serves"
    );
}

#[test]
fn concurrency_two_uses_both_shards() {
    let backend = Backend::start("b");
    let config = http_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(&backend, 1)], ""),
    );
    let proxy = Proxy::start(&config, &["--concurrency", "2", "-l", "debug"]);
    for _ in 0..64 {
        assert_eq!(get(proxy.port, "h", "/").status, 200);
    }
    let log = proxy.log_text();
    for shard in ["shard 0:", "shard 1:"] {
        assert!(
            log.lines()
                .any(|l| l.contains(shard) && l.contains("accepted connection")),
            "no connection landed on {shard}:\n{log}"
        );
    }
}

#[test]
fn epoll_fallback_serves_with_one_log_line() {
    let backend = Backend::start("b");
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/slow" }
                route: { cluster: backend, prefix_rewrite: "/delay/2000", timeout: 0.2s }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let config = http_config(routes, &static_cluster("backend", &[(&backend, 1)], ""));
    let proxy = Proxy::start_with(&config, &["--concurrency", "2"], |argv| {
        let mut wrapped = vec![
            "env".to_string(),
            "MONOIO_FORCE_LEGACY_DRIVER=1".to_string(),
        ];
        wrapped.extend(argv);
        wrapped
    });
    let mut client = Client::connect(proxy.port);
    assert_eq!(client.get("h", "/").status, 200);
    client.send(b"POST /echo HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(client.read_response(false).expect("response").text(), "abc");
    assert_eq!(
        client.get("h", "/slow").status,
        504,
        "timers work on epoll too"
    );
    let log = proxy.log_text();
    assert_eq!(
        log.matches("io_uring is unavailable on this host; shards use epoll")
            .count(),
        1,
        "{log}"
    );
}
