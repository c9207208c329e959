//! Listener, cluster and connection-manager fields that real bootstraps
//! carry, each observed doing what it says (not merely accepted).

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::process::Command;

/// `ss` lines for sockets matching `filter` (e.g. `sport = :8080`).
fn ss(args: &[&str], filter: &str) -> Vec<String> {
    let out = Command::new("ss")
        .args(args)
        .arg(filter)
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A bootstrap whose one listener routes everything to the backend `app`,
/// started here.
fn app_config() -> (Backend, String) {
    let app = Backend::start("app");
    let config = with_admin(&http_config(
        &catch_all("app", ""),
        &static_cluster("app", &[(&app, 1)], ""),
    ));
    (app, config)
}

fn with_hcm(config: &str, extra: &str) -> String {
    config.replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n{extra}"),
    )
}

fn with_listener(config: &str, extra: &str) -> String {
    config.replace(
        "    filter_chains:\n",
        &format!("{extra}    filter_chains:\n"),
    )
}

/// `common_http_protocol_options.max_requests_per_connection` on the
/// connection manager: the last allowed response says `connection: close`
/// and the connection ends, as in Envoy.
#[test]
fn downstream_max_requests_per_connection_matches_envoy() {
    let app = Backend::start("app");
    let config = with_hcm(
        &http_config(
            &catch_all("app", ""),
            &static_cluster("app", &[(&app, 1)], ""),
        ),
        "          common_http_protocol_options: { max_requests_per_connection: 2 }\n",
    );
    let config = with_admin(&config);
    let Some(pair) = Pair::start(
        "downstream_max_requests_per_connection_matches_envoy",
        &config,
        vec![app],
    ) else {
        return;
    };
    let run = |port: u16| {
        let mut c = Client::connect(port);
        let first = c.get("a", "/1");
        let second = c.get("a", "/2");
        (
            first.header("connection").map(str::to_owned),
            second.header("connection").map(str::to_owned),
            c.is_closed(),
        )
    };
    let (ringway, envoy) = (run(pair.ringway.port), run(pair.envoy.port));
    assert_eq!(ringway, (None, Some("close".to_string()), true));
    assert_eq!(ringway, envoy);
    let stat = "http.ingress_http.downstream_cx_max_requests_reached";
    let (r, e) = pair.admin(&format!("/stats?filter={stat}"));
    assert_eq!(r, e);
}

/// Cluster `max_requests_per_connection`, `alt_stat_name` and
/// `upstream_connection_options.tcp_keepalive`.
#[test]
fn cluster_connection_fields_take_effect() {
    let app = Backend::start("app");
    let extra = "    alt_stat_name: app_alt\n    max_requests_per_connection: 2\n    per_connection_buffer_limit_bytes: 4096\n    upstream_connection_options: { tcp_keepalive: { keepalive_time: 77, keepalive_interval: 5, keepalive_probes: 3 } }\n";
    let admin = free_port();
    let config = format!(
        "{}{}",
        admin_block(admin),
        http_config(
            &catch_all("app", ""),
            &static_cluster("app", &[(&app, 1)], extra)
        )
    );
    let p = Proxy::start(&config, &["--concurrency", "1"]);
    let mut c = Client::connect(p.port);
    for i in 0..4 {
        assert_eq!(c.get("a", &format!("/{i}")).status, 200);
    }
    // Two requests per upstream connection: four requests, two connections.
    assert_eq!(app.connection_count(), 2);
    // Stats carry the alternative name.
    let stats = admin_until(admin, "/stats", |b| {
        b.contains("upstream_cx_max_requests: 2")
    });
    assert!(
        stats.contains("cluster.app_alt.upstream_rq_total: 4"),
        "{stats}"
    );
    assert!(
        stats.contains("cluster.app_alt.upstream_cx_max_requests: 2"),
        "{stats}"
    );
    assert!(!stats.contains("cluster.app.upstream_rq_total"), "{stats}");
    let (_, clusters) = admin_request(admin, "GET", "/clusters");
    assert!(
        clusters.contains("app::observability_name::app_alt"),
        "{clusters}"
    );
    // A 4 KiB read limit still moves a 1 MiB response whole.
    let big = c.get("a", "/big/1048576");
    assert_eq!(big.body.len(), 1_048_576);
    // The pooled upstream connection has the keep-alive timer armed with
    // the configured idle time.
    let sockets = ss(
        &["-tno", "state", "established"],
        &format!("dport = :{}", app.port()),
    );
    // 77 s of idle time: `ss` shows the timer at 1min1xsec.
    assert!(
        sockets.iter().any(|l| l.contains("timer:(keepalive,1min1")),
        "{sockets:?}"
    );
}

/// `typed_extension_protocol_options` with Envoy's `HttpProtocolOptions`
/// (HTTP/1.1, explicitly or following the downstream protocol): its
/// `common_http_protocol_options.max_requests_per_connection` applies.
#[test]
fn typed_protocol_options_take_effect() {
    for choice in [
        "explicit_http_config: { http_protocol_options: {} }",
        "use_downstream_protocol_config: {}",
    ] {
        let app = Backend::start("app");
        let extra = format!(
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        {choice}\n        common_http_protocol_options: {{ max_requests_per_connection: 3 }}\n"
        );
        let config = http_config(
            &catch_all("app", ""),
            &static_cluster("app", &[(&app, 1)], &extra),
        );
        let p = Proxy::start(&config, &["--concurrency", "1"]);
        let mut c = Client::connect(p.port);
        for i in 0..6 {
            assert_eq!(c.get("a", &format!("/{i}")).status, 200);
        }
        // Three requests per upstream connection: six requests, two.
        assert_eq!(app.connection_count(), 2, "{choice}");
    }
}

/// `enable_reuse_port: false`: one listening socket that both shards
/// accept on; the default binds one per shard.
#[test]
fn enable_reuse_port_false_binds_one_socket() {
    let app = Backend::start("app");
    let base = http_config(
        &catch_all("app", ""),
        &static_cluster("app", &[(&app, 1)], ""),
    );
    let shared = Proxy::start(
        &with_listener(&base, "    enable_reuse_port: false\n"),
        &["--concurrency", "2"],
    );
    let per_shard = Proxy::start(&base, &["--concurrency", "2"]);
    let listening = |port: u16| ss(&["-tln"], &format!("sport = :{port}")).len();
    assert_eq!(listening(shared.port), 1);
    assert_eq!(listening(per_shard.port), 2);
    for _ in 0..20 {
        assert_eq!(get(shared.port, "a", "/").status, 200);
    }
}

/// `socket_options` reach the listening socket (SO_RCVBUF, which the
/// kernel doubles), and `traffic_direction` and the buffer limit are taken.
#[test]
fn listener_socket_options_are_applied() {
    let app = Backend::start("app");
    let config = with_listener(
        &http_config(&catch_all("app", ""), &static_cluster("app", &[(&app, 1)], "")),
        "    traffic_direction: INBOUND\n    per_connection_buffer_limit_bytes: 2048\n    socket_options:\n    - { description: rcvbuf, level: 1, name: 8, int_value: 24576, state: STATE_PREBIND }\n",
    );
    let p = Proxy::start(&config, &["--concurrency", "1"]);
    let lines = ss(&["-tlnm"], &format!("sport = :{}", p.port)).join(" ");
    assert!(lines.contains("rb49152"), "{lines}");
    // A 2 KiB read limit still serves bodies and large-ish heads whole.
    let mut c = Client::connect(p.port);
    let body = "b".repeat(300_000);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nhost: a\r\nx-long: {}\r\ncontent-length: {}\r\n\r\n{body}",
            "h".repeat(10_000),
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response(false).expect("response");
    assert_eq!(r.body.len(), body.len());
}

/// The admin API's own access logs (`access_log_path` in Envoy's default
/// format, `access_log[]` with a format of its own), its socket options,
/// and `profile_path`, compared with Envoy.
#[test]
fn admin_access_logs_match_envoy() {
    let app = Backend::start("app");
    let admin = "admin:\n  access_log_path: \"{log}\"\n  profile_path: /tmp/ringway-test.prof\n  access_log:\n  - name: envoy.access_loggers.file\n    typed_config:\n      \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n      path: \"{log}.custom\"\n      log_format: { text_format_source: { inline_string: \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %BYTES_SENT%\\n\" } }\n  socket_options: [ { level: 1, name: 8, int_value: 24576 } ]\n  address: { socket_address: { address: 127.0.0.1, port_value: {admin} } }\n";
    let config = format!(
        "{admin}{}",
        http_config(
            &catch_all("app", ""),
            &static_cluster("app", &[(&app, 1)], "")
        )
    );
    let Some(pair) = Pair::start("admin_access_logs_match_envoy", &config, vec![app]) else {
        return;
    };
    pair.admin("/ready");
    pair.admin("/nope");
    let custom = |p: &std::path::Path| log_lines(&p.with_extension("log.custom"), 2);
    let (r, e) = (custom(&pair.logs.0), custom(&pair.logs.1));
    // The 404's body is the endpoint list, which differs; the rest agrees.
    let first_two = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.rsplit_once(' ').map_or(l, |(head, _)| head).to_string())
            .collect()
    };
    assert_eq!(r.lines().next(), Some("GET /ready 200 5"));
    assert_eq!(r.lines().next(), e.lines().next());
    assert_eq!(first_two(&r), first_two(&e));
    // The default format, start time, duration and body size aside.
    let strip = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| {
                let after_time = l.split_once("] ").map_or(l, |(_, rest)| rest);
                let fields: Vec<&str> = after_time.split(' ').collect();
                // Fields 6 and 7 after the time: %BYTES_SENT% and %DURATION%.
                fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 6 && *i != 7)
                    .map(|(_, f)| *f)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let (r_default, e_default) = (
        strip(log_lines(&pair.logs.0, 2)),
        strip(log_lines(&pair.logs.1, 2)),
    );
    assert_eq!(r_default.len(), 2, "{r_default:?}");
    assert_eq!(r_default, e_default);
    let lines = ss(&["-tlnm"], &format!("sport = :{}", pair.ringway_admin)).join(" ");
    assert!(lines.contains("rb49152"), "{lines}");
}

/// `overload_manager` with the `global_downstream_max_connections`
/// monitor: past the limit, a new connection is closed at once and counted
/// in `downstream_global_cx_overflow`; once one closes, another is taken.
#[test]
fn global_downstream_connection_limit_matches_envoy() {
    let (app, config) = app_config();
    let config = format!(
        "{config}overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 2
"
    );
    let Some(pair) = Pair::start(
        "global_downstream_connection_limit_matches_envoy",
        &config,
        vec![app],
    ) else {
        return;
    };
    let run = |port: u16| {
        let (mut a, mut b) = (Client::connect(port), Client::connect(port));
        let held = (a.get("a", "/1").status, b.get("a", "/2").status);
        let mut third = Client::connect(port);
        third.set_timeout(std::time::Duration::from_secs(5));
        third.send(b"GET /3 HTTP/1.1\r\nhost: a\r\n\r\n");
        let refused = third.read_response(false).is_err();
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let after = Client::connect(port).get("a", "/4").status;
        (held, refused, after)
    };
    let (ringway, envoy) = (run(pair.ringway.port), run(pair.envoy.port));
    assert_eq!(ringway, ((200, 200), true, 200));
    assert_eq!(ringway, envoy);
    pair.assert_same_stats(&["listener.*.downstream_global_cx_overflow"]);
}

/// Stats both proxies define, of every kind (counters, gauges,
/// histograms) and owner.
const COMMON_STATS: [&str; 16] = [
    "cluster.app.membership_total",
    "cluster.app.upstream_cx_connect_ms",
    "cluster.app.upstream_cx_total",
    "cluster.app.upstream_rq_total",
    "cluster.spare.membership_total",
    "cluster.spare.upstream_rq_total",
    "cluster_manager.active_clusters",
    "http.ingress_http.downstream_cx_http1_total",
    "http.ingress_http.downstream_rq_completed",
    "http.ingress_http.downstream_rq_time",
    "http.ingress_http.downstream_rq_total",
    "listener_manager.listener_added",
    "listener_manager.total_listeners_active",
    "server.live",
    "server.uptime",
    "server.version",
];

/// Which of [`COMMON_STATS`] `/stats` shows.
fn shown_stats(body: &str) -> String {
    let names: std::collections::HashSet<&str> = body
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
        .collect();
    COMMON_STATS
        .iter()
        .map(|n| {
            format!(
                "{n}: {}",
                if names.contains(n) { "shown" } else { "absent" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stats_pair(test: &str, options: &str) -> Option<(Pair, u16)> {
    let app = Backend::start("app");
    let spare = free_port();
    let clusters = static_cluster("app", &[(&app, 1)], "") + &port_cluster("spare", spare);
    let config = with_admin(&http_config(&catch_all("app", ""), &clusters));
    let pair = Pair::start(test, &format!("{config}{options}"), vec![app])?;
    Some((pair, spare))
}

/// `stats_config.stats_matcher` (an inclusion list with every pattern
/// kind) and `deferred_stat_options`: the same stats exist in both before
/// and after traffic; an unused cluster's traffic stats never appear, a
/// used one's from its first request.
#[test]
fn stats_inclusion_and_deferred_creation_match_envoy() {
    let options = r#"stats_config:
  stats_matcher:
    inclusion_list:
      patterns:
      - prefix: cluster.
      - suffix: downstream_rq_total
      - exact: server.live
      - safe_regex: { regex: 'listener_manager\..*_active' }
      - contains: cx_http1
deferred_stat_options:
  enable_deferred_creation_stats: true
"#;
    let test = "stats_inclusion_and_deferred_creation_match_envoy";
    let Some((pair, _spare)) = stats_pair(test, options) else {
        return;
    };
    let before = pair.admin("/stats");
    let (ringway, envoy) = (shown_stats(&before.0), shown_stats(&before.1));
    assert_eq!(ringway, envoy, "before traffic");
    assert!(
        ringway.contains("cluster.app.membership_total: shown"),
        "{ringway}"
    );
    assert!(
        ringway.contains("cluster.app.upstream_rq_total: absent"),
        "{ringway}"
    );
    pair.assert_same(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    pair.assert_same_admin("/stats", shown_stats);
    let (after, _) = pair.admin("/stats");
    assert!(shown_stats(&after).contains("cluster.app.upstream_rq_total: shown"));
    assert!(shown_stats(&after).contains("cluster.spare.upstream_rq_total: absent"));
    assert!(shown_stats(&after).contains("server.uptime: absent"));
    // Prometheus and JSON leave out the same stats.
    let (r, e) = pair.admin("/stats/prometheus");
    for series in [
        "envoy_server_live",
        "envoy_server_uptime",
        "envoy_cluster_upstream_rq_total",
    ] {
        assert_eq!(r.contains(series), e.contains(series), "{series}\n{r}");
    }
    let (r, _) = pair.admin("/stats?format=json");
    assert!(
        !r.contains("server.uptime") && r.contains("server.live"),
        "{r}"
    );
}

/// An exclusion list removes what its patterns match; `reject_all` leaves
/// `/stats` empty.
#[test]
fn stats_exclusion_and_reject_all_match_envoy() {
    let options = r#"stats_config:
  stats_matcher:
    exclusion_list:
      patterns:
      - prefix: cluster.app.upstream_cx
      - suffix: _active
      - safe_regex: { regex: '.*total.*' }
"#;
    let test = "stats_exclusion_and_reject_all_match_envoy";
    let Some((pair, _spare)) = stats_pair(test, options) else {
        return;
    };
    pair.assert_same(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    pair.assert_same_admin("/stats", shown_stats);
    let (r, _) = pair.admin("/stats");
    assert!(shown_stats(&r).contains("server.live: shown"), "{r}");
    assert!(!r.contains("total") && !r.contains("_active:"), "{r}");
    drop(pair);
    let reject = "stats_config: { stats_matcher: { reject_all: true } }\n";
    let Some((pair, _spare)) = stats_pair(test, reject) else {
        return;
    };
    pair.assert_same_admin("/stats", |body| body.to_string());
    pair.assert_same_admin("/stats/prometheus", |body| body.to_string());
}

/// A listener with `ignore_global_conn_limit` or `bypass_overload_manager`
/// is neither limited nor counted by the global connection limit.
#[test]
fn listeners_exempt_from_the_global_limit_match_envoy() {
    for flag in ["ignore_global_conn_limit", "bypass_overload_manager"] {
        let (app, config) = app_config();
        let config = format!(
            "{}overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 1
",
            with_listener(&config, &format!("    {flag}: true\n"))
        );
        let test = "listeners_exempt_from_the_global_limit_match_envoy";
        let Some(pair) = Pair::start(test, &config, vec![app]) else {
            return;
        };
        let run = |port: u16| {
            let mut held: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
            let statuses: Vec<u16> = held.iter_mut().map(|c| c.get("a", "/").status).collect();
            statuses
        };
        let (ringway, envoy) = (run(pair.ringway.port), run(pair.envoy.port));
        assert_eq!(ringway, vec![200, 200, 200], "{flag}");
        assert_eq!(ringway, envoy, "{flag}");
        pair.assert_same_stats(&["listener.*.downstream_global_cx_overflow"]);
    }
}

/// Lines Envoy 1.40 writes with `application_log_config` while validating
/// `config` at info level (it applies the format before loading listeners
/// and clusters).
fn envoy_log_lines(bin: &str, config: &str) -> Vec<String> {
    let dir = TempDir::new();
    let path = dir.0.join("envoy.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(bin)
        .args([
            "--mode",
            "validate",
            "-l",
            "info",
            "--disable-hot-restart",
            "-c",
        ])
        .arg(&path)
        .output()
        .expect("run envoy");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines Ringway serving `config` at info level has written once it
/// listens.
fn ringway_log_lines(config: &str) -> Vec<String> {
    let proxy = Proxy::start(config, &["-l", "info", "--concurrency", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    proxy.log_text().lines().map(str::to_owned).collect()
}

/// `application_log_config.log_format`: Istio's `text_format` and a
/// `json_format` (with `%j`, a number and a nested struct) shape every
/// line from the bootstrap on as they shape Envoy's.
#[test]
fn application_log_formats_match_envoy() {
    let Some(bin) = common::oracle::envoy_or_skip("application_log_formats_match_envoy") else {
        return;
    };
    let (_app, config) = app_config();
    let envoy_config = config.replace("{admin}", "0").replace("{port}", "0");
    let config = config.replace("{admin}", &free_port().to_string());
    // Istio's sidecar format.
    let istio = "application_log_config:\n  log_format:\n    text_format: \"%Y-%m-%dT%T.%fZ\\t%l\\tenvoy %n %g:%#\\t%v\\tthread=%t\"\n";
    let shape = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\t(info|warning|error)\tenvoy [a-z_]+ \S+:\d+\t.*\tthread=\d+$",
    )
    .expect("regex");
    for (who, lines) in [
        (
            "envoy",
            envoy_log_lines(&bin, &format!("{envoy_config}{istio}")),
        ),
        ("ringway", ringway_log_lines(&format!("{config}{istio}"))),
    ] {
        let shaped: Vec<&String> = lines.iter().filter(|l| shape.is_match(l)).collect();
        let last = lines.iter().rev().find(|l| !l.contains("configuration '"));
        assert!(
            !shaped.is_empty() && last.is_some_and(|l| shape.is_match(l)),
            "{who}: {lines:#?}"
        );
    }
    let json = "application_log_config:\n  log_format:\n    json_format: { time: \"%Y-%m-%dT%T.%e\", level: \"%l\", msg: \"%j\", logger: \"%n\", thread: \"%t\", n: 5, at: { file: \"%s\" } }\n";
    let mut keys = Vec::new();
    for (who, lines) in [
        (
            "envoy",
            envoy_log_lines(&bin, &format!("{envoy_config}{json}")),
        ),
        ("ringway", ringway_log_lines(&format!("{config}{json}"))),
    ] {
        let records: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect();
        let record = records
            .last()
            .unwrap_or_else(|| panic!("{who}: {lines:#?}"));
        assert_eq!(record["n"], 5, "{who}: {record}");
        assert!(["info", "warning", "error"].contains(&record["level"].as_str().unwrap_or("")));
        assert!(record["thread"]
            .as_str()
            .is_some_and(|t| t.parse::<u64>().is_ok()));
        assert!(record["at"]["file"]
            .as_str()
            .is_some_and(|f| !f.contains('/')));
        let mut names: Vec<String> = record
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        keys.push(names);
    }
    assert_eq!(keys[0], keys[1]);
    // %v in a JSON format, and a format both on the command line and in the
    // bootstrap, are refused by both.
    let bad = "application_log_config: { log_format: { json_format: { m: \"%v\" } } }\n";
    let (envoy_ok, _) = common::oracle::envoy_validate(&bin, &format!("{envoy_config}{bad}"));
    let (ringway_ok, said) = common::oracle::ringway_validate(&format!("{config}{bad}"));
    assert!(!envoy_ok && !ringway_ok, "{said}");
    assert!(said.contains("Usage of %v is unavailable"), "{said}");
    let dir = TempDir::new();
    let both = |bin: &str, config: &str| {
        let path = dir.0.join("both.yaml");
        std::fs::write(&path, format!("{config}{istio}")).expect("write config");
        let out = Command::new(bin)
            .args([
                "--mode",
                "validate",
                "--disable-hot-restart",
                "--log-format",
                "%v",
                "-c",
            ])
            .arg(&path)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let message =
        "Only one of ApplicationLogConfig.log_format or CLI option --log-format can be specified.";
    for (who, (ok, said)) in [
        ("envoy", both(&bin, &envoy_config)),
        ("ringway", both(binary(), &envoy_config)),
    ] {
        assert!(!ok && said.contains(message), "{who}: {said}");
    }
}

/// The Prometheus series (metric and labels, values left out) of the
/// stats both proxies have (Ringway has no per-worker listener stats), the
/// listener's port made alike.
fn series(body: &str, listener_port: u16) -> String {
    const ENDINGS: [&str; 8] = [
        "_upstream_rq",
        "_upstream_rq_total",
        "_membership_total",
        "_downstream_rq_total",
        "_downstream_rq_xx",
        "_downstream_cx_total",
        "server_live",
        "_active_clusters",
    ];
    let mut lines: Vec<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("admin") && !l.contains("external"))
        .filter(|l| !l.contains("worker"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .filter(|s| {
            let metric = s.split('{').next().unwrap_or_default();
            ENDINGS.iter().any(|e| metric.ends_with(e))
        })
        .map(|s| s.replace(&format!("_{listener_port}"), "_PORT"))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `/stats/prometheus` names metrics and labels as Envoy does with its
/// default tags, with Envoy Gateway's extra `stats_tags`, and with Istio's
/// own list (`use_all_default_tags: false`, look-ahead regexes) plus a
/// fixed tag.
#[test]
fn prometheus_tags_match_envoy() {
    let envoy_gateway = r#"stats_config:
  use_all_default_tags: true
  stats_tags:
  - { regex: '\.zone(\.(([^\.]+)\.))', tag_name: from_zone }
  - { regex: '^cluster(\..+\.(.+))\.total_match_count$', tag_name: socket_match_name }
  - { regex: 'circuit_breakers\.((.+?)\.).+', tag_name: priority }
"#;
    let istio = r#"stats_config:
  use_all_default_tags: false
  stats_tags:
  - { tag_name: cluster_name, regex: '^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)' }
  - { tag_name: http_conn_manager_prefix, regex: '^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*))\.)' }
  - { tag_name: response_code, regex: '_rq(_(\d{3}))$' }
  - { tag_name: response_code_class, regex: '_rq(_(\dxx))$' }
  - { tag_name: http_conn_manager_listener_prefix, regex: '^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)' }
  - { tag_name: listener_address, regex: '^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)' }
  - { tag_name: mesh, fixed_value: alpha }
"#;
    for (what, options) in [
        ("defaults", ""),
        ("Envoy Gateway", envoy_gateway),
        ("Istio", istio),
    ] {
        let (app, config) = app_config();
        let Some(pair) = Pair::start(
            "prometheus_tags_match_envoy",
            &format!("{config}{options}"),
            vec![app],
        ) else {
            return;
        };
        pair.assert_same(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        let (r, e) = pair.admin("/stats/prometheus");
        let (r, e) = (series(&r, pair.ringway.port), series(&e, pair.envoy.port));
        assert!(r.lines().count() >= 8, "{what}: {r}");
        assert_eq!(r, e, "{what}\n--- ringway\n{r}\n--- envoy\n{e}");
    }
}

/// The overload manager's `fixed_heap` monitor with Envoy Gateway's
/// actions: past the thresholds both proxies answer new requests 503
/// `envoy overloaded` and show the actions active; under them, nothing
/// changes.
#[test]
fn heap_overload_actions_match_envoy() {
    for (max_heap, overloaded) in [(1_048_576u64, true), (1u64 << 40, false)] {
        let (app, config) = app_config();
        let config = format!(
            "{config}overload_manager:
  refresh_interval: 0.1s
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
      max_heap_size_bytes: {max_heap}
  actions:
  - name: envoy.overload_actions.shrink_heap
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.95 }}
  - name: envoy.overload_actions.stop_accepting_requests
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.98 }}
"
        );
        let Some(pair) = Pair::start("heap_overload_actions_match_envoy", &config, vec![app])
        else {
            return;
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let answer = pair.assert_same(b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(answer.status, if overloaded { 503 } else { 200 });
        pair.assert_same_stats(&[
            "http.ingress_http.downstream_rq_overload_close",
            "overload.envoy.overload_actions.stop_accepting_requests.active",
            "overload.envoy.overload_actions.stop_accepting_requests.scale_percent",
            "overload.envoy.overload_actions.shrink_heap.active",
            "overload.envoy.resource_monitors.fixed_heap.failed_updates",
        ]);
    }
}
