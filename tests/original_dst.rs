//! The `original_dst` listener filter, against Envoy 1.40: connections
//! redirected by iptables (`REDIRECT`, as Istio's sidecar does) to the
//! proxy's port keep the destination they were addressed to, for
//! filter-chain matching and `%DOWNSTREAM_LOCAL_ADDRESS%`. Everything runs
//! in a private network namespace, so the host's NAT table is untouched.

mod common;
use common::oracle::envoy_or_skip;
use common::*;
use std::process::Command;

/// A listener on `port` with the original_dst filter: a chain for
/// connections that were going to port 8080, and a default chain.
fn config(port: u16, admin: u16, log: &str) -> String {
    let chain = |body: &str| {
        let format = format!(r"{body} %DOWNSTREAM_LOCAL_ADDRESS%\n");
        let filter = with_file_log(&direct_response_filter(body, body), log, &format);
        format!("      filters:\n{filter}")
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: outbound
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }}
    filter_chains:
    - filter_chain_match: {{ destination_port: 8080 }}
{}    default_filter_chain:
{}"#,
        chain("to-8080"),
        chain("elsewhere"),
    )
}

/// Runs `script` in a new network namespace (loopback up); its stdout.
fn in_namespace(script: &str) -> Option<String> {
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c"])
        .arg(format!("set -e\nip link set lo up\n{script}"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "namespace script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn redirected_connections_keep_their_destination_as_in_envoy() {
    if !tool_or_skip("original_dst", &["iptables", "--version"])
        || !tool_or_skip("original_dst", &["unshare", "--version"])
    {
        return;
    }
    let Some(envoy) = envoy_or_skip("original_dst") else {
        return;
    };
    assert!(
        in_namespace("iptables -t nat -L OUTPUT >/dev/null").is_some(),
        "this test needs root for unshare -n and iptables (CI runs as root)"
    );
    let dir = TempDir::new();
    let file = |name: &str, text: String| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    // A private namespace: its ports are all free.
    let (ringway_log, envoy_log) = (dir.0.join("ringway.log"), dir.0.join("envoy.log"));
    let ringway_config = file(
        "ringway.yaml",
        config(15001, 15101, &ringway_log.display().to_string()),
    );
    let envoy_config = file(
        "envoy.yaml",
        config(15002, 15102, &envoy_log.display().to_string()),
    );
    // Each proxy in turn gets the traffic for 127.0.0.1:8080 and :9090.
    let script = format!(
        r#"{ringway} -c {ringway_config} --concurrency 1 -l error &
{envoy} -c {envoy_config} --base-id 0 --disable-hot-restart -l error >/dev/null 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for port in 15001 15002; do
  for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.1; done
done
for proxy in 15001 15002; do
  iptables -t nat -F OUTPUT
  for dport in 8080 9090; do
    iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport $dport -j REDIRECT --to-ports $proxy
  done
  echo "$proxy: $(curl -s 127.0.0.1:8080/) $(curl -s 127.0.0.1:9090/) $(curl -s 127.0.0.1:$proxy/)"
done
"#,
        ringway = env!("CARGO_BIN_EXE_ringway"),
    );
    let Some(out) = in_namespace(&script) else {
        panic!("the namespace script failed");
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "15001: to-8080 elsewhere elsewhere",
            "15002: to-8080 elsewhere elsewhere"
        ],
        "{out}"
    );
    // What each logged, its own port aside.
    let logged = |path: &std::path::Path, port: &str| log_lines(path, 4).replace(port, "PROXY");
    let ringway = logged(&ringway_log, "15001");
    let envoy = logged(&envoy_log, "15002");
    assert_eq!(ringway, envoy, "access logs");
    assert!(
        ringway.contains("to-8080 127.0.0.1:8080\nelsewhere 127.0.0.1:9090\n"),
        "{ringway}"
    );
}
