//! What a downstream TLS session settled, for access logs: Envoy's
//! `%DOWNSTREAM_TLS_*%`, `%DOWNSTREAM_PEER_*%` and
//! `%REQUESTED_SERVER_NAME%`.

use super::cert::subject_alt_names;
use super::{cipher_name, version_name};
use rustls::CommonState;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A finished handshake, described once per connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite, by Envoy's (OpenSSL's) name.
    pub cipher: &'static str,
    /// The SNI the client sent.
    pub server_name: Option<String>,
    /// The client certificate's URI SANs.
    pub peer_uri_sans: Vec<String>,
    /// The client certificate's DNS SANs.
    pub peer_dns_sans: Vec<String>,
    /// The client certificate's subject (`CN=client,O=…`).
    pub peer_subject: Option<String>,
}

impl SessionInfo {
    /// Describes `state`, with the SNI `server_name`.
    pub fn of(state: &CommonState, server_name: Option<String>) -> SessionInfo {
        let mut info = SessionInfo {
            version: state.protocol_version().map_or("", version_name),
            cipher: state
                .negotiated_cipher_suite()
                .map_or("", |s| cipher_name(s.suite())),
            server_name,
            ..SessionInfo::default()
        };
        let leaf = state.peer_certificates().and_then(|c| c.first());
        if let Some(Ok((_, cert))) = leaf.map(|der| X509Certificate::from_der(der.as_ref())) {
            for name in subject_alt_names(&cert) {
                if let Some(uri) = name.strip_prefix("URI:") {
                    info.peer_uri_sans.push(uri.to_string());
                } else if let Some(dns) = name.strip_prefix("DNS:") {
                    info.peer_dns_sans.push(dns.to_string());
                }
            }
            info.peer_subject = Some(rfc2253(&cert));
        }
        info
    }
}

/// A subject as RFC 2253 writes it (most specific component first), as
/// Envoy prints `%DOWNSTREAM_PEER_SUBJECT%`.
fn rfc2253(cert: &X509Certificate) -> String {
    let parts: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(
                        atv.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map_or_else(|_| atv.attr_type().to_id_string(), str::to_string);
                    let value = atv.as_str().unwrap_or("");
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join(",")
}
