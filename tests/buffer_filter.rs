//! The `envoy.filters.http.buffer` filter against Envoy 1.40 on the same
//! config: bodies within the limit go on whole (a chunked one with its
//! `content-length`), larger ones are answered 413 `Payload Too Large`
//! and the connection closed, a route may disable the filter or bring
//! its own limit, and a request without a body passes untouched; the
//! backend's view, stats and access log compared.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;

const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";

fn routes() -> String {
    let route = |prefix: &str, own: &str| {
        let own = if own.is_empty() {
            String::new()
        } else {
            format!("\n                typed_per_filter_config:\n                  buffer: {{ \"@type\": {PER_ROUTE}, {own} }}")
        };
        format!("              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: app }}{own}\n")
    };
    [
        "            - name: all\n              domains: [\"*\"]\n              routes:\n"
            .to_string(),
        route("/off", "disabled: true"),
        route("/big", "buffer: { max_request_bytes: 100 }"),
        route("/", ""),
    ]
    .concat()
}

const FILTER: &str = "          - name: buffer\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 10 }\n";

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: example.com\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked(path: &str, chunks: &[&str]) -> Vec<u8> {
    let mut text =
        format!("POST {path} HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n");
    for c in chunks {
        text += &format!("{:x}\r\n{c}\r\n", c.len());
    }
    text += "0\r\n\r\n";
    text.into_bytes()
}

#[test]
fn bodies_are_buffered_as_in_envoy() {
    let backend = Backend::start("app");
    let config = with_file_log(
        &http_config(&routes(), &port_cluster("app", backend.port())),
        "\"{log}\"",
        "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED%\\n",
    )
    .with_http_filter(FILTER);
    let Some(pair) = Pair::start(
        "bodies_are_buffered_as_in_envoy",
        &with_admin(&config),
        vec![backend],
    ) else {
        return;
    };
    let twenty = "abcdefghijklmnopqrst";
    let cases = [
        (post("/", "hello"), 200),
        (chunked("/", &["hel", "lo"]), 200),
        (post("/", twenty), 413),
        (chunked("/", &["abcdefghij", "klmnopqrst"]), 413),
        (chunked("/off", &["abcdefghij", "klmnopqrst"]), 200),
        (post("/big", twenty), 200),
        (chunked("/big", &[twenty, twenty, "x"]), 200),
        (b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n".to_vec(), 200),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(r, _)| r.clone()).collect();
    let observed = pair.assert_all_same(&requests);
    let statuses: Vec<u16> = observed.iter().map(|o| o.status).collect();
    let expected: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, expected);
    assert_eq!(observed[2].body, "Payload Too Large");
    let seen = &observed[1].upstream[0].headers;
    assert!(
        seen.contains(&("content-length".into(), "5".into()))
            && seen.iter().all(|(n, _)| n != "transfer-encoding"),
        "{seen:?}"
    );
    // Over HTTP/2 (curl sends the length it knows).
    let h2 = pair.assert_all_same_h2(&[&["-d", "hello", "/"], &["-d", twenty, "/big"]]);
    assert_eq!(h2.iter().map(|o| o.status).collect::<Vec<_>>(), [200, 200]);
    pair.assert_same_stats(&[
        "http.ingress_http.downstream_rq_too_large",
        "http.ingress_http.downstream_rq_4xx",
    ]);
    pair.assert_same_log(cases.len() + 2);
    // A deliberate deviation: Envoy lets an HTTP/2 body that comes in one
    // DATA frame with END_STREAM through whatever its size (its filter
    // only holds frames before the last); Ringway holds every protocol
    // to the limit.
    let over = curl_h2(pair.ringway.port, &["-d", twenty, "/"]).expect("curl");
    assert_eq!(
        (over.status, over.text()),
        (413, "Payload Too Large".to_string())
    );
}
