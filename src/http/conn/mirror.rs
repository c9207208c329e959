//! Request mirroring (`request_mirror_policies`): a copy of a sampled
//! request goes to the mirror cluster by the same forwarding path the
//! request itself takes — pools, circuit breakers, timeouts, upstream
//! stats — from a task of its own on the shard, through a downstream that
//! holds the buffered body and drops whatever comes back. Nothing the
//! copy meets reaches the client, its response or its stats.

use super::downstream::Downstream;
use super::forward::Upstream;
use super::{Exchange, Protocol, Proxy};
use crate::http::body::{pump, OutFraming, PumpError, Sink, Source};
use crate::http::codec::{Framing, Patience, ReadBuf};
use crate::http::flags::ResponseFlags;
use crate::http::head::{HeadSlots, Overrides, Peer, Request};
use crate::http::local_reply::LocalReply;
use crate::http::upgrade::{End, Tunneled};
use crate::net::Stream;
use crate::router::Mirror;
use crate::server::shard::{Shard, View};
use crate::snapshot::{HttpChain, HttpSettings};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What a mirrored request needs from the request it copies.
pub(super) struct Original<'a> {
    /// The head forwarded upstream, before any attempt's changes.
    pub head: &'a [u8],
    /// Where its host and timeout values are.
    pub slots: &'a HeadSlots,
    /// Its whole body as received (chunks and all), or None when it was
    /// streamed rather than buffered.
    pub body: Option<&'a [u8]>,
}

/// Sends a copy of the request to each of the route's mirrors whose share
/// of requests it falls in. A streamed body (past the buffer limit) is
/// not copied.
pub(super) fn mirror(x: &Exchange<'_>, to: &Upstream<'_>, original: &Original<'_>) {
    let Some(body) = original.body else { return };
    for m in &to.forward.mirrors {
        let sampled =
            m.millionths >= 1_000_000 || x.shard.random() % 1_000_000 < u64::from(m.millionths);
        if !sampled || x.view.snapshot.clusters.get(m.cluster).is_none() {
            continue;
        }
        let (head, slots) = shadow_head(original.head, original.slots, m.host_suffix);
        let copy = MirroredRequest {
            shard: x.shard.clone(),
            view: x.view.clone(),
            chain: x.chain.clone(),
            mirror: m.clone(),
            req: Request {
                head_len: 0,
                framing: x.req.framing,
                keep_alive: true,
                expect_continue: false,
                is_head: x.req.is_head,
                grpc: x.req.grpc,
                upgrade: false,
                websocket: false,
                generated_id: None,
                client: x.req.client.clone(),
                filtered: Default::default(),
            },
            peer: x.peer.clone(),
            protocol: x.protocol,
            head,
            slots,
            body: body.to_vec(),
        };
        monoio::spawn(copy.send());
    }
}

/// A request's copy, owned by the task that sends it.
struct MirroredRequest {
    shard: Rc<Shard>,
    view: Rc<View>,
    chain: HttpChain,
    mirror: Arc<Mirror>,
    req: Request,
    peer: Peer,
    protocol: Protocol,
    head: Vec<u8>,
    slots: HeadSlots,
    body: Vec<u8>,
}

impl MirroredRequest {
    /// Forwards the copy and drops the answer.
    async fn send(self) {
        let forward = &*self.mirror.forward;
        let x = Exchange::mirrored(
            &self.shard,
            &self.view,
            &self.chain,
            self.req,
            self.peer,
            self.protocol,
            forward,
        );
        let mut proxy = Proxy {
            down: Shadow {
                ended: Ended,
                rbuf: ReadBuf::holding(self.body),
            },
            ubuf: ReadBuf::default(),
        };
        let to = Upstream {
            forward,
            cluster: self.mirror.cluster,
            criteria: None,
            slots: self.slots,
            hash: None,
            overrides: Overrides::default(),
        };
        proxy.forward(&x, to, self.head).await;
    }
}

/// The copy's head, as Envoy sends a mirrored request through its async
/// client: the host gets `-shadow` (before any port) unless `suffix` is
/// off, the host's own address is appended to `x-forwarded-for`, and the
/// request is marked `x-envoy-internal: true`.
fn shadow_head(head: &[u8], slots: &HeadSlots, suffix: bool) -> (Vec<u8>, HeadSlots) {
    let mut copy = Edited {
        head: head.to_vec(),
        slots: slots.clone(),
    };
    if suffix {
        let host = std::str::from_utf8(&head[slots.host.clone()]).unwrap_or_default();
        let at = match crate::router::port_start(host) {
            Some(colon) => slots.host.start + colon,
            None => slots.host.end,
        };
        copy.insert(at, b"-shadow");
    }
    let local = crate::http::xff::local_address(false).to_string();
    match line_end(&copy.head, "x-forwarded-for") {
        Some(end) => copy.insert(end, format!(",{local}").as_bytes()),
        None => copy.append("x-forwarded-for", local.as_bytes()),
    }
    if line_end(&copy.head, "x-envoy-internal").is_none() {
        copy.append("x-envoy-internal", b"true");
    }
    (copy.head, copy.slots)
}

/// A head being edited, with the places of its per-attempt values kept
/// in step.
struct Edited {
    head: Vec<u8>,
    slots: HeadSlots,
}

impl Edited {
    /// Inserts `bytes` at `at`: a value that ends there grows, one after
    /// it moves.
    fn insert(&mut self, at: usize, bytes: &[u8]) {
        self.head.splice(at..at, bytes.iter().copied());
        let n = bytes.len();
        let moved = |r: &mut std::ops::Range<usize>| {
            if r.start >= at {
                r.start += n;
            }
            if r.end >= at {
                r.end += n;
            }
        };
        moved(&mut self.slots.host);
        if let Some(r) = &mut self.slots.expected_timeout {
            moved(r);
        }
    }

    /// Adds a header line at the end of the head (after every slot, so
    /// none moves).
    fn append(&mut self, name: &str, value: &[u8]) {
        super::forward::append_header(&mut self.head, name, value);
    }
}

/// Where the value of header `name`'s first line ends (before its CRLF).
fn line_end(head: &[u8], name: &str) -> Option<usize> {
    let mut at = head.windows(2).position(|w| w == b"\r\n")? + 2;
    while at + 2 < head.len() {
        let len = head[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &head[at..at + len];
        let named = line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes());
        if named {
            return Some(at + len);
        }
        at += len + 2;
    }
    None
}

/// A body source whose bytes are all in the read buffer already (a
/// copy's, a call's).
pub(super) struct Ended;

impl Source for Ended {
    async fn fill(&mut self, _: &mut ReadBuf, _: usize, _: Patience) -> std::io::Result<usize> {
        Ok(0)
    }
}

/// Where a copy's answer goes: nowhere.
struct Discard;

impl Sink for Discard {
    async fn write(&mut self, out: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        (Ok(out.len()), out)
    }
}

/// The downstream of a copy: its body from memory, every answer read to
/// its end (so that the upstream connection can be reused) and dropped.
struct Shadow {
    ended: Ended,
    rbuf: ReadBuf,
}

impl Downstream for Shadow {
    type Body = Ended;
    const GONE: ResponseFlags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;

    fn request_body(&mut self) -> (&mut Ended, &mut ReadBuf) {
        (&mut self.ended, &mut self.rbuf)
    }

    async fn send_reply(
        &mut self,
        _: &Shard,
        _: &HttpSettings,
        _: &LocalReply<'_>,
        _: bool,
        _: bool,
    ) -> bool {
        true
    }

    async fn send_continue(&mut self) -> bool {
        true
    }

    async fn relay<S: Source>(
        &mut self,
        _: Vec<u8>,
        up: &mut S,
        ubuf: &mut ReadBuf,
        framing: Framing,
        patience: Patience,
    ) -> Result<crate::http::body::Moved, PumpError> {
        let head = Vec::new();
        pump(
            up,
            ubuf,
            framing,
            &mut Discard,
            head,
            OutFraming::Raw,
            patience,
        )
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_names_a_shadow_host_and_keeps_its_slots() {
        let head = b"GET / HTTP/1.1\r\nhost: a.example:8080\r\nx-envoy-expected-rq-timeout-ms: 15000\r\n\r\n";
        let text = std::str::from_utf8(head).expect("text");
        let host_at = text.find("a.example").expect("host");
        let timeout_at = text.find("15000").expect("timeout");
        let slots = HeadSlots {
            host: host_at..host_at + "a.example:8080".len(),
            expected_timeout: Some(timeout_at..timeout_at + 5),
        };
        let (copy, moved) = shadow_head(head, &slots, true);
        assert_eq!(&copy[moved.host.clone()], b"a.example-shadow:8080");
        assert_eq!(&copy[moved.expected_timeout.expect("moved")], b"15000");
        let local = crate::http::xff::local_address(false).to_string();
        let text = String::from_utf8(copy).expect("text");
        assert!(text.ends_with(&format!(
            "x-forwarded-for: {local}\r\nx-envoy-internal: true\r\n\r\n"
        )));
        // An existing x-forwarded-for gets the address appended.
        let head = b"GET / HTTP/1.1\r\nx-forwarded-for: 10.0.0.1\r\nhost: a\r\n\r\n";
        let host_at = std::str::from_utf8(head)
            .expect("text")
            .rfind('a')
            .expect("host");
        let slots = HeadSlots {
            host: host_at..host_at + 1,
            expected_timeout: None,
        };
        let (copy, moved) = shadow_head(head, &slots, false);
        assert_eq!(&copy[moved.host], b"a");
        let text = String::from_utf8(copy).expect("text");
        assert!(text.contains(&format!("x-forwarded-for: 10.0.0.1,{local}\r\n")));
    }
}
