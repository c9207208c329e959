//! The request as route matching sees it: method, `:path`, authority and
//! the raw headers, read in place from the parsed head.

use crate::http::codec::percent_decode;
use crate::http::grpc::is_grpc_content_type;
use std::borrow::Cow;

/// A parsed request head, borrowed for route matching.
pub struct RequestView<'r> {
    /// `:method`.
    pub method: &'r str,
    /// `:path`, query included.
    pub path: &'r str,
    /// `:authority` (the Host value as received).
    pub authority: &'r str,
    /// `:scheme`: `https` on a TLS connection, else `http`.
    pub scheme: &'r str,
    /// The header lines.
    pub headers: &'r [httparse::Header<'r>],
}

impl RequestView<'_> {
    /// A header's value by lower-case name (`:method`, `:path`,
    /// `:authority`, `:scheme` included); several lines of one header are
    /// joined with `,` as Envoy joins them for matching.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            ":method" => return Some(self.method.into()),
            ":path" => return Some(self.path.into()),
            ":authority" | "host" => return Some(self.authority.into()),
            ":scheme" => return Some(self.scheme.into()),
            _ => {}
        }
        let mut values = self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value));
        let first = values.next()?;
        match values.next() {
            None => Some(first),
            Some(second) => {
                let mut joined = first.into_owned();
                for v in std::iter::once(second).chain(values) {
                    joined.push(',');
                    joined.push_str(&v);
                }
                Some(joined.into())
            }
        }
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_parameter(&self, name: &str) -> Option<String> {
        let (_, query) = self.path.split_once('?')?;
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// Whether this is a gRPC request (see [`is_grpc_content_type`]).
    pub fn is_grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|ct| is_grpc_content_type(ct.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_join_and_queries_decode() {
        let headers = [
            httparse::Header {
                name: "X-A",
                value: b"1",
            },
            httparse::Header {
                name: "x-a",
                value: b"2",
            },
            httparse::Header {
                name: "content-type",
                value: b"application/grpc+proto",
            },
        ];
        let req = RequestView {
            method: "GET",
            path: "/p?a=1&b=x%20y&a=2",
            authority: "h",
            scheme: "http",
            headers: &headers,
        };
        assert_eq!(req.header("x-a").as_deref(), Some("1,2"));
        assert_eq!(req.header(":method").as_deref(), Some("GET"));
        assert_eq!(req.header("missing"), None);
        assert_eq!(req.query_parameter("a").as_deref(), Some("1"));
        assert_eq!(req.query_parameter("b").as_deref(), Some("x y"));
        assert_eq!(req.query_parameter("c"), None);
        assert!(req.is_grpc());
    }
}
