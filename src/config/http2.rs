//! `http2_protocol_options` and `codec_type`: how a connection manager
//! speaks HTTP/2, with Envoy's defaults and ranges.

use super::bootstrap::{any_bool, wrapped_uint};
use super::node::{Errors, Fields, Node};
use std::time::Duration;

/// The downstream protocols a connection manager speaks (`codec_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// HTTP/2 when a connection opens with its preface (prior knowledge;
    /// ALPN once TLS lands), else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (prior knowledge on plaintext).
    Http2,
}

/// `http2_protocol_options` (Envoy's `Http2ProtocolOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Options {
    /// `hpack_table_size` (4096).
    pub hpack_table_size: u32,
    /// `max_concurrent_streams` (1024, Envoy's current default).
    pub max_concurrent_streams: u32,
    /// `initial_stream_window_size` (16 MiB).
    pub initial_stream_window_size: u32,
    /// `initial_connection_window_size` (24 MiB).
    pub initial_connection_window_size: u32,
    /// `connection_keepalive`: PING every `interval`, close when no answer
    /// comes within `timeout`.
    pub keepalive: Option<Keepalive>,
    /// `allow_connect`: extended CONNECT (RFC 8441), for WebSocket over
    /// HTTP/2.
    pub allow_connect: bool,
}

/// `connection_keepalive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between PINGs.
    pub interval: Duration,
    /// How long to wait for a PING's answer.
    pub timeout: Duration,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            hpack_table_size: 4096,
            max_concurrent_streams: 1024,
            initial_stream_window_size: 16 * 1024 * 1024,
            initial_connection_window_size: 24 * 1024 * 1024,
            keepalive: None,
            allow_connect: false,
        }
    }
}

#[rustfmt::skip]
static HTTP2_OPTIONS: Fields = Fields {
    known: &[
        "hpack_table_size", "max_concurrent_streams", "initial_stream_window_size",
        "initial_connection_window_size", "allow_connect", "connection_keepalive",
    ],
    unsupported: &[
        "allow_metadata", "max_outbound_frames", "max_outbound_control_frames",
        "max_consecutive_inbound_frames_with_empty_payload",
        "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent",
        "stream_error_on_invalid_http_messaging",
        "override_stream_error_on_invalid_http_message", "custom_settings_parameters",
        "use_oghttp2_codec", "max_metadata_size", "enable_huffman_encoding",
    ],
};

#[rustfmt::skip]
static KEEPALIVE: Fields = Fields {
    known: &["interval", "timeout"],
    unsupported: &["interval_jitter", "connection_idle_interval"],
};

/// The largest stream count and window size HTTP/2 allows (2^31 - 1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// Decodes `codec_type` (absent: AUTO).
pub(super) fn codec(node: Option<Node>, errs: &mut Errors) -> Codec {
    let Some(c) = node else {
        return Codec::Auto;
    };
    match c.enumeration(errs, &["AUTO", "HTTP1", "HTTP2", "HTTP3"]) {
        Some("HTTP1") => Codec::Http1,
        Some("HTTP2") => Codec::Http2,
        Some("HTTP3") => {
            errs.add(c.path(), "codec_type HTTP3 is not supported yet");
            Codec::Auto
        }
        _ => Codec::Auto,
    }
}

/// Decodes `http2_protocol_options` with Envoy's ranges, for a connection
/// manager or (`for_cluster`) for the connections to a cluster's
/// endpoints.
pub(super) fn options(node: &Node, errs: &mut Errors, for_cluster: bool) -> Http2Options {
    let mut options = Http2Options::default();
    let Some(o) = node.object(errs, &HTTP2_OPTIONS) else {
        return options;
    };
    let ranged = |name: &str, min: u64, errs: &mut Errors| -> Option<u32> {
        let child = o.get(name)?;
        let n = wrapped_uint(&child, errs, MAX_WINDOW)?;
        if n < min {
            errs.add(
                child.path(),
                format!("expected a value from {min} to {MAX_WINDOW}"),
            );
            return None;
        }
        u32::try_from(n).ok()
    };
    if let Some(n) = o.get("hpack_table_size") {
        if let Some(n) = wrapped_uint(&n, errs, u64::from(u32::MAX)) {
            options.hpack_table_size = n as u32;
        }
    }
    if let Some(n) = ranged("max_concurrent_streams", 1, errs) {
        options.max_concurrent_streams = n;
    }
    if let Some(n) = ranged("initial_stream_window_size", 65_535, errs) {
        options.initial_stream_window_size = n;
    }
    if let Some(n) = ranged("initial_connection_window_size", 65_535, errs) {
        options.initial_connection_window_size = n;
    }
    if let Some(c) = o.get("allow_connect") {
        options.allow_connect = any_bool(Some(c.clone()), errs, false);
        if for_cluster && options.allow_connect {
            errs.add(
                c.path(),
                "allow_connect on a cluster (extended CONNECT to HTTP/2 upstreams) is not supported yet",
            );
        }
    }
    if let Some(k) = o.get("connection_keepalive") {
        options.keepalive = keepalive(&k, errs);
    }
    options
}

fn keepalive(node: &Node, errs: &mut Errors) -> Option<Keepalive> {
    let o = node.object(errs, &KEEPALIVE)?;
    // Envoy requires both, each at least 1 ms.
    let mut duration = |name: &str| {
        let Some(d) = o.get(name) else {
            errs.add(&format!("{}.{name}", o.path()), "required field is missing");
            return None;
        };
        let value = d.duration(errs)?;
        if value < Duration::from_millis(1) {
            errs.add(d.path(), "expected a duration of at least 1ms");
            return None;
        }
        Some(value)
    };
    let interval = duration("interval");
    let timeout = duration("timeout");
    Some(Keepalive {
        interval: interval?,
        timeout: timeout?,
    })
}
