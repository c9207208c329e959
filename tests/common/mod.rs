//! Black-box test support: the real `ringway` binary, real backends on
//! loopback, and a raw HTTP/1.1 client.
#![allow(dead_code)]

pub mod oracle;
pub mod proxy;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port for a process under test to bind: free when
/// checked, and below the kernel's ephemeral range (32768+), so that no
/// outgoing connection of a parallel test can take it in the meantime, as
/// a port the kernel picked from that range could be.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Each test binary starts at its own pseudo-random offset.
    let seed = (std::process::id() as usize).wrapping_mul(7919);
    for _ in 0..20_000 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst));
        let port = 12_000 + (n % 20_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 12000 and 32000");
}

/// The first header called `name` (case-insensitive).
pub fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A test upstream. Behaviour is chosen by the request path:
/// `/status/N`, `/delay/MS`, `/close-before`, `/close-mid`, `/chunked`,
/// `/big/BYTES`, `/echo` (echo the body), `/garbage`, `/until-close`;
/// anything else answers 200 with the backend's name.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_on("127.0.0.1:0", name)
    }

    pub fn start_on(bind: &str, name: &str) -> Backend {
        Self::serve(bind, name, None)
    }

    /// A backend that treats every request as if its path were `path`
    /// (e.g. `/status/503`, `/close-before`, `/delay/1000`).
    pub fn start_forced(name: &str, path: &'static str) -> Backend {
        Self::serve("127.0.0.1:0", name, Some(path))
    }

    fn serve(bind: &str, name: &str, forced: Option<&'static str>) -> Backend {
        let listener = TcpListener::bind(bind).expect("backend bind");
        let addr = listener.local_addr().expect("addr");
        Self::accepting(addr, name, forced, move || {
            listener.accept().map(|(s, _)| s)
        })
    }

    /// A backend on a Unix-domain socket at `path` (an Envoy `pipe`);
    /// its `addr` is unspecified.
    pub fn start_unix(path: &std::path::Path, name: &str) -> Backend {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("unix backend bind");
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Self::accepting(unspecified, name, None, move || {
            listener.accept().map(|(s, _)| s)
        })
    }

    /// Serves each connection `accept` returns on a thread of its own.
    fn accepting<S: BackendSocket>(
        addr: SocketAddr,
        name: &str,
        forced: Option<&'static str>,
        mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    ) -> Backend {
        let backend = Backend {
            addr,
            name: name.to_string(),
            connections: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let (conns, reqs, name) = (
            backend.connections.clone(),
            backend.requests.clone(),
            backend.name.clone(),
        );
        std::thread::spawn(move || loop {
            let Ok(stream) = accept() else { continue };
            stream.tune();
            conns.fetch_add(1, Ordering::SeqCst);
            let (reqs, name) = (reqs.clone(), name.clone());
            std::thread::spawn(move || {
                if let Ok(input) = stream.duplicate() {
                    let _ = serve_backend(input, stream, &reqs, &name, forced);
                }
            });
        });
        backend
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A connection a test backend serves.
trait BackendSocket: Read + Write + Send + Sized + 'static {
    /// Another handle on it (one reads, one writes).
    fn duplicate(&self) -> std::io::Result<Self>;
    /// Per-connection socket settings.
    fn tune(&self) {}
}

impl BackendSocket for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    // Head and body go out in separate writes: without this, Nagle holds
    // the body for the proxy's delayed ACK (40 ms).
    fn tune(&self) {
        let _ = self.set_nodelay(true);
    }
}

impl BackendSocket for std::os::unix::net::UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line)
}

/// Reads a chunked body, returning its bytes (or only counting them).
fn read_chunked(r: &mut impl BufRead, keep: bool) -> std::io::Result<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut total = 0;
    loop {
        let line = read_line(r)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            loop {
                if read_line(r)?.trim().is_empty() {
                    return Ok((body, total));
                }
            }
        }
        let mut chunk = vec![0; size];
        r.read_exact(&mut chunk)?;
        total += size;
        if keep {
            body.extend_from_slice(&chunk);
        }
        read_line(r)?;
    }
}

fn serve_backend<W: Write>(
    input: impl Read,
    mut out: W,
    reqs: &Mutex<Vec<Seen>>,
    name: &str,
    forced: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(input);
    loop {
        let request_line = read_line(&mut reader)?;
        if request_line.is_empty() {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap_or((line, ""));
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let echo = path == "/echo";
        let body = if get("transfer-encoding").is_some() {
            read_chunked(&mut reader, echo)?
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let mut total = 0;
            let mut kept = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            while total < len {
                let n = reader.read(&mut buf[..(len - total).min(64 * 1024)])?;
                if n == 0 {
                    return Ok(());
                }
                if echo {
                    kept.extend_from_slice(&buf[..n]);
                }
                total += n;
            }
            (kept, total)
        } else {
            (Vec::new(), 0)
        };
        reqs.lock().expect("lock").push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body_len: body.1,
        });
        let behaviour = forced.unwrap_or(&path);
        let segments: Vec<&str> = behaviour.trim_start_matches('/').split('/').collect();
        let is_head = method == "HEAD";
        let respond = |out: &mut W, status: u16, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-backend: {name}\r\nserver: test-backend\r\n\r\n",
                body.len()
            );
            out.write_all(head.as_bytes())?;
            if is_head {
                return Ok(());
            }
            out.write_all(body)
        };
        match segments.as_slice() {
            ["status", code] => respond(&mut out, code.parse().unwrap_or(500), b"status")?,
            // An HTTP authorization service (ext_authz's `path_prefix:
            // /authz`): the request's first path segment is the verdict.
            ["authz", verdict, ..] => {
                let (status, headers, body): (u16, &str, &str) = match *verdict {
                    "allow" => (
                        200,
                        "x-auth-user: alice\r\nx-append: two\r\nx-envoy-auth-headers-to-remove: x-remove-me, x-gone\r\nx-other: o\r\nx-resp: r\r\n",
                        "ok body",
                    ),
                    "deny" => (
                        401,
                        "www-authenticate: Bearer\r\nx-deny-reason: nope\r\ncontent-type: application/json\r\nx-resp: r\r\n",
                        "{\"denied\":true}",
                    ),
                    "redirect" => (302, "location: http://login.example/\r\n", ""),
                    "slow" => {
                        std::thread::sleep(Duration::from_millis(1000));
                        (200, "", "")
                    }
                    "close" => return Ok(()),
                    _ => (503, "", "unavailable"),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{headers}\r\n",
                    body.len()
                );
                out.write_all(head.as_bytes())?;
                out.write_all(body.as_bytes())?;
            }
            ["delay", ms] => {
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                respond(&mut out, 200, b"delayed")?;
            }
            ["close-before"] => return Ok(()),
            ["close-mid"] => {
                out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")?;
                return Ok(());
            }
            ["garbage"] => {
                out.write_all(b"NOT HTTP AT ALL\r\n\r\n")?;
                return Ok(());
            }
            ["until-close"] => {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it until close",
                )?;
                return Ok(());
            }
            ["chunked"] => {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                )?;
            }
            ["big", bytes] => {
                let total: usize = bytes.parse().unwrap_or(0);
                out.write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n").as_bytes(),
                )?;
                let block = vec![b'x'; 256 * 1024];
                let mut left = if is_head { 0 } else { total };
                while left > 0 {
                    let n = left.min(block.len());
                    out.write_all(&block[..n])?;
                    left -= n;
                }
            }
            ["echo"] => respond(&mut out, 200, &body.0)?,
            _ => {
                let text = format!("{name} {path}");
                respond(&mut out, 200, text.as_bytes())?;
            }
        }
        if get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

/// A parsed response from the proxy.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A test peer process (tests/peers) that prints the port it listens on
/// as its first line; killed when dropped.
pub struct PortPeer(Child, pub u16);

impl PortPeer {
    /// Runs `command` (e.g. `["python3", "tests/peers/ws_echo.py"]`) and
    /// reads its port.
    pub fn start(command: &[&str]) -> PortPeer {
        let mut child = Command::new(command[0])
            .args(&command[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{command:?} printed {line:?}, not a port"));
        PortPeer(child, port)
    }
}

impl Drop for PortPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `tool` runs here (`probe` is its version flag); when it does
/// not, says loudly that `test` is skipped, and fails under CI (which
/// installs every peer the tests use).
pub fn tool_or_skip(test: &str, tool: &[&str]) -> bool {
    let found = Command::new(tool[0])
        .args(&tool[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {tool:?} is not available and CI needs it"
        );
        eprintln!("SKIPPED {test}: {tool:?} is not available");
    }
    found
}

/// One HTTP/2 request with curl (prior knowledge) to `port`, for
/// authority `test.local`: `args` are curl's, with the URL's path
/// (starting with `/`) last.
pub fn curl_h2(port: u16, args: &[&str]) -> std::io::Result<Response> {
    let (path, options) = args.split_last().expect("a path");
    // The authority is the same whichever proxy answers.
    let out = Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge", "--max-time", "10"])
        .arg("--connect-to")
        .arg(format!("test.local:80:127.0.0.1:{port}"))
        .args(options)
        .arg(format!("http://test.local{path}"))
        .output()?;
    parse_curl_output(&out.stdout)
}

/// Splits curl's `-i` output into the final response's status, headers
/// and body (interim `100` heads are skipped).
fn parse_curl_output(out: &[u8]) -> std::io::Result<Response> {
    let mut rest = out;
    loop {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no response head"))?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let body = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        return Ok(Response {
            status,
            headers,
            body: body.to_vec(),
        });
    }
}

/// A keep-alive client connection to the proxy.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    /// How long a read may wait before it fails.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.writer
            .set_read_timeout(Some(timeout))
            .expect("timeout");
    }

    pub fn reader_mut(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).expect("write request");
    }

    /// Sends `raw`, reporting failure (the proxy closed) instead of panicking.
    pub fn try_send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(raw)
    }

    /// Reads one response; `head_request` when the request was HEAD.
    pub fn read_response(&mut self, head_request: bool) -> std::io::Result<Response> {
        loop {
            let status_line = read_line(&mut self.reader)?;
            if status_line.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            let status: u16 = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = read_line(&mut self.reader)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (n, v) = line.split_once(':').unwrap_or((line, ""));
                headers.push((n.to_string(), v.trim().to_string()));
            }
            if status == 100 {
                continue;
            }
            let get = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let body = if head_request || status == 204 || status == 304 {
                Vec::new()
            } else if get("transfer-encoding").is_some() {
                read_chunked(&mut self.reader, true)?.0
            } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                let mut body = vec![0; len];
                self.reader.read_exact(&mut body)?;
                body
            } else {
                let mut body = Vec::new();
                self.reader.read_to_end(&mut body)?;
                body
            };
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
    }

    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes());
        self.read_response(false).expect("response")
    }

    /// Whether the proxy closed the connection (EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// One request on a new connection.
pub fn get(port: u16, host: &str, path: &str) -> Response {
    Client::connect(port).get(host, path)
}

/// A running `ringway` process, killed when dropped.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, log: &PathBuf) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "ringway exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("ringway did not listen on {port}");
}

/// The TCP port that shows a process with `config` is serving: its
/// listener's `port`, or, when that listener is UDP (nothing to connect
/// to), the admin port of the config's `admin` block.
pub fn ready_port(config: &str, port: u16) -> u16 {
    if !config.contains("protocol: UDP") {
        return port;
    }
    config
        .split("admin:")
        .nth(1)
        .and_then(|admin| admin.split("port_value:").nth(1))
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|digits| digits.parse().ok())
        .expect("a UDP listener's config needs an admin block to wait on")
}

impl Proxy {
    /// Starts ringway on a config whose `{port}` placeholder is the listener port.
    pub fn start(config: &str, args: &[&str]) -> Proxy {
        Self::start_with(config, args, |cmd| cmd)
    }

    /// Like `start`, letting the caller wrap the command (e.g. in `unshare`).
    pub fn start_with(
        config: &str,
        args: &[&str],
        wrap: impl FnOnce(Vec<String>) -> Vec<String>,
    ) -> Proxy {
        let dir = TempDir::new();
        let port = free_port();
        let path = dir.0.join("envoy.yaml");
        std::fs::write(&path, config.replace("{port}", &port.to_string())).expect("write config");
        let log = dir.0.join("ringway.log");
        let mut argv = vec![
            binary().to_string(),
            "-c".to_string(),
            path.display().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv = wrap(argv);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ringway");
        let text = config.replace("{port}", &port.to_string());
        wait_for_port(ready_port(&text, port), &mut child, &log);
        Proxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Resident memory of the proxy in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits for exit and returns the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proxy {
    /// Stops the proxy; a test that failed also shows whether the proxy
    /// was still running and what it logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.child.try_wait();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("ringway (exited: {status:?}) logged:\n{log}");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener with one HTTP connection manager, routes given as YAML.
pub fn http_config(routes_yaml: &str, clusters_yaml: &str) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: test
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{port}} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
{routes_yaml}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters_yaml}
"#
    )
}

/// A bootstrap's text with HTTP filters added.
pub trait WithHttpFilter {
    /// The config (one connection manager, as [`http_config`] or
    /// [`direct_response_filter`] make) with `filter`, an `http_filters`
    /// item (ten-space indent), placed before the router.
    fn with_http_filter(&self, filter: &str) -> String;
}

impl WithHttpFilter for str {
    fn with_http_filter(&self, filter: &str) -> String {
        self.replacen(
            "          http_filters:\n",
            &format!("          http_filters:\n{filter}"),
            1,
        )
    }
}

/// A STATIC cluster over the given backends with weights.
pub fn static_cluster(name: &str, backends: &[(&Backend, u32)], extra: &str) -> String {
    let mut eps = String::new();
    for (b, w) in backends {
        eps.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n          load_balancing_weight: {w}\n",
            b.port()
        ));
    }
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}"
    )
}

/// A single catch-all virtual host routing `/` to `cluster`.
/// One `filters:` item (six-space indent): a connection manager with
/// `stat_prefix` answering every request with `200` and `body`.
pub fn direct_response_filter(stat_prefix: &str, body: &str) -> String {
    format!(
        r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat_prefix}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "{body}" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// `filter` (a connection manager item, as [`direct_response_filter`]
/// makes) logging each request to the file `path` in `format` (a YAML
/// double-quoted string's contents).
pub fn with_file_log(filter: &str, path: &str, format: &str) -> String {
    filter.replacen(
        "          route_config:\n",
        &format!("          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {path}\n              log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}\n          route_config:\n"),
        1,
    )
}

pub fn catch_all(cluster: &str, route_extra: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {cluster}{route_extra} }}\n"
    )
}

/// One request to an admin API; returns status and body.
pub fn admin_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut c = Client::connect(port);
    c.set_timeout(Duration::from_secs(10));
    c.send(
        format!("{method} {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    let r = c.read_response(method == "HEAD").expect("admin response");
    (r.status, r.text())
}

/// The bootstrap's `admin` block on `port`, to prepend to a config.
pub fn admin_block(port: u16) -> String {
    format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}\n"
    )
}

/// GETs an admin path until `done` holds for its body (at most 5 s), and
/// returns the last body for the caller's assertions. A response reaches
/// the client a moment before the proxy has counted it, so a test that
/// reads stats right after its last response waits for them to settle.
pub fn admin_until(port: u16, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = admin_request(port, "GET", path);
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `config` with its connection manager trusting loopback clients as
/// internal (`use_remote_address` and an `internal_address_config` of
/// 127.0.0.1/32): only internal clients may send the `x-envoy-*` control
/// headers (retry-on, timeouts), as in Envoy 1.40.
pub fn internal_loopback(config: &str) -> String {
    config.replace(
        "          stat_prefix: ingress_http\n",
        "          stat_prefix: ingress_http\n          use_remote_address: true\n          internal_address_config: { cidr_ranges: [ { address_prefix: 127.0.0.1, prefix_len: 32 } ] }\n",
    )
}

/// An upstream that reads each request head and answers with whatever
/// `answer` makes of it, raw, then leaves the connection to `answer`'s
/// caller to drop (one exchange per connection). Returns its port.
pub fn raw_upstream(answer: fn(&str, &mut TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                answer(&String::from_utf8_lossy(&head), &mut s);
            });
        }
    });
    port
}

/// A STATIC cluster `name` with one endpoint on 127.0.0.1:`port`.
pub fn port_cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
    )
}

/// The text of the log file at `path` once it has `lines` lines (access
/// logs reach the disk on a flush interval), or what it has after 5 s.
pub fn log_lines(path: &std::path::Path, lines: usize) -> String {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(path).unwrap_or_default()
}
