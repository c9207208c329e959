//! The `envoy.filters.http.fault` filter against Envoy 1.40 on the same
//! config: aborts and delays from the config and from the request's
//! `x-envoy-fault-*` headers, gRPC aborts, a route's own settings,
//! `max_active_faults`, response flags and stats.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::time::{Duration, Instant};

const ROUTES: &str = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/routed\" }\n                route: { cluster: app }\n                typed_per_filter_config:\n                  envoy.filters.http.fault: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: { header_abort: {}, percentage: { numerator: 100 } } }\n              - match: { prefix: \"/weighted\" }\n                route: { weighted_clusters: { clusters: [ { name: app, weight: 1 } ] } }\n                typed_per_filter_config:\n                  envoy.filters.http.fault: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, upstream_cluster: app, abort: { http_status: 503, percentage: { numerator: 100 } } }\n              - match: { prefix: \"/elsewhere\" }\n                route: { cluster: app }\n                typed_per_filter_config:\n                  envoy.filters.http.fault: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, upstream_cluster: other, abort: { http_status: 503, percentage: { numerator: 100 } } }\n              - match: { prefix: \"/slow\" }\n                route: { cluster: app }\n                typed_per_filter_config:\n                  envoy.filters.http.fault: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, max_active_faults: 1, delay: { fixed_delay: 0.6s, percentage: { numerator: 100 } } }\n              - match: { prefix: \"/\" }\n                route: { cluster: app }\n";

const FAULT: &str = "          - name: envoy.filters.http.fault\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n              headers: [ { name: x-fault, present_match: true } ]\n              abort: { http_status: 418, percentage: { numerator: 100 } }\n              delay: { header_delay: {}, percentage: { numerator: 100 } }\n";

fn request(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n").into_bytes()
}

#[test]
fn faults_are_injected_as_in_envoy() {
    let backend = Backend::start("app");
    let config = with_file_log(
        &http_config(ROUTES, &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(FAULT);
    let Some(pair) = Pair::start(
        "faults_are_injected_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let grpc = "x-fault: 1\r\ncontent-type: application/grpc\r\nte: trailers\r\n";
    let observed = pair.assert_all_same(&[
        request("/aborted", "x-fault: 1\r\n"),
        request("/plain", ""),
        request("/grpc", grpc),
        request("/routed", "x-envoy-fault-abort-request: 503\r\n"),
        request("/routed", "x-envoy-fault-abort-grpc-request: 14\r\n"),
        request(
            "/routed",
            "x-envoy-fault-abort-request: 503\r\nx-envoy-fault-abort-request-percentage: 0\r\n",
        ),
        request("/routed", "x-envoy-fault-abort-request: 99\r\n"),
        request("/weighted", ""),
        request("/elsewhere", ""),
    ]);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [418, 200, 200, 503, 200, 200, 200, 503, 200]);
    // A delay the request asks for, then the abort. Envoy's timers may fire
    // a few milliseconds early (297 ms seen for 300).
    for (side, port) in [("ringway", pair.ringway.port), ("envoy", pair.envoy.port)] {
        let started = Instant::now();
        let r = get_with(
            port,
            "/delayed",
            &[("x-fault", "1"), ("x-envoy-fault-delay-request", "300")],
        );
        assert_eq!(r.status, 418);
        assert!(
            started.elapsed() >= Duration::from_millis(280),
            "{side}: not delayed ({:?})",
            started.elapsed()
        );
    }
    // One fault active at most on /slow: a second request while the first
    // is held is not delayed (faults_overflow).
    for port in [pair.ringway.port, pair.envoy.port] {
        let held = std::thread::spawn(move || get(port, "example.com", "/slow"));
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        assert_eq!(get(port, "example.com", "/slow").status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{port}: delayed past the limit"
        );
        assert_eq!(held.join().map(|r| r.status).unwrap_or(0), 200);
    }
    pair.assert_same_stats(&[
        "http.ingress_http.fault.aborts_injected",
        "http.ingress_http.fault.delays_injected",
        "http.ingress_http.fault.faults_overflow",
        "http.ingress_http.fault.active_faults",
        "http.ingress_http.downstream_rq_4xx",
        "http.ingress_http.downstream_rq_5xx",
    ]);
    let lines = 12;
    let sorted = |path: &std::path::Path| {
        let mut l: Vec<String> = log_lines(path, lines).lines().map(str::to_string).collect();
        l.sort();
        l.join("\n")
    };
    let (ringway, envoy) = (sorted(&pair.logs.0), sorted(&pair.logs.1));
    assert_eq!(
        ringway, envoy,
        "\n--- ringway\n{ringway}\n--- envoy\n{envoy}"
    );
    assert!(ringway.contains("/delayed 418 DI,FI"), "{ringway}");
}

/// GET `path` from `port` with extra headers.
fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut client = Client::connect(port);
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    client.send(&request(path, &extra));
    client.read_response(false).expect("a response")
}
