//! `upgrade_configs`: WebSocket through Ringway and Envoy 1.40, with a
//! client and server from the `websockets` library (tests/peers), and the
//! upgrade decisions (route overrides, refused kinds, non-101 answers)
//! compared byte for byte.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::io::{Read, Write};
use std::process::Command;

/// Whether Python's `websockets` is importable; under CI it must be.
fn websockets_or_skip(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: python3 -m pip install websockets==13.1 (CI installs it)"
        );
        eprintln!("SKIPPED {test}: Python's websockets is not installed");
    }
    ok
}

/// The `websockets` echo server.
fn echo_server() -> PortPeer {
    PortPeer::start(&["python3", "tests/peers/ws_echo.py"])
}

/// Runs the `websockets` client through `port` to `path`: its summary line.
fn ws_client(port: u16, path: &str) -> String {
    let out = Command::new("python3")
        .args(["tests/peers/ws_client.py", &port.to_string(), path])
        .output()
        .expect("run the websockets client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn config(backend: u16) -> String {
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/off" }
                route: { cluster: ws, upgrade_configs: [ { upgrade_type: websocket, enabled: false } ] }
              - match: { prefix: "/custom" }
                route: { cluster: ws, upgrade_configs: [ { upgrade_type: custom-proto } ] }
              - match: { prefix: "/short" }
                route: { cluster: ws, timeout: 0.2s }
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: "direct" } }
              - match: { prefix: "/" }
                route: { cluster: ws }
"#;
    let format = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\n";
    http_config(routes, &port_cluster("ws", backend)).replace(
        "          stat_prefix: ingress_http\n",
        &format!(
            "          stat_prefix: ingress_http\n          upgrade_configs: [ {{ upgrade_type: WebSocket }} ]\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{{log}}\"\n              log_format: {{ text_format_source: {{ inline_string: {format:?} }} }}\n"
        ),
    )
}

fn upgrade_request(path: &str, kind: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: a\r\nupgrade: {kind}\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A WebSocket conversation (text, a 256 KiB binary, 20 small messages,
/// a clean close) works through both, past a route timeout shorter than
/// the conversation; refused and disabled upgrades get Envoy's 403; the
/// stats and access-log lines agree.
#[test]
fn websocket_upgrades_match_envoy() {
    if !websockets_or_skip("websocket_upgrades_match_envoy") {
        return;
    }
    let echo = echo_server();
    let config = with_admin(&config(echo.1));
    let Some(pair) = Pair::start("websocket_upgrades_match_envoy", &config, Vec::new()) else {
        return;
    };
    let expected = "text=hello binary_ok=True small_ok=20 close=1000";
    for path in ["/chat", "/short"] {
        assert_eq!(
            ws_client(pair.ringway.port, path),
            expected,
            "ringway {path}"
        );
        assert_eq!(ws_client(pair.envoy.port, path), expected, "envoy {path}");
    }
    // Refused: disabled on the route, a kind nobody enabled (403); CONNECT,
    // which no route matches without a connect_matcher (404).
    for (raw, status) in [
        (upgrade_request("/off", "websocket"), 403),
        (upgrade_request("/chat", "custom-proto"), 403),
        (
            b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n".to_vec(),
            404,
        ),
    ] {
        let (ringway, envoy) = pair.exchange(&raw);
        assert_eq!(
            (ringway.status, &ringway.headers),
            (envoy.status, &envoy.headers)
        );
        assert_eq!(ringway.status, status);
    }
    pair.assert_same_stats(&[
        "http.ingress_http.downstream_cx_upgrades_total",
        "http.ingress_http.downstream_cx_upgrades_active",
        "http.ingress_http.downstream_rq_1xx",
        "http.ingress_http.downstream_rq_4xx",
    ]);
    let read = |path: &std::path::Path| log_lines(path, 5);
    let (ringway, envoy) = (read(&pair.logs.0), read(&pair.logs.1));
    assert_eq!(
        ringway, envoy,
        "\n--- ringway\n{ringway}\n--- envoy\n{envoy}"
    );
}

/// What the upstream sees of an upgrade, and an upstream that does not
/// switch protocols (the connection closes after its answer; a WebSocket
/// one goes out without its body, as Envoy sends it), through the backend
/// that records requests.
#[test]
fn upgrade_requests_and_refusals_match_envoy() {
    let app = Backend::start("app");
    let config = with_admin(&config(app.port()));
    let Some(pair) = Pair::start(
        "upgrade_requests_and_refusals_match_envoy",
        &config,
        vec![app],
    ) else {
        return;
    };
    pair.assert_all_same(&[
        upgrade_request("/chat", "websocket"),
        upgrade_request("/custom", "custom-proto"),
        upgrade_request("/direct", "websocket"),
        b"GET /chat HTTP/1.1\r\nhost: a\r\nupgrade: h2c\r\nconnection: upgrade, http2-settings\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n".to_vec(),
    ]);
}

/// An idle tunnel ends after the stream idle timeout, in both.
#[test]
fn idle_tunnels_close_after_the_stream_idle_timeout_as_in_envoy() {
    if !websockets_or_skip("idle_tunnels_close_after_the_stream_idle_timeout_as_in_envoy") {
        return;
    }
    let echo = echo_server();
    let config = with_admin(&config(echo.1).replace(
        "          stat_prefix: ingress_http\n",
        "          stat_prefix: ingress_http\n          stream_idle_timeout: 0.3s\n",
    ));
    let Some(pair) = Pair::start(
        "idle_tunnels_close_after_the_stream_idle_timeout_as_in_envoy",
        &config,
        Vec::new(),
    ) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .expect("timeout");
        s.write_all(&upgrade_request("/chat", "websocket"))
            .expect("send");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let idle = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let waited = idle.elapsed();
        assert!(
            (250..2000).contains(&waited.as_millis()),
            "port {port}: closed after {waited:?}"
        );
    }
}
