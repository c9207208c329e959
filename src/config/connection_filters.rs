//! Network filters that run on each new connection before the chain's
//! terminal filter (http_connection_manager or tcp_proxy), in the order
//! the chain lists them: `connection_limit` and `local_ratelimit`.

use super::bootstrap::wrapped_uint;
use super::node::{Errors, Fields, Node};
use std::time::Duration;

/// `@type` of `envoy.filters.network.connection_limit`.
pub(super) const CONNECTION_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit";
/// `@type` of `envoy.filters.network.local_ratelimit`.
pub(super) const LOCAL_RATELIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";

#[rustfmt::skip]
static CONNECTION_LIMIT: Fields = Fields {
    known: &["@type", "stat_prefix", "max_connections", "delay"],
    unsupported: &["runtime_enabled"],
};
#[rustfmt::skip]
static LOCAL_RATELIMIT: Fields = Fields {
    known: &["@type", "stat_prefix", "token_bucket"],
    unsupported: &["runtime_enabled", "share_key"],
};
#[rustfmt::skip]
static TOKEN_BUCKET: Fields = Fields {
    known: &["max_tokens", "tokens_per_fill", "fill_interval"],
    unsupported: &[],
};

/// One filter run on each new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionFilter {
    /// `envoy.filters.network.connection_limit`: at most `max_connections`
    /// open at once through this filter (all shards together); one more is
    /// closed, after `delay`.
    ConnectionLimit {
        /// `stat_prefix`.
        stat_prefix: String,
        /// `max_connections`.
        max_connections: u64,
        /// `delay`.
        delay: Option<Duration>,
    },
    /// `envoy.filters.network.local_ratelimit`: each new connection takes a
    /// token from one bucket shared by all shards; without one it is
    /// closed.
    LocalRateLimit {
        /// `stat_prefix`.
        stat_prefix: String,
        /// `token_bucket`.
        bucket: TokenBucket,
    },
}

/// Envoy's `TokenBucket`: it starts full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// `max_tokens`.
    pub max_tokens: u64,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u64,
    /// `fill_interval`.
    pub fill_interval: Duration,
}

/// Decodes a connection filter of type `type_url`; None when the type is
/// not one (the caller reports it), or when it has errors (reported).
pub(super) fn connection_filter(
    type_url: &str,
    tc: &Node,
    errs: &mut Errors,
) -> Option<Option<ConnectionFilter>> {
    match type_url {
        CONNECTION_LIMIT_TYPE => Some(connection_limit(tc, errs)),
        LOCAL_RATELIMIT_TYPE => Some(local_ratelimit(tc, errs)),
        _ => None,
    }
}

fn connection_limit(node: &Node, errs: &mut Errors) -> Option<ConnectionFilter> {
    let obj = node.object(errs, &CONNECTION_LIMIT)?;
    let stat_prefix = obj.non_empty_str(errs, "stat_prefix");
    let max_connections = obj.require(errs, "max_connections").and_then(|m| {
        let n = wrapped_uint(&m, errs, u64::MAX)?;
        if n == 0 {
            errs.add(m.path(), "expected at least 1");
            return None;
        }
        Some(n)
    });
    let delay = obj.get("delay").and_then(|d| d.duration(errs));
    Some(ConnectionFilter::ConnectionLimit {
        stat_prefix: stat_prefix?,
        max_connections: max_connections?,
        delay: delay.filter(|d| !d.is_zero()),
    })
}

fn local_ratelimit(node: &Node, errs: &mut Errors) -> Option<ConnectionFilter> {
    let obj = node.object(errs, &LOCAL_RATELIMIT)?;
    let stat_prefix = obj.non_empty_str(errs, "stat_prefix");
    let bucket = obj
        .require(errs, "token_bucket")
        .and_then(|b| token_bucket(&b, errs));
    Some(ConnectionFilter::LocalRateLimit {
        stat_prefix: stat_prefix?,
        bucket: bucket?,
    })
}

/// Decodes Envoy's `TokenBucket` (a `fill_interval` of at least 50 ms,
/// as Envoy requires).
pub(super) fn token_bucket(node: &Node, errs: &mut Errors) -> Option<TokenBucket> {
    let obj = node.object(errs, &TOKEN_BUCKET)?;
    // Envoy takes a bucket of no tokens, which refuses everything.
    let max_tokens = obj
        .require(errs, "max_tokens")
        .and_then(|m| m.uint(errs, u32::MAX as u64));
    let tokens_per_fill = match obj.get("tokens_per_fill") {
        Some(t) => match wrapped_uint(&t, errs, u32::MAX as u64)? {
            0 => {
                errs.add(t.path(), "value must be greater than 0");
                return None;
            }
            n => n,
        },
        None => 1,
    };
    let fill_interval = obj.require(errs, "fill_interval").and_then(|f| {
        let d = f.duration(errs)?;
        if d < Duration::from_millis(50) {
            errs.add(f.path(), "expected at least 50ms");
            return None;
        }
        Some(d)
    });
    Some(TokenBucket {
        max_tokens: max_tokens?,
        tokens_per_fill,
        fill_interval: fill_interval?,
    })
}
