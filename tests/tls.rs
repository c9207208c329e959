//! TLS termination, filter-chain matching and listener filters, each
//! checked against Envoy 1.40 on the same bootstrap with clients nobody
//! here wrote (curl, `openssl s_client`).

mod common;
use common::oracle::{with_admin, Pair};
use common::tls::{curl_https, s_client, s_server, Certs, Reaped};
use common::*;

/// An HCM chain answering every request with `body` (a direct response).
fn http_filter(body: &str) -> String {
    format!("      filters:\n{}", direct_response_filter(body, body))
}

/// Like [`http_filter`], logging each request's TLS details to `{log}`.
fn logged_http_filter(body: &str) -> String {
    let format = r"%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_SUBJECT% %REQUESTED_SERVER_NAME%\n";
    format!(
        "      filters:\n{}",
        with_file_log(&direct_response_filter(body, body), "{log}", format)
    )
}

/// A listener on `{port}` with the TLS inspector and `chains` (each a
/// `- ` item of `filter_chains`), then `tail` (clusters and more).
fn listener(chains: &str, tail: &str) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: edge
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}
    filter_chains:
{chains}{tail}"#
    ))
}

/// Sends the same curl request to both proxies and compares status,
/// body and HTTP version.
fn assert_same_https(pair: &Pair, host: &str, args: &[&str]) -> (u16, String, String) {
    let answer = |port| {
        let (r, version) = curl_https(port, host, args);
        (r.status, r.text(), version)
    };
    let ringway = answer(pair.ringway.port);
    let envoy = answer(pair.envoy.port);
    assert_eq!(ringway, envoy, "curl {host} {args:?}: ringway vs envoy");
    ringway
}

#[test]
fn server_names_choose_the_chain_and_its_certificate_as_envoy_does() {
    if !tool_or_skip("tls sni", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let chains = format!(
        "    - filter_chain_match: {{ server_names: [a.example.com] }}\n{}{}    - filter_chain_match: {{ server_names: [\"*.wild.example.com\"] }}\n{}{}    - filter_chain_match: {{ transport_protocol: raw_buffer }}\n{}",
        certs.server_socket(&["a"], "", ""),
        http_filter("exact"),
        certs.server_socket(&["b"], "", ""),
        http_filter("wildcard"),
        http_filter("plaintext"),
    );
    let Some(pair) = Pair::start("tls sni", &listener(&chains, ""), vec![]) else {
        return;
    };
    let (status, body, _) = assert_same_https(&pair, "a.example.com", &["-k", "/"]);
    assert_eq!((status, body.as_str()), (200, "exact"));
    let (status, body, _) = assert_same_https(&pair, "x.wild.example.com", &["-k", "/"]);
    assert_eq!((status, body.as_str()), (200, "wildcard"));
    // No chain serves other names, nor TLS without SNI.
    let (status, ..) = assert_same_https(&pair, "c.example.com", &["-k", "/"]);
    assert_eq!(status, 0);
    for port in [pair.ringway.port, pair.envoy.port] {
        let seen = s_client(port, Some("a.example.com"), &[], "");
        assert_eq!(seen.subject.as_deref(), Some("a"), "port {port}: {seen:?}");
        let seen = s_client(port, Some("x.wild.example.com"), &[], "");
        assert_eq!(seen.subject.as_deref(), Some("b"), "port {port}: {seen:?}");
        assert_eq!(s_client(port, None, &[], "").subject, None);
        // Plaintext reaches the raw_buffer chain.
        assert_eq!(get(port, "x", "/").text(), "plaintext");
    }
    pair.assert_same_stats(&[
        "listener.*.no_filter_chain_match",
        "listener.*.downstream_cx_total",
        "listener.*.ssl.handshake",
        "listener.*.ssl.versions.TLSv1.3",
        "listener.*.ssl.curves.X25519",
        "listener.*.ssl.no_certificate",
        "tls_inspector.tls_found",
        "tls_inspector.tls_not_found",
        "tls_inspector.sni_found",
        "tls_inspector.sni_not_found",
        "tls_inspector.alpn_found",
    ]);
}

#[test]
fn alpn_chooses_http2_or_http11_as_envoy_does() {
    if !tool_or_skip("tls alpn", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    certs.wait_past_issue_second();
    let alpn = "            alpn_protocols: [h2, http/1.1]\n";
    let chains = format!(
        "    - {}{}",
        &certs.server_socket(&["a"], alpn, "")[6..],
        http_filter("alpn")
    );
    let Some(pair) = Pair::start("tls alpn", &listener(&chains, ""), vec![]) else {
        return;
    };
    let (status, body, version) =
        assert_same_https(&pair, "a.example.com", &["-k", "--http2", "/"]);
    assert_eq!(
        (status, body.as_str(), version.as_str()),
        (200, "alpn", "2")
    );
    let (status, _, version) = assert_same_https(&pair, "a.example.com", &["-k", "--http1.1", "/"]);
    assert_eq!((status, version.as_str()), (200, "1.1"));
    for port in [pair.ringway.port, pair.envoy.port] {
        let seen = s_client(port, Some("a.example.com"), &["-alpn", "h2"], "");
        assert_eq!(seen.alpn.as_deref(), Some("h2"), "port {port}");
    }
    // The certificate view and its expiry gauge.
    pair.assert_same_admin("/certs", |body| {
        serde_json::from_str::<serde_json::Value>(body)
            .map(|v| v.to_string())
            .unwrap_or_else(|e| format!("not JSON ({e}): {body}"))
    });
    pair.assert_same_stats(&["server.days_until_first_cert_expiring"]);
}

#[test]
fn client_certificates_are_required_and_checked_as_envoy_does() {
    if !tool_or_skip("tls mtls", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let validation = format!(
        "            validation_context:\n              trusted_ca: {{ filename: {} }}\n              match_typed_subject_alt_names:\n              - san_type: URI\n                matcher: {{ exact: spiffe://cluster.local/ns/default/sa/client }}\n",
        certs.path("ca.crt")
    );
    let socket = certs.server_socket(
        &["a"],
        &validation,
        "          require_client_certificate: true\n",
    );
    let chains = format!("    - {}{}", &socket[6..], logged_http_filter("mtls"));
    let Some(pair) = Pair::start("tls mtls", &listener(&chains, ""), vec![]) else {
        return;
    };
    let with = |name: &str| {
        vec![
            "-k".to_string(),
            "--cert".to_string(),
            certs.path(&format!("{name}.crt")),
            "--key".to_string(),
            certs.path(&format!("{name}.key")),
            "/".to_string(),
        ]
    };
    let ask = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_same_https(&pair, "a.example.com", &args).0
    };
    // The right certificate passes; none, an untrusted one, and a trusted
    // one with the wrong SPIFFE ID fail.
    assert_eq!(ask(&with("client")), 200);
    assert_eq!(ask(&["-k".to_string(), "/".to_string()]), 0);
    assert_eq!(ask(&with("stranger")), 0);
    assert_eq!(ask(&with("a")), 0);
    pair.assert_same_stats(&[
        "listener.*.ssl.handshake",
        "listener.*.ssl.connection_error",
        "listener.*.ssl.fail_verify_no_cert",
        "listener.*.ssl.fail_verify_error",
        "listener.*.ssl.fail_verify_san",
        "listener.*.ssl.no_certificate",
    ]);
    // One request got through; its log line tells the session apart.
    let (ringway, envoy) = (log_lines(&pair.logs.0, 1), log_lines(&pair.logs.1, 1));
    assert_eq!(ringway, envoy);
    assert_eq!(
        ringway.trim(),
        "TLSv1.3 TLS_AES_256_GCM_SHA384 spiffe://cluster.local/ns/default/sa/client CN=client a.example.com"
    );
}

#[test]
fn protocol_versions_and_cipher_suites_follow_tls_params() {
    if !tool_or_skip("tls params", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let params = "            tls_params:\n              tls_maximum_protocol_version: TLSv1_2\n              cipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384]\n";
    let chains = format!(
        "    - {}{}",
        &certs.server_socket(&["a"], params, "")[6..],
        http_filter("params")
    );
    let Some(pair) = Pair::start("tls params", &listener(&chains, ""), vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let seen = s_client(port, Some("a.example.com"), &[], "");
        assert_eq!(
            seen.version.as_deref(),
            Some("TLSv1.2"),
            "port {port}: {seen:?}"
        );
        let refused = s_client(port, Some("a.example.com"), &["-tls1_3"], "");
        assert_eq!(refused.subject, None, "port {port}: TLS 1.3 was refused");
        let other = s_client(
            port,
            Some("a.example.com"),
            &["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            "",
        );
        assert_eq!(
            other.subject, None,
            "port {port}: an unlisted cipher was refused"
        );
    }
    pair.assert_same_stats(&[
        "listener.*.ssl.handshake",
        "listener.*.ssl.versions.TLSv1.2",
        "listener.*.ssl.ciphers.ECDHE-ECDSA-AES256-GCM-SHA384",
    ]);
}

#[test]
fn tls_passes_through_by_server_name_to_a_tls_upstream() {
    if !tool_or_skip("tls passthrough", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    // openssl s_server is the upstream that terminates TLS.
    let upstream = free_port();
    let _server = Reaped(
        std::process::Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &upstream.to_string(),
                "-www",
                "-cert",
            ])
            .arg(certs.path("b.crt"))
            .arg("-key")
            .arg(certs.path("b.key"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s_server"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", upstream)).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let chains = "    - filter_chain_match: { server_names: [b.example.com] }\n      filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: passthrough, cluster: tls_upstream }\n";
    let config = listener(
        chains,
        &format!("  clusters:\n{}", port_cluster("tls_upstream", upstream)),
    );
    let Some(pair) = Pair::start("tls passthrough", &config, vec![]) else {
        return;
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let seen = s_client(port, Some("b.example.com"), &[], "GET / HTTP/1.0\r\n\r\n");
        // The certificate and the page are s_server's own.
        assert_eq!(seen.subject.as_deref(), Some("b"), "port {port}: {seen:?}");
        assert!(
            seen.answer.contains("s_server"),
            "port {port}: {}",
            seen.answer
        );
    }
    pair.assert_same_stats(&[
        "tcp.passthrough.downstream_cx_total",
        "tls_inspector.sni_found",
    ]);
}

#[test]
fn tls_configs_get_envoys_verdicts() {
    let Some(bin) = common::oracle::envoy_or_skip("tls validate") else {
        return;
    };
    let certs = Certs::generate();
    let params = |p: &str| format!("            tls_params: {{ {p} }}\n");
    let cases = [
        ("valid", params("tls_minimum_protocol_version: TLSv1_2"), true),
        ("tls 1.3 suite named", params("cipher_suites: [TLS_AES_128_GCM_SHA256]"), false),
        ("unknown suite", params("cipher_suites: [BOGUS-CIPHER]"), false),
        ("equal-preference group", params("cipher_suites: [\"[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]\"]"), true),
        ("curves", params("ecdh_curves: [X25519, P-256]"), true),
    ];
    for (what, common_extra, valid) in cases {
        let chains = format!(
            "    - {}{}",
            &certs.server_socket(&["a"], &common_extra, "")[6..],
            http_filter("v")
        );
        let config = listener(&chains, "")
            .replace("{admin}", "0")
            .replace("{port}", "0");
        let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}

#[test]
fn clusters_originate_tls_with_client_certificates_and_checks_as_envoy_does() {
    if !tool_or_skip("upstream tls", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let (_good, good_port) = s_server(&certs, "b", true);
    let (_bad, bad_port) = s_server(&certs, "b", false);
    let tls_cluster = |name: &str, port: u16, san: &str| {
        format!(
            "{}    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: b.example.com\n        common_tls_context:\n          tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]\n          validation_context:\n            trusted_ca: {{ filename: {} }}\n            match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: {san} }} }}]\n",
            port_cluster(name, port),
            certs.path("client.crt"),
            certs.path("client.key"),
            certs.path("ca.crt"),
        )
    };
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/good\" }\n                route: { cluster: good }\n              - match: { prefix: \"/bad\" }\n                route: { cluster: bad }\n";
    let clusters = format!(
        "{}{}",
        tls_cluster("good", good_port, "b.example.com"),
        tls_cluster("bad", bad_port, "other.example.com")
    );
    let config = with_admin(&http_config(routes, &clusters));
    let Some(pair) = Pair::start("upstream tls", &config, vec![]) else {
        return;
    };
    let ask = |port: u16, path: &str| {
        let mut c = Client::connect(port);
        c.set_timeout(std::time::Duration::from_secs(10));
        c.send(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
        c.read_response(false).expect("a response")
    };
    for port in [pair.ringway.port, pair.envoy.port] {
        let good = ask(port, "/good");
        assert_eq!(good.status, 200, "port {port}: {}", good.text());
        // s_server's status page names the client certificate it got.
        assert!(good.text().contains("s_server"), "port {port}");
        assert_eq!(ask(port, "/bad").status, 503, "port {port}");
    }
    pair.assert_same_stats(&[
        "cluster.good.ssl.handshake",
        "cluster.good.upstream_cx_total",
        "cluster.bad.ssl.handshake",
        "cluster.bad.ssl.fail_verify_san",
        "cluster.bad.upstream_cx_connect_fail",
    ]);
}

#[test]
fn session_tickets_resume_on_any_shard_unless_disabled() {
    if !tool_or_skip("tls resumption", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let config = |extra: &str| {
        let chains = format!(
            "    - {}{}",
            &certs.server_socket(&["a"], "", extra)[6..],
            http_filter("resumed")
        );
        listener(&chains, "").replace("{admin}", &free_port().to_string())
    };
    let resumptions = |proxy: &Proxy| {
        let dir = TempDir::new();
        let session = dir.0.join("session.pem").display().to_string();
        // The first handshake stores the ticket; each later one offers it,
        // landing on whichever of the two shards the kernel picks.
        let request = "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
        s_client(
            proxy.port,
            Some("a.example.com"),
            &["-sess_out", &session],
            request,
        );
        (0..6)
            .filter(|_| {
                let seen = s_client(
                    proxy.port,
                    Some("a.example.com"),
                    &["-sess_in", &session],
                    request,
                );
                seen.resumed
            })
            .count()
    };
    let resuming = Proxy::start(&config(""), &["--concurrency", "2"]);
    assert_eq!(resumptions(&resuming), 6, "every reconnection resumed");
    let off = "          disable_stateless_session_resumption: true\n          disable_stateful_session_resumption: true\n";
    let full = Proxy::start(&config(off), &["--concurrency", "2"]);
    assert_eq!(resumptions(&full), 0, "no reconnection resumed");
}

#[test]
fn rotated_certificate_files_are_served_without_dropping_connections() {
    if !tool_or_skip("tls rotation", &["openssl", "version"]) {
        return;
    }
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;
    let certs = Certs::generate();
    let dir = TempDir::new();
    let live = |name: &str| dir.0.join(name).display().to_string();
    // Kubernetes-style: the configured paths are symlinks swapped by rename.
    let point = |cert: &str| {
        for ext in ["crt", "key"] {
            let tmp = dir.0.join(format!("next.{ext}"));
            let _ = std::fs::remove_file(&tmp);
            symlink(certs.path(&format!("{cert}.{ext}")), &tmp).expect("symlink");
            std::fs::rename(&tmp, dir.0.join(format!("live.{ext}"))).expect("swap");
        }
    };
    point("a");
    let socket = format!(
        "      transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          common_tls_context:\n            tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}]\n",
        live("live.crt"),
        live("live.key")
    );
    let chains = format!("    - {}{}", &socket[6..], http_filter("rotated"));
    let config = listener(&chains, "").replace("{admin}", &free_port().to_string());
    let proxy = Proxy::start(&config, &["--concurrency", "2"]);
    let subject = || s_client(proxy.port, Some("a.example.com"), &[], "").subject;
    assert_eq!(subject().as_deref(), Some("a"));
    // A connection opened before the rotation.
    let mut held = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", proxy.port),
        ])
        .args(["-servername", "a.example.com"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("s_client");
    let mut input = held.stdin.take().expect("stdin");
    let mut output = held.stdout.take().expect("stdout");
    let mut ask = || {
        input
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .expect("send");
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !seen.ends_with(b"rotated") {
            let n = output.read(&mut chunk).expect("read");
            assert!(
                n > 0,
                "the held connection closed: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    ask();
    point("b");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while subject().as_deref() != Some("b") {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The connection from before still works.
    ask();
    // A certificate whose key does not match is refused; the last good
    // pair stays.
    let tmp = dir.0.join("next.crt");
    let _ = std::fs::remove_file(&tmp);
    symlink(certs.path("a.crt"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.0.join("live.crt")).expect("swap");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy.log_text().contains("were not taken") {
        assert!(std::time::Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(subject().as_deref(), Some("b"));
    let _ = held.kill();
    let _ = held.wait();
}

#[test]
fn shared_ticket_keys_resume_across_proxies_and_key_rotations() {
    if !tool_or_skip("tls ticket keys", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let dir = TempDir::new();
    let key = |name: &str, len: usize| {
        let path = dir.0.join(name);
        let seed = name.bytes().map(usize::from).sum::<usize>();
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + seed) as u8).collect();
        std::fs::write(&path, bytes).expect("key file");
        path.display().to_string()
    };
    let (old, new, short) = (key("old.key", 80), key("new.key", 80), key("short.key", 79));
    let keys = |files: &[&str]| {
        let list: Vec<String> = files
            .iter()
            .map(|f| format!("{{ filename: {f} }}"))
            .collect();
        format!(
            "          session_ticket_keys: {{ keys: [{}] }}\n",
            list.join(", ")
        )
    };
    let config = |extra: &str| {
        let chains = format!(
            "    - {}{}",
            &certs.server_socket(&["a"], "", extra)[6..],
            http_filter("tickets")
        );
        listener(&chains, "")
    };
    let start = |extra: &str| {
        Proxy::start(
            &config(extra).replace("{admin}", &free_port().to_string()),
            &[],
        )
    };
    let issuer = start(&keys(&[&old]));
    let session = dir.0.join("session.pem").display().to_string();
    let request = "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    s_client(
        issuer.port,
        Some("a.example.com"),
        &["-sess_out", &session],
        request,
    );
    let resumes = |proxy: &Proxy| {
        s_client(
            proxy.port,
            Some("a.example.com"),
            &["-sess_in", &session],
            request,
        )
        .resumed
    };
    assert!(
        resumes(&start(&keys(&[&old]))),
        "another proxy with the same key"
    );
    assert!(resumes(&start(&keys(&[&new, &old]))), "a rotated key list");
    assert!(!resumes(&start(&keys(&[&new]))), "a proxy without the key");
    // The same key from an SDS secret file.
    let secret = dir.0.join("tickets.yaml");
    std::fs::write(
        &secret,
        format!("resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: tickets\n  session_ticket_keys: {{ keys: [{{ filename: {old} }}] }}\n"),
    )
    .expect("secret file");
    let from_secret = format!(
        "          session_ticket_keys_sds_secret_config: {{ name: tickets, sds_config: {{ path_config_source: {{ path: {} }} }} }}\n",
        secret.display()
    );
    let with_node =
        |config: String| format!("node: {{ id: test-node, cluster: test-cluster }}\n{config}");
    let sds_proxy = Proxy::start(
        &with_node(config(&from_secret)).replace("{admin}", &free_port().to_string()),
        &[],
    );
    assert!(resumes(&sds_proxy), "a proxy with the key from a secret");
    assert!(!resumes(&start("")), "a proxy with a key of its own");

    // Envoy's verdicts on the field.
    let Some(bin) = common::oracle::envoy_or_skip("tls ticket key verdicts") else {
        return;
    };
    let cases = [
        ("two keys", keys(&[&new, &old]), true),
        ("keys from a secret", from_secret.clone(), true),
        ("a 79-byte key", keys(&[&short]), false),
        (
            "no keys",
            "          session_ticket_keys: { keys: [] }\n".to_string(),
            false,
        ),
        (
            "keys and tickets off",
            keys(&[&old]) + "          disable_stateless_session_resumption: true\n",
            false,
        ),
    ];
    for (what, extra, valid) in cases {
        let config = with_node(config(&extra))
            .replace("{admin}", "0")
            .replace("{port}", "0");
        let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}

/// A request over TLS has the `https` scheme: a route matching
/// `:scheme` sees it, over HTTP/1.1 and HTTP/2 alike.
#[test]
fn routes_see_the_scheme_of_a_tls_connection_as_envoy_does() {
    if !tool_or_skip("tls scheme", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let filter = direct_response_filter("scheme", "other").replace(
        "              - match: { prefix: \"/\" }\n",
        "              - match: { prefix: \"/\", headers: [ { name: \":scheme\", string_match: { exact: https } } ] }\n                direct_response: { status: 200, body: { inline_string: \"https\" } }\n              - match: { prefix: \"/\" }\n",
    );
    let chains = format!(
        "    - {}      filters:\n{filter}",
        &certs.server_socket(&["a"], "            alpn_protocols: [h2, http/1.1]\n", "")[6..]
    );
    let Some(pair) = Pair::start("tls scheme", &listener(&chains, ""), vec![]) else {
        return;
    };
    for args in [&["-k", "--http1.1", "/"][..], &["-k", "--http2", "/"]] {
        let (_, body, _) = assert_same_https(&pair, "a.example.com", args);
        assert_eq!(body, "https", "{args:?}");
    }
}
