//! `envoy.filters.http.buffer`: the whole request body is read before the
//! request goes upstream, up to `max_request_bytes`.

use super::super::node::{Errors, Fields, Node};

/// The filter's type.
pub(super) const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";
/// A virtual host's or route's own settings.
pub(super) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";

#[rustfmt::skip]
static BUFFER: Fields = Fields { known: &["@type", "max_request_bytes"], unsupported: &[] };
#[rustfmt::skip]
static PER_ROUTE: Fields = Fields { known: &["@type", "disabled", "buffer"], unsupported: &[] };

/// A level's buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferConfig {
    /// `BufferPerRoute{disabled: true}`.
    Disabled,
    /// `max_request_bytes`.
    Limit(u64),
}

/// Decodes a `Buffer`.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<BufferConfig> {
    let obj = node.object(errs, &BUFFER)?;
    let max = obj.require(errs, "max_request_bytes")?;
    match super::super::bootstrap::wrapped_uint(&max, errs, u64::from(u32::MAX))? {
        0 => {
            errs.add(max.path(), "value must be greater than 0");
            None
        }
        n => Some(BufferConfig::Limit(n)),
    }
}

/// Decodes a `BufferPerRoute`: `disabled: true` or its own `buffer`.
pub(super) fn decode_per_route(node: &Node, errs: &mut Errors) -> Option<BufferConfig> {
    let obj = node.object(errs, &PER_ROUTE)?;
    match (obj.get("disabled"), obj.get("buffer")) {
        (Some(d), None) if d.bool(errs)? => Some(BufferConfig::Disabled),
        (None, Some(b)) => decode(&b, errs),
        _ => {
            errs.add(
                node.path(),
                "a BufferPerRoute has disabled: true or a buffer",
            );
            None
        }
    }
}
