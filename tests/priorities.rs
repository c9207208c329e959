//! Priority levels, the overprovisioning factor, locality weights and
//! zone-aware routing, against Envoy 1.40 on the same configs: where the
//! load goes when a level's hosts fail their health checks, and how
//! localities share it.
//! Both proxies draw at random, so shares are compared with a margin
//! (four standard deviations of the draws).

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::collections::HashMap;

/// One `endpoints[]` entry: a locality block with `extra` fields and
/// endpoints on `ports`.
fn group(extra: &str, ports: &[u16]) -> String {
    let mut out = format!("      - {extra}\n        lb_endpoints:\n");
    for port in ports {
        out.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
        ));
    }
    out
}

/// A STATIC cluster `name` with `extra` cluster fields and `groups`.
fn cluster(name: &str, extra: &str, groups: &[String]) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n{}",
        groups.concat()
    )
}

/// Checks every 0.2 s that fail a host at its first failure.
const HEALTH_CHECK: &str = "    health_checks:\n    - timeout: 1s\n      interval: 0.2s\n      unhealthy_threshold: 1\n      healthy_threshold: 1\n      http_health_check: { path: /healthz }\n";

/// Virtual hosts routing host `name` to cluster `name`.
fn routes(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "            - name: {n}\n              domains: [\"{n}\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {n} }}\n"
            )
        })
        .collect()
}

/// Which backend answered each of `n` requests for `host`, counted.
fn shares(port: u16, host: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(port, host, "/");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        *seen
            .entry(r.header("x-backend").unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    seen
}

/// Asserts that `seen` gives each backend its `expected` share of `n`
/// (within four standard deviations of a binomial draw).
fn assert_shares(who: &str, seen: &HashMap<String, usize>, n: usize, expected: &[(&str, f64)]) {
    for (backend, share) in expected {
        let got = seen.get(*backend).copied().unwrap_or(0) as f64 / n as f64;
        let margin = 4.0 * (share * (1.0 - share) / n as f64).sqrt() + 1e-9;
        assert!(
            (got - share).abs() <= margin,
            "{who}: {backend} got {got:.3} of the load, expected {share} ± {margin:.3} ({seen:?})"
        );
    }
}

/// Each host's priority as `/clusters` lists them, sorted.
fn priorities(body: &str) -> String {
    let mut lines: Vec<&str> = body
        .lines()
        .filter(|l| l.contains("::priority::"))
        .map(|l| l.rsplit("::").next().unwrap_or_default())
        .collect();
    lines.sort_unstable();
    lines.join(",")
}

/// Both proxies on `config`, once each shows `failed` hosts failing
/// their health checks.
fn settled_pair(test: &str, config: &str, backends: Vec<Backend>, failed: usize) -> Option<Pair> {
    let pair = Pair::start(test, config, backends)?;
    let settled = |body: &str| body.matches("/failed_active_hc").count() == failed;
    for admin in [pair.envoy.admin, pair.ringway_admin] {
        let body = admin_until(admin, "/clusters", settled);
        assert!(settled(&body), "{body}");
    }
    Some(pair)
}

/// P0 has a live and a dead host, P1 a live one: with the default
/// overprovisioning factor P0 carries 1/2 × 1.4 = 70% and P1 the rest;
/// with a factor of 100, 50% each; with both P0 hosts dead, P1 all of it.
#[test]
fn load_spills_to_lower_priorities_as_in_envoy() {
    let (p0, p1) = (Backend::start("p0"), Backend::start("p1"));
    let (q0, q1) = (Backend::start("q0"), Backend::start("q1"));
    let r1 = Backend::start("r1");
    let (dead, dead2) = (free_port(), free_port());
    let clusters = [
        cluster(
            "c",
            HEALTH_CHECK,
            &[
                group("priority: 0", &[p0.port(), dead]),
                group("priority: 1", &[p1.port()]),
            ],
        ),
        cluster(
            "d",
            HEALTH_CHECK,
            &[
                group("priority: 0", &[q0.port(), dead]),
                group("priority: 1", &[q1.port()]),
            ],
        )
        .replace(
            "      cluster_name: d\n",
            "      cluster_name: d\n      policy: { overprovisioning_factor: 100 }\n",
        ),
        cluster(
            "e",
            HEALTH_CHECK,
            &[
                group("priority: 0", &[dead, dead2]),
                group("priority: 1", &[r1.port()]),
            ],
        ),
    ];
    let config = with_admin(&http_config(&routes(&["c", "d", "e"]), &clusters.concat()));
    let Some(pair) = settled_pair(
        "load_spills_to_lower_priorities_as_in_envoy",
        &config,
        vec![p0, p1, q0, q1, r1],
        4,
    ) else {
        return;
    };
    let n = 400;
    for (who, port) in [("envoy", pair.envoy.port), ("ringway", pair.ringway.port)] {
        assert_shares(who, &shares(port, "c", n), n, &[("p0", 0.7), ("p1", 0.3)]);
        assert_shares(who, &shares(port, "d", n), n, &[("q0", 0.5), ("q1", 0.5)]);
        assert_shares(who, &shares(port, "e", 50), 50, &[("r1", 1.0)]);
    }
    pair.assert_same_admin("/clusters", priorities);
    pair.assert_same_stats(&[
        "cluster.c.lb_healthy_panic",
        "cluster.c.membership_healthy",
        "cluster.c.membership_total",
        "cluster.e.lb_healthy_panic",
    ]);
}

/// Localities share a level by `load_balancing_weight` times their
/// availability; a locality without a weight gets nothing.
#[test]
fn locality_weights_share_the_load_as_in_envoy() {
    let (a, b, b2, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("b2"),
        Backend::start("c"),
    );
    let dead = free_port();
    let weighted = "    common_lb_config: { locality_weighted_lb_config: {} }\n";
    let clusters = [
        cluster(
            "l",
            weighted,
            &[
                group(
                    "locality: { zone: a }\n        load_balancing_weight: 1",
                    &[a.port()],
                ),
                group(
                    "locality: { zone: b }\n        load_balancing_weight: 3",
                    &[b.port()],
                ),
                group("locality: { zone: c }", &[c.port()]),
            ],
        ),
        // Zone b has one host of two failed: 2 × min(1, 1.4 × ½) = 1.4
        // against zone a's 1.
        cluster(
            "m",
            &format!("{weighted}{HEALTH_CHECK}"),
            &[
                group(
                    "locality: { zone: a }\n        load_balancing_weight: 1",
                    &[a.port()],
                ),
                group(
                    "locality: { zone: b }\n        load_balancing_weight: 2",
                    &[b2.port(), dead],
                ),
            ],
        ),
    ];
    let config = with_admin(&http_config(&routes(&["l", "m"]), &clusters.concat()));
    let Some(pair) = settled_pair(
        "locality_weights_share_the_load_as_in_envoy",
        &config,
        vec![a, b, b2, c],
        1,
    ) else {
        return;
    };
    let n = 400;
    for (who, port) in [("envoy", pair.envoy.port), ("ringway", pair.ringway.port)] {
        let l = shares(port, "l", n);
        assert_shares(who, &l, n, &[("a", 0.25), ("b", 0.75), ("c", 0.0)]);
        let m = shares(port, "m", n);
        assert_shares(who, &m, n, &[("a", 1.0 / 2.4), ("b2", 1.4 / 2.4)]);
    }
}

/// The share of `seen` answered by backends whose name starts with
/// `zone`.
fn zone_share(seen: &HashMap<String, usize>, zone: &str) -> HashMap<String, usize> {
    let mut by_zone = HashMap::new();
    for (backend, count) in seen {
        let key = match backend.starts_with(zone) {
            true => zone,
            false => "elsewhere",
        };
        *by_zone.entry(key.to_string()).or_insert(0) += count;
    }
    by_zone
}

/// A stat's value in an admin `/stats` body (0 when absent).
fn stat(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or(0)
}

/// With `cluster_manager.local_cluster_name`, priority 0 prefers this
/// proxy's zone (a) as far as its hosts there can carry the fleet's
/// share there: the local cluster has a live host in a and one in b
/// (its dead one in b fails its health check, so does not count), so a
/// should take half the load.
/// - `residual`: a has a third of the hosts, so it takes 2/3 of the
///   picks, the rest crossing to b;
/// - `direct`: a has 2/3 of the hosts and takes all;
/// - `small`: five hosts are under `min_cluster_size` (6): no zone routing;
/// - `tuned`: `min_cluster_size: 5` routes the same five by zone (a takes
///   4/5) for `routing_enabled` 50% of the picks (2/5 of the rest);
/// - `failing`: one host of three alive is panic, and
///   `fail_traffic_on_panic` answers 503 instead of using every host.
#[test]
fn zone_aware_routing_as_in_envoy() {
    let names = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4", "la", "lb"];
    let backends: Vec<Backend> = names.iter().map(|n| Backend::start(n)).collect();
    let port = |name: &str| backends[names.iter().position(|n| *n == name).unwrap_or(0)].port();
    let ports = |list: &[&str]| list.iter().map(|n| port(n)).collect::<Vec<u16>>();
    let (dead, dead2) = (free_port(), free_port());
    let zoned = |name: &str, extra: &str, a: &[&str], b: &[&str]| {
        cluster(
            name,
            extra,
            &[
                group("locality: { zone: a }", &ports(a)),
                group("locality: { zone: b }", &ports(b)),
            ],
        )
    };
    let tuned = "    common_lb_config:\n      zone_aware_lb_config: { min_cluster_size: 5, routing_enabled: { value: 50 } }\n";
    let failing = format!(
        "    common_lb_config: {{ zone_aware_lb_config: {{ fail_traffic_on_panic: true }} }}\n{HEALTH_CHECK}"
    );
    let clusters = [
        cluster(
            "local",
            HEALTH_CHECK,
            &[
                group("locality: { zone: a }", &[port("la")]),
                group("locality: { zone: b }", &[port("lb"), dead]),
            ],
        ),
        zoned("residual", "", &["a1", "a2"], &["b1", "b2", "b3", "b4"]),
        zoned("direct", "", &["a1", "a2", "a3", "a4"], &["b1", "b2"]),
        zoned("small", "", &["a1", "a2"], &["b1", "b2", "b3"]),
        zoned("tuned", tuned, &["a1", "a2"], &["b1", "b2", "b3"]),
        cluster(
            "failing",
            &failing,
            &[
                group("locality: { zone: a }", &[port("a1"), dead]),
                group("locality: { zone: b }", &[dead2]),
            ],
        ),
    ];
    let names = ["residual", "direct", "small", "tuned", "failing"];
    let config = format!(
        "node: {{ id: n1, cluster: c, locality: {{ zone: a }} }}\ncluster_manager: {{ local_cluster_name: local }}\n{}",
        with_admin(&http_config(&routes(&names), &clusters.concat()))
    );
    let Some(pair) = settled_pair("zone_aware_routing_as_in_envoy", &config, backends, 3) else {
        return;
    };
    let n = 400;
    for (who, port, admin) in [
        ("envoy", pair.envoy.port, pair.envoy.admin),
        ("ringway", pair.ringway.port, pair.ringway_admin),
    ] {
        for (cluster, a) in [("residual", 2.0 / 3.0), ("direct", 1.0), ("small", 0.4)]
            .into_iter()
            .chain([("tuned", 0.5 * 0.8 + 0.5 * 0.4)])
        {
            let seen = zone_share(&shares(port, cluster, n), "a");
            assert_shares(&format!("{who} {cluster}"), &seen, n, &[("a", a)]);
        }
        for _ in 0..10 {
            let r = get(port, "failing", "/");
            assert_eq!(
                (r.status, r.text()),
                (503, "no healthy upstream".into()),
                "{who}"
            );
        }
        let (_, stats) = admin_request(admin, "GET", "/stats");
        let zoned = |c: &str| {
            let counted = |s: &str| stat(&stats, &format!("cluster.{c}.lb_zone_routing_{s}"));
            counted("sampled") + counted("cross_zone") + counted("all_directly")
        };
        // Each counts the picks it routed by zone, once the local
        // cluster's health has settled.
        assert!(
            zoned("residual") >= n as u64,
            "{who}: {}",
            zoned("residual")
        );
        assert!(
            stat(&stats, "cluster.small.lb_zone_cluster_too_small") > 0,
            "{who}"
        );
        assert_eq!(zoned("small"), 0, "{who}");
    }
    pair.assert_same_stats(&[
        "cluster.direct.lb_zone_routing_all_directly",
        "cluster.failing.lb_healthy_panic",
        "cluster.tuned.lb_zone_no_capacity_left",
    ]);
}
