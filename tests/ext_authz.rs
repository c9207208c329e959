//! `envoy.filters.http.ext_authz` with an HTTP authorization service,
//! against Envoy 1.40 on the same config: the check each request waits
//! on (what the service sees), an allowing answer's headers upstream and
//! on the response, denials as the service gave them, errors and
//! timeouts, `failure_mode_allow`, per-route disabling, over HTTP/1.1 and
//! HTTP/2; statuses, bodies, headers, what both backends saw, stats and
//! access logs compared.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

fn routes() -> String {
    format!(
        "            - name: all
              domains: [\"example.com\"]
              routes:
              - match: {{ prefix: \"/off\" }}
                route: {{ cluster: app }}
                typed_per_filter_config:
                  authz: {{ \"@type\": {PER_ROUTE}, disabled: true }}
              - match: {{ prefix: \"/allow/settings\" }}
                route: {{ cluster: app }}
                typed_per_filter_config:
                  authz: {{ \"@type\": {PER_ROUTE}, check_settings: {{ context_extensions: {{ k: v }} }} }}
              - match: {{ prefix: \"/\" }}
                route: {{ cluster: app }}
"
    )
}

fn filter(service: &str, extra: &str) -> String {
    filter_with(service, "", extra)
}

/// The filter, with `client` added to `authorization_response`.
fn filter_with(service: &str, client: &str, extra: &str) -> String {
    format!(
        "          - name: authz
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              http_service:
                server_uri: {{ uri: \"http://authz.example/ignored\", cluster: {service}, timeout: 0.3s }}
                path_prefix: /authz
                authorization_request:
                  allowed_headers: {{ patterns: [ {{ exact: x-want }}, {{ prefix: x-pass- }} ] }}
                  headers_to_add: [ {{ key: x-added, value: \"yes\" }}, {{ key: x-want, value: replaced }} ]
                authorization_response:
                  allowed_upstream_headers: {{ patterns: [ {{ exact: x-auth-user }} ] }}
                  allowed_upstream_headers_to_append: {{ patterns: [ {{ exact: x-append }} ] }}
                  allowed_client_headers_on_success: {{ patterns: [ {{ exact: x-resp }} ] }}
{client}{extra}"
    )
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: example.com\r\nX-Want: 1\r\nx-pass-a: 2\r\nx-other: 3\r\nauthorization: Basic abc\r\nx-auth-user: mallory\r\nx-remove-me: r\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn log_format(config: &str) -> String {
    with_file_log(
        config,
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\\n",
    )
}

/// Envoy and Ringway on `http_filter`, over an app backend and an HTTP
/// authorization service (cluster `authz`), both compared; `logged` adds
/// the access log.
fn start_with_http_service(test: &str, http_filter: &str, logged: bool) -> Option<Pair> {
    let app = Backend::start("app");
    let authz = Backend::start("authz");
    let clusters = port_cluster("app", app.port()) + &port_cluster("authz", authz.port());
    let mut config = http_config(&routes(), &clusters);
    if logged {
        config = log_format(&config);
    }
    let config = with_admin(&config.with_http_filter(http_filter));
    Pair::start(test, &config, vec![app, authz])
}

#[test]
fn requests_are_checked_as_in_envoy() {
    let Some(pair) = start_with_http_service(
        "requests_are_checked_as_in_envoy",
        &filter("authz", ""),
        true,
    ) else {
        return;
    };
    let cases = [
        (get("/allow/a?q=1", "x-append: one\r\n"), 200),
        (get("/allow/b", ""), 200),
        (get("/deny/c", ""), 401),
        (get("/redirect/d", ""), 302),
        (get("/error/e", ""), 403),
        (get("/slow/f", ""), 403),
        (get("/close/g", ""), 403),
        (get("/off/h", ""), 200),
        (get("/allow/settings", ""), 200),
        (
            b"POST /allow/body HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\n\r\nhello"
                .to_vec(),
            200,
        ),
        // No route: not checked.
        (
            b"GET /allow/x HTTP/1.1\r\nhost: elsewhere.example\r\n\r\n".to_vec(),
            404,
        ),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, expected);
    assert_eq!(observed[2].body, "{\"denied\":true}");
    // The request itself (app's view first), then the check.
    let allowed = &observed[0].upstream;
    let paths: Vec<&str> = allowed.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["/allow/a?q=1", "/authz/allow/a?q=1"]);
    let forwarded = &allowed[0].headers;
    assert!(
        forwarded.contains(&("x-auth-user".into(), "alice".into()))
            && forwarded.contains(&("x-append".into(), "two".into()))
            && forwarded.iter().all(|(n, _)| n != "x-remove-me"),
        "{forwarded:?}"
    );
    let host = "host: example.com";
    let h2 = pair.assert_all_same_h2(&[
        &["-H", host, "-H", "x-want: 1", "/allow/h2"],
        &["-H", host, "/deny/h2"],
        &["-H", host, "/error/h2"],
    ]);
    assert_eq!(
        h2.iter().map(|o| o.status).collect::<Vec<_>>(),
        [200, 401, 403]
    );
    pair.assert_same_stats(&[
        "http.ingress_http.ext_authz.ok",
        "http.ingress_http.ext_authz.denied",
        "http.ingress_http.ext_authz.error",
        "http.ingress_http.ext_authz.disabled",
        "http.ingress_http.ext_authz.failure_mode_allowed",
        "cluster.app.ext_authz.ok",
        "cluster.app.ext_authz.denied",
        "cluster.app.ext_authz.error",
        "cluster.app.ext_authz.failure_mode_allowed",
        "cluster.app.upstream_rq_401",
        "cluster.app.upstream_rq_302",
        "cluster.app.upstream_rq_completed",
        "cluster.authz.upstream_rq_200",
        "cluster.authz.upstream_rq_503",
        "cluster.authz.upstream_rq_504",
        "cluster.authz.upstream_rq_timeout",
        "http.ingress_http.downstream_rq_4xx",
    ]);
    pair.assert_same_log(cases.len() + 3);
}

#[test]
fn failures_follow_the_filter_settings_as_in_envoy() {
    let allow = "              failure_mode_allow: true\n              failure_mode_allow_header_add: true\n              stat_prefix: front\n";
    let Some(pair) = start_with_http_service(
        "failures_follow_the_filter_settings_as_in_envoy",
        &filter("authz", allow),
        false,
    ) else {
        return;
    };
    let observed = pair.assert_all_same(&[
        get("/error/a", ""),
        get("/slow/b", "x-envoy-auth-failure-mode-allowed: spoofed\r\n"),
        get("/deny/c", ""),
        get("/allow/d", ""),
    ]);
    assert_eq!(
        observed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [200, 200, 401, 200]
    );
    pair.assert_same_stats(&[
        "http.ingress_http.ext_authz.front.ok",
        "http.ingress_http.ext_authz.front.error",
        "http.ingress_http.ext_authz.front.failure_mode_allowed",
        "cluster.app.ext_authz.front.failure_mode_allowed",
        "cluster.app.ext_authz.front.error",
    ]);
    // A client that leaves while its request waits on the check: the
    // call ends within its timeout and the proxy goes on serving.
    for _ in 0..3 {
        let mut gone = Client::connect(pair.ringway.port);
        gone.send(&get("/slow/gone", ""));
    }
    // (Past the check's timeout and anything the checks led to.)
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = pair.assert_same(&get("/allow/after", ""));
    assert_eq!(after.status, 200);
    drop(pair);

    // Only the listed headers of a denial (and Envoy's four), and no
    // response stats charged to the route's cluster.
    let listed =
        "                  allowed_client_headers: { patterns: [ { exact: x-deny-reason } ] }\n";
    let uncharged = "              charge_cluster_response_stats: false\n";
    let Some(pair) = start_with_http_service(
        "failures_follow_the_filter_settings_as_in_envoy",
        &filter_with("authz", listed, uncharged),
        false,
    ) else {
        return;
    };
    let observed = pair.assert_all_same(&[get("/deny/a", ""), get("/redirect/b", "")]);
    assert_eq!(
        observed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [401, 302]
    );
    pair.assert_same_stats(&[
        "cluster.app.ext_authz.denied",
        "cluster.app.upstream_rq_401",
        "cluster.app.upstream_rq_completed",
    ]);
    drop(pair);

    // A cluster the config does not have, and an own status on error.
    let own_status = "              status_on_error: { code: 502 }\n";
    let Some(pair) = start_with_http_service(
        "failures_follow_the_filter_settings_as_in_envoy",
        &filter("nowhere", own_status),
        false,
    ) else {
        return;
    };
    let observed = pair.assert_all_same(&[get("/allow/a", ""), get("/off/b", "")]);
    assert_eq!(
        observed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [502, 200]
    );
}

const GRPC_CLUSTER: &str = "  - name: authz\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } }\n    load_assignment:\n      cluster_name: authz\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: PORT } } }\n";

const GRPC_FILTER: &str = "          - name: authz
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              grpc_service: { envoy_grpc: { cluster_name: authz }, timeout: 1s }
              transport_api_version: V3
";

/// A check as the service logged it, with what differs by nature between
/// two proxies (times, ids, ports) masked.
fn normalised_check(line: &str) -> serde_json::Value {
    let mut check: serde_json::Value = serde_json::from_str(line).expect("a JSON check");
    let attributes = &mut check["attributes"];
    for masked in [
        "/request/time",
        "/request/http/id",
        "/request/http/headers/x-request-id",
        "/source/address/socketAddress/portValue",
        "/destination/address/socketAddress/portValue",
    ] {
        if let Some(value) = attributes.pointer_mut(masked) {
            *value = "<masked>".into();
        }
    }
    check
}

#[test]
fn grpc_checks_are_made_and_answered_as_in_envoy() {
    let dir = TempDir::new();
    let log = dir.0.join("checks.jsonl");
    let service = PortPeer::start(&[
        "python3",
        "tests/peers/authz_grpc.py",
        &log.display().to_string(),
    ]);
    let app = Backend::start("app");
    let clusters =
        port_cluster("app", app.port()) + &GRPC_CLUSTER.replace("PORT", &service.1.to_string());
    let config = log_format(&http_config(&routes(), &clusters)).with_http_filter(GRPC_FILTER);
    let Some(pair) = Pair::start(
        "grpc_checks_are_made_and_answered_as_in_envoy",
        &with_admin(&config),
        vec![app],
    ) else {
        return;
    };
    let cases = [
        (
            get("/allow/a?q=1", "x-append: one\r\nx-other: mine\r\n"),
            200,
        ),
        (get("/append/b", "x-append: one\r\nx-other: mine\r\n"), 200),
        (get("/deny/c", ""), 401),
        (get("/refuse/d", ""), 403),
        (get("/error/e", ""), 403),
        (get("/other/f", ""), 200),
        (get("/off/g", ""), 200),
        (get("/allow/settings", ""), 200),
        (
            b"POST /allow/body HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\n\r\nhello"
                .to_vec(),
            200,
        ),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, expected);
    assert_eq!(observed[2].body, "denied by authz");
    let host = "host: example.com";
    let h2 = pair.assert_all_same_h2(&[
        &["-H", host, "-H", "x-append: one", "/allow/h2"],
        &["-H", host, "/deny/h2"],
    ]);
    assert_eq!(h2.iter().map(|o| o.status).collect::<Vec<_>>(), [200, 401]);
    // Every check Ringway made, then Envoy's of the same request.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let checks: Vec<serde_json::Value> = text.lines().map(normalised_check).collect();
    assert_eq!(checks.len(), 2 * (cases.len() - 1 + 2), "{text}");
    for pair in checks.chunks(2) {
        assert_eq!(pair[0], pair[1], "ringway's check, then envoy's");
    }
    pair.assert_same_stats(&[
        "http.ingress_http.ext_authz.ok",
        "http.ingress_http.ext_authz.denied",
        "http.ingress_http.ext_authz.error",
        "cluster.app.ext_authz.ok",
        "cluster.app.ext_authz.denied",
        "cluster.app.ext_authz.error",
        "cluster.app.upstream_rq_401",
        "cluster.app.upstream_rq_403",
        "cluster.authz.upstream_rq_200",
    ]);
    pair.assert_same_log(cases.len() + 2);
}

#[test]
fn allowed_and_disallowed_headers_as_in_envoy() {
    let headers = "x-want: 1\r\nx-pass-b: 2\r\nx-secret: s\r\nauthorization: Bearer t\r\n";
    let request = format!("GET /allow/a HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n");
    // The HTTP service: the filter's lists replace authorization_request's,
    // and disallowed_headers takes even authorization away.
    let http_filter = "          - name: authz
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              allowed_headers: { patterns: [ { exact: x-want }, { exact: x-secret } ] }
              disallowed_headers: { patterns: [ { exact: x-secret }, { exact: authorization } ] }
              http_service:
                server_uri: { uri: \"http://authz.example/\", cluster: authz, timeout: 1s }
                path_prefix: /authz
";
    let Some(pair) = start_with_http_service(
        "allowed_and_disallowed_headers_as_in_envoy",
        http_filter,
        false,
    ) else {
        return;
    };
    let seen = pair.assert_same(request.as_bytes());
    let check = &seen.upstream[1];
    assert!(
        check.headers.iter().any(|(n, _)| n == "x-want")
            && !check
                .headers
                .iter()
                .any(|(n, _)| n == "x-secret" || n == "authorization"),
        "{check:?}"
    );
    drop(pair);

    // The gRPC service: only the allowed headers (no pseudo-headers),
    // less the disallowed ones; or every header less the disallowed.
    for (lists, only) in [
        (
            "allowed_headers: { patterns: [ { exact: x-want }, { prefix: x-pass- }, { exact: x-secret } ] }\n              disallowed_headers: { patterns: [ { exact: x-secret } ] }",
            true,
        ),
        (
            "disallowed_headers: { patterns: [ { exact: x-secret }, { prefix: \":\" } ] }",
            false,
        ),
    ] {
        let dir = TempDir::new();
        let log = dir.0.join("checks.jsonl");
        let service = PortPeer::start(&[
            "python3",
            "tests/peers/authz_grpc.py",
            &log.display().to_string(),
        ]);
        let app = Backend::start("app");
        let clusters = port_cluster("app", app.port())
            + &GRPC_CLUSTER.replace("PORT", &service.1.to_string());
        let filter = GRPC_FILTER.replace(
            "              transport_api_version: V3\n",
            &format!("              transport_api_version: V3\n              {lists}\n"),
        );
        let config = http_config(&routes(), &clusters).with_http_filter(&filter);
        let Some(pair) = Pair::start(
            "allowed_and_disallowed_headers_as_in_envoy",
            &with_admin(&config),
            vec![app],
        ) else {
            return;
        };
        pair.assert_same(request.as_bytes());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let checks: Vec<serde_json::Value> = text.lines().map(normalised_check).collect();
        assert_eq!(checks.len(), 2, "{text}");
        assert_eq!(checks[0], checks[1], "ringway's check, then envoy's");
        let sent = &checks[0]["attributes"]["request"]["http"]["headers"];
        let names: Vec<&str> = sent
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if only {
            assert_eq!(names, ["x-pass-b", "x-want"]);
        } else {
            assert!(
                names.contains(&"authorization") && !names.contains(&"x-secret"),
                "{names:?}"
            );
        }
    }
}
