//! Starting Envoy or Ringway on a bootstrap for the differential xDS tests,
//! and what a client gets from them.

use super::{wait_for_port, Client};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Which proxy runs a scenario.
pub enum Which {
    Envoy(String),
    /// Two shards.
    Ringway,
    /// One shard, like the Envoy runs (one upstream pool: upstream
    /// connection counts are then comparable).
    RingwayOneShard,
}

/// A proxy process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub admin: u16,
    pub log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `which` on the bootstrap at `boot` and waits for its admin port.
pub fn launch(which: &Which, boot: &Path, admin: u16, dir: &Path) -> Running {
    launch_with(which, boot, admin, dir, &[])
}

/// As [`launch`], with more arguments for either proxy.
pub fn launch_with(which: &Which, boot: &Path, admin: u16, dir: &Path, args: &[&str]) -> Running {
    let log = dir.join("proxy.log");
    let mut command = match which {
        Which::Envoy(bin) => {
            let mut c = Command::new(bin);
            let base_id = std::process::id() % 10_000 * 100 + 77;
            c.args([
                "--concurrency",
                "1",
                "-l",
                "warning",
                "--disable-hot-restart",
            ])
            .args(["--base-id", &base_id.to_string()]);
            c
        }
        Which::Ringway | Which::RingwayOneShard => {
            let shards = if matches!(which, Which::Ringway) {
                "2"
            } else {
                "1"
            };
            let mut c = Command::new(super::binary());
            c.args(["--concurrency", shards]);
            c
        }
    };
    let mut child = command
        .args(args)
        .arg("-c")
        .arg(boot)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn proxy");
    wait_for_port(admin, &mut child, &log);
    Running { child, admin, log }
}

/// What a client gets for `path` on a new connection to `port`.
pub fn answer(port: u16, path: &str) -> String {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return "refused".to_string();
    };
    let mut client = Client::from_stream(stream);
    client.set_timeout(Duration::from_secs(5));
    client.send(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes());
    match client.read_response(false) {
        Ok(r) => format!("{} {}", r.status, r.text()),
        Err(_) => "closed".to_string(),
    }
}
