//! ext_authz's gRPC form: `envoy.service.auth.v3.Authorization/Check`.
//! The check describes the request as Envoy's does (its addresses, time,
//! method, path, host, scheme, protocol and every header, pseudo-headers
//! included, with the `x-forwarded-proto` and `x-request-id` the
//! connection manager gives it); the answer's `status` allows (OK) or
//! denies, with the headers and reply its `ok_response` or
//! `denied_response` carries.

use super::ext_authz::{any_matches, Allowed, Verdict};
use super::{Answer, Call, Downstream};
use crate::config::StringMatcher;
use crate::http::grpc;
use crate::http::local_reply::LocalReply;
use crate::net::Address;
use crate::router::{Forward, RequestView};
use crate::server::shard::Shard;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, check_response::HttpResponse, AttributeContext, CheckResponse,
};
use envoy_types::pb::google::protobuf::Timestamp;
use prost::Message;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The service's method.
const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// What a check is made of.
pub struct CheckRequest<'a> {
    /// The request as the filter sees it.
    pub request: &'a RequestView<'a>,
    /// Its connection.
    pub downstream: &'a Downstream<'a>,
    /// The route's `context_extensions`.
    pub extensions: Vec<(String, String)>,
    /// `allowed_headers`: the only headers sent, when set.
    pub allowed: Option<&'a [StringMatcher]>,
    /// `disallowed_headers`: headers never sent.
    pub disallowed: &'a [StringMatcher],
}

impl CheckRequest<'_> {
    /// The call to the service at `authority` (through `to`) within
    /// `timeout`.
    pub fn call(
        self,
        to: Option<(Arc<Forward>, usize)>,
        authority: &str,
        timeout: Duration,
        shard: &Shard,
    ) -> Call {
        let request = envoy_types::pb::envoy::service::auth::v3::CheckRequest {
            attributes: Some(self.attributes(shard)),
        };
        let grpc_timeout = grpc::format_timeout(timeout);
        let headers: [(&str, &[u8]); 3] = [
            ("content-type", b"application/grpc"),
            ("te", b"trailers"),
            ("grpc-timeout", grpc_timeout.as_bytes()),
        ];
        let body = grpc::frame(&request.encode_to_vec());
        Call::new(to, "POST", PATH, authority, &headers, timeout, body)
    }

    fn attributes(self, shard: &Shard) -> AttributeContext {
        let view = self.request;
        let mut headers: HashMap<String, String> = HashMap::new();
        let mut put = |name: String, value: &[u8]| {
            let value = String::from_utf8_lossy(value);
            headers
                .entry(name)
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        };
        put(":authority".into(), view.authority.as_bytes());
        put(":method".into(), view.method.as_bytes());
        put(":path".into(), view.path.as_bytes());
        put(":scheme".into(), view.scheme.as_bytes());
        for h in view.headers {
            let name = h.name.to_ascii_lowercase();
            if name != "host" {
                put(name, h.value);
            }
        }
        // What the connection manager adds before any filter runs.
        headers
            .entry("x-forwarded-proto".into())
            .or_insert_with(|| view.scheme.to_string());
        headers
            .entry("x-request-id".into())
            .or_insert_with(|| String::from_utf8_lossy(&shard.request_id()).into_owned());
        headers.retain(|name, _| {
            self.allowed
                .is_none_or(|allowed| any_matches(allowed, name))
                && !any_matches(self.disallowed, name)
        });
        let http2 = self.downstream.peer.filter_state.is_http2();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AttributeContext {
            source: Some(peer(Some(self.downstream.client))),
            destination: Some(peer(self.downstream.peer.local.as_ref())),
            request: Some(attribute_context::Request {
                time: Some(Timestamp {
                    seconds: since_epoch.as_secs() as i64,
                    nanos: since_epoch.subsec_nanos() as i32,
                }),
                http: Some(attribute_context::HttpRequest {
                    id: shard.random().to_string(),
                    method: view.method.to_string(),
                    headers,
                    path: view.path.to_string(),
                    host: view.authority.to_string(),
                    scheme: view.scheme.to_string(),
                    protocol: if http2 { "HTTP/2" } else { "HTTP/1.1" }.to_string(),
                    ..Default::default()
                }),
            }),
            context_extensions: self.extensions.into_iter().collect(),
            metadata_context: Some(Default::default()),
            route_metadata_context: Some(Default::default()),
            ..Default::default()
        }
    }
}

/// A check's peer: its socket address (none for a pipe).
fn peer(address: Option<&Address>) -> attribute_context::Peer {
    let address = match address {
        Some(Address::Ip(addr)) => Some(core::Address {
            address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                address: addr.ip().to_string(),
                port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                    addr.port(),
                ))),
                ..Default::default()
            })),
        }),
        _ => None,
    };
    attribute_context::Peer {
        address,
        ..Default::default()
    }
}

/// What the service's answer says: a failed call is an error; status OK
/// allows, any other status denies (403 unless the denial says).
pub(super) fn verdict(answer: &Answer) -> Verdict {
    let Some(response) = decode(answer) else {
        return Verdict::Error;
    };
    let allowed = response.status.as_ref().is_none_or(|s| s.code == 0);
    if allowed {
        let mut verdict = Allowed::default();
        if let Some(HttpResponse::OkResponse(ok)) = response.http_response {
            for option in ok.headers {
                let Some((name, value, append)) = header(option) else {
                    continue;
                };
                if append {
                    verdict.join.push((name, value));
                } else {
                    verdict.set.push((name, value));
                }
            }
            verdict.remove = ok
                .headers_to_remove
                .into_iter()
                .map(|n| n.to_ascii_lowercase())
                .filter(|n| !n.starts_with(':') && n != "host")
                .collect();
            verdict.respond = ok
                .response_headers_to_add
                .into_iter()
                .filter_map(header)
                .map(|(name, value, _)| (name, value))
                .collect();
        }
        return Verdict::Allow(verdict);
    }
    let mut reply = LocalReply {
        status: 403,
        body: Cow::Borrowed(b""),
        close: false,
        headers: Vec::new(),
        grpc_status: None,
    };
    if let Some(HttpResponse::DeniedResponse(denied)) = response.http_response {
        if let Some(code) = denied
            .status
            .map(|s| s.code)
            .filter(|c| (200..600).contains(c))
        {
            reply.status = code as u16;
        }
        reply.headers = denied
            .headers
            .into_iter()
            .filter_map(header)
            .map(|(name, value, _)| (name, value))
            .collect();
        reply.body = Cow::Owned(denied.body.into_bytes());
    }
    Verdict::Deny(reply)
}

/// A header an answer carries: its lower-case name, value, and whether
/// it is appended (the legacy `append`, which Envoy's filter reads; it
/// sets the header otherwise).
fn header(option: core::HeaderValueOption) -> Option<(String, Vec<u8>, bool)> {
    #[allow(deprecated)]
    let append = option.append.is_some_and(|a| a.value);
    let h = option.header?;
    let name = h.key.to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let value = if h.raw_value.is_empty() {
        h.value.into_bytes()
    } else {
        h.raw_value
    };
    Some((name, value, append))
}

/// The service's response, when the call succeeded.
fn decode(answer: &Answer) -> Option<CheckResponse> {
    CheckResponse::decode(answer.grpc_message()?).ok()
}
