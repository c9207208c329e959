//! Request and response head analysis: one parse, one pass over the
//! headers, producing the bytes to send on and how the body is framed.

use super::codec::{
    has_token, is_hop_by_hop, parse_content_length, push_header, push_number_header, reason,
    Framing,
};
use super::filters::{self, Filtered};
use super::flags::ResponseFlags;
use super::grpc;
use super::local_reply::LocalReply;
use super::mutate::{self, Edits};
use super::upgrade;
use super::xff;
use crate::access_log::Record;
use crate::config::ServerHeaderTransformation;
use crate::config::{HeaderMutations, HostRewrite, LbMetadata, RetryOn};
use crate::net::Address;
use crate::router::hash::request_hash;
use crate::router::{port_start, Action, Forward, Matched, RequestView};
use crate::server::shard::Shard;
use crate::snapshot::HttpSettings;
use std::borrow::Cow;
use std::cell::Cell;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, SystemTime};

/// Header slots parsed on the stack; larger limits use the heap.
const STACK_HEADERS: usize = 128;
/// Headers a `Connection` value may nominate as hop-by-hop.
const MAX_CONNECTION_TOKENS: usize = 16;
/// Largest upstream response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 60 * 1024;
/// Most response headers accepted.
const MAX_RESPONSE_HEADERS: usize = 100;

/// The result of looking at the buffered start of a request.
#[derive(Debug)]
// Returned by value once per request; boxing the large variant would cost
// an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum ParsedRequest<'v> {
    /// More bytes are needed.
    Partial,
    /// The request is invalid; answer and close.
    Reject(LocalReply<'static>),
    /// A complete head and what to do with it.
    Request(Request, Plan<'v>),
    /// A complete head whose filters wait on a call: make it, then parse
    /// the head again with the answer ([`Resume`]).
    Suspended(Box<Suspended<'v>>),
}

/// A request whose filter chain stopped for a call, and what it goes on
/// with: the filters' decision so far (its `call` is the call) and the
/// route and cluster they saw.
#[derive(Debug)]
pub struct Suspended<'v> {
    /// The filters' decision so far.
    pub decision: filters::Decision,
    matched: Option<Matched<'v>>,
    chosen: Chosen<'v>,
}

/// A stopped chain and its call's answer: the head's analysis goes on
/// from the filter that waited (routing is not done again, and the
/// filters before it do not run again).
#[derive(Debug)]
pub struct Resume<'v> {
    /// Where the chain stopped.
    pub suspended: Box<Suspended<'v>>,
    /// What the call came to.
    pub answer: filters::Answer,
}

/// A parsed request's framing and connection facts.
#[derive(Debug)]
pub struct Request {
    /// Bytes of the head, to consume from the read buffer.
    pub head_len: usize,
    /// How the request body is framed.
    pub framing: Framing,
    /// Whether the client allows the connection to stay open.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (Envoy answers it itself).
    pub expect_continue: bool,
    /// A HEAD request (the response has no body).
    pub is_head: bool,
    /// A gRPC request: local replies to it are gRPC statuses.
    pub grpc: bool,
    /// An upgrade (`upgrade_configs` allowed it): a `101` answer turns the
    /// connection into a tunnel.
    pub upgrade: bool,
    /// The upgrade is to WebSocket.
    pub websocket: bool,
    /// The `x-request-id` Ringway generated (none when the client sent one).
    pub generated_id: Option<[u8; 36]>,
    /// The trusted client address (from `x-forwarded-for` rules; port 0
    /// when it came from the header), when the request was forwarded.
    pub client: Option<Address>,
    /// What the HTTP filters asked of it.
    pub filtered: Filtered,
}

/// What the connection manager does with a request.
#[derive(Debug)]
pub enum Plan<'v> {
    /// Answer locally, with the matched route's response headers if any.
    Local(LocalReply<'v>, Option<Matched<'v>>),
    /// An HTTP filter answered, with these response flags.
    Filter(LocalReply<'static>, ResponseFlags, Option<Matched<'v>>),
    /// A route's `direct_response`.
    Direct(LocalReply<'v>, Matched<'v>),
    /// A route's `redirect`.
    Redirect(LocalReply<'static>, Matched<'v>),
    /// `cluster_header` named no cluster: answer this status.
    NoCluster(u16, Matched<'v>),
    /// No route matched: 404.
    NoRoute,
    /// The overload manager stops accepting requests: 503.
    Overloaded,
    /// Forward to a cluster with this head.
    Forward {
        /// The matched route.
        matched: Matched<'v>,
        /// The matched route's action.
        forward: &'v Forward,
        /// The chosen cluster's index.
        cluster: usize,
        /// The subset criteria for it (`metadata_match`), if any.
        criteria: Option<&'v LbMetadata>,
        /// The request head to send upstream, framing header included.
        head: Vec<u8>,
        /// Where values an attempt may rewrite are in `head`.
        slots: HeadSlots,
        /// The route's hash-policy hash, if its policies produced one.
        hash: Option<u64>,
        /// A `set-cookie` value for a generated hash-policy cookie.
        set_cookie: Option<Vec<u8>>,
        /// What the request's `x-envoy-*` headers override.
        overrides: Overrides,
        /// How long the whole stream may last (`max_stream_duration`).
        stream_duration: Option<Duration>,
    },
}

impl<'v> Plan<'v> {
    /// The matched route, when one matched.
    pub fn matched(&self) -> Option<Matched<'v>> {
        match self {
            Plan::Direct(_, m) | Plan::Redirect(_, m) | Plan::NoCluster(_, m) => Some(*m),
            Plan::Forward { matched, .. } => Some(*matched),
            Plan::Local(_, m) | Plan::Filter(_, _, m) => *m,
            Plan::NoRoute | Plan::Overloaded => None,
        }
    }
}

/// Where the values that differ per attempt are in an upstream head.
#[derive(Debug, Clone)]
pub struct HeadSlots {
    /// The `host` value (for `auto_host_rewrite`, which needs the endpoint).
    pub host: Range<usize>,
    /// The `x-envoy-expected-rq-timeout-ms` value (it shrinks to what is
    /// left, or to the per-try timeout, on each attempt).
    pub expected_timeout: Option<Range<usize>>,
}

/// Per-request overrides from the `x-envoy-*` request headers Envoy
/// honours (they are consumed, not forwarded).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `x-envoy-retry-on` and `x-envoy-retry-grpc-on`, added to the
    /// route's conditions.
    pub retry_on: RetryOn,
    /// `x-envoy-max-retries`.
    pub max_retries: Option<u32>,
    /// `x-envoy-retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `x-envoy-upstream-rq-timeout-ms` (`Some(None)`: 0, no timeout).
    pub timeout: Option<Option<Duration>>,
    /// `x-envoy-upstream-rq-per-try-timeout-ms`.
    pub per_try_timeout: Option<Duration>,
}

impl Overrides {
    /// Reads one request header; false when it is not an override header.
    fn read(&mut self, name: &str, value: &[u8]) -> bool {
        let text = std::str::from_utf8(value).unwrap_or("").trim();
        let ms = || text.parse::<u64>().ok().map(Duration::from_millis);
        if name.eq_ignore_ascii_case("x-envoy-retry-on") {
            self.retry_on = self.retry_on.union(RetryOn::parse_lenient(text));
        } else if name.eq_ignore_ascii_case("x-envoy-retry-grpc-on") {
            self.retry_on = self.retry_on.union(RetryOn::parse_grpc_lenient(text));
        } else if name.eq_ignore_ascii_case("x-envoy-max-retries") {
            self.max_retries = text.parse().ok();
        } else if name.eq_ignore_ascii_case("x-envoy-retriable-status-codes") {
            self.retriable_status_codes
                .extend(text.split(',').filter_map(|c| c.trim().parse::<u16>().ok()));
        } else if name.eq_ignore_ascii_case("x-envoy-upstream-rq-timeout-ms") {
            self.timeout = ms().map(|d| (!d.is_zero()).then_some(d));
        } else if name.eq_ignore_ascii_case("x-envoy-upstream-rq-per-try-timeout-ms") {
            self.per_try_timeout = ms().filter(|d| !d.is_zero());
        } else {
            return false;
        }
        true
    }
}

/// The downstream connection's addresses (for header substitutions).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub remote: Address,
    /// The address it connected to.
    pub local: Option<Address>,
    /// The TLS session the connection runs in, if any.
    pub tls: Option<std::rc::Rc<crate::tls::SessionInfo>>,
    /// The socket's own peer, when a PROXY protocol header named another
    /// client as `remote`.
    pub direct_remote: Option<Address>,
    /// What HTTP filters keep for the connection (shared by its streams).
    pub filter_state: std::rc::Rc<crate::http::filters::ConnectionState>,
}

fn with_headers<'b, R>(max: usize, f: impl FnOnce(&mut [httparse::Header<'b>]) -> R) -> R {
    if max <= STACK_HEADERS {
        let mut storage: [httparse::Header<'b>; STACK_HEADERS] =
            [httparse::EMPTY_HEADER; STACK_HEADERS];
        f(&mut storage[..max])
    } else {
        let mut storage = vec![httparse::EMPTY_HEADER; max];
        f(&mut storage)
    }
}

/// Parses and analyses the request at the start of `data`; `resume`
/// carries on a chain that stopped for a call on this same head.
pub fn parse_request<'v>(
    data: &[u8],
    http: &'v HttpSettings,
    peer: &Peer,
    shard: &Shard,
    resume: Option<Resume<'v>>,
) -> ParsedRequest<'v> {
    with_headers(http.max_headers_count, |headers| {
        let mut req = httparse::Request::new(headers);
        let head_len = match req.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if data.len() > http.max_request_headers_bytes {
                    ParsedRequest::Reject(too_large())
                } else {
                    ParsedRequest::Partial
                };
            }
            Err(httparse::Error::TooManyHeaders) => return ParsedRequest::Reject(too_large()),
            // The HTTP/2 preface where only HTTP/1.1 is spoken: Envoy's
            // codec calls it malformed.
            Err(httparse::Error::Version) if data.starts_with(b"PRI * HTTP/2.0") => {
                return ParsedRequest::Reject(bad_request())
            }
            // Another HTTP version: Envoy asks for an upgrade to 1.1.
            Err(httparse::Error::Version) if names_a_version(data) => {
                return ParsedRequest::Reject(LocalReply::closing(426, "Upgrade Required"))
            }
            Err(_) => return ParsedRequest::Reject(bad_request()),
        };
        if head_len > http.max_request_headers_bytes {
            return ParsedRequest::Reject(too_large());
        }
        analyse_request(&req, &data[..head_len], http, peer, shard, resume)
    })
}

/// The `x-envoy-*` request headers only an internal client may send
/// (Envoy removes them from every other request); `edge` adds those an
/// edge request may not carry either.
fn is_internal_only(name: &str, edge: bool) -> bool {
    const INTERNAL_ONLY: [&str; 10] = [
        "x-envoy-retry-on",
        "x-envoy-retry-grpc-on",
        "x-envoy-max-retries",
        "x-envoy-upstream-alt-stat-name",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-force-trace",
        "x-envoy-ip-tags",
    ];
    const EDGE_ONLY: [&str; 3] = [
        "x-envoy-decorator-operation",
        "x-envoy-downstream-service-cluster",
        "x-envoy-downstream-service-node",
    ];
    let is = |list: &[&str]| list.iter().any(|h| name.eq_ignore_ascii_case(h));
    name.len() > 8
        && name.as_bytes()[..8].eq_ignore_ascii_case(b"x-envoy-")
        && (is(&INTERNAL_ONLY) || (edge && is(&EDGE_ONLY)))
}

/// The request methods Envoy's HTTP/1 codec accepts (its parser's list;
/// `MSEARCH` is spelled as Envoy spells it). Others are a 400.
fn is_known_method(method: &str) -> bool {
    const METHODS: [&str; 34] = [
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "PATCH",
        "CONNECT",
        "TRACE",
        "ACL",
        "BIND",
        "CHECKOUT",
        "COPY",
        "LINK",
        "LOCK",
        "MERGE",
        "MKACTIVITY",
        "MKCALENDAR",
        "MKCOL",
        "MOVE",
        "MSEARCH",
        "NOTIFY",
        "PROPFIND",
        "PROPPATCH",
        "PURGE",
        "REBIND",
        "REPORT",
        "SEARCH",
        "SOURCE",
        "SUBSCRIBE",
        "UNBIND",
        "UNLINK",
        "UNLOCK",
        "UNSUBSCRIBE",
    ];
    METHODS.contains(&method)
}

/// Whether the request line ends in `HTTP/<digit>.<digit>` (a version,
/// just not 1.0 or 1.1).
fn names_a_version(data: &[u8]) -> bool {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    matches!(
        line.rsplit(|&b| b == b' ').next(),
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

/// Whether `b` may appear in an authority: RFC 3986's `host` and `port`
/// characters plus `@` (userinfo), the set Envoy accepts.
fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=@[]_~".contains(&b)
}

fn too_large() -> LocalReply<'static> {
    LocalReply::closing(431, "Request Header Fields Too Large")
}

fn bad_request() -> LocalReply<'static> {
    LocalReply::closing(400, "Bad Request")
}

/// Headers of interest found in one pass.
#[derive(Default)]
struct Seen<'a> {
    host: Option<&'a [u8]>,
    content_length: Option<u64>,
    transfer_encoding: Option<&'a [u8]>,
    connection_tokens: Vec<&'a [u8]>,
    close: bool,
    upgrade: Option<&'a [u8]>,
    expect_continue: bool,
    request_id: bool,
    forwarded_proto: bool,
    te_trailers: bool,
    grpc: bool,
}

/// The cluster a forwarding route sends a request to, or the status
/// when none can be had.
type Chosen<'t> = Option<
    Result<
        (
            usize,
            Option<&'t LbMetadata>,
            Option<&'t filters::RouteConfigs>,
        ),
        u16,
    >,
>;

/// Chooses the matched route's cluster (before the filters run: Envoy's
/// route entry names it when they ask; the router acts on the choice
/// after), with the weighted cluster's own filter configs on the match
/// (they are the most specific).
fn choose<'t>(
    matched: Option<Matched<'t>>,
    view: &RequestView,
    shard: &Shard,
) -> (Option<Matched<'t>>, Chosen<'t>) {
    let chosen = matched.and_then(|m| match &m.route.action {
        Action::Forward(f) => Some(f.cluster(view, shard.random(), &m.table.clusters_by_name)),
        _ => None,
    });
    let picked = chosen.as_ref().and_then(|c| c.as_ref().ok());
    let matched = matched.map(|m| Matched {
        weighted: picked.and_then(|(_, _, configs)| *configs),
        ..m
    });
    (matched, chosen)
}

/// The chosen cluster, by position.
fn chosen_cluster(chosen: &Chosen) -> Option<usize> {
    chosen
        .as_ref()
        .and_then(|c| c.as_ref().ok())
        .map(|(c, _, _)| *c)
}

fn analyse_request<'v>(
    req: &httparse::Request<'_, '_>,
    raw_head: &[u8],
    http: &'v HttpSettings,
    peer: &Peer,
    shard: &Shard,
    resume: Option<Resume<'v>>,
) -> ParsedRequest<'v> {
    let head_len = raw_head.len();
    let listener_port = peer.local.as_ref().map_or(0, Address::port);
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return ParsedRequest::Reject(bad_request());
    };
    if !is_known_method(method) {
        return ParsedRequest::Reject(bad_request());
    }
    if version == 0 {
        // Envoy's default (accept_http_10: false).
        return ParsedRequest::Reject(LocalReply::closing(426, "Upgrade Required"));
    }
    let mut seen = Seen::default();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if seen.host.replace(h.value).is_some() {
                return ParsedRequest::Reject(bad_request());
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_content_length(h.value) else {
                return ParsedRequest::Reject(bad_request());
            };
            // Even equal values: two lengths are how requests get smuggled,
            // and Envoy rejects them.
            if seen.content_length.replace(n).is_some() {
                return ParsedRequest::Reject(bad_request());
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if seen.transfer_encoding.replace(h.value).is_some() {
                return ParsedRequest::Reject(LocalReply::closing(501, "Not Implemented"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    seen.close = true;
                }
                if seen.connection_tokens.len() == MAX_CONNECTION_TOKENS {
                    return ParsedRequest::Reject(bad_request());
                }
                seen.connection_tokens.push(token);
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            seen.upgrade = Some(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            seen.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("x-request-id") {
            seen.request_id = true;
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            seen.forwarded_proto = true;
        } else if name.eq_ignore_ascii_case("te") {
            seen.te_trailers |= has_token(h.value, "trailers");
        } else if name.eq_ignore_ascii_case("content-type") {
            seen.grpc = grpc::is_grpc_content_type(h.value);
        }
    }
    let framing = match (seen.transfer_encoding, seen.content_length) {
        (Some(_), Some(_)) => return ParsedRequest::Reject(bad_request()),
        (Some(te), None) if te.trim_ascii().eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (Some(_), None) => {
            return ParsedRequest::Reject(LocalReply::closing(501, "Not Implemented"))
        }
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    let keep_alive = !seen.close && method != "CONNECT";
    // An upgrade names its protocol in `upgrade` and `connection: upgrade`
    // (`h2c` is ignored, as Envoy ignores it).
    let upgrade_kind = seen
        .upgrade
        .filter(|u| !u.eq_ignore_ascii_case(b"h2c"))
        .filter(|_| {
            seen.connection_tokens
                .iter()
                .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        });
    // Set once the filters ran (a request refused before has none).
    let filtered = Cell::new(Filtered::default());
    let request_with = |plan, generated_id, client| {
        ParsedRequest::Request(
            Request {
                head_len,
                framing,
                keep_alive,
                expect_continue: seen.expect_continue,
                is_head: method == "HEAD",
                grpc: seen.grpc,
                upgrade: upgrade_kind.is_some(),
                websocket: upgrade_kind.is_some_and(|k| k.eq_ignore_ascii_case(b"websocket")),
                generated_id,
                client,
                filtered: filtered.take(),
            },
            plan,
        )
    };
    // A request answered locally gets an id too when it has none (Envoy's
    // connection manager does it before routing, so its log shows one).
    let request = |plan| {
        let id = (!seen.request_id && http.generate_request_id).then(|| shard.request_id());
        request_with(plan, id, None)
    };
    // Refused before routing, as Envoy's connection manager refuses it.
    if http.overloaded.load(std::sync::atomic::Ordering::Relaxed) {
        return request(Plan::Overloaded);
    }
    // No route matches CONNECT without a connect_matcher, which Ringway
    // does not have yet: Envoy's 404, and the connection closes (it is
    // not kept alive, below).
    if method == "CONNECT" {
        return request(Plan::NoRoute);
    }
    // Absolute-form targets carry the authority; it overrides Host.
    let (authority, path) = match split_absolute(target) {
        Some((authority, path)) => (Some(authority.as_bytes()), path),
        None => (seen.host, target),
    };
    if !(path.starts_with('/') || (path == "*" && method == "OPTIONS")) {
        return ParsedRequest::Reject(bad_request());
    }
    // A fragment never belongs in a request target (RFC 9110 §7.1);
    // matching with it would let `/private#x` past a `/private` rule.
    // Envoy rejects it in its codec (400, no body), or strips it when the
    // runtime says so.
    let path = match path.split_once('#') {
        Some((before, _))
            if http
                .strip_fragment
                .load(std::sync::atomic::Ordering::Relaxed) =>
        {
            before
        }
        Some(_) => return ParsedRequest::Reject(LocalReply::closing(400, "")),
        None => path,
    };
    let Some(authority) = authority else {
        // Envoy's codec rejects a request without a host: no body.
        return ParsedRequest::Reject(LocalReply::closing(400, ""));
    };
    let Ok(host) = std::str::from_utf8(authority) else {
        return ParsedRequest::Reject(bad_request());
    };
    if !host.bytes().all(is_authority_byte) {
        return ParsedRequest::Reject(bad_request());
    }
    let host = strip_port(host, http, listener_port);
    let lower: Cow<str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    };
    let view = RequestView {
        method,
        path,
        authority: host,
        scheme: if peer.tls.is_some() { "https" } else { "http" },
        headers: req.headers,
    };
    let (matched, chosen, resumed) = match resume {
        // Routed before the chain stopped.
        Some(Resume { suspended, answer }) => {
            let Suspended {
                decision,
                matched,
                chosen,
            } = *suspended;
            (matched, chosen, Some((decision, answer)))
        }
        None => {
            let matched = http.routes.route(&lower, &view);
            // An upgrade no upgrade_configs allows gets Envoy's 403 once the
            // route is known (its response headers apply), and the
            // connection closes.
            let route_upgrades = matched.and_then(|m| match &m.route.action {
                Action::Forward(f) => Some(f.upgrades.as_slice()),
                _ => None,
            });
            let refused = upgrade_kind.is_some_and(|kind| {
                !upgrade::allowed(kind, route_upgrades.unwrap_or(&[]), &http.upgrades)
            });
            if refused {
                return request(Plan::Local(LocalReply::closing(403, ""), matched));
            }
            let (matched, chosen) = choose(matched, &view, shard);
            (matched, chosen, None)
        }
    };
    let cluster = chosen_cluster(&chosen);
    let peer_ip = peer.remote.ip().map(|a| a.ip());
    let forwarded = xff::resolve(
        &http.xff,
        peer_ip,
        xff::local_address(peer_ip.is_some_and(|ip| ip.is_ipv6())),
        view.header("x-forwarded-for").as_deref(),
    );
    let client = match forwarded.client {
        Some(ip) if forwarded.direct => Address::Ip(SocketAddr::new(ip, peer.remote.port())),
        Some(ip) => Address::Ip(SocketAddr::new(ip, 0)),
        None => peer.remote.clone(),
    };
    let downstream = filters::Downstream {
        peer,
        client: &client,
    };
    // A filter that clears the route cache (jwt_authn's claims) has the
    // route matched again over the headers as it edited them.
    let mut rerouted = None;
    let mut reroute = |edits: &Edits| {
        let headers = filters::edited_headers(&view, edits);
        let edited = RequestView {
            headers: &headers,
            ..view
        };
        let (matched, chosen) = choose(http.routes.route(&lower, &edited), &edited, shard);
        let cluster = chosen_cluster(&chosen);
        rerouted = Some((matched, chosen));
        (matched, cluster)
    };
    let decision = http.filters.on_request(
        &view,
        matched,
        cluster,
        &downstream,
        shard,
        &mut reroute,
        resumed,
    );
    let (matched, chosen) = match rerouted {
        Some(again) => again,
        None => (matched, chosen),
    };
    if decision.call.is_some() {
        return ParsedRequest::Suspended(Box::new(Suspended {
            decision,
            matched,
            chosen,
        }));
    }
    filtered.set(decision.filtered);
    let filter_edits = decision.request_edits;
    let filter_path = decision.path;
    if let Some((reply, flags)) = decision.reply {
        return request(Plan::Filter(reply, flags, matched));
    }
    let Some(matched) = matched else {
        return request(Plan::NoRoute);
    };
    let route = matched.route;
    let forward = match &route.action {
        Action::Direct { status, body } => {
            return request(Plan::Direct(LocalReply::bytes(*status, body), matched));
        }
        Action::Redirect(r) => {
            let location = route.redirect_location(r, host, path);
            let mut reply = LocalReply::new(r.status, "");
            reply
                .headers
                .push(("location".to_string(), location.into_bytes()));
            return request(Plan::Redirect(reply, matched));
        }
        Action::Forward(forward) => forward,
    };
    let (cluster, criteria) = match chosen {
        Some(Ok((cluster, criteria, _))) => (cluster, criteria),
        Some(Err(status)) => return request(Plan::NoCluster(status, matched)),
        // Only a forwarding route reaches here, and it always chose.
        None => return request(Plan::NoRoute),
    };
    // An edge request from an external client gets a fresh x-request-id
    // unless preserve_external_request_id says to keep the client's.
    let reset_id = seen.request_id && forwarded.edge && !http.preserve_external_request_id;
    // A client the edge does not trust cannot choose the scheme.
    let set_proto =
        !seen.forwarded_proto || (http.xff.use_remote_address && http.xff.trusted_hops == 0);
    // As Envoy, hash policies run only for a cluster whose balancer hashes
    // (so no cookie is generated for a round-robin cluster).
    let hashing = !forward.hash_policy.is_empty()
        && shard
            .view()
            .snapshot
            .clusters
            .get(cluster)
            .is_some_and(|c| c.config.lb_policy.is_hashing());
    let (hash, set_cookie) = if hashing {
        request_hash(&forward.hash_policy, &view, &client, || shard.random())
    } else {
        (None, None)
    };
    let levels = matched.request_headers();
    let edits = if levels.iter().all(|l| l.is_empty()) {
        filter_edits
    } else {
        let record = Record {
            remote: Some(client.clone()),
            tls: peer.tls.as_deref(),
            direct_remote: Some(
                peer.direct_remote
                    .clone()
                    .unwrap_or_else(|| peer.remote.clone()),
            ),
            ..Record::new(
                SystemTime::now(),
                raw_head,
                peer.remote.clone(),
                peer.local.clone(),
            )
        };
        let present = |name: &str| {
            req.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        filter_edits.then(mutate::plan(&levels, &present, &record))
    };
    // A filter's path is what the route rewrites (and calls original).
    let path_in = filter_path.as_deref().unwrap_or(path);
    let rewritten = route.rewrite(path_in);
    let upstream_host = match &forward.host_rewrite {
        HostRewrite::Literal(h) => h.as_str(),
        HostRewrite::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(host),
        HostRewrite::None | HostRewrite::Auto => host,
    };
    let (grpc_timeout, stream_duration) = stream_duration(forward, http, seen.grpc, req);
    let mut overrides = Overrides::default();
    let mut head = Vec::with_capacity(head_len + 256);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(rewritten.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let host_start = head.len();
    head.extend_from_slice(upstream_host.as_bytes());
    let host_value = host_start..head.len();
    head.extend_from_slice(b"\r\n");
    // An upgrade keeps the two headers that ask for it.
    let asks_upgrade = |name: &str| {
        upgrade_kind.is_some()
            && (name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection"))
    };
    for h in req.headers.iter() {
        let name = h.name;
        if asks_upgrade(name) {
            push_header(&mut head, name, h.value);
            continue;
        }
        if name.eq_ignore_ascii_case("host")
            || is_hop_by_hop(name)
            || (seen.expect_continue && name.eq_ignore_ascii_case("expect"))
            || name.eq_ignore_ascii_case("x-envoy-expected-rq-timeout-ms")
            || name.eq_ignore_ascii_case("x-envoy-original-path")
            || name.eq_ignore_ascii_case("x-envoy-original-host")
            || seen
                .connection_tokens
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
            || !edits.keeps(name)
            || (!forwarded.internal && is_internal_only(name, forwarded.edge))
            || overrides.read(name, h.value)
            || (reset_id && name.eq_ignore_ascii_case("x-request-id"))
            || (grpc_timeout.is_some() && name.eq_ignore_ascii_case("grpc-timeout"))
            || name.eq_ignore_ascii_case("x-envoy-internal")
            || (set_proto && name.eq_ignore_ascii_case("x-forwarded-proto"))
            || (http.xff.use_remote_address
                && (name.eq_ignore_ascii_case("x-envoy-external-address")
                    || (forwarded.xff.is_some() && name.eq_ignore_ascii_case("x-forwarded-for"))))
        {
            continue;
        }
        push_header(&mut head, name, h.value);
    }
    if rewritten != path_in {
        push_header(&mut head, "x-envoy-original-path", path_in.as_bytes());
    }
    if upstream_host != host {
        push_header(&mut head, "x-envoy-original-host", host.as_bytes());
    }
    for (name, value) in &edits.added {
        push_header(&mut head, name, value);
    }
    if let Some(xff) = &forwarded.xff {
        push_header(&mut head, "x-forwarded-for", xff.as_bytes());
    }
    if forwarded.internal {
        push_header(&mut head, "x-envoy-internal", b"true");
    } else if let Some(external) = forwarded.client.filter(|_| forwarded.edge) {
        let address = external.to_string();
        push_header(&mut head, "x-envoy-external-address", address.as_bytes());
    }
    if set_proto {
        push_header(&mut head, "x-forwarded-proto", b"http");
    }
    if seen.te_trailers {
        // The one transfer coding a client may ask of the upstream.
        push_header(&mut head, "te", b"trailers");
    }
    let generated_id =
        ((!seen.request_id || reset_id) && http.generate_request_id).then(|| shard.request_id());
    if let Some(id) = &generated_id {
        push_header(&mut head, "x-request-id", id);
    }
    if let Some(t) = grpc_timeout {
        push_header(
            &mut head,
            "grpc-timeout",
            grpc::format_timeout(t).as_bytes(),
        );
    }
    // A route with max_stream_duration gets no expected-timeout header (as
    // in Envoy, whose router then uses its newer timeout rules).
    let route_timeout = overrides.timeout.unwrap_or(forward.timeout);
    let route_timeout = route_timeout.filter(|_| forward.max_stream_duration.is_none());
    let expected_timeout = route_timeout.map(|t| {
        push_number_header(
            &mut head,
            "x-envoy-expected-rq-timeout-ms",
            t.as_millis() as u64,
        );
        let end = head.len() - 2;
        let start = head[..end]
            .iter()
            .rposition(|&b| b == b' ')
            .map_or(end, |i| i + 1);
        start..end
    });
    match framing {
        Framing::Length(n) => push_number_header(&mut head, "content-length", n),
        Framing::Chunked => push_header(&mut head, "transfer-encoding", b"chunked"),
        // As Envoy: a bodiless request says so, unless its method never
        // carries a body (or the client said so itself).
        Framing::Empty
            if seen.content_length.is_some()
                || !matches!(method, "GET" | "HEAD" | "DELETE" | "TRACE" | "CONNECT") =>
        {
            push_header(&mut head, "content-length", b"0")
        }
        Framing::Empty | Framing::UntilClose => {}
    }
    head.extend_from_slice(b"\r\n");
    request_with(
        Plan::Forward {
            matched,
            forward,
            cluster,
            criteria,
            head,
            slots: HeadSlots {
                host: host_value,
                expected_timeout,
            },
            hash,
            set_cookie,
            overrides,
            stream_duration,
        },
        generated_id,
        Some(client),
    )
}

/// A forwarded request's `max_stream_duration`, Envoy's way, on a route
/// that sets one: for a gRPC request on a route with
/// `grpc_timeout_header_max`, its valid `grpc-timeout` (capped at that
/// maximum unless it is 0, less the offset, at least 0: zero then means
/// at once); else the route's `max_stream_duration` (0: none); else the
/// connection manager's. A gRPC request on such a route carries the limit
/// upstream as its `grpc-timeout`. Returns (the `grpc-timeout` to send,
/// the stream's limit).
fn stream_duration(
    forward: &Forward,
    http: &HttpSettings,
    grpc: bool,
    req: &httparse::Request<'_, '_>,
) -> (Option<Duration>, Option<Duration>) {
    let Some(route) = forward.max_stream_duration else {
        return (None, http.max_stream_duration);
    };
    let from_header = route.grpc_header_max.filter(|_| grpc).and_then(|max| {
        let header = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("grpc-timeout"))?;
        let mut timeout = grpc::parse_timeout(header.value)?;
        if !max.is_zero() && timeout > max {
            timeout = max;
        }
        Some(match route.grpc_header_offset {
            Some(offset) => timeout.saturating_sub(offset),
            None => timeout,
        })
    });
    let limit = match (from_header, route.max) {
        (Some(t), _) => Some(t),
        (None, Some(max)) => (!max.is_zero()).then_some(max),
        (None, None) => http.max_stream_duration,
    };
    (limit.filter(|_| grpc), limit)
}

/// Splits `http://authority/path` into its authority and path.
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    Some(match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        _ => (rest, "/"),
    })
}

/// Applies `strip_any_host_port` / `strip_matching_host_port`.
fn strip_port<'h>(host: &'h str, http: &HttpSettings, listener_port: u16) -> &'h str {
    if !(http.strip_any_host_port || http.strip_matching_host_port) {
        return host;
    }
    match port_start(host) {
        Some(p)
            if http.strip_any_host_port
                || host[p + 1..].parse::<u16>().ok() == Some(listener_port) =>
        {
            &host[..p]
        }
        _ => host,
    }
}

/// A parsed upstream response head, rewritten for the downstream.
#[derive(Debug)]
pub struct Response {
    /// Bytes of the upstream head.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// How the upstream frames the body.
    pub framing: Framing,
    /// Whether the upstream connection may be reused afterwards.
    pub reusable: bool,
    /// The upstream switched protocols for an upgrade: tunnel from here.
    pub switched: bool,
}

/// What parsing the buffered upstream response produced.
#[derive(Debug)]
pub enum ParsedResponse {
    /// More bytes are needed.
    Partial,
    /// An interim (1xx) response to skip, of this many bytes.
    Interim(usize),
    /// A final response head.
    Final(Response),
    /// The upstream spoke something other than HTTP/1.1.
    Invalid,
}

/// What shapes the downstream response head besides the upstream's bytes.
pub struct Shaping<'a> {
    /// The request was HEAD (no body follows).
    pub is_head: bool,
    /// `x-envoy-upstream-service-time`, in ms (None: not sent).
    pub service_time_ms: Option<u128>,
    /// Add `connection: close`.
    pub close: bool,
    /// The route's response header mutations, with the request's record.
    pub mutations: Option<([&'a HeaderMutations; 3], Record<'a>)>,
    /// A `set-cookie` value to add (a generated hash-policy cookie).
    pub set_cookie: Option<&'a [u8]>,
    /// `x-envoy-attempt-count` to add (`include_attempt_count_in_response`).
    pub attempt_count: Option<u32>,
    /// What the HTTP filters do to the response's headers.
    pub filter_steps: &'a [filters::ResponseStep],
    /// The request asked to upgrade: a `101` is final and keeps its
    /// `upgrade`/`connection` headers; any other answer closes the
    /// connection, as Envoy's does. Neither carries
    /// `x-envoy-upstream-service-time`.
    pub upgrade: bool,
    /// The upgrade was to WebSocket: an answer other than `101` goes out
    /// without its body (`content-length: 0`), as Envoy sends it.
    pub websocket: bool,
    /// The `date` value to add when the upstream sent none (Envoy keeps an
    /// upstream's own).
    pub date: &'a str,
}

/// Parses the upstream response in `data`; for a final response, writes the
/// downstream head into `out`.
pub fn parse_response(
    data: &[u8],
    http: &HttpSettings,
    shaping: Shaping,
    out: &mut Vec<u8>,
) -> ParsedResponse {
    let Shaping {
        is_head,
        service_time_ms,
        close,
        mutations,
        set_cookie,
        attempt_count,
        filter_steps,
        upgrade,
        websocket,
        date,
    } = shaping;
    let close = close || upgrade;
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let head_len = match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_RESPONSE_HEAD => n,
        Ok(httparse::Status::Partial) if data.len() <= MAX_RESPONSE_HEAD => {
            return ParsedResponse::Partial
        }
        _ => return ParsedResponse::Invalid,
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return ParsedResponse::Invalid;
    };
    let switched = upgrade && status == 101;
    if (100..200).contains(&status) && !switched {
        return if status == 101 {
            ParsedResponse::Invalid
        } else {
            ParsedResponse::Interim(head_len)
        };
    }
    let mut content_length = None;
    let mut chunked = false;
    let mut upstream_close = version == 0;
    let mut connection_values: Vec<&[u8]> = Vec::new();
    let mut has_server = false;
    let mut has_date = false;
    for h in resp.headers.iter() {
        // As Envoy's codec: one content-length, and a transfer-encoding
        // that is exactly `chunked`; anything else is a protocol error.
        if h.name.eq_ignore_ascii_case("content-length") {
            match parse_content_length(h.value) {
                Some(n) if content_length.is_none() => content_length = Some(n),
                _ => return ParsedResponse::Invalid,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return ParsedResponse::Invalid;
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if version == 0 && has_token(h.value, "keep-alive") {
                upstream_close = false;
            }
            upstream_close |= has_token(h.value, "close");
            connection_values.push(h.value);
        } else if h.name.eq_ignore_ascii_case("server") {
            has_server = true;
        } else if h.name.eq_ignore_ascii_case("date") {
            has_date = true;
        }
    }
    if chunked && content_length.is_some() {
        return ParsedResponse::Invalid;
    }
    let refused_websocket = websocket && !switched;
    let bodyless = is_head || status == 204 || status == 304 || switched || refused_websocket;
    let framing = if bodyless {
        Framing::Empty
    } else {
        match (chunked, content_length) {
            (true, _) => Framing::Chunked,
            (false, Some(0)) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        }
    };
    let reason_text = match reason(status) {
        "Unknown" => resp.reason.filter(|r| !r.is_empty()).unwrap_or("Unknown"),
        known => known,
    };
    let mut edits = match mutations {
        Some((levels, record)) => {
            let record = Record { status, ..record };
            let present = |name: &str| {
                resp.headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
            };
            mutate::plan(&levels, &present, &record)
        }
        None => Edits::default(),
    };
    if !filter_steps.is_empty() {
        let originals: Vec<&str> = resp.headers.iter().map(|h| h.name).collect();
        filters::shape_response(filter_steps, &mut edits, &originals);
    }
    out.reserve(data.len() + 256);
    let _ = write!(out, "HTTP/1.1 {status} {reason_text}\r\n");
    let nominated = |name: &str| connection_values.iter().any(|v| has_token(v, name));
    for h in resp.headers.iter() {
        let name = h.name;
        // A HEAD or 304 answer keeps the length it describes; a 204 has none.
        let keep_length = bodyless
            && status != 204
            && !refused_websocket
            && name.eq_ignore_ascii_case("content-length");
        let tunnel_header = switched
            && (name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection"));
        if tunnel_header {
            push_header(out, name, h.value);
            continue;
        }
        if (is_hop_by_hop(name) && !keep_length)
            || nominated(name)
            || (http.server_header == ServerHeaderTransformation::Overwrite
                && name.eq_ignore_ascii_case("server"))
            || !edits.keeps(name)
        {
            continue;
        }
        push_header(out, name, h.value);
    }
    for (name, value) in &edits.added {
        push_header(out, name, value);
    }
    if let Some(cookie) = set_cookie {
        push_header(out, "set-cookie", cookie);
    }
    if let Some(n) = attempt_count {
        push_number_header(out, "x-envoy-attempt-count", u64::from(n));
    }
    let add_server = match http.server_header {
        ServerHeaderTransformation::Overwrite => true,
        ServerHeaderTransformation::AppendIfAbsent => !has_server,
        ServerHeaderTransformation::PassThrough => false,
    };
    if !has_date {
        push_header(out, "date", date.as_bytes());
    }
    if add_server {
        push_header(out, "server", http.server_name.as_bytes());
    }
    if let Some(ms) = service_time_ms.filter(|_| !upgrade) {
        push_number_header(out, "x-envoy-upstream-service-time", ms as u64);
    }
    match framing {
        _ if switched => {}
        Framing::Length(n) => push_number_header(out, "content-length", n),
        Framing::Chunked | Framing::UntilClose => push_header(out, "transfer-encoding", b"chunked"),
        Framing::Empty if !bodyless || refused_websocket => {
            push_header(out, "content-length", b"0")
        }
        Framing::Empty => {}
    }
    if close && !switched {
        push_header(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    ParsedResponse::Final(Response {
        head_len,
        status,
        framing,
        // An upgrade's connection is not reused: a refused WebSocket's
        // body is never read from it.
        reusable: !upstream_close && framing != Framing::UntilClose && !upgrade,
        switched,
    })
}
