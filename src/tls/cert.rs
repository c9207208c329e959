//! Certificates and keys: PEM loading, the names a certificate serves,
//! and what `/certs` shows about it.

use crate::config::{CertificateSource, DataSource};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// What admin `/certs` and the expiry stats need about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Where it came from (a file name, or `<inline>`).
    pub path: String,
    /// Serial number in hex.
    pub serial: String,
    /// Subject alternative names as `DNS:…`, `URI:…`, ….
    pub sans: Vec<String>,
    /// Not-after, in seconds since the epoch.
    pub expires: i64,
    /// Not-before, in seconds since the epoch.
    pub valid_from: i64,
}

/// A loaded server or client certificate with the DNS names it serves.
#[derive(Debug)]
pub(super) struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Lower-cased DNS SANs (the subject CN when there are none).
    pub names: Vec<String>,
    pub info: CertInfo,
}

fn describe(source: &DataSource) -> String {
    match source {
        DataSource::File(p) => p.display().to_string(),
        DataSource::Inline(_) => "<inline>".to_string(),
    }
}

/// Reads every certificate of a PEM bundle.
pub(super) fn certificates(source: &DataSource) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = source.load()?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("no certificate found in {}", describe(source))),
        Err(e) => Err(format!(
            "cannot parse the certificates in {}: {e}",
            describe(source)
        )),
    }
}

/// Reads every CRL of a PEM bundle.
pub(super) fn crls(
    source: &DataSource,
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = source.load()?;
    let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
    match crls {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("no CRL found in {}", describe(source))),
        Err(e) => Err(format!(
            "cannot parse the CRLs in {}: {e}",
            describe(source)
        )),
    }
}

/// Loads a certificate chain and its private key, checking they belong
/// together.
pub(super) fn load(
    source: &CertificateSource,
    provider: &CryptoProvider,
) -> Result<Loaded, String> {
    let chain = certificates(&source.chain)?;
    let key_bytes = source.key.load()?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        format!(
            "cannot parse the private key in {}: {e}",
            describe(&source.key)
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unsupported private key in {}: {e}", describe(&source.key)))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "the private key in {} does not match the certificate in {}: {e}",
            describe(&source.key),
            describe(&source.chain)
        )
    })?;
    let leaf = certified
        .end_entity_cert()
        .map_err(|e| format!("{}: {e}", describe(&source.chain)))?;
    let (info, names) = inspect(leaf.as_ref(), describe(&source.chain))?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        info,
    })
}

/// Reads a DER certificate's expiry, serial and names.
pub(super) fn inspect(der: &[u8], path: String) -> Result<(CertInfo, Vec<String>), String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("cannot parse the certificate in {path}: {e}"))?;
    let sans = subject_alt_names(&cert);
    let mut names: Vec<String> = sans
        .iter()
        .filter_map(|s| s.strip_prefix("DNS:"))
        .map(str::to_ascii_lowercase)
        .collect();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let info = CertInfo {
        path,
        serial: serial_hex(cert.raw_serial()),
        sans,
        expires: cert.validity().not_after.timestamp(),
        valid_from: cert.validity().not_before.timestamp(),
    };
    Ok((info, names))
}

/// A serial number as Envoy prints it (BoringSSL's `BN_bn2hex`, lower
/// case): the integer's bytes without leading zero bytes (the DER pad of
/// a serial whose top bit is set among them), two digits each; zero is
/// `0`.
fn serial_hex(raw: &[u8]) -> String {
    let magnitude = &raw[raw.iter().take_while(|b| **b == 0).count()..];
    if magnitude.is_empty() {
        return "0".to_string();
    }
    magnitude.iter().map(|b| format!("{b:02x}")).collect()
}

/// A certificate's subject alternative names, as `TYPE:value`.
pub(super) fn subject_alt_names(cert: &X509Certificate) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
            GeneralName::URI(u) => Some(format!("URI:{u}")),
            GeneralName::RFC822Name(e) => Some(format!("EMAIL:{e}")),
            GeneralName::IPAddress(ip) => ip_text(ip).map(|ip| format!("IP:{ip}")),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// Whether `sni` is served by a certificate for `name` (`*.` wildcards
/// cover one label, as in RFC 6125).
pub(super) fn name_matches(name: &str, sni: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => sni
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == sni,
    }
}

#[cfg(test)]
mod tests {
    use super::serial_hex;

    #[test]
    fn serials_print_as_boringssl_prints_them() {
        // A serial whose top bit is set carries a DER zero byte first.
        assert_eq!(serial_hex(&[0x00, 0xbb, 0x34]), "bb34");
        assert_eq!(serial_hex(&[0x0a, 0xbc]), "0abc");
        assert_eq!(serial_hex(&[0x00]), "0");
    }
}
