//! Decoding a cluster's `health_checks`, with Envoy's defaults and
//! validation.

use super::bootstrap::wrapped_uint;
use super::node::{Errors, Fields, Node, Obj};
use super::route_match::{string_matcher, StringMatcher};
use std::time::Duration;

#[rustfmt::skip]
static HEALTH_CHECK: Fields = Fields {
    known: &[
        "timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
        "unhealthy_threshold", "healthy_threshold", "alt_port", "reuse_connection",
        "http_health_check", "tcp_health_check", "grpc_health_check", "no_traffic_interval",
        "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval",
        "healthy_edge_interval", "always_log_health_check_failures",
        "always_log_health_check_success", "event_log_path", "event_logger",
    ],
    unsupported: &[
        "name", "custom_health_check", "event_service", "tls_options",
        "transport_socket_match_criteria",
    ],
};
#[rustfmt::skip]
static HTTP_HEALTH_CHECK: Fields = Fields {
    known: &[
        "host", "path", "receive", "response_buffer_size", "request_headers_to_add",
        "request_headers_to_remove", "expected_statuses", "retriable_statuses",
        "codec_client_type", "service_name_matcher", "method",
    ],
    unsupported: &["send"],
};
#[rustfmt::skip]
static TCP_HEALTH_CHECK: Fields = Fields {
    known: &["send", "receive"],
    unsupported: &["proxy_protocol_config"],
};
#[rustfmt::skip]
static GRPC_HEALTH_CHECK: Fields = Fields {
    known: &["service_name", "authority", "initial_metadata"],
    unsupported: &[],
};
#[rustfmt::skip]
static EVENT_LOGGER: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &[],
};
#[rustfmt::skip]
static FILE_SINK: Fields = Fields {
    known: &["@type", "event_log_path"],
    unsupported: &[],
};
/// The one `event_logger` extension: a file.
const FILE_SINK_TYPE: &str =
    "type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink";
#[rustfmt::skip]
static PAYLOAD: Fields = Fields {
    known: &["text"],
    unsupported: &["binary"],
};
#[rustfmt::skip]
static RANGE: Fields = Fields {
    known: &["start", "end"],
    unsupported: &[],
};

/// One `health_checks[]` entry: how and how often each host is probed.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `timeout`: how long one check may take.
    pub timeout: Duration,
    /// `interval`.
    pub interval: Duration,
    /// `initial_jitter`: the first check waits a random time below it.
    pub initial_jitter: Duration,
    /// `interval_jitter`: a random time below it is added to each wait.
    pub interval_jitter: Duration,
    /// `interval_jitter_percent` of the wait is the bound of another
    /// random addition.
    pub interval_jitter_percent: u64,
    /// `unhealthy_threshold`: network failures in a row that fail a host.
    pub unhealthy_threshold: u64,
    /// `healthy_threshold`: successes in a row that bring it back.
    pub healthy_threshold: u64,
    /// `reuse_connection` (true).
    pub reuse_connection: bool,
    /// `no_traffic_interval` (60 s): the wait while the cluster has never
    /// opened a connection for traffic.
    pub no_traffic_interval: Duration,
    /// `no_traffic_healthy_interval` (`no_traffic_interval`).
    pub no_traffic_healthy_interval: Duration,
    /// `unhealthy_interval` (`interval`).
    pub unhealthy_interval: Duration,
    /// `unhealthy_edge_interval` (`unhealthy_interval`).
    pub unhealthy_edge_interval: Duration,
    /// `healthy_edge_interval` (`interval`).
    pub healthy_edge_interval: Duration,
    /// What a check sends and expects.
    pub probe: Probe,
    /// The event log files: `event_log_path` and `event_logger` file
    /// sinks.
    pub event_logs: Vec<std::path::PathBuf>,
    /// `always_log_health_check_failures`: every failure, not only a
    /// host's first, goes to the event log.
    pub always_log_failures: bool,
    /// `always_log_health_check_success`: every success that changes
    /// nothing goes to the event log.
    pub always_log_success: bool,
}

/// The protocol of a health check.
#[derive(Debug, Clone)]
pub enum Probe {
    /// `http_health_check`.
    Http(HttpCheck),
    /// `tcp_health_check`.
    Tcp(TcpCheck),
    /// `grpc_health_check`.
    Grpc(GrpcCheck),
}

/// `grpc_health_check`: `grpc.health.v1.Health/Check` over HTTP/2.
#[derive(Debug, Clone)]
pub struct GrpcCheck {
    /// `service_name` asked about (empty: the server as a whole).
    pub service_name: String,
    /// `authority`: the request's `:authority`; the cluster's name when
    /// empty.
    pub authority: Option<String>,
    /// `initial_metadata`, as `request_headers_to_add` in HTTP checks.
    pub metadata: Vec<(String, String, bool)>,
}

/// `http_health_check`.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    /// `host`: the request's host; the cluster's name when empty.
    pub host: Option<String>,
    /// `path`.
    pub path: String,
    /// `method` (GET).
    pub method: &'static str,
    /// `request_headers_to_add`: names (lower case), literal values and
    /// whether they replace a header of the same name.
    pub headers_to_add: Vec<(String, String, bool)>,
    /// `request_headers_to_remove`, lower case.
    pub headers_to_remove: Vec<String>,
    /// `expected_statuses` as half-open ranges (200 alone by default).
    pub expected: Vec<(u16, u16)>,
    /// `retriable_statuses`.
    pub retriable: Vec<(u16, u16)>,
    /// `receive`: blocks the response body must contain, in order.
    pub receive: Vec<Vec<u8>>,
    /// `response_buffer_size` (1024; 0: the whole body): how much of the
    /// body `receive` is looked for in.
    pub response_buffer_size: usize,
    /// `service_name_matcher`: what the upstream's
    /// `x-envoy-upstream-healthchecked-cluster` must say.
    pub service_name_matcher: Option<StringMatcher>,
    /// `codec_client_type: HTTP2`: checks over HTTP/2 (prior knowledge).
    pub http2: bool,
}

impl HttpCheck {
    /// A GET of `path` with every other field at Envoy's default.
    #[cfg(test)]
    pub fn get(path: &str) -> HttpCheck {
        HttpCheck {
            host: None,
            path: path.into(),
            method: "GET",
            headers_to_add: Vec::new(),
            headers_to_remove: Vec::new(),
            expected: vec![(200, 201)],
            retriable: Vec::new(),
            receive: Vec::new(),
            response_buffer_size: 1024,
            service_name_matcher: None,
            http2: false,
        }
    }

    /// Whether `status` is one `expected_statuses` accepts.
    pub fn expects(&self, status: u16) -> bool {
        self.expected.iter().any(|&(s, e)| (s..e).contains(&status))
    }

    /// Whether `status` is one `retriable_statuses` lists.
    pub fn retries(&self, status: u16) -> bool {
        self.retriable
            .iter()
            .any(|&(s, e)| (s..e).contains(&status))
    }
}

/// `tcp_health_check`.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    /// `send`: bytes written once connected (none: connect only).
    pub send: Vec<u8>,
    /// `receive`: blocks that must arrive, in order.
    pub receive: Vec<Vec<u8>>,
}

/// The methods `http_health_check.method` may name (Envoy refuses CONNECT).
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
];

/// Decodes `health_checks`: at most one entry.
pub(super) fn health_checks(node: &Node, errs: &mut Errors) -> Option<HealthCheck> {
    let list = node.list(errs);
    if list.len() > 1 {
        errs.add(
            node.path(),
            "more than one health check on a cluster is not supported yet",
        );
        return None;
    }
    list.first().and_then(|entry| health_check(entry, errs))
}

fn health_check(node: &Node, errs: &mut Errors) -> Option<HealthCheck> {
    let o = node.object(errs, &HEALTH_CHECK)?;
    let positive = |name: &str, errs: &mut Errors| {
        let child = o.get(name)?;
        let d = child.duration(errs)?;
        if d.is_zero() {
            errs.add(child.path(), "expected a duration greater than 0");
            return None;
        }
        Some(d)
    };
    // Required, as in Envoy: absent is an error naming the field.
    let timeout = o
        .require(errs, "timeout")
        .and_then(|_| positive("timeout", errs));
    let interval = o
        .require(errs, "interval")
        .and_then(|_| positive("interval", errs));
    let threshold = |name: &str, errs: &mut Errors| {
        o.require(errs, name)
            .and_then(|n| wrapped_uint(&n, errs, u32::MAX.into()))
    };
    let unhealthy_threshold = threshold("unhealthy_threshold", errs);
    let healthy_threshold = threshold("healthy_threshold", errs);
    let jitter = |name: &str, errs: &mut Errors| {
        o.get(name)
            .and_then(|n| n.duration(errs))
            .unwrap_or_default()
    };
    let initial_jitter = jitter("initial_jitter", errs);
    let interval_jitter = jitter("interval_jitter", errs);
    let interval_jitter_percent = o
        .get("interval_jitter_percent")
        .and_then(|n| n.uint(errs, u32::MAX.into()))
        .unwrap_or(0);
    let reuse_connection = super::bootstrap::any_bool(o.get("reuse_connection"), errs, true);
    // `alt_port` is accepted and has no effect, as in Envoy (which
    // documents it as not implemented).
    if let Some(port) = o.get("alt_port") {
        wrapped_uint(&port, errs, u32::MAX.into());
    }
    let flag = |name: &str, errs: &mut Errors| o.get(name).and_then(|b| b.bool(errs)) == Some(true);
    let always_log_failures = flag("always_log_health_check_failures", errs);
    let always_log_success = flag("always_log_health_check_success", errs);
    let event_logs = event_logs(&o, errs);
    let checkers = ["http_health_check", "tcp_health_check", "grpc_health_check"];
    let given: Vec<(&str, Node)> = checkers
        .iter()
        .filter_map(|&name| Some((name, o.get(name)?)))
        .collect();
    let probe = match given.as_slice() {
        [("http_health_check", n)] => http_check(n, errs).map(Probe::Http),
        [("tcp_health_check", n)] => tcp_check(n, errs).map(Probe::Tcp),
        [(_, n)] => grpc_check(n, errs).map(Probe::Grpc),
        [] => {
            errs.add(
                o.path(),
                "expected a health checker: http_health_check, tcp_health_check or grpc_health_check",
            );
            None
        }
        _ => {
            errs.add(o.path(), "expected one health checker, not several");
            None
        }
    };
    let interval = interval?;
    let no_traffic_interval =
        positive("no_traffic_interval", errs).unwrap_or(Duration::from_secs(60));
    let unhealthy_interval = positive("unhealthy_interval", errs).unwrap_or(interval);
    Some(HealthCheck {
        timeout: timeout?,
        interval,
        initial_jitter,
        interval_jitter,
        interval_jitter_percent,
        unhealthy_threshold: unhealthy_threshold?,
        healthy_threshold: healthy_threshold?,
        reuse_connection,
        no_traffic_interval,
        no_traffic_healthy_interval: positive("no_traffic_healthy_interval", errs)
            .unwrap_or(no_traffic_interval),
        unhealthy_interval,
        unhealthy_edge_interval: positive("unhealthy_edge_interval", errs)
            .unwrap_or(unhealthy_interval),
        healthy_edge_interval: positive("healthy_edge_interval", errs).unwrap_or(interval),
        probe: probe?,
        event_logs,
        always_log_failures,
        always_log_success,
    })
}

/// Decodes `event_log_path` and the file sinks of `event_logger`.
fn event_logs(o: &Obj, errs: &mut Errors) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    if let Some(path) = o.get("event_log_path").and_then(|p| p.str(errs)) {
        if !path.is_empty() {
            paths.push(path.into());
        }
    }
    for logger in o
        .get("event_logger")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(l) = logger.object(errs, &EVENT_LOGGER) else {
            continue;
        };
        let Some(typed) = l.require(errs, "typed_config") else {
            continue;
        };
        let kind = typed.value().get("@type").and_then(|t| t.as_str());
        if kind != Some(FILE_SINK_TYPE) {
            errs.add(
                typed.path(),
                format!("expected the file event sink ({FILE_SINK_TYPE}); other health check event sinks are not supported"),
            );
            continue;
        }
        if let Some(sink) = typed.object(errs, &FILE_SINK) {
            if let Some(path) = sink.non_empty_str(errs, "event_log_path") {
                paths.push(path.into());
            }
        }
    }
    paths
}

fn http_check(node: &Node, errs: &mut Errors) -> Option<HttpCheck> {
    let o = node.object(errs, &HTTP_HEALTH_CHECK)?;
    let path = o.non_empty_str(errs, "path");
    let host = o
        .get("host")
        .and_then(|h| h.str(errs))
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let method = match o.get("method") {
        Some(m) => {
            let names = [&["METHOD_UNSPECIFIED"][..], METHODS].concat();
            match m.enumeration(errs, &names)? {
                "METHOD_UNSPECIFIED" => "GET",
                name => name,
            }
        }
        None => "GET",
    };
    let http2 = match o.get("codec_client_type") {
        Some(codec) => match codec.enumeration(errs, &["HTTP1", "HTTP2", "HTTP3"])? {
            "HTTP3" => {
                errs.add(codec.path(), "health checks over HTTP/3 are not supported");
                false
            }
            name => name == "HTTP2",
        },
        None => false,
    };
    let mutations = super::route_action::header_mutations(&o, errs, "request");
    let headers_to_add = literal_headers(&o, errs, &mutations.add, "request_headers_to_add");
    let expected = ranges(&o, errs, "expected_statuses", "expected");
    let retriable = ranges(&o, errs, "retriable_statuses", "retriable");
    let receive = payloads(&o, errs);
    let response_buffer_size = o
        .get("response_buffer_size")
        .and_then(|n| wrapped_uint(&n, errs, u32::MAX.into()))
        .unwrap_or(1024) as usize;
    let total: usize = receive.iter().map(Vec::len).sum();
    if response_buffer_size != 0 && total > response_buffer_size {
        errs.add(
            o.path(),
            format!(
                "The expected response length '{total}' is over than http health response buffer size '{response_buffer_size}'"
            ),
        );
    }
    Some(HttpCheck {
        host,
        path: path?,
        method,
        headers_to_add,
        headers_to_remove: mutations.remove,
        expected: if expected.is_empty() {
            vec![(200, 201)]
        } else {
            expected
        },
        retriable,
        receive,
        response_buffer_size,
        service_name_matcher: o
            .get("service_name_matcher")
            .and_then(|m| string_matcher(&m, errs)),
        http2,
    })
}

/// Headers to add whose values are literal: names, values, and whether
/// each replaces a header of its name.
fn literal_headers(
    o: &Obj,
    errs: &mut Errors,
    add: &[super::HeaderToAdd],
    field: &str,
) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for (i, h) in add.iter().enumerate() {
        let Some(value) = h.value.literal() else {
            errs.add(
                &format!("{}.{field}[{i}]", o.path()),
                "%…% operators in health check headers are not supported yet",
            );
            continue;
        };
        let replace = !matches!(h.action, super::AppendAction::AppendIfExistsOrAdd);
        out.push((h.name.clone(), value, replace));
    }
    out
}

fn grpc_check(node: &Node, errs: &mut Errors) -> Option<GrpcCheck> {
    let o = node.object(errs, &GRPC_HEALTH_CHECK)?;
    let text = |name: &str, errs: &mut Errors| {
        o.get(name)
            .and_then(|n| n.str(errs))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let service_name = text("service_name", errs).unwrap_or_default();
    let authority = text("authority", errs);
    let add: Vec<super::HeaderToAdd> = o
        .get("initial_metadata")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| super::route_action::header_to_add(h, errs))
        .collect();
    let metadata = literal_headers(&o, errs, &add, "initial_metadata");
    Some(GrpcCheck {
        service_name,
        authority,
        metadata,
    })
}

/// Decodes a list of `Int64Range`s of statuses, as Envoy checks them.
fn ranges(o: &Obj, errs: &mut Errors, name: &str, kind: &str) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for item in o.get(name).map(|l| l.list(errs)).unwrap_or_default() {
        let Some(r) = item.object(errs, &RANGE) else {
            continue;
        };
        let bound = |field: &str, errs: &mut Errors| {
            r.get(field)
                .and_then(|n| n.uint(errs, i64::MAX as u64))
                .unwrap_or(0)
        };
        let (start, end) = (bound("start", errs), bound("end", errs));
        let problem = if start >= end {
            format!("Invalid http {kind} status range: expecting start < end, but found start={start} and end={end}")
        } else if start < 100 {
            format!(
                "Invalid http {kind} status range: expecting start >= 100, but found start={start}"
            )
        } else if end > 600 {
            format!("Invalid http {kind} status range: expecting end <= 600, but found end={end}")
        } else {
            out.push((start as u16, end as u16));
            continue;
        };
        errs.add(item.path(), problem);
    }
    out
}

/// Decodes the `receive` payloads beside `o`.
fn payloads(o: &Obj, errs: &mut Errors) -> Vec<Vec<u8>> {
    o.get("receive")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .iter()
        .filter_map(|p| payload(p, errs))
        .collect()
}

/// Decodes one `Payload`: hex `text`.
fn payload(node: &Node, errs: &mut Errors) -> Option<Vec<u8>> {
    let o = node.object(errs, &PAYLOAD)?;
    let text = o.non_empty_str(errs, "text")?;
    let decoded = (text.len() % 2 == 0)
        .then(|| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    if decoded.is_none() {
        errs.add(o.path(), format!("invalid hex string '{text}'"));
    }
    decoded
}

fn tcp_check(node: &Node, errs: &mut Errors) -> Option<TcpCheck> {
    let o = node.object(errs, &TCP_HEALTH_CHECK)?;
    let send = match o.get("send") {
        Some(p) => payload(&p, errs)?,
        None => Vec::new(),
    };
    Some(TcpCheck {
        send,
        receive: payloads(&o, errs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<HealthCheck, String> {
        let value = crate::config::parse_document(yaml, "test").map_err(|e| e.to_string())?;
        let node = Node::root(&value);
        let mut errs = Errors::default();
        let hc = health_checks(&node, &mut errs);
        match (hc, errs.0.is_empty()) {
            (Some(hc), true) => Ok(hc),
            _ => Err(format!("{errs:?}")),
        }
    }

    #[test]
    fn defaults_follow_envoy() {
        let hc = decode(
            "[{timeout: 1s, interval: 2s, unhealthy_threshold: 3, healthy_threshold: 1, http_health_check: {path: /hc}}]",
        )
        .unwrap();
        assert_eq!(hc.no_traffic_interval, Duration::from_secs(60));
        assert_eq!(hc.no_traffic_healthy_interval, Duration::from_secs(60));
        assert_eq!(hc.unhealthy_edge_interval, Duration::from_secs(2));
        assert_eq!(hc.healthy_edge_interval, Duration::from_secs(2));
        assert!(hc.reuse_connection);
        let Probe::Http(http) = hc.probe else {
            panic!("not http")
        };
        assert!(http.expects(200) && !http.expects(204));
        assert_eq!(http.method, "GET");
    }

    #[test]
    fn payloads_are_hex() {
        let hc = decode(
            "[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {send: {text: '50494e47'}, receive: [{text: '504f4e47'}]}}]",
        )
        .unwrap();
        let Probe::Tcp(tcp) = hc.probe else {
            panic!("not tcp")
        };
        assert_eq!(tcp.send, b"PING");
        assert_eq!(tcp.receive, vec![b"PONG".to_vec()]);
        assert!(decode(
            "[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {send: {text: 'zz'}}}]"
        )
        .unwrap_err()
        .contains("invalid hex string 'zz'"));
    }
}
