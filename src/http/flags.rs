//! Envoy's response flags: why a response is what it is, for access logs.

use std::fmt;

/// A set of Envoy response flags (`%RESPONSE_FLAGS%`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags(u32);

impl ResponseFlags {
    /// UH: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: Self = Self(1);
    /// UT: upstream request timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: Self = Self(1 << 1);
    /// LR: connection local reset.
    pub const LOCAL_RESET: Self = Self(1 << 2);
    /// UF: upstream connection failure.
    pub const UPSTREAM_CONNECTION_FAILURE: Self = Self(1 << 3);
    /// UC: upstream connection termination.
    pub const UPSTREAM_CONNECTION_TERMINATION: Self = Self(1 << 4);
    /// NR: no route configured.
    pub const NO_ROUTE_FOUND: Self = Self(1 << 5);
    /// DC: downstream connection termination.
    pub const DOWNSTREAM_CONNECTION_TERMINATION: Self = Self(1 << 6);
    /// URX: retry or connect attempts limit reached.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: Self = Self(1 << 7);
    /// DPE: downstream protocol error.
    pub const DOWNSTREAM_PROTOCOL_ERROR: Self = Self(1 << 8);
    /// UPE: upstream protocol error.
    pub const UPSTREAM_PROTOCOL_ERROR: Self = Self(1 << 9);
    /// NC: no cluster found (`cluster_header` named none).
    pub const NO_CLUSTER_FOUND: Self = Self(1 << 10);
    /// SI: stream idle timeout.
    pub const STREAM_IDLE_TIMEOUT: Self = Self(1 << 11);
    /// UO: upstream overflow (circuit breaking).
    pub const UPSTREAM_OVERFLOW: Self = Self(1 << 12);
    /// DR: the downstream reset its stream (HTTP/2).
    pub const DOWNSTREAM_REMOTE_RESET: Self = Self(1 << 13);
    /// UMSDR: the cluster's `max_stream_duration` cut the upstream stream.
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: Self = Self(1 << 14);
    /// DT: a connection outlived `max_downstream_connection_duration`.
    pub const DURATION_TIMEOUT: Self = Self(1 << 15);
    /// OM: the overload manager turned the request away.
    pub const OVERLOAD_MANAGER: Self = Self(1 << 16);
    /// LH: the health-check filter failed this proxy's health check.
    pub const FAILED_LOCAL_HEALTH_CHECK: Self = Self(1 << 17);
    /// DI: the fault filter delayed the request.
    pub const DELAY_INJECTED: Self = Self(1 << 18);
    /// FI: the fault filter aborted the request.
    pub const FAULT_INJECTED: Self = Self(1 << 19);
    /// RL: a local rate limit refused the request.
    pub const RATE_LIMITED: Self = Self(1 << 20);
    /// UAEX: the external authorization service refused the request.
    pub const UNAUTHORIZED_EXTERNAL_SERVICE: Self = Self(1 << 21);
    /// RLSE: the rate limit service failed and the request was refused.
    pub const RATE_LIMIT_SERVICE_ERROR: Self = Self(1 << 22);

    /// Envoy's short names, in Envoy's order.
    const NAMES: [(Self, &'static str); 23] = [
        (Self::FAILED_LOCAL_HEALTH_CHECK, "LH"),
        (Self::NO_HEALTHY_UPSTREAM, "UH"),
        (Self::UPSTREAM_REQUEST_TIMEOUT, "UT"),
        (Self::LOCAL_RESET, "LR"),
        (Self::UPSTREAM_CONNECTION_FAILURE, "UF"),
        (Self::UPSTREAM_CONNECTION_TERMINATION, "UC"),
        (Self::UPSTREAM_OVERFLOW, "UO"),
        (Self::NO_ROUTE_FOUND, "NR"),
        (Self::DELAY_INJECTED, "DI"),
        (Self::FAULT_INJECTED, "FI"),
        (Self::RATE_LIMITED, "RL"),
        (Self::UNAUTHORIZED_EXTERNAL_SERVICE, "UAEX"),
        (Self::RATE_LIMIT_SERVICE_ERROR, "RLSE"),
        (Self::DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
        (Self::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
        (Self::STREAM_IDLE_TIMEOUT, "SI"),
        (Self::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
        (Self::UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR"),
        (Self::UPSTREAM_PROTOCOL_ERROR, "UPE"),
        (Self::NO_CLUSTER_FOUND, "NC"),
        (Self::DOWNSTREAM_REMOTE_RESET, "DR"),
        (Self::DURATION_TIMEOUT, "DT"),
        (Self::OVERLOAD_MANAGER, "OM"),
    ];

    /// Adds `other`'s flags.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for ResponseFlags {
    /// Comma-separated short names, or `-` when none is set (Envoy's form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_in_envoy_order() {
        let mut f = ResponseFlags::default();
        assert_eq!(f.to_string(), "-");
        f.insert(ResponseFlags::NO_ROUTE_FOUND);
        f.insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
        assert_eq!(f.to_string(), "UT,NR");
    }
}
