//! HTTP/2 from downstream clients nobody here wrote: curl (prior
//! knowledge) compared with Envoy 1.40 on the same bootstrap, h2load for
//! load, and python-hyper's `h2` (tests/peers/h2_peer.py) for
//! multiplexing, GOAWAY on drain and the flood attacks.

mod common;
use common::oracle::{self, with_admin, Pair};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A listener sending everything to `backend`.
fn to_backend(backend: &Backend) -> String {
    http_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(backend, 1)], ""),
    )
}

/// Whether python-hyper's `h2` is importable; under CI it must be.
fn h2_peer_or_skip(test: &str) -> bool {
    tool_or_skip(test, &["python3", "-c", "import h2"])
}

/// Runs tests/peers/h2_peer.py and returns its output lines.
fn h2_peer(args: &[&str]) -> Vec<String> {
    let out = Command::new("timeout")
        .arg("30")
        .arg("python3")
        .arg("tests/peers/h2_peer.py")
        .args(args)
        .output()
        .expect("run h2_peer.py");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Routes: `/direct` answered by the proxy, `/b/...` to the backend with
/// the prefix stripped, anything else unrouted.
fn routes() -> String {
    r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: "direct answer" } }
              - match: { prefix: "/b/" }
                route: { cluster: backend, prefix_rewrite: "/" }
"#
    .to_string()
}

#[test]
fn prior_knowledge_requests_match_envoy() {
    let backend = Backend::start("b");
    let format = "%PROTOCOL% %REQ(:METHOD)% %REQ(:AUTHORITY)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %GRPC_STATUS% %UPSTREAM_CLUSTER% %REQ(COOKIE)%\n";
    let access_log = format!(
        "          stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{{log}}\"\n              log_format: {{ text_format_source: {{ inline_string: {format:?} }} }}\n"
    );
    let config = with_admin(&http_config(
        &routes(),
        &static_cluster("backend", &[(&backend, 1)], ""),
    ))
    .replace("          stat_prefix: ingress_http\n", &access_log);
    let Some(pair) = Pair::start(
        "prior_knowledge_requests_match_envoy",
        &config,
        vec![backend],
    ) else {
        return;
    };
    let requests: &[&[&str]] = &[
        &["/b/plain"],
        &[
            "-H",
            "x-custom: one",
            "-H",
            "user-agent: test",
            "/b/headers",
        ],
        // Split cookie headers are joined for an HTTP/1.1 upstream.
        &["-H", "cookie: a=1", "-H", "cookie: b=2", "/b/cookies"],
        &["--data-binary", "a body with a length", "/b/echo"],
        // A body without a length goes upstream chunked.
        &[
            "--data-binary",
            "no length",
            "-H",
            "content-length:",
            "/b/echo",
        ],
        &["-I", "/b/head"],
        &["/b/status/503"],
        &["/b/chunked"],
        &["/b/big/300000"],
        &["/b/until-close"],
        &["/direct"],
        &["/nowhere"],
        &["-H", "content-type: application/grpc", "/nowhere"],
        &[
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "/b/status/503",
        ],
        &["-X", "OPTIONS", "/b/options"],
    ];
    pair.assert_all_same_h2(requests);
    assert_eq!(
        log_lines(&pair.logs.0, requests.len()),
        log_lines(&pair.logs.1, requests.len()),
        "access-log lines"
    );
    pair.assert_same_stats(&[
        "http.ingress_http.downstream_cx_total",
        "http.ingress_http.downstream_cx_http2_total",
        "http.ingress_http.downstream_cx_http1_total",
        "http.ingress_http.downstream_rq_total",
        "http.ingress_http.downstream_rq_http2_total",
        "http.ingress_http.downstream_rq_2xx",
        "http.ingress_http.downstream_rq_4xx",
        "http.ingress_http.downstream_rq_5xx",
        "http2.rx_reset",
        "http2.tx_reset",
    ]);
}

/// A bootstrap whose connection manager says `codec`.
fn with_codec(codec: &str, backend: &Backend) -> String {
    with_admin(&http_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(backend, 1)], ""),
    ))
    .replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n          codec_type: {codec}\n"),
    )
}

#[test]
fn codec_type_choices_match_envoy() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let h1 = b"GET /h1 HTTP/1.1\r\nhost: x\r\n\r\n";
    let h2c = b"GET /h2c HTTP/1.1\r\nhost: x\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    for codec in ["AUTO", "HTTP1", "HTTP2"] {
        let backend = Backend::start("b");
        let config = with_codec(codec, &backend);
        let Some(pair) = Pair::start("codec_type_choices_match_envoy", &config, vec![backend])
        else {
            return;
        };
        // An HTTP/1.1 request (refused by an HTTP2-only manager), one asking
        // for h2c (ignored, as Envoy ignores it), and the HTTP/2 preface
        // (refused by an HTTP1-only manager).
        pair.assert_all_same(&[h1.to_vec(), h2c.to_vec(), preface.to_vec()]);
        let h2 = pair.assert_all_same_h2(&[&["/over-h2"]]);
        assert_eq!(
            h2[0].status,
            if codec == "HTTP1" { 0 } else { 200 },
            "{codec}"
        );
        pair.assert_same_stats(&[
            "http.ingress_http.downstream_cx_http1_total",
            "http.ingress_http.downstream_cx_http2_total",
            "http.ingress_http.downstream_rq_http1_total",
            "http.ingress_http.downstream_rq_http2_total",
        ]);
    }
}

#[test]
fn http2_protocol_options_reach_the_client() {
    let backend = Backend::start("b");
    let config = with_codec("AUTO", &backend).replace(
        "          codec_type: AUTO\n",
        "          codec_type: AUTO\n          http2_protocol_options: { max_concurrent_streams: 7, initial_stream_window_size: 70000, initial_connection_window_size: 1048576, hpack_table_size: 0 }\n",
    );
    let proxy = Proxy::start(&config.replace("{admin}", &free_port().to_string()), &[]);
    // nghttp prints the server's SETTINGS frame.
    if !tool_or_skip(
        "http2_protocol_options_reach_the_client",
        &["nghttp", "--version"],
    ) {
        return;
    }
    let out = Command::new("nghttp")
        .args(["-nv", &format!("http://127.0.0.1:{}/", proxy.port)])
        .output()
        .expect("nghttp");
    let text = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7",
        "SETTINGS_INITIAL_WINDOW_SIZE(0x04):70000",
        "SETTINGS_HEADER_TABLE_SIZE(0x01):0",
    ] {
        assert!(text.contains(setting), "{setting} missing from\n{text}");
    }
    // The connection window is opened to the configured size at once.
    let increment = 1048576 - 65535;
    assert!(
        text.contains(&format!("window_size_increment={increment}")),
        "{text}"
    );
}

#[test]
fn h2load_streams_all_succeed() {
    if !tool_or_skip("h2load_streams_all_succeed", &["h2load", "--version"]) {
        return;
    }
    let backend = Backend::start("b");
    let config = to_backend(&backend);
    let admin = free_port();
    let proxy = Proxy::start(&(admin_block(admin) + &config), &["--concurrency", "2"]);
    // At most 100 streams in flight: each takes an upstream connection, and
    // the test backend's listen backlog is 128.
    for streams in ["1", "25"] {
        let out = Command::new("h2load")
            .args(["-n", "2000", "-c", "4", "-m", streams])
            .arg(format!("http://127.0.0.1:{}/load", proxy.port))
            .output()
            .expect("h2load");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout"),
            "{text}"
        );
        assert!(text.contains("status codes: 2000 2xx"), "{text}");
    }
    // A stream's books close a moment after its answer reached h2load.
    let stats = admin_until(admin, "/stats", |s| {
        s.contains("http.ingress_http.downstream_rq_http2_total: 4000")
            && s.contains("http2.streams_active: 0")
    });
    assert!(
        stats.contains("http.ingress_http.downstream_rq_http2_total: 4000"),
        "{stats}"
    );
    assert!(stats.contains("http.ingress_http.downstream_cx_http2_total: 8"));
    assert!(stats.contains("http2.streams_active: 0"), "{stats}");
}

#[test]
fn a_slow_stream_does_not_hold_up_others_on_its_connection() {
    if !h2_peer_or_skip("a_slow_stream_does_not_hold_up_others_on_its_connection") {
        return;
    }
    let backend = Backend::start("b");
    let config = to_backend(&backend);
    let proxy = Proxy::start(&config, &["--concurrency", "1"]);
    let port = proxy.port.to_string();
    let mut lines = h2_peer(&["streams", &port, "/delay/1500", "/fast", "/echo"]);
    // The slow stream, sent first, finishes last; the others in any order.
    assert_eq!(
        lines.pop().as_deref(),
        Some("/delay/1500 200 7"),
        "{lines:?}"
    );
    lines.sort();
    assert_eq!(lines, ["/echo 200 0", "/fast 200 7"]);
}

#[test]
fn drain_sends_goaway_and_in_flight_streams_finish() {
    if !h2_peer_or_skip("drain_sends_goaway_and_in_flight_streams_finish") {
        return;
    }
    let backend = Backend::start("b");
    let config = to_backend(&backend);
    let admin = free_port();
    let proxy = Proxy::start(&(admin_block(admin) + &config), &["--concurrency", "1"]);
    let mut peer = Command::new("python3")
        .args([
            "tests/peers/h2_peer.py",
            "drain",
            &proxy.port.to_string(),
            "/delay/1000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("h2_peer drain");
    let mut lines = BufReader::new(peer.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("sent"));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, _) = admin_request(admin, "POST", "/drain_listeners?graceful");
    assert_eq!(status, 200);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = peer.wait();
    // A graceful GOAWAY (NO_ERROR; h2 sends a second one naming the last
    // stream), then the in-flight stream's answer, then the close.
    let mut events = rest.clone();
    events.dedup();
    assert_eq!(
        events,
        ["goaway 0", "done 200", "closed"],
        "after the drain: {rest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = admin_until(admin, "/stats", |s| s.contains("http2.goaway_sent: 1"));
    assert!(stats.contains("http2.goaway_sent: 1"), "{stats}");
}

/// RSS of the proxy stays bounded through `attack`, the attacked
/// connection ends as `expected` says, and a new connection is served.
fn survives(proxy: &Proxy, attack: &[&str], expected: &[&str]) {
    let port = proxy.port.to_string();
    let before = proxy.rss_kib();
    let mut args = vec![attack[0], port.as_str()];
    args.extend_from_slice(&attack[1..]);
    let outcome = h2_peer(&args);
    assert!(
        outcome.len() == 1 && expected.contains(&outcome[0].as_str()),
        "{attack:?}: {outcome:?}, expected one of {expected:?}"
    );
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "{attack:?}: RSS grew {grown} KiB");
    let after = h2_peer(&["streams", &port, "/after"]);
    assert_eq!(after, ["/after 200 8"], "served after {attack:?}");
}

#[test]
fn flood_attacks_end_the_connection_and_others_are_served() {
    if !h2_peer_or_skip("flood_attacks_end_the_connection_and_others_are_served") {
        return;
    }
    let backend = Backend::start("b");
    let config = to_backend(&backend);
    let proxy = Proxy::start(&config, &["--concurrency", "1"]);
    // Rapid reset (CVE-2023-44487): h2's pending-accept reset limit sends
    // GOAWAY (ENHANCE_YOUR_CALM, 11); the client may see only the close.
    survives(&proxy, &["rapid-reset", "5000"], &["goaway 11", "closed"]);
    // A CONTINUATION flood (CVE-2024-27316 family) is cut off at the
    // header-list limit.
    survives(
        &proxy,
        &["continuation", "5000"],
        &["goaway 11", "goaway 1", "closed"],
    );
    // PING and SETTINGS floods are absorbed with backpressure: h2 keeps one
    // pending answer and stops reading until it is written, so memory
    // stays bounded and the connection keeps working.
    survives(
        &proxy,
        &["ping-flood", "200000"],
        &["open", "goaway 11", "closed"],
    );
    survives(
        &proxy,
        &["settings-flood", "100000"],
        &["open", "goaway 11", "closed"],
    );
}

/// The python-hyper HTTP/2 upstream (tests/peers/h2_peer.py upstream);
/// it answers "<connection> <stream>".
fn h2_upstream(goaway_after: u32) -> PortPeer {
    let after = goaway_after.to_string();
    PortPeer::start(&["python3", "tests/peers/h2_peer.py", "upstream", &after])
}

/// The HTTP/2 upstream, resetting its very first stream with
/// REFUSED_STREAM.
fn refusing_h2_upstream() -> PortPeer {
    PortPeer::start(&[
        "python3",
        "tests/peers/h2_peer.py",
        "upstream",
        "0",
        "refuse-first",
    ])
}

/// A bootstrap whose cluster speaks HTTP/2 to `port`, with `extra`
/// cluster fields.
fn h2_cluster_config(port: u16, extra: &str) -> String {
    let cluster = format!(
        "  - name: up\n    type: STATIC\n    connect_timeout: 1s\n{extra}    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http2_protocol_options: {{}} }}\n    load_assignment:\n      cluster_name: up\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
    );
    with_admin(&http_config(&catch_all("up", ""), &cluster))
}

/// Five sequential HTTP/1.1 requests through `port`: the answers (which
/// upstream connection and stream served each) and the cluster's stats.
fn five_requests(port: u16, admin: u16) -> (Vec<String>, Vec<String>) {
    let answers = (0..5)
        .map(|i| {
            let r = get(port, "x", &format!("/{i}"));
            format!("{} {}", r.status, r.text())
        })
        .collect();
    let names = [
        "cluster.up.upstream_cx_http2_total",
        "cluster.up.upstream_cx_max_requests",
        "cluster.up.upstream_rq_200",
    ];
    let stats = admin_until(admin, "/stats", |s| {
        s.contains("cluster.up.upstream_rq_200: 5")
    });
    let values = names
        .iter()
        .map(|n| {
            stats
                .lines()
                .find(|l| l.split(':').next() == Some(n))
                .unwrap_or("<absent>")
                .to_string()
        })
        .collect();
    (answers, values)
}

/// Runs the five requests through Ringway and through Envoy, each with an
/// upstream of its own built by `upstream`, on `config(port)`.
fn through_both(
    test: &str,
    upstream: impl Fn() -> PortPeer,
    config: impl Fn(u16) -> String,
) -> Option<[(Vec<String>, Vec<String>); 2]> {
    let bin = oracle::envoy_or_skip(test)?;
    if !h2_peer_or_skip(test) {
        return None;
    }
    let up = upstream();
    let admin = free_port();
    let ringway = Proxy::start(
        &config(up.1).replace("{admin}", &admin.to_string()),
        &["--concurrency", "1"],
    );
    let ringway_seen = five_requests(ringway.port, admin);
    let up = upstream();
    let envoy = oracle::Envoy::start(&bin, &config(up.1));
    let envoy_seen = five_requests(envoy.port, envoy.admin);
    Some([ringway_seen, envoy_seen])
}

#[test]
fn upstream_goaway_moves_streams_to_a_new_connection_as_in_envoy() {
    let Some([ringway, envoy]) = through_both(
        "upstream_goaway_moves_streams_to_a_new_connection_as_in_envoy",
        || h2_upstream(2),
        |port| h2_cluster_config(port, ""),
    ) else {
        return;
    };
    assert_eq!(ringway, envoy);
    // Two streams per connection, then a GOAWAY: three connections.
    assert_eq!(
        ringway.0,
        ["200 1 1", "200 1 3", "200 2 1", "200 2 3", "200 3 1"]
    );
}

#[test]
fn upstream_max_requests_per_connection_spreads_streams_as_in_envoy() {
    let Some([ringway, envoy]) = through_both(
        "upstream_max_requests_per_connection_spreads_streams_as_in_envoy",
        || h2_upstream(0),
        |port| h2_cluster_config(port, "    max_requests_per_connection: 2\n"),
    ) else {
        return;
    };
    assert_eq!(ringway, envoy);
    assert_eq!(ringway.1[0], "cluster.up.upstream_cx_http2_total: 3");
}

#[test]
fn websocket_over_http2_extended_connect_matches_envoy() {
    let test = "websocket_over_http2_extended_connect_matches_envoy";
    if !h2_peer_or_skip(test) || !tool_or_skip(test, &["python3", "-c", "import websockets"]) {
        return;
    }
    let echo = PortPeer::start(&["python3", "tests/peers/ws_echo.py"]);
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/off" }
                route: { cluster: ws, upgrade_configs: [ { upgrade_type: websocket, enabled: false } ] }
              - match: { prefix: "/" }
                route: { cluster: ws }
"#;
    let base = with_admin(&http_config(routes, &port_cluster("ws", echo.1)));
    let hcm = "          stat_prefix: ingress_http\n";
    let upgrades = "          upgrade_configs: [ { upgrade_type: websocket } ]\n";
    for (allow, expected) in [
        (
            true,
            vec!["extended-connect 1", "status 200", "echo hello over h2"],
        ),
        // Without allow_connect the server does not offer extended CONNECT
        // and refuses the stream that uses it anyway.
        (false, vec!["extended-connect 0", "reset 1"]),
    ] {
        let options = format!("          http2_protocol_options: {{ allow_connect: {allow} }}\n");
        let config = base.replace(hcm, &format!("{hcm}{upgrades}{options}"));
        let Some(pair) = Pair::start(test, &config, Vec::new()) else {
            return;
        };
        let through = |port: u16| h2_peer(&["websocket", &port.to_string(), "/chat"]);
        let ringway = through(pair.ringway.port);
        assert_eq!(ringway, expected, "allow_connect {allow}");
        // Refused, Envoy closes the whole connection; Ringway resets the
        // stream, which RFC 9113 §8.1.1 asks for a malformed request.
        if allow {
            assert_eq!(ringway, through(pair.envoy.port));
        }
        if allow {
            // A route that disables the upgrade refuses it with Envoy's 403
            // and a GOAWAY.
            // (Envoy queues its GOAWAY before the 403, Ringway after it.)
            let refused = |port: u16| {
                let mut lines = h2_peer(&["websocket", &port.to_string(), "/off"]);
                lines.retain(|l| l.starts_with("status") || l.starts_with("goaway"));
                lines.sort();
                lines.dedup();
                lines
            };
            let off = refused(pair.ringway.port);
            assert_eq!(off, refused(pair.envoy.port));
            assert!(off.contains(&"goaway 0".to_string()), "{off:?}");
            assert!(off.contains(&"status 403".to_string()), "{off:?}");
            pair.assert_same_stats(&[
                "http.ingress_http.downstream_cx_upgrades_total",
                "http.ingress_http.downstream_cx_upgrades_active",
            ]);
        }
    }
}

#[test]
fn upstream_idle_timeout_closes_pooled_connections_as_in_envoy() {
    let test = "upstream_idle_timeout_closes_pooled_connections_as_in_envoy";
    if !h2_peer_or_skip(test) {
        return;
    }
    let idle = "    common_http_protocol_options: { idle_timeout: 0.3s }\n";
    let backend = Backend::start("b");
    let h1 = with_admin(&http_config(
        &catch_all("up", ""),
        &static_cluster("up", &[(&backend, 1)], idle),
    ));
    let up = h2_upstream(0);
    // The HTTP/2 cluster takes the option inside its HttpProtocolOptions.
    let h2 = h2_cluster_config(up.1, "").replace(
        "        explicit_http_config:",
        "        common_http_protocol_options: { idle_timeout: 0.3s }\n        explicit_http_config:",
    );
    for (config, backends) in [(h1, vec![backend]), (h2, Vec::new())] {
        let Some(pair) = Pair::start(test, &config, backends) else {
            return;
        };
        for port in [pair.ringway.port, pair.envoy.port] {
            assert_eq!(get(port, "x", "/1").status, 200);
            std::thread::sleep(std::time::Duration::from_millis(600));
            assert_eq!(get(port, "x", "/2").status, 200);
        }
        pair.assert_same_stats(&[
            "cluster.up.upstream_cx_total",
            "cluster.up.upstream_cx_idle_timeout",
        ]);
        let (stats, _) = pair.admin("/stats");
        assert!(
            stats.contains("cluster.up.upstream_cx_idle_timeout: 1"),
            "{stats}"
        );
        assert!(stats.contains("cluster.up.upstream_cx_total: 2"), "{stats}");
    }
}

#[test]
fn connection_keepalive_closes_a_client_that_stops_answering() {
    if !h2_peer_or_skip("connection_keepalive_closes_a_client_that_stops_answering") {
        return;
    }
    let backend = Backend::start("b");
    let admin = free_port();
    let config = admin_block(admin)
        + &to_backend(&backend)
        .replace(
            "          stat_prefix: ingress_http\n",
            "          stat_prefix: ingress_http\n          http2_protocol_options: { connection_keepalive: { interval: 0.2s, timeout: 0.2s } }\n",
        );
    let proxy = Proxy::start(&config, &["--concurrency", "1"]);
    let started = Instant::now();
    assert_eq!(
        h2_peer(&["silent", &proxy.port.to_string(), "5"]),
        ["closed"]
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let stats = admin_until(admin, "/stats", |s| {
        s.contains("http2.keepalive_timeout: 1")
    });
    assert!(stats.contains("http2.keepalive_timeout: 1"), "{stats}");
    // A client that answers keeps its connection past several intervals.
    assert_eq!(
        h2_peer(&["streams", &proxy.port.to_string(), "/delay/900"]),
        ["/delay/900 200 7"]
    );
}

#[test]
fn request_trailers_reach_an_http2_upstream_as_in_envoy() {
    let test = "request_trailers_reach_an_http2_upstream_as_in_envoy";
    if !h2_peer_or_skip(test) {
        return;
    }
    // An upstream each, so that both see their own first connection.
    let (up_r, up_e) = (h2_upstream(0), h2_upstream(0));
    let Some(bin) = oracle::envoy_or_skip(test) else {
        return;
    };
    let ringway = Proxy::start(
        &h2_cluster_config(up_r.1, "").replace("{admin}", &free_port().to_string()),
        &["--concurrency", "1"],
    );
    let envoy = oracle::Envoy::start(&bin, &h2_cluster_config(up_e.1, ""));
    let through = |port: u16| h2_peer(&["trailers", &port.to_string(), "/t"]);
    let answer = through(ringway.port);
    assert_eq!(answer, through(envoy.port));
    assert_eq!(answer, ["200 1 1 trailers x-checksum=abc,x-count=1"]);
}

#[test]
fn a_refused_stream_is_retried_as_in_envoy() {
    let Some([ringway, envoy]) = through_both(
        "a_refused_stream_is_retried_as_in_envoy",
        refusing_h2_upstream,
        |port| {
            h2_cluster_config(port, "").replace(
                "route: { cluster: up }",
                "route: { cluster: up, retry_policy: { retry_on: refused-stream, num_retries: 1 } }",
            )
        },
    ) else {
        return;
    };
    assert_eq!(ringway, envoy);
    // The first stream was refused and retried on the same connection.
    assert_eq!(ringway.0[0], "200 1 3");
}

#[test]
fn an_http2_upstream_answering_before_the_body_is_relayed_as_in_envoy() {
    let test = "an_http2_upstream_answering_before_the_body_is_relayed_as_in_envoy";
    if !h2_peer_or_skip(test) {
        return;
    }
    let Some(bin) = oracle::envoy_or_skip(test) else {
        return;
    };
    let early = || {
        PortPeer::start(&[
            "python3",
            "tests/peers/h2_peer.py",
            "upstream",
            "0",
            "early",
        ])
    };
    let (up_r, up_e) = (early(), early());
    let ringway = Proxy::start(
        &h2_cluster_config(up_r.1, "").replace("{admin}", &free_port().to_string()),
        &["--concurrency", "1"],
    );
    let envoy = oracle::Envoy::start(&bin, &h2_cluster_config(up_e.1, ""));
    // An HTTP/1.1 upload announced at 1 MB of which 10 bytes ever come:
    // the upstream's early 413 must reach the client anyway.
    let ask = |port: u16| {
        let mut client = Client::connect(port);
        client.set_timeout(Duration::from_secs(5));
        client
            .send(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n0123456789");
        let r = client
            .read_response(false)
            .expect("an answer before the body ends");
        (
            r.status,
            r.text(),
            r.header("connection").map(str::to_string),
        )
    };
    let answered = ask(ringway.port);
    assert_eq!(answered, ask(envoy.port));
    assert_eq!((answered.0, answered.1.as_str()), (413, "early"));
}

#[test]
fn streams_queued_for_an_upstream_slot_are_bounded_by_the_route_timeout() {
    let test = "streams_queued_for_an_upstream_slot_are_bounded_by_the_route_timeout";
    if !h2_peer_or_skip(test) {
        return;
    }
    // One stream per connection upstream, and /hold never answered (and
    // not bounded: timeout 0s); /other has 0.5 s.
    let up = PortPeer::start(&[
        "python3",
        "tests/peers/h2_peer.py",
        "upstream",
        "0",
        "one-stream",
    ]);
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/hold\" }\n                route: { cluster: up, timeout: 0s }\n              - match: { prefix: \"/\" }\n                route: { cluster: up, timeout: 0.5s }\n";
    let config = h2_cluster_config(up.1, "").replace(&catch_all("up", ""), routes);
    let proxy = Proxy::start(
        &config.replace("{admin}", &free_port().to_string()),
        &["--concurrency", "1"],
    );
    let mut holder = Client::connect(proxy.port);
    holder.send(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    // Their streams queue inside h2 until the peer frees a slot, which it
    // never does: the route timeout still bounds them.
    let started = Instant::now();
    let mut waiters: Vec<Client> = (0..2)
        .map(|_| {
            let mut waiting = Client::connect(proxy.port);
            waiting.set_timeout(Duration::from_secs(5));
            waiting.send(b"GET /other HTTP/1.1\r\nhost: x\r\n\r\n");
            waiting
        })
        .collect();
    for waiting in &mut waiters {
        let r = waiting
            .read_response(false)
            .expect("an answer within the route timeout");
        assert_eq!(
            (r.status, r.text().as_str()),
            (504, "upstream request timeout")
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
