//! The `envoy.filters.http.jwt_authn` filter against Envoy 1.40 on the
//! same config, with keys and tokens minted by PyJWT and cryptography
//! (`tests/peers/jwt_tokens.py`): every algorithm Envoy verifies (RS, PS,
//! ES256/384/512, EdDSA, HS), the attacks (`alg: none`, HS/RS confusion,
//! tampering, unknown keys, expired and not-yet-valid tokens, wrong
//! issuers and audiences, malformed segments and claims, oversized
//! tokens), token locations (headers with prefixes, query parameters,
//! cookies), what a good token forwards, requirements (`requires_any`,
//! `requires_all`, `allow_missing`, `allow_missing_or_failed`, audiences
//! of a requirement, `requirement_map`, routes' own settings), the CORS
//! preflight bypass, the JWT cache, and stats and access logs.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::collections::HashMap;

const FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig";

/// Mints keys and tokens into `dir`; None (skipped) without PyJWT.
fn mint(test: &str, dir: &TempDir) -> Option<HashMap<String, String>> {
    if !tool_or_skip(test, &["python3", "-c", "import jwt, cryptography"]) {
        return None;
    }
    let status = std::process::Command::new("python3")
        .arg("tests/peers/jwt_tokens.py")
        .arg(&dir.0)
        .status()
        .expect("run jwt_tokens.py");
    assert!(status.success(), "jwt_tokens.py failed");
    let text = std::fs::read_to_string(dir.0.join("tokens.json")).expect("tokens.json");
    Some(serde_json::from_str(&text).expect("tokens are a JSON map"))
}

fn routes() -> String {
    let own = |setting: &str| {
        format!("\n                typed_per_filter_config:\n                  jwt: {{ \"@type\": {PER_ROUTE}, {setting} }}")
    };
    let route = |prefix: &str, tail: &str| {
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app }}{tail}\n")
    };
    [
        "            - name: all\n              domains: [\"*\"]\n              routes:\n"
            .to_string(),
        route("/off", &own("disabled: true")),
        route("/route-named", &own("requirement_name: by-name")),
        route("/route-bad", &own("requirement_name: nope")),
        route("/", ""),
    ]
    .concat()
}

/// The filter: three providers, rules over paths, a named requirement.
fn filter(dir: &TempDir, extra: &str) -> String {
    let other = std::fs::read_to_string(dir.0.join("other.json")).expect("other.json");
    format!(
        r#"          - name: jwt
            typed_config:
              "@type": {FILTER_TYPE}
              bypass_cors_preflight: true
{extra}              providers:
                main:
                  issuer: https://issuer
                  audiences: [api, "https://api2/"]
                  local_jwks: {{ filename: {jwks} }}
                  forward_payload_header: x-jwt-payload
                  pad_forward_payload_header: true
                  jwt_cache_config: {{ jwt_cache_size: 4 }}
                  claim_to_headers:
                  - {{ header_name: x-claim-sub, claim_name: sub }}
                  - {{ header_name: x-claim-num, claim_name: num }}
                  - {{ header_name: x-claim-frac, claim_name: frac }}
                  - {{ header_name: x-claim-neg, claim_name: neg }}
                  - {{ header_name: x-claim-flag, claim_name: flag }}
                  - {{ header_name: x-claim-obj, claim_name: obj }}
                  - {{ header_name: x-claim-list, claim_name: list }}
                  - {{ header_name: x-claim-deep, claim_name: deep.a.b }}
                  - {{ header_name: x-claim-none, claim_name: absent }}
                other:
                  issuer: https://other
                  forward: true
                  from_headers: [ {{ name: x-token, value_prefix: "Token " }} ]
                  from_params: [ tok ]
                  from_cookies: [ jwt ]
                  local_jwks: {{ inline_string: '{other}' }}
                  claim_to_headers: [ {{ header_name: x-other-sub, claim_name: sub }} ]
                strict:
                  issuer: https://strict
                  subjects: {{ prefix: ali }}
                  require_expiration: true
                  max_lifetime: 3600s
                  clock_skew_seconds: 5
                  local_jwks: {{ filename: {jwks} }}
              requirement_map:
                by-name: {{ provider_name: other }}
              rules:
              - match: {{ prefix: /open }}
              - match: {{ prefix: /any }}
                requires: {{ requires_any: {{ requirements: [ {{ provider_name: main }}, {{ provider_name: other }} ] }} }}
              - match: {{ prefix: /all }}
                requires: {{ requires_all: {{ requirements: [ {{ provider_name: main }}, {{ provider_name: other }} ] }} }}
              - match: {{ prefix: /optional }}
                requires: {{ requires_any: {{ requirements: [ {{ provider_name: main }}, {{ allow_missing: {{}} }} ] }} }}
              - match: {{ prefix: /lenient }}
                requires: {{ allow_missing_or_failed: {{}} }}
              - match: {{ prefix: /aud }}
                requires: {{ provider_and_audiences: {{ provider_name: main, audiences: [special] }} }}
              - match: {{ prefix: /strict }}
                requires: {{ provider_name: strict }}
              - match: {{ prefix: /other }}
                requires: {{ provider_name: other }}
              - match: {{ prefix: /named }}
                requirement_name: by-name
              - match: {{ prefix: /pass }}
                requires: {{}}
              - match: {{ prefix: /, headers: [ {{ name: x-skip, present_match: true }} ] }}
              - match: {{ prefix: / }}
                requires: {{ provider_name: main }}
"#,
        jwks = dir.0.join("jwks.json").display(),
    )
}

fn config(dir: &TempDir, backend: &Backend, extra: &str) -> String {
    with_file_log(
        &http_config(&routes(), &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:METHOD)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(&filter(dir, extra))
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n{headers}\r\n").into_bytes()
}

/// Every jwt_authn stat of a `/stats` body, sorted.
fn jwt_stats(body: &str) -> String {
    let mut lines: Vec<&str> = body.lines().filter(|l| l.contains(".jwt_authn.")).collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// The tokens sent as `Authorization: Bearer`, with the status each must
/// get (asserted besides Envoy's agreement, so a test that passes says
/// what was checked).
const BEARER: [(&str, u16); 51] = [
    ("good", 200),
    ("rs384", 200),
    ("rs512", 200),
    ("ps256", 200),
    ("ps384", 200),
    ("ps512", 200),
    ("es256", 200),
    ("es384", 200),
    ("es512", 200),
    ("eddsa", 200),
    ("hs256", 200),
    ("no_kid", 200),
    ("expired", 401),
    ("expired_within_skew", 200),
    ("not_yet_valid", 401),
    ("wrong_issuer", 401),
    ("no_issuer", 401),
    ("wrong_audience", 403),
    ("audience_url", 200),
    ("special_audience", 403),
    ("no_audience", 403),
    ("alg_none", 401),
    ("alg_none_signed", 401),
    ("hs_rs_confusion", 401),
    ("hs_rs_confusion_no_kid", 401),
    ("tampered", 401),
    ("unknown_kid", 401),
    ("other_key", 401),
    ("two_segments", 401),
    ("four_segments", 401),
    ("empty_middle", 401),
    ("bad_base64_header", 401),
    ("header_not_json", 401),
    ("header_not_object", 401),
    ("payload_not_json", 401),
    ("bad_signature_base64", 401),
    ("iss_number", 401),
    ("exp_string", 401),
    ("exp_negative", 401),
    ("aud_number", 401),
    ("kid_number", 401),
    ("no_alg", 401),
    ("ed_short_signature", 401),
    ("other_issuer", 401),
    ("strict_ok", 401),
    ("good", 200),
    ("good", 200),
    ("rs384", 200),
    ("ps256", 200),
    ("es512", 200),
    ("oversized", 431),
];

#[test]
fn tokens_are_judged_as_in_envoy() {
    let test = "tokens_are_judged_as_in_envoy";
    let dir = TempDir::new();
    let Some(tokens) = mint(test, &dir) else {
        return;
    };
    let token = |name: &str| tokens[name].as_str();
    let bearer = |name: &str| format!("authorization: Bearer {}\r\n", token(name));
    let backend = Backend::start("app");
    let config = config(&dir, &backend, "              stat_prefix: auth\n");
    let Some(pair) = Pair::start(test, &with_admin(&config), vec![backend]) else {
        return;
    };
    let mut requests: Vec<Vec<u8>> = BEARER.iter().map(|(t, _)| get("/x", &bearer(t))).collect();
    let good = token("good");
    let more: Vec<(Vec<u8>, u16)> = vec![
        (get("/x", ""), 401),
        (get("/x", "authorization: Basic abc\r\n"), 401),
        (get(&format!("/x?access_token={good}"), ""), 200),
        (get(&format!("/x?access_token={good}"), &bearer("good")), 200),
        (get(&format!("/x?access_token={}", token("tampered")), &bearer("good")), 401),
        (get("/x", &format!("{}{}", bearer("good"), bearer("good"))), 401),
        (get("/x", &format!("authorization: Bearer   {good}\r\n")), 200),
        (get("/x", &format!("authorization: xx Bearer {good}\r\n")), 200),
        (get("/x", &format!("authorization: bearer {good}\r\n")), 401),
        (get("/x", &format!("authorization: Bearer {good} trailing\r\n")), 401),
        (get("/x", &format!("{}x-jwt-payload: forged\r\nx-claim-sub: mallory\r\n", bearer("good"))), 200),
        (get("/open", ""), 200),
        (get("/x", "x-skip: 1\r\n"), 200),
        (get("/any", &format!("x-token: Token {}\r\n", token("other_issuer"))), 200),
        (get("/any", ""), 401),
        (get("/any", &bearer("expired")), 401),
        (get("/any", &bearer("wrong_issuer")), 401),
        (get("/all", &format!("{}x-token: Token {}\r\n", bearer("good"), token("other_issuer"))), 200),
        (get("/all", &bearer("good")), 401),
        (get("/optional", ""), 200),
        (get("/optional", &bearer("tampered")), 401),
        (get("/optional", &bearer("good")), 200),
        (get("/lenient", &bearer("tampered")), 200),
        (get("/lenient", ""), 200),
        (get("/lenient", &bearer("other_issuer")), 200),
        (get("/aud", &bearer("special_audience")), 200),
        (get("/aud", &bearer("good")), 403),
        (get("/strict", &bearer("strict_ok")), 200),
        (get("/strict", &bearer("strict_wrong_subject")), 401),
        (get("/strict", &bearer("strict_no_exp")), 401),
        (get("/strict", &bearer("strict_too_long")), 401),
        (get("/strict", &bearer("strict_no_iat")), 200),
        (get("/strict", &bearer("strict_expired_past_skew")), 401),
        (get("/strict", &bearer("good")), 401),
        (get(&format!("/other?tok={}", token("other_issuer")), ""), 200),
        (get("/other", &format!("cookie: a=1; jwt={}\r\n", token("other_issuer"))), 200),
        (get("/other", &format!("cookie: jwt=\"{}\"\r\n", token("other_issuer"))), 200),
        (get("/other", &format!("x-token: {}\r\n", token("other_issuer"))), 401),
        (get("/named", &format!("x-token: Token {}\r\n", token("other_issuer"))), 200),
        (get("/named", ""), 401),
        (get("/pass", ""), 200),
        (get("/off", ""), 200),
        (get("/route-named", &format!("x-token: Token {}\r\n", token("other_issuer"))), 200),
        (get("/route-named", &bearer("good")), 401),
        (get("/route-bad", &bearer("good")), 403),
        (
            b"OPTIONS /x HTTP/1.1\r\nhost: example.com\r\norigin: http://a.example\r\naccess-control-request-method: GET\r\n\r\n".to_vec(),
            200,
        ),
        (b"OPTIONS /x HTTP/1.1\r\nhost: example.com\r\norigin: http://a.example\r\n\r\n".to_vec(), 401),
    ];
    requests.extend(more.iter().map(|(r, _)| r.clone()));
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = BEARER
        .iter()
        .map(|(_, s)| *s)
        .chain(more.iter().map(|(_, s)| *s))
        .collect();
    assert_eq!(statuses, expected);
    assert_eq!(observed[12].body, "Jwt is expired");
    let header = |o: &common::oracle::Observed, name: &str| {
        o.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(&observed[12], "www-authenticate").as_deref(),
        Some("Bearer realm=\"http://example.com/x\", error=\"invalid_token\"")
    );
    // The good token reached the backend without its Authorization
    // header, with its payload and claims as headers.
    let seen = &observed[0].upstream[0].headers;
    assert!(seen.iter().all(|(n, _)| n != "authorization"));
    assert!(
        seen.contains(&("x-claim-frac".into(), "1.500000".into())),
        "{seen:?}"
    );
    // Over HTTP/2.
    let auth = format!("authorization: Bearer {good}");
    let h2 = pair.assert_all_same_h2(&[
        &["-H", &auth, "/x"],
        &["/x"],
        &["-H", "authorization: Bearer a.b.c", "/x"],
    ]);
    assert_eq!(
        h2.iter().map(|o| o.status).collect::<Vec<_>>(),
        [200, 401, 401]
    );
    pair.assert_same_admin("/stats", jwt_stats);
    let lines = requests.len() + 3;
    pair.assert_same_log(lines);
}

/// `strip_failure_response`: refusals carry neither body nor challenge;
/// without a `stat_prefix` the stats sit right under `jwt_authn.`.
#[test]
fn stripped_refusals_match_envoy() {
    let test = "stripped_refusals_match_envoy";
    let dir = TempDir::new();
    let Some(tokens) = mint(test, &dir) else {
        return;
    };
    let backend = Backend::start("app");
    let config = config(
        &dir,
        &backend,
        "              strip_failure_response: true\n",
    );
    let Some(pair) = Pair::start(test, &with_admin(&config), vec![backend]) else {
        return;
    };
    let requests = [
        get("/x", ""),
        get(
            "/x",
            &format!("authorization: Bearer {}\r\n", tokens["wrong_audience"]),
        ),
        get(
            "/x",
            &format!("authorization: Bearer {}\r\n", tokens["good"]),
        ),
        get("/route-bad", ""),
    ];
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [401, 403, 200, 403]);
    assert_eq!(observed[0].body, "");
    pair.assert_same_admin("/stats", jwt_stats);
    pair.assert_same_stats(&[
        "http.ingress_http.jwt_authn.allowed",
        "http.ingress_http.jwt_authn.denied",
    ]);
}

/// `clear_route_cache`: a claim made a header is routed on (the route
/// is matched again, after the filter also removed the client's own
/// copy of that header); without it the route stays.
#[test]
fn claims_are_routed_on_as_in_envoy() {
    let test = "claims_are_routed_on_as_in_envoy";
    let dir = TempDir::new();
    let Some(tokens) = mint(test, &dir) else {
        return;
    };
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\", headers: [ { name: x-role, string_match: { exact: admin } } ] }\n                direct_response: { status: 200, body: { inline_string: \"admin area\" } }\n              - match: { prefix: \"/\" }\n                route: { cluster: app }\n";
    let provider = |clear: bool| {
        format!(
            "{{ issuer: https://issuer, local_jwks: {{ filename: {} }}, claim_to_headers: [ {{ header_name: x-role, claim_name: role }} ], clear_route_cache: {clear} }}",
            dir.0.join("jwks.json").display()
        )
    };
    let filter = format!(
        "          - name: jwt\n            typed_config:\n              \"@type\": {FILTER_TYPE}\n              providers: {{ clearing: {}, keeping: {} }}\n              rules:\n              - {{ match: {{ prefix: /plain }}, requires: {{ provider_name: keeping }} }}\n              - {{ match: {{ prefix: / }}, requires: {{ provider_name: clearing }} }}\n",
        provider(true),
        provider(false)
    );
    let backend = Backend::start("app");
    let config =
        http_config(routes, &port_cluster("app", backend.port())).with_http_filter(&filter);
    let Some(pair) = Pair::start(test, &with_admin(&config), vec![backend]) else {
        return;
    };
    let bearer = |name: &str| format!("authorization: Bearer {}\r\n", tokens[name]);
    let cases = [
        (get("/x", &bearer("role_admin")), "admin area"),
        (get("/x", &bearer("role_user")), "app /x"),
        (get("/plain", &bearer("role_admin")), "app /plain"),
        (get("/x", "x-role: admin\r\n"), "Jwt is missing"),
        (
            get("/x", &format!("x-role: admin\r\n{}", bearer("role_user"))),
            "app /x",
        ),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let bodies: Vec<String> = pair
        .assert_all_same(&requests)
        .into_iter()
        .map(|o| o.body)
        .collect();
    assert_eq!(
        bodies,
        cases.iter().map(|(_, b)| b.to_string()).collect::<Vec<_>>()
    );
    let auth = format!("authorization: Bearer {}", tokens["role_admin"]);
    let h2 = pair.assert_all_same_h2(&[&["-H", &auth, "/x"]]);
    assert_eq!(h2[0].body, "admin area");
    pair.assert_same_admin("/stats", jwt_stats);
}

/// A static file server (Python's own `http.server`) on `dir`, ready.
fn serve_files(dir: &TempDir) -> (std::process::Child, u16) {
    let port = free_port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(&dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "http.server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, port)
}

#[test]
fn remote_key_sets_are_fetched_as_in_envoy() {
    let test = "remote_key_sets_are_fetched_as_in_envoy";
    let dir = TempDir::new();
    let Some(tokens) = mint(test, &dir) else {
        return;
    };
    let bearer = |name: &str| format!("authorization: Bearer {}\r\n", tokens[name]);
    let (mut files, files_port) = serve_files(&dir);
    let remote = |path: &str, cluster: &str, cache: &str| {
        format!("remote_jwks: {{ http_uri: {{ uri: \"http://keys.example{path}\", cluster: {cluster}, timeout: 1s }}, cache_duration: {cache} }}")
    };
    let filter = format!(
        "          - name: jwt
            typed_config:
              \"@type\": {FILTER_TYPE}
              providers:
                fetched: {{ issuer: https://issuer, {} }}
                missing: {{ issuer: https://issuer, {} }}
                not_keys: {{ issuer: https://issuer, {} }}
                nowhere: {{ issuer: https://issuer, {} }}
                uncached: {{ issuer: https://issuer, {} }}
              rules:
              - {{ match: {{ prefix: /missing }}, requires: {{ provider_name: missing }} }}
              - {{ match: {{ prefix: /not-keys }}, requires: {{ provider_name: not_keys }} }}
              - {{ match: {{ prefix: /nowhere }}, requires: {{ provider_name: nowhere }} }}
              - {{ match: {{ prefix: /uncached }}, requires: {{ provider_name: uncached }} }}
              - {{ match: {{ prefix: /either }}, requires: {{ requires_any: {{ requirements: [ {{ provider_name: missing }}, {{ provider_name: fetched }} ] }} }} }}
              - {{ match: {{ prefix: / }}, requires: {{ provider_name: fetched }} }}
",
        remote("/jwks.json", "keys", "300s"),
        remote("/missing.json", "keys", "300s"),
        remote("/tokens.json", "keys", "300s"),
        remote("/jwks.json", "nowhere", "300s"),
        remote("/jwks.json", "keys", "0.001s"),
    );
    let backend = Backend::start("app");
    let clusters = port_cluster("app", backend.port()) + &port_cluster("keys", files_port);
    let config = with_file_log(
        &http_config(&routes(), &clusters),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
    )
    .with_http_filter(&filter);
    let Some(pair) = Pair::start(test, &with_admin(&config), vec![backend]) else {
        let _ = files.kill();
        return;
    };
    let cases = [
        ("/a", bearer("good"), 200),
        ("/b", bearer("good"), 200),
        ("/c", bearer("es256"), 200),
        ("/d", bearer("tampered"), 401),
        ("/e", String::new(), 401),
        ("/missing/a", bearer("good"), 401),
        ("/missing/b", bearer("good"), 401),
        ("/not-keys", bearer("good"), 401),
        ("/nowhere", bearer("good"), 401),
        ("/either", bearer("good"), 200),
        ("/uncached/a", bearer("good"), 200),
        ("/uncached/b", bearer("good"), 200),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(p, h, _)| get(p, h)).collect();
    let observed = pair.assert_all_same(&requests);
    let _ = files.kill();
    let _ = files.wait();
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(statuses, expected);
    assert_eq!(observed[5].body, "Jwks remote fetch is failed");
    pair.assert_same_admin("/stats", jwt_stats);
    pair.assert_same_stats(&[
        "cluster.keys.upstream_rq_200",
        "cluster.keys.upstream_rq_404",
    ]);
    pair.assert_same_log(cases.len());
}
