//! `envoy.filters.listener.proxy_protocol`: the HAProxy PROXY protocol,
//! version 1 (text) and 2 (binary), read before anything else on a
//! connection. The addresses it carries become the connection's client
//! and destination addresses; the socket's own peer stays the "direct"
//! remote address, as in Envoy.

use crate::net::{Address, Stream};
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line (spec: 107 bytes with CRLF).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v2's fixed header: signature, version/command, family, length.
const V2_HEADER: usize = 16;
/// Each read's size: a v1 line or a v2 header with its addresses fits.
const READ: usize = 512;

/// What the header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// Version 1 or 2 with the client's and destination addresses.
    Proxied {
        /// 1 or 2.
        version: u8,
        /// The original client.
        source: Address,
        /// The address it connected to.
        destination: Address,
    },
    /// Version 1 `UNKNOWN` or version 2 `LOCAL` (a health check): the
    /// socket's own addresses stand.
    Local {
        /// 1 or 2.
        version: u8,
    },
    /// No header: the connection began with other bytes.
    Absent,
}

/// Why no header could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A malformed header of this version.
    Malformed(u8),
    /// The connection failed or closed first.
    Closed,
}

/// A header and every byte read with it.
#[derive(Debug)]
pub struct Read {
    /// What the header said.
    pub header: Header,
    /// The bytes read: the header's, then the connection's first ones.
    pub bytes: Vec<u8>,
    /// How many of `bytes` the header took.
    pub header_len: usize,
}

/// Reads a PROXY header from `stream`, and whatever came with it.
pub async fn read(stream: &mut Stream) -> Result<Read, Failure> {
    let mut buf = Vec::new();
    loop {
        match parse(&buf) {
            Parsed::Done(header, used) => {
                return Ok(Read {
                    header,
                    bytes: buf,
                    header_len: used,
                });
            }
            Parsed::Invalid(version) => return Err(Failure::Malformed(version)),
            Parsed::More(want) => {
                // What is read past the header is handed on with it.
                let size = want.max(READ);
                let chunk = Vec::with_capacity(size);
                let (res, chunk) = stream.read(chunk.slice_mut(..size)).await;
                match res {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk.into_inner()[..n]),
                    _ => return Err(Failure::Closed),
                }
            }
        }
    }
}

enum Parsed {
    /// A header of this many bytes.
    Done(Header, usize),
    /// Wants at most this many more bytes to decide.
    More(usize),
    /// A header of this version, malformed.
    Invalid(u8),
}

fn parse(buf: &[u8]) -> Parsed {
    let v1 = b"PROXY ";
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    Parsed::Done(Header::Absent, 0)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid(1)
        } else {
            Parsed::More(1)
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid(1);
    };
    let used = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Done(Header::Local { version: 1 }, used),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip = |s: &str| -> Option<IpAddr> {
                match v4 {
                    true => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
                    false => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
                }
            };
            let port = |s: &str| {
                s.parse::<u16>()
                    .ok()
                    .filter(|_| !s.starts_with('0') || s == "0")
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => Parsed::Done(
                    Header::Proxied {
                        version: 1,
                        source: Address::Ip(SocketAddr::new(s, sp)),
                        destination: Address::Ip(SocketAddr::new(d, dp)),
                    },
                    used,
                ),
                _ => Parsed::Invalid(1),
            }
        }
        _ => Parsed::Invalid(1),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < V2_HEADER {
        return Parsed::More(V2_HEADER - buf.len());
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Parsed::Invalid(2);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_HEADER + len;
    if buf.len() < total {
        return Parsed::More(total - buf.len());
    }
    if command == 0 {
        return Parsed::Done(Header::Local { version: 2 }, total);
    }
    let body = &buf[V2_HEADER..total];
    let addresses = match buf[13] >> 4 {
        // AF_INET: 4 + 4 + 2 + 2 bytes.
        1 if body.len() >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        // AF_INET6: 16 + 16 + 2 + 2 bytes.
        2 if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // AF_UNSPEC, or AF_UNIX: the socket's addresses stand.
        0 | 3 => None,
        _ => return Parsed::Invalid(2),
    };
    match addresses {
        Some((source, destination)) => Parsed::Done(
            Header::Proxied {
                version: 2,
                source: Address::Ip(source),
                destination: Address::Ip(destination),
            },
            total,
        ),
        None => Parsed::Done(Header::Local { version: 2 }, total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: &[u8]) -> Option<(Header, usize)> {
        match parse(bytes) {
            Parsed::Done(h, used) => Some((h, used)),
            _ => None,
        }
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 10.1.2.3 10.9.9.9 1111 80\r\nGET";
        let (header, used) = done(line).expect("parsed");
        assert_eq!(used, line.len() - 3);
        assert!(matches!(header, Header::Proxied { version: 1, .. }));
        assert!(matches!(
            parse(b"PROXY TCP4 garbage\r\n"),
            Parsed::Invalid(1)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Parsed::Invalid(1)
        ));
        assert!(matches!(
            done(b"PROXY UNKNOWN\r\n"),
            Some((Header::Local { version: 1 }, 15))
        ));
        assert!(matches!(parse(b"PROXY TCP4 1.2"), Parsed::More(1)));
        assert!(matches!(
            done(b"GET / HTTP/1.1\r\n"),
            Some((Header::Absent, 0))
        ));
    }

    #[test]
    fn version_2_headers() {
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 4, 5, 6, 10, 7, 7, 7, 8, 174, 1, 187]);
        let (header, used) = done(&v2).expect("parsed");
        assert_eq!(used, 28);
        let Header::Proxied {
            source,
            destination,
            ..
        } = header
        else {
            panic!("{header:?}");
        };
        assert_eq!(source.to_string(), "10.4.5.6:2222");
        assert_eq!(destination.to_string(), "10.7.7.7:443");
        assert!(matches!(parse(&v2[..20]), Parsed::More(8)));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert!(matches!(
            done(&local),
            Some((Header::Local { version: 2 }, 16))
        ));
    }
}
