//! The `envoy.filters.http.csrf` filter against Envoy 1.40 on the same
//! config: state-changing requests from their own origin (by `origin`,
//! else `referer`), from an additional origin, from elsewhere or from
//! nowhere; safe methods untouched; a route's own policy (shadow mode and
//! a disabled one); stats.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy";

fn routes() -> String {
    let own = |fields: &str| {
        format!("\n                typed_per_filter_config:\n                  envoy.filters.http.csrf: {{ \"@type\": {POLICY}, {fields} }}")
    };
    let route = |prefix: &str, tail: &str| {
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app }}{tail}\n")
    };
    [
        "            - name: all\n              domains: [\"*\"]\n              routes:\n".to_string(),
        route(
            "/shadow",
            &own("filter_enabled: { default_value: { numerator: 0 } }, shadow_enabled: { default_value: { numerator: 100 } }"),
        ),
        route("/off", &own("filter_enabled: { default_value: { numerator: 0 } }")),
        route("/", ""),
    ]
    .concat()
}

fn filter() -> String {
    format!("          - name: envoy.filters.http.csrf\n            typed_config: {{ \"@type\": {POLICY}, filter_enabled: {{ default_value: {{ numerator: 100 }} }}, additional_origins: [ {{ suffix: \".trusted.example\" }} ] }}\n")
}

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: app.example:8080\r\ncontent-length: 0\r\n{headers}\r\n"
    )
    .into_bytes()
}

#[test]
fn cross_site_requests_are_refused_as_in_envoy() {
    let backend = Backend::start("app");
    let config =
        http_config(&routes(), &port_cluster("app", backend.port())).with_http_filter(&filter());
    let Some(pair) = Pair::start(
        "cross_site_requests_are_refused_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let observed = pair.assert_all_same(&[
        request("POST", "/", "origin: http://app.example:8080\r\n"),
        request("POST", "/", "origin: https://app.example:8080/\r\n"),
        request("PUT", "/", "origin: http://app.example\r\n"),
        request("DELETE", "/", "origin: https://evil.example\r\n"),
        request(
            "PATCH",
            "/",
            "referer: http://app.example:8080/page?x=1\r\n",
        ),
        request("POST", "/", "referer: https://evil.example/page\r\n"),
        request("POST", "/", ""),
        request("POST", "/", "origin: null\r\n"),
        request(
            "POST",
            "/",
            "origin: null\r\nreferer: http://app.example:8080/\r\n",
        ),
        request("POST", "/", "origin: https://api.trusted.example\r\n"),
        request("GET", "/", "origin: https://evil.example\r\n"),
        request("POST", "/shadow", "origin: https://evil.example\r\n"),
        request("POST", "/off", "origin: https://evil.example\r\n"),
    ]);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 403, 403, 200, 403, 403, 403, 403, 200, 200, 200, 200]
    );
    assert_eq!(observed[3].body, "Invalid origin");
    pair.assert_same_stats(&[
        "http.ingress_http.csrf.missing_source_origin",
        "http.ingress_http.csrf.request_invalid",
        "http.ingress_http.csrf.request_valid",
        "http.ingress_http.downstream_rq_4xx",
    ]);
}
