//! TLS on rustls with the aws-lc-rs provider: server contexts compiled
//! from `DownstreamTlsContext`, client contexts from `UpstreamTlsContext`,
//! and the names Envoy gives versions,
//! ciphers and curves in stats and access logs.

mod cert;
mod client;
mod sds;
mod server;
mod session;
mod tickets;
mod verify;

pub use cert::CertInfo;
pub use client::ClientTls;
pub use sds::{check_secret, Secrets};
pub use server::ServerTls;
pub use session::SessionInfo;

use crate::config::TlsVersion;
use crate::stats::ssl::{Ssl, SslStats};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::{CertificateError, CipherSuite, Error, NamedGroup, SupportedCipherSuite};
use std::sync::Arc;
use verify::PinFailure;

/// TLS 1.2 suites by the OpenSSL names Envoy's `cipher_suites` uses.
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites (not configurable through `cipher_suites`, as in Envoy).
const TLS13_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_AES_128_GCM_SHA256",
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// Key-exchange groups by the names Envoy's `ecdh_curves` uses.
const CURVES: &[(&str, &dyn SupportedKxGroup)] = &[
    ("X25519", aws_lc_rs::kx_group::X25519),
    ("P-256", aws_lc_rs::kx_group::SECP256R1),
    ("P-384", aws_lc_rs::kx_group::SECP384R1),
    ("X25519MLKEM768", aws_lc_rs::kx_group::X25519MLKEM768),
];

/// Envoy's default `ecdh_curves`.
const DEFAULT_CURVES: &[&str] = &["X25519", "P-256"];

/// Envoy's default TLS 1.2 `cipher_suites`.
const DEFAULT_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];

/// The name `ssl.ciphers.*` and `%DOWNSTREAM_TLS_CIPHER%` give a suite.
pub fn cipher_name(suite: CipherSuite) -> &'static str {
    TLS12_SUITES
        .iter()
        .chain(TLS13_SUITES)
        .find(|(_, s)| s.suite() == suite)
        .map_or("unknown", |(name, _)| name)
}

/// The name `ssl.curves.*` gives a group.
pub fn curve_name(group: NamedGroup) -> &'static str {
    CURVES
        .iter()
        .find(|(_, g)| g.name() == group)
        .map_or("unknown", |(name, _)| name)
}

/// The version of a negotiated protocol, by Envoy's name.
pub fn version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => TlsVersion::V1_3.name(),
        _ => TlsVersion::V1_2.name(),
    }
}

/// The crypto provider for one context: its cipher suites and curves.
/// Unknown or unsupported names are errors naming them.
fn provider(cipher_suites: &[String], curves: &[String]) -> Result<Arc<CryptoProvider>, String> {
    let mut suites: Vec<SupportedCipherSuite> = TLS13_SUITES.iter().map(|(_, s)| *s).collect();
    let asked: Vec<&str> = if cipher_suites.is_empty() {
        DEFAULT_SUITES.to_vec()
    } else {
        // OpenSSL's "[A|B]" equal-preference groups list their members.
        cipher_suites
            .iter()
            .flat_map(|s| s.trim_matches(|c| c == '[' || c == ']').split('|'))
            .collect()
    };
    let mut rejected = Vec::new();
    for name in asked {
        match TLS12_SUITES.iter().find(|(n, _)| *n == name) {
            Some((_, s)) => suites.push(*s),
            None => rejected.push(name),
        }
    }
    if !rejected.is_empty() {
        return Err(format!(
            "Failed to initialize cipher suites {}. The following ciphers were rejected: {} (Ringway's TLS offers only ECDHE with AES-GCM or ChaCha20-Poly1305)",
            cipher_suites.join(":"),
            rejected.join(":")
        ));
    }
    let asked: Vec<&str> = if curves.is_empty() {
        DEFAULT_CURVES.to_vec()
    } else {
        curves.iter().map(String::as_str).collect()
    };
    let mut kx_groups = Vec::new();
    for name in asked {
        match CURVES.iter().find(|(n, _)| *n == name) {
            Some((_, g)) => kx_groups.push(*g),
            None => {
                return Err(format!(
                    "ecdh curve {name:?} is not supported (X25519, P-256, P-384 and X25519MLKEM768 are)"
                ))
            }
        }
    }
    Ok(Arc::new(CryptoProvider {
        cipher_suites: suites,
        kx_groups,
        ..aws_lc_rs::default_provider()
    }))
}

/// The protocol versions between `min` and `max`.
fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    default_max: TlsVersion,
) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let min = min.unwrap_or(TlsVersion::V1_2);
    let max = max.unwrap_or(default_max);
    let mut out = Vec::new();
    if min <= TlsVersion::V1_3 && max >= TlsVersion::V1_3 {
        out.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::V1_2 && max >= TlsVersion::V1_2 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// Counts a finished handshake in `stats`: Envoy's `ssl.handshake` and
/// the version, cipher and curve it settled on.
pub(crate) fn count_handshake(state: &rustls::CommonState, stats: &SslStats, w: usize) {
    stats.inc(w, Ssl::handshake);
    if let Some(v) = state.protocol_version() {
        stats.inc_label(w, "versions", version_name(v));
    }
    if let Some(suite) = state.negotiated_cipher_suite() {
        stats.inc_label(w, "ciphers", cipher_name(suite.suite()));
    }
    if let Some(group) = state.negotiated_key_exchange_group() {
        stats.inc_label(w, "curves", curve_name(group.name()));
    }
    if state.peer_certificates().is_none_or(|c| c.is_empty()) {
        stats.inc(w, Ssl::no_certificate);
    }
    if state.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        stats.inc(w, Ssl::session_reused);
    }
}

/// Counts a failed handshake as Envoy does: a refused peer certificate
/// under its `fail_verify_*` reason, anything else as `connection_error`.
/// A failed handshake in the shape of Envoy's transport failure reason
/// (`TLS_error:|…:TLS_error_end`): a certificate that failed its checks is
/// BoringSSL's CERTIFICATE_VERIFY_FAILED; anything else names rustls'
/// error.
pub(crate) fn tls_failure(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(_) | Error::NoCertificatesPresented) => {
            "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end".into()
        }
        Some(other) => format!("TLS_error:|{other}:TLS_error_end"),
        None => format!("TLS_error:|{e}:TLS_error_end"),
    }
}

pub(crate) fn count_failure(e: &std::io::Error, stats: &SslStats, w: usize) {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        stats.inc(w, Ssl::connection_error);
        return;
    };
    let failed = match tls {
        Error::NoCertificatesPresented => Ssl::fail_verify_no_cert,
        Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<PinFailure>() {
                Some(PinFailure::San) => Ssl::fail_verify_san,
                Some(PinFailure::Hash) => Ssl::fail_verify_cert_hash,
                None => Ssl::fail_verify_error,
            }
        }
        Error::InvalidCertificate(_) => Ssl::fail_verify_error,
        _ => Ssl::connection_error,
    };
    stats.inc(w, failed);
}
