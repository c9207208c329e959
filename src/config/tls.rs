//! Decoding `envoy.transport_sockets.tls`: `DownstreamTlsContext` on a
//! filter chain and `UpstreamTlsContext` on a cluster. Only the shape is
//! decoded here; certificates are read and checked when the snapshot is
//! compiled (`crate::tls`), so that a rotation re-reads the same sources.

use super::bootstrap::{any_bool, type_url};
use super::node::{Errors, Fields, Node, Obj};
use super::route_match::{string_matcher, StringMatcher};
use super::sds::SecretSource;
use std::path::PathBuf;

const TLS_SOCKET_NAME: &str = "envoy.transport_sockets.tls";
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
const DOWNSTREAM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

#[rustfmt::skip]
static TRANSPORT_SOCKET: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &[],
};
#[rustfmt::skip]
static DOWNSTREAM: Fields = Fields {
    known: &[
        "@type", "common_tls_context", "require_client_certificate",
        "disable_stateless_session_resumption", "disable_stateful_session_resumption",
        "session_ticket_keys", "session_ticket_keys_sds_secret_config",
    ],
    unsupported: &[
        "session_timeout",
        "require_sni",
        "ocsp_staple_policy",
        "full_scan_certs_on_sni_mismatch", "prefer_client_ciphers",
        "disable_session_resumption_with_client_cert",
    ],
};
#[rustfmt::skip]
static UPSTREAM: Fields = Fields {
    known: &[
        "@type", "common_tls_context", "sni", "max_session_keys", "auto_host_sni",
        "auto_sni_san_validation",
    ],
    unsupported: &[
        "allow_renegotiation",
        "enforce_rsa_key_usage",
    ],
};
#[rustfmt::skip]
static COMMON: Fields = Fields {
    known: &[
        "tls_params", "tls_certificates", "validation_context", "alpn_protocols",
        "tls_certificate_sds_secret_configs", "validation_context_sds_secret_config",
        "combined_validation_context",
    ],
    unsupported: &[
        "tls_certificate_provider_instance",
        "tls_certificate_certificate_provider", "tls_certificate_certificate_provider_instance",
        "validation_context_certificate_provider",
        "validation_context_certificate_provider_instance", "custom_handshaker", "key_log",
        "custom_tls_certificate_selector",
    ],
};
#[rustfmt::skip]
static TICKET_KEYS: Fields = Fields {
    known: &["keys"],
    unsupported: &[],
};
#[rustfmt::skip]
static COMBINED_VALIDATION: Fields = Fields {
    known: &["default_validation_context", "validation_context_sds_secret_config"],
    unsupported: &["validation_context_certificate_provider",
        "validation_context_certificate_provider_instance", "custom_validator_config"],
};
#[rustfmt::skip]
static PARAMS: Fields = Fields {
    known: &[
        "tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites",
        "ecdh_curves",
    ],
    unsupported: &["signature_algorithms", "compliance_policies"],
};
#[rustfmt::skip]
static CERTIFICATE: Fields = Fields {
    known: &["certificate_chain", "private_key"],
    unsupported: &[
        "pkcs12", "watched_directory", "private_key_provider", "password", "ocsp_staple",
        "signed_certificate_timestamp",
    ],
};
#[rustfmt::skip]
static VALIDATION: Fields = Fields {
    known: &[
        "trusted_ca", "verify_certificate_spki", "verify_certificate_hash",
        "match_typed_subject_alt_names", "crl", "trust_chain_verification",
    ],
    unsupported: &[
        "ca_certificate_provider_instance", "system_root_certs", "watched_directory",
        "match_subject_alt_names", "require_signed_certificate_timestamp",
        "allow_expired_certificate", "custom_validator_config", "only_verify_leaf_cert_crl",
        "max_verify_depth",
    ],
};
#[rustfmt::skip]
static SAN_MATCHER: Fields = Fields {
    known: &["san_type", "matcher"],
    unsupported: &["oid"],
};
#[rustfmt::skip]
static DATA_SOURCE: Fields = Fields {
    known: &["filename", "inline_string", "inline_bytes"],
    unsupported: &["environment_variable", "watched_directory"],
};

/// Where certificate or key bytes come from (`config.core.v3.DataSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `filename`: read when the snapshot is compiled.
    File(PathBuf),
    /// `inline_string` or `inline_bytes`.
    Inline(Vec<u8>),
}

impl DataSource {
    /// The file it reads, if it is one.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            DataSource::File(p) => Some(p.clone()),
            DataSource::Inline(_) => None,
        }
    }

    /// The bytes, or why they cannot be had.
    pub fn load(&self) -> Result<Vec<u8>, String> {
        match self {
            DataSource::Inline(b) => Ok(b.clone()),
            DataSource::File(p) => {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            }
        }
    }
}

/// A TLS protocol version Envoy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1_2`.
    V1_2,
    /// `TLSv1_3`.
    V1_3,
}

impl TlsVersion {
    /// The name `ssl.versions.*` and `%DOWNSTREAM_TLS_VERSION%` use.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }
}

/// One `tls_certificates[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSource {
    /// Its YAML path, for errors found when it is loaded.
    pub path: String,
    /// `certificate_chain` (PEM).
    pub chain: DataSource,
    /// `private_key` (PEM).
    pub key: DataSource,
}

/// Which SAN kind a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    /// `DNS`.
    Dns,
    /// `EMAIL`.
    Email,
    /// `URI` (SPIFFE IDs among them).
    Uri,
    /// `IP_ADDRESS`.
    IpAddress,
}

/// `match_typed_subject_alt_names[]`.
#[derive(Debug, Clone)]
pub struct SanMatcher {
    /// `san_type`.
    pub san_type: SanType,
    /// `matcher`.
    pub matcher: StringMatcher,
}

/// `validation_context`: how a peer's certificate is checked.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// The YAML path of the validation context.
    pub path: String,
    /// `trusted_ca`.
    pub trusted_ca: Option<DataSource>,
    /// `crl`.
    pub crl: Option<DataSource>,
    /// `match_typed_subject_alt_names`: one must match.
    pub san_matchers: Vec<SanMatcher>,
    /// `verify_certificate_hash`: SHA-256 digests of the whole certificate.
    pub cert_hashes: Vec<[u8; 32]>,
    /// `verify_certificate_spki`: SHA-256 digests of the public key info.
    pub spki_hashes: Vec<[u8; 32]>,
    /// `trust_chain_verification: ACCEPT_UNTRUSTED`.
    pub accept_untrusted: bool,
}

/// `common_tls_context` and `tls_params`.
#[derive(Debug, Clone)]
pub struct CommonTls {
    /// `tls_certificates`.
    pub certificates: Vec<CertificateSource>,
    /// `tls_minimum_protocol_version` (None: the side's default).
    pub min_version: Option<TlsVersion>,
    /// `tls_maximum_protocol_version` (None: the side's default).
    pub max_version: Option<TlsVersion>,
    /// `cipher_suites` as Envoy (OpenSSL) names them; empty for the default.
    pub cipher_suites: Vec<String>,
    /// `ecdh_curves`; empty for the default.
    pub curves: Vec<String>,
    /// `alpn_protocols`.
    pub alpn: Vec<String>,
    /// `validation_context`, or `combined_validation_context`'s
    /// `default_validation_context`.
    pub validation: Option<Validation>,
    /// `tls_certificate_sds_secret_configs`: certificates from files.
    pub certificate_secrets: Vec<SecretSource>,
    /// `validation_context_sds_secret_config` (or the combined context's):
    /// a validation context from a file, merged over `validation`.
    pub validation_secret: Option<SecretSource>,
    /// The YAML path of `tls_params`, for errors in the names it lists.
    pub params_path: String,
}

impl CommonTls {
    /// The SDS secrets it reads (certificates, then the validation one).
    pub fn secret_sources(&self) -> impl Iterator<Item = &SecretSource> {
        self.certificate_secrets
            .iter()
            .chain(&self.validation_secret)
    }

    /// Every file the context reads (certificates, keys, CAs, CRLs).
    pub fn files(&self) -> Vec<PathBuf> {
        let validation = self.validation.iter();
        self.certificates
            .iter()
            .flat_map(|c| [&c.chain, &c.key])
            .chain(validation.flat_map(|v| v.trusted_ca.iter().chain(&v.crl)))
            .filter_map(DataSource::path)
            .collect()
    }
}

/// `DownstreamTlsContext`.
#[derive(Debug, Clone)]
pub struct DownstreamTls {
    /// `common_tls_context`.
    pub common: CommonTls,
    /// `require_client_certificate`.
    pub require_client_certificate: bool,
    /// `disable_stateless_session_resumption`.
    pub disable_tickets: bool,
    /// `disable_stateful_session_resumption`.
    pub disable_session_cache: bool,
    /// `session_ticket_keys.keys`: tickets sealed with these (80 bytes
    /// each) rather than with a key made at start.
    pub ticket_keys: Vec<DataSource>,
    /// `session_ticket_keys_sds_secret_config`: the same keys from a file.
    pub ticket_keys_secret: Option<SecretSource>,
}

impl DownstreamTls {
    /// The SDS secrets it reads, session ticket keys included.
    pub fn secret_sources(&self) -> impl Iterator<Item = &SecretSource> {
        self.common.secret_sources().chain(&self.ticket_keys_secret)
    }
}

/// `UpstreamTlsContext`.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `common_tls_context`.
    pub common: CommonTls,
    /// `sni`.
    pub sni: Option<String>,
    /// `max_session_keys` (default 1; 0 disables resumption).
    pub max_session_keys: usize,
    /// `auto_host_sni`: the SNI is the endpoint's host name (when it has
    /// one that is not an address).
    pub auto_host_sni: bool,
    /// `auto_sni_san_validation` (or the cluster's `auto_san_validation`):
    /// the certificate must have a DNS SAN for the SNI sent, in place of
    /// the SAN matchers.
    pub auto_sni_san_validation: bool,
}

/// What a `transport_socket` asks for.
enum TransportSocket<'a> {
    /// `raw_buffer`: plaintext.
    Plain,
    /// `tls`, with its `typed_config`.
    Tls(Node<'a>),
}

fn transport_socket<'a>(
    node: &Node<'a>,
    errs: &mut Errors,
    tls_type: &str,
) -> Option<TransportSocket<'a>> {
    let obj = node.object(errs, &TRANSPORT_SOCKET)?;
    let name = obj.get("name").and_then(|n| n.str(errs)).unwrap_or("");
    let Some(tc) = obj.get("typed_config") else {
        if name == TLS_SOCKET_NAME {
            errs.add(
                &format!("{}.typed_config", node.path()),
                "required field is missing (the TLS context)",
            );
        }
        return None;
    };
    match type_url(&tc, errs)? {
        RAW_BUFFER_TYPE => Some(TransportSocket::Plain),
        t if t == tls_type => Some(TransportSocket::Tls(tc)),
        other => {
            errs.add(
                &format!("{}.@type", tc.path()),
                format!("transport socket {other:?} is not supported here (expected {tls_type} or raw_buffer)"),
            );
            None
        }
    }
}

/// Decodes a filter chain's `transport_socket`: None for plaintext.
pub(super) fn downstream(node: &Node, errs: &mut Errors) -> Option<DownstreamTls> {
    let TransportSocket::Tls(tc) = transport_socket(node, errs, DOWNSTREAM_TYPE)? else {
        return None;
    };
    let obj = tc.object(errs, &DOWNSTREAM)?;
    let common = common(&obj, errs);
    if common.certificates.is_empty() && common.certificate_secrets.is_empty() {
        errs.add(
            &format!("{}.common_tls_context.tls_certificates", tc.path()),
            "a server TLS context needs at least one certificate",
        );
    }
    let disable_tickets = obj.get("disable_stateless_session_resumption");
    let ticket_choices = [
        "session_ticket_keys",
        "session_ticket_keys_sds_secret_config",
    ];
    let chosen = ticket_choices
        .iter()
        .filter(|k| obj.get(k).is_some())
        .count()
        + usize::from(disable_tickets.is_some());
    if chosen > 1 {
        errs.add(
            tc.path(),
            "expected only one of session_ticket_keys, session_ticket_keys_sds_secret_config or disable_stateless_session_resumption",
        );
    }
    let ticket_keys = obj
        .get("session_ticket_keys")
        .and_then(|k| ticket_keys(&k, errs))
        .unwrap_or_default();
    let ticket_keys_secret = obj
        .get("session_ticket_keys_sds_secret_config")
        .and_then(|s| super::sds::secret_source(&s, errs));
    Some(DownstreamTls {
        common,
        require_client_certificate: any_bool(obj.get("require_client_certificate"), errs, false),
        disable_tickets: disable_tickets.and_then(|b| b.bool(errs)).unwrap_or(false),
        ticket_keys,
        ticket_keys_secret,
        disable_session_cache: obj
            .get("disable_stateful_session_resumption")
            .and_then(|b| b.bool(errs))
            .unwrap_or(false),
    })
}

/// Decodes a cluster's `transport_socket`: None for plaintext.
pub(super) fn upstream(node: &Node, errs: &mut Errors) -> Option<UpstreamTls> {
    let TransportSocket::Tls(tc) = transport_socket(node, errs, UPSTREAM_TYPE)? else {
        return None;
    };
    let obj = tc.object(errs, &UPSTREAM)?;
    let sni = obj.get("sni").and_then(|s| s.str(errs)).map(str::to_string);
    if let (Some(name), Some(node)) = (&sni, obj.get("sni")) {
        if name.len() > 255 {
            errs.add(node.path(), "expected at most 255 bytes");
        }
    }
    let max_session_keys = match obj.get("max_session_keys") {
        Some(n) => super::bootstrap::wrapped_uint(&n, errs, u32::MAX as u64).unwrap_or(1) as usize,
        None => 1,
    };
    let flag =
        |name: &str, errs: &mut Errors| obj.get(name).and_then(|b| b.bool(errs)).unwrap_or(false);
    Some(UpstreamTls {
        common: common(&obj, errs),
        sni,
        max_session_keys,
        auto_host_sni: flag("auto_host_sni", errs),
        auto_sni_san_validation: flag("auto_sni_san_validation", errs),
    })
}

fn common(obj: &Obj, errs: &mut Errors) -> CommonTls {
    let mut out = CommonTls {
        certificates: Vec::new(),
        min_version: None,
        max_version: None,
        cipher_suites: Vec::new(),
        curves: Vec::new(),
        alpn: Vec::new(),
        validation: None,
        certificate_secrets: Vec::new(),
        validation_secret: None,
        params_path: String::new(),
    };
    let Some(node) = obj.get("common_tls_context") else {
        return out;
    };
    let Some(c) = node.object(errs, &COMMON) else {
        return out;
    };
    if let Some(list) = c.get("tls_certificates") {
        for item in list.list(errs) {
            out.certificates.extend(certificate(&item, errs));
        }
    }
    if let Some(list) = c.get("alpn_protocols") {
        for item in list.list(errs) {
            if let Some(s) = item.str(errs) {
                out.alpn.push(s.to_string());
            }
        }
    }
    if let Some(p) = c.get("tls_params") {
        out.params_path = p.path().to_string();
        if let Some(p) = p.object(errs, &PARAMS) {
            out.min_version = p
                .get("tls_minimum_protocol_version")
                .and_then(|v| version(&v, errs));
            out.max_version = p
                .get("tls_maximum_protocol_version")
                .and_then(|v| version(&v, errs));
            out.cipher_suites = strings(&p, errs, "cipher_suites");
            out.curves = strings(&p, errs, "ecdh_curves");
        }
    }
    if let (Some(min), Some(max)) = (out.min_version, out.max_version) {
        if min > max {
            errs.add(
                &out.params_path,
                "tls_minimum_protocol_version is above tls_maximum_protocol_version",
            );
        }
    }
    if let Some(list) = c.get("tls_certificate_sds_secret_configs") {
        for item in list.list(errs) {
            out.certificate_secrets
                .extend(super::sds::secret_source(&item, errs));
        }
    }
    let plain = c.get("validation_context");
    let from_file = c.get("validation_context_sds_secret_config");
    let combined = c.get("combined_validation_context");
    if [&plain, &from_file, &combined]
        .iter()
        .filter(|v| v.is_some())
        .count()
        > 1
    {
        errs.add(
            node.path(),
            "expected only one of validation_context, validation_context_sds_secret_config or combined_validation_context",
        );
        return out;
    }
    out.validation = plain.and_then(|v| validation(&v, errs));
    out.validation_secret = from_file.and_then(|s| super::sds::secret_source(&s, errs));
    if let Some(cvc) = combined.and_then(|n| n.object(errs, &COMBINED_VALIDATION)) {
        out.validation = cvc
            .require(errs, "default_validation_context")
            .and_then(|v| validation(&v, errs));
        out.validation_secret = cvc
            .require(errs, "validation_context_sds_secret_config")
            .and_then(|s| super::sds::secret_source(&s, errs));
    }
    out
}

fn strings(obj: &Obj, errs: &mut Errors, name: &str) -> Vec<String> {
    obj.get(name)
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.str(errs).map(str::to_string))
        .collect()
}

/// Decodes a protocol version; TLS 1.0 and 1.1 are named as unsupported
/// (rustls has neither).
fn version(node: &Node, errs: &mut Errors) -> Option<TlsVersion> {
    let name = node.enumeration(
        errs,
        &["TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"],
    )?;
    match name {
        "TLSv1_2" => Some(TlsVersion::V1_2),
        "TLSv1_3" => Some(TlsVersion::V1_3),
        "TLS_AUTO" => None,
        old => {
            errs.add(
                node.path(),
                format!("{old} is not supported (Ringway's TLS speaks TLSv1_2 and TLSv1_3)"),
            );
            None
        }
    }
}

/// Decodes `TlsSessionTicketKeys`: at least one key.
pub(super) fn ticket_keys(node: &Node, errs: &mut Errors) -> Option<Vec<DataSource>> {
    let k = node.object(errs, &TICKET_KEYS)?;
    let keys = k
        .require(errs, "keys")
        .map(|l| l.list(errs))
        .unwrap_or_default();
    if keys.is_empty() {
        errs.add(
            &format!("{}.keys", node.path()),
            "expected at least one key",
        );
        return None;
    }
    Some(keys.iter().filter_map(|d| data_source(d, errs)).collect())
}

pub(super) fn certificate(node: &Node, errs: &mut Errors) -> Option<CertificateSource> {
    let obj = node.object(errs, &CERTIFICATE)?;
    let chain = obj
        .require(errs, "certificate_chain")
        .and_then(|d| data_source(&d, errs));
    let key = obj
        .require(errs, "private_key")
        .and_then(|d| data_source(&d, errs));
    Some(CertificateSource {
        path: node.path().to_string(),
        chain: chain?,
        key: key?,
    })
}

/// Decodes a `DataSource` (`filename`, `inline_string` or base64
/// `inline_bytes`).
pub(super) fn data_source(node: &Node, errs: &mut Errors) -> Option<DataSource> {
    use base64::Engine;
    let obj = node.object(errs, &DATA_SOURCE)?;
    let mut found = Vec::new();
    if let Some(f) = obj.get("filename") {
        found.extend(f.str(errs).map(|s| DataSource::File(s.into())));
    }
    if let Some(s) = obj.get("inline_string") {
        found.extend(
            s.str(errs)
                .map(|s| DataSource::Inline(s.as_bytes().to_vec())),
        );
    }
    if let Some(b) = obj.get("inline_bytes") {
        let text = b.str(errs)?;
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => found.push(DataSource::Inline(bytes)),
            Err(e) => errs.add(b.path(), format!("expected base64: {e}")),
        }
    }
    match found.len() {
        1 => found.pop(),
        0 => {
            errs.add(
                node.path(),
                "expected one of filename, inline_string or inline_bytes",
            );
            None
        }
        _ => {
            errs.add(
                node.path(),
                "expected only one of filename, inline_string or inline_bytes",
            );
            None
        }
    }
}

pub(super) fn validation(node: &Node, errs: &mut Errors) -> Option<Validation> {
    let obj = node.object(errs, &VALIDATION)?;
    let mut v = Validation {
        path: node.path().to_string(),
        ..Validation::default()
    };
    v.trusted_ca = obj.get("trusted_ca").and_then(|d| data_source(&d, errs));
    v.crl = obj.get("crl").and_then(|d| data_source(&d, errs));
    for item in obj
        .get("match_typed_subject_alt_names")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(m) = item.object(errs, &SAN_MATCHER) else {
            continue;
        };
        let san_type = m.require(errs, "san_type").and_then(|t| {
            match t.enumeration(
                errs,
                &[
                    "SAN_TYPE_UNSPECIFIED",
                    "EMAIL",
                    "DNS",
                    "URI",
                    "IP_ADDRESS",
                    "OTHER_NAME",
                ],
            )? {
                "EMAIL" => Some(SanType::Email),
                "DNS" => Some(SanType::Dns),
                "URI" => Some(SanType::Uri),
                "IP_ADDRESS" => Some(SanType::IpAddress),
                other => {
                    errs.add(t.path(), format!("san_type {other} is not supported"));
                    None
                }
            }
        });
        let matcher = m
            .require(errs, "matcher")
            .and_then(|n| string_matcher(&n, errs));
        if let (Some(san_type), Some(matcher)) = (san_type, matcher) {
            v.san_matchers.push(SanMatcher { san_type, matcher });
        }
    }
    v.cert_hashes = digests(&obj, errs, "verify_certificate_hash", hex_digest);
    v.spki_hashes = digests(&obj, errs, "verify_certificate_spki", base64_digest);
    if let Some(t) = obj.get("trust_chain_verification") {
        v.accept_untrusted = t.enumeration(errs, &["VERIFY_TRUST_CHAIN", "ACCEPT_UNTRUSTED"])
            == Some("ACCEPT_UNTRUSTED");
    }
    Some(v)
}

fn digests(
    obj: &Obj,
    errs: &mut Errors,
    name: &str,
    parse: fn(&str) -> Option<[u8; 32]>,
) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for item in obj.get(name).map(|l| l.list(errs)).unwrap_or_default() {
        let Some(text) = item.str(errs) else { continue };
        match parse(text) {
            Some(d) => out.push(d),
            None => errs.add(item.path(), format!("invalid SHA-256 digest {text:?}")),
        }
    }
    out
}

/// A SHA-256 digest in hex, with or without `:` between bytes.
fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A SHA-256 digest in base64.
fn base64_digest(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}
