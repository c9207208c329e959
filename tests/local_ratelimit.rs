//! The `envoy.filters.http.local_ratelimit` filter against Envoy 1.40 on
//! the same config: the chain's bucket, routes' own buckets, a route that
//! disables the filter, limits not enforced (the request goes on with
//! headers added), the status, gRPC answers, `x-ratelimit-*` headers,
//! per-connection buckets, runtime keys changed through `/runtime_modify`,
//! response flags and stats. Then Ringway alone under load on two shards:
//! the bucket lets through exactly what its arithmetic allows.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// A route's own settings: `stat_prefix`, a bucket of `tokens` that never
/// refills within a test, and `extra` fields (a flow mapping's tail).
fn own(stat_prefix: &str, tokens: u32, extra: &str) -> String {
    format!(
        "\n                typed_per_filter_config:\n                  envoy.filters.http.local_ratelimit: {{ \"@type\": {TYPE}, stat_prefix: {stat_prefix}, token_bucket: {{ max_tokens: {tokens}, tokens_per_fill: 1, fill_interval: 3600s }}, filter_enabled: {{ default_value: {{ numerator: 100 }} }}{extra} }}"
    )
}

fn routes() -> String {
    let route = |prefix: &str, tail: &str| {
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app }}{tail}\n")
    };
    let enforced = ", filter_enforced: { default_value: { numerator: 100 } }";
    let disabled = "\n                typed_per_filter_config:\n                  envoy.filters.http.local_ratelimit: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }";
    [
        "            - name: all\n              domains: [\"*\"]\n              routes:\n".to_string(),
        route("/own", &own("own", 2, enforced)),
        route("/off", disabled),
        route(
            "/shadow",
            &own("shadow", 1, ", request_headers_to_add_when_not_enforced: [ { header: { key: x-limited, value: \"yes\" } } ]"),
        ),
        route(
            "/status",
            &own("status", 0, &format!("{enforced}, status: {{ code: 503 }}")),
        ),
        route(
            "/exhausted",
            &own("exhausted", 0, &format!("{enforced}, rate_limited_as_resource_exhausted: true")),
        ),
        route("/", ""),
    ]
    .concat()
}

/// The chain's filter: three tokens, enabled and enforced through runtime
/// keys, with response headers.
const FILTER: &str = "          - name: envoy.filters.http.local_ratelimit\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n              stat_prefix: chain\n              token_bucket: { max_tokens: 3, tokens_per_fill: 1, fill_interval: 3600s }\n              filter_enabled: { runtime_key: rl.enabled, default_value: { numerator: 100 } }\n              filter_enforced: { runtime_key: rl.enforced, default_value: { numerator: 100 } }\n              enable_x_ratelimit_headers: DRAFT_VERSION_03\n              response_headers_to_add: [ { header: { key: x-limited-by, value: chain } } ]\n";

const RUNTIME: &str =
    "layered_runtime:\n  layers:\n  - name: static\n    static_layer: { rl.enabled: 100 }\n  - name: admin\n    admin_layer: {}\n";

fn request(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n").into_bytes()
}

fn config(backend: &Backend, filter: &str) -> String {
    let config = with_file_log(
        &http_config(&routes(), &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(filter);
    with_admin(&format!("{RUNTIME}{config}"))
}

#[test]
fn requests_are_limited_as_in_envoy() {
    let backend = Backend::start("app");
    let config = config(&backend, FILTER);
    let Some(pair) = Pair::start("requests_are_limited_as_in_envoy", &config, vec![backend]) else {
        return;
    };
    let grpc = "content-type: application/grpc\r\nte: trailers\r\n";
    let observed = pair.assert_all_same(&[
        request("/", ""),
        request("/", ""),
        request("/own", ""),
        request("/own", ""),
        request("/own", ""),
        request("/", ""),
        request("/", ""),
        request("/off", ""),
        request("/shadow", ""),
        request("/shadow", ""),
        request("/status", ""),
        request("/status", grpc),
        request("/exhausted", grpc),
    ]);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 200, 429, 200, 200, 200, 503, 200, 200]
    );
    assert_eq!(observed[6].body, "local_rate_limited");
    // The same filters over HTTP/2.
    let h2 = pair.assert_all_same_h2(&[&["/status"], &["/own"]]);
    assert_eq!(h2.iter().map(|o| o.status).collect::<Vec<_>>(), [503, 429]);
    // The chain's limits, not enforced through the runtime: the request
    // goes on (no header added: the chain's filter adds none).
    for (port, admin) in [
        (pair.ringway.port, pair.ringway_admin),
        (pair.envoy.port, pair.envoy.admin),
    ] {
        let (status, body) = admin_request(admin, "POST", "/runtime_modify?rl.enforced=0");
        assert_eq!(status, 200, "{port}: {body}");
    }
    pair.assert_same(&request("/", ""));
    // Disabled through the runtime: no token is taken, nothing counted.
    for admin in [pair.ringway_admin, pair.envoy.admin] {
        admin_request(admin, "POST", "/runtime_modify?rl.enabled=0");
    }
    let last = pair.assert_same(&request("/", ""));
    assert_eq!(last.status, 200);
    let mut names = Vec::new();
    for prefix in ["chain", "own", "shadow", "status", "exhausted"] {
        for stat in ["enabled", "enforced", "ok", "rate_limited"] {
            names.push(format!("{prefix}.http_local_rate_limit.{stat}"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pair.assert_same_stats(&names);
    pair.assert_same_stats(&["http.ingress_http.downstream_rq_4xx"]);
    // 13 requests over HTTP/1.1, two over HTTP/2, two after the runtime
    // changes: wait for every line, not just most.
    let lines = 17;
    let ringway = pair.assert_same_log(lines);
    assert!(ringway.contains("/ 429 RL"), "{ringway}");
}

#[test]
fn connections_have_their_own_buckets_as_in_envoy() {
    let backend = Backend::start("app");
    let filter = FILTER.replace(
        "              enable_x_ratelimit_headers",
        "              local_rate_limit_per_downstream_connection: true\n              enable_x_ratelimit_headers",
    );
    let config = config(&backend, &filter);
    let Some(pair) = Pair::start(
        "connections_have_their_own_buckets_as_in_envoy",
        &config,
        vec![backend],
    ) else {
        return;
    };
    let mut seen = Vec::new();
    for port in [pair.ringway.port, pair.envoy.port] {
        let mut statuses = Vec::new();
        for _ in 0..2 {
            let mut client = Client::connect(port);
            for _ in 0..4 {
                client.send(&request("/", ""));
                let r = client.read_response(false).expect("a response");
                statuses.push(r.status);
            }
        }
        seen.push(statuses);
    }
    assert_eq!(seen[0], seen[1], "ringway, then envoy");
    assert_eq!(seen[0], [200, 200, 200, 429, 200, 200, 200, 429]);
}

#[test]
fn the_bucket_is_exact_across_shards_under_load() {
    if !tool_or_skip(
        "the_bucket_is_exact_across_shards_under_load",
        &["h2load", "--version"],
    ) {
        return;
    }
    // 100 tokens to start with, then 1,000 a second, for every shard.
    let filter = "          - name: envoy.filters.http.local_ratelimit\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n              stat_prefix: load\n              token_bucket: { max_tokens: 100, tokens_per_fill: 100, fill_interval: 0.1s }\n              filter_enabled: { default_value: { numerator: 100 } }\n              filter_enforced: { default_value: { numerator: 100 } }\n";
    let config = direct_response_filter("ingress_http", "ok").with_http_filter(filter);
    let config = format!(
        "static_resources:\n  listeners:\n  - name: test\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}\n    filter_chains:\n    - filters:\n{config}"
    );
    let admin = free_port();
    let proxy = Proxy::start(&(admin_block(admin) + &config), &["--concurrency", "2"]);
    let started = Instant::now();
    let out = Command::new("h2load")
        .args(["--h1", "-c", "8", "-D", "3"])
        .arg(format!("http://127.0.0.1:{}/", proxy.port))
        .output()
        .expect("h2load");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = admin_until(admin, "/stats", |s| {
        stat(s, "load.http_local_rate_limit.enabled") > 0
    });
    let ok = stat(&stats, "load.http_local_rate_limit.ok");
    let limited = stat(&stats, "load.http_local_rate_limit.rate_limited");
    // Every request but the allowed ones was refused, and there were many
    // more requests than tokens.
    assert!(limited > 10 * ok, "{ok} allowed, {limited} limited\n{text}");
    // h2load's own measure of how long the load ran ("finished in 3.00s").
    let ran: f64 = text
        .split_once("finished in ")
        .and_then(|(_, rest)| rest.split_once("s,"))
        .and_then(|(secs, _)| secs.parse().ok())
        .unwrap_or_else(|| panic!("no duration in h2load's output\n{text}"));
    let expected = 100.0 + 1000.0 * ran;
    let error = (ok as f64 - expected).abs() / expected;
    eprintln!(
        "{ok} allowed, {limited} limited in {ran}s: expected {expected:.0} ({:.3}% off)",
        error * 100.0
    );
    assert!(
        error < 0.01,
        "{ok} allowed in {ran}s, expected {expected:.0} ({:.2}% off)\n{text}",
        error * 100.0
    );
    assert!(elapsed < Duration::from_secs(10));
}

/// A counter's value in a `/stats` body (0 when absent).
fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or(0)
}

/// Descriptors: routes' and the virtual host's `rate_limits` actions
/// (request headers, a wildcard value with `max_dynamic_descriptors`,
/// generic keys, the remote and masked address, header and query value
/// matches, query parameters, the destination cluster, stages), matched
/// against the filter's descriptors, each with its own bucket; the
/// default bucket only for requests no descriptor matched.
#[test]
fn descriptors_are_limited_as_in_envoy() {
    let policy = |actions: &str| format!("rate_limits: [ {{ actions: [ {actions} ] }} ]");
    let route = |prefix: &str, limits: &str| {
        let limits = if limits.is_empty() {
            String::new()
        } else {
            format!(", {limits}")
        };
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app{limits} }}\n")
    };
    let routes = [
        "            - name: all\n              domains: [\"*\"]\n              rate_limits: [ { actions: [ { generic_key: { descriptor_value: vh } } ] } ]\n              routes:\n".to_string(),
        route("/hdr", &policy("{ request_headers: { header_name: x-user, descriptor_key: user } }")),
        route(
            "/multi",
            "rate_limits: [ { actions: [ { generic_key: { descriptor_value: multi } }, { remote_address: {} } ] }, { actions: [ { header_value_match: { descriptor_value: admin, headers: [ { name: x-admin, present_match: true } ] } } ] } ]",
        ),
        route("/vh", ""),
        route("/stage1", "rate_limits: [ { stage: 1, actions: [ { generic_key: { descriptor_value: s } } ] } ]"),
        route("/masked", &policy("{ masked_remote_address: { v4_prefix_mask_len: 24 } }, { destination_cluster: {} }")),
        route(
            "/query",
            &policy("{ query_parameters: { query_parameter_name: k, descriptor_key: q, skip_if_absent: true } }, { query_parameter_value_match: { descriptor_value: \"yes\", query_parameters: [ { name: flag, string_match: { exact: \"1\" } } ] } }"),
        ),
    ]
    .concat();
    let bucket = |tokens: u32, fill: &str| {
        format!(
            "token_bucket: {{ max_tokens: {tokens}, tokens_per_fill: 1, fill_interval: {fill} }}"
        )
    };
    let filter = format!(
        "          - name: envoy.filters.http.local_ratelimit\n            typed_config:\n              \"@type\": {TYPE}\n              stat_prefix: descriptors\n              {}\n              filter_enabled: {{ default_value: {{ numerator: 100 }} }}\n              filter_enforced: {{ default_value: {{ numerator: 100 }} }}\n              enable_x_ratelimit_headers: DRAFT_VERSION_03\n              always_consume_default_token_bucket: false\n              max_dynamic_descriptors: 2\n              descriptors:\n{}",
        bucket(4, "3600s"),
        [
            ("[ { key: user, value: alice } ]", bucket(2, "3600s")),
            ("[ { key: user } ]", bucket(1, "3600s")),
            ("[ { key: generic_key, value: multi }, { key: remote_address, value: 127.0.0.1 } ]", bucket(3, "3600s")),
            ("[ { key: header_match, value: admin } ]", bucket(1, "60s")),
            ("[ { key: generic_key, value: vh } ]", bucket(2, "3600s")),
            ("[ { key: masked_remote_address, value: 127.0.0.0/24 }, { key: destination_cluster, value: app } ]", bucket(1, "3600s")),
            ("[ { key: q, value: v }, { key: query_match, value: \"yes\" } ]", bucket(1, "3600s")),
        ]
        .iter()
        .map(|(entries, bucket)| format!("              - {{ entries: {entries}, {bucket} }}\n"))
        .collect::<String>()
    );
    let backend = Backend::start("app");
    let config = with_file_log(
        &http_config(&routes, &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(&filter);
    let Some(pair) = Pair::start(
        "descriptors_are_limited_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let user = |name: &str| format!("x-user: {name}\r\n");
    let cases = [
        (request("/hdr", &user("alice")), 200),
        (request("/hdr", &user("alice")), 200),
        (request("/hdr", &user("alice")), 429),
        (request("/hdr", &user("bob")), 200),
        (request("/hdr", &user("bob")), 429),
        (request("/hdr", &user("carol")), 200),
        (request("/hdr", &user("dave")), 200),
        (request("/hdr", &user("bob")), 200),
        (request("/hdr", ""), 200),
        (request("/multi", "x-admin: 1\r\n"), 200),
        (request("/multi", "x-admin: 1\r\n"), 429),
        (request("/multi", ""), 200),
        (request("/multi", ""), 429),
        (request("/vh", ""), 200),
        (request("/vh", ""), 200),
        (request("/vh", ""), 429),
        (request("/stage1", ""), 200),
        (request("/masked", ""), 200),
        (request("/masked", ""), 429),
        (request("/query?k=v&flag=1", ""), 200),
        (request("/query?k=v&flag=1", ""), 429),
        (request("/query?flag=1", ""), 200),
        (request("/query?k=v", ""), 200),
        (request("/query", ""), 429),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, expected);
    let mut names = Vec::new();
    for stat in ["enabled", "enforced", "ok", "rate_limited"] {
        names.push(format!("descriptors.http_local_rate_limit.{stat}"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pair.assert_same_stats(&names);
    pair.assert_same_log(cases.len());
}

/// The filter's own `rate_limits`: read instead of the route's (which
/// here would match a descriptor of their own and limit sooner).
#[test]
fn the_filters_own_rate_limits_replace_the_routes() {
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\" }\n                route: { cluster: app, rate_limits: [ { actions: [ { generic_key: { descriptor_value: route } } ] } ] }\n";
    let filter = format!(
        "          - name: envoy.filters.http.local_ratelimit\n            typed_config:\n              \"@type\": {TYPE}\n              stat_prefix: own_limits\n              token_bucket: {{ max_tokens: 2, tokens_per_fill: 1, fill_interval: 3600s }}\n              filter_enabled: {{ default_value: {{ numerator: 100 }} }}\n              filter_enforced: {{ default_value: {{ numerator: 100 }} }}\n              always_consume_default_token_bucket: false\n              rate_limits: [ {{ actions: [ {{ request_headers: {{ header_name: x-user, descriptor_key: user }} }} ] }} ]\n              descriptors:\n              - {{ entries: [ {{ key: user, value: alice }} ], token_bucket: {{ max_tokens: 3, tokens_per_fill: 1, fill_interval: 3600s }} }}\n              - {{ entries: [ {{ key: generic_key, value: route }} ], token_bucket: {{ max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }} }}\n"
    );
    let backend = Backend::start("app");
    let config =
        http_config(routes, &port_cluster("app", backend.port())).with_http_filter(&filter);
    let Some(pair) = Pair::start(
        "the_filters_own_rate_limits_replace_the_routes",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let alice = "x-user: alice\r\n";
    let cases = [
        (request("/", alice), 200),
        (request("/", alice), 200),
        (request("/", alice), 200),
        (request("/", alice), 429),
        (request("/", "x-user: bob\r\n"), 200),
        (request("/", ""), 200),
        (request("/", ""), 429),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let statuses: Vec<u16> = pair
        .assert_all_same(&requests)
        .iter()
        .map(|o| o.status)
        .collect();
    assert_eq!(statuses, cases.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    pair.assert_same_stats(&[
        "own_limits.http_local_rate_limit.ok",
        "own_limits.http_local_rate_limit.rate_limited",
    ]);
}
