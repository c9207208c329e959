//! `envoy.filters.http.ratelimit` (the global rate limit filter) against
//! Envoy 1.40 on the same config, with a rate limit service written on
//! grpcio and the gRPC team's Envoy API (tests/peers/rls_server.py): the
//! descriptors the service is asked about, `OVER_LIMIT` as 429 with
//! `x-envoy-ratelimited`, the service's headers on the request and the
//! response, failed and timed-out calls with and without
//! `failure_mode_deny`, over HTTP/1.1 and HTTP/2; statuses, bodies,
//! headers, what the backend and the service saw, stats and logs
//! compared.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const RLS_CLUSTER: &str = "  - name: rls\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } }\n    load_assignment:\n      cluster_name: rls\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: RLS_PORT } } }\n";

fn routes() -> String {
    "            - name: all
              domains: [\"*\"]
              routes:
              - match: { prefix: \"/free\" }
                route: { cluster: app }
              - match: { prefix: \"/multi\" }
                route:
                  cluster: app
                  rate_limits:
                  - actions: [ { request_headers: { header_name: x-verdict, descriptor_key: verdict } }, { generic_key: { descriptor_value: multi } } ]
                  - actions: [ { destination_cluster: {} } ]
                  - stage: 1
                    actions: [ { generic_key: { descriptor_value: other-stage } } ]
              - match: { prefix: \"/\" }
                route:
                  cluster: app
                  rate_limits: [ { actions: [ { request_headers: { header_name: x-verdict, descriptor_key: verdict } } ] } ]
"
    .to_string()
}

fn filter(extra: &str) -> String {
    format!(
        "          - name: rl
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: edge
              timeout: 1s
              rate_limit_service: {{ transport_api_version: V3, grpc_service: {{ envoy_grpc: {{ cluster_name: rls }} }} }}
{extra}"
    )
}

fn get(path: &str, verdict: &str) -> Vec<u8> {
    let verdict = if verdict.is_empty() {
        String::new()
    } else {
        format!("x-verdict: {verdict}\r\n")
    };
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nx-rl-request: client\r\n{verdict}\r\n")
        .into_bytes()
}

/// Starts the service (its log in `dir`) and both proxies on `filter`.
fn start(test: &str, dir: &TempDir, extra: &str) -> Option<(Pair, PortPeer)> {
    let log = dir.0.join("rls.jsonl");
    let rls = PortPeer::start(&[
        "python3",
        "tests/peers/rls_server.py",
        &log.display().to_string(),
    ]);
    let app = Backend::start("app");
    let clusters =
        port_cluster("app", app.port()) + &RLS_CLUSTER.replace("RLS_PORT", &rls.1.to_string());
    let config = with_file_log(
        &http_config(&routes(), &clusters),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\\n",
    )
    .with_http_filter(&filter(extra));
    let pair = Pair::start(test, &with_admin(&config), vec![app])?;
    Some((pair, rls))
}

/// The service's log: each call Ringway made, then the same call Envoy
/// made, must be the same.
fn assert_same_calls(dir: &TempDir, calls: usize) -> Vec<String> {
    let text = std::fs::read_to_string(dir.0.join("rls.jsonl")).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2 * calls, "{text}");
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], pair[1], "ringway's call, then envoy's");
    }
    lines.into_iter().step_by(2).collect()
}

#[test]
fn requests_are_limited_as_in_envoy() {
    let dir = TempDir::new();
    let Some((pair, _rls)) = start("requests_are_limited_as_in_envoy", &dir, "") else {
        return;
    };
    let cases = [
        (get("/a", "ok"), 200),
        (get("/a", "over"), 429),
        (get("/a", "error"), 200),
        (get("/a", "unknown"), 200),
        (get("/a", "slow"), 200),
        (get("/a", ""), 200),
        (get("/multi", "ok"), 200),
        (get("/free", "over"), 200),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, expected);
    assert_eq!(
        observed[1]
            .headers
            .iter()
            .find(|(n, _)| n == "x-envoy-ratelimited")
            .map(|(_, v)| v.as_str()),
        Some("true")
    );
    let forwarded = &observed[0].upstream[0].headers;
    assert!(
        forwarded.contains(&("x-rl-request".into(), "ok".into())),
        "{forwarded:?}"
    );
    let h2 = pair.assert_all_same_h2(&[
        &["-H", "x-verdict: ok", "/h2"],
        &["-H", "x-verdict: over", "/h2"],
    ]);
    assert_eq!(h2.iter().map(|o| o.status).collect::<Vec<_>>(), [200, 429]);
    let calls = assert_same_calls(&dir, 8);
    assert_eq!(
        calls[5],
        r#"{"domain": "edge", "descriptors": [[["verdict", "ok"], ["generic_key", "multi"]], [["destination_cluster", "app"]]], "hits_addend": 0}"#
    );
    pair.assert_same_stats(&[
        "cluster.app.ratelimit.ok",
        "cluster.app.ratelimit.over_limit",
        "cluster.app.ratelimit.error",
        "cluster.app.ratelimit.failure_mode_allowed",
        // The slow call ends in a race: the proxy's 1 s timeout (504)
        // against grpcio's own deadline from `grpc-timeout`
        // (DEADLINE_EXCEEDED in a 200); either is an error, and either way
        // the call completes.
        "cluster.rls.upstream_rq_completed",
        "http.ingress_http.downstream_rq_4xx",
    ]);
    pair.assert_same_log(cases.len() + 2);
}

#[test]
fn failure_mode_deny_and_own_settings_as_in_envoy() {
    let dir = TempDir::new();
    let extra = "              failure_mode_deny: true\n              stat_prefix: front\n              response_headers_to_add: [ { header: { key: x-limited, value: \"yes\" } }, { header: { key: x-rl-response, value: mine }, append_action: OVERWRITE_IF_EXISTS_OR_ADD } ]\n              disable_x_envoy_ratelimited_header: true\n              rate_limited_status: { code: 503 }\n              status_on_error: { code: 502 }\n              rate_limits: [ { actions: [ { request_headers: { header_name: x-verdict, descriptor_key: own } } ] } ]\n";
    let Some((pair, _rls)) = start(
        "failure_mode_deny_and_own_settings_as_in_envoy",
        &dir,
        extra,
    ) else {
        return;
    };
    let observed = pair.assert_all_same(&[
        get("/a", "ok"),
        get("/free", "over"),
        get("/a", "error"),
        get("/a", "slow"),
    ]);
    assert_eq!(
        observed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [200, 503, 502, 502]
    );
    assert_same_calls(&dir, 4);
    pair.assert_same_stats(&[
        "cluster.app.ratelimit.front.ok",
        "cluster.app.ratelimit.front.over_limit",
        "cluster.app.ratelimit.front.error",
        "cluster.app.ratelimit.ok",
    ]);
    pair.assert_same_log(4);
}
