//! `pipe` (Unix-domain socket) addresses for a listener, an endpoint and
//! the admin API, run side by side with Envoy: what the client, the
//! backend, the access log, the admin API and the socket file show.

mod common;
use common::oracle::{envoy_or_skip, Envoy};
use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A TCP listener (`{port}`, which start-up waits on) and a pipe listener
/// (`{dir}/in.sock`, mode 0600), both routed to a cluster whose one
/// endpoint is the pipe `{up}`; the admin API on the pipe `{dir}/admin.sock`.
const CONFIG: &str = r#"admin:
  address: { pipe: { path: "{dir}/admin.sock" } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: {port} } }
    filter_chains: &chains
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          use_remote_address: true
          internal_address_config: { unix_sockets: true }
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{dir}/access.log"
              log_format:
                text_format_source:
                  inline_string: "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST% %RESPONSE_CODE%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: pipe
    address: { pipe: { path: "{dir}/in.sock", mode: 0600 } }
    filter_chains: *chains
  clusters:
  - name: app
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { pipe: { path: "{up}" } } }
"#;

/// Sends `raw` on a new connection to the pipe at `path` and reads until
/// the server closes (the requests ask it to).
fn over_pipe(path: &Path, raw: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).expect("connect to the pipe");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(raw).expect("send");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Status line and body (de-chunked) of a response, without the headers
/// that differ by nature (date, server, timings).
fn status_and_body(response: &str) -> (String, String) {
    let (head, mut rest) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, rest.to_string());
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    (status, body)
}

/// One side of the comparison: its process, its pipe directory.
struct Side {
    dir: TempDir,
}

impl Side {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.0.join(name)
    }

    /// `text` with this side's directory written as `{dir}`.
    fn neutral(&self, text: &str) -> String {
        text.replace(&self.dir.0.display().to_string(), "{dir}")
    }

    fn config(&self, up: &Path) -> String {
        CONFIG
            .replace("{dir}", &self.dir.0.display().to_string())
            .replace("{up}", &up.display().to_string())
    }

    /// The access log once it holds `lines` lines.
    fn access_log(&self, lines: usize) -> String {
        self.neutral(&log_lines(&self.path("access.log"), lines))
    }

    /// GETs `path` from the admin API on its pipe.
    fn admin(&self, path: &str) -> String {
        let raw = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        let response = over_pipe(&self.path("admin.sock"), raw.as_bytes());
        self.neutral(&status_and_body(&response).1)
    }
}

/// A pipe listener, a pipe endpoint and a pipe admin API behave as
/// Envoy's: no `x-forwarded-for` entry or external address for a pipe
/// client, which `unix_sockets` makes internal, the socket path as every address in the access log and the
/// admin API, `listener.<path>.*` stats, and the file mode applied.
#[test]
fn pipe_addresses_match_envoy() {
    let Some(bin) = envoy_or_skip("pipe_addresses_match_envoy") else {
        return;
    };
    let shared = TempDir::new();
    let up = shared.0.join("up.sock");
    let app = Backend::start_unix(&up, "app");
    let (ringway_side, envoy_side) = (
        Side {
            dir: TempDir::new(),
        },
        Side {
            dir: TempDir::new(),
        },
    );
    let envoy = Envoy::start(&bin, &envoy_side.config(&up));
    let ringway = Proxy::start(&ringway_side.config(&up), &["--concurrency", "2"]);

    let requests: [&[u8]; 3] = [
        b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /b HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.2.3.4\r\nconnection: close\r\n\r\n",
        b"POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    ];
    let mut seen_by_side = Vec::new();
    for side in [&ringway_side, &envoy_side] {
        let before = app.seen().len();
        let answers: Vec<_> = requests
            .iter()
            .map(|raw| status_and_body(&over_pipe(&side.path("in.sock"), raw)))
            .collect();
        let paths = ["/a", "/b", "/c"];
        for ((status, body), path) in answers.iter().zip(paths) {
            assert_eq!(
                (status.as_str(), body.as_str()),
                ("HTTP/1.1 200 OK", &*format!("app {path}"))
            );
        }
        let seen: Vec<Vec<(String, String)>> = app.seen()[before..]
            .iter()
            .map(|s| {
                let mut h: Vec<_> = s
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .filter(|(n, _)| n != "x-request-id")
                    .collect();
                h.sort();
                h
            })
            .collect();
        seen_by_side.push(seen);
    }
    assert_eq!(
        seen_by_side[0], seen_by_side[1],
        "(ringway, envoy) upstream headers"
    );
    assert!(seen_by_side[0].iter().flatten().all(|(n, v)| {
        n != "x-envoy-external-address" && (n != "x-forwarded-for" || v == "1.2.3.4")
    }));
    // `unix_sockets`: a pipe client is internal unless a header names others.
    let internal: Vec<bool> = seen_by_side[0]
        .iter()
        .map(|h| {
            h.iter()
                .any(|(n, v)| n == "x-envoy-internal" && v == "true")
        })
        .collect();
    assert_eq!(internal, [true, false, true]);

    // A TCP client reaches the pipe endpoint too.
    assert_eq!(get(ringway.port, "x", "/tcp").text(), "app /tcp");
    assert_eq!(get(envoy.port, "x", "/tcp").text(), "app /tcp");

    let logs: Vec<String> = [&ringway_side, &envoy_side]
        .iter()
        .map(|side| {
            side.access_log(4)
                .lines()
                .filter(|l| !l.starts_with("127.0.0.1"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(logs[0], logs[1], "(ringway, envoy) access logs");
    assert!(logs[0].starts_with("{dir}/in.sock {dir}/in.sock {dir}/in.sock {dir}/in.sock"));

    let pipe_listener = |side: &Side| {
        let json: serde_json::Value =
            serde_json::from_str(&side.admin("/listeners?format=json")).expect("json");
        json["listener_statuses"][1].clone()
    };
    assert_eq!(pipe_listener(&ringway_side), pipe_listener(&envoy_side));
    let clusters_line = |side: &Side| {
        side.admin("/clusters")
            .lines()
            .filter(|l| l.contains("::rq_total::") || l.contains("::hostname::"))
            .map(|l| l.replace(&up.display().to_string(), "{up}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(clusters_line(&ringway_side), clusters_line(&envoy_side));
    let stats = |side: &Side| {
        side.admin("/stats")
            .lines()
            .filter(|l| {
                l.starts_with("listener.{dir}/in.sock.downstream_cx_total")
                    || l.starts_with("listener.{dir}/in.sock.downstream_cx_destroy")
                    || l.starts_with("listener.{dir}/in.sock.http.ingress_http.downstream_rq_")
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let ringway_stats = stats(&ringway_side);
    assert_eq!(ringway_stats.len(), 8, "{ringway_stats:?}");
    assert_eq!(ringway_stats, stats(&envoy_side));

    for side in [&ringway_side, &envoy_side] {
        let mode = std::fs::metadata(side.path("in.sock"))
            .expect("socket file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A pipe listener starts over the socket file a previous run left, as
/// Envoy's does, and `ringway proxy-config` reaches an admin API on a pipe.
#[test]
fn a_stale_socket_file_is_replaced_and_proxy_config_reads_a_pipe_admin() {
    let shared = TempDir::new();
    let up = shared.0.join("up.sock");
    let _app = Backend::start_unix(&up, "app");
    let side = Side {
        dir: TempDir::new(),
    };
    // What a killed run leaves behind: a socket file nobody listens on.
    // (A child another test forks in the moment before the listener
    // closes holds a copy until it execs: wait for that to pass.)
    drop(std::os::unix::net::UnixListener::bind(side.path("in.sock")).expect("bind"));
    let stale = Instant::now();
    while UnixStream::connect(side.path("in.sock")).is_ok() {
        assert!(
            stale.elapsed() < Duration::from_secs(2),
            "the stale socket still listens"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ringway = Proxy::start(&side.config(&up), &["--concurrency", "1"]);
    let raw = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let (status, body) = status_and_body(&over_pipe(&side.path("in.sock"), raw));
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "app /")
    );

    let admin = side.path("admin.sock").display().to_string();
    let out = std::process::Command::new(binary())
        .args(["proxy-config", "listeners", "--admin", &admin])
        .output()
        .expect("proxy-config");
    let table = side.neutral(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("pipe ") && l.contains("{dir}/in.sock")),
        "{table}"
    );
}
