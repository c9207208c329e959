//! Finding the client's address with `x-forwarded-for`, Envoy's way
//! (`use_remote_address`, `xff_num_trusted_hops`, `skip_xff_append`).

use crate::config::XffSettings;
use std::net::IpAddr;

/// What `x-forwarded-for` handling decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The trusted client address.
    pub client: IpAddr,
    /// Whether `client` came from the connection (not from the header).
    pub direct: bool,
    /// The `x-forwarded-for` to send upstream, when it changes.
    pub xff: Option<String>,
    /// Whether the client is internal (loopback or private), for
    /// `x-envoy-internal`.
    pub internal: bool,
}

/// Loopback, RFC 1918 and IPv6 unique-local addresses.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Applies the settings to a request from `peer` carrying `xff` (all
/// `x-forwarded-for` values joined with `,`).
pub fn resolve(settings: &XffSettings, peer: IpAddr, xff: Option<&str>) -> Forwarded {
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
    let from_header = if settings.use_remote_address {
        (hops > 0).then(|| from_right(hops)).flatten()
    } else {
        from_right(hops + 1)
    };
    let client = from_header.unwrap_or(peer);
    let xff = (settings.use_remote_address && !settings.skip_append).then(|| {
        let mut v = entries.join(", ");
        if !v.is_empty() {
            v.push_str(", ");
        }
        v.push_str(&peer.to_string());
        v
    });
    Forwarded {
        client,
        direct: from_header.is_none(),
        xff,
        internal: is_internal(client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(use_remote_address: bool, trusted_hops: u32) -> XffSettings {
        XffSettings {
            use_remote_address,
            trusted_hops,
            skip_append: false,
        }
    }

    #[test]
    fn envoy_documented_examples() {
        let peer: IpAddr = "192.0.2.10".parse().expect("ip");
        let xff = Some("203.0.113.128, 203.0.113.10, 203.0.113.1");
        // use_remote_address true, no trusted hops: the peer; appended.
        let f = resolve(&settings(true, 0), peer, xff);
        assert_eq!(f.client, peer);
        assert_eq!(
            f.xff.as_deref(),
            Some("203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.10")
        );
        // Two trusted hops: the second from the right.
        let f = resolve(&settings(true, 2), peer, xff);
        assert_eq!(f.client.to_string(), "203.0.113.10");
        // use_remote_address false: the last entry (hops 0), untouched.
        let f = resolve(&settings(false, 0), peer, xff);
        assert_eq!(f.client.to_string(), "203.0.113.1");
        assert_eq!(f.xff, None);
        let f = resolve(&settings(false, 1), peer, xff);
        assert_eq!(f.client.to_string(), "203.0.113.10");
        // Not enough entries, or none: the peer.
        assert_eq!(resolve(&settings(false, 5), peer, xff).client, peer);
        assert_eq!(resolve(&settings(false, 0), peer, None).client, peer);
        assert!(is_internal("10.1.2.3".parse().expect("ip")));
        assert!(!is_internal("203.0.113.1".parse().expect("ip")));
    }
}
