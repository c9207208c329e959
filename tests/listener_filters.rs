//! Listener filters and plaintext filter-chain matching against Envoy
//! 1.40 on the same bootstrap: the PROXY protocol (v1 and v2), the HTTP
//! inspector, and chains chosen by application protocol and source.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A direct-response HCM chain answering `body`, logging the addresses
/// it saw to `{log}`.
fn chain(matcher: &str, body: &str) -> String {
    let format = format!(
        r"%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% {body}\n"
    );
    let filter = with_file_log(&direct_response_filter(body, body), "{log}", &format);
    format!("    - {matcher}filters:\n{filter}")
}

fn listener(filters: &str, chains: &str) -> String {
    with_admin(&format!(
        r#"static_resources:
  listeners:
  - name: edge
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    listener_filters:
{filters}    filter_chains:
{chains}"#
    ))
}

/// Sends `bytes` on a new connection and reads until the server closes.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    // The status line and the body are what the two can share.
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    format!("{status} | {body}")
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

fn v2_header() -> Vec<u8> {
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    // PROXY over TCP4: 10.4.5.6:2222 to 10.7.7.7:443.
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 4, 5, 6, 10, 7, 7, 7, 8, 174, 1, 187]);
    v2
}

#[test]
fn proxy_protocol_headers_set_the_client_address_as_in_envoy() {
    let filters = "    - name: envoy.filters.listener.proxy_protocol\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol }\n";
    let config = listener(filters, &chain("", "pp"));
    let Some(pair) = Pair::start("proxy protocol", &config, vec![]) else {
        return;
    };
    let with = |header: &[u8]| [header, REQUEST].concat();
    let cases: Vec<Vec<u8>> = vec![
        with(b"PROXY TCP4 10.1.2.3 10.9.9.9 1111 80\r\n"),
        with(b"PROXY TCP6 2001:db8::1 2001:db8::2 3333 8080\r\n"),
        with(b"PROXY UNKNOWN\r\n"),
        with(&v2_header()),
        REQUEST.to_vec(),
        with(b"PROXY TCP4 garbage\r\n"),
    ];
    for case in &cases {
        let ringway = exchange(pair.ringway.port, case);
        let envoy = exchange(pair.envoy.port, case);
        assert_eq!(ringway, envoy, "{:?}", String::from_utf8_lossy(case));
    }
    pair.assert_same_stats(&[
        "downstream_cx_proxy_proto_error",
        "proxy_proto.not_found_disallowed",
        "proxy_proto.versions.v1.found",
        "proxy_proto.versions.v1.error",
        "proxy_proto.versions.v2.found",
    ]);
    // Each answered request's client, destination and direct peer.
    let (ringway, envoy) = (log_lines(&pair.logs.0, 4), log_lines(&pair.logs.1, 4));
    let masked = |text: &str| {
        text.lines()
            .map(|l| {
                // The UNKNOWN line carries the real sockets' ports.
                l.split(' ')
                    .map(|f| {
                        if f.starts_with("127.0.0.1:") {
                            "127.0.0.1:*"
                        } else {
                            f
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(masked(&ringway), masked(&envoy));
    assert!(
        ringway.contains("10.1.2.3:1111 10.9.9.9:80 127.0.0.1 pp"),
        "{ringway}"
    );
    assert!(
        ringway.contains("[2001:db8::1]:3333 [2001:db8::2]:8080 127.0.0.1 pp"),
        "{ringway}"
    );
    assert!(
        ringway.contains("10.4.5.6:2222 10.7.7.7:443 127.0.0.1 pp"),
        "{ringway}"
    );
}

#[test]
fn requests_without_a_header_pass_when_allowed() {
    let filters = "    - name: envoy.filters.listener.proxy_protocol\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, allow_requests_without_proxy_protocol: true, disallowed_versions: [V2], stat_prefix: edge }\n";
    let config = listener(filters, &chain("", "allowed"));
    let Some(pair) = Pair::start("proxy protocol allowed", &config, vec![]) else {
        return;
    };
    for case in [
        REQUEST.to_vec(),
        [
            b"PROXY TCP4 10.1.2.3 10.9.9.9 1111 80\r\n".as_slice(),
            REQUEST,
        ]
        .concat(),
        [v2_header().as_slice(), REQUEST].concat(),
    ] {
        let ringway = exchange(pair.ringway.port, &case);
        let envoy = exchange(pair.envoy.port, &case);
        assert_eq!(ringway, envoy, "{:?}", String::from_utf8_lossy(&case));
    }
    pair.assert_same_stats(&[
        "proxy_proto.edge.not_found_allowed",
        "proxy_proto.edge.versions.v1.found",
        "proxy_proto.edge.versions.v2.disallowed",
        "proxy_proto.edge.versions.v2.found",
    ]);
}

#[test]
fn the_http_inspector_picks_chains_by_application_protocol() {
    let filters = "    - name: envoy.filters.listener.http_inspector\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector }\n";
    let chains = format!(
        "{}{}{}",
        chain(
            "filter_chain_match: { application_protocols: [http/1.0] }\n      ",
            "http10"
        ),
        chain(
            "filter_chain_match: { application_protocols: [http/1.1] }\n      ",
            "http11"
        ),
        chain("", "other"),
    );
    let Some(pair) = Pair::start("http inspector", &listener(filters, &chains), vec![]) else {
        return;
    };
    let mut answers = Vec::new();
    for case in [
        REQUEST.to_vec(),
        b"GET / HTTP/1.0\r\nhost: x\r\n\r\n".to_vec(),
    ] {
        let ringway = exchange(pair.ringway.port, &case);
        let envoy = exchange(pair.envoy.port, &case);
        assert_eq!(ringway, envoy, "{:?}", String::from_utf8_lossy(&case));
        answers.push(ringway);
    }
    // HTTP/1.0 reaches its own chain, whose connection manager refuses
    // it (426) in both.
    assert!(answers[0].ends_with("http11"), "{answers:?}");
    pair.assert_same_stats(&[
        "http_inspector.http10_found",
        "http_inspector.http11_found",
        "http_inspector.http_not_found",
    ]);
}

#[test]
fn source_and_destination_criteria_choose_chains_as_in_envoy() {
    let chains = format!(
        "{}{}{}{}",
        chain("filter_chain_match: { source_prefix_ranges: [{ address_prefix: 127.0.0.0, prefix_len: 8 }] }\n      ", "loopback8"),
        chain("filter_chain_match: { source_prefix_ranges: [{ address_prefix: 127.0.0.1, prefix_len: 32 }] }\n      ", "loopback32"),
        chain("filter_chain_match: { destination_port: 1 }\n      ", "port1"),
        chain("filter_chain_match: { source_type: EXTERNAL }\n      ", "external"),
    );
    let config = listener("", &chains).replace("    listener_filters:\n", "");
    let Some(pair) = Pair::start("chain sources", &config, vec![]) else {
        return;
    };
    let ringway = exchange(pair.ringway.port, REQUEST);
    assert_eq!(ringway, exchange(pair.envoy.port, REQUEST));
    // The most specific source prefix wins.
    assert!(ringway.ends_with("loopback32"), "{ringway}");
}

#[test]
fn listener_configs_get_envoys_verdicts() {
    let Some(bin) = common::oracle::envoy_or_skip("listener validate") else {
        return;
    };
    let names = |list: &str| format!("filter_chain_match: {{ server_names: [{list}] }}\n      ");
    let cases = [
        (
            "distinct chains",
            format!(
                "{}{}",
                chain(&names("a.test"), "a"),
                chain(&names("b.test"), "b")
            ),
            true,
        ),
        (
            "duplicate rules",
            format!(
                "{}{}",
                chain(&names("a.test"), "a"),
                chain(&names("a.test"), "b")
            ),
            false,
        ),
        (
            "same names in another order",
            format!(
                "{}{}",
                chain(&names("a.test, b.test"), "a"),
                chain(&names("b.test, a.test"), "b")
            ),
            false,
        ),
        ("wildcard", chain(&names("\"*.a.test\""), "a"), true),
        ("partial wildcard", chain(&names("\"a*.test\""), "a"), false),
        (
            "ports",
            chain(
                "filter_chain_match: { destination_port: 8080, source_ports: [1, 2] }\n      ",
                "p",
            ),
            true,
        ),
    ];
    for (what, chains, valid) in cases {
        let config = listener("", &chains)
            .replace("    listener_filters:\n", "")
            .replace("{admin}", "0")
            .replace("{port}", "0")
            .replace("{log}", "/dev/null");
        let (envoy_ok, envoy_out) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_out) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{what}: envoy said {envoy_out}");
        assert_eq!(ringway_ok, valid, "{what}: ringway said {ringway_out}");
    }
}

#[test]
fn listener_filters_timeout_closes_or_continues_as_in_envoy() {
    let proxy_protocol = "    - name: envoy.filters.listener.proxy_protocol\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, allow_requests_without_proxy_protocol: true }\n";
    let inspector = "    - name: envoy.filters.listener.tls_inspector\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }\n";
    let filters = format!("{proxy_protocol}{inspector}");
    let config = |continues: bool| {
        listener(&filters, &chain("", "plain")).replace(
            "    listener_filters:\n",
            &format!("    listener_filters_timeout: 0.3s\n    continue_on_listener_filters_timeout: {continues}\n    listener_filters:\n"),
        )
    };
    // A client that says nothing (or only a PROXY header) until after the
    // timeout: the first times out reading the header, the second the
    // TLS inspector.
    let late_after = |port: u16, first: &[u8]| {
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(first);
        std::thread::sleep(Duration::from_millis(600));
        let _ = s.write_all(REQUEST);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        (
            text.lines().next().unwrap_or("").to_string(),
            started.elapsed(),
        )
    };
    let Some(closing) = Pair::start("listener filters timeout", &config(false), vec![]) else {
        return;
    };
    let header = b"PROXY TCP4 10.1.2.3 10.9.9.9 1111 80\r\n";
    for port in [closing.ringway.port, closing.envoy.port] {
        for first in [&b""[..], header] {
            let (status, took) = late_after(port, first);
            assert_eq!(status, "", "port {port}: closed before the request");
            assert!(took < Duration::from_secs(2), "port {port}: {took:?}");
        }
    }
    closing.assert_same_stats(&[
        "listener.*.downstream_pre_cx_timeout",
        "listener.*.downstream_cx_total",
        "downstream_cx_proxy_proto_error",
    ]);
    let Some(continuing) = Pair::start("listener filters continue", &config(true), vec![]) else {
        return;
    };
    for port in [continuing.ringway.port, continuing.envoy.port] {
        let (status, _) = late_after(port, header);
        assert_eq!(
            status, "HTTP/1.1 200 OK",
            "port {port}: served after the timeout"
        );
    }
}
