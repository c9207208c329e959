//! STRICT_DNS and LOGICAL_DNS resolution. Runs only on the main thread:
//! the system resolver blocks, and shards must never block.

use super::Resolved;
use crate::config::{Cluster, Discovery, DnsLookupFamily, EndpointAddress};
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves every endpoint of a STRICT_DNS cluster; each address becomes an
/// endpoint carrying its configured weight. Names that fail to resolve
/// contribute nothing (and are logged). A LOGICAL_DNS cluster keeps only
/// the first address: one logical host whose address follows the answers.
pub fn resolve(cluster: &Cluster) -> Vec<Resolved> {
    let mut all = resolve_all(cluster);
    if cluster.discovery == Discovery::LogicalDns {
        all.truncate(1);
    }
    all
}

fn resolve_all(cluster: &Cluster) -> Vec<Resolved> {
    let mut out = Vec::new();
    for ep in &cluster.endpoints {
        // The config accepts only socket addresses in a DNS cluster.
        let EndpointAddress::Socket { host, port } = &ep.address else {
            continue;
        };
        match (host.as_str(), *port).to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                for addr in select_family(&addrs, cluster.dns_lookup_family) {
                    let endpoint = Resolved {
                        addr: addr.into(),
                        weight: ep.weight,
                        hostname: ep.hostname.clone().unwrap_or_else(|| host.clone()),
                        explicit_hostname: ep.hostname.is_some(),
                        locality: ep.locality.clone(),
                        priority: ep.priority,
                        locality_weight: ep.locality_weight,
                        lb_metadata: std::sync::Arc::new(ep.lb_metadata.clone()),
                    };
                    if !out.contains(&endpoint) {
                        out.push(endpoint);
                    }
                }
            }
            Err(e) => log::warn!(
                "cluster {}: cannot resolve {host}:{port}: {e}",
                cluster.name,
            ),
        }
    }
    out
}

/// Applies `dns_lookup_family` to a resolver answer.
fn select_family(addrs: &[SocketAddr], family: DnsLookupFamily) -> Vec<SocketAddr> {
    let v4: Vec<SocketAddr> = addrs.iter().copied().filter(SocketAddr::is_ipv4).collect();
    let v6: Vec<SocketAddr> = addrs.iter().copied().filter(SocketAddr::is_ipv6).collect();
    match family {
        DnsLookupFamily::V4Only => v4,
        DnsLookupFamily::V6Only => v6,
        DnsLookupFamily::Auto if !v6.is_empty() => v6,
        DnsLookupFamily::Auto => v4,
        DnsLookupFamily::V4Preferred if !v4.is_empty() => v4,
        DnsLookupFamily::V4Preferred => v6,
        DnsLookupFamily::All => addrs.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_envoy() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("v4");
        let b: SocketAddr = "[::1]:1".parse().expect("v6");
        let both = [a, b];
        assert_eq!(select_family(&both, DnsLookupFamily::Auto), vec![b]);
        assert_eq!(select_family(&[a], DnsLookupFamily::Auto), vec![a]);
        assert_eq!(select_family(&both, DnsLookupFamily::V4Preferred), vec![a]);
        assert_eq!(select_family(&both, DnsLookupFamily::V6Only), vec![b]);
        assert_eq!(select_family(&both, DnsLookupFamily::All), vec![a, b]);
    }
}
