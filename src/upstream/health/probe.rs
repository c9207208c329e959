//! One health check on the wire: an HTTP/1.1 request or a TCP exchange
//! with a host, judged as Envoy's HTTP and TCP health checkers judge it.

use super::h2probe;
use super::session::Verdict;
use crate::config::{HttpCheck, Probe, TcpCheck};
use crate::http::codec::{has_token, ChunkedDecoder};
use crate::net::{Address, ByteCounts, Stream};
use crate::tls::ClientTls;
use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Largest response head a check reads; a bigger one fails the check as
/// a protocol error would.
const MAX_HEAD: usize = 64 * 1024;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// Most response headers parsed.
const MAX_HEADERS: usize = 64;

/// Where a check goes.
pub struct Target<'a> {
    /// The host's address.
    pub addr: &'a Address,
    /// The cluster's TLS context and the server name to send, when it
    /// speaks TLS.
    pub tls: Option<(&'a Arc<ClientTls>, Option<&'a str>)>,
    /// The HTTP check's `host` header value, the gRPC check's
    /// `:authority`.
    pub authority: &'a str,
}

/// What one check found, with what Envoy counts beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// `service_name_matcher` was consulted (`health_check.verify_cluster`).
    pub verified_cluster: bool,
}

impl From<Verdict> for Outcome {
    fn from(verdict: Verdict) -> Self {
        Outcome {
            verdict,
            verified_cluster: false,
        }
    }
}

/// One host's checker: the connection it keeps between checks.
#[derive(Default)]
pub struct Prober {
    conn: Option<Stream>,
    h2: Option<SendRequest<Bytes>>,
}

impl Prober {
    /// Runs one check of `probe` on `target` within `timeout`. A timed-out
    /// or failed check drops the connection.
    pub async fn check(
        &mut self,
        probe: &Probe,
        target: &Target<'_>,
        timeout: Duration,
        reuse: bool,
    ) -> Outcome {
        let attempt = async {
            match probe {
                Probe::Http(http) if http.http2 => {
                    self.over_h2(target, reuse, |client, scheme| {
                        h2probe::http(client, http, target.authority, scheme)
                    })
                    .await
                }
                Probe::Http(http) => self.http(http, target, reuse).await,
                Probe::Tcp(tcp) => self.tcp(tcp, target, reuse).await.into(),
                Probe::Grpc(grpc) => {
                    self.over_h2(target, reuse, |client, scheme| async move {
                        let ms = timeout.as_millis();
                        h2probe::grpc(client, grpc, target.authority, scheme, ms)
                            .await
                            .map(Outcome::from)
                    })
                    .await
                }
            }
        };
        match monoio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                self.h2 = None;
                Verdict::Timeout.into()
            }
        }
    }

    /// Runs `exchange` on the kept HTTP/2 connection or a new one (kept
    /// afterwards when `reuse`); a failed exchange is a network failure.
    async fn over_h2<F>(
        &mut self,
        target: &Target<'_>,
        reuse: bool,
        exchange: impl FnOnce(SendRequest<Bytes>, &'static str) -> F,
    ) -> Outcome
    where
        F: std::future::Future<Output = Option<Outcome>>,
    {
        if self.h2.is_none() {
            let Some(stream) = self.connection(target).await else {
                return Verdict::Network.into();
            };
            let io = stream.into_poll(Vec::new(), Rc::new(ByteCounts::default()));
            let handshake = h2::client::Builder::new()
                .enable_push(false)
                .handshake::<_, Bytes>(io)
                .await;
            let Ok((client, connection)) = handshake else {
                return Verdict::Network.into();
            };
            monoio::spawn(async move {
                let _ = connection.await;
            });
            self.h2 = Some(client);
        }
        let scheme = if target.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let Some(client) = self.h2.clone() else {
            return Verdict::Network.into();
        };
        let outcome = exchange(client, scheme).await;
        if !reuse || outcome.is_none() {
            self.h2 = None;
        }
        outcome.unwrap_or_else(|| Verdict::Network.into())
    }

    /// The kept connection, or a new one.
    async fn connection(&mut self, target: &Target<'_>) -> Option<Stream> {
        if let Some(conn) = self.conn.take() {
            return Some(conn);
        }
        let stream = Stream::connect(target.addr).await.ok()?;
        stream.set_nodelay();
        let Some((tls, server_name)) = target.tls else {
            return Some(stream);
        };
        let ip = target.addr.ip().map(|a| a.ip());
        tls.connect(stream, ip, server_name)
            .await
            .ok()
            .map(Stream::Tls)
    }

    async fn http(&mut self, check: &HttpCheck, target: &Target<'_>, reuse: bool) -> Outcome {
        let Some(mut conn) = self.connection(target).await else {
            return Verdict::Network.into();
        };
        let (written, _) = conn.write_all(request(check, target.authority)).await;
        if written.is_err() {
            return Verdict::Network.into();
        }
        let Some(response) = read_response(&mut conn, check).await else {
            return Verdict::Network.into();
        };
        if reuse && response.reusable {
            self.conn = Some(conn);
        }
        judge(check, &response)
    }

    async fn tcp(&mut self, check: &TcpCheck, target: &Target<'_>, reuse: bool) -> Verdict {
        let Some(mut conn) = self.connection(target).await else {
            return Verdict::Network;
        };
        // A connect-only check passes on connecting, and closes.
        if check.receive.is_empty() && check.send.is_empty() {
            return Verdict::Healthy { degraded: false };
        }
        if !check.send.is_empty() {
            let (written, _) = conn.write_all(check.send.clone()).await;
            if written.is_err() {
                return Verdict::Network;
            }
        }
        if check.receive.is_empty() {
            return Verdict::Healthy { degraded: false };
        }
        let mut received = Vec::new();
        loop {
            let (read, chunk) = conn.read(Vec::with_capacity(READ_CHUNK)).await;
            match read {
                Ok(0) | Err(_) => return Verdict::Network,
                Ok(_) => received.extend_from_slice(&chunk),
            }
            if contains_in_order(&received, &check.receive) {
                if reuse {
                    self.conn = Some(conn);
                }
                return Verdict::Healthy { degraded: false };
            }
            // Anything else waits for more, up to the timeout (Envoy's
            // matcher cannot tell wrong bytes from too few).
            if received.len() > MAX_HEAD {
                received.drain(..received.len() - MAX_HEAD);
            }
        }
    }
}

/// The check's request head.
fn request(check: &HttpCheck, authority: &str) -> Vec<u8> {
    let mut headers: Vec<(&str, &str)> = vec![("host", authority), ("user-agent", "Envoy/HC")];
    headers.retain(|(name, _)| !check.headers_to_remove.iter().any(|r| r == name));
    for (name, value, replace) in &check.headers_to_add {
        if *replace {
            headers.retain(|(n, _)| n != name);
        }
        headers.push((name, value));
    }
    let mut out = format!("{} {} HTTP/1.1\r\n", check.method, check.path).into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A response as a check reads it.
pub(super) struct Response {
    pub(super) status: u16,
    /// `x-envoy-immediate-health-check-fail` was present.
    pub(super) immediate_fail: bool,
    /// `x-envoy-degraded` was present.
    pub(super) degraded: bool,
    /// `x-envoy-upstream-healthchecked-cluster`.
    pub(super) healthchecked_cluster: String,
    /// The start of the body (as much as `receive` needs).
    pub(super) body: Vec<u8>,
    /// Whether the connection may carry the next check.
    pub(super) reusable: bool,
}

/// How a response body ends.
enum BodyEnd {
    Length(u64),
    Chunked,
    Close,
}

/// Reads a whole response (head, then body, keeping the part of it the
/// check looks at); None when the connection fails or the response is
/// malformed.
async fn read_response(conn: &mut Stream, check: &HttpCheck) -> Option<Response> {
    let mut buf = Vec::new();
    let (mut response, end, consumed) = loop {
        let (read, chunk) = conn.read(Vec::with_capacity(READ_CHUNK)).await;
        match read {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.extend_from_slice(&chunk),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let head = head(&parsed, check.method == "HEAD")?;
                break (head.0, head.1, n);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return None,
        }
    };
    buf.drain(..consumed);
    let keep = if check.receive.is_empty() {
        0
    } else if check.response_buffer_size == 0 {
        usize::MAX
    } else {
        check.response_buffer_size
    };
    let take = |data: &[u8], body: &mut Vec<u8>| {
        let room = keep.saturating_sub(body.len()).min(data.len());
        body.extend_from_slice(&data[..room]);
    };
    match end {
        BodyEnd::Length(mut left) => loop {
            let n = (buf.len() as u64).min(left) as usize;
            take(&buf[..n], &mut response.body);
            left -= n as u64;
            if left == 0 {
                break;
            }
            buf = read_more(conn).await?;
        },
        BodyEnd::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                let mut at = 0;
                while at < buf.len() && !decoder.is_done() {
                    let step = decoder.step(&buf[at..]).ok()?;
                    if let Some((start, len)) = step.data {
                        take(&buf[at + start..at + start + len], &mut response.body);
                    }
                    at += step.consumed;
                }
                if decoder.is_done() {
                    break;
                }
                buf = read_more(conn).await?;
            }
        }
        BodyEnd::Close => {
            response.reusable = false;
            loop {
                take(&buf, &mut response.body);
                let (read, chunk) = conn.read(Vec::with_capacity(READ_CHUNK)).await;
                match read {
                    Ok(0) => break,
                    Ok(_) => buf = chunk,
                    Err(_) => return None,
                }
            }
        }
    }
    Some(response)
}

/// The next bytes on the connection; None at its end.
async fn read_more(conn: &mut Stream) -> Option<Vec<u8>> {
    let (read, chunk) = conn.read(Vec::with_capacity(READ_CHUNK)).await;
    match read {
        Ok(n) if n > 0 => Some(chunk),
        _ => None,
    }
}

/// The parts of a response head a check uses, and how its body ends.
fn head(parsed: &httparse::Response, head_request: bool) -> Option<(Response, BodyEnd)> {
    let status = parsed.code?;
    let mut response = Response {
        status,
        immediate_fail: false,
        degraded: false,
        healthchecked_cluster: String::new(),
        body: Vec::new(),
        reusable: parsed.version == Some(1),
    };
    let mut end = BodyEnd::Close;
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "x-envoy-immediate-health-check-fail" => response.immediate_fail = true,
            "x-envoy-degraded" => response.degraded = true,
            "x-envoy-upstream-healthchecked-cluster" => {
                response.healthchecked_cluster = String::from_utf8_lossy(h.value).into_owned();
            }
            "connection" if has_token(h.value, "close") => response.reusable = false,
            "connection" if has_token(h.value, "keep-alive") => response.reusable = true,
            "transfer-encoding" if has_token(h.value, "chunked") => end = BodyEnd::Chunked,
            "content-length" if !matches!(end, BodyEnd::Chunked) => {
                let n = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                end = BodyEnd::Length(n);
            }
            _ => {}
        }
    }
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        end = BodyEnd::Length(0);
    }
    Some((response, end))
}

/// Envoy's verdict on an HTTP answer: the `receive` blocks, then the
/// expected statuses (a retriable one counts toward the threshold), then
/// the service name, and `x-envoy-degraded`.
pub(super) fn judge(check: &HttpCheck, r: &Response) -> Outcome {
    let failed = |retriable| {
        Outcome::from(Verdict::Failed {
            status: r.status,
            retriable,
            exclude: r.immediate_fail,
        })
    };
    if !check.receive.is_empty() && !contains_in_order(&r.body, &check.receive) {
        return failed(false);
    }
    if !check.expects(r.status) {
        return failed(check.retries(r.status));
    }
    let healthy = Verdict::Healthy {
        degraded: r.degraded,
    };
    let Some(matcher) = &check.service_name_matcher else {
        return healthy.into();
    };
    let verdict = if matcher.matches(&r.healthchecked_cluster) {
        healthy
    } else {
        Verdict::Failed {
            status: r.status,
            retriable: false,
            exclude: false,
        }
    };
    Outcome {
        verdict,
        verified_cluster: true,
    }
}

/// Whether every block of `want` is in `data`, in order (not necessarily
/// adjacent): Envoy's payload matching.
fn contains_in_order(data: &[u8], want: &[Vec<u8>]) -> bool {
    let mut from = 0;
    for block in want {
        let Some(at) = data[from..]
            .windows(block.len().max(1))
            .position(|w| w == block.as_slice())
        else {
            return false;
        };
        from += at + block.len();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_blocks_match_in_order() {
        let want = vec![b"ab".to_vec(), b"cd".to_vec()];
        assert!(contains_in_order(b"xxabyycdzz", &want));
        assert!(!contains_in_order(b"cdab", &want));
        assert!(!contains_in_order(b"abc", &want));
    }

    #[test]
    fn request_carries_envoys_headers_and_the_configured_ones() {
        let check = HttpCheck {
            headers_to_add: vec![
                ("x-a".into(), "1".into(), false),
                ("user-agent".into(), "probe".into(), true),
            ],
            ..HttpCheck::get("/healthz")
        };
        let text = String::from_utf8(request(&check, "svc")).unwrap();
        assert_eq!(
            text,
            "GET /healthz HTTP/1.1\r\nhost: svc\r\nx-a: 1\r\nuser-agent: probe\r\n\r\n"
        );
    }
}
