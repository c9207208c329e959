//! Micro-benchmarks of the per-request hot path: route matching,
//! request-head parsing and load-balancer picks. Run with `cargo bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::config;
use ringway::config::LbPolicy;
use ringway::http::head::{parse_request, ParsedRequest, Peer};
use ringway::router::RequestView;
use ringway::server::shard::Shard;
use ringway::snapshot::{ConfigSnapshot, Published};
use ringway::upstream::hashing::{Maglev, Ring};
use ringway::upstream::lb::{self, Balancer, RoundRobin, Weights};
use ringway::upstream::{Endpoint, Resolved};
use std::hint::black_box;
use std::sync::Arc;

/// What the benchmark's routes match on.
#[derive(Clone, Copy)]
enum Matchers {
    /// `prefix` only.
    Prefix,
    /// A mix: every fourth route a `safe_regex`, every fourth a
    /// `path_separated_prefix` with a header matcher, the rest prefixes
    /// with a query-parameter matcher.
    Mixed,
}

fn route_yaml(r: usize, matchers: Matchers) -> String {
    let m = match (matchers, r % 4) {
        (Matchers::Prefix, _) => format!("{{ prefix: \"/api/v{r}/\" }}"),
        (Matchers::Mixed, 0) => format!("{{ safe_regex: {{ regex: \"/api/v{r}/[a-z]+/\\\\d+\" }} }}"),
        (Matchers::Mixed, 1) => format!(
            "{{ path_separated_prefix: \"/api/v{r}\", headers: [ {{ name: x-tenant, string_match: {{ prefix: t }} }} ] }}"
        ),
        (Matchers::Mixed, _) => format!(
            "{{ prefix: \"/api/v{r}/\", query_parameters: [ {{ name: debug, present_match: true }} ] }}"
        ),
    };
    format!("              - match: {m}\n                route: {{ cluster: backend }}\n")
}

/// A bootstrap with `vhosts` virtual hosts of `routes` routes each.
fn snapshot(vhosts: usize, routes: usize, matchers: Matchers) -> ConfigSnapshot {
    let mut vh = String::new();
    for v in 0..vhosts {
        vh.push_str(&format!(
            "            - name: vh{v}\n              domains: [\"host{v}.example.com\", \"*.svc{v}.local\"]\n              routes:\n"
        ));
        for r in 0..routes {
            vh.push_str(&route_yaml(r, matchers));
        }
    }
    let yaml = format!(
        r#"static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
{vh}            - name: fallback
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    load_assignment: {{ endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 2 }} }} }} }} ] }} ] }}
"#
    );
    let tree = config::parse_document(&yaml, "bench").expect("bench config parses");
    let boot = config::decode(&tree).expect("bench config decodes");
    ConfigSnapshot::compile(
        &boot,
        false,
        &ringway::stats::Store::new(1),
        &ringway::access_log::Sinks::new(),
    )
    .expect("bench config compiles")
}

fn route_matching(c: &mut Criterion) {
    let headers = [
        httparse::Header {
            name: "user-agent",
            value: b"bench/1",
        },
        httparse::Header {
            name: "x-tenant",
            value: b"team-a",
        },
        httparse::Header {
            name: "accept",
            value: b"*/*",
        },
    ];
    let cases = [
        (1, 10, Matchers::Prefix, "prefix"),
        (10, 100, Matchers::Prefix, "prefix"),
        (1, 1000, Matchers::Prefix, "prefix"),
        (1, 1000, Matchers::Mixed, "regex/header/query mix"),
    ];
    for (vhosts, routes, matchers, kind) in cases {
        let snap = snapshot(vhosts, routes, matchers);
        let table = &snap.listeners[0]
            .http_chain(0)
            .expect("an HTTP chain")
            .http
            .routes;
        let host = format!("host{}.example.com", vhosts - 1);
        // The last route of the last virtual host matches (route 999 of the
        // mix is a query-parameter route).
        let path = format!("/api/v{}/users/42?debug=1", routes - 1);
        let req = RequestView {
            method: "GET",
            path: &path,
            authority: &host,
            scheme: "http",
            headers: &headers,
        };
        assert!(table
            .route(&host, &req)
            .is_some_and(|m| m.route.name.is_empty()));
        c.bench_function(
            &format!("route: {vhosts} vhosts x {routes} routes ({kind}), last route"),
            |b| b.iter(|| black_box(table.route(black_box(&host), black_box(&req)).is_some())),
        );
    }
}

fn head_parsing(c: &mut Criterion) {
    let snap = snapshot(1, 10, Matchers::Prefix);
    let http = snap.listeners[0]
        .http_chain(0)
        .expect("an HTTP chain")
        .http
        .clone();
    let store = ringway::stats::Store::new(1);
    let sinks = ringway::access_log::Sinks::new();
    let peer = Peer {
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)).into(),
        local: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 80)).into()),
        tls: None,
        direct_remote: None,
        filter_state: Default::default(),
    };
    let shard = Shard::new(
        0,
        Arc::new(Published::new(snapshot(1, 10, Matchers::Prefix))),
        store,
        sinks,
        ringway::server::shard::Reports::unheard(),
    );
    let request = b"GET /api/v3/users/42?expand=true HTTP/1.1\r\nHost: host0.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef; theme=dark\r\nx-request-id: 5f3c1c8e-2b7a-4b8e-9f0e-1d2c3b4a5968\r\n\r\n";
    c.bench_function("request head: parse, route, build upstream head", |b| {
        b.iter(
            || match parse_request(black_box(request), &http, &peer, &shard, None) {
                ParsedRequest::Request(req, _) => black_box(req.head_len),
                _ => unreachable!("the bench request is valid"),
            },
        )
    });
}

/// `n` endpoints with weights 1..=4.
fn endpoints(n: usize) -> Vec<Endpoint> {
    let store = ringway::stats::Store::new(1);
    (0..n)
        .map(|i| {
            let resolved = Resolved {
                addr: format!("10.{}.{}.{}:8080", i / 65536, i / 256 % 256, i % 256)
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
                weight: (i % 4 + 1) as u32,
                hostname: String::new(),
                explicit_hostname: false,
                locality: Default::default(),
                priority: 0,
                locality_weight: 0,
                lb_metadata: Default::default(),
            };
            Endpoint::new(&store, "bench", resolved)
        })
        .collect()
}

fn lb_picks(c: &mut Criterion) {
    for n in [10, 1000] {
        let eps = endpoints(n);
        let mut rr = RoundRobin::new(&eps, 0);
        c.bench_function(
            &format!("lb smooth round robin computed per pick, {n} endpoints"),
            |b| b.iter(|| black_box(rr.pick(black_box(&eps)))),
        );
        let Balancer::RoundRobin(Some(cycle)) = Balancer::new(&LbPolicy::RoundRobin, &eps) else {
            unreachable!("weights 1..=4 give a short cycle")
        };
        let mut at = 0;
        c.bench_function(
            &format!("lb ROUND_ROBIN pick (precomputed cycle), {n} endpoints"),
            |b| {
                b.iter(|| {
                    at = (at + 1) % cycle.len();
                    black_box(cycle[at])
                })
            },
        );
        let weights = Weights::new(&eps);
        let rng = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
        let random = || {
            let x = rng
                .get()
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng.set(x);
            x
        };
        c.bench_function(&format!("lb RANDOM pick, {n} endpoints"), |b| {
            b.iter(|| black_box(weights.draw(random())))
        });
        c.bench_function(
            &format!("lb LEAST_REQUEST pick (2 choices), {n} endpoints"),
            |b| {
                b.iter(|| {
                    black_box(lb::least_request(
                        black_box(&eps),
                        2,
                        1.0,
                        &weights,
                        false,
                        &random,
                    ))
                })
            },
        );
        let ring = Ring::new(&eps, 1024, 8 << 20);
        c.bench_function(&format!("lb RING_HASH pick, {n} endpoints"), |b| {
            b.iter(|| black_box(ring.pick(random())))
        });
        let maglev = Maglev::new(&eps, 65537);
        c.bench_function(&format!("lb MAGLEV pick, {n} endpoints"), |b| {
            b.iter(|| black_box(maglev.pick(random())))
        });
    }
}

criterion_group!(benches, route_matching, head_parsing, lb_picks);
criterion_main!(benches);
