//! Upgrading in place with `--restart-epoch`: the new process takes the
//! listening sockets (and the admin API's) from the running one, which
//! drains and exits; under load from wrk (which reconnects when a server
//! closes) no request fails and no connection is refused across three
//! consecutive upgrades, and the counters carry over.

mod common;

use common::{admin_request, binary, free_port, tool_or_skip, TempDir};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A direct-response listener on `port` and the admin API on `admin`.
fn config(port: u16, admin: u16) -> String {
    format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: web
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: ok}}}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
    )
}

/// Starts restart epoch `epoch` on the config at `path`.
fn epoch(path: &Path, dir: &Path, base_id: u64, epoch: u64) -> Child {
    let log = std::fs::File::create(dir.join(format!("epoch{epoch}.log"))).expect("log");
    Command::new(binary())
        .arg("-c")
        .arg(path)
        .args(["--concurrency", "2", "--drain-time-s", "2"])
        .args(["--base-id", &base_id.to_string()])
        .args(["--restart-epoch", &epoch.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ringway")
}

/// Waits for `child` to exit; its exit code.
fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The value of counter `name` in the admin API's `/stats`.
fn counter(admin: u16, name: &str) -> u64 {
    let (_, body) = admin_request(admin, "GET", "/stats");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn three_upgrades_under_load_fail_no_request() {
    // wrk has no version flag that exits 0.
    if !tool_or_skip("hot restart", &["sh", "-c", "command -v wrk"]) {
        return;
    }
    let dir = TempDir::new();
    let (port, admin) = (free_port(), free_port());
    let path = dir.0.join("ringway.yaml");
    std::fs::write(&path, config(port, admin)).expect("write config");
    let base_id = u64::from(std::process::id());
    let mut running = epoch(&path, &dir.0, base_id, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "epoch 0 did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let wrk = Command::new("wrk")
        .args(["-t1", "-c16", "-d8s", &format!("http://127.0.0.1:{port}/")])
        .output();
    let load = std::thread::spawn(move || wrk);
    for next in 1..=3 {
        std::thread::sleep(Duration::from_millis(1500));
        let child = epoch(&path, &dir.0, base_id, next);
        // The one it replaced drains and exits on its own, cleanly.
        assert_eq!(exit_code(&mut running, Duration::from_secs(10)), Some(0));
        running = child;
    }
    let out = load.join().expect("wrk thread").expect("wrk runs");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 1000, "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    // The last epoch serves, and holds every epoch's count (the parents
    // handed theirs over as they exited).
    let served = counter(admin, "http.web.downstream_rq_total");
    assert!(served >= requests, "{served} < {requests}\n{report}");
    for e in 1..=3 {
        let log = std::fs::read_to_string(dir.0.join(format!("epoch{e}.log"))).unwrap_or_default();
        assert!(!log.contains("binding the sockets afresh"), "{log}");
    }
    let _ = running.kill();
    let _ = running.wait();
}

#[test]
fn an_epoch_with_no_parent_binds_its_own_sockets() {
    let dir = TempDir::new();
    let (port, admin) = (free_port(), free_port());
    let path = dir.0.join("ringway.yaml");
    std::fs::write(&path, config(port, admin)).expect("write config");
    let base_id = u64::from(std::process::id()) + 1_000_000;
    let mut child = epoch(&path, &dir.0, base_id, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(dir.0.join("epoch1.log")).unwrap_or_default();
    assert!(log.contains("binding the sockets afresh"), "{log}");
    let _ = child.kill();
    let _ = child.wait();
}
