//! Retry decisions for one request: Envoy's `retry_on` conditions, the
//! retry budget, per-try timeouts and jittered exponential back-off.

use super::head::Overrides;
use crate::config::{HeaderMatcher, RetryOn, RetryPolicy};
use std::time::Duration;

/// Why an attempt failed before a response reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The connection could not be made.
    ConnectFailure,
    /// The connection broke before a complete response head.
    Reset,
    /// The per-try timeout fired before the response head.
    PerTryTimeout,
    /// The upstream did not speak HTTP/1.1.
    Protocol,
    /// An HTTP/2 upstream refused the stream (REFUSED_STREAM, or GOAWAY
    /// before it was processed): it never saw the request.
    RefusedStream,
}

/// The retry policy in force for one request, and what is left of it.
#[derive(Debug)]
pub struct Retries<'a> {
    on: RetryOn,
    /// Retries still allowed.
    pub remaining: u32,
    /// Retries done so far.
    pub done: u32,
    status_codes: Vec<u16>,
    headers: &'a [HeaderMatcher],
    /// `per_try_timeout` (the header's, else the policy's).
    pub per_try_timeout: Option<Duration>,
    base: Duration,
    max: Duration,
    /// `previous_hosts`: avoid endpoints already tried.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts`.
    pub host_selection_attempts: u32,
}

impl<'a> Retries<'a> {
    /// The route's policy (if any) with the request's header overrides.
    pub fn new(policy: Option<&'a RetryPolicy>, overrides: &Overrides) -> Self {
        let defaults = RetryPolicy::default();
        let base = policy.unwrap_or(&defaults);
        let on = base.retry_on.union(overrides.retry_on);
        let mut status_codes = base.retriable_status_codes.clone();
        status_codes.extend(&overrides.retriable_status_codes);
        Retries {
            on,
            remaining: if on.is_empty() {
                0
            } else {
                overrides.max_retries.unwrap_or(base.num_retries)
            },
            done: 0,
            status_codes,
            headers: policy.map_or(&[], |p| p.retriable_headers.as_slice()),
            per_try_timeout: overrides.per_try_timeout.or(base.per_try_timeout),
            base: base.base_interval,
            max: base.max_interval,
            previous_hosts: base.previous_hosts,
            host_selection_attempts: base.host_selection_max_attempts,
        }
    }

    /// Whether retries are possible at all (before any attempt).
    pub fn enabled(&self) -> bool {
        self.remaining > 0
    }

    /// Whether `kind` of failure is one the policy retries.
    pub fn retries_failure(&self, kind: FailKind) -> bool {
        let resets = RetryOn::FIVE_XX
            .union(RetryOn::GATEWAY_ERROR)
            .union(RetryOn::RESET);
        match kind {
            FailKind::ConnectFailure => self.on.any(
                resets
                    .union(RetryOn::CONNECT_FAILURE)
                    .union(RetryOn::RESET_BEFORE_REQUEST),
            ),
            FailKind::Reset | FailKind::PerTryTimeout | FailKind::Protocol => self.on.any(resets),
            // Envoy's 5xx and reset conditions include refused streams.
            FailKind::RefusedStream => self.on.any(resets.union(RetryOn::REFUSED_STREAM)),
        }
    }

    /// Whether a response with `status` (and headers in `head`, when the
    /// policy looks at headers) is one the policy retries.
    pub fn retries_response(&self, status: u16, head: &[u8]) -> bool {
        (self.on.any(RetryOn::FIVE_XX) && (500..600).contains(&status))
            || (self.on.any(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (self.on.any(RetryOn::RETRIABLE_4XX) && status == 409)
            || (self.on.any(RetryOn::RETRIABLE_STATUS_CODES) && self.status_codes.contains(&status))
            || (self.on.any(RetryOn::RETRIABLE_HEADERS) && self.headers_match(head))
            || (self.on.any(RetryOn::ANY_GRPC) && self.grpc_status_matches(head))
    }

    /// Whether the policy retries any kind of response (so response heads
    /// must be checked before they are sent on).
    pub fn watches_responses(&self) -> bool {
        self.on.any(
            RetryOn::FIVE_XX
                .union(RetryOn::GATEWAY_ERROR)
                .union(RetryOn::RETRIABLE_4XX)
                .union(RetryOn::RETRIABLE_STATUS_CODES)
                .union(RetryOn::RETRIABLE_HEADERS)
                .union(RetryOn::ANY_GRPC),
        )
    }

    /// Whether the response head's `grpc-status` (a trailers-only gRPC
    /// response) is one the policy's gRPC conditions retry.
    fn grpc_status_matches(&self, head: &[u8]) -> bool {
        let mut storage = [httparse::EMPTY_HEADER; 100];
        let Some(resp) = parse_head(head, &mut storage) else {
            return false;
        };
        let status = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<u8>().ok());
        status.is_some_and(|code| {
            RetryOn::GRPC
                .iter()
                .any(|(on, retried)| self.on.any(*on) && *retried == code)
        })
    }

    fn headers_match(&self, head: &[u8]) -> bool {
        let mut storage = [httparse::EMPTY_HEADER; 100];
        let Some(resp) = parse_head(head, &mut storage) else {
            return false;
        };
        self.headers.iter().any(|m| {
            let values: Vec<String> = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(&m.name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
                .collect();
            let joined = (!values.is_empty()).then(|| values.join(","));
            m.matches(joined.as_deref())
        })
    }

    /// The next back-off: fully jittered, `[0, base × (2^n − 1))` capped at
    /// the maximum, for the n-th retry.
    pub fn back_off(&self, random: u64) -> Duration {
        let n = self.done.min(30);
        let ceiling = self
            .base
            .saturating_mul((1u32 << n).saturating_sub(1).max(1))
            .min(self.max);
        let micros = ceiling.as_micros().max(1) as u64;
        Duration::from_micros(random % micros)
    }
}

/// Parses a response head for a look at its headers.
fn parse_head<'h, 'b>(
    head: &'b [u8],
    storage: &'h mut [httparse::Header<'b>],
) -> Option<httparse::Response<'h, 'b>> {
    let mut resp = httparse::Response::new(storage);
    resp.parse(head).ok()?;
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str) -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::parse(on).expect("valid"),
            retriable_status_codes: vec![418],
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn conditions_follow_envoy() {
        let none = Overrides::default();
        let p = policy("gateway-error");
        let r = Retries::new(Some(&p), &none);
        assert!(r.retries_response(503, b"") && !r.retries_response(500, b""));
        assert!(r.retries_failure(FailKind::Reset) && r.retries_failure(FailKind::ConnectFailure));
        let p = policy("connect-failure");
        let r = Retries::new(Some(&p), &none);
        assert!(r.retries_failure(FailKind::ConnectFailure) && !r.retries_failure(FailKind::Reset));
        assert!(!r.retries_response(503, b"") && !r.watches_responses());
        let p = policy("retriable-status-codes,retriable-4xx");
        let r = Retries::new(Some(&p), &none);
        assert!(r.retries_response(418, b"") && r.retries_response(409, b""));
        assert!(!r.retries_response(500, b""));
        // No policy and no header: nothing to retry.
        assert!(!Retries::new(None, &none).enabled());
        let header = Overrides {
            retry_on: RetryOn::parse("5xx").expect("valid"),
            max_retries: Some(3),
            ..Overrides::default()
        };
        assert_eq!(Retries::new(None, &header).remaining, 3);
    }

    #[test]
    fn back_off_is_jittered_and_capped() {
        let p = RetryPolicy {
            retry_on: RetryOn::FIVE_XX,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let mut r = Retries::new(Some(&p), &Overrides::default());
        r.done = 1;
        assert!(r.back_off(u64::MAX) < Duration::from_millis(25));
        r.done = 2;
        assert!(r.back_off(74_999) < Duration::from_millis(75));
        r.done = 10;
        assert!(r.back_off(u64::MAX) < Duration::from_millis(100));
    }
}
