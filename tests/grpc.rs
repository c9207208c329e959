//! gRPC through HTTP/2 on both sides, with a grpcio client and server
//! (tests/peers/grpc_peer.py) nobody here wrote: every call kind, large
//! messages, deadlines, cancellations and trailers-only errors, compared
//! with Envoy 1.40 on the same bootstrap; and an HTTP/1.1 client to the
//! same HTTP/2 upstream.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::process::Command;

/// The grpcio test server.
fn grpc_server() -> PortPeer {
    PortPeer::start(&["python3", "tests/peers/grpc_peer.py", "server"])
}

/// The grpcio client's result lines through `port`.
fn grpc_client(port: u16) -> Vec<String> {
    let out = Command::new("timeout")
        .args(["60", "python3", "tests/peers/grpc_peer.py", "client"])
        .arg(port.to_string())
        .output()
        .expect("run the grpcio client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn grpcio_or_skip(test: &str) -> bool {
    tool_or_skip(test, &["python3", "-c", "import grpc"])
}

/// A listener routing everything to an HTTP/2 cluster of `port`, with an
/// access log whose lines name the gRPC status; `protocol` is the
/// cluster's protocol options.
fn config(port: u16, protocol: &str) -> String {
    let format = "%PROTOCOL% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %GRPC_STATUS% %UPSTREAM_CLUSTER%\\n";
    let cluster = format!(
        "  - name: grpc\n    type: STATIC\n    connect_timeout: 1s\n{protocol}    load_assignment:\n      cluster_name: grpc\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
    );
    // Only gRPC requests route (`match.grpc`), as a gRPC-only listener
    // would have it.
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\", grpc: {} }\n                route: { cluster: grpc }\n";
    with_admin(&http_config(routes, &cluster)).replace(
        "          stat_prefix: ingress_http\n",
        &format!(
            "          stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{{log}}\"\n              log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}\n"
        ),
    )
}

const EXPLICIT_H2: &str = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }\n";

#[test]
fn grpc_calls_match_envoy() {
    if !grpcio_or_skip("grpc_calls_match_envoy") {
        return;
    }
    let server = grpc_server();
    let Some(pair) = Pair::start(
        "grpc_calls_match_envoy",
        &config(server.1, EXPLICIT_H2),
        Vec::new(),
    ) else {
        return;
    };
    let ringway = grpc_client(pair.ringway.port);
    let envoy = grpc_client(pair.envoy.port);
    assert_eq!(ringway, envoy, "grpcio client through each");
    // Every call kind got through, not merely the same failure on both.
    for expected in [
        "unary OK b'hello'",
        "bidi-ping-pong OK [b'p1', b'p2', b'p3']",
        "large OK 4194304",
        "trailers-only NOT_FOUND failed with NOT_FOUND",
        "error-after-message RESOURCE_EXHAUSTED failed with RESOURCE_EXHAUSTED",
        "deadline DEADLINE_EXCEEDED Deadline Exceeded",
        "cancel cancelled=True",
        "after-cancel OK b'again'",
    ] {
        assert!(
            ringway.iter().any(|l| l == expected),
            "{expected}: {ringway:?}"
        );
    }
    // A request that is not gRPC matches no route, in both.
    let plain = pair.assert_all_same_h2(&[&["/test.Echo/Unary"]]);
    assert_eq!(plain[0].status, 404);
    // Streams share one upstream connection; the gRPC statuses (from
    // trailers or trailers-only heads) reach the log.
    pair.assert_same_stats(&[
        "cluster.grpc.upstream_cx_total",
        "cluster.grpc.upstream_cx_http2_total",
        // Not upstream_rq_200: whether a cancelled or timed-out call's
        // answer was counted races with the client's reset.
        "cluster.grpc.upstream_rq_total",
        "http.ingress_http.downstream_rq_http2_total",
    ]);
    let lines = ringway.len() + 2;
    let logged = |path| {
        // The deadline and cancelled calls are left out: whether the
        // server's own DEADLINE_EXCEEDED or the client's reset arrives
        // first is a race, in either proxy.
        let mut lines: Vec<String> = log_lines(path, lines)
            .lines()
            .filter(|l| !l.contains("/test.Echo/Slow"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        logged(&pair.logs.0),
        logged(&pair.logs.1),
        "access-log lines"
    );
}

#[test]
fn follow_downstream_and_http1_clients_reach_an_http2_upstream() {
    if !grpcio_or_skip("follow_downstream_and_http1_clients_reach_an_http2_upstream") {
        return;
    }
    let server = grpc_server();
    // An HTTP/1.1 client's gRPC request to the HTTP/2 upstream: the
    // answer's trailers cannot reach it (Envoy drops them too), its body
    // does.
    let mut framed = vec![0u8, 0, 0, 0, 5];
    framed.extend_from_slice(b"hello");
    let mut request = b"POST /test.Echo/Unary HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc\r\nte: trailers\r\ncontent-length: 10\r\n\r\n".to_vec();
    request.extend_from_slice(&framed);
    let Some(pair) = Pair::start(
        "follow_downstream_and_http1_clients_reach_an_http2_upstream",
        &config(server.1, EXPLICIT_H2),
        Vec::new(),
    ) else {
        return;
    };
    let answered = pair.assert_same(&request);
    assert_eq!(answered.status, 200);
    assert!(answered.body.ends_with("hello"), "{answered:?}");
    drop(pair);
    // use_downstream_protocol_config: HTTP/2 for an HTTP/2 client.
    let follow = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} }\n";
    let Some(pair) = Pair::start(
        "follow_downstream_and_http1_clients_reach_an_http2_upstream",
        &config(server.1, follow),
        Vec::new(),
    ) else {
        return;
    };
    let ringway = grpc_client(pair.ringway.port);
    assert_eq!(ringway, grpc_client(pair.envoy.port));
    assert!(
        ringway.contains(&"unary OK b'hello'".to_string()),
        "{ringway:?}"
    );
    pair.assert_same_stats(&[
        "cluster.grpc.upstream_cx_http1_total",
        "cluster.grpc.upstream_cx_http2_total",
    ]);
}
