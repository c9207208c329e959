//! Subset load balancing against Envoy 1.40 on the same config: a route's
//! `metadata_match` picks the hosts whose `envoy.lb` metadata matches a
//! selector's keys; a request that matches no subset takes the selector's
//! or the cluster's fallback.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

/// An endpoint on `port` with `metadata` (a flow mapping of `envoy.lb`).
fn endpoint(port: u16, metadata: &str) -> String {
    format!(
        "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n          metadata: {{ filter_metadata: {{ envoy.lb: {metadata} }} }}\n"
    )
}

/// A route for `prefix` to cluster `s`, with `metadata_match` if given.
fn route(prefix: &str, criteria: Option<&str>) -> String {
    let matching = criteria
        .map(|c| format!(", metadata_match: {{ filter_metadata: {{ envoy.lb: {c} }} }}"))
        .unwrap_or_default();
    format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: s{matching} }}\n")
}

#[test]
fn metadata_match_picks_subsets_and_fallbacks_as_in_envoy() {
    let (v1, v2, v3) = (
        Backend::start("v1"),
        Backend::start("v2"),
        Backend::start("v3"),
    );
    let cluster = format!(
        "  - name: s\n    type: STATIC\n    connect_timeout: 1s\n    lb_subset_config:\n      fallback_policy: DEFAULT_SUBSET\n      default_subset: {{ version: v1 }}\n      subset_selectors:\n      - keys: [version]\n      - keys: [stage]\n        fallback_policy: NO_FALLBACK\n      - keys: [stage, version]\n      - keys: [ratio]\n      - keys: [version]\n        fallback_policy: NO_FALLBACK\n    load_assignment:\n      cluster_name: s\n      endpoints:\n      - lb_endpoints:\n{}{}{}",
        endpoint(v1.port(), "{ version: v1, stage: prod }"),
        endpoint(v2.port(), "{ version: v2, stage: prod, ratio: 0.5 }"),
        endpoint(v3.port(), "{ version: 3, stage: canary }"),
    );
    let cases: [(&str, Option<&str>, &str); 12] = [
        ("/v1", Some("{ version: v1 }"), "v1"),
        ("/v2", Some("{ version: v2 }"), "v2"),
        ("/v3", Some("{ version: 3 }"), "v3"),
        // An integer is not the same value as a fraction, nor as text.
        ("/three-point-oh", Some("{ version: 3.0 }"), "v1"),
        ("/quoted-three", Some("{ version: \"3\" }"), "v1"),
        ("/half", Some("{ ratio: 0.5 }"), "v2"),
        ("/prod-v2", Some("{ stage: prod, version: v2 }"), "v2"),
        ("/prod", Some("{ stage: prod }"), "v1 v2"),
        // No such version: the cluster's fallback, the default subset (the
        // second `[version]` selector's NO_FALLBACK is not recorded: Envoy
        // keeps a selector's fallback only where its keys add a node to
        // the selector tree).
        ("/v9", Some("{ version: v9 }"), "v1"),
        // The `[stage]` selector's own fallback: none.
        ("/dev", Some("{ stage: dev }"), "503"),
        // Keys no selector has, and no criteria at all: the default subset.
        ("/zone", Some("{ zone: z }"), "v1"),
        ("/", None, "v1"),
    ];
    // A canary split: each weighted cluster's criteria merged over the
    // route's (its `version` wins, the route's `stage` stays).
    let canary = "              - match: { prefix: \"/canary\" }\n                route:\n                  metadata_match: { filter_metadata: { envoy.lb: { stage: prod, version: v1 } } }\n                  weighted_clusters:\n                    clusters:\n                    - { name: s, weight: 50, metadata_match: { filter_metadata: { envoy.lb: { version: v2 } } } }\n                    - { name: s, weight: 50, metadata_match: { filter_metadata: { envoy.lb: { version: 3 } } } }\n";
    let routes: String = std::iter::once(canary.to_string())
        .chain(cases.iter().map(|(p, c, _)| route(p, *c)))
        .collect();
    let vhost = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    );
    let Some(pair) = Pair::start(
        "metadata_match_picks_subsets_and_fallbacks_as_in_envoy",
        &with_admin(&http_config(&vhost, &cluster)),
        vec![v1, v2, v3],
    ) else {
        return;
    };
    // Who answered, per proxy: the backends (a subset of two is balanced
    // round robin, from a different start in each proxy), or the status.
    for (path, _, expected) in cases {
        let (mut by_ringway, mut by_envoy) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            let raw = format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n");
            let (ringway, envoy) = pair.exchange(raw.as_bytes());
            let who = |o: &common::oracle::Observed| match o.status {
                200 => find_header(&o.headers, "x-backend")
                    .unwrap_or("?")
                    .to_string(),
                status => status.to_string(),
            };
            by_ringway.push(who(&ringway));
            by_envoy.push(who(&envoy));
        }
        for seen in [&mut by_ringway, &mut by_envoy] {
            seen.sort_unstable();
            seen.dedup();
        }
        assert_eq!(by_envoy.join(" "), expected, "{path}: Envoy");
        assert_eq!(by_ringway.join(" "), expected, "{path}: Ringway");
    }
    // Envoy counts each of its threads' subsets (main and worker).
    let (_, stats) = admin_request(pair.ringway_admin, "GET", "/stats");
    assert!(
        stats.contains("cluster.s.lb_subsets_active: 9\n"),
        "{stats}"
    );
    pair.assert_same_stats(&[
        "cluster.s.lb_subsets_selected",
        "cluster.s.lb_subsets_fallback",
        "cluster.s.upstream_cx_none_healthy",
    ]);
    // Last, as the weighted draws differ between the two: `{stage: prod,
    // version: v2}` is v2; `{stage: prod, version: 3}` is
    // no subset, so the default one (v1).
    for (who, port) in [("envoy", pair.envoy.port), ("ringway", pair.ringway.port)] {
        let mut seen: Vec<String> = (0..24)
            .map(|_| {
                let r = get(port, "a", "/canary");
                r.header("x-backend").unwrap_or("?").to_string()
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, ["v1", "v2"], "{who}");
    }
}
