//! Health checks over HTTP/2: HTTP checks with `codec_client_type:
//! HTTP2`, and `grpc.health.v1.Health/Check`, judged as Envoy's gRPC
//! health checker judges it.

use super::probe::{judge, Outcome, Response};
use super::session::Verdict;
use crate::config::{GrpcCheck, HttpCheck};
use crate::http::grpc::{is_grpc_content_type, parse_status};
use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request};

/// Most response body bytes a check keeps.
const MAX_BODY: usize = 64 * 1024;
/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// An answer read off an HTTP/2 stream.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

/// Sends `request` (with `body`, if any) on `client` and reads the whole
/// answer; None when the stream or connection fails.
async fn exchange(
    client: SendRequest<Bytes>,
    request: Request<()>,
    body: Option<Bytes>,
) -> Option<Answer> {
    let mut ready = client.ready().await.ok()?;
    let (response, mut send) = ready.send_request(request, body.is_none()).ok()?;
    if let Some(body) = body {
        send.send_data(body, true).ok()?;
    }
    let response = response.await.ok()?;
    let (parts, mut stream) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.ok()?;
        let _ = stream.flow_control().release_capacity(chunk.len());
        let room = MAX_BODY.saturating_sub(body.len()).min(chunk.len());
        body.extend_from_slice(&chunk[..room]);
    }
    let trailers = stream.trailers().await.ok()?;
    Some(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        trailers,
    })
}

/// Adds `headers` to `request`: replacing those of the same name when
/// asked to, else appending.
fn add_headers(request: &mut Request<()>, headers: &[(String, String, bool)]) -> Option<()> {
    let map = request.headers_mut();
    for (name, value, replace) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_str(value).ok()?;
        if *replace {
            map.insert(name, value);
        } else {
            map.append(name, value);
        }
    }
    Some(())
}

/// An HTTP check over HTTP/2; None when the exchange failed.
pub async fn http(
    client: SendRequest<Bytes>,
    check: &HttpCheck,
    authority: &str,
    scheme: &str,
) -> Option<Outcome> {
    let uri = format!("{scheme}://{authority}{}", check.path);
    let mut request = Request::builder()
        .method(check.method)
        .uri(uri)
        .header(http::header::USER_AGENT, "Envoy/HC")
        .body(())
        .ok()?;
    for name in &check.headers_to_remove {
        request.headers_mut().remove(name.as_str());
    }
    add_headers(&mut request, &check.headers_to_add)?;
    let answer = exchange(client, request, None).await?;
    let has = |name: &str| answer.headers.contains_key(name);
    let response = Response {
        status: answer.status,
        immediate_fail: has("x-envoy-immediate-health-check-fail"),
        degraded: has("x-envoy-degraded"),
        healthchecked_cluster: answer
            .headers
            .get("x-envoy-upstream-healthchecked-cluster")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: answer.body,
        reusable: true,
    };
    Some(judge(check, &response))
}

/// A gRPC health check; None when the exchange failed.
pub async fn grpc(
    client: SendRequest<Bytes>,
    check: &GrpcCheck,
    authority: &str,
    scheme: &str,
    timeout_ms: u128,
) -> Option<Verdict> {
    let uri = format!("{scheme}://{authority}/grpc.health.v1.Health/Check");
    let mut request = Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "Envoy/HC")
        .header("grpc-timeout", format!("{timeout_ms}m"))
        .body(())
        .ok()?;
    add_headers(&mut request, &check.metadata)?;
    let answer = exchange(
        client,
        request,
        Some(health_check_request(&check.service_name)),
    )
    .await?;
    Some(if serving(&answer) {
        Verdict::Healthy { degraded: false }
    } else {
        Verdict::Failed {
            status: 0,
            retriable: false,
            exclude: false,
        }
    })
}

/// A `HealthCheckRequest{service}` in its gRPC frame.
fn health_check_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Whether the answer is a successful call whose one message says
/// SERVING: HTTP 200, a gRPC content type, `grpc-status: 0` (in the
/// trailers, or the headers of a trailers-only answer).
fn serving(answer: &Answer) -> bool {
    let grpc = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()));
    let status = answer
        .trailers
        .as_ref()
        .unwrap_or(&answer.headers)
        .get("grpc-status")
        .map(|v| parse_status(v.as_bytes()));
    answer.status == 200
        && grpc
        && status == Some(0)
        && message_status(&answer.body) == Some(SERVING)
}

/// The `status` of the one `HealthCheckResponse` in `body` (0, UNKNOWN,
/// when the message leaves it out); None for anything but one
/// uncompressed message.
fn message_status(body: &[u8]) -> Option<u64> {
    let (&flags, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = rest.get(4..4 + len)?;
    if flags != 0 || rest.len() != 4 + len {
        return None;
    }
    let mut status = 0;
    let mut at = 0;
    while at < message.len() {
        let (key, n) = varint(&message[at..])?;
        at += n;
        match key & 7 {
            0 => {
                let (value, n) = varint(&message[at..])?;
                at += n;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let (len, n) = varint(&message[at..])?;
                at += n + len as usize;
            }
            5 => at += 4,
            1 => at += 8,
            _ => return None,
        }
    }
    (at == message.len()).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_grpc_health_v1() {
        assert_eq!(&health_check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_check_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        assert_eq!(message_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(SERVING));
        assert_eq!(message_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(message_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(message_status(&[1, 0, 0, 0, 2, 0x08, 1]), None);
        assert_eq!(message_status(&[0, 0, 0, 0, 3, 0x08, 1]), None);
    }
}
