//! Peer certificate checks beyond the chain, both directions, against
//! Envoy 1.40 on the same bootstrap: revocation lists, and certificate
//! hash and SPKI pins. Clients are curl with client certificates; the
//! upstream is nginx.

mod common;
use common::oracle::{with_admin, Pair};
use common::tls::{curl_https, Certs, NginxTls};
use common::*;

#[test]
fn client_certificates_meet_crls_and_pins_as_in_envoy() {
    if !tool_or_skip("tls client checks", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let (client_hash, client_spki) = certs.digests("client");
    let chain = |names: &str, cert: &str, validation: String| {
        format!(
            r#"    - filter_chain_match: {{ server_names: [{names}] }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{ certificate_chain: {{ filename: {crt} }}, private_key: {{ filename: {key} }} }}]
            validation_context: {validation}
      filters:
{hcm}"#,
            crt = certs.path(&format!("{cert}.crt")),
            key = certs.path(&format!("{cert}.key")),
            hcm = direct_response_filter("checks", "admitted"),
        )
    };
    let trusted = |crl: &str| {
        format!(
            "{{ trusted_ca: {{ filename: {} }}, crl: {{ filename: {crl} }} }}",
            certs.path("ca.crt")
        )
    };
    let chains = [
        chain("a.example.com", "a", trusted(&certs.crl(&["b"]))),
        chain("b.example.com", "b", trusted(&certs.crl(&["client"]))),
        chain(
            "one.wild.example.com",
            "b",
            format!("{{ verify_certificate_spki: [\"{client_spki}\"] }}"),
        ),
        chain(
            "two.wild.example.com",
            "b",
            format!("{{ verify_certificate_hash: [\"{client_hash}\"] }}"),
        ),
    ]
    .concat();
    let config = with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: checks
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}
    filter_chains:
{chains}"#
    ));
    let Some(pair) = Pair::start("tls client checks", &config, vec![]) else {
        return;
    };
    let hosts = [
        "a.example.com",
        "b.example.com",
        "one.wild.example.com",
        "two.wild.example.com",
    ];
    let statuses = |port: u16| {
        let mut seen = Vec::new();
        for host in hosts {
            for who in ["client", "stranger"] {
                let (cert, key) = (
                    certs.path(&format!("{who}.crt")),
                    certs.path(&format!("{who}.key")),
                );
                let args = ["-k", "--cert", &cert, "--key", &key, "/"];
                seen.push(format!(
                    "{host} {who}: {}",
                    curl_https(port, host, &args).0.status
                ));
            }
        }
        seen
    };
    let ringway = statuses(pair.ringway.port);
    assert_eq!(ringway, statuses(pair.envoy.port), "ringway vs envoy");
    assert_eq!(
        ringway,
        [
            "a.example.com client: 200",
            "a.example.com stranger: 0",
            "b.example.com client: 0",
            "b.example.com stranger: 0",
            "one.wild.example.com client: 200",
            "one.wild.example.com stranger: 0",
            "two.wild.example.com client: 200",
            "two.wild.example.com stranger: 0",
        ]
    );
}

#[test]
fn server_certificates_meet_crls_and_pins_as_in_envoy() {
    if !tool_or_skip("tls server checks", &["nginx", "-v"]) {
        return;
    }
    let certs = Certs::generate();
    let nginx = NginxTls::start(&certs, "b", false);
    let (_, b_spki) = certs.digests("b");
    let (_, a_spki) = certs.digests("a");
    let cluster = |name: &str, validation: String| {
        format!(
            "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: b.example.com\n        common_tls_context:\n          validation_context: {validation}\n",
            port_cluster(name, nginx.port)
        )
    };
    let trusted = |crl: &str| {
        format!(
            "{{ trusted_ca: {{ filename: {} }}, crl: {{ filename: {crl} }} }}",
            certs.path("ca.crt")
        )
    };
    let names = ["revoked", "fine", "pinned", "mispinned"];
    let clusters = [
        cluster(names[0], trusted(&certs.crl(&["b"]))),
        cluster(names[1], trusted(&certs.crl(&["client"]))),
        cluster(
            names[2],
            format!("{{ verify_certificate_spki: [\"{b_spki}\"] }}"),
        ),
        cluster(
            names[3],
            format!("{{ verify_certificate_spki: [\"{a_spki}\"] }}"),
        ),
    ]
    .concat();
    let routes: String = names
        .iter()
        .map(|n| format!("              - match: {{ prefix: \"/{n}\" }}\n                route: {{ cluster: {n} }}\n"))
        .collect();
    let routes = format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    );
    let config = with_admin(&http_config(&routes, &clusters));
    let Some(pair) = Pair::start("tls server checks", &config, vec![]) else {
        return;
    };
    let requests: Vec<Vec<u8>> = names
        .iter()
        .map(|n| format!("GET /{n} HTTP/1.1\r\nhost: b.example.com\r\n\r\n").into_bytes())
        .collect();
    let seen = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = seen.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [503, 200, 200, 503]);
    pair.assert_same_stats(&[
        "cluster.revoked.ssl.fail_verify_error",
        "cluster.fine.ssl.handshake",
        "cluster.pinned.ssl.handshake",
        "cluster.mispinned.ssl.fail_verify_cert_hash",
    ]);
}
