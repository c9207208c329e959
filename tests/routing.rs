//! Envoy's route matching, black-box: path specifiers, header matchers
//! (current and legacy forms, pseudo-headers, inversion), query
//! parameters and gRPC, first match wins. Each route answers with its own
//! name through a direct_response, so the tests see which one matched.

mod common;
use common::*;

/// A catch-all virtual host with `routes` (YAML list items), each
/// answering 200 with `name`.
fn config(routes: &[(&str, &str)]) -> String {
    let mut yaml = String::from(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n",
    );
    for (name, m) in routes {
        yaml.push_str(&format!(
            "              - match: {m}\n                direct_response: {{ status: 200, body: {{ inline_string: \"{name}\" }} }}\n"
        ));
    }
    yaml.push_str(
        "              - match: { prefix: \"/\" }\n                direct_response: { status: 200, body: { inline_string: \"fallback\" } }\n",
    );
    http_config(&yaml, "    []\n")
}

/// Sends `GET path` with extra header lines and returns the matched route
/// (a gRPC request gets the direct response's body as `grpc-message`, as
/// Envoy sends it).
fn matched(port: u16, method: &str, path: &str, headers: &str) -> String {
    let mut c = Client::connect(port);
    c.send(format!("{method} {path} HTTP/1.1\r\nhost: h\r\n{headers}\r\n").as_bytes());
    let r = c.read_response(method == "HEAD").expect("response");
    assert_eq!(r.status, 200);
    r.header("grpc-message")
        .map_or_else(|| r.text(), str::to_owned)
}

#[test]
fn path_specifiers() {
    let p = Proxy::start(
        &config(&[
            ("regex", r#"{ safe_regex: { regex: "/user/\\d+" } }"#),
            ("separated", r#"{ path_separated_prefix: "/api" }"#),
            ("exact", r#"{ path: "/exact" }"#),
            (
                "insensitive",
                r#"{ prefix: "/CaSe", case_sensitive: false }"#,
            ),
            ("sensitive", r#"{ prefix: "/Strict" }"#),
        ]),
        &[],
    );
    let m = |path: &str| matched(p.port, "GET", path, "");
    // safe_regex: a full match against the path without its query.
    assert_eq!(m("/user/42"), "regex");
    assert_eq!(m("/user/42?x=1"), "regex");
    assert_eq!(m("/user/42/more"), "fallback");
    assert_eq!(m("/user/abc"), "fallback");
    // path_separated_prefix: the prefix, then nothing or '/'.
    assert_eq!(m("/api"), "separated");
    assert_eq!(m("/api/v1"), "separated");
    assert_eq!(m("/api?q"), "separated");
    assert_eq!(m("/apix"), "fallback");
    assert_eq!(m("/exact?q=1"), "exact");
    assert_eq!(m("/exact/"), "fallback");
    assert_eq!(m("/case/x"), "insensitive");
    assert_eq!(m("/CASE"), "insensitive");
    assert_eq!(m("/strict"), "fallback");
    assert_eq!(m("/Strict"), "sensitive");
}

#[test]
fn header_matchers() {
    let p = Proxy::start(
        &config(&[
            (
                "method",
                r#"{ prefix: "/", headers: [ { name: ":method", string_match: { exact: "POST" } } ] }"#,
            ),
            (
                "legacy-exact",
                r#"{ prefix: "/", headers: [ { name: x-exact, exact_match: "yes" } ] }"#,
            ),
            (
                "prefix-ci",
                r#"{ prefix: "/", headers: [ { name: x-prefix, string_match: { prefix: "abc", ignore_case: true } } ] }"#,
            ),
            (
                "regex",
                r#"{ prefix: "/", headers: [ { name: x-regex, safe_regex_match: { regex: "\\d{3}" } } ] }"#,
            ),
            (
                "inverted",
                r#"{ prefix: "/", headers: [ { name: x-inv, safe_regex_match: { regex: "\\d{3}" }, invert_match: true } ] }"#,
            ),
            (
                "range",
                r#"{ prefix: "/", headers: [ { name: x-range, range_match: { start: -10, end: 10 } } ] }"#,
            ),
            (
                "absent",
                r#"{ prefix: "/absent", headers: [ { name: x-gone, present_match: false } ] }"#,
            ),
            (
                "present",
                r#"{ prefix: "/", headers: [ { name: x-present } ] }"#,
            ),
            (
                "authority",
                r#"{ prefix: "/", headers: [ { name: ":authority", string_match: { suffix: ".test" } } ] }"#,
            ),
            (
                "joined",
                r#"{ prefix: "/", headers: [ { name: x-multi, string_match: { exact: "a,b" } } ] }"#,
            ),
            (
                "both",
                r#"{ prefix: "/", headers: [ { name: x-one, contains_match: "1" }, { name: x-two, suffix_match: "2" } ] }"#,
            ),
        ]),
        &[],
    );
    let m = |method: &str, headers: &str| matched(p.port, method, "/", headers);
    assert_eq!(m("POST", ""), "method");
    assert_eq!(m("GET", ""), "fallback");
    assert_eq!(m("GET", "x-exact: yes\r\n"), "legacy-exact");
    assert_eq!(m("GET", "x-exact: no\r\n"), "fallback");
    assert_eq!(m("GET", "x-prefix: ABCdef\r\n"), "prefix-ci");
    assert_eq!(m("GET", "x-regex: 123\r\n"), "regex");
    assert_eq!(m("GET", "x-regex: 1234\r\n"), "fallback");
    // Envoy's documented example: \d{3} inverted matches 1234, and an
    // absent header does not match an inverted value matcher.
    assert_eq!(m("GET", "x-inv: 1234\r\n"), "inverted");
    assert_eq!(m("GET", "x-inv: 123\r\n"), "fallback");
    assert_eq!(m("GET", "x-range: -10\r\n"), "range");
    assert_eq!(m("GET", "x-range: 10\r\n"), "fallback");
    assert_eq!(matched(p.port, "GET", "/absent", ""), "absent");
    assert_eq!(
        matched(p.port, "GET", "/absent", "x-gone: 1\r\n"),
        "fallback"
    );
    assert_eq!(m("GET", "x-present: \r\n"), "present");
    let mut c = Client::connect(p.port);
    c.send(b"GET / HTTP/1.1\r\nhost: svc.test\r\n\r\n");
    assert_eq!(
        c.read_response(false).expect("response").text(),
        "authority"
    );
    assert_eq!(m("GET", "x-multi: a\r\nx-multi: b\r\n"), "joined");
    assert_eq!(m("GET", "x-one: 212\r\nx-two: 12\r\n"), "both");
    assert_eq!(m("GET", "x-one: 212\r\n"), "fallback");
}

#[test]
fn query_parameters_and_grpc() {
    let p = Proxy::start(
        &config(&[
            (
                "debug",
                r#"{ prefix: "/", query_parameters: [ { name: debug, present_match: true } ] }"#,
            ),
            (
                "version",
                r#"{ prefix: "/", query_parameters: [ { name: v, string_match: { exact: "2 beta" } } ] }"#,
            ),
            ("grpc", r#"{ prefix: "/", grpc: {} }"#),
        ]),
        &[],
    );
    let m = |path: &str, headers: &str| matched(p.port, "GET", path, headers);
    assert_eq!(m("/x?debug", ""), "debug");
    assert_eq!(m("/x?a=1&debug=0", ""), "debug");
    assert_eq!(m("/x?debugging=1", ""), "fallback");
    assert_eq!(m("/x?v=2%20beta", ""), "version");
    assert_eq!(m("/x?v=2", ""), "fallback");
    assert_eq!(
        m("/pkg.Svc/Call", "content-type: application/grpc\r\n"),
        "grpc"
    );
    assert_eq!(
        m("/pkg.Svc/Call", "content-type: application/json\r\n"),
        "fallback"
    );
}

#[test]
fn invalid_matchers_are_config_errors() {
    let dir = TempDir::new();
    let path = dir.0.join("c.yaml");
    for (m, expect) in [
        (
            r#"{ safe_regex: { regex: "(" } }"#,
            "match.safe_regex.regex: invalid regex",
        ),
        (r#"{ prefix: "/", path: "/x" }"#, "mutually exclusive"),
        (
            r#"{ path_separated_prefix: "/api/" }"#,
            "match.path_separated_prefix",
        ),
        (
            r#"{ prefix: "/", headers: [ { name: x, exact_match: a, prefix_match: b } ] }"#,
            "at most one header match specifier",
        ),
        (
            r#"{ prefix: "/", runtime_fraction: {} }"#,
            "match.runtime_fraction: not supported yet",
        ),
    ] {
        std::fs::write(&path, config(&[("r", m)]).replace("{port}", "1")).expect("write");
        let out = std::process::Command::new(binary())
            .args(["--mode", "validate", "-c", &path.display().to_string()])
            .output()
            .expect("validate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{m}: {err}");
    }
}
