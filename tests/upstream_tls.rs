//! The server name a cluster's TLS connections send and check, against
//! Envoy 1.40 on the same bootstrap, with nginx (which answers with the
//! SNI it received) as the upstream: `auto_sni` from the request's host
//! or another header, `auto_san_validation` / `auto_sni_san_validation`,
//! `auto_host_sni`, and connections reused only for the same name.

mod common;
use common::oracle::{with_admin, Pair};
use common::tls::{Certs, NginxTls};
use common::*;

/// A TLS cluster trusting the test CA, with `tls_extra` in its
/// `UpstreamTlsContext` and `extra` at cluster level.
fn tls_cluster(name: &str, port: u16, tls_extra: &str, extra: &str, certs: &Certs) -> String {
    format!(
        "{}{extra}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n{tls_extra}        common_tls_context:\n          validation_context: {{ trusted_ca: {{ filename: {} }} }}\n",
        port_cluster(name, port),
        certs.path("ca.crt"),
    )
}

fn auto_sni(options: &str) -> String {
    format!(
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http_protocol_options: {{}} }}\n        upstream_http_protocol_options: {{ {options} }}\n"
    )
}

#[test]
fn upstream_server_names_follow_the_request_as_envoy_does() {
    if !tool_or_skip("upstream sni", &["nginx", "-v"]) {
        return;
    }
    let certs = Certs::generate();
    let nginx = NginxTls::start(&certs, "b", false);
    let port = nginx.port;
    let clusters = [
        tls_cluster("auto", port, "", &auto_sni("auto_sni: true, auto_san_validation: true"), &certs),
        tls_cluster("header", port, "", &auto_sni("auto_sni: true, override_auto_sni_header: x-sni"), &certs),
        tls_cluster("pinned", port, "        sni: b.example.com\n        auto_sni_san_validation: true\n", "", &certs),
        tls_cluster("mismatch", port, "        sni: other.example.com\n        auto_sni_san_validation: true\n", "", &certs),
        format!(
            "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        auto_host_sni: true\n",
            port_cluster("by_host", port)
                .replace("type: STATIC", "type: STRICT_DNS\n    dns_lookup_family: V4_ONLY")
                .replace("address: 127.0.0.1", "address: localhost")
        ),
    ]
    .concat();
    let route = |prefix: &str, cluster: &str| {
        format!("              - match: {{ prefix: \"/{prefix}\" }}\n                route: {{ cluster: {cluster} }}\n")
    };
    let routes = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{}{}{}{}{}",
        route("auto", "auto"),
        route("header", "header"),
        route("pinned", "pinned"),
        route("mismatch", "mismatch"),
        route("by_host", "by_host"),
    );
    let config = with_admin(&http_config(&routes, &clusters));
    let Some(pair) = Pair::start("upstream sni", &config, vec![]) else {
        return;
    };
    let get = |path: &str, host: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}\r\n").into_bytes()
    };
    let seen = pair.assert_all_same(&[
        get("/auto", "b.example.com", ""),
        get("/auto", "x.wild.example.com:8443", ""),
        // The certificate does not name it: auto_san_validation fails.
        get("/auto", "other.example.com", ""),
        // Same name again: the pooled connection serves it.
        get("/auto", "b.example.com", ""),
        get("/header", "anything", "x-sni: b.example.com\r\n"),
        get("/pinned", "anything", ""),
        get("/mismatch", "anything", ""),
        get("/by_host", "anything", ""),
    ]);
    let bodies: Vec<(u16, &str)> = seen.iter().map(|o| (o.status, o.body.as_str())).collect();
    assert_eq!(bodies[0], (200, "sni=b.example.com"));
    assert_eq!(bodies[1], (200, "sni=x.wild.example.com"));
    assert_eq!(bodies[2].0, 503);
    assert_eq!(bodies[3], (200, "sni=b.example.com"));
    assert_eq!(bodies[4], (200, "sni=b.example.com"));
    assert_eq!(bodies[5], (200, "sni=b.example.com"));
    assert_eq!(bodies[6].0, 503);
    assert_eq!(bodies[7], (200, "sni=localhost"));
    pair.assert_same_stats(&[
        "cluster.auto.upstream_cx_total",
        "cluster.auto.ssl.handshake",
        "cluster.auto.ssl.fail_verify_san",
        "cluster.mismatch.ssl.fail_verify_san",
        "cluster.pinned.ssl.handshake",
        "cluster.by_host.ssl.handshake",
    ]);
}

#[test]
fn auto_config_speaks_what_alpn_chooses_as_envoy_does() {
    if !tool_or_skip("upstream auto_config", &["nginx", "-v"]) {
        return;
    }
    let certs = Certs::generate();
    let (h2, h1) = (
        NginxTls::start(&certs, "b", true),
        NginxTls::start(&certs, "b", false),
    );
    let auto = |name: &str, port: u16| {
        tls_cluster(
            name,
            port,
            "        sni: b.example.com\n",
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        auto_config: { http_protocol_options: {}, http2_protocol_options: {} }\n",
            &certs,
        )
    };
    let clusters = [auto("offers_h2", h2.port), auto("http1_only", h1.port)].concat();
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/h2\" }\n                route: { cluster: offers_h2 }\n              - match: { prefix: \"/h1\" }\n                route: { cluster: http1_only }\n";
    let config = with_admin(&http_config(routes, &clusters));
    let Some(pair) = Pair::start("upstream auto_config", &config, vec![]) else {
        return;
    };
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nhost: b.example.com\r\n\r\n").into_bytes();
    let seen = pair.assert_all_same(&[get("/h2"), get("/h1"), get("/h2"), get("/h1")]);
    let protocol = |i: usize| {
        seen[i]
            .headers
            .iter()
            .find(|(n, _)| n == "x-upstream-protocol")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(protocol(0).as_deref(), Some("HTTP/2.0"));
    assert_eq!(protocol(1).as_deref(), Some("HTTP/1.1"));
    pair.assert_same_stats(&[
        "cluster.offers_h2.upstream_cx_http2_total",
        "cluster.offers_h2.upstream_cx_http1_total",
        "cluster.http1_only.upstream_cx_http1_total",
        "cluster.http1_only.upstream_cx_http2_total",
    ]);
    // Deviation (README): Envoy's mixed pool opens a second connection
    // for the second request of each cluster; Ringway reuses the first.
    let (ringway, _) = pair.admin("/stats?filter=upstream_cx_total");
    for cluster in ["offers_h2", "http1_only"] {
        let line = format!("cluster.{cluster}.upstream_cx_total: 1");
        assert!(ringway.contains(&line), "{line} in {ringway}");
    }
    // Without TLS there is no ALPN to choose by: a config error.
    let Some(bin) = common::oracle::envoy_or_skip("auto_config verdicts") else {
        return;
    };
    let plain = config
        .replace("{admin}", "0")
        .replace("{port}", "0")
        .split("    transport_socket:\n")
        .next()
        .map(|head| head.to_string() + "\n")
        .unwrap_or_default();
    let plain = plain.replace(
        &format!("{}    typed_extension", port_cluster("http1_only", h1.port)),
        "    typed_extension",
    );
    let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &plain);
    let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&plain);
    assert!(
        !envoy_ok,
        "envoy accepted auto_config without TLS: {envoy_out}"
    );
    assert!(
        !ringway_ok,
        "ringway accepted auto_config without TLS: {ringway_out}"
    );
}

#[test]
fn transport_failure_reasons_are_logged_as_envoy_logs_them() {
    if !tool_or_skip("transport failure reason", &["nginx", "-v"]) {
        return;
    }
    let certs = Certs::generate();
    let nginx = NginxTls::start(&certs, "b", false);
    let untrusted = tls_cluster("untrusted", nginx.port, "", "", &certs)
        .replace(&certs.path("ca.crt"), &certs.path("rogue.crt"));
    let clusters = [
        tls_cluster("fine", nginx.port, "", "", &certs),
        untrusted,
        port_cluster("refused", free_port()),
    ]
    .concat();
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/fine\" }\n                route: { cluster: fine }\n              - match: { prefix: \"/untrusted\" }\n                route: { cluster: untrusted }\n              - match: { prefix: \"/refused\" }\n                route: { cluster: refused }\n";
    let format = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON%\\n";
    let config = with_admin(&http_config(routes, &clusters)).replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{{log}}\"\n              log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}\n"),
    );
    let Some(pair) = Pair::start("transport failure reason", &config, vec![]) else {
        return;
    };
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nhost: b.example.com\r\n\r\n").into_bytes();
    pair.assert_all_same(&[get("/fine"), get("/refused"), get("/untrusted")]);
    let (ringway, envoy) = (log_lines(&pair.logs.0, 3), log_lines(&pair.logs.1, 3));
    let (ringway, envoy): (Vec<&str>, Vec<&str>) =
        (ringway.lines().collect(), envoy.lines().collect());
    assert_eq!(
        ringway[..2],
        envoy[..2],
        "ringway {ringway:?}\nenvoy {envoy:?}"
    );
    assert_eq!(
        ringway[1],
        "503 UF delayed_connect_error:_Connection_refused"
    );
    // BoringSSL adds its verifier's detail before the end marker; the
    // code and reason are the same.
    let verify =
        "503 UF TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:";
    for line in [ringway[2], envoy[2]] {
        assert!(
            line.starts_with(verify) && line.ends_with(":TLS_error_end"),
            "{line}"
        );
    }
}

/// A TLS listener requiring a client certificate from the test CA with the
/// client's SPIFFE ID, answering "mtls".
fn mtls_server(certs: &Certs) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]
            validation_context:
              trusted_ca: {{ filename: {} }}
              match_typed_subject_alt_names: [{{ san_type: URI, matcher: {{ exact: "spiffe://cluster.local/ns/default/sa/client" }} }}]
      filters:
{hcm}"#,
        certs.path("b.crt"),
        certs.path("b.key"),
        certs.path("ca.crt"),
        hcm = direct_response_filter("mtls", "mtls"),
    ))
}

/// A plaintext listener proxying to `peer` over mutual TLS, presenting
/// `cert`'s certificate and checking the server's name and CA.
fn mtls_client(certs: &Certs, peer: u16, cert: &str) -> String {
    let cluster = format!(
        "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: b.example.com\n        common_tls_context:\n          tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]\n          validation_context:\n            trusted_ca: {{ filename: {} }}\n            match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: b.example.com }} }}]\n",
        port_cluster("peer", peer),
        certs.path(&format!("{cert}.crt")),
        certs.path(&format!("{cert}.key")),
        certs.path("ca.crt"),
    );
    with_admin(&http_config(&catch_all("peer", ""), &cluster))
}

/// One request through `port`: (status, body).
fn through(port: u16) -> (u16, String) {
    let mut c = Client::connect(port);
    c.set_timeout(std::time::Duration::from_secs(10));
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    let r = c.read_response(false).expect("a response");
    (r.status, r.text())
}

#[test]
fn mutual_tls_with_envoy_as_the_peer_both_ways() {
    if !tool_or_skip("mtls with envoy", &["openssl", "version"]) {
        return;
    }
    let Some(bin) = common::oracle::envoy_or_skip("mtls with envoy") else {
        return;
    };
    let certs = Certs::generate();
    let admin = || free_port().to_string();
    // Ringway originates mutual TLS to Envoy.
    let envoy_server = common::oracle::Envoy::start(&bin, &mtls_server(&certs));
    let client = Proxy::start(
        &mtls_client(&certs, envoy_server.port, "client").replace("{admin}", &admin()),
        &[],
    );
    assert_eq!(through(client.port), (200, "mtls".to_string()));
    // With a certificate Envoy's CA never signed, Envoy refuses it.
    let stranger = Proxy::start(
        &mtls_client(&certs, envoy_server.port, "stranger").replace("{admin}", &admin()),
        &[],
    );
    assert_eq!(through(stranger.port).0, 503);
    // Envoy originates mutual TLS to Ringway.
    let server = Proxy::start(&mtls_server(&certs).replace("{admin}", &admin()), &[]);
    let envoy_client =
        common::oracle::Envoy::start(&bin, &mtls_client(&certs, server.port, "client"));
    assert_eq!(through(envoy_client.port), (200, "mtls".to_string()));
    let envoy_stranger =
        common::oracle::Envoy::start(&bin, &mtls_client(&certs, server.port, "stranger"));
    assert_eq!(through(envoy_stranger.port).0, 503);
}
