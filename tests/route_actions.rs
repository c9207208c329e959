//! Envoy's route actions, black-box: weighted clusters, cluster_header,
//! redirects, path and host rewrites, and header mutations at route,
//! virtual host and route-configuration level.

mod common;
use common::*;

fn vhost(routes: &str, extra: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n{extra}              routes:\n{routes}"
    )
}

#[test]
fn weighted_clusters_split_by_weight() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let routes = "              - match: { prefix: \"/\" }\n                route:\n                  weighted_clusters:\n                    clusters:\n                    - { name: a, weight: 70 }\n                    - { name: b, weight: 20 }\n                    - { name: c, weight: 10 }\n";
    let clusters = [
        static_cluster("a", &[(&a, 1)], ""),
        static_cluster("b", &[(&b, 1)], ""),
        static_cluster("c", &[(&c, 1)], ""),
    ]
    .concat();
    let p = Proxy::start(
        &http_config(&vhost(routes, ""), &clusters),
        &["--concurrency", "2"],
    );
    let total = 2000;
    let mut counts = std::collections::HashMap::new();
    for i in 0..total / 100 {
        let mut client = Client::connect(p.port);
        for _ in 0..100 {
            let r = client.get("h", &format!("/{i}"));
            *counts
                .entry(r.header("x-backend").unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
    }
    for (name, weight) in [("a", 70.0), ("b", 20.0), ("c", 10.0)] {
        let share = f64::from(counts.get(name).copied().unwrap_or(0)) * 100.0 / f64::from(total);
        // Binomial sd at n=2000 is at most 1.1 points: 4 points is > 3.5 sd.
        assert!(
            (share - weight).abs() < 4.0,
            "{name}: {share}% of {counts:?}"
        );
    }
}

#[test]
fn cluster_header_picks_the_named_cluster() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let routes = "              - match: { prefix: \"/nf\" }\n                route: { cluster_header: x-cluster, cluster_not_found_response_code: NOT_FOUND }\n              - match: { prefix: \"/\" }\n                route: { cluster_header: x-cluster }\n";
    let clusters = [
        static_cluster("a", &[(&a, 1)], ""),
        static_cluster("b", &[(&b, 1)], ""),
    ]
    .concat();
    let p = Proxy::start(&http_config(&vhost(routes, ""), &clusters), &[]);
    let send = |path: &str, header: &str| {
        let mut c = Client::connect(p.port);
        c.send(format!("GET {path} HTTP/1.1\r\nhost: h\r\n{header}\r\n").as_bytes());
        c.read_response(false).expect("response")
    };
    assert_eq!(send("/", "x-cluster: b\r\n").header("x-backend"), Some("b"));
    assert_eq!(send("/", "x-cluster: a\r\n").header("x-backend"), Some("a"));
    assert_eq!(send("/", "x-cluster: nope\r\n").status, 503);
    assert_eq!(send("/", "").status, 503);
    assert_eq!(send("/nf", "x-cluster: nope\r\n").status, 404);
}

#[test]
fn redirects_follow_envoy() {
    let routes = r#"              - match: { prefix: "/secure" }
                redirect: { https_redirect: true }
              - match: { prefix: "/moved" }
                redirect: { host_redirect: new.example, port_redirect: 8443, path_redirect: "/landing", response_code: FOUND }
              - match: { prefix: "/old/" }
                redirect: { prefix_rewrite: "/new/", response_code: PERMANENT_REDIRECT }
              - match: { prefix: "/v1/" }
                redirect: { regex_rewrite: { pattern: { regex: "^/v1/(\\w+)/(\\d+)$" }, substitution: "/v2/\\2/\\1" } }
              - match: { prefix: "/strip" }
                redirect: { path_redirect: "/clean", strip_query: true, scheme_redirect: https }
"#;
    let p = Proxy::start(&http_config(&vhost(routes, ""), "    []\n"), &[]);
    let go = |host: &str, path: &str| {
        let r = get(p.port, host, path);
        (r.status, r.header("location").unwrap_or("").to_string())
    };
    assert_eq!(
        go("shop.example", "/secure/cart?x=1"),
        (301, "https://shop.example/secure/cart?x=1".into())
    );
    // A scheme change drops the request's port.
    assert_eq!(
        go("shop.example:8080", "/secure"),
        (301, "https://shop.example/secure".into())
    );
    assert_eq!(
        go("shop.example", "/moved?q=2"),
        (302, "http://new.example:8443/landing?q=2".into())
    );
    assert_eq!(
        go("a.example", "/old/page"),
        (308, "http://a.example/new/page".into())
    );
    assert_eq!(
        go("a.example", "/v1/users/42"),
        (301, "http://a.example/v2/42/users".into())
    );
    assert_eq!(
        go("a.example", "/strip?secret=1"),
        (301, "https://a.example/clean".into())
    );
}

#[test]
fn path_and_host_rewrites() {
    let backend = Backend::start("b");
    let dns = format!(
        "  - name: dns\n    type: STRICT_DNS\n    dns_lookup_family: V4_ONLY\n    load_assignment:\n      cluster_name: dns\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {} }} }} }}\n",
        backend.port()
    );
    let routes = r#"              - match: { prefix: "/re/" }
                route: { cluster: backend, regex_rewrite: { pattern: { regex: "/(\\d+)" }, substitution: "/n\\1" } }
              - match: { prefix: "/lit" }
                route: { cluster: backend, host_rewrite_literal: upstream.internal }
              - match: { prefix: "/hdr" }
                route: { cluster: backend, host_rewrite_header: x-upstream-host }
              - match: { prefix: "/auto" }
                route: { cluster: dns, auto_host_rewrite: true }
              - match: { prefix: "/api/" }
                route: { cluster: backend, prefix_rewrite: "/" }
"#;
    let clusters = static_cluster("backend", &[(&backend, 1)], "") + &dns;
    let p = Proxy::start(&http_config(&vhost(routes, ""), &clusters), &[]);
    let send = |path: &str, extra: &str| {
        let mut c = Client::connect(p.port);
        c.send(format!("GET {path} HTTP/1.1\r\nhost: front.example\r\n{extra}\r\n").as_bytes());
        assert_eq!(c.read_response(false).expect("response").status, 200);
        backend.seen().last().cloned().expect("backend saw it")
    };
    let seen = send("/re/1/x/22?q=3", "");
    assert_eq!(seen.path, "/re/n1/x/n22?q=3");
    assert_eq!(seen.header("x-envoy-original-path"), Some("/re/1/x/22?q=3"));
    let seen = send("/lit", "");
    assert_eq!(seen.header("host"), Some("upstream.internal"));
    assert_eq!(seen.header("x-envoy-original-path"), None);
    assert_eq!(
        send("/hdr", "x-upstream-host: from.header\r\n").header("host"),
        Some("from.header")
    );
    assert_eq!(send("/hdr", "").header("host"), Some("front.example"));
    assert_eq!(send("/auto", "").header("host"), Some("localhost"));
    let seen = send("/api/users", "x-envoy-original-path: /spoofed\r\n");
    assert_eq!(seen.path, "/users");
    assert_eq!(seen.header("x-envoy-original-path"), Some("/api/users"));
}

#[test]
fn header_mutations_at_three_levels() {
    let backend = Backend::start("b");
    let route_level = r#"              - match: { prefix: "/" }
                route: { cluster: backend }
                request_headers_to_add:
                - header: { key: x-level, value: route }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
                - header: { key: x-copy, value: "%REQ(x-source)%" }
                - header: { key: x-kept, value: new }
                  append_action: ADD_IF_ABSENT
                - header: { key: x-multi, value: two }
                request_headers_to_remove: [x-secret]
                response_headers_to_add:
                - header: { key: x-served-by, value: "%UPSTREAM_HOST%" }
                - header: { key: x-route, value: "%ROUTE_NAME%" }
                response_headers_to_remove: [x-backend]
"#;
    let vhost_level = r#"              request_headers_to_add:
              - header: { key: x-level, value: vhost }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              response_headers_to_add:
              - header: { key: x-vhost, value: yes }
"#;
    let config = http_config(&vhost(route_level, vhost_level), &static_cluster("backend", &[(&backend, 1)], "")).replace(
        "            name: local_route\n",
        "            name: local_route\n            request_headers_to_add:\n            - header: { key: x-config, value: rc }\n            response_headers_to_add:\n            - header: { key: x-level, value: config }\n              append_action: OVERWRITE_IF_EXISTS_OR_ADD\n",
    );
    let p = Proxy::start(&config, &[]);
    let mut c = Client::connect(p.port);
    c.send(b"GET /x HTTP/1.1\r\nhost: h\r\nx-secret: s\r\nx-source: copied\r\nx-kept: old\r\nx-multi: one\r\nx-level: client\r\n\r\n");
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    let seen = backend.seen().last().cloned().expect("seen");
    let all = |name: &str| -> Vec<&str> {
        seen.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    // The enclosing level (virtual host) has the last word.
    assert_eq!(all("x-level"), ["vhost"]);
    assert_eq!(all("x-client"), ["127.0.0.1"]);
    assert_eq!(all("x-copy"), ["copied"]);
    assert_eq!(all("x-kept"), ["old"]);
    assert_eq!(all("x-multi"), ["one", "two"]);
    assert_eq!(all("x-secret"), Vec::<&str>::new());
    assert_eq!(all("x-config"), ["rc"]);
    // Response side.
    assert_eq!(
        r.header("x-served-by"),
        Some(format!("127.0.0.1:{}", backend.port()).as_str())
    );
    assert_eq!(
        r.header("x-route"),
        None,
        "an unnamed route renders nothing"
    );
    assert_eq!(r.header("x-backend"), None);
    assert_eq!(r.header("x-vhost"), Some("yes"));
    assert_eq!(r.header("x-level"), Some("config"));
}

#[test]
fn x_forwarded_for_follows_use_remote_address() {
    let backend = Backend::start("b");
    let route = r#"              - match: { prefix: "/" }
                route: { cluster: backend }
                request_headers_to_add:
                - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
                - header: { key: x-peer, value: "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%" }
"#;
    let with_hcm = |extra: &str| {
        http_config(
            &vhost(route, ""),
            &static_cluster("backend", &[(&backend, 1)], ""),
        )
        .replace(
            "          stat_prefix: ingress_http\n",
            &format!("          stat_prefix: ingress_http\n{extra}"),
        )
    };
    let send = |port: u16, headers: &str| {
        let mut c = Client::connect(port);
        c.send(format!("GET / HTTP/1.1\r\nhost: h\r\n{headers}\r\n").as_bytes());
        assert_eq!(c.read_response(false).expect("response").status, 200);
        backend.seen().last().cloned().expect("seen")
    };
    // Edge proxy: the connection's address is trusted; for a loopback
    // peer Envoy appends the host's own address instead.
    let p = Proxy::start(&with_hcm("          use_remote_address: true\n"), &[]);
    let seen = send(
        p.port,
        "x-forwarded-for: 1.2.3.4\r\nx-envoy-external-address: spoofed\r\n",
    );
    let xff = seen.header("x-forwarded-for").expect("xff");
    let appended = xff
        .strip_prefix("1.2.3.4,")
        .expect("appended after a comma");
    assert!(appended.parse::<std::net::IpAddr>().is_ok(), "{xff}");
    // Nothing is internal without internal_address_config (Envoy 1.40).
    assert_eq!(seen.header("x-envoy-internal"), None);
    assert_eq!(seen.header("x-envoy-external-address"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-client"), Some("127.0.0.1"));
    // With loopback declared internal, a direct client is internal.
    let p = Proxy::start(&internal_loopback(&with_hcm("")), &[]);
    let seen = send(p.port, "x-request-id: from-client\r\n");
    assert_eq!(seen.header("x-envoy-internal"), Some("true"));
    assert_eq!(seen.header("x-envoy-external-address"), None);
    assert_eq!(seen.header("x-request-id"), Some("from-client"));
    // One trusted hop in front: the client is the header's last entry.
    let p = Proxy::start(
        &with_hcm("          use_remote_address: true\n          xff_num_trusted_hops: 1\n"),
        &[],
    );
    let seen = send(
        p.port,
        "x-forwarded-for: 203.0.113.7\r\nx-envoy-internal: true\r\nx-request-id: from-client\r\n",
    );
    // An external edge request gets a fresh request id.
    let id = seen.header("x-request-id").expect("an id");
    assert!(id != "from-client" && id.len() == 36, "{id}");
    assert!(seen
        .header("x-forwarded-for")
        .is_some_and(|v| v.starts_with("203.0.113.7,")));
    assert_eq!(seen.header("x-envoy-external-address"), Some("203.0.113.7"));
    assert_eq!(
        seen.header("x-envoy-internal"),
        None,
        "a client's claim is dropped"
    );
    assert_eq!(seen.header("x-client"), Some("203.0.113.7"));
    assert_eq!(seen.header("x-peer"), Some("127.0.0.1"));
    // ...unless told to keep it.
    let p = Proxy::start(
        &with_hcm("          use_remote_address: true\n          xff_num_trusted_hops: 1\n          preserve_external_request_id: true\n"),
        &[],
    );
    let seen = send(
        p.port,
        "x-forwarded-for: 203.0.113.7\r\nx-request-id: from-client\r\n",
    );
    assert_eq!(seen.header("x-request-id"), Some("from-client"));
    // Default (internal proxy): the header is left alone and its last
    // entry is the client.
    let p = Proxy::start(&with_hcm(""), &[]);
    let seen = send(
        p.port,
        "x-forwarded-for: 198.51.100.1, 9.9.9.9\r\nx-request-id: from-client\r\n",
    );
    assert_eq!(seen.header("x-request-id"), Some("from-client"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("198.51.100.1, 9.9.9.9")
    );
    assert_eq!(seen.header("x-client"), Some("9.9.9.9"));
    assert_eq!(seen.header("x-envoy-internal"), None);
}
