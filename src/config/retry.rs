//! Decoding `retry_policy` (route and virtual host).

use super::node::{Errors, Fields, Node};
use super::route_match::HeaderMatcher;
use std::time::Duration;

/// The `retry_on` conditions, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u16);

impl RetryOn {
    /// `5xx`: any 5xx, a reset, a connect failure or a per-try timeout.
    pub const FIVE_XX: Self = Self(1);
    /// `gateway-error`: 502, 503, 504, resets and per-try timeouts.
    pub const GATEWAY_ERROR: Self = Self(1 << 1);
    /// `reset`: no response (disconnect, reset, per-try timeout).
    pub const RESET: Self = Self(1 << 2);
    /// `connect-failure`: the connection could not be made.
    pub const CONNECT_FAILURE: Self = Self(1 << 3);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: Self = Self(1 << 4);
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM (never seen over HTTP/1.1).
    pub const REFUSED_STREAM: Self = Self(1 << 5);
    /// `retriable-status-codes`.
    pub const RETRIABLE_STATUS_CODES: Self = Self(1 << 6);
    /// `retriable-headers`.
    pub const RETRIABLE_HEADERS: Self = Self(1 << 7);
    /// `reset-before-request`: a reset before any request byte was sent.
    pub const RESET_BEFORE_REQUEST: Self = Self(1 << 8);
    /// `cancelled`: a response whose `grpc-status` is 1.
    pub const CANCELLED: Self = Self(1 << 9);
    /// `deadline-exceeded`: `grpc-status` 4.
    pub const DEADLINE_EXCEEDED: Self = Self(1 << 10);
    /// `internal`: `grpc-status` 13.
    pub const INTERNAL: Self = Self(1 << 11);
    /// `resource-exhausted`: `grpc-status` 8.
    pub const RESOURCE_EXHAUSTED: Self = Self(1 << 12);
    /// `unavailable`: `grpc-status` 14.
    pub const UNAVAILABLE: Self = Self(1 << 13);
    /// Any of the gRPC conditions.
    pub const ANY_GRPC: Self = Self(
        Self::CANCELLED.0
            | Self::DEADLINE_EXCEEDED.0
            | Self::INTERNAL.0
            | Self::RESOURCE_EXHAUSTED.0
            | Self::UNAVAILABLE.0,
    );
    /// Every gRPC condition, each with the `grpc-status` it retries.
    pub const GRPC: [(Self, u8); 5] = [
        (Self::CANCELLED, 1),
        (Self::DEADLINE_EXCEEDED, 4),
        (Self::INTERNAL, 13),
        (Self::RESOURCE_EXHAUSTED, 8),
        (Self::UNAVAILABLE, 14),
    ];

    const TOKENS: [(&'static str, Self); 9] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("retriable-headers", Self::RETRIABLE_HEADERS),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
    ];
    const GRPC_TOKENS: [(&'static str, Self); 5] = [
        ("cancelled", Self::CANCELLED),
        ("deadline-exceeded", Self::DEADLINE_EXCEEDED),
        ("internal", Self::INTERNAL),
        ("resource-exhausted", Self::RESOURCE_EXHAUSTED),
        ("unavailable", Self::UNAVAILABLE),
    ];

    /// Parses a comma-separated `retry_on` list (HTTP and gRPC
    /// conditions); Err names an unknown token.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut on = RetryOn::default();
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let known = Self::TOKENS.iter().chain(&Self::GRPC_TOKENS);
            match known.clone().find(|(name, _)| *name == token) {
                Some((_, flag)) => on.0 |= flag.0,
                None => return Err(format!("unknown retry_on condition {token:?}")),
            }
        }
        Ok(on)
    }

    /// Parses the `x-envoy-retry-on` header: its HTTP conditions, unknown
    /// tokens ignored, as Envoy ignores them.
    pub fn parse_lenient(list: &str) -> Self {
        Self::lenient(list, &Self::TOKENS)
    }

    /// Parses the `x-envoy-retry-grpc-on` header: its gRPC conditions,
    /// unknown tokens ignored.
    pub fn parse_grpc_lenient(list: &str) -> Self {
        Self::lenient(list, &Self::GRPC_TOKENS)
    }

    fn lenient(list: &str, tokens: &[(&str, Self)]) -> Self {
        list.split(',')
            .filter_map(|t| tokens.iter().find(|(name, _)| *name == t.trim()))
            .fold(RetryOn::default(), |a, (_, b)| a.union(*b))
    }

    /// Both sets' conditions.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether any condition of `other` is set.
    pub fn any(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no condition is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A route's (or virtual host's) `retry_policy`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `retry_on`.
    pub retry_on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout` (none: only the route timeout applies).
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off.base_interval` (default 25 ms).
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub max_interval: Duration,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `retriable_headers`.
    pub retriable_headers: Vec<HeaderMatcher>,
    /// `retry_host_predicate` has the previous-hosts predicate.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts` (default 1).
    pub host_selection_max_attempts: u32,
}

impl Default for RetryPolicy {
    /// What a request gets from retry headers alone: Envoy's defaults.
    fn default() -> Self {
        RetryPolicy {
            retry_on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            previous_hosts: false,
            host_selection_max_attempts: 1,
        }
    }
}

#[rustfmt::skip]
static RETRY_POLICY: Fields = Fields {
    known: &[
        "retry_on", "num_retries", "per_try_timeout", "retry_back_off", "retriable_status_codes",
        "retriable_headers", "retry_host_predicate", "host_selection_retry_max_attempts",
    ],
    unsupported: &[
        "per_try_idle_timeout", "retry_priority", "retry_options_predicates",
        "rate_limited_retry_back_off", "retriable_request_headers",
    ],
};
#[rustfmt::skip]
static BACK_OFF: Fields = Fields {
    known: &["base_interval", "max_interval"],
    unsupported: &[],
};
#[rustfmt::skip]
static PREDICATE: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &[],
};

const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
/// `PreviousHostsPredicate` has no fields.
#[rustfmt::skip]
static PREVIOUS_HOSTS_CONFIG: Fields = Fields {
    known: &["@type"],
    unsupported: &[],
};

/// Decodes a `retry_policy`.
pub fn retry_policy(node: &Node, errs: &mut Errors) -> Option<RetryPolicy> {
    let obj = node.object(errs, &RETRY_POLICY)?;
    let mut policy = RetryPolicy::default();
    if let Some(r) = obj.get("retry_on") {
        match RetryOn::parse(r.str(errs)?) {
            Ok(on) => policy.retry_on = on,
            Err(e) => errs.add(r.path(), e),
        }
    }
    if let Some(n) = obj.get("num_retries") {
        policy.num_retries = super::bootstrap::wrapped_uint(&n, errs, 1000)? as u32;
    }
    if let Some(t) = obj.get("per_try_timeout") {
        policy.per_try_timeout = t.duration(errs).filter(|d| !d.is_zero());
    }
    if let Some(b) = obj.get("retry_back_off") {
        let bo = b.object(errs, &BACK_OFF)?;
        let base = bo.require(errs, "base_interval")?;
        policy.base_interval = base.duration(errs)?;
        if policy.base_interval.is_zero() {
            errs.add(base.path(), "expected more than 0");
        }
        policy.max_interval = match bo.get("max_interval") {
            Some(m) => {
                let max = m.duration(errs)?;
                if max < policy.base_interval {
                    errs.add(m.path(), "expected at least base_interval");
                }
                max
            }
            None => policy.base_interval * 10,
        };
    }
    if let Some(codes) = obj.get("retriable_status_codes") {
        for c in codes.list(errs) {
            if let Some(n) = c.uint(errs, 599) {
                policy.retriable_status_codes.push(n as u16);
            }
        }
    }
    if let Some(headers) = obj.get("retriable_headers") {
        for h in headers.list(errs) {
            if let Some(m) = super::route_match::header_matcher(h, errs) {
                policy.retriable_headers.push(m);
            }
        }
    }
    if let Some(preds) = obj.get("retry_host_predicate") {
        for p in preds.list(errs) {
            // Envoy 1.40 picks the predicate by its typed_config's type.
            let po = p.object(errs, &PREDICATE)?;
            let config = po.require(errs, "typed_config")?;
            let typed = config.object(errs, &PREVIOUS_HOSTS_CONFIG)?;
            let kind = typed.require(errs, "@type")?;
            match kind.str(errs)? {
                PREVIOUS_HOSTS_TYPE => policy.previous_hosts = true,
                other => errs.add(
                    kind.path(),
                    format!(
                        "retry host predicate {other:?} is not supported yet (only {PREVIOUS_HOSTS_TYPE})"
                    ),
                ),
            }
        }
    }
    if let Some(n) = obj.get("host_selection_retry_max_attempts") {
        policy.host_selection_max_attempts = n.uint(errs, 100)? as u32;
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_lists_parse() {
        let on = RetryOn::parse("5xx, connect-failure").expect("valid");
        assert!(on.any(RetryOn::FIVE_XX) && on.any(RetryOn::CONNECT_FAILURE));
        assert!(!on.any(RetryOn::RESET));
        assert!(RetryOn::parse("5xx,bogus").is_err());
        assert_eq!(RetryOn::parse_lenient("bogus,reset"), RetryOn::RESET);
        assert_eq!(RetryOn::parse_lenient("unavailable"), RetryOn::default());
        assert_eq!(
            RetryOn::parse_grpc_lenient("5xx, unavailable"),
            RetryOn::UNAVAILABLE
        );
        assert_eq!(
            RetryOn::parse("5xx,cancelled"),
            Ok(RetryOn::FIVE_XX.union(RetryOn::CANCELLED))
        );
    }
}
