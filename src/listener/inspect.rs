//! Listener filters that look at a connection's first bytes before a
//! filter chain is chosen: `tls_inspector` (a ClientHello's SNI and ALPN)
//! and `http_inspector` (HTTP/1.x or the h2c preface).
//!
//! The bytes are read, not peeked, into a buffer that grows only as far
//! as the ClientHello does (Envoy holds 64 KiB per connection for this);
//! they are replayed to whatever serves the connection, or handed to the
//! TLS handshake already parsed.

use crate::http::conn::H2_PREFACE;
use crate::net::Stream;
use crate::stats::sets::{HttpInspector, TlsInspector};
use crate::stats::Scope;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use rustls::server::{Accepted, Acceptor};
use std::time::Duration;

/// The most a ClientHello may take (Envoy's `max_client_hello_size`).
const MAX_HELLO: usize = 64 * 1024;
/// The first read's size: a typical ClientHello fits.
const FIRST_READ: usize = 2048;

/// A parsed ClientHello.
pub struct Hello {
    /// SNI, lower-cased.
    pub server_name: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// rustls' parse, to continue the handshake from.
    pub accepted: Accepted,
}

/// What the listener filters found.
#[derive(Default)]
pub struct Inspected {
    /// Every byte read so far.
    pub bytes: Vec<u8>,
    /// The ClientHello, when the connection speaks TLS (boxed: held across
    /// the connection's awaits, it would otherwise size every connection
    /// task by 1.4 KiB).
    pub hello: Option<Box<Hello>>,
    /// `http/1.0`, `http/1.1` or `h2c`, from the HTTP inspector.
    pub http: Option<&'static str>,
    /// The filters ran out of time before deciding.
    pub timed_out: bool,
}

/// Which inspectors run and where they count.
pub struct Inspectors<'a> {
    /// `tls_inspector` stats, when it runs.
    pub tls: Option<&'a Scope<TlsInspector>>,
    /// `http_inspector` stats, when it runs.
    pub http: Option<&'a Scope<HttpInspector>>,
    /// The shard's stat row.
    pub w: usize,
}

/// State of one inspector while bytes arrive.
enum Verdict<T> {
    Undecided,
    Found(T),
    Not,
}

/// Runs the inspectors on `stream` (after the `initial` bytes an earlier
/// filter read) until each has decided, the client stops sending, or
/// `timeout` passes. None when the connection failed.
pub async fn inspect(
    stream: &mut Stream,
    which: Inspectors<'_>,
    timeout: Option<Duration>,
    initial: Vec<u8>,
) -> Option<Inspected> {
    let mut out = Inspected::default();
    let mut acceptor = which.tls.map(|_| Acceptor::default());
    let mut tls = if which.tls.is_some() {
        Verdict::Undecided
    } else {
        Verdict::Not
    };
    let mut http = if which.http.is_some() {
        Verdict::Undecided
    } else {
        Verdict::Not
    };
    let deadline = timeout.map(|t| monoio::time::Instant::now() + t);
    let w = which.w;
    // Bytes an earlier filter read are looked at first.
    out.bytes = initial;
    // How many of the bytes the inspectors have seen.
    let mut seen = 0;
    loop {
        if seen < out.bytes.len() {
            if let (Verdict::Undecided, Some(a)) = (&tls, acceptor.as_mut()) {
                tls = client_hello(a, &out.bytes[seen..], out.bytes[0]);
            }
            if matches!(http, Verdict::Undecided) {
                http = http_version(&out.bytes);
            }
            seen = out.bytes.len();
        }
        if !matches!(tls, Verdict::Undecided) && !matches!(http, Verdict::Undecided) {
            break;
        }
        if out.bytes.len() >= MAX_HELLO {
            if let (Some(s), Verdict::Undecided) = (which.tls, &tls) {
                s.inc(w, TlsInspector::client_hello_too_large);
            }
            return None;
        }
        // Waiting for readiness is what the timeout cancels; the read
        // itself then completes at once, so no byte is lost to a timeout.
        let ready = stream.readable(false);
        let ready = match deadline {
            Some(at) => match monoio::time::timeout_at(at, ready).await {
                Ok(r) => r,
                Err(_) => {
                    out.timed_out = true;
                    break;
                }
            },
            None => ready.await,
        };
        // Read straight into the kept bytes: the first read FIRST_READ,
        // each later one doubling them, up to MAX_HELLO.
        let len = out.bytes.len();
        let want = if len == 0 { FIRST_READ } else { len }.min(MAX_HELLO - len);
        out.bytes.reserve_exact(want);
        let res = match ready {
            Ok(()) => {
                let bytes = std::mem::take(&mut out.bytes);
                let (res, slice) = stream.read(bytes.slice_mut(len..len + want)).await;
                out.bytes = slice.into_inner();
                res
            }
            Err(e) => Err(e),
        };
        match res {
            // The client left before the filters could decide: as in
            // Envoy, the connection ends uncounted.
            Ok(0) => return None,
            Ok(_) => {}
            Err(_) => {
                if let Some(s) = which.tls {
                    s.inc(w, TlsInspector::read_error);
                }
                return None;
            }
        }
    }
    if let Some(s) = which.tls {
        match tls {
            Verdict::Found(accepted) => {
                let hello = describe(accepted);
                s.inc(w, TlsInspector::tls_found);
                s.inc(
                    w,
                    if hello.server_name.is_some() {
                        TlsInspector::sni_found
                    } else {
                        TlsInspector::sni_not_found
                    },
                );
                s.inc(
                    w,
                    if hello.alpn.is_empty() {
                        TlsInspector::alpn_not_found
                    } else {
                        TlsInspector::alpn_found
                    },
                );
                out.hello = Some(Box::new(hello));
            }
            _ if !out.timed_out => s.inc(w, TlsInspector::tls_not_found),
            _ => {}
        }
    }
    if let Some(s) = which.http {
        match http {
            Verdict::Found(protocol) => {
                s.inc(
                    w,
                    match protocol {
                        "h2c" => HttpInspector::http2_found,
                        "http/1.0" => HttpInspector::http10_found,
                        _ => HttpInspector::http11_found,
                    },
                );
                out.http = Some(protocol);
            }
            _ if !out.timed_out => s.inc(w, HttpInspector::http_not_found),
            _ => {}
        }
    }
    Some(out)
}

/// Feeds `new` bytes to the ClientHello parser.
fn client_hello(acceptor: &mut Acceptor, new: &[u8], first: u8) -> Verdict<Accepted> {
    // A TLS record carrying a handshake message starts with 22.
    if first != 0x16 {
        return Verdict::Not;
    }
    let mut rest = new;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest).is_err() {
            return Verdict::Not;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Verdict::Found(accepted),
        Ok(None) => Verdict::Undecided,
        Err(_) => Verdict::Not,
    }
}

fn describe(accepted: Accepted) -> Hello {
    let hello = accepted.client_hello();
    let server_name = hello.server_name().map(str::to_ascii_lowercase);
    let alpn = hello
        .alpn()
        .map(|list| {
            list.map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Hello {
        server_name,
        alpn,
        accepted,
    }
}

/// Envoy's HTTP inspector: the h2c preface, or a request line ending in
/// `HTTP/1.0` or `HTTP/1.1`.
fn http_version(bytes: &[u8]) -> Verdict<&'static str> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Verdict::Found("h2c")
        } else {
            Verdict::Undecided
        };
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        let printable = bytes.iter().all(|&b| b.is_ascii_graphic() || b == b' ');
        return if printable && bytes.len() < 8192 {
            Verdict::Undecided
        } else {
            Verdict::Not
        };
    };
    let line = &bytes[..end];
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(_), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Not;
    };
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return Verdict::Not;
    }
    match version {
        b"HTTP/1.1" => Verdict::Found("http/1.1"),
        b"HTTP/1.0" => Verdict::Found("http/1.0"),
        _ => Verdict::Not,
    }
}
