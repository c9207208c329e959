//! `envoy.filters.http.buffer`: asks the forwarding path to read a
//! request's whole body, up to `max_request_bytes`, before the request
//! goes upstream (a chunked body then goes with a `content-length`); a
//! larger body is answered 413 `Payload Too Large` and the connection
//! closed, as Envoy's connection manager does.

use super::Decision;
use crate::config::BufferConfig;

/// The request-headers phase: the route's own setting wins.
pub fn on_request(filter: BufferConfig, own: Option<BufferConfig>, decision: &mut Decision) {
    if let BufferConfig::Limit(limit) = own.unwrap_or(filter) {
        let limit = decision.filtered.buffer.map_or(limit, |l| l.min(limit));
        decision.filtered.buffer = Some(limit);
    }
}
