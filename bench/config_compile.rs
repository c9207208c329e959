//! How long a large bootstrap takes to become a served snapshot: YAML
//! parse, decode, compile and publish of 10,000 routes and 1,000 clusters
//! (issue 10's start-up and reload goal: under 100 ms). Run with
//! `cargo bench --bench config_compile`.

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::config;
use ringway::snapshot::{ConfigSnapshot, Published};
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

/// The allocator the proxy binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLUSTERS: usize = 1000;
const VHOSTS: usize = 100;
const ROUTES_PER_VHOST: usize = 100;

/// A bootstrap with one listener, `VHOSTS` × `ROUTES_PER_VHOST` routes
/// (prefixes, every tenth with a header matcher, every twentieth a regex)
/// spread over `CLUSTERS` static clusters of two endpoints each.
fn big_bootstrap() -> String {
    let mut y = String::from(
        r#"static_resources:
  listeners:
  - name: big
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: big
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
"#,
    );
    for v in 0..VHOSTS {
        let _ = writeln!(
            y,
            "            - name: vh{v}\n              domains: [\"svc{v}.example.com\", \"*.svc{v}.local\"]\n              routes:"
        );
        for r in 0..ROUTES_PER_VHOST {
            let cluster = (v * ROUTES_PER_VHOST + r) % CLUSTERS;
            let matcher = match r % 20 {
                0 => format!("{{ safe_regex: {{ regex: \"/api/v{r}/[a-z]+/\\\\d+\" }} }}"),
                10 => format!(
                    "{{ prefix: \"/api/v{r}/\", headers: [ {{ name: x-tenant, string_match: {{ exact: t{r} }} }} ] }}"
                ),
                _ => format!("{{ prefix: \"/api/v{r}/\" }}"),
            };
            let _ = writeln!(
                y,
                "              - match: {matcher}\n                route: {{ cluster: c{cluster}, timeout: 5s }}"
            );
        }
    }
    y.push_str("  clusters:\n");
    for c in 0..CLUSTERS {
        let port = 10000 + c;
        let _ = writeln!(
            y,
            "  - name: c{c}\n    connect_timeout: 1s\n    load_assignment: {{ cluster_name: c{c}, endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}, {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.2, port_value: {port} }} }} }} }} ] }} ] }}"
        );
    }
    y
}

fn compile(yaml: &str) -> ConfigSnapshot {
    let tree = config::parse_document(yaml, "big").expect("big config parses");
    let boot = config::decode(&tree).expect("big config decodes");
    ConfigSnapshot::compile(
        &boot,
        false,
        &ringway::stats::Store::new(2),
        &ringway::access_log::Sinks::new(),
    )
    .expect("big config compiles")
}

fn config_compile(c: &mut Criterion) {
    let yaml = big_bootstrap();
    let mut group = c.benchmark_group("config 10,000 routes, 1,000 clusters");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("parse YAML", |b| {
        b.iter(|| config::parse_document(black_box(&yaml), "big").expect("parses"))
    });
    let tree = config::parse_document(&yaml, "big").expect("parses");
    group.bench_function("decode", |b| {
        b.iter(|| config::decode(black_box(&tree)).expect("decodes"))
    });
    group.bench_function("parse + decode + compile + publish", |b| {
        let published = Published::new(compile(&yaml));
        b.iter(|| published.publish(compile(black_box(&yaml))))
    });
    group.finish();
}

criterion_group!(benches, config_compile);
criterion_main!(benches);
