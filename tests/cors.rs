//! The `envoy.filters.http.cors` filter against Envoy 1.40 on the same
//! config: preflights answered (allowed and not, forwarded or not, `*`
//! echoing the request), responses to allowed origins marked (replacing
//! what the upstream and the route set), policies merged from route and
//! virtual host, private-network access, the route and virtual host
//! `cors` fields, a disabled policy, stats.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

fn routes() -> String {
    let policy = |fields: &str| {
        format!("\n                typed_per_filter_config:\n                  envoy.filters.http.cors: {{ \"@type\": {POLICY}{fields} }}")
    };
    let route = |prefix: &str, tail: &str| {
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app }}{tail}\n")
    };
    [
        format!("            - name: all\n              domains: [\"*\"]{}\n              routes:\n", policy(", allow_origin_string_match: [ { exact: \"https://a.example\" }, { suffix: \".b.example\" } ], allow_methods: \"GET, POST\", allow_headers: x-a, expose_headers: x-exposed, max_age: \"600\", allow_credentials: true, allow_private_network_access: true").replace("\n                ", "\n              ")),
        route("/echo", &policy(", allow_methods: \"*\", allow_headers: \"*\", forward_not_matching_preflights: false")),
        route("/off", &policy(", filter_enabled: { default_value: { numerator: 0 } }, shadow_enabled: { default_value: { numerator: 100 } }")),
        route("/direct", "").replace("route: { cluster: app }", "direct_response: { status: 200 }"),
        route(
            "/",
            "\n                response_headers_to_add: [ { header: { key: access-control-allow-origin, value: route } } ]",
        ),
        "            - name: fields\n              domains: [\"fields.example\"]\n              cors: { allow_origin_string_match: [ { prefix: \"https://\" } ], max_age: \"5\" }\n              routes:\n              - match: { prefix: \"/\" }\n                route: { cluster: app, cors: { allow_methods: PUT } }\n".to_string(),
    ]
    .concat()
}

const FILTER: &str = "          - name: envoy.filters.http.cors\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }\n";

fn request(method: &str, path: &str, host: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n{headers}\r\n").into_bytes()
}

#[test]
fn cors_is_answered_as_in_envoy() {
    let backend = Backend::start("app");
    let config =
        http_config(&routes(), &port_cluster("app", backend.port())).with_http_filter(FILTER);
    let Some(pair) = Pair::start(
        "cors_is_answered_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let host = "example.com";
    let a = "origin: https://a.example\r\n";
    let preflight = "origin: https://a.example\r\naccess-control-request-method: PUT\r\naccess-control-request-headers: x-b\r\n";
    let foreign = "origin: https://c.example\r\naccess-control-request-method: PUT\r\n";
    let observed = pair.assert_all_same(&[
        request("OPTIONS", "/", host, preflight),
        request("OPTIONS", "/echo", host, preflight),
        request("OPTIONS", "/echo", host, foreign),
        request("OPTIONS", "/", host, foreign),
        request("OPTIONS", "/", host, a),
        request(
            "OPTIONS",
            "/",
            host,
            &format!("{preflight}access-control-request-private-network: true\r\n"),
        ),
        request("GET", "/", host, a),
        request("GET", "/", host, "origin: https://x.b.example\r\n"),
        request("GET", "/", host, "origin: https://c.example\r\n"),
        request("GET", "/", host, ""),
        request("GET", "/off", host, a),
        request("OPTIONS", "/off", host, preflight),
        request("OPTIONS", "/direct", host, preflight),
        request("OPTIONS", "/", "fields.example", preflight),
        request("GET", "/", "fields.example", a),
    ]);
    let origin = |o: &common::oracle::Observed| {
        o.headers
            .iter()
            .find(|(n, _)| n == "access-control-allow-origin")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(origin(&observed[0]).as_deref(), Some("https://a.example"));
    assert_eq!(origin(&observed[6]).as_deref(), Some("https://a.example"));
    assert_eq!(origin(&observed[8]).as_deref(), Some("route"));
    let private = |o: &common::oracle::Observed| {
        o.headers
            .iter()
            .any(|(n, v)| n == "access-control-allow-private-network" && v == "true")
    };
    assert!(private(&observed[5]) && !private(&observed[0]));
    assert!(observed[0].upstream.is_empty() && !observed[3].upstream.is_empty());
    pair.assert_same_stats(&[
        "http.ingress_http.cors.origin_valid",
        "http.ingress_http.cors.origin_invalid",
        "http.ingress_http.downstream_rq_2xx",
    ]);
}
