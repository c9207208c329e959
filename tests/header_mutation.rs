//! The `envoy.filters.http.header_mutation` filter against Envoy 1.40 on
//! the same config: ordered removals, additions with each append action
//! and removals by name pattern, on requests (what the backend sees) and
//! on responses (proxied, direct and no-route answers, after the route's
//! own `response_headers_to_add`); the route configuration's, a virtual
//! host's, a route's and a weighted cluster's own mutations in both
//! orders of `most_specific_header_mutations_wins`.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const FILTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";

/// A level's own mutations setting `x-level: <value>` on both sides.
fn level(value: &str) -> String {
    let set = format!("{{ append: {{ header: {{ key: x-level, value: {value} }}, append_action: OVERWRITE_IF_EXISTS_OR_ADD }} }}");
    format!("\n                typed_per_filter_config:\n                  envoy.filters.http.header_mutation: {{ \"@type\": {PER_ROUTE}, mutations: {{ request_mutations: [ {set} ], response_mutations: [ {set} ] }} }}")
}

fn routes() -> String {
    format!(
        "            - name: all\n              domains: [\"example.com\"]{}\n              routes:\n              - match: {{ prefix: /levels }}\n                route: {{ cluster: app }}\n                response_headers_to_add:\n                - header: {{ key: x-overwrite, value: route }}\n                - header: {{ key: x-route-only, value: \"1\" }}{}\n              - match: {{ prefix: /weighted }}
                route: {{ weighted_clusters: {{ clusters: [ {{ name: app, weight: 1{} }} ] }} }}
              - match: {{ prefix: /direct }}\n                direct_response: {{ status: 200, body: {{ inline_string: direct }} }}\n              - match: {{ prefix: /plain }}\n                route: {{ cluster: app }}\n",
        level("vhost").replace("\n                ", "\n              "),
        level("route"),
        level("weighted")
            .replace("\n                typed_per_filter_config:\n                  ", ", typed_per_filter_config: { ")
            + " }",
    )
}

fn filter(most_specific_wins: bool) -> String {
    format!(
        r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": {FILTER}
              most_specific_header_mutations_wins: {most_specific_wins}
              mutations:
                request_mutations:
                - remove: x-drop
                - append: {{ header: {{ key: x-added, value: filter }} }}
                - append: {{ header: {{ key: x-client, value: filter }}, append_action: ADD_IF_ABSENT }}
                - append: {{ header: {{ key: x-fresh, value: filter }}, append_action: ADD_IF_ABSENT }}
                - remove_on_match: {{ key_matcher: {{ prefix: x-secret- }} }}
                response_mutations:
                - remove_on_match: {{ key_matcher: {{ prefix: x-back }} }}
                - append: {{ header: {{ key: x-resp, value: filter }} }}
                - append: {{ header: {{ key: x-overwrite, value: filter }}, append_action: OVERWRITE_IF_EXISTS_OR_ADD }}
                - append: {{ header: {{ key: x-if-exists, value: filter }}, append_action: OVERWRITE_IF_EXISTS }}
                - remove: x-route-only
"#
    )
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nx-drop: 1\r\nx-client: mine\r\nx-secret-a: 1\r\nx-secret-b: 2\r\nx-keep: 1\r\n\r\n")
        .into_bytes()
}

/// Starts both proxies with the filter and asks the same questions;
/// returns the `x-level` each of `/levels` and `/weighted` ended with
/// (on the request, then on the response).
fn mutated_as_in_envoy(test: &str, most_specific_wins: bool) -> Option<[String; 4]> {
    let backend = Backend::start("app");
    let table = level("table").replace("\n                ", "\n            ");
    let config = http_config(&routes(), &port_cluster("app", backend.port()))
        .with_http_filter(&filter(most_specific_wins))
        .replace(
            "            name: local_route\n",
            &format!("            name: local_route{table}\n"),
        );
    let pair = Pair::start(test, &with_admin(&config), vec![backend])?;
    let observed = pair.assert_all_same(&[
        request("/levels"),
        request("/weighted"),
        request("/plain"),
        request("/direct"),
        request("/nowhere"),
    ]);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 404]);
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (levels, weighted) = (&observed[0], &observed[1]);
    let upstream = &levels.upstream[0].headers;
    assert_eq!(header(upstream, "x-client"), "mine");
    assert_eq!(header(upstream, "x-drop"), "");
    assert_eq!(header(&levels.headers, "x-overwrite"), "filter");
    Some([
        header(upstream, "x-level"),
        header(&levels.headers, "x-level"),
        header(&weighted.upstream[0].headers, "x-level"),
        header(&weighted.headers, "x-level"),
    ])
}

#[test]
fn headers_are_mutated_as_in_envoy() {
    let Some(levels) = mutated_as_in_envoy("headers_are_mutated_as_in_envoy", false) else {
        return;
    };
    // The most specific level's mutations run first: the route
    // configuration's win.
    assert_eq!(levels, ["table", "table", "table", "table"]);
}

#[test]
fn the_most_specific_level_wins_when_asked_as_in_envoy() {
    let Some(levels) =
        mutated_as_in_envoy("the_most_specific_level_wins_when_asked_as_in_envoy", true)
    else {
        return;
    };
    assert_eq!(levels, ["route", "route", "weighted", "weighted"]);
}

/// A filter sees the headers as the filters before it edited them (as
/// Envoy's do): RBAC judges the header the mutation added and not the
/// one it removed.
#[test]
fn later_filters_see_the_mutations_as_in_envoy() {
    let filters = r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append: { header: { key: x-group, value: b } }
                - remove: x-drop
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
                  group-b:
                    permissions:
                    - and_rules:
                        rules:
                        - header: { name: x-group, string_match: { exact: b } }
                        - not_rule: { header: { name: x-drop, present_match: true } }
                    principals: [ { any: true } ]
"#;
    let backend = Backend::start("app");
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\" }\n                route: { cluster: app }\n";
    let config =
        http_config(routes, &port_cluster("app", backend.port())).with_http_filter(filters);
    let Some(pair) = Pair::start(
        "later_filters_see_the_mutations_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let get = |headers: &str| {
        format!("GET / HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n").into_bytes()
    };
    let observed = pair.assert_all_same(&[get(""), get("x-drop: 1\r\n"), get("x-group: a\r\n")]);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [200, 200, 200]);
}
