//! Access logs, black-box: Envoy's default format, custom text and JSON
//! formats, the response flags the proxy produces, whole lines under
//! concurrent load, and config errors for what is not supported.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An HCM `access_log` entry writing `format_yaml` (may be empty) to `path`.
fn file_log(path: &Path, format_yaml: &str) -> String {
    format!(
        "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n{format_yaml}",
        path.display()
    )
}

/// `http_config` with an access log spliced into the connection manager.
fn logged_config(routes: &str, clusters: &str, access_log: &str) -> String {
    http_config(routes, clusters).replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n{access_log}"),
    )
}

/// Waits until `path` holds `n` lines and returns them.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            assert_eq!(lines.len(), n, "{text}");
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn default_format_matches_envoy() {
    let backend = Backend::start("b");
    let dir = TempDir::new();
    let log = dir.0.join("access.log");
    let config = logged_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(&backend, 1)], ""),
        &file_log(&log, ""),
    );
    let p = Proxy::start(&config, &["--concurrency", "2"]);
    let mut c = Client::connect(p.port);
    c.send(b"POST /echo HTTP/1.1\r\nhost: example.com\r\nuser-agent: tester/1\r\nx-request-id: abc-123\r\ncontent-length: 5\r\n\r\nhello");
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    let line = &lines(&log, 1)[0];
    // [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME "XFF" "UA" "ID" "AUTHORITY" "UPSTREAM"
    let (time, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .expect("a [START_TIME] prefix");
    assert_eq!(time.len(), "2026-11-25T14:19:13.804Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(&fields[..3], ["\"POST", "/echo", "HTTP/1.1\""], "{line}");
    assert_eq!(&fields[3..6], ["200", "-", "5"], "{line}");
    assert_eq!(fields[6], "5", "response body bytes: {line}");
    assert!(
        fields[7].parse::<u64>().is_ok() && fields[8].parse::<u64>().is_ok(),
        "{line}"
    );
    assert_eq!(
        &fields[9..],
        [
            "\"-\"",
            "\"tester/1\"",
            "\"abc-123\"",
            "\"example.com\"",
            &format!("\"127.0.0.1:{}\"", backend.port())
        ],
        "{line}"
    );
}

#[test]
fn custom_text_and_json_formats() {
    let backend = Backend::start("b");
    let dir = TempDir::new();
    let text_log = dir.0.join("text.log");
    let json_log = dir.0.join("json.log");
    let text_format = "              log_format:\n                text_format_source:\n                  inline_string: \"%REQ(:METHOD)% %REQ(X-MISSING?:PATH)% %RESP(X-BACKEND)% %UPSTREAM_CLUSTER% %ROUTE_NAME% %REQ(USER-AGENT):3% %START_TIME(%Y)% %DOWNSTREAM_LOCAL_ADDRESS% 100%%\\n\"\n";
    let json_format = "              log_format:\n                json_format:\n                  code: \"%RESPONSE_CODE%\"\n                  bytes: \"%BYTES_SENT%\"\n                  remote: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"\n                  route: \"%ROUTE_NAME%\"\n                  nested: { id: \"%REQ(X-REQUEST-ID)%\", fixed: 7 }\n                  missing: \"%RESP(X-NOT-THERE)%\"\n";
    let access = format!(
        "{}{}",
        file_log(&text_log, text_format),
        file_log(&json_log, json_format).replace("          access_log:\n", "")
    );
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - name: to-backend\n                match: { prefix: \"/\" }\n                route: { cluster: backend }\n";
    let config = logged_config(
        routes,
        &static_cluster("backend", &[(&backend, 1)], ""),
        &access,
    );
    let p = Proxy::start(&config, &[]);
    let mut c = Client::connect(p.port);
    c.send(b"GET /path HTTP/1.1\r\nhost: h\r\nuser-agent: abcdef\r\n\r\n");
    let r = c.read_response(false).expect("response");
    let line = &lines(&text_log, 1)[0];
    let year = line.split(' ').nth(6).unwrap_or_default();
    assert!(year.len() == 4 && year.starts_with("20"), "{line}");
    let expected = format!(
        "GET /path b backend to-backend abc {year} 127.0.0.1:{} 100%",
        p.port
    );
    assert_eq!(line, &expected);
    let json: serde_json::Value =
        serde_json::from_str(&lines(&json_log, 1)[0]).expect("one JSON object per line");
    assert_eq!(json["code"], 200);
    assert_eq!(json["bytes"], r.body.len() as u64);
    assert_eq!(json["remote"], "127.0.0.1");
    assert_eq!(json["route"], "to-backend");
    assert_eq!(json["nested"]["fixed"], 7);
    assert_eq!(json["missing"], serde_json::Value::Null);
    // The generated request id is the one the backend saw.
    let sent_id = backend.seen()[0].header("x-request-id").map(str::to_string);
    assert_eq!(json["nested"]["id"].as_str().map(str::to_string), sent_id);
}

#[test]
fn response_flags_for_each_failure() {
    let backend = Backend::start("b");
    let dir = TempDir::new();
    let log = dir.0.join("flags.log");
    let format = "              log_format:\n                text_format: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n\"\n";
    let dead = free_port();
    let routes = "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/empty\" }\n                route: { cluster: empty }\n              - match: { prefix: \"/dead\" }\n                route: { cluster: dead }\n              - match: { prefix: \"/delay\" }\n                route: { cluster: backend, timeout: 0.3s }\n              - match: { prefix: \"/b/\" }\n                route: { cluster: backend, prefix_rewrite: \"/\" }\n";
    let clusters = format!(
        "{}  - name: empty\n    type: STATIC\n    load_assignment:\n      cluster_name: empty\n      endpoints: []\n  - name: dead\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: dead\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead} }} }} }}\n",
        static_cluster("backend", &[(&backend, 1)], "")
    );
    let p = Proxy::start(
        &logged_config(routes, &clusters, &file_log(&log, format)),
        &["--concurrency", "2"],
    );
    for path in [
        "/nowhere",
        "/empty",
        "/dead",
        "/delay/2000",
        "/b/close-before",
        "/b/garbage",
    ] {
        get(p.port, "h", path);
    }
    // The client resets the connection while the upstream is answering.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.write_all(b"GET /b/delay/400 HTTP/1.1\r\nhost: h\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(100));
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s);
    // A request that is not HTTP.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.write_all(b"NOT HTTP\r\n\r\n").expect("write");
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let got = lines(&log, 8);
    let mut want = vec![
        "/nowhere 404 NR",
        "/empty 503 UH",
        "/dead 503 UF",
        "/delay/2000 504 UT",
        // %REQ(:PATH)% is the path as forwarded (after prefix_rewrite), as
        // in Envoy, whose default format reads x-envoy-original-path first.
        "/close-before 503 UC",
        "/garbage 502 UPE",
        "/delay/400 0 DC",
        "- 400 DPE",
    ];
    let mut got: Vec<&str> = got.iter().map(String::as_str).collect();
    // Lines from different shards may arrive in either order.
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn lines_stay_whole_under_concurrent_load() {
    let backend = Backend::start("b");
    let dir = TempDir::new();
    let log = dir.0.join("load.log");
    let format = "              log_format:\n                json_format: { path: \"%REQ(:PATH)%\", code: \"%RESPONSE_CODE%\", ua: \"%REQ(USER-AGENT)%\" }\n";
    let admin = free_port();
    let config = admin_block(admin)
        + &logged_config(
            &catch_all("backend", ""),
            &static_cluster("backend", &[(&backend, 1)], ""),
            &file_log(&log, format),
        );
    let p = Proxy::start(&config, &["--concurrency", "2"]);
    let (clients, per_client) = (8, 100);
    let long_agent = "x".repeat(2000);
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let port = p.port;
            let agent = long_agent.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for j in 0..per_client {
                    let req = format!(
                        "GET /c{i}/r{j} HTTP/1.1\r\nhost: h\r\nuser-agent: {agent}\r\n\r\n"
                    );
                    c.send(req.as_bytes());
                    assert_eq!(c.read_response(false).expect("response").status, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
    let all = lines(&log, clients * per_client);
    let mut paths = std::collections::HashSet::new();
    for line in &all {
        let v: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
        assert_eq!(v["code"], 200);
        assert_eq!(v["ua"].as_str().map(str::len), Some(2000));
        paths.insert(v["path"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        paths.len(),
        clients * per_client,
        "every request logged once"
    );
}

#[test]
fn stdout_logger_and_config_errors() {
    let backend = Backend::start("b");
    let stdout_log = "          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n              log_format: { text_format: \"%RESPONSE_CODE% %REQ(:PATH)%\\n\" }\n";
    let config = logged_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(&backend, 1)], ""),
        stdout_log,
    );
    let dir = TempDir::new();
    let path = dir.0.join("c.yaml");
    std::fs::write(&path, config.replace("{port}", &free_port().to_string())).expect("write");
    let mut child = Command::new(binary())
        .args(["-c", &path.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let port: u16 = std::fs::read_to_string(&path)
        .expect("config")
        .split("port_value: ")
        .nth(1)
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .expect("listener port");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(port, "h", "/stdout-check").status, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let _ = child.wait();
    assert!(out.lines().any(|l| l == "200 /stdout-check"), "{out:?}");

    for (bad, expect) in [
        (
            "%NOT_AN_OPERATOR%",
            "unknown command operator %NOT_AN_OPERATOR%",
        ),
        ("%REQ(X", "missing its ')'"),
    ] {
        let config = logged_config(
            &catch_all("backend", ""),
            &static_cluster("backend", &[(&backend, 1)], ""),
            &stdout_log.replace("%RESPONSE_CODE% %REQ(:PATH)%\\n", bad),
        );
        std::fs::write(&path, config.replace("{port}", "1")).expect("write");
        let out = Command::new(binary())
            .args(["--mode", "validate", "-c", &path.display().to_string()])
            .output()
            .expect("validate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("typed_config.access_log[0].typed_config.log_format.text_format")
                && err.contains(expect),
            "{err}"
        );
    }
    let filtered = stdout_log.replace(
        "            typed_config:\n",
        "            filter: { status_code_filter: {} }\n            typed_config:\n",
    );
    let config = logged_config(
        &catch_all("backend", ""),
        &static_cluster("backend", &[(&backend, 1)], ""),
        &filtered,
    );
    std::fs::write(&path, config.replace("{port}", "1")).expect("write");
    let out = Command::new(binary())
        .args(["--mode", "validate", "-c", &path.display().to_string()])
        .output()
        .expect("validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access_log[0].filter: not supported yet"),
        "{err}"
    );
}
