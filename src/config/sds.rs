//! SDS secrets: an `SdsSecretConfig` whose `sds_config` is a file
//! (`path_config_source`, or the older `path`) or the ADS stream (`ads`),
//! and what either delivers — a `DiscoveryResponse` in YAML or JSON holding
//! one `Secret`.

use super::node::{ConfigError, Errors, Fields, Node};
use super::tls::{certificate, ticket_keys, validation, CertificateSource, DataSource, Validation};
use super::xds::{ConfigSource, DISCOVERY_RESPONSE};
use std::path::PathBuf;

/// `type.googleapis.com/` name of a `Secret` resource.
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

#[rustfmt::skip]
static SDS_SECRET_CONFIG: Fields = Fields {
    known: &["name", "sds_config"],
    unsupported: &[],
};
#[rustfmt::skip]
static SECRET: Fields = Fields {
    known: &["@type", "name", "tls_certificate", "validation_context", "session_ticket_keys"],
    unsupported: &["generic_secret"],
};

/// One secret a TLS context reads, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// The secret's `name`, which the delivered resource must carry.
    pub name: String,
    /// The `DiscoveryResponse` file; None when a control plane sends the
    /// secret.
    pub path: Option<PathBuf>,
    /// The stream of its own (`api_config_source`) it comes on; None with
    /// a file or over ADS.
    pub api: Option<super::AdsConfig>,
    /// Where it was configured, for errors.
    pub yaml_path: String,
}

/// What a secret file holds for a context.
#[derive(Debug, Clone)]
pub enum Secret {
    /// `tls_certificate`.
    Certificate(CertificateSource),
    /// `validation_context`.
    Validation(Validation),
    /// `session_ticket_keys.keys`.
    TicketKeys(Vec<DataSource>),
}

/// A secret read from its file, and the file's `version_info`.
#[derive(Debug, Clone)]
pub struct SecretFile {
    /// `version_info` ("" when absent).
    pub version: String,
    /// The named secret.
    pub secret: Secret,
}

/// Why a secret file was not taken, in Envoy's two kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The file could not be read or is not a `DiscoveryResponse`
    /// (`update_failure`).
    Failure(String),
    /// It is one, but not a usable secret of that name (`update_rejected`).
    Rejected(String),
}

/// Decodes an `SdsSecretConfig` with a file source.
pub(super) fn secret_source(node: &Node, errs: &mut Errors) -> Option<SecretSource> {
    let obj = node.object(errs, &SDS_SECRET_CONFIG)?;
    let name = obj.require(errs, "name").and_then(|n| n.str(errs));
    if name == Some("") {
        errs.add(&format!("{}.name", node.path()), "expected a secret name");
    }
    // Without `sds_config` Envoy looks the name up among static secrets,
    // which Ringway does not have.
    let source = obj.require(errs, "sds_config")?;
    let (path, api) = match super::xds::config_source(&source, errs)? {
        ConfigSource::File(file) => (Some(existing(&source, file.path, errs)?), None),
        ConfigSource::Ads { .. } => (None, None),
        ConfigSource::Api { api, .. } => (None, Some(api)),
    };
    Some(SecretSource {
        api,
        name: name?.to_string(),
        path,
        yaml_path: node.path().to_string(),
    })
}

/// The file a `ConfigSource` names; it must exist, as in Envoy. Its
/// `watched_directory` adds nothing: every file a secret names is watched
/// anyway, moved in or written in place.
fn existing(node: &Node, path: PathBuf, errs: &mut Errors) -> Option<PathBuf> {
    if !path.exists() {
        errs.add(
            node.path(),
            format!(
                "paths must refer to an existing path in the system: '{}' does not exist",
                path.display()
            ),
        );
        return None;
    }
    Some(path)
}

/// Picks the secret `source` names from its file's `bytes`, the way
/// Envoy's file subscription and SDS API take an update.
pub fn parse_secret(source: &SecretSource, bytes: &[u8]) -> Result<SecretFile, SecretError> {
    let origin = source.path.as_ref().map_or_else(
        || "the control plane's update".into(),
        |p| p.display().to_string(),
    );
    let text = std::str::from_utf8(bytes)
        .map_err(|e| SecretError::Failure(format!("cannot read {origin}: {e}")))?;
    let tree = super::parse_document(text, &origin).map_err(|e| SecretError::Failure(e.message))?;
    let mut errs = Errors::default();
    let decoded = decode_response(Node::root(&tree), &mut errs);
    let failure = |errors: Vec<ConfigError>| {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        SecretError::Failure(format!("in {origin}: {}", listed.join("; ")))
    };
    let (version, resources) = match decoded {
        Some(d) if errs.0.is_empty() => d,
        _ => return Err(failure(errs.0)),
    };
    let [(name, secret)] = <[_; 1]>::try_from(resources).map_err(|all: Vec<_>| {
        SecretError::Rejected(format!("Unexpected SDS secrets length: {}", all.len()))
    })?;
    if name != source.name {
        return Err(SecretError::Rejected(format!(
            "Unexpected SDS secret (expecting {}): {name}",
            source.name
        )));
    }
    Ok(SecretFile {
        version,
        secret: secret.ok_or_else(|| {
            SecretError::Rejected(format!(
                "secret {name} has no tls_certificate, validation_context or session_ticket_keys"
            ))
        })?,
    })
}

/// A `DiscoveryResponse` of secrets: its version and each resource's name
/// and content.
type Resources = (String, Vec<(String, Option<Secret>)>);

fn decode_response(root: Node, errs: &mut Errors) -> Option<Resources> {
    let obj = root.object(errs, &DISCOVERY_RESPONSE)?;
    let version = obj
        .get("version_info")
        .and_then(|v| v.str(errs))
        .unwrap_or("")
        .to_string();
    if let Some(t) = obj.get("type_url") {
        if t.str(errs).is_some_and(|t| t != SECRET_TYPE) {
            errs.add(t.path(), format!("expected {SECRET_TYPE}"));
        }
    }
    let mut resources = Vec::new();
    for item in obj
        .get("resources")
        .map(|l| l.list(errs))
        .unwrap_or_default()
    {
        let Some(r) = item.object(errs, &SECRET) else {
            continue;
        };
        match r.require(errs, "@type").and_then(|t| t.str(errs)) {
            Some(SECRET_TYPE) | None => {}
            Some(other) => errs.add(
                &format!("{}.@type", item.path()),
                format!("expected {SECRET_TYPE}, found {other}"),
            ),
        }
        let name = r.get("name").and_then(|n| n.str(errs)).unwrap_or("");
        let kinds = [
            "tls_certificate",
            "validation_context",
            "session_ticket_keys",
        ];
        let present: Vec<_> = kinds.iter().filter_map(|k| r.get(k)).collect();
        let secret = match present.as_slice() {
            [] => None,
            [one] => match one.path().rsplit('.').next() {
                Some("tls_certificate") => certificate(one, errs).map(Secret::Certificate),
                Some("validation_context") => validation(one, errs).map(Secret::Validation),
                _ => ticket_keys(one, errs).map(Secret::TicketKeys),
            },
            _ => {
                errs.add(
                    item.path(),
                    "expected only one of tls_certificate, validation_context or session_ticket_keys",
                );
                None
            }
        };
        resources.push((name.to_string(), secret));
    }
    Some((version, resources))
}

/// Every file a secret names (certificate, key, CA, CRL).
pub fn secret_files(secret: &Secret) -> Vec<&DataSource> {
    match secret {
        Secret::Certificate(c) => vec![&c.chain, &c.key],
        Secret::Validation(v) => v.trusted_ca.iter().chain(&v.crl).collect(),
        Secret::TicketKeys(keys) => keys.iter().collect(),
    }
}
