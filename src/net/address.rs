//! Where a socket lives: an IP address and port, or a Unix-domain socket
//! (Envoy's `pipe`), written as Envoy writes it.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

/// A listener's, endpoint's or peer's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `socket_address`: TCP over IPv4 or IPv6.
    Ip(SocketAddr),
    /// `pipe.path`: a Unix-domain stream socket. A leading `@` names one in
    /// Linux's abstract namespace, as in Envoy.
    Pipe(Arc<str>),
}

impl Address {
    /// The IP address and port, when this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(a) => Some(*a),
            Address::Pipe(_) => None,
        }
    }

    /// The port (0 for a pipe).
    pub fn port(&self) -> u16 {
        self.ip().map_or(0, |a| a.port())
    }

    /// Whether this is an abstract-namespace pipe (`@name`).
    pub fn is_abstract(&self) -> bool {
        matches!(self, Address::Pipe(p) if p.starts_with('@'))
    }

    /// A pipe's path as the kernel takes it: an abstract name's `@` becomes
    /// the leading NUL byte.
    pub fn pipe_path(&self) -> Option<OsString> {
        let Address::Pipe(path) = self else {
            return None;
        };
        let mut bytes = path.as_bytes().to_vec();
        if bytes.first() == Some(&b'@') {
            bytes[0] = 0;
        }
        Some(OsString::from_vec(bytes))
    }

    /// The address without its port, as Envoy's `..._WITHOUT_PORT`
    /// access-log operators print it (a pipe prints its path).
    pub fn without_port(&self) -> WithoutPort<'_> {
        WithoutPort(self)
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Ip(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(a) => a.fmt(f),
            Address::Pipe(p) => f.write_str(p),
        }
    }
}

/// Displays an address without its port.
pub struct WithoutPort<'a>(&'a Address);

impl fmt::Display for WithoutPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Address::Ip(a) => a.ip().fmt(f),
            Address::Pipe(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_names_get_their_nul_byte() {
        let a = Address::Pipe("@ringway".into());
        assert!(a.is_abstract());
        assert_eq!(a.pipe_path(), Some(OsString::from("\0ringway")));
        let p = Address::Pipe("/tmp/x.sock".into());
        assert!(!p.is_abstract());
        assert_eq!(p.to_string(), "/tmp/x.sock");
        assert_eq!(p.without_port().to_string(), "/tmp/x.sock");
    }

    #[test]
    fn ip_addresses_print_as_envoy_does() {
        let a = Address::from("[::1]:80".parse::<SocketAddr>().expect("v6"));
        assert_eq!(a.to_string(), "[::1]:80");
        assert_eq!(a.without_port().to_string(), "::1");
        assert_eq!(a.port(), 80);
    }
}
