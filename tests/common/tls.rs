//! TLS test material and clients nobody here wrote: certificates made by
//! the `openssl` CLI, handshakes by `openssl s_client`, requests by curl.

use super::{Response, TempDir};
use std::process::{Command, Stdio};

/// A CA, server certificates for `a.example.com` and `b.example.com`, a
/// client certificate with a SPIFFE ID, and one from a CA nobody trusts.
pub struct Certs {
    dir: TempDir,
    /// The wall-clock second (since the epoch) the last one was issued in.
    issued_by: u64,
}

impl Certs {
    /// Generates everything (P-256 keys, valid 30 days).
    pub fn generate() -> Certs {
        let dir = TempDir::new();
        let certs = Certs { dir, issued_by: 0 };
        certs.ca("ca");
        certs.ca("rogue");
        certs.leaf(
            "ca",
            "a",
            "DNS:a.example.com,URI:spiffe://cluster.local/ns/default/sa/a",
        );
        certs.leaf("ca", "b", "DNS:b.example.com,DNS:*.wild.example.com");
        certs.leaf(
            "ca",
            "client",
            "URI:spiffe://cluster.local/ns/default/sa/client",
        );
        certs.leaf(
            "rogue",
            "stranger",
            "URI:spiffe://cluster.local/ns/default/sa/client",
        );
        Certs {
            issued_by: unix_secs(),
            ..certs
        }
    }

    /// Waits until the wall clock has left the second the certificates were
    /// issued in. Envoy samples `server.days_until_first_cert_expiring` when
    /// it starts; a sample taken in the issuing second reads 30 days, any
    /// later one 29, so a comparison must not race the second boundary.
    pub fn wait_past_issue_second(&self) {
        while unix_secs() <= self.issued_by {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The path of `name` (`a.crt`, `a.key`, `ca.crt`, …).
    pub fn path(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }

    /// A revocation list from the test CA revoking the certificates of
    /// `revoked` (none: an empty list); its path.
    pub fn crl(&self, revoked: &[&str]) -> String {
        let tag = if revoked.is_empty() {
            "none".to_string()
        } else {
            revoked.join("-")
        };
        let db = self.dir.0.join(format!("crl-{tag}"));
        std::fs::create_dir_all(&db).expect("crl dir");
        std::fs::write(db.join("index.txt"), "").expect("index");
        std::fs::write(db.join("crlnumber"), "01\n").expect("crlnumber");
        let conf = db.join("ca.cnf");
        std::fs::write(
            &conf,
            format!(
                "[ca]\ndefault_ca = test\n[test]\ndatabase = {db}/index.txt\ncrlnumber = {db}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n",
                db = db.display()
            ),
        )
        .expect("ca.cnf");
        let conf = conf.display().to_string();
        let base = ["-config", &conf, "-keyfile", "ca.key", "-cert", "ca.crt"];
        for name in revoked {
            let cert = format!("{name}.crt");
            self.openssl(&[&["ca"][..], &base, &["-revoke", &cert]].concat());
        }
        let out = format!("{tag}.crl");
        self.openssl(&[&["ca"][..], &base, &["-gencrl", "-out", &out]].concat());
        self.path(&out)
    }

    /// The SHA-256 digests Envoy's validation context pins: of `name`'s
    /// whole certificate (hex) and of its public key info (base64).
    pub fn digests(&self, name: &str) -> (String, String) {
        let run = |script: String| {
            let out = Command::new("sh")
                .args(["-c", &script])
                .current_dir(&self.dir.0)
                .output()
                .expect("run openssl");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let hash = run(format!(
            "openssl x509 -in {name}.crt -outform der | openssl dgst -sha256 -r | cut -d' ' -f1"
        ));
        let spki = run(format!(
            "openssl x509 -in {name}.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
        ));
        (hash, spki)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir.0)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={name} CA"),
        );
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "30",
            "-subj",
            &subject,
        ]);
    }

    fn leaf(&self, ca: &str, name: &str, sans: &str) {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN={name}");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        let ext = self.dir.0.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName={sans}\n")).expect("write ext");
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        // A serial of its own per name, its top bit set: the DER integer
        // then carries a zero byte first, which /certs must not show.
        let serial: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        let serial = format!("0x80{serial}");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-out",
            &crt,
            "-days",
            "30",
            "-extfile",
            &ext.display().to_string(),
        ]);
    }

    /// A `DownstreamTlsContext` transport socket serving `names`'
    /// certificates (first one first), with `extra` YAML lines (indented
    /// for `typed_config`) after `common_tls_context`.
    pub fn server_socket(&self, names: &[&str], common_extra: &str, extra: &str) -> String {
        let certs: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}",
                    self.path(&format!("{n}.crt")),
                    self.path(&format!("{n}.key"))
                )
            })
            .collect();
        format!(
            "      transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n{extra}          common_tls_context:\n            tls_certificates: [{}]\n{common_extra}",
            certs.join(", ")
        )
    }
}

/// What `openssl s_client` saw of one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The server certificate's subject CN, when a handshake completed.
    pub subject: Option<String>,
    /// The ALPN protocol negotiated.
    pub alpn: Option<String>,
    /// The protocol version (`TLSv1.3`).
    pub version: Option<String>,
    /// The HTTP response the server answered `send` with, if any.
    pub answer: String,
    /// The session was resumed rather than new.
    pub resumed: bool,
}

/// One handshake to `port` with `openssl s_client`: `sni`, `alpn`, and
/// more s_client arguments; `send` is written once the session is up and
/// the answer read until the server closes (so `send` should ask it to).
pub fn s_client(port: u16, sni: Option<&str>, extra: &[&str], send: &str) -> Handshake {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(extra);
    // With something to send, the answer is read until the server closes.
    if !send.is_empty() {
        cmd.arg("-ign_eof");
    }
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    // Written once the handshake is over: s_client sends nothing read
    // before it.
    let mut stdin = child.stdin.take().expect("stdin");
    let send = send.to_string();
    std::thread::spawn(move || {
        use std::io::Write;
        if !send.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = stdin.write_all(send.as_bytes());
        }
    });
    let out = wait_with_timeout(child);
    let text = String::from_utf8_lossy(&out).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    let subject = field("subject=").map(|s| s.trim_start_matches("CN = ").to_string());
    // The server's answer: an HTTP response, from its status line on.
    let answer = text
        .find("HTTP/1.")
        .map_or(String::new(), |at| text[at..].to_string());
    Handshake {
        subject: subject
            .filter(|_| text.contains("Cipher is") && !text.contains("Cipher is (NONE)")),
        alpn: field("ALPN protocol:"),
        version: field("Protocol  :").or_else(|| {
            text.lines()
                .find(|l| l.starts_with("New, TLSv"))
                .and_then(|l| l.split(',').nth(1))
                .map(|v| v.trim().to_string())
        }),
        answer,
        resumed: text.contains("Reused, TLS"),
    }
}

/// The child's stdout, killing it after 10 s.
fn wait_with_timeout(mut child: std::process::Child) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if child.try_wait().ok().flatten().is_some() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
        .wait_with_output()
        .map(|o| o.stdout)
        .unwrap_or_default()
}

/// One HTTPS request with curl to `port` as `host`: status 0 when no
/// response came (a failed handshake); `args` are curl's, the URL's path
/// last.
pub fn curl_https(port: u16, host: &str, args: &[&str]) -> (Response, String) {
    let (path, options) = args.split_last().expect("a path");
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "-w", "\n%{http_version}"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(options)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl");
    let mut stdout = out.stdout;
    let version = match stdout.iter().rposition(|&b| b == b'\n') {
        Some(at) => {
            let v = String::from_utf8_lossy(&stdout[at + 1..]).into_owned();
            stdout.truncate(at);
            v
        }
        None => String::new(),
    };
    let response = super::parse_curl_output(&stdout).unwrap_or(Response {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
    });
    (response, version)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A child process killed and reaped when dropped.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server -www` with `name`'s certificate on a fresh port,
/// requiring a client certificate from the test CA when `mutual`.
pub fn s_server(certs: &Certs, name: &str, mutual: bool) -> (Reaped, u16) {
    let port = super::free_port();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_server", "-accept", &port.to_string(), "-www", "-cert"])
        .arg(certs.path(&format!("{name}.crt")))
        .arg("-key")
        .arg(certs.path(&format!("{name}.key")));
    if mutual {
        cmd.args(["-Verify", "1", "-CAfile"])
            .arg(certs.path("ca.crt"));
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start s_server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (Reaped(child), port)
}

/// nginx serving HTTPS on a fresh port with `name`'s certificate,
/// answering every request with the server name the client sent
/// (`sni=<name>`, empty without SNI) and the protocol it spoke (header
/// `x-upstream-protocol`) over keep-alive connections; with `http2`, it
/// offers HTTP/2 by ALPN.
pub struct NginxTls {
    _process: Reaped,
    _dir: super::TempDir,
    pub port: u16,
}

impl NginxTls {
    pub fn start(certs: &Certs, name: &str, http2: bool) -> NginxTls {
        let dir = super::TempDir::new();
        let port = super::free_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n  fastcgi_temp_path {dir};\n  uwsgi_temp_path {dir};\n  scgi_temp_path {dir};\n  server {{\n    listen 127.0.0.1:{port} ssl{h2};\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    keepalive_requests 10000;\n    add_header x-upstream-protocol $server_protocol;\n    location / {{ return 200 \"sni=$ssl_server_name\"; }}\n  }}\n}}\n",
            dir = dir.0.display(),
            cert = certs.path(&format!("{name}.crt")),
            key = certs.path(&format!("{name}.key")),
            h2 = if http2 { " http2" } else { "" },
        );
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        NginxTls {
            _process: Reaped(child),
            _dir: dir,
            port,
        }
    }
}
