//! Checking a peer's certificate as a `validation_context` asks: the
//! chain against `trusted_ca` (and CRLs), then the pins and SAN matchers.

use super::cert::{certificates, crls, inspect, subject_alt_names, CertInfo};
use crate::config::{DataSource, SanMatcher, SanType, Validation};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError};
use rustls::{RootCertStore, SignatureScheme};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate that chained correctly was still refused; carried
/// in the handshake error so the stats can tell the cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinFailure {
    /// No SAN matched `match_typed_subject_alt_names`.
    San,
    /// Neither `verify_certificate_hash` nor `verify_certificate_spki`
    /// matched.
    Hash,
}

impl std::fmt::Display for PinFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PinFailure::San => "no subject alternative name matched",
            PinFailure::Hash => "the certificate matched no pinned hash",
        })
    }
}

impl std::error::Error for PinFailure {}

/// The checks after the chain: pins and SAN matchers.
#[derive(Debug, Default)]
pub(super) struct PeerChecks {
    san_matchers: Vec<SanMatcher>,
    cert_hashes: Vec<[u8; 32]>,
    spki_hashes: Vec<[u8; 32]>,
}

impl PeerChecks {
    pub(super) fn new(v: &Validation) -> Self {
        PeerChecks {
            san_matchers: v.san_matchers.clone(),
            cert_hashes: v.cert_hashes.clone(),
            spki_hashes: v.spki_hashes.clone(),
        }
    }

    /// Checks the leaf certificate `der`; with `san_override`, a DNS SAN
    /// must cover that name, in place of the SAN matchers.
    pub(super) fn check(&self, der: &[u8], san_override: Option<&str>) -> Result<(), Error> {
        let fail = |f: PinFailure| {
            Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(f))))
        };
        if !self.cert_hashes.is_empty() || !self.spki_hashes.is_empty() {
            let hash_ok = !self.cert_hashes.is_empty() && self.cert_hashes.contains(&sha256(der));
            let spki_ok = !self.spki_hashes.is_empty()
                && X509Certificate::from_der(der)
                    .is_ok_and(|(_, c)| self.spki_hashes.contains(&sha256(c.public_key().raw)));
            if !hash_ok && !spki_ok {
                return Err(fail(PinFailure::Hash));
            }
        }
        if let Some(name) = san_override {
            let Ok((_, cert)) = X509Certificate::from_der(der) else {
                return Err(fail(PinFailure::San));
            };
            let name = name.to_ascii_lowercase();
            let covered = subject_alt_names(&cert)
                .iter()
                .filter_map(|s| s.strip_prefix("DNS:"))
                .any(|san| super::cert::name_matches(&san.to_ascii_lowercase(), &name));
            return if covered {
                Ok(())
            } else {
                Err(fail(PinFailure::San))
            };
        }
        if !self.san_matchers.is_empty() {
            let Ok((_, cert)) = X509Certificate::from_der(der) else {
                return Err(fail(PinFailure::San));
            };
            let sans = subject_alt_names(&cert);
            let matched = self.san_matchers.iter().any(|m| {
                let prefix = match m.san_type {
                    SanType::Dns => "DNS:",
                    SanType::Uri => "URI:",
                    SanType::Email => "EMAIL:",
                    SanType::IpAddress => "IP:",
                };
                sans.iter()
                    .filter_map(|s| s.strip_prefix(prefix))
                    .any(|value| m.matcher.matches(value))
            });
            if !matched {
                return Err(fail(PinFailure::San));
            }
        }
        Ok(())
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The trust anchors of `trusted_ca`.
pub(super) fn roots(v: &Validation) -> Result<Option<RootCertStore>, String> {
    let Some(ca) = &v.trusted_ca else {
        return Ok(None);
    };
    let mut store = RootCertStore::empty();
    for cert in certificates(ca)? {
        store
            .add(cert)
            .map_err(|e| format!("cannot use a trusted_ca certificate: {e}"))?;
    }
    Ok(Some(store))
}

/// What `/certs` shows of the `trusted_ca` certificates.
pub(super) fn ca_infos(v: Option<&Validation>) -> Vec<CertInfo> {
    let Some(ca) = v.and_then(|v| v.trusted_ca.as_ref()) else {
        return Vec::new();
    };
    let path = match ca {
        DataSource::File(p) => p.display().to_string(),
        DataSource::Inline(_) => "<inline>".to_string(),
    };
    certificates(ca)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| inspect(c.as_ref(), path.clone()).ok().map(|(info, _)| info))
        .collect()
}

/// Handshake signature checks with a provider's algorithms, shared by the
/// client- and server-certificate verifiers.
#[derive(Debug)]
pub(super) struct Signatures(pub(super) Arc<CryptoProvider>);

impl Signatures {
    pub(super) fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client-certificate verifier for a server context.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    /// The chain check when `trusted_ca` is set (and not ACCEPT_UNTRUSTED).
    chain: Option<Arc<dyn ClientCertVerifier>>,
    checks: PeerChecks,
    mandatory: bool,
    signatures: Signatures,
}

impl ClientVerifier {
    /// The verifier for `validation` (None: any certificate is taken).
    pub(super) fn new(
        validation: Option<&Validation>,
        mandatory: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, String> {
        let mut chain = None;
        let mut checks = PeerChecks::default();
        if let Some(v) = validation {
            checks = PeerChecks::new(v);
            if let (Some(roots), false) = (roots(v)?, v.accept_untrusted) {
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if let Some(crl) = &v.crl {
                    builder = builder.with_crls(crls(crl)?);
                }
                if !mandatory {
                    builder = builder.allow_unauthenticated();
                }
                chain = Some(
                    builder.build().map_err(|e| format!("{e}"))? as Arc<dyn ClientCertVerifier>
                );
            }
        }
        Ok(ClientVerifier {
            chain,
            checks,
            mandatory,
            signatures: Signatures(provider),
        })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.chain {
            Some(c) => c.root_hint_subjects(),
            None => &[],
        }
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        self.checks.check(end_entity, None)?;
        Ok(ClientCertVerified::assertion())
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
