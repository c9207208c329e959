//! A filter's call to a service (ext_authz's check): sent by the same
//! forwarding path requests take — the shard's pools, circuit breakers,
//! timeout, the service cluster's upstream stats — through a downstream
//! that keeps the answer instead of writing it anywhere. Nothing of the
//! call reaches the client or the request's own stats.

use super::downstream::Downstream;
use super::forward::Upstream;
use super::mirror::Ended;
use super::{Exchange, Protocol, Proxy};
use crate::http::body::{pump, Moved, OutFraming, PumpError, Sink, Source};
use crate::http::codec::{is_hop_by_hop, Framing, Patience, ReadBuf};
use crate::http::filters::{Answer, Call};
use crate::http::flags::ResponseFlags;
use crate::http::head::{Overrides, Peer, Request};
use crate::http::local_reply::LocalReply;
use crate::http::upgrade::{End, Tunneled};
use crate::net::Stream;
use crate::server::shard::{Shard, View};
use crate::snapshot::{HttpChain, HttpSettings};
use std::rc::Rc;
use std::time::Duration;

/// The largest answer body kept; a longer one fails the call (Envoy's
/// async client resets past its buffer limit).
const MAX_ANSWER_BODY: usize = 1024 * 1024;

/// Makes `call` for a request on `peer`'s connection and returns what it
/// came to.
pub(super) async fn make(
    shard: &Rc<Shard>,
    view: &Rc<View>,
    chain: &HttpChain,
    peer: &Peer,
    protocol: Protocol,
    call: Call,
) -> Answer {
    let Some((forward, cluster)) = call.to else {
        return Answer::default();
    };
    let req = Request {
        head_len: 0,
        framing: if call.body.is_empty() {
            Framing::Empty
        } else {
            Framing::Length(call.body.len() as u64)
        },
        keep_alive: true,
        expect_continue: false,
        is_head: false,
        grpc: false,
        upgrade: false,
        websocket: false,
        generated_id: None,
        client: None,
        filtered: Default::default(),
    };
    let x = Exchange::mirrored(shard, view, chain, req, peer.clone(), protocol, &forward);
    let mut proxy = Proxy {
        down: Capture {
            ended: Ended,
            rbuf: ReadBuf::holding(call.body),
            answer: Answer::default(),
        },
        ubuf: ReadBuf::default(),
    };
    let to = Upstream {
        forward: &forward,
        cluster,
        criteria: None,
        slots: call.slots,
        hash: None,
        overrides: Overrides::default(),
    };
    proxy.forward(&x, to, call.head).await;
    proxy.down.answer
}

/// The downstream of a call: its body from memory, the answer kept.
struct Capture {
    ended: Ended,
    rbuf: ReadBuf,
    answer: Answer,
}

/// An answer's body, collected up to [`MAX_ANSWER_BODY`].
struct Collect<'a>(&'a mut Vec<u8>);

impl Sink for Collect<'_> {
    async fn write(&mut self, out: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        if self.0.len() + out.len() > MAX_ANSWER_BODY {
            let too_long = std::io::Error::other("answer body too long");
            return (Err(too_long), out);
        }
        self.0.extend_from_slice(&out);
        (Ok(out.len()), out)
    }
}

/// The answer an HTTP/1.1 response head and `body` make: its status and
/// headers without the framing and hop-by-hop ones; one of status 0 when
/// the head does not parse.
fn answer(head: &[u8], body: Vec<u8>) -> Answer {
    let mut lines = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut lines);
    let (Ok(_), Some(status)) = (response.parse(head), response.code) else {
        return Answer::default();
    };
    let headers = response
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .filter(|(name, _)| !is_hop_by_hop(name) && name != "content-length")
        .collect();
    Answer {
        status,
        headers,
        body,
        trailers: Vec::new(),
    }
}

impl Downstream for Capture {
    type Body = Ended;
    const GONE: ResponseFlags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;

    fn request_body(&mut self) -> (&mut Ended, &mut ReadBuf) {
        (&mut self.ended, &mut self.rbuf)
    }

    async fn send_reply(
        &mut self,
        _: &Shard,
        _: &HttpSettings,
        reply: &LocalReply<'_>,
        _: bool,
        _: bool,
    ) -> bool {
        self.answer = Answer {
            status: reply.status,
            headers: reply.headers.clone(),
            body: reply.body.to_vec(),
            trailers: Vec::new(),
        };
        true
    }

    async fn send_continue(&mut self) -> bool {
        true
    }

    async fn relay<S: Source>(
        &mut self,
        head: Vec<u8>,
        up: &mut S,
        ubuf: &mut ReadBuf,
        framing: Framing,
        patience: Patience,
    ) -> Result<Moved, PumpError> {
        let mut body = Vec::new();
        let moved = pump(
            up,
            ubuf,
            framing,
            &mut Collect(&mut body),
            Vec::new(),
            OutFraming::Raw,
            patience,
        )
        .await?;
        self.answer = answer(&head, body);
        if let Some(trailers) = up.trailers() {
            self.answer.trailers = trailers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect();
        }
        Ok(moved)
    }

    async fn send_switch(&mut self, _: Vec<u8>) -> bool {
        false
    }

    async fn tunnel(&mut self, _: &mut Stream, _: Vec<u8>, _: Option<Duration>) -> Tunneled {
        Tunneled {
            to_upstream: 0,
            to_downstream: 0,
            end: End::Downstream,
        }
    }

    fn skip_body(&mut self, _: Framing) -> bool {
        true
    }

    fn closed(&self) -> impl std::future::Future<Output = ()> + use<> {
        std::future::pending()
    }

    fn is_gone(&self) -> bool {
        false
    }

    fn lost(&mut self) {}
}
