//! What the fuzz targets share: a compiled bootstrap exercising routing,
//! rewrites, header mutations and hashing, and a shard to parse on.
#![allow(dead_code)] // Each target uses the parts it needs.

use ringway::access_log::Sinks;
use ringway::config;
use ringway::server::shard::Shard;
use ringway::snapshot::{ConfigSnapshot, HttpSettings, Published};
use ringway::stats::Store;
use std::sync::Arc;

const BOOTSTRAP: &str = r#"static_resources:
  listeners:
  - name: fuzz
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: fuzz
          use_remote_address: true
          xff_num_trusted_hops: 1
          internal_address_config: { cidr_ranges: [ { address_prefix: 10.0.0.0, prefix_len: 8 } ] }
          route_config:
            response_headers_to_add: [ { header: { key: x-code, value: "%RESPONSE_CODE% %REQ(x-a)%" } } ]
            virtual_hosts:
            - name: api
              domains: ["api.example.com", "*.example.org"]
              routes:
              - match: { prefix: "/v1/", headers: [ { name: x-a, string_match: { prefix: a } } ] }
                route: { cluster: backend, prefix_rewrite: "/internal/", hash_policy: [ { header: { header_name: x-user } } ] }
              - match: { safe_regex: { regex: "/re/[0-9]+" } }
                route: { cluster: backend, regex_rewrite: { pattern: { regex: "^/re/(.*)$" }, substitution: "/x/\\1" } }
              - match: { prefix: "/r" }
                redirect: { https_redirect: true, strip_query: true }
              - match: { prefix: "/", query_parameters: [ { name: q, present_match: true } ] }
                route: { cluster_header: x-cluster }
            - name: all
              domains: ["*"]
              routes:
              - match: { path: "/direct" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
              - match: { prefix: "/" }
                route: { cluster: backend, host_rewrite_header: x-host }
                request_headers_to_add: [ { header: { key: x-b, value: "%REQ(x-a)%" } } ]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: backend
    lb_policy: RING_HASH
    load_assignment: { endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } } } ] } ] }
"#;

/// The fuzz bootstrap compiled, its connection manager and a shard.
pub struct Fixture {
    pub http: Arc<HttpSettings>,
    pub shard: Shard,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tree = config::parse_document(BOOTSTRAP, "fuzz").expect("the fuzz bootstrap parses");
        let boot = config::decode(&tree).expect("the fuzz bootstrap decodes");
        let store = Store::new(1);
        let sinks = Sinks::new();
        let snapshot = ConfigSnapshot::compile(&boot, false, &store, &sinks)
            .expect("the fuzz bootstrap compiles");
        let http = snapshot.listeners[0].http_chain(0).expect("an HTTP chain").http.clone();
        let reports = ringway::server::shard::Reports::unheard();
        let shard = Shard::new(0, Arc::new(Published::new(snapshot)), store, sinks, reports);
        Fixture { http, shard }
    }
}
