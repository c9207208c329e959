//! Finding the client's address with `x-forwarded-for`, and whether the
//! request is internal, Envoy's way (`use_remote_address`,
//! `xff_num_trusted_hops`, `skip_xff_append`, `internal_address_config`).

use crate::config::XffSettings;
use std::net::IpAddr;
use std::sync::OnceLock;

/// What `x-forwarded-for` handling decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The trusted client address (none for a pipe peer that no
    /// `x-forwarded-for` entry stands in for).
    pub client: Option<IpAddr>,
    /// Whether `client` came from the connection (not from the header).
    pub direct: bool,
    /// The `x-forwarded-for` to send upstream, when it changes.
    pub xff: Option<String>,
    /// Internal: one address in `x-forwarded-for` (after appending), and
    /// inside `internal_address_config` (none by default, as in Envoy
    /// 1.40), or a pipe client with `unix_sockets`. Only internal requests may carry `x-envoy-internal` and the
    /// `x-envoy-*` control headers (retry-on, timeouts).
    pub internal: bool,
    /// An edge request: external, on a connection manager that uses the
    /// remote address. It gets `x-envoy-external-address` and a fresh
    /// `x-request-id`.
    pub edge: bool,
}

/// Applies the settings to a request from `peer` carrying `xff` (all
/// `x-forwarded-for` values joined with `,`). `local` is the host's own
/// address, which Envoy appends instead of a loopback peer. A peer on a
/// pipe has no IP (`None`): as in Envoy, nothing is appended for it and it
/// is never the client address.
pub fn resolve(
    settings: &XffSettings,
    peer: Option<IpAddr>,
    local: IpAddr,
    xff: Option<&str>,
) -> Forwarded {
    let entries: Vec<&str> = xff
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let hops = settings.trusted_hops as usize;
    // The n-th entry from the right (1-based), if it is an address.
    let from_right = |n: usize| -> Option<IpAddr> {
        entries
            .len()
            .checked_sub(n)
            .and_then(|i| entries.get(i)?.parse().ok())
    };
    let (from_header, single) = if settings.use_remote_address {
        if hops > 0 {
            (from_right(hops), entries.len() == hops)
        } else {
            (None, entries.is_empty())
        }
    } else {
        (from_right(hops + 1), entries.len() == hops + 1)
    };
    // Without use_remote_address and no usable header, nothing is trusted.
    let trusted = from_header.or(peer.filter(|_| settings.use_remote_address));
    let client = trusted.or(peer);
    let appended = peer
        .filter(|_| settings.use_remote_address && !settings.skip_append)
        .map(|p| if p.is_loopback() { local } else { p });
    let xff = appended.map(
        |appended| match xff.map(str::trim).filter(|v| !v.is_empty()) {
            Some(existing) => format!("{existing},{appended}"),
            None => appended.to_string(),
        },
    );
    let internal = single
        && match trusted {
            Some(ip) => settings.is_internal(ip),
            // The trusted address is the pipe peer itself.
            None => settings.use_remote_address && peer.is_none() && settings.internal_unix_sockets,
        };
    Forwarded {
        client,
        direct: from_header.is_none(),
        xff,
        internal,
        edge: !internal && settings.use_remote_address,
    }
}

/// The host's first non-loopback address of `peer`'s family (what Envoy
/// appends to `x-forwarded-for` for a loopback peer), or loopback if it
/// has none.
pub fn local_address(v6: bool) -> IpAddr {
    static V4: OnceLock<IpAddr> = OnceLock::new();
    static V6: OnceLock<IpAddr> = OnceLock::new();
    *if v6 { &V6 } else { &V4 }.get_or_init(|| find_local_address(v6))
}

fn find_local_address(v6: bool) -> IpAddr {
    let fallback = if v6 {
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
    };
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return fallback;
    }
    let mut found = None;
    let mut at = list;
    while !at.is_null() && found.is_none() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*at };
        at = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr whose family says its type.
        let ip = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET if !v6 => {
                    let sa = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 if v6 => {
                    let sa = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::from(sa.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        found = ip.filter(|ip| !ip.is_loopback());
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(use_remote_address: bool, trusted_hops: u32) -> XffSettings {
        XffSettings {
            use_remote_address,
            trusted_hops,
            skip_append: false,
            internal_ranges: vec![crate::config::Cidr {
                ip: "10.0.0.0".parse().expect("ip"),
                len: 8,
            }],
            internal_unix_sockets: false,
        }
    }

    #[test]
    fn envoy_documented_examples() {
        let peer: Option<IpAddr> = "192.0.2.10".parse().ok();
        let local: IpAddr = "192.0.2.1".parse().expect("ip");
        let xff = Some("203.0.113.128, 203.0.113.10, 203.0.113.1");
        // use_remote_address true, no trusted hops: the peer; appended.
        let f = resolve(&settings(true, 0), peer, local, xff);
        assert_eq!(f.client, peer);
        assert_eq!(
            f.xff.as_deref(),
            Some("203.0.113.128, 203.0.113.10, 203.0.113.1,192.0.2.10")
        );
        assert!(f.edge && !f.internal);
        // Two trusted hops: the second from the right.
        let f = resolve(&settings(true, 2), peer, local, xff);
        assert_eq!(f.client, "203.0.113.10".parse().ok());
        // use_remote_address false: the last entry (hops 0), untouched.
        let f = resolve(&settings(false, 0), peer, local, xff);
        assert_eq!(f.client, "203.0.113.1".parse().ok());
        assert_eq!(f.xff, None);
        assert!(!f.edge);
        let f = resolve(&settings(false, 1), peer, local, xff);
        assert_eq!(f.client, "203.0.113.10".parse().ok());
        // Not enough entries, or none: the peer.
        assert_eq!(resolve(&settings(false, 5), peer, local, xff).client, peer);
        assert_eq!(resolve(&settings(false, 0), peer, local, None).client, peer);
    }

    #[test]
    fn internal_needs_one_address_inside_the_configured_ranges() {
        let inside: Option<IpAddr> = "10.1.2.3".parse().ok();
        let local: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(resolve(&settings(true, 0), inside, local, None).internal);
        // A header entry before it: more than one address, so external.
        let f = resolve(&settings(true, 0), inside, local, Some("10.9.9.9"));
        assert!(!f.internal && f.edge);
        // Behind a proxy: the single header entry decides.
        let peer: Option<IpAddr> = "203.0.113.1".parse().ok();
        assert!(resolve(&settings(false, 0), peer, local, Some("10.0.0.7")).internal);
        assert!(!resolve(&settings(false, 0), inside, local, None).internal);
        // A loopback peer is replaced by the host's address in the header.
        let f = resolve(&settings(true, 0), "127.0.0.1".parse().ok(), local, None);
        assert_eq!(f.xff.as_deref(), Some("192.0.2.1"));
        // Nothing is internal without ranges.
        let none = XffSettings {
            internal_ranges: Vec::new(),
            ..settings(true, 0)
        };
        assert!(!resolve(&none, inside, local, None).internal);
    }

    #[test]
    fn a_pipe_peer_is_never_appended_nor_the_client() {
        let local: IpAddr = "192.0.2.1".parse().expect("ip");
        let f = resolve(&settings(true, 0), None, local, Some("1.2.3.4"));
        assert_eq!((f.client, f.xff), (None, None));
        assert!(f.edge && !f.internal);
        // Behind a proxy, the header still names the client.
        let f = resolve(&settings(false, 0), None, local, Some("1.2.3.4"));
        assert_eq!(f.client, "1.2.3.4".parse().ok());
        // `unix_sockets` makes it internal, unless a header names others.
        let unix = XffSettings {
            internal_unix_sockets: true,
            ..settings(true, 0)
        };
        assert!(resolve(&unix, None, local, None).internal);
        assert!(!resolve(&unix, None, local, Some("1.2.3.4")).internal);
    }
}
