//! Request mirroring (`request_mirror_policies`) against Envoy 1.40 on the
//! same config: the copy a mirror cluster receives (method, path, host
//! with `-shadow`, headers, body), what is not copied, and a dead or
//! silent mirror never touching the client's answer.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::time::{Duration, Instant};

/// A route for `prefix` to cluster `p`, mirrored by `mirrors` (flow
/// mappings).
fn route(prefix: &str, mirrors: &[&str]) -> String {
    format!(
        "              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: p, timeout: 2s, request_mirror_policies: [{}] }}\n",
        mirrors.join(", ")
    )
}

/// The requests `backend` has seen past the first `from`, once there are
/// `n` of them (or what there is after 5 s), as comparable text: method,
/// path, body length and headers (lower-cased, sorted, the request id
/// masked).
fn copies(backend: &Backend, from: usize, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.seen().len() < from + n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut views: Vec<String> = backend
        .seen()
        .into_iter()
        .skip(from)
        .map(|s| {
            let mut headers: Vec<String> = s
                .headers
                .iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    let v = if k == "x-request-id" {
                        "<id>"
                    } else {
                        v.as_str()
                    };
                    format!("{k}: {v}")
                })
                .collect();
            headers.sort();
            format!("{} {} ({} bytes) {headers:?}", s.method, s.path, s.body_len)
        })
        .collect();
    views.sort();
    views
}

#[test]
fn mirrored_copies_match_envoys() {
    let (primary, shadow) = (Backend::start("p"), Backend::start("m"));
    // A mirror that accepts and never answers.
    let silent = raw_upstream(|_, s| {
        std::thread::sleep(Duration::from_secs(3));
        let _ = std::io::Write::flush(s);
    });
    let dead = free_port();
    let clusters = [
        static_cluster("p", &[(&primary, 1)], ""),
        static_cluster("m", &[(&shadow, 1)], ""),
        port_cluster("dead", dead),
        port_cluster("silent", silent),
    ]
    .concat();
    let routes = [
        route(
            "/never",
            &["{ cluster: m, runtime_fraction: { default_value: { numerator: 0 } } }"],
        ),
        route(
            "/plain-host",
            &["{ cluster: m, disable_shadow_host_suffix_append: true }"],
        ),
        route("/dead", &["{ cluster: dead }", "{ cluster: silent }"]),
        route("/", &["{ cluster: m }"]),
    ]
    .concat();
    let vhost = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    );
    let Some(pair) = Pair::start(
        "mirrored_copies_match_envoys",
        &with_admin(&http_config(&vhost, &clusters)),
        vec![primary],
    ) else {
        return;
    };
    let requests: [&[u8]; 4] = [
        b"GET /a?q=1 HTTP/1.1\r\nhost: example.com\r\nx-custom: yes\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nhost: example.com:8080\r\ncontent-length: 11\r\n\r\nhello world",
        b"POST /echo HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"GET /plain-host HTTP/1.1\r\nhost: example.com\r\n\r\n",
    ];
    for raw in requests {
        let from = shadow.seen().len();
        let (ringway, envoy) = pair.exchange(raw);
        assert_eq!(ringway, envoy, "{}", String::from_utf8_lossy(raw));
        let both = copies(&shadow, from, 2);
        assert_eq!(both.len(), 2, "{both:?}");
        assert_eq!(both[0], both[1], "the copies differ");
        let expected_host = match raw.starts_with(b"GET /plain-host") {
            true => "host: example.com\"",
            false => "host: example.com-shadow",
        };
        assert!(both[0].contains(expected_host), "{}", both[0]);
    }
    // Not sampled: no copy at all.
    let from = shadow.seen().len();
    let (ringway, envoy) = pair.exchange(b"GET /never HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_eq!((ringway.status, envoy.status), (200, 200));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(shadow.seen().len(), from);
    // A dead and a silent mirror: the client's answer comes at once.
    for _ in 0..3 {
        let started = Instant::now();
        let (ringway, envoy) = pair.exchange(b"GET /dead HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(ringway, envoy);
        assert_eq!(ringway.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // The copies count on the mirror clusters, the silent one's timing out
    // after the route's 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    pair.assert_same_stats(&[
        "cluster.m.upstream_rq_total",
        "cluster.m.upstream_rq_2xx",
        "cluster.dead.upstream_cx_connect_fail",
        "cluster.dead.upstream_rq_total",
        "cluster.silent.upstream_rq_total",
        "cluster.silent.upstream_rq_timeout",
        "cluster.p.upstream_rq_total",
        "http.ingress_http.downstream_rq_total",
        "http.ingress_http.downstream_rq_2xx",
    ]);
}
