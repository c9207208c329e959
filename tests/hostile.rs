//! The HTTP/1.1 edge under hostile traffic: slow heads, rejected requests
//! whose bytes are still arriving, and clients that misbehave.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn direct_config(hcm_extra: &str) -> String {
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
"#;
    http_config(routes, "    []\n").replace(
        "          stat_prefix: ingress_http\n",
        &format!("          stat_prefix: ingress_http\n{hcm_extra}"),
    )
}

/// Sends `raw` whole (ignoring a reset while sending) and reads until EOF.
fn send_and_read(port: u16, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn request_headers_timeout_matches_envoy() {
    let config = with_admin(&direct_config("          request_headers_timeout: 0.5s\n"));
    let Some(pair) = Pair::start("request_headers_timeout_matches_envoy", &config, vec![]) else {
        return;
    };
    // A head that never completes, though bytes keep coming.
    let slow_head = |port: u16| {
        let mut c = Client::connect(port);
        c.send(b"GET / HTTP/1.1\r\nhost: a\r\n");
        std::thread::sleep(Duration::from_millis(200));
        c.send(b"x-a: 1\r\n");
        let started = Instant::now();
        let r = c.read_response(false).expect("a 408");
        (
            r.status,
            r.text(),
            r.header("connection").map(str::to_owned),
            started.elapsed(),
        )
    };
    let (ringway, envoy) = (slow_head(pair.ringway.port), slow_head(pair.envoy.port));
    assert_eq!(ringway.0, 408);
    assert_eq!(
        (&ringway.0, &ringway.1, &ringway.2),
        (&envoy.0, &envoy.1, &envoy.2)
    );
    assert!(ringway.3 < Duration::from_millis(600), "{:?}", ringway.3);
    let stat = "http.ingress_http.downstream_rq_header_timeout";
    let (r, e) = pair.admin(&format!("/stats?filter={stat}"));
    assert_eq!(r.trim(), format!("{stat}: 1"));
    assert_eq!(r, e);
}

/// With no `request_headers_timeout`, Ringway cuts a slowloris head at
/// 10 s (Envoy's edge best-practice value) where Envoy's default waits
/// for the 5 min stream idle timeout.
#[test]
fn slowloris_is_cut_by_the_default_header_timeout() {
    let proxy = Proxy::start(&direct_config(""), &["--concurrency", "1"]);
    let mut c = Client::connect(proxy.port);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\n");
    let mut answered = None;
    for _ in 0..14 {
        std::thread::sleep(Duration::from_secs(1));
        if c.try_send(b"x-drip: 1\r\n").is_err() {
            break;
        }
        if started.elapsed() > Duration::from_secs(11) {
            break;
        }
    }
    if let Ok(r) = c.read_response(false) {
        answered = Some((r.status, r.text()));
    }
    let took = started.elapsed();
    assert_eq!(answered, Some((408, "request header timeout".to_string())));
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(13),
        "{took:?}"
    );
}

/// Each kind of rejected request gets its status every time, even while
/// the client is still sending: the proxy drains before it closes
/// (`delayed_close_timeout`), so no reset destroys the reply.
#[test]
fn rejected_requests_always_get_their_reply() {
    let proxy = Proxy::start(&direct_config(""), &["--concurrency", "1"]);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let kinds: Vec<(Vec<u8>, u16)> = vec![
        (huge_header.into_bytes(), 431),
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /#frag HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nhost: a?b\r\n\r\n".to_vec(), 400),
        (
            b"GET / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        (b"GET / HTTP/1.0\r\nhost: a\r\n\r\n".to_vec(), 426),
    ];
    for (raw, status) in &kinds {
        // Unread bytes after the rejected head: what triggers a reset.
        let mut raw = raw.clone();
        raw.extend(std::iter::repeat_n(b'z', 256 * 1024));
        for i in 0..50 {
            let out = send_and_read(proxy.port, &raw)
                .unwrap_or_else(|e| panic!("attempt {i} for {status}: {e}"));
            let head = String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
            assert_eq!(head, format!("HTTP/1.1 {status}"), "attempt {i}");
        }
    }
}

/// `delayed_close_timeout: 0s` closes at once, as Envoy does.
#[test]
fn delayed_close_can_be_disabled() {
    let proxy = Proxy::start(
        &direct_config("          delayed_close_timeout: 0s\n"),
        &["--concurrency", "1"],
    );
    let mut c = Client::connect(proxy.port);
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    assert_eq!(c.read_response(false).expect("reply").status, 200);
    assert!(c.is_closed());
}

/// An idle keep-alive connection holds no read buffer: 900 of them (under
/// the common 1,024-descriptor limit) cost a few KiB each, not the 140 KiB
/// that two 64 KiB buffers per connection once did.
#[test]
fn idle_connections_hold_no_buffers() {
    let backend = Backend::start("b");
    let config = http_config(
        &catch_all("b", ""),
        &static_cluster("b", &[(&backend, 1)], ""),
    );
    let proxy = Proxy::start(&config, &["--concurrency", "1"]);
    // Warm up pools and the allocator before the baseline.
    for _ in 0..20 {
        get(proxy.port, "a", "/");
    }
    let before = proxy.rss_kib();
    let count = 900;
    let clients: Vec<Client> = (0..count)
        .map(|_| {
            let mut c = Client::connect(proxy.port);
            assert_eq!(c.get("a", "/").status, 200);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let per_connection = proxy.rss_kib().saturating_sub(before) / count;
    assert!(
        per_connection < 16,
        "{per_connection} KiB per idle connection"
    );
    drop(clients);
}

/// An upstream that answers before the request body is all there (a 413
/// for an upload it will not take) and then stops reading: the client gets
/// that answer, not a 503, and its connection ends after it.
#[test]
fn early_upstream_response_reaches_the_client_mid_upload() {
    let upstream_port = raw_upstream(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!",
        );
        // Closing with the body unread: the kernel resets.
        std::thread::sleep(Duration::from_millis(100));
    });
    let cluster = port_cluster("up", upstream_port);
    let proxy = Proxy::start(
        &http_config(&catch_all("up", ""), &cluster),
        &["--concurrency", "1"],
    );
    for _ in 0..3 {
        let size = 64 * 1024 * 1024;
        let s = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut writer = s.try_clone().expect("clone");
        let uploader = std::thread::spawn(move || {
            let head =
                format!("POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: {size}\r\n\r\n");
            let _ = writer.write_all(head.as_bytes());
            let block = vec![b'u'; 64 * 1024];
            let mut sent = 0;
            while sent < size && writer.write_all(&block).is_ok() {
                sent += block.len();
            }
            sent
        });
        let mut client = Client::from_stream(s);
        let r = client.read_response(false).expect("a response");
        assert_eq!((r.status, r.text().as_str()), (413, "too big!"));
        assert!(
            client.is_closed(),
            "the connection ends after an early response"
        );
        let sent = uploader.join().expect("uploader");
        assert!(
            sent < size,
            "the upload was cut short ({sent} of {size} bytes)"
        );
    }
    assert_eq!(get(proxy.port, "a", "/").status, 413, "still serving");
}

/// The early answer's head as Envoy sends it: `connection: close` (the
/// rest of the upload is never read) and no upstream service time.
#[test]
fn early_upstream_response_head_matches_envoy() {
    let upstream_port = raw_upstream(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 413 X\r\ncontent-length: 5\r\n\r\nearly");
        std::thread::sleep(Duration::from_millis(500));
    });
    let config = with_admin(&http_config(
        &catch_all("up", ""),
        &port_cluster("up", upstream_port),
    ));
    let Some(pair) = Pair::start(
        "early_upstream_response_head_matches_envoy",
        &config,
        Vec::new(),
    ) else {
        return;
    };
    let ask = |port: u16| {
        let mut client = Client::connect(port);
        client.set_timeout(Duration::from_secs(5));
        client.send(b"POST /u HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n0123456789");
        let r = client.read_response(false).expect("an early answer");
        let mut names: Vec<String> = r
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.retain(|n| n != "server");
        names.sort();
        (
            r.status,
            r.text(),
            r.header("connection").map(str::to_string),
            names,
        )
    };
    let answered = ask(pair.ringway.port);
    assert_eq!(answered, ask(pair.envoy.port));
    assert_eq!(answered.2.as_deref(), Some("close"));
}
