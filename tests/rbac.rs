//! The `envoy.filters.http.rbac` filter against Envoy 1.40 on the same
//! config: ALLOW policies over methods, paths, headers, addresses (the
//! connection's, the socket's and the client's after `x-forwarded-for`)
//! and ports, combined with `and`/`or`/`not`; each value of a repeated
//! header judged on its own; DENY rules of a route's own;
//! an open route; shadow rules; per-policy stats; then TLS identities
//! (SANs, subject, any TLS peer) and the SNI over mTLS with curl.

mod common;
use common::oracle::{with_admin, Pair};
use common::tls::{curl_https, Certs};
use common::*;

const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

fn routes() -> String {
    let own = |rbac: &str| {
        format!("\n                typed_per_filter_config:\n                  envoy.filters.http.rbac: {{ \"@type\": {PER_ROUTE}{rbac} }}")
    };
    let route = |prefix: &str, action: &str, tail: &str| {
        format!(
            "              - match: {{ prefix: \"{prefix}\" }}\n                {action}{tail}\n"
        )
    };
    let forward = "route: { cluster: app }";
    [
        "            - name: all\n              domains: [\"*\"]\n              routes:\n".to_string(),
        route("/open", forward, &own("")),
        route(
            "/own",
            forward,
            &own(", rbac: { rules: { action: DENY, policies: { no-post: { permissions: [ { header: { name: \":method\", string_match: { exact: POST } } } ], principals: [ { any: true } ] } } } }"),
        ),
        route("/direct", "direct_response: { status: 200, body: { inline_string: direct } }", ""),
        route("/", forward, ""),
    ]
    .concat()
}

/// The filter: who may do what, and a shadow rule for `x-bad`.
const FILTER: &str = r#"          - name: envoy.filters.http.rbac
            typed_config:
              "@type": RBAC
              track_per_rule_stats: true
              rules_stat_prefix: enforced_
              rules:
                action: ALLOW
                policies:
                  get-from-loopback:
                    permissions:
                    - and_rules:
                        rules:
                        - header: { name: ":method", string_match: { exact: GET } }
                        - not_rule: { url_path: { path: { prefix: /admin } } }
                    principals: [ { remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } } ]
                  by-path:
                    permissions: [ { url_path: { path: { prefix: /public } } } ]
                    principals: [ { any: true } ]
                  admin-token:
                    permissions: [ { url_path: { path: { exact: /admin } } } ]
                    principals:
                    - and_ids:
                        ids:
                        - header: { name: x-token, string_match: { exact: secret } }
                        - direct_remote_ip: { address_prefix: 127.0.0.0, prefix_len: 8 }
                        - source_ip: { address_prefix: 127.0.0.1, prefix_len: 32 }
                  put-here:
                    permissions:
                    - and_rules:
                        rules:
                        - header: { name: ":method", exact_match: PUT }
                        - destination_ip: { address_prefix: 127.0.0.1, prefix_len: 32 }
                        - destination_port_range: { start: 1, end: 65536 }
                        - or_rules: { rules: [ { requested_server_name: { exact: "" } }, { destination_port: 1 } ] }
                    principals: [ { not_id: { remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } } } ]
                  groups:
                    permissions: [ { header: { name: x-group, string_match: { exact: b } } } ]
                    principals: [ { url_path: { path: { safe_regex: { regex: "/thing.*" } } } } ]
              shadow_rules:
                action: DENY
                policies:
                  suspicious:
                    permissions: [ { any: true } ]
                    principals: [ { header: { name: x-bad, present_match: true } } ]
"#;

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n{headers}\r\n")
        .into_bytes()
}

/// Every RBAC stat of a `/stats` body, sorted.
fn rbac_stats(body: &str) -> String {
    let mut lines: Vec<&str> = body.lines().filter(|l| l.contains(".rbac.")).collect();
    lines.sort_unstable();
    lines.join("\n")
}

#[test]
fn requests_are_judged_as_in_envoy() {
    let backend = Backend::start("app");
    let config = with_file_log(
        &http_config(&routes(), &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(&FILTER.replace("RBAC", RBAC));
    let Some(pair) = Pair::start(
        "requests_are_judged_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let requests = [
        request("GET", "/public/x", ""),
        request("POST", "/public", ""),
        request("GET", "/thing", ""),
        request("POST", "/thing", ""),
        request("GET", "/thing", "x-forwarded-for: 10.1.2.3\r\n"),
        request("GET", "/admin", ""),
        request("GET", "/admin", "x-token: secret\r\n"),
        request("GET", "/admin?x=1", "x-token: secret\r\n"),
        request("PUT", "/thing", ""),
        request("PUT", "/thing", "x-forwarded-for: 10.0.0.5\r\n"),
        request("PATCH", "/thing", "x-group: a\r\nx-group: b\r\n"),
        request("PATCH", "/thing", "x-group: a,b\r\n"),
        request("PATCH", "/other", "x-group: a\r\nx-group: b\r\n"),
        request("GET", "/thing?q=1", "x-bad: 1\r\n"),
        request("POST", "/open", ""),
        request("POST", "/own", ""),
        request("GET", "/own", ""),
        request("DELETE", "/direct", ""),
        request("GET", "/direct", ""),
    ];
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 200, 403, 403, 403, 200, 200, 200, 403, 200, 403, 403, 200, 200, 403, 200,
            403, 200
        ]
    );
    assert_eq!(observed[3].body, "RBAC: access denied");
    // The same filter over HTTP/2.
    let h2 = pair.assert_all_same_h2(&[&["/thing"], &["-X", "POST", "/thing"]]);
    assert_eq!(h2.iter().map(|o| o.status).collect::<Vec<_>>(), [200, 403]);
    pair.assert_same_admin("/stats", rbac_stats);
    pair.assert_same_stats(&["http.ingress_http.downstream_rq_4xx"]);
    let lines = requests.len() + 2;
    pair.assert_same_log(lines);
}

/// Over mTLS (a client certificate asked for, not required): the
/// identity is a URI SAN, else a DNS SAN, else the subject; `authenticated`
/// without a name admits any TLS peer; the SNI is the requested server
/// name.
#[test]
fn tls_identities_are_judged_as_in_envoy() {
    if !tool_or_skip("rbac mtls", &["openssl", "version"]) {
        return;
    }
    let certs = Certs::generate();
    let validation = format!(
        "            validation_context: {{ trusted_ca: {{ filename: {} }} }}\n",
        certs.path("ca.crt")
    );
    let socket = certs.server_socket(&["a"], &validation, "");
    let filter = r#"          - name: envoy.filters.http.rbac
            typed_config:
              "@type": RBAC
              track_per_rule_stats: true
              rules:
                policies:
                  client:
                    permissions: [ { any: true } ]
                    principals: [ { authenticated: { principal_name: { exact: "spiffe://cluster.local/ns/default/sa/client" } } } ]
                  dns:
                    permissions: [ { url_path: { path: { prefix: /dns } } } ]
                    principals: [ { authenticated: { principal_name: { suffix: a.example.com } } } ]
                  subject:
                    permissions: [ { url_path: { path: { prefix: /subject } } } ]
                    principals: [ { authenticated: { principal_name: { exact: CN=b } } } ]
                  any-tls:
                    permissions: [ { url_path: { path: { prefix: /tls } } } ]
                    principals: [ { authenticated: {} } ]
                  sni:
                    permissions:
                    - and_rules:
                        rules:
                        - url_path: { path: { prefix: /sni } }
                        - requested_server_name: { exact: a.example.com }
                    principals: [ { any: true } ]
"#
    .replace("RBAC", RBAC);
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: / }\n                direct_response: { status: 200, body: { inline_string: ok } }\n";
    let config = http_config(routes, "    []")
        .replace(
            "    filter_chains:\n    - filters:\n",
            &format!(
                "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}\n    filter_chains:\n    - {}      filters:\n",
                &socket[6..]
            ),
        )
        .with_http_filter(&filter);
    let Some(pair) = Pair::start(
        "tls_identities_are_judged_as_in_envoy",
        &with_admin(&config),
        vec![],
    ) else {
        return;
    };
    let cert = |name: &str| -> Vec<String> {
        vec![
            "--cert".to_string(),
            certs.path(&format!("{name}.crt")),
            "--key".to_string(),
            certs.path(&format!("{name}.key")),
        ]
    };
    let cases: [(&[String], &str, &str, u16); 9] = [
        (&[], "a.example.com", "/", 403),
        (&[], "a.example.com", "/tls", 200),
        (&[], "a.example.com", "/sni", 200),
        (&[], "localhost", "/sni", 403),
        (&cert("client"), "a.example.com", "/", 200),
        (&cert("a"), "a.example.com", "/", 403),
        (&cert("a"), "a.example.com", "/dns", 200),
        (&cert("b"), "a.example.com", "/subject", 200),
        (&cert("b"), "a.example.com", "/dns", 403),
    ];
    for (identity, host, path, expected) in cases {
        let mut args: Vec<&str> = vec!["-k"];
        args.extend(identity.iter().map(String::as_str));
        args.push(path);
        let ringway = curl_https(pair.ringway.port, host, &args).0;
        let envoy = curl_https(pair.envoy.port, host, &args).0;
        let seen = |r: &Response| (r.status, r.text());
        assert_eq!(seen(&ringway), seen(&envoy), "{host} {args:?}");
        assert_eq!(ringway.status, expected, "{host} {args:?}");
    }
    pair.assert_same_admin("/stats", rbac_stats);
}
