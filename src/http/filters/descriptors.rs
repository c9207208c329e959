//! Rate limit descriptors: a route's (and its virtual host's)
//! `rate_limits` actions applied to a request, as Envoy's router makes
//! them for the rate limit filters. A policy whose action cannot be
//! satisfied (a header that is absent, a match that fails) makes no
//! descriptor; a `skip_if_absent` action only leaves its entry out.

use crate::config::{RateLimitAction, RateLimitPolicy, VhRateLimits};
use crate::net::Address;
use crate::router::{query_matches, Action, Matched, RequestView};
use std::net::IpAddr;

/// One descriptor: its (key, value) entries in order.
pub type Descriptor = Vec<(String, String)>;

/// What the actions read besides the request.
pub struct Facts<'a> {
    /// The request.
    pub request: &'a RequestView<'a>,
    /// The client, as `x-forwarded-for` and the connection manager's
    /// trust in it say.
    pub client: &'a Address,
    /// `node.cluster`.
    pub service_cluster: &'a str,
    /// The cluster the route chose, by name.
    pub destination: Option<&'a str>,
}

/// The descriptors of `stage` for the matched route: the route's own,
/// and its virtual host's as `vh` (or the route's `include_vh_rate_limits`)
/// says. A route that does not forward has none.
pub fn for_route(
    matched: Option<Matched>,
    stage: u32,
    vh: VhRateLimits,
    facts: &Facts,
) -> Vec<Descriptor> {
    let mut out = Vec::new();
    let Some(m) = matched else {
        return out;
    };
    let Action::Forward(forward) = &m.route.action else {
        return out;
    };
    populate(&forward.rate_limits, Some(stage), facts, &mut out);
    let vh = if forward.include_vh_rate_limits {
        VhRateLimits::Include
    } else {
        vh
    };
    match vh {
        VhRateLimits::Ignore => {}
        VhRateLimits::Include => populate(&m.vhost.rate_limits, Some(stage), facts, &mut out),
        VhRateLimits::Override => {
            if forward.rate_limits.is_empty() {
                populate(&m.vhost.rate_limits, Some(stage), facts, &mut out);
            }
        }
    }
    out
}

/// The descriptors a filter's own `rate_limits` make (every stage; the
/// route's and virtual host's are not read then, as in Envoy).
pub fn for_filter(policies: &[RateLimitPolicy], facts: &Facts) -> Vec<Descriptor> {
    let mut out = Vec::new();
    populate(policies, None, facts, &mut out);
    out
}

/// Appends the descriptors `policies` (of `stage`, when given) make.
fn populate(
    policies: &[RateLimitPolicy],
    stage: Option<u32>,
    facts: &Facts,
    out: &mut Vec<Descriptor>,
) {
    for policy in policies
        .iter()
        .filter(|p| stage.is_none_or(|s| p.stage == s))
    {
        let mut descriptor = Vec::new();
        let complete = policy.actions.iter().all(|a| match entry(a, facts) {
            Ok(Some(e)) => {
                descriptor.push(e);
                true
            }
            Ok(None) => true,
            Err(()) => false,
        });
        if complete {
            out.push(descriptor);
        }
    }
}

/// One action's entry: `Ok(None)` when it is skipped, `Err` when the
/// policy makes no descriptor.
fn entry(action: &RateLimitAction, facts: &Facts) -> Result<Option<(String, String)>, ()> {
    let request = facts.request;
    let pair = |k: &str, v: &str| Ok(Some((k.to_string(), v.to_string())));
    match action {
        RateLimitAction::SourceCluster => pair("source_cluster", facts.service_cluster),
        RateLimitAction::DestinationCluster => {
            pair("destination_cluster", facts.destination.ok_or(())?)
        }
        RateLimitAction::RequestHeaders {
            header,
            key,
            skip_if_absent,
        } => {
            // The first line's value, as Envoy takes it.
            let value = match header.as_str() {
                ":method" | ":path" | ":authority" | "host" | ":scheme" => {
                    request.header(header).map(|v| v.into_owned())
                }
                _ => request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(header))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned()),
            };
            match value {
                Some(v) => pair(key, &v),
                None if *skip_if_absent => Ok(None),
                None => Err(()),
            }
        }
        RateLimitAction::QueryParameters {
            name,
            key,
            skip_if_absent,
        } => match request.query_parameter(name) {
            Some(v) => pair(key, &v),
            None if *skip_if_absent => Ok(None),
            None => Err(()),
        },
        RateLimitAction::RemoteAddress => {
            let ip = client_ip(facts.client).ok_or(())?;
            pair("remote_address", &ip.to_string())
        }
        RateLimitAction::MaskedRemoteAddress { v4, v6 } => {
            let ip = client_ip(facts.client).ok_or(())?;
            let (network, len) = match ip {
                IpAddr::V4(a) => {
                    let bits = u32::from(a);
                    let mask = u32::MAX.checked_shl(32 - u32::from(*v4)).unwrap_or(0);
                    (IpAddr::from((bits & mask).to_be_bytes()), *v4)
                }
                IpAddr::V6(a) => {
                    let bits = u128::from(a);
                    let mask = u128::MAX.checked_shl(128 - u32::from(*v6)).unwrap_or(0);
                    (IpAddr::from((bits & mask).to_be_bytes()), *v6)
                }
            };
            pair("masked_remote_address", &format!("{network}/{len}"))
        }
        RateLimitAction::GenericKey { key, value } => pair(key, value),
        RateLimitAction::HeaderValueMatch {
            key,
            value,
            expect_match,
            headers,
        } => {
            let matched = headers
                .iter()
                .all(|h| h.matches(request.header(&h.name).as_deref()));
            if matched == *expect_match {
                pair(key, value)
            } else {
                Err(())
            }
        }
        RateLimitAction::QueryParameterValueMatch {
            key,
            value,
            expect_match,
            parameters,
        } => {
            let matched = parameters.iter().all(|q| query_matches(q, request));
            if matched == *expect_match {
                pair(key, value)
            } else {
                Err(())
            }
        }
    }
}

fn client_ip(client: &Address) -> Option<IpAddr> {
    match client {
        Address::Ip(a) => Some(a.ip()),
        _ => None,
    }
}
