//! The xDS transport: a thread of its own that keeps one gRPC stream open
//! to a control plane's cluster (ADS: `StreamAggregatedResources`, or
//! `DeltaAggregatedResources` for the incremental protocol; an
//! `api_config_source`: its type's own service, e.g. `StreamSecrets`),
//! sends the requests the main thread hands it and hands back every response
//! with its resources already decoded to JSON. It reconnects after a jittered
//! exponential back-off (Envoy's: 500 ms doubling to 30 s). What to request,
//! and when to ACK or NACK, is the main thread's (`super::ads`).

use super::proto;
use crate::net::{ByteCounts, Stream};
use crate::upstream::{Cluster, Endpoint};
use bytes::{Buf, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use serde_json::Value;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The gRPC method a stream calls: ADS (no type) or the service of one
/// resource type, state of the world or incremental (`delta`).
pub fn method(type_url: Option<&str>, delta: bool) -> &'static str {
    use crate::config::{ASSIGNMENT_TYPE, CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE};
    let (sotw, incremental) = match type_url {
        Some(LISTENER_TYPE) => (
            "/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners",
            "/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners",
        ),
        Some(CLUSTER_TYPE) => (
            "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters",
            "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters",
        ),
        Some(ROUTE_TYPE) => (
            "/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes",
            "/envoy.service.route.v3.RouteDiscoveryService/DeltaRoutes",
        ),
        Some(ASSIGNMENT_TYPE) => (
            "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints",
            "/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints",
        ),
        Some(SECRET_TYPE) => (
            "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
            "/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets",
        ),
        _ => (
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
        ),
    };
    if delta {
        incremental
    } else {
        sotw
    }
}
/// The largest response taken (a bigger one ends the stream).
const MAX_MESSAGE: usize = 64 << 20;
/// Envoy's back-off between stream attempts.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a transport tells the main thread, and which transport it is.
#[derive(Debug)]
pub struct Event {
    /// The transport's id.
    pub stream: u64,
    /// What happened.
    pub said: Said,
}

/// What happened on a transport.
#[derive(Debug)]
pub enum Said {
    /// Stream `generation` is open: requests for it may be sent.
    Connected(u64),
    /// Stream `generation` ended, and why.
    Disconnected(u64, String),
    /// A response on stream `generation`.
    Response(u64, Response),
}

/// A `DiscoveryResponse` or `DeltaDiscoveryResponse` with its resources
/// as JSON (or why they could not be decoded).
#[derive(Debug)]
pub struct Response {
    pub type_url: String,
    /// `version_info`, or a delta response's `system_version_info`.
    pub version: String,
    pub nonce: String,
    pub resources: Result<Vec<Value>, String>,
    /// Delta only: each resource's name and version, in order.
    pub named: Vec<(String, String)>,
    /// Delta only: `removed_resources`.
    pub removed: Vec<String>,
}

/// A request of either protocol.
pub enum Request {
    StateOfTheWorld(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
}

/// A request for stream `generation` (dropped if that stream is gone).
pub struct Outgoing {
    pub generation: u64,
    pub request: Request,
}

/// The main thread's end of a transport (dropping it ends the transport).
pub struct Client {
    pub requests: flume::Sender<Outgoing>,
}

/// Where a transport connects, what it calls and who hears of it.
pub struct Target {
    pub cluster: Arc<Cluster>,
    /// The gRPC method ([`method`]).
    pub method: &'static str,
    pub delta: bool,
    /// Its id in its events.
    pub stream: u64,
    pub events: crossbeam_channel::Sender<Event>,
}

/// Starts a transport to `target`; `node` goes in every request, or only
/// in each stream's first with `node_first_only`.
pub fn spawn(target: Target, node: Node, node_first_only: bool) -> Result<Client, String> {
    let (requests, request_rx) = flume::unbounded();
    std::thread::Builder::new()
        .name("ringway-xds-grpc".into())
        .spawn(move || {
            let run = move || async move {
                let transport = Transport {
                    target,
                    node,
                    node_first_only,
                    requests: request_rx,
                };
                transport.run().await;
            };
            if let Err(e) = crate::server::block_on(run) {
                log::error!("xds: cannot start the ADS runtime: {e}");
            }
        })
        .map_err(|e| format!("cannot spawn the ADS thread: {e}"))?;
    Ok(Client { requests })
}

struct Transport {
    target: Target,
    node: Node,
    node_first_only: bool,
    requests: flume::Receiver<Outgoing>,
}

impl Transport {
    /// Tells the main thread; false when it is gone.
    fn tell(&self, said: Said) -> bool {
        let event = Event {
            stream: self.target.stream,
            said,
        };
        self.target.events.send(event).is_ok()
    }

    /// Streams until the main thread goes away.
    async fn run(self) {
        let mut delay = BACKOFF_BASE;
        let mut next_endpoint = 0usize;
        for generation in 1.. {
            let cluster = &self.target.cluster;
            let endpoints = &cluster.endpoints;
            let reason = if endpoints.is_empty() {
                (
                    false,
                    format!("cluster {} has no endpoints", cluster.name()),
                )
            } else {
                next_endpoint = (next_endpoint + 1) % endpoints.len();
                self.stream(generation, &endpoints[next_endpoint]).await
            };
            let (heard, why) = reason;
            if !self.tell(Said::Disconnected(generation, why.clone())) {
                return;
            }
            let method = self.target.method;
            log::warn!("xds: {method} stream to {} closed: {why}", cluster.name());
            // Requests queued for the stream that ended are void.
            while self.requests.try_recv().is_ok() {}
            if self.requests.is_disconnected() {
                return;
            }
            if heard {
                delay = BACKOFF_BASE;
            }
            monoio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One stream: connect, announce it, then send and receive until it
    /// ends. Returns whether a response arrived, and why it ended.
    async fn stream(&self, generation: u64, endpoint: &Endpoint) -> (bool, String) {
        let addr = &endpoint.addr;
        let timeout = self.target.cluster.connect_timeout();
        let opened = monoio::time::timeout(timeout, self.open(endpoint)).await;
        let (send, response) = match opened {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => return (false, e),
            Err(_) => return (false, format!("connection to {addr} timed out")),
        };
        if !self.tell(Said::Connected(generation)) {
            return (false, "the main thread is gone".into());
        }
        let heard = std::cell::Cell::new(false);
        let sending = self.send(generation, send);
        let receiving = self.receive(generation, response, &heard);
        let why = monoio::select! {
            why = sending => why,
            why = receiving => why,
        };
        (heard.get(), why)
    }

    /// Connects (TLS when the cluster has it) and opens the gRPC call.
    async fn open(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(h2::SendStream<Bytes>, h2::client::ResponseFuture), String> {
        let addr = &endpoint.addr;
        let stream = Stream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay();
        let cluster = &self.target.cluster;
        let stream = match &cluster.tls {
            Some(tls) => {
                let name = cluster.server_name(endpoint, None);
                let session = tls
                    .connect(stream, addr.ip().map(|a| a.ip()), name)
                    .await
                    .map_err(|e| format!("TLS to {addr} failed: {e}"))?;
                Stream::Tls(session)
            }
            None => stream,
        };
        let io = stream.into_poll(Vec::new(), Rc::new(ByteCounts::default()));
        let (client, connection) = h2::client::Builder::new()
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {addr} failed: {e}"))?;
        monoio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client
            .ready()
            .await
            .map_err(|e| format!("HTTP/2 to {addr}: {e}"))?;
        let request = http::Request::post(self.target.method)
            .header(http::header::HOST, cluster.name())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, send) = client
            .send_request(request, false)
            .map_err(|e| format!("cannot open the ADS stream: {e}"))?;
        Ok((send, response))
    }

    /// Sends this stream's requests as gRPC messages.
    async fn send(&self, generation: u64, mut send: h2::SendStream<Bytes>) -> String {
        let mut first = true;
        loop {
            let Ok(mut out) = self.requests.recv_async().await else {
                return "the main thread is gone".into();
            };
            if out.generation != generation {
                continue;
            }
            let node = (first || !self.node_first_only).then(|| self.node.clone());
            first = false;
            let framed = match &mut out.request {
                Request::StateOfTheWorld(r) => {
                    r.node = node;
                    frame(r)
                }
                Request::Delta(r) => {
                    r.node = node;
                    frame(r)
                }
            };
            if let Err(e) = send.send_data(framed, false) {
                return format!("cannot send: {e}");
            }
        }
    }

    /// Receives this stream's responses and hands them on.
    async fn receive(
        &self,
        generation: u64,
        response: h2::client::ResponseFuture,
        heard: &std::cell::Cell<bool>,
    ) -> String {
        let response = match response.await {
            Ok(r) => r,
            Err(e) => return format!("the ADS stream failed: {e}"),
        };
        if let Some(status) = grpc_status(response.headers()) {
            return status;
        }
        if response.status() != http::StatusCode::OK {
            return format!("the control plane answered HTTP {}", response.status());
        }
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        loop {
            let chunk = match body.data().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return format!("the ADS stream failed: {e}"),
                None => break,
            };
            let _ = body.flow_control().release_capacity(chunk.len());
            buffer.extend_from_slice(&chunk);
            loop {
                let message = match unframe(&mut buffer) {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => return e,
                };
                let response = if self.target.delta {
                    DeltaDiscoveryResponse::decode(message).map(delta_decoded)
                } else {
                    DiscoveryResponse::decode(message).map(decoded)
                };
                let response = match response {
                    Ok(r) => r,
                    Err(e) => return format!("a response does not decode: {e}"),
                };
                heard.set(true);
                if !self.tell(Said::Response(generation, response)) {
                    return "the main thread is gone".into();
                }
            }
        }
        match body.trailers().await {
            Ok(Some(trailers)) => grpc_status(&trailers),
            _ => None,
        }
        .unwrap_or_else(|| "the control plane ended the stream".into())
    }
}

/// One resource of a response of `type_url`, as JSON.
fn resource(any: &envoy_types::pb::google::protobuf::Any, type_url: &str) -> Result<Value, String> {
    if any.type_url != type_url {
        return Err(format!(
            "a resource of type {} in a response of {type_url}",
            any.type_url
        ));
    }
    proto::resource_json(&any.type_url, &any.value)
}

/// A response's resources as JSON.
fn decoded(response: DiscoveryResponse) -> Response {
    let resources = response
        .resources
        .iter()
        .map(|any| resource(any, &response.type_url))
        .collect();
    Response {
        type_url: response.type_url,
        version: response.version_info,
        nonce: response.nonce,
        resources,
        named: Vec::new(),
        removed: Vec::new(),
    }
}

/// A delta response's resources as JSON, with their names and versions.
fn delta_decoded(response: DeltaDiscoveryResponse) -> Response {
    let mut named = Vec::with_capacity(response.resources.len());
    let resources = response
        .resources
        .iter()
        .map(|r| {
            named.push((r.name.clone(), r.version.clone()));
            let any = r
                .resource
                .as_ref()
                .ok_or_else(|| format!("resource {} came without its body", r.name))?;
            resource(any, &response.type_url)
        })
        .collect();
    Response {
        type_url: response.type_url,
        version: response.system_version_info,
        nonce: response.nonce,
        resources,
        named,
        removed: response.removed_resources,
    }
}

/// A gRPC status other than OK in `headers`, as text.
fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?.to_str().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    Some(format!("gRPC status {status}: {message}"))
}

/// A length-prefixed, uncompressed gRPC message.
fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + body.len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed.freeze()
}

/// The next whole gRPC message in `buffer`, if one has arrived.
fn unframe(buffer: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err("the control plane sent a compressed message (none was offered)".into());
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(format!(
            "a {len}-byte message is over the {MAX_MESSAGE}-byte limit"
        ));
    }
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(len).freeze()))
}

/// `delay` scaled by a random factor in [0.5, 1).
fn jitter(delay: Duration) -> Duration {
    let random = xxhash_rust::xxh64::xxh64(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
        0,
    );
    delay.mul_f64(0.5 + (random % 1000) as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_frame_and_unframe() {
        let request = DiscoveryRequest {
            type_url: "t".into(),
            ..Default::default()
        };
        let framed = frame(&request);
        let mut buffer = BytesMut::from(&framed[..3]);
        assert_eq!(unframe(&mut buffer), Ok(None));
        buffer.extend_from_slice(&framed[3..]);
        let message = unframe(&mut buffer).expect("valid").expect("whole");
        assert_eq!(DiscoveryRequest::decode(message), Ok(request));
        assert!(buffer.is_empty());
    }

    #[test]
    fn compressed_and_oversized_messages_are_refused() {
        assert!(unframe(&mut BytesMut::from(&[1u8, 0, 0, 0, 0][..])).is_err());
        assert!(unframe(&mut BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..])).is_err());
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d < Duration::from_secs(2));
        }
    }
}
