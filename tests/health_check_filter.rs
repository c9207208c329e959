//! The `envoy.filters.http.health_check` filter against Envoy 1.40 on the
//! same configs: health checks answered here or passed through, what
//! `/healthcheck/fail` does to them and to every other response, the
//! `cluster_min_healthy_percentages` verdicts, response flags and stats.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const APP: &str = "  - name: app\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {app} } } }\n  - name: empty\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment: { cluster_name: empty }\n";

const ROUTES: &str = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\" }\n                route: { cluster: app }\n                response_headers_to_add: [ { header: { key: x-route, value: r } } ]\n";

/// Both proxies with the health-check filter configured by `fields`
/// (its `typed_config` beyond `@type`) and `routes`, `node.cluster` "front", and an
/// access log of each response's code and flags.
fn pair(test: &str, fields: &str, routes: &str) -> Option<Pair> {
    let backend = Backend::start("app");
    let clusters = APP.replace("{app}", &backend.port().to_string());
    let logged = with_file_log(
        &http_config(routes, &clusters),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    );
    let config = logged.replace(
            "          http_filters:\n",
            &format!("          http_filters:\n          - name: envoy.filters.http.health_check\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck\n{fields}"),
    );
    let config = format!(
        "node: {{ id: n1, cluster: front }}\n{}",
        with_admin(&config)
    );
    Pair::start(test, &config, vec![backend])
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n\r\n").into_bytes()
}

/// `/healthcheck/fail` on both proxies.
fn fail_health_checks(pair: &Pair) {
    for admin in [pair.envoy.admin, pair.ringway_admin] {
        assert_eq!(admin_request(admin, "POST", "/healthcheck/fail").0, 200);
    }
}

const STATS: [&str; 10] = [
    "http.ingress_http.health_check.request_total",
    "http.ingress_http.health_check.ok",
    "http.ingress_http.health_check.failed",
    "http.ingress_http.health_check.failed_cluster_not_found",
    "http.ingress_http.health_check.failed_cluster_empty",
    "http.ingress_http.health_check.failed_cluster_unhealthy",
    "http.ingress_http.downstream_rq_total",
    "http.ingress_http.downstream_rq_completed",
    "http.ingress_http.downstream_rq_2xx",
    "http.ingress_http.downstream_rq_5xx",
];

/// Outside pass-through mode a health check is answered here, 200 while
/// the watched clusters are healthy enough (an empty one at 0% is), and
/// never reaches the backend; after `/healthcheck/fail` it is a 503
/// (flag LH) and every response closes its connection and carries
/// `x-envoy-immediate-health-check-fail`.
#[test]
fn health_checks_are_answered_here_as_in_envoy() {
    let fields = "              pass_through_mode: false\n              headers: [ { name: \":path\", string_match: { exact: /healthz } } ]\n              cluster_min_healthy_percentages: { app: { value: 100 }, empty: { value: 0 } }\n";
    let Some(pair) = pair(
        "health_checks_are_answered_here_as_in_envoy",
        fields,
        ROUTES,
    ) else {
        return;
    };
    let ok = pair.assert_same(&get("/healthz"));
    assert_eq!(ok.status, 200);
    assert!(ok.upstream.is_empty(), "a health check reached the backend");
    pair.assert_same(&get("/healthz?x=1"));
    pair.assert_same(&get("/other"));
    fail_health_checks(&pair);
    let failed = pair.assert_same(&get("/healthz"));
    assert_eq!(failed.status, 503);
    let other = pair.assert_same(&get("/other"));
    assert_eq!(other.status, 200);
    pair.assert_same_stats(&STATS);
    let ringway = pair.assert_same_log(5);
    assert!(ringway.contains("/healthz 503 LH"), "{ringway}");
}

/// In pass-through mode a health check goes upstream (its answer names
/// this proxy's cluster) until `/healthcheck/fail`, then it is answered
/// here.
#[test]
fn pass_through_health_checks_as_in_envoy() {
    let fields = "              pass_through_mode: true\n              headers: [ { name: \":path\", string_match: { prefix: /health } }, { name: x-check, present_match: true } ]\n";
    let Some(pair) = pair("pass_through_health_checks_as_in_envoy", fields, ROUTES) else {
        return;
    };
    let check = b"GET /healthz HTTP/1.1\r\nhost: example.com\r\nx-check: 1\r\n\r\n";
    let passed = pair.assert_same(check);
    assert_eq!((passed.status, passed.upstream.len()), (200, 1));
    // Without the header it is an ordinary request.
    pair.assert_same(&get("/healthz"));
    fail_health_checks(&pair);
    let answered = pair.assert_same(check);
    assert_eq!((answered.status, answered.upstream.len()), (503, 0));
    pair.assert_same_stats(&STATS);
}

/// A watched cluster that does not exist, or that is empty where some
/// hosts must be healthy, fails the check.
#[test]
fn missing_and_empty_clusters_fail_health_checks_as_in_envoy() {
    for (test, watched) in [
        (
            "missing_clusters_fail_health_checks",
            "{ ghost: { value: 10 } }",
        ),
        (
            "empty_clusters_fail_health_checks",
            "{ app: { value: 50 }, empty: { value: 1 } }",
        ),
    ] {
        let fields = format!("              pass_through_mode: false\n              headers: [ {{ name: \":path\", string_match: {{ exact: /healthz }} }} ]\n              cluster_min_healthy_percentages: {watched}\n");
        let Some(pair) = pair(test, &fields, ROUTES) else {
            return;
        };
        let failed = pair.assert_same(&get("/healthz"));
        assert_eq!(failed.status, 503, "{test}");
        pair.assert_same_stats(&STATS);
    }
}

/// `typed_per_filter_config` turns the filter off for one route and for a
/// whole virtual host: checks there go upstream like any request.
#[test]
fn routes_and_virtual_hosts_turn_the_filter_off_as_in_envoy() {
    let off = "{ envoy.filters.http.health_check: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true } }";
    let routes = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/nocheck\" }}\n                route: {{ cluster: app }}\n                typed_per_filter_config: {off}\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: app }}\n            - name: quiet\n              domains: [\"quiet.example\"]\n              typed_per_filter_config: {off}\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: app }}\n"
    );
    let fields = "              pass_through_mode: false\n              headers: [ { name: x-check, present_match: true } ]\n";
    let Some(pair) = pair(
        "routes_and_virtual_hosts_turn_the_filter_off",
        fields,
        &routes,
    ) else {
        return;
    };
    let check = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nx-check: 1\r\n\r\n").into_bytes()
    };
    let answered = pair.assert_same(&check("example.com", "/healthz"));
    assert!(answered.upstream.is_empty(), "the filter did not answer");
    for (host, path) in [("example.com", "/nocheck"), ("quiet.example", "/healthz")] {
        let passed = pair.assert_same(&check(host, path));
        assert_eq!(passed.upstream.len(), 1, "{host}{path} was not forwarded");
    }
    pair.assert_same_stats(&STATS);
}
