//! Choosing a connection's filter chain as Envoy does: criteria in a fixed
//! order (destination port, destination address, server name, transport
//! protocol, application protocols, source type, source address, source
//! port); at each, the chains matching most specifically survive, a chain
//! that leaves the criterion empty matching only when none is specific.
//! There is no backtracking: once a level has narrowed the set, a later
//! level that matches none of the survivors means no match.

use crate::config::{ChainMatch, Cidr, SourceType};
use std::net::IpAddr;

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Default)]
pub struct ConnInfo<'a> {
    /// The address it reached.
    pub destination: Option<(IpAddr, u16)>,
    /// The client's address.
    pub source: Option<(IpAddr, u16)>,
    /// SNI from the TLS inspector.
    pub server_name: Option<&'a str>,
    /// `tls` or `raw_buffer`.
    pub transport: &'a str,
    /// ALPN from the TLS inspector, or the HTTP inspector's finding.
    pub application_protocols: &'a [String],
}

/// One criterion: how specifically a chain matches (None: not at all).
type Level<'a> = dyn Fn(&ChainMatch) -> Option<u32> + 'a;

/// The index of the chain in `chains` that serves `conn`, if any.
pub fn select<'m>(
    chains: impl IntoIterator<Item = &'m ChainMatch>,
    conn: &ConnInfo,
) -> Option<usize> {
    let mut candidates: Vec<(usize, &ChainMatch)> = chains.into_iter().enumerate().collect();
    let levels: [&Level; 8] = [
        &|m| port(m.destination_port, conn.destination.map(|d| d.1)),
        &|m| prefix(&m.prefix_ranges, conn.destination.map(|d| d.0)),
        &|m| server_name(&m.server_names, conn.server_name),
        &|m| transport(m.transport_protocol.as_deref(), conn.transport),
        &|m| alpn(&m.application_protocols, conn.application_protocols),
        &|m| source_type(m.source_type, conn),
        &|m| prefix(&m.source_prefix_ranges, conn.source.map(|s| s.0)),
        &|m| ports(&m.source_ports, conn.source.map(|s| s.1)),
    ];
    for level in levels {
        let scored: Vec<(u32, (usize, &ChainMatch))> = candidates
            .iter()
            .filter_map(|&(i, m)| level(m).map(|score| (score, (i, m))))
            .collect();
        let best = scored.iter().map(|(s, _)| *s).max()?;
        candidates = scored
            .into_iter()
            .filter(|(s, _)| *s == best)
            .map(|(_, c)| c)
            .collect();
    }
    candidates.first().map(|(i, _)| *i)
}

/// Scores: None does not match; 0 matches by leaving the criterion empty;
/// higher is more specific.
fn port(want: Option<u16>, have: Option<u16>) -> Option<u32> {
    match want {
        None => Some(0),
        Some(p) if have == Some(p) => Some(1),
        Some(_) => None,
    }
}

fn ports(want: &[u16], have: Option<u16>) -> Option<u32> {
    if want.is_empty() {
        return Some(0);
    }
    have.filter(|p| want.contains(p)).map(|_| 1)
}

/// The longest matching prefix wins; a /0 still beats an empty list.
fn prefix(ranges: &[Cidr], ip: Option<IpAddr>) -> Option<u32> {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = ip?;
    ranges
        .iter()
        .filter(|c| c.contains(ip))
        .map(|c| u32::from(c.len) + 1)
        .max()
}

/// An exact name beats any wildcard; a longer wildcard suffix beats a
/// shorter one.
fn server_name(names: &[String], sni: Option<&str>) -> Option<u32> {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?;
    names
        .iter()
        .filter_map(|n| match n.strip_prefix('*') {
            Some(suffix) if sni.len() > suffix.len() && sni.ends_with(suffix) => {
                Some(suffix.len() as u32 + 1)
            }
            Some(_) => None,
            None if n == sni => Some(u32::MAX),
            None => None,
        })
        .max()
}

fn transport(want: Option<&str>, have: &str) -> Option<u32> {
    match want {
        None => Some(0),
        Some(t) if t == have => Some(1),
        Some(_) => None,
    }
}

fn alpn(want: &[String], have: &[String]) -> Option<u32> {
    if want.is_empty() {
        return Some(0);
    }
    want.iter().any(|p| have.contains(p)).then_some(1)
}

fn source_type(want: SourceType, conn: &ConnInfo) -> Option<u32> {
    let local = match (conn.source, conn.destination) {
        (Some((s, _)), Some((d, _))) => s.is_loopback() || s == d,
        (Some((s, _)), None) => s.is_loopback(),
        // A pipe client is on this host.
        (None, _) => true,
    };
    match want {
        SourceType::Any => Some(0),
        SourceType::Local if local => Some(1),
        SourceType::External if !local => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> ChainMatch {
        ChainMatch {
            server_names: list.iter().map(|s| s.to_string()).collect(),
            ..ChainMatch::default()
        }
    }

    #[test]
    fn exact_server_name_beats_wildcards_and_longer_wildcards_beat_shorter() {
        let chains = [
            names(&["*.com"]),
            names(&["*.example.com"]),
            names(&["a.example.com"]),
            names(&[]),
        ];
        let pick = |sni| {
            select(
                &chains,
                &ConnInfo {
                    server_name: Some(sni),
                    transport: "tls",
                    ..ConnInfo::default()
                },
            )
        };
        assert_eq!(pick("a.example.com"), Some(2));
        assert_eq!(pick("b.example.com"), Some(1));
        assert_eq!(pick("x.com"), Some(0));
        assert_eq!(pick("x.org"), Some(3));
    }

    #[test]
    fn a_narrowed_level_does_not_fall_back() {
        // Port 80 narrows to the first chain; its server name then fails,
        // and the catch-all second chain is not consulted again.
        let chains = [
            ChainMatch {
                destination_port: Some(80),
                server_names: vec!["a.test".into()],
                ..ChainMatch::default()
            },
            ChainMatch::default(),
        ];
        let conn = ConnInfo {
            destination: Some(("127.0.0.1".parse().unwrap(), 80)),
            server_name: Some("b.test"),
            transport: "tls",
            ..ConnInfo::default()
        };
        assert_eq!(select(&chains, &conn), None);
    }
}
