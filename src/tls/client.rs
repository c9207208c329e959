//! Client-side TLS for clusters: an `UpstreamTlsContext` compiled to one
//! rustls configuration shared by every shard (so resumption tickets
//! learnt on one shard serve all), and the handshake on a new upstream
//! connection.
//!
//! As in Envoy, a server certificate is checked only as far as the
//! `validation_context` asks: the chain when `trusted_ca` is set, the
//! names only through `match_typed_subject_alt_names`, never the SNI.

use super::cert::crls;
use super::cert::{self, CertInfo};
use super::sds::Secrets;
use super::verify::{roots, PeerChecks, Signatures};
use super::{provider, versions};
use crate::config::{TlsVersion, UpstreamProtocol, UpstreamTls};
use crate::net::{ByteCounts, Stream, TlsStream};
use crate::stats::{sets::SslSocketFactory, Scope, Store};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// A compiled client TLS context.
#[derive(Debug)]
pub struct ClientTls {
    /// None while an SDS secret it needs has never been good: connections
    /// fail, as Envoy's do.
    config: Option<Arc<ClientConfig>>,
    factory: Arc<Scope<SslSocketFactory>>,
    /// Every file it was compiled from, to watch.
    pub files: Vec<PathBuf>,
    /// `sni`; without it no SNI is sent (an IP address name sends none).
    sni: Option<String>,
    /// `auto_host_sni`.
    auto_host_sni: bool,
    /// What `/certs` shows of the client certificate.
    pub certificates: Vec<CertInfo>,
    /// What `/certs` shows of each trusted CA certificate.
    pub ca: Vec<CertInfo>,
    /// The context and protocol it was compiled from, to compile again
    /// when its files change.
    pub source: (UpstreamTls, UpstreamProtocol),
}

/// Checks a server's certificate as the validation context asks.
#[derive(Debug)]
struct ServerVerifier {
    /// The chain (and revocation) check when `trusted_ca` is set.
    chain: Option<Arc<WebPkiServerVerifier>>,
    checks: PeerChecks,
    signatures: Signatures,
    /// `auto_sni_san_validation`: a DNS SAN must name the SNI sent.
    sni_san: bool,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(chain) = &self.chain {
            match chain.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(_) => {}
                // Chain and revocation passed; as in Envoy, the name is
                // never checked (only SAN matchers look at it).
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(e) => return Err(e),
            }
        }
        let san_override = match server_name {
            ServerName::DnsName(name) if self.sni_san => Some(name.as_ref()),
            _ => None,
        };
        self.checks.check(end_entity, san_override)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// The one client certificate a context has, offered whatever the server
/// asks for.
#[derive(Debug)]
struct OneCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ClientTls {
    /// Compiles a cluster's context, reading its SDS secrets through
    /// `secrets`; `protocol` gives the ALPN offered when `alpn_protocols`
    /// is empty, `owner` (`cluster.<name>.`) names its stats.
    pub fn compile(
        tls: &UpstreamTls,
        protocol: &UpstreamProtocol,
        secrets: &Secrets,
        store: &Store,
        owner: &str,
    ) -> Result<ClientTls, String> {
        let resolved = secrets.resolve(&tls.common, None, store, owner, false);
        let (files, factory) = (resolved.files, resolved.factory);
        let source = (tls.clone(), protocol.clone());
        if !resolved.ready {
            return Ok(ClientTls {
                config: None,
                factory,
                files,
                sni: None,
                auto_host_sni: false,
                certificates: Vec::new(),
                ca: Vec::new(),
                source,
            });
        }
        let common = &resolved.common;
        let provider = provider(&common.cipher_suites, &common.curves)?;
        let mut checks = PeerChecks::default();
        let mut trust = None;
        if let Some(v) = &common.validation {
            checks = PeerChecks::new(v);
            if let (Some(roots), false) = (roots(v)?, v.accept_untrusted) {
                let mut builder =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if let Some(crl) = &v.crl {
                    builder = builder.with_crls(crls(crl)?);
                }
                trust = Some(builder.build().map_err(|e| format!("{}: {e}", v.path))?);
            }
        }
        let verifier = ServerVerifier {
            chain: trust,
            checks,
            signatures: Signatures(provider.clone()),
            sni_san: tls.auto_sni_san_validation,
        };
        // Envoy's client default tops out at TLS 1.2 unless raised.
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(
                common.min_version,
                common.max_version,
                TlsVersion::V1_2,
            ))
            .map_err(|e| format!("{}: {e}", common.params_path))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut certificates = Vec::new();
        let mut config = match common.certificates.as_slice() {
            [] => builder.with_no_client_auth(),
            [one] => {
                let loaded =
                    cert::load(one, &provider).map_err(|e| format!("{}: {e}", one.path))?;
                certificates.push(loaded.info);
                builder.with_client_cert_resolver(Arc::new(OneCertificate(loaded.key)))
            }
            [_, second, ..] => {
                return Err(format!(
                    "{}: a client context takes one certificate",
                    second.path
                ))
            }
        };
        config.alpn_protocols = if common.alpn.is_empty() {
            match protocol {
                UpstreamProtocol::Http2(_) => vec![b"h2".to_vec()],
                UpstreamProtocol::Auto(_) => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                _ => vec![b"http/1.1".to_vec()],
            }
        } else {
            common.alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
        };
        config.resumption = match tls.max_session_keys {
            0 => Resumption::disabled(),
            n => Resumption::in_memory_sessions(n),
        };
        if let Some(name) = &tls.sni {
            ServerName::try_from(name.as_str()).map_err(|e| format!("sni {name:?}: {e}"))?;
        }
        Ok(ClientTls {
            config: Some(Arc::new(config)),
            factory,
            files,
            sni: tls.sni.clone(),
            auto_host_sni: tls.auto_host_sni,
            certificates,
            ca: super::verify::ca_infos(common.validation.as_ref()),
            source,
        })
    }

    /// Whether its secrets are ready; if not, counts the connection that
    /// cannot be made (`upstream_context_secrets_not_ready`).
    pub fn check_ready(&self, w: usize) -> bool {
        if self.config.is_none() {
            self.factory
                .inc(w, SslSocketFactory::upstream_context_secrets_not_ready);
        }
        self.config.is_some()
    }

    /// The server name a new connection sends and is checked against:
    /// the request's (`auto_sni`), else the endpoint's host name
    /// (`auto_host_sni`, unless it is an address), else `sni`.
    pub fn server_name<'a>(
        &'a self,
        request: Option<&'a str>,
        hostname: &'a str,
    ) -> Option<&'a str> {
        let host_name =
            self.auto_host_sni && !hostname.is_empty() && hostname.parse::<IpAddr>().is_err();
        request
            .or(host_name.then_some(hostname))
            .or(self.sni.as_deref())
    }

    /// Runs the client handshake on a new connection to `ip` (the
    /// endpoint's address, which keys resumption when there is no
    /// server name to send).
    pub async fn connect(
        &self,
        stream: Stream,
        ip: Option<IpAddr>,
        name: Option<&str>,
    ) -> std::io::Result<TlsStream> {
        let Some(config) = &self.config else {
            return Err(std::io::Error::other("TLS secrets are not ready"));
        };
        let name = match (name, ip) {
            (Some(n), _) => ServerName::try_from(n.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            // No SNI: rustls sends none for an address.
            (None, Some(ip)) => ServerName::IpAddress(ip.into()),
            (None, None) => ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
        };
        let io = stream.into_poll(Vec::new(), Rc::new(ByteCounts::default()));
        let session = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, io)
            .await?;
        Ok(TlsStream::new(session.into()))
    }
}
