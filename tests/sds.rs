//! TLS secrets from SDS files, checked against Envoy 1.40 on the same
//! bootstrap and the same files: the certificate served, client
//! certificates checked against a CA from a secret, updates by rename
//! (taken, rejected, failed) and their `sds.*` stats.

mod common;
use common::oracle::{envoy_or_skip, envoy_validate, ringway_validate, with_admin, Pair};
use common::tls::{curl_https, s_client, s_server, Certs};
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// A `DiscoveryResponse` file holding one certificate secret.
fn certificate_secret(version: &str, name: &str, certs: &Certs, cert: &str) -> String {
    format!(
        "version_info: \"{version}\"\nresources:\n- \"@type\": {SECRET_TYPE}\n  name: {name}\n  tls_certificate:\n    certificate_chain: {{ filename: {} }}\n    private_key: {{ filename: {} }}\n",
        certs.path(&format!("{cert}.crt")),
        certs.path(&format!("{cert}.key"))
    )
}

/// A `DiscoveryResponse` file holding the secret `ca`: the test CA as a
/// validation context.
fn ca_secret(certs: &Certs) -> String {
    format!(
        "resources:\n- \"@type\": {SECRET_TYPE}\n  name: ca\n  validation_context:\n    trusted_ca: {{ filename: {} }}\n",
        certs.path("ca.crt")
    )
}

/// Replaces `path` by a rename, as Envoy's file watch expects.
fn swap(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).expect("write");
    std::fs::rename(&next, path).expect("rename");
}

/// An `SdsSecretConfig` for `name` in `file`.
fn sds(name: &str, file: &Path) -> String {
    format!(
        "{{ name: {name}, sds_config: {{ path_config_source: {{ path: {} }}, resource_api_version: V3 }} }}",
        file.display()
    )
}

/// A TLS listener whose certificate is the secret `server_cert` in
/// `server`, checking client certificates against the secret `ca` in
/// `ca` plus a SPIFFE ID from the default context.
fn listener(server: &Path, ca: &Path) -> String {
    with_admin(&format!(
        r#"node: {{ id: test-node, cluster: test-cluster }}
static_resources:
  listeners:
  - name: edge
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs: [{}]
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names: [{{ san_type: URI, matcher: {{ exact: "spiffe://cluster.local/ns/default/sa/client" }} }}]
              validation_context_sds_secret_config: {}
      filters:
{hcm}"#,
        sds("server_cert", server),
        sds("ca", ca),
        hcm = direct_response_filter("sds", "sds"),
    ))
}

/// Starts both proxies on [`listener`], its certificate secret file named
/// `secret` (certificate `a`, version v1) and the `ca` secret: the
/// certificates, their directory, the certificate secret's path and the
/// pair (None: skipped).
fn start_listener(test: &str, secret: &str) -> Option<(Certs, TempDir, PathBuf, Pair)> {
    if !tool_or_skip(test, &["openssl", "version"]) {
        return None;
    }
    let certs = Certs::generate();
    let dir = TempDir::new();
    let server = dir.0.join("server.yaml");
    let ca = dir.0.join("ca.yaml");
    swap(&server, &certificate_secret("v1", secret, &certs, "a"));
    swap(&ca, &ca_secret(&certs));
    let pair = Pair::start(test, &listener(&server, &ca), vec![])?;
    Some((certs, dir, server, pair))
}

/// The `sds.*` and socket-factory stats both sides must agree on
/// (`listener.*.` stands for the listener's address).
const SECRET_STATS: &[&str] = &[
    "sds.server_cert.update_attempt",
    "sds.server_cert.update_success",
    "sds.server_cert.update_rejected",
    "sds.server_cert.update_failure",
    "sds.server_cert.version",
    "sds.server_cert.version_text",
    "sds.ca.update_attempt",
    "sds.ca.update_success",
    "sds.ca.version",
    "listener.*.server_ssl_socket_factory.ssl_context_update_by_sds",
];

/// Waits (up to 10 s) until both serve the certificate of `cn`.
fn wait_for_subject(pair: &Pair, cn: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [pair.ringway.port, pair.envoy.port] {
        while s_client(port, Some("a.example.com"), &[], "")
            .subject
            .as_deref()
            != Some(cn)
        {
            assert!(Instant::now() < deadline, "port {port} never served {cn}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits (up to 10 s) until `stat` reads `value` on both sides.
fn wait_for_stat(pair: &Pair, stat: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (r, e) = pair.admin(&format!("/stats?filter=^{stat}$"));
        let want = format!("{stat}: {value}");
        if r.trim() == want && e.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stat}: ringway {r:?}, envoy {e:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn secrets_from_files_serve_rotate_and_reject_as_envoy_does() {
    let Some((certs, _dir, server, pair)) = start_listener("sds files", "server_cert") else {
        return;
    };
    let with_cert = |name: &str| {
        let (cert, key) = (
            certs.path(&format!("{name}.crt")),
            certs.path(&format!("{name}.key")),
        );
        move |port: u16| {
            curl_https(
                port,
                "a.example.com",
                &["-k", "--cert", &cert, "--key", &key, "/"],
            )
            .0
        }
    };
    let (client, stranger) = (with_cert("client"), with_cert("stranger"));
    for port in [pair.ringway.port, pair.envoy.port] {
        assert_eq!(
            s_client(port, Some("a.example.com"), &[], "")
                .subject
                .as_deref(),
            Some("a"),
            "port {port}"
        );
        let answer = client(port);
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "sds"),
            "port {port}"
        );
        // A client certificate from a CA the secret does not trust.
        assert_eq!(stranger(port).status, 0, "port {port}");
    }
    pair.assert_same_stats(SECRET_STATS);
    pair.assert_same_stats(&[
        "listener.*.ssl.fail_verify_error",
        "listener.*.ssl.handshake",
    ]);

    // A new version, renamed into place: new handshakes get it.
    swap(
        &server,
        &certificate_secret("v2", "server_cert", &certs, "b"),
    );
    wait_for_subject(&pair, "b");
    pair.assert_same_stats(SECRET_STATS);

    // A secret of another name is rejected; one that does not parse
    // fails. Either way the last good one stays.
    swap(
        &server,
        &certificate_secret("v3", "somebody_else", &certs, "a"),
    );
    wait_for_stat(&pair, "sds.server_cert.update_rejected", "1");
    swap(&server, "resources: [ {\n");
    wait_for_stat(&pair, "sds.server_cert.update_failure", "1");
    pair.assert_same_stats(SECRET_STATS);
    for port in [pair.ringway.port, pair.envoy.port] {
        assert_eq!(
            s_client(port, Some("a.example.com"), &[], "")
                .subject
                .as_deref(),
            Some("b"),
            "port {port}"
        );
    }
}

#[test]
fn a_secret_never_good_closes_connections_as_envoy_does() {
    let Some((certs, _dir, server, pair)) = start_listener("sds not ready", "not_the_one") else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        assert_eq!(
            s_client(port, Some("a.example.com"), &[], "").subject,
            None,
            "port {port}"
        );
    }
    pair.assert_same_stats(SECRET_STATS);
    pair.assert_same_stats(&[
        "listener.*.server_ssl_socket_factory.downstream_context_secrets_not_ready",
    ]);
    // The right secret arrives: the listener serves.
    swap(
        &server,
        &certificate_secret("v2", "server_cert", &certs, "a"),
    );
    wait_for_subject(&pair, "a");
    pair.assert_same_stats(SECRET_STATS);
}

#[test]
fn clusters_read_client_secrets_from_files_as_envoy_does() {
    if !tool_or_skip("sds upstream", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let dir = TempDir::new();
    let client = dir.0.join("client.yaml");
    let ca = dir.0.join("ca.yaml");
    swap(
        &client,
        &certificate_secret("", "client_cert", &certs, "client"),
    );
    swap(
        &ca,
        &format!(
            "resources:\n- \"@type\": {SECRET_TYPE}\n  name: upstream_ca\n  validation_context:\n    trusted_ca: {{ filename: {} }}\n    match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: b.example.com }} }}]\n",
            certs.path("ca.crt")
        ),
    );
    let (_server, port) = s_server(&certs, "b", true);
    let cluster = |name: &str, cert_secret: &str| {
        format!(
            "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: b.example.com\n        common_tls_context:\n          tls_certificate_sds_secret_configs: [{}]\n          validation_context_sds_secret_config: {}\n",
            port_cluster(name, port),
            sds(cert_secret, &client),
            sds("upstream_ca", &ca),
        )
    };
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/ready\" }\n                route: { cluster: ready }\n              - match: { prefix: \"/missing\" }\n                route: { cluster: missing }\n";
    let clusters = format!(
        "{}{}",
        cluster("ready", "client_cert"),
        cluster("missing", "no_such_secret")
    );
    let config = format!(
        "node: {{ id: test-node, cluster: test-cluster }}\n{}",
        with_admin(&http_config(routes, &clusters))
    );
    let Some(pair) = Pair::start("sds upstream", &config, vec![]) else {
        return;
    };
    let ask = |port: u16, path: &str| {
        let mut c = Client::connect(port);
        c.set_timeout(Duration::from_secs(10));
        c.send(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
        c.read_response(false).expect("a response")
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let ready = ask(port, "/ready");
        assert_eq!(ready.status, 200, "port {port}: {}", ready.text());
        assert!(ready.text().contains("s_server"), "port {port}");
        assert_eq!(ask(port, "/missing").status, 503, "port {port}");
    }
    pair.assert_same_stats(&[
        "cluster.ready.ssl.handshake",
        "cluster.ready.client_ssl_socket_factory.ssl_context_update_by_sds",
        "cluster.missing.client_ssl_socket_factory.ssl_context_update_by_sds",
        "cluster.missing.client_ssl_socket_factory.upstream_context_secrets_not_ready",
        "sds.client_cert.update_success",
        "sds.upstream_ca.update_success",
        "sds.no_such_secret.update_rejected",
    ]);
}

#[test]
fn sds_configs_get_envoys_verdicts() {
    let Some(bin) = envoy_or_skip("sds validate") else {
        return;
    };
    let certs = Certs::generate();
    let dir = TempDir::new();
    let server = dir.0.join("server.yaml");
    let ca = dir.0.join("ca.yaml");
    swap(
        &server,
        &certificate_secret("v1", "server_cert", &certs, "a"),
    );
    swap(&ca, &certificate_secret("v1", "ca", &certs, "a"));
    let good = listener(&server, &ca)
        .replace("{admin}", "0")
        .replace("{port}", "0");
    let cases = [
        ("valid", good.clone(), true),
        (
            "the older path field",
            good.replace(
                &format!("path_config_source: {{ path: {} }}", server.display()),
                &format!("path: {}", server.display()),
            ),
            true,
        ),
        (
            "a file that does not exist",
            good.replace(&server.display().to_string(), "/nonexistent/server.yaml"),
            false,
        ),
        (
            "no node identity",
            good.replace("node: { id: test-node, cluster: test-cluster }\n", ""),
            false,
        ),
        (
            "a validation context twice",
            good.replace(
                "            combined_validation_context:\n",
                "            validation_context: { trusted_ca: { filename: /dev/null } }\n            combined_validation_context:\n",
            ),
            false,
        ),
    ];
    for (what, config, valid) in cases {
        let (envoy_ok, envoy_out) = envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}
