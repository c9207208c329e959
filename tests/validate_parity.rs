//! `--mode validate` parity: for configs using only what Ringway supports,
//! Envoy 1.40's verdict and Ringway's must agree, valid and invalid alike.

mod common;
use common::oracle::{envoy_or_skip, envoy_validate, ringway_validate};

/// A bootstrap with one listener, one route table and two clusters; each
/// case below edits it.
const BASE: &str = r#"admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }
  - name: dns
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    lb_policy: LEAST_REQUEST
    load_assignment:
      cluster_name: dns
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: localhost, port_value: 8081 } } }
"#;

const ROUTE: &str =
    "              - match: { prefix: \"/\" }\n                route: { cluster: app }\n";
const HCM: &str = "          stat_prefix: ingress_http\n";

/// BASE with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    BASE.replacen(from, to, 1)
}

fn routes(extra: &str) -> String {
    edit(ROUTE, &format!("{extra}{ROUTE}"))
}

/// BASE with an HTTP filter named `extra.filter` (its other fields
/// `fields`) before the router.
fn filter(fields: &str) -> String {
    edit(
        "          http_filters:\n",
        &format!("          http_filters:\n          - name: extra.filter\n{fields}"),
    )
}

/// BASE with `field` added to its route.
fn route_field(field: &str) -> String {
    let route = "                route: { cluster: app }\n";
    edit(route, &format!("{route}{field}"))
}

fn hcm(extra: &str) -> String {
    edit(HCM, &format!("{HCM}{extra}"))
}

/// (what the case is, the config, whether it is valid).
fn corpus() -> Vec<(&'static str, String, bool)> {
    vec![
        ("the base config", BASE.to_string(), true),
        (
            "enum names in lower case",
            edit("type: STATIC", "type: static\n    lb_policy: round_robin")
                .replace(HCM, &format!("{HCM}          codec_type: auto\n")),
            true,
        ),
        (
            "every route match kind",
            routes(
                r#"              - match: { path: "/exact", case_sensitive: false }
                route: { cluster: app }
              - match: { safe_regex: { regex: "/re/[0-9]+" } }
                route: { cluster: app }
              - match: { path_separated_prefix: "/sep" }
                route: { cluster: app }
              - match:
                  prefix: "/h"
                  headers:
                  - { name: x-a, string_match: { exact: v, ignore_case: true } }
                  - { name: x-b, present_match: true, invert_match: true }
                  - { name: x-c, range_match: { start: 1, end: 10 } }
                  - { name: x-d, string_match: { safe_regex: { regex: "a.*" } } }
                  query_parameters:
                  - { name: q, string_match: { prefix: p } }
                  - { name: r, present_match: true }
                route: { cluster: app }
              - match: { prefix: "/g", grpc: {} }
                route: { cluster: app }
"#,
            ),
            true,
        ),
        (
            "every route action",
            routes(
                r#"              - match: { prefix: "/w" }
                route:
                  weighted_clusters:
                    clusters: [ { name: app, weight: 70 }, { name: dns, weight: 30 } ]
              - match: { prefix: "/ch" }
                route: { cluster_header: x-cluster, cluster_not_found_response_code: NOT_FOUND }
              - match: { prefix: "/redir" }
                redirect: { https_redirect: true, host_redirect: a.example, port_redirect: 8443, response_code: PERMANENT_REDIRECT, strip_query: true }
              - match: { prefix: "/pre" }
                redirect: { prefix_rewrite: "/post" }
              - match: { prefix: "/direct" }
                direct_response: { status: 418, body: { inline_string: "teapot" } }
              - match: { prefix: "/rw" }
                route:
                  cluster: app
                  prefix_rewrite: "/new"
                  host_rewrite_literal: upstream.example
                  timeout: 2s
                  idle_timeout: 10s
                  retry_policy:
                    retry_on: 5xx,reset,connect-failure,retriable-status-codes
                    num_retries: 3
                    per_try_timeout: 0.5s
                    retriable_status_codes: [409]
                    retry_back_off: { base_interval: 0.01s, max_interval: 0.1s }
                    retry_host_predicate: [ { name: envoy.retry_host_predicates.previous_hosts, typed_config: { "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate } } ]
                    host_selection_retry_max_attempts: 3
                  hash_policy:
                  - header: { header_name: x-user }
                  - cookie: { name: sticky, ttl: 60s }
                  - connection_properties: { source_ip: true }
                    terminal: true
              - match: { prefix: "/rx" }
                route:
                  cluster: app
                  regex_rewrite: { pattern: { regex: "^/rx/(.*)$" }, substitution: "/\\1" }
                  auto_host_rewrite: true
                request_headers_to_add:
                - header: { key: x-a, value: "%DOWNSTREAM_REMOTE_ADDRESS%" }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                request_headers_to_remove: [x-b]
                response_headers_to_add:
                - header: { key: x-c, value: c }
"#,
            ),
            true,
        ),
        (
            "HTTP/2 options",
            hcm(
                r#"          codec_type: HTTP2
          http2_protocol_options:
            hpack_table_size: 0
            max_concurrent_streams: 100
            initial_stream_window_size: 65535
            initial_connection_window_size: { value: 2147483647 }
            allow_connect: false
            connection_keepalive: { interval: 30s, timeout: 5s }
"#,
            ),
            true,
        ),
        (
            "zero max_concurrent_streams",
            hcm("          http2_protocol_options: { max_concurrent_streams: 0 }\n"),
            false,
        ),
        (
            "stream window below 65535",
            hcm("          http2_protocol_options: { initial_stream_window_size: 65534 }\n"),
            false,
        ),
        (
            "connection window above 2^31-1",
            hcm("          http2_protocol_options: { initial_connection_window_size: 2147483648 }\n"),
            false,
        ),
        (
            "keepalive without a timeout",
            hcm("          http2_protocol_options: { connection_keepalive: { interval: 1s } }\n"),
            false,
        ),
        (
            "an unknown codec_type",
            hcm("          codec_type: HTTP4\n"),
            false,
        ),
        (
            "connection manager options",
            hcm(
                r#"          server_name: edge
          server_header_transformation: APPEND_IF_ABSENT
          max_request_headers_kb: 80
          common_http_protocol_options: { idle_timeout: 60s, max_headers_count: 50 }
          stream_idle_timeout: 30s
          request_timeout: 60s
          request_headers_timeout: 5s
          delayed_close_timeout: 0.5s
          use_remote_address: true
          xff_num_trusted_hops: 1
          skip_xff_append: false
          internal_address_config: { cidr_ranges: [ { address_prefix: 10.0.0.0, prefix_len: 8 } ] }
          generate_request_id: false
          preserve_external_request_id: true
          strip_any_host_port: true
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: { text_format_source: { inline_string: "%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\n" } }
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
              log_format: { json_format: { code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%" } }
"#,
            ),
            true,
        ),
        (
            "load balancers and their settings",
            edit(
                "    lb_policy: LEAST_REQUEST\n",
                "    lb_policy: RING_HASH\n    ring_hash_lb_config: { minimum_ring_size: 1024, maximum_ring_size: 8192 }\n    dns_refresh_rate: 10s\n",
            ),
            true,
        ),
        (
            "maglev with a table size",
            edit(
                "    lb_policy: LEAST_REQUEST\n",
                "    lb_policy: MAGLEV\n    maglev_lb_config: { table_size: 65537 }\n",
            ),
            true,
        ),
        (
            "endpoints with locality, hostname and weights",
            edit(
                "      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n",
                "      - locality: { region: r, zone: z }\n        lb_endpoints:\n        - endpoint: { hostname: api.internal, address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n          load_balancing_weight: 5\n",
            ),
            true,
        ),
        (
            "listener socket fields",
            edit(
                "    filter_chains:\n",
                "    traffic_direction: OUTBOUND\n    enable_reuse_port: false\n    per_connection_buffer_limit_bytes: 32768\n    socket_options: [ { description: keepalive, level: 1, name: 9, int_value: 1, state: STATE_LISTENING } ]\n    filter_chains:\n",
            ),
            true,
        ),
        (
            "cluster connection fields",
            edit(
                "    connect_timeout: 1s\n",
                "    connect_timeout: 1s\n    alt_stat_name: app_stats\n    per_connection_buffer_limit_bytes: 32768\n    max_requests_per_connection: 100\n    upstream_connection_options: { tcp_keepalive: { keepalive_time: 300, keepalive_interval: 30, keepalive_probes: 3 } }\n",
            ),
            true,
        ),
        (
            "max requests per connection both ways",
            hcm("          common_http_protocol_options: { max_requests_per_connection: 1000 }\n").replace(
                "    dns_lookup_family: V4_ONLY\n",
                "    dns_lookup_family: V4_ONLY\n    common_http_protocol_options: { max_requests_per_connection: 10 }\n",
            ),
            true,
        ),
        (
            "admin access logs, socket options and profile path",
            edit(
                "admin:\n",
                "admin:\n  access_log_path: /dev/null\n  profile_path: /tmp/envoy.prof\n  socket_options: [ { level: 1, name: 9, int_value: 1 } ]\n  access_log:\n  - name: envoy.access_loggers.stdout\n    typed_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog }\n",
            ),
            true,
        ),
        (
            "a LOGICAL_DNS cluster",
            edit("    type: STRICT_DNS\n", "    type: LOGICAL_DNS\n"),
            true,
        ),
        (
            "pipe addresses for a listener (with a mode), an endpoint and admin",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", "address: { pipe: { path: /tmp/ringway-parity.sock, mode: 0644 } }")
                .replace("address: { socket_address: { address: 127.0.0.1, port_value: 8080 } }", "address: { pipe: { path: /tmp/ringway-up.sock } }")
                .replace("address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }", "address: { pipe: { path: \"@ringway-parity-admin\" } }"),
            true,
        ),
        (
            "gRPC retry conditions",
            edit("route: { cluster: app }", "route: { cluster: app, retry_policy: { retry_on: \"cancelled,deadline-exceeded,internal,resource-exhausted,unavailable,5xx\" } }"),
            true,
        ),
        (
            "max_stream_duration on a route and the connection manager",
            edit("route: { cluster: app }", "route: { cluster: app, max_stream_duration: { max_stream_duration: 5s, grpc_timeout_header_max: 10s, grpc_timeout_header_offset: 0.1s } }")
                .replace(HCM, &format!("{HCM}          common_http_protocol_options: {{ max_stream_duration: 30s }}\n")),
            true,
        ),
        (
            "upgrade_configs on the connection manager and a route",
            edit("route: { cluster: app }", "route: { cluster: app, upgrade_configs: [ { upgrade_type: websocket, enabled: false } ] }")
                .replace(HCM, &format!("{HCM}          upgrade_configs: [ {{ upgrade_type: websocket }}, {{ upgrade_type: custom, enabled: false }} ]\n")),
            true,
        ),
        (
            "typed_extension_protocol_options asking for HTTP/1.1",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http_protocol_options: {} }\n        common_http_protocol_options: { max_requests_per_connection: 5 }\n"),
            true,
        ),
        (
            "typed_extension_protocol_options following the downstream protocol",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        use_downstream_protocol_config: {}\n"),
            true,
        ),
        (
            "typed_extension_protocol_options asking for HTTP/2",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 100, initial_stream_window_size: 65536, connection_keepalive: { interval: 10s, timeout: 2s } } }\n"),
            true,
        ),
        (
            "use_downstream_protocol_config with both protocols",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} }\n"),
            true,
        ),
        (
            "the legacy cluster http2_protocol_options",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    http2_protocol_options: { hpack_table_size: 0 }\n"),
            true,
        ),
        (
            "an upstream HTTP/2 window below 65535",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: { initial_connection_window_size: 100 } }\n"),
            false,
        ),
        (
            "a gRPC route match",
            edit("match: { prefix: \"/\" }", "match: { prefix: \"/\", grpc: {} }"),
            true,
        ),
        // Invalid, and both must say so.
        (
            "HttpProtocolOptions naming no protocol",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {}\n"),
            false,
        ),
        (
            "HttpProtocolOptions choosing nothing",
            edit("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"),
            false,
        ),
        (
            "a mode on an abstract pipe",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", "address: { pipe: { path: \"@ringway-parity\", mode: 0600 } }"),
            false,
        ),
        (
            "a pipe mode past 0777",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", "address: { pipe: { path: /tmp/ringway-parity.sock, mode: 01777 } }"),
            false,
        ),
        (
            "an empty pipe path",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", "address: { pipe: { path: \"\" } }"),
            false,
        ),
        (
            "a pipe path past 107 bytes",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", &format!("address: {{ pipe: {{ path: /tmp/{} }} }}", "x".repeat(110))),
            false,
        ),
        (
            "both a socket address and a pipe",
            edit("address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }", "address: { pipe: { path: /tmp/ringway-parity.sock }, socket_address: { address: 127.0.0.1, port_value: 1 } }"),
            false,
        ),
        (
            "a route to an undefined cluster",
            edit("route: { cluster: app }", "route: { cluster: nowhere }"),
            false,
        ),
        (
            "a regex that does not compile",
            routes("              - match: { safe_regex: { regex: \"(\" } }\n                route: { cluster: app }\n"),
            false,
        ),
        (
            "an unknown connection manager field",
            hcm("          no_such_field: 1\n"),
            false,
        ),
        ("an unknown enum value", edit("type: STATIC", "type: STATICALLY"), false),
        (
            "two clusters with one name",
            edit("  - name: dns\n", "  - name: app\n"),
            false,
        ),
        ("no stat_prefix", edit(HCM, ""), false),
        (
            "an IPv4 prefix length past 32 (clamped)",
            hcm("          internal_address_config: { cidr_ranges: [ { address_prefix: 10.0.0.0, prefix_len: 33 } ] }\n"),
            true,
        ),
        (
            "a prefix length written as a UInt32Value",
            hcm("          internal_address_config: { cidr_ranges: [ { address_prefix: 10.0.0.0, prefix_len: { value: 8 } } ] }\n"),
            true,
        ),
        (
            "a prefix length past 128",
            hcm("          internal_address_config: { cidr_ranges: [ { address_prefix: 10.0.0.0, prefix_len: 129 } ] }\n"),
            false,
        ),
        ("a port past 65535", edit("port_value: 8080", "port_value: 70000"), false),
        ("a malformed duration", edit("connect_timeout: 1s", "connect_timeout: soon"), false),
        (
            "a negative retry count",
            edit("route: { cluster: app }", "route: { cluster: app, retry_policy: { num_retries: -1 } }"),
            false,
        ),
        (
            "one domain in two virtual hosts",
            routes("")
                .replace(
                    "            - name: all\n",
                    "            - name: twin\n              domains: [\"*\"]\n              routes: []\n            - name: all\n",
                ),
            false,
        ),
        (
            "a LOGICAL_DNS cluster with two endpoints",
            edit("    type: STRICT_DNS\n", "    type: LOGICAL_DNS\n").replace(
                "        - endpoint: { address: { socket_address: { address: localhost, port_value: 8081 } } }\n",
                "        - endpoint: { address: { socket_address: { address: localhost, port_value: 8081 } } }\n        - endpoint: { address: { socket_address: { address: localhost, port_value: 8082 } } }\n",
            ),
            false,
        ),
        (
            "a router named without typed_config",
            edit(
                "          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
                "          - name: envoy.filters.http.router\n",
            ),
            false,
        ),
        (
            "a route with no action",
            routes("              - match: { prefix: \"/none\" }\n"),
            false,
        ),
        (
            "stats matcher, deferred stats and cluster_manager options",
            format!("{BASE}stats_config: {{ stats_matcher: {{ exclusion_list: {{ patterns: [{{ prefix: cluster. }}, {{ safe_regex: {{ regex: '.*_rq' }} }}] }} }} }}\ndeferred_stat_options: {{ enable_deferred_creation_stats: true }}\ncluster_manager: {{ outlier_detection: {{ event_log_path: /dev/null }}, enable_deferred_cluster_creation: true }}\n"),
            true,
        ),
        (
            "a stats matcher with two kinds",
            format!("{BASE}stats_config: {{ stats_matcher: {{ reject_all: true, inclusion_list: {{ patterns: [{{ prefix: a }}] }} }} }}\n"),
            false,
        ),
        (
            "a stats matcher list without patterns",
            format!("{BASE}stats_config: {{ stats_matcher: {{ inclusion_list: {{ patterns: [] }} }} }}\n"),
            false,
        ),
        (
            "an outlier event log that cannot be opened",
            format!("{BASE}cluster_manager: {{ outlier_detection: {{ event_log_path: /nonexistent/dir/events.log }} }}\n"),
            false,
        ),
        (
            "stats_tags with look-ahead, a fixed value and a default by name",
            format!("{BASE}stats_config:\n  use_all_default_tags: false\n  stats_tags:\n  - {{ tag_name: l, regex: '^listener(?=\\.).*?\\.http\\.((.*?)\\.)' }}\n  - {{ tag_name: mesh, fixed_value: a }}\n  - {{ tag_name: envoy.cluster_name }}\n"),
            true,
        ),
        (
            "a stats_tags regex that does not compile",
            format!("{BASE}stats_config: {{ stats_tags: [{{ tag_name: t, regex: '(unclosed' }}] }}\n"),
            false,
        ),
        (
            "a stats_tags name with no regex and no default",
            format!("{BASE}stats_config: {{ stats_tags: [{{ tag_name: nothing_known }}] }}\n"),
            false,
        ),
        (
            "an overload action on a monitor that is not configured",
            format!("{BASE}overload_manager:\n  actions:\n  - name: envoy.overload_actions.stop_accepting_requests\n    triggers:\n    - {{ name: envoy.resource_monitors.fixed_heap, threshold: {{ value: 0.9 }} }}\n"),
            false,
        ),
        (
            "a fixed heap monitor with a threshold past 1",
            format!("{BASE}overload_manager:\n  resource_monitors:\n  - name: envoy.resource_monitors.fixed_heap\n    typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig, max_heap_size_bytes: 1000000 }}\n  actions:\n  - name: envoy.overload_actions.shrink_heap\n    triggers:\n    - {{ name: envoy.resource_monitors.fixed_heap, threshold: {{ value: 1.5 }} }}\n"),
            false,
        ),
        (
            "Istio's internal listener bootstrap extension",
            format!("{BASE}bootstrap_extensions:\n- name: envoy.bootstrap.internal_listener\n  typed_config:\n    \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n    type_url: type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener\n    value: {{ buffer_size_kb: 64 }}\n"),
            true,
        ),
        (
            "an internal listener buffer out of range",
            format!("{BASE}bootstrap_extensions:\n- name: internal\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener\n    buffer_size_kb: 9000\n"),
            false,
        ),
        (
            "an endpoint without an address",
            edit(
                "        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n",
                "        - endpoint: {}\n",
            ),
            false,
        ),
        (
            "priorities, locality weights and the assignment policy",
            edit(
                "    load_assignment:\n      cluster_name: app\n      endpoints:\n      - lb_endpoints:\n",
                "    common_lb_config: { locality_weighted_lb_config: {} }\n    load_assignment:\n      cluster_name: app\n      policy: { overprovisioning_factor: 200, weighted_priority_health: true }\n      endpoints:\n      - priority: 1\n        locality: { zone: b }\n        load_balancing_weight: 1\n        lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.2, port_value: 8080 } } }\n      - locality: { zone: a }\n        load_balancing_weight: 2\n        lb_endpoints:\n",
            ),
            true,
        ),
        (
            "a priority past 128",
            edit("      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n", "      - priority: 129\n        lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n"),
            false,
        ),
        (
            "an overprovisioning factor of 0",
            edit("      cluster_name: app\n", "      cluster_name: app\n      policy: { overprovisioning_factor: 0 }\n"),
            false,
        ),
        (
            "a locality weight of 0",
            edit("      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n", "      - load_balancing_weight: 0\n        lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }\n"),
            false,
        ),
        (
            "subsets, endpoint metadata and a route's metadata_match",
            edit(
                "    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n",
                "    connect_timeout: 1s\n    lb_subset_config:\n      fallback_policy: DEFAULT_SUBSET\n      default_subset: { version: v1 }\n      subset_selectors:\n      - keys: [version]\n        fallback_policy: ANY_ENDPOINT\n    load_assignment:\n      cluster_name: app\n",
            )
            .replace(
                "port_value: 8080 } } }\n",
                "port_value: 8080 } } }\n          metadata: { filter_metadata: { envoy.lb: { version: v1 } } }\n",
            )
            .replace(
                "                route: { cluster: app }\n",
                "                route: { cluster: app, metadata_match: { filter_metadata: { envoy.lb: { version: v1 } } } }\n",
            ),
            true,
        ),
        (
            "weighted clusters with metadata_match",
            edit(
                "                route: { cluster: app }\n",
                "                route: { metadata_match: { filter_metadata: { envoy.lb: { stage: prod } } }, weighted_clusters: { clusters: [ { name: app, weight: 9, metadata_match: { filter_metadata: { envoy.lb: { version: v1 } } } }, { name: dns, weight: 1 } ] } }\n",
            ),
            true,
        ),
        (
            "mirror policies",
            edit(
                "                route: { cluster: app }\n",
                "                route: { cluster: app, request_mirror_policies: [ { cluster: dns, runtime_fraction: { default_value: { numerator: 5, denominator: TEN_THOUSAND } } }, { cluster: app, disable_shadow_host_suffix_append: true } ] }\n",
            ),
            true,
        ),
        (
            "a mirror policy without a cluster",
            edit(
                "                route: { cluster: app }\n",
                "                route: { cluster: app, request_mirror_policies: [ { runtime_fraction: { default_value: { numerator: 5 } } } ] }\n",
            ),
            false,
        ),
        (
            "a mirror to an unknown cluster",
            edit(
                "                route: { cluster: app }\n",
                "                route: { cluster: app, request_mirror_policies: [ { cluster: nowhere } ] }\n",
            ),
            false,
        ),
        (
            "a health_check filter, disabled",
            filter("            disabled: true\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: false, headers: [ { name: \":path\", string_match: { exact: /healthz } } ], cluster_min_healthy_percentages: { app: { value: 50 } } }\n"),
            true,
        ),
        (
            "a health_check filter without pass_through_mode",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck }\n"),
            false,
        ),
        (
            "a health_check filter watching a cluster at 150%",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: true, cluster_min_healthy_percentages: { app: { value: 150 } } }\n"),
            false,
        ),
        (
            "a route turning a filter off, and an optional route config",
            route_field("                typed_per_filter_config: { hc: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }, other: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true, config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: true } } }\n"),
            true,
        ),
        (
            "a route config for a filter that has none",
            route_field("                typed_per_filter_config: { hc: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: true } }\n"),
            false,
        ),
        (
            "an empty FilterConfig",
            route_field("                typed_per_filter_config: { hc: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig } }\n"),
            false,
        ),
        (
            "a fault filter, and a route's own fault settings",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, upstream_cluster: app, max_active_faults: 10, headers: [ { name: x-fault, present_match: true } ], delay: { fixed_delay: 0.5s, percentage: { numerator: 5, denominator: TEN_THOUSAND } }, abort: { grpc_status: 14, percentage: { numerator: 1 } } }\n")
                .replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: { header_abort: {} } } }\n"),
            true,
        ),
        (
            "a fault abort with status 600",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: { http_status: 600 } }\n"),
            false,
        ),
        (
            "a fault abort without a status",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: { percentage: { numerator: 1 } } }\n"),
            false,
        ),
        (
            "a fault delay both fixed and from a header",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, delay: { fixed_delay: 1s, header_delay: {} } }\n"),
            false,
        ),
        (
            "a local rate limit filter with runtime keys, headers and a route's own bucket",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, status: { code: 503 }, token_bucket: { max_tokens: 10, tokens_per_fill: 5, fill_interval: 0.5s }, filter_enabled: { runtime_key: rl.on, default_value: { numerator: 5, denominator: TEN_THOUSAND } }, filter_enforced: { default_value: { numerator: 100 } }, enable_x_ratelimit_headers: DRAFT_VERSION_03, local_rate_limit_per_downstream_connection: true, rate_limited_as_resource_exhausted: true, response_headers_to_add: [ { header: { key: x-rl, value: \"1\" } } ], request_headers_to_add_when_not_enforced: [ { header: { key: x-rl, value: \"1\" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: own, token_bucket: { max_tokens: 1, fill_interval: 1s } } }\n"),
            true,
        ),
        (
            "a local rate limit filter without a token bucket",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl }\n"),
            true,
        ),
        (
            "a local rate limit filter without a stat_prefix",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, token_bucket: { max_tokens: 1, fill_interval: 1s } }\n"),
            false,
        ),
        (
            "a local rate limit bucket filled every 10ms",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, token_bucket: { max_tokens: 1, fill_interval: 0.01s } }\n"),
            false,
        ),
        (
            "a local rate limit bucket filled with no tokens",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, token_bucket: { max_tokens: 1, tokens_per_fill: 0, fill_interval: 1s } }\n"),
            false,
        ),
        (
            "a local rate limit bucket of no tokens",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, token_bucket: { max_tokens: 0, fill_interval: 1s } }\n"),
            true,
        ),
        (
            "a route's own local rate limit without a bucket",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: own } }\n"),
            false,
        ),
        (
            "a static runtime layer setting a filter's runtime key to a percent",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, filter_enabled: { runtime_key: rl.on, default_value: { numerator: 5 } } }\n").replacen("admin:\n", "layered_runtime: { layers: [ { name: s, static_layer: { rl.on: { numerator: 5, denominator: TEN_THOUSAND } } } ] }\nadmin:\n", 1),
            true,
        ),
        (
            "a CORS filter with policies on a route, its action and its virtual host",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, cors: { allow_methods: GET, max_age: \"60\" } }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [ { prefix: \"https://\" } ], allow_credentials: true, forward_not_matching_preflights: false, allow_private_network_access: true, shadow_enabled: { default_value: { numerator: 5 } } } }\n"),
            true,
        ),
        (
            "a CORS policy with an empty origin matcher",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [ {} ] } }\n"),
            false,
        ),
        (
            "a CSRF filter with additional origins and a route's own policy",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy, filter_enabled: { runtime_key: csrf.on, default_value: { numerator: 100 } }, shadow_enabled: { default_value: { numerator: 5 } }, additional_origins: [ { exact: a.example } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy, filter_enabled: { default_value: { numerator: 0 } } } }\n"),
            true,
        ),
        (
            "a CSRF filter without filter_enabled",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy, additional_origins: [ { exact: a.example } ] }\n"),
            false,
        ),
        (
            "an RBAC filter with shadow rules, per-rule stats and a route's own rules",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, track_per_rule_stats: true, rules_stat_prefix: a_, shadow_rules_stat_prefix: b_, rules: { action: DENY, policies: { p: { permissions: [ { and_rules: { rules: [ { header: { name: \":method\", exact_match: GET } }, { not_rule: { url_path: { path: { prefix: /a } } } } ] } }, { destination_port_range: { start: 80, end: 65536 } }, { requested_server_name: { exact: a } } ], principals: [ { or_ids: { ids: [ { remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } }, { authenticated: { principal_name: { exact: \"spiffe://a\" } } } ] } }, { direct_remote_ip: { address_prefix: \"::1\", prefix_len: 128 } } ] } } }, shadow_rules: { action: LOG } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute, rbac: { rules: { policies: { q: { permissions: [ { any: true } ], principals: [ { source_ip: { address_prefix: 127.0.0.1 } } ] } } } } } }\n"),
            true,
        ),
        (
            "RBAC rules without policies, and a route's override without rules",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {} }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute } }\n"),
            true,
        ),
        (
            "an RBAC policy without principals",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { policies: { p: { permissions: [ { any: true } ] } } } }\n"),
            false,
        ),
        (
            "an RBAC permission of any: false",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { policies: { p: { permissions: [ { any: false } ], principals: [ { any: true } ] } } } }\n"),
            false,
        ),
        (
            "an RBAC empty permission",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { policies: { p: { permissions: [ {} ], principals: [ { any: true } ] } } } }\n"),
            false,
        ),
        (
            "an RBAC port range ending where it starts",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { policies: { p: { permissions: [ { destination_port_range: { start: 80, end: 80 } } ], principals: [ { any: true } ] } } } }\n"),
            false,
        ),
        (
            "an RBAC and_rules without rules",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { policies: { p: { permissions: [ { and_rules: { rules: [] } } ], principals: [ { any: true } ] } } } }\n"),
            false,
        ),
        (
            "an RBAC action that does not exist",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: { action: MAYBE } }\n"),
            false,
        ),
        (
            "a header mutation filter with every kind of mutation and a route's own",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation, most_specific_header_mutations_wins: true, mutations: { request_mutations: [ { remove: x-a }, { append: { header: { key: x-b, value: b }, append_action: ADD_IF_ABSENT } }, { remove_on_match: { key_matcher: { prefix: x-c } } } ], response_mutations: [ { append: { header: { key: x-d, value: \"\" }, keep_empty_value: true } } ] } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute, mutations: { response_mutations: [ { remove: x-e } ] } } }\n"),
            true,
        ),
        (
            "a header mutation both removing and appending",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation, mutations: { request_mutations: [ { remove: x-a, append: { header: { key: x-b, value: b } } } ] } }\n"),
            false,
        ),
        (
            "a header mutation appending without a header",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation, mutations: { request_mutations: [ { append: {} } ] } }\n"),
            false,
        ),
        (
            "a header mutation removing on a match without a matcher",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation, mutations: { response_mutations: [ { remove_on_match: {} } ] } }\n"),
            false,
        ),
        (
            "a JWT filter with every supported provider field, rules, a requirement map and a route's own requirement",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, stat_prefix: s, bypass_cors_preflight: true, strip_failure_response: true, providers: { p: { issuer: i, audiences: [a], subjects: { prefix: x }, require_expiration: true, max_lifetime: 60s, forward: true, from_headers: [ { name: x-t, value_prefix: \"T \" } ], from_params: [ t ], from_cookies: [ c ], forward_payload_header: x-p, pad_forward_payload_header: true, clock_skew_seconds: 5, jwt_cache_config: { jwt_cache_size: 10 }, claim_to_headers: [ { header_name: x-s, claim_name: sub } ], local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } }, q: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } }, requirement_map: { req: { requires_any: { requirements: [ { provider_name: p }, { allow_missing: {} } ] } } }, rules: [ { match: { prefix: /a }, requirement_name: req }, { match: { prefix: /b }, requires: { requires_all: { requirements: [ { provider_name: p }, { provider_and_audiences: { provider_name: q, audiences: [z] } } ] } } }, { match: { prefix: /c } }, { match: { prefix: / }, requires: { allow_missing_or_failed: {} } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig, requirement_name: req } }\n"),
            true,
        ),
        (
            "a JWT rule requiring a provider that is not configured",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } }, rules: [ { match: { prefix: / }, requires: { provider_name: nope } } ] }\n"),
            false,
        ),
        (
            "a JWT rule naming a requirement the map lacks",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } }, rules: [ { match: { prefix: / }, requirement_name: nope } ] }\n"),
            false,
        ),
        (
            "requires_any with a single requirement",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } }, rules: [ { match: { prefix: / }, requires: { requires_any: { requirements: [ { provider_name: p } ] } } } ] }\n"),
            false,
        ),
        (
            "a JWT provider whose local JWKS has no valid key",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[]}' } } } }\n"),
            false,
        ),
        (
            "a JWT provider without a key source",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { issuer: i } } }\n"),
            false,
        ),
        (
            "a JWT PerRouteConfig with neither disabled nor a requirement name",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig, disabled: false } }\n"),
            false,
        ),
        (
            "a JWT PerRouteConfig naming a requirement the map lacks",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig, requirement_name: nope } }\n"),
            true,
        ),
        (
            "a JWT header location without a name",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { from_headers: [ { value_prefix: x } ], local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' } } } }\n"),
            false,
        ),
        (
            "local rate limit descriptors over route rate_limits of every supported action",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } }, { entries: [ { key: user } ], token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 2s } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, rate_limits: [ { stage: 0, actions: [ { request_headers: { header_name: x-u, descriptor_key: user, skip_if_absent: true } }, { query_parameters: { query_parameter_name: q, descriptor_key: q } }, { remote_address: {} }, { masked_remote_address: { v4_prefix_mask_len: 16 } }, { generic_key: { descriptor_value: g } }, { header_value_match: { descriptor_value: h, expect_match: false, headers: [ { name: x-a, present_match: true } ] } }, { query_parameter_value_match: { descriptor_value: m, query_parameters: [ { name: f } ] } }, { destination_cluster: {} }, { source_cluster: {} } ] } ] }\n"),
            true,
        ),
        (
            "a route rate limit without actions",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, rate_limits: [ { actions: [] } ] }\n"),
            false,
        ),
        (
            "a generic_key action without a value",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, rate_limits: [ { actions: [ { generic_key: {} } ] } ] }\n"),
            false,
        ),
        (
            "a rate limit stage past 10",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, rate_limits: [ { stage: 11, actions: [ { remote_address: {} } ] } ] }\n"),
            false,
        ),
        (
            "two local descriptors alike",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } }, { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n"),
            false,
        ),
        (
            "a local descriptor without entries",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n"),
            false,
        ),
        (
            "a request_headers action without a descriptor key",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, token_bucket: { max_tokens: 1, fill_interval: 1s }, descriptors: [ { entries: [ { key: k, value: v } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ] }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app, rate_limits: [ { actions: [ { request_headers: { header_name: x-u } } ] } ] }\n"),
            false,
        ),
        (
            "a buffer filter with a route's own limit",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1024 }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, buffer: { max_request_bytes: 10 } } }\n"),
            true,
        ),
        (
            "a buffer filter disabled on a route",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1024 }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, disabled: true } }\n"),
            true,
        ),
        (
            "a buffer filter without max_request_bytes",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer }\n"),
            false,
        ),
        (
            "a buffer filter with max_request_bytes 0",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 0 }\n"),
            false,
        ),
        (
            "a BufferPerRoute with neither override",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1 }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute  } }\n"),
            false,
        ),
        (
            "an ext_authz HTTP service with every setting",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s }, path_prefix: /p, authorization_request: { allowed_headers: { patterns: [ { exact: x-a }, { prefix: x-b } ] }, headers_to_add: [ { key: x-c, value: d } ] }, authorization_response: { allowed_upstream_headers: { patterns: [ { exact: x-u } ] }, allowed_upstream_headers_to_append: { patterns: [ { exact: x-v } ] }, allowed_client_headers: { patterns: [ { exact: x-w } ] }, allowed_client_headers_on_success: { patterns: [ { exact: x-x } ] } } }, failure_mode_allow: true, failure_mode_allow_header_add: true, clear_route_cache: true, status_on_error: { code: 503 }, stat_prefix: s, charge_cluster_response_stats: false, transport_api_version: V3 }\n"),
            true,
        ),
        (
            "an ext_authz gRPC service with context extensions on a route",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, grpc_service: { envoy_grpc: { cluster_name: app, authority: a.example }, timeout: 0.5s }, transport_api_version: V3, failure_mode_allow: true }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, check_settings: { context_extensions: { a: b, c: d } } } }\n"),
            true,
        ),
        (
            "an ext_authz filter with both services",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, grpc_service: { envoy_grpc: { cluster_name: app, authority: a.example }, timeout: 0.5s }, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n"),
            false,
        ),
        (
            "an ext_authz gRPC service without a cluster name",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, grpc_service: { envoy_grpc: { authority: a } } }\n"),
            false,
        ),
        (
            "ext_authz allowed and disallowed headers",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, allowed_headers: { patterns: [ { exact: x-a } ] }, disallowed_headers: { patterns: [ { prefix: x-b } ] }, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n"),
            true,
        ),
        (
            "ext_authz allowed_headers set twice",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, allowed_headers: { patterns: [ { exact: x-a } ] }, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s }, authorization_request: { allowed_headers: { patterns: [ { exact: x-c } ] } } } }\n"),
            false,
        ),
        (
            "an ext_authz server_uri without a timeout",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app } } }\n"),
            false,
        ),
        (
            "an ext_authz server_uri without a cluster",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", timeout: 1s } } }\n"),
            false,
        ),
        (
            "an ext_authz path_prefix without its slash",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s }, path_prefix: p } }\n"),
            false,
        ),
        (
            "an ext_authz service on a cluster the config lacks",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: nowhere, timeout: 1s } } }\n"),
            true,
        ),
        (
            "an ext_authz filter disabled on a route",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, disabled: true } }\n"),
            true,
        ),
        (
            "an ext_authz route's check_settings",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, check_settings: { context_extensions: { k: v }, disable_request_body_buffering: true } } }\n"),
            true,
        ),
        (
            "an ext_authz route's disabled: false",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, disabled: false } }\n"),
            true,
        ),
        (
            "an empty ExtAuthzPerRoute",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: { server_uri: { uri: \"http://a/b\", cluster: app, timeout: 1s } } }\n").replace("                route: { cluster: app }\n", "                route: { cluster: app }\n                typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute } }\n"),
            false,
        ),
        (
            "a rate limit filter with every setting",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, stage: 2, request_type: both, timeout: 0.1s, failure_mode_deny: true, disable_x_envoy_ratelimited_header: true, rate_limited_status: { code: 503 }, status_on_error: { code: 502 }, enable_x_ratelimit_headers: \"OFF\", rate_limits: [ { actions: [ { generic_key: { descriptor_value: a } } ] } ], rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            true,
        ),
        (
            "a rate limit filter without a domain",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            false,
        ),
        (
            "a rate limit filter without a service",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d }\n"),
            false,
        ),
        (
            "a rate limit service without transport_api_version",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            true,
        ),
        (
            "a rate limit service on a cluster the config lacks",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: nowhere } } } }\n"),
            true,
        ),
        (
            "a rate limit filter stage past 10",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, stage: 11, rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            false,
        ),
        (
            "a stage in a rate limit filter's own rate_limits",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, rate_limits: [ { stage: 1, actions: [ { generic_key: { descriptor_value: a } } ] } ], rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            false,
        ),
        (
            "a JWT provider with remote_jwks",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { issuer: i, remote_jwks: { http_uri: { uri: \"https://keys.example/jwks\", cluster: app, timeout: 1s }, cache_duration: 60s } } }, rules: [ { match: { prefix: / }, requires: { provider_name: p } } ] }\n"),
            true,
        ),
        (
            "a JWT provider's remote_jwks without a timeout",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { remote_jwks: { http_uri: { uri: \"https://keys.example/jwks\", cluster: app } } } } }\n"),
            false,
        ),
        (
            "a JWT provider's remote_jwks without a cluster",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { remote_jwks: { http_uri: { uri: \"https://keys.example/jwks\", timeout: 1s } } } } }\n"),
            false,
        ),
        (
            "a JWT provider with local and remote key sets",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { local_jwks: { inline_string: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}' }, remote_jwks: { http_uri: { uri: \"https://keys.example/jwks\", cluster: app, timeout: 1s } } } } }\n"),
            false,
        ),
        (
            "a JWT provider's remote_jwks cached for no time",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: { p: { remote_jwks: { http_uri: { uri: \"https://keys.example/jwks\", cluster: app, timeout: 1s }, cache_duration: 0s } } } }\n"),
            false,
        ),
        (
            "a rate limit filter's stat_prefix and response headers",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit, domain: d, stat_prefix: s, response_headers_to_add: [ { header: { key: x-a, value: b }, append_action: ADD_IF_ABSENT } ], rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } } }\n"),
            true,
        ),
        (
            "a local rate limit filter's own rate_limits",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, descriptors: [ { entries: [ { key: generic_key, value: a } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ], rate_limits: [ { actions: [ { generic_key: { descriptor_value: a } } ] } ] }\n"),
            true,
        ),
        (
            "a stage in a local rate limit filter's own rate_limits",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: d, descriptors: [ { entries: [ { key: generic_key, value: a } ], token_bucket: { max_tokens: 1, fill_interval: 1s } } ], rate_limits: [ { stage: 1, actions: [ { generic_key: { descriptor_value: a } } ] } ] }\n"),
            false,
        ),
        (
            "filter configs at the route configuration and a weighted cluster",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation }\n")
                .replace("            virtual_hosts:\n", "            typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute } }\n            virtual_hosts:\n")
                .replace("                route: { cluster: app }\n", "                route: { weighted_clusters: { clusters: [ { name: app, weight: 1, typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true } } } ] } }\n"),
            true,
        ),
        (
            "a health check filter config on a weighted cluster",
            filter("            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: true }\n")
                .replace("                route: { cluster: app }\n", "                route: { weighted_clusters: { clusters: [ { name: app, weight: 1, typed_per_filter_config: { extra.filter: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: true } } } ] } }\n"),
            false,
        ),
        (
            "an optional filter Ringway does not run",
            filter("            is_optional: true\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua }\n"),
            true,
        ),
        (
            "zone-aware routing against a local cluster",
            edit(
                "admin:\n",
                "node: { id: n1, cluster: c, locality: { zone: a } }\ncluster_manager: { local_cluster_name: dns }\nadmin:\n",
            )
            .replace(
                "    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n",
                "    connect_timeout: 1s\n    common_lb_config:\n      zone_aware_lb_config: { routing_enabled: { value: 40 }, min_cluster_size: 3, fail_traffic_on_panic: true }\n    load_assignment:\n      cluster_name: app\n",
            ),
            true,
        ),
        (
            "a local cluster that is not defined",
            edit("admin:\n", "cluster_manager: { local_cluster_name: elsewhere }\nadmin:\n"),
            false,
        ),
        (
            "zone-aware routing enabled for 150%",
            edit(
                "    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n",
                "    connect_timeout: 1s\n    common_lb_config: { zone_aware_lb_config: { routing_enabled: { value: 150 } } }\n    load_assignment:\n      cluster_name: app\n",
            ),
            false,
        ),
        (
            "both zone-aware routing and locality weights",
            edit(
                "    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n",
                "    connect_timeout: 1s\n    common_lb_config: { zone_aware_lb_config: {}, locality_weighted_lb_config: {} }\n    load_assignment:\n      cluster_name: app\n",
            ),
            false,
        ),
    ]
}

#[test]
fn envoy_and_ringway_agree_on_validity() {
    let Some(envoy) = envoy_or_skip("envoy_and_ringway_agree_on_validity") else {
        return;
    };
    let mut disagreements = String::new();
    for (what, config, valid) in corpus() {
        let (envoy_ok, envoy_said) = envoy_validate(&envoy, &config);
        let (ringway_ok, ringway_said) = ringway_validate(&config);
        if envoy_ok != valid {
            disagreements += &format!(
                "\n== {what}: the corpus says valid={valid}, Envoy says {envoy_ok}\n{envoy_said}\n"
            );
        }
        if ringway_ok != envoy_ok {
            disagreements += &format!(
                "\n== {what}: Envoy valid={envoy_ok}, Ringway valid={ringway_ok}\n--- envoy\n{envoy_said}\n--- ringway\n{ringway_said}\n"
            );
        }
    }
    assert!(disagreements.is_empty(), "{disagreements}");
}
