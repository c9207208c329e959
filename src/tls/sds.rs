//! SDS secrets, from files or delivered over ADS, taken the way Envoy's
//! subscriptions take them: each change to a secret (its file or update,
//! or the files it names) is one update in `sds.<name>.*`; a bad update is
//! counted and the last good secret stays; a context whose secret was
//! never good is "not ready" and closes its connections. The files a
//! secret names are read into it (Envoy's `/certs` shows them as
//! `<inline>`), so a context compiled from it never reads a file that has
//! changed since.

use crate::config::{
    parse_secret, secret_files, CommonTls, DataSource, Secret, SecretError, SecretFile,
    SecretSource, Validation,
};
use crate::stats::sets::{Sds, SslSocketFactory};
use crate::stats::{Scope, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh64::Xxh64;

/// What one secret was last read as.
struct Taken {
    /// Digest of everything read for it, good or bad.
    digest: u64,
    /// The last good content.
    good: Option<SecretFile>,
    /// The pass in which `good` last changed.
    changed_in: u64,
}

/// Every secret read from a file, shared by the snapshots compiled from
/// one bootstrap (and their reloads).
#[derive(Default)]
pub struct Secrets {
    /// By file (None: over ADS) and name.
    taken: Mutex<HashMap<(Option<PathBuf>, String), Taken>>,
    /// What the ADS stream delivered, by name: a `DiscoveryResponse` of
    /// that one secret.
    delivered: Mutex<HashMap<String, Vec<u8>>>,
    /// Compilations so far: a secret changed "now" if it changed in this one.
    pass: Mutex<u64>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

/// A context's `common_tls_context` with its secrets merged in.
pub struct Resolved {
    /// The context to compile.
    pub common: CommonTls,
    /// Every file it reads, secret files and the files they name
    /// included, to watch.
    pub files: Vec<PathBuf>,
    /// Every secret has had good content.
    pub ready: bool,
    /// Its `server_ssl_socket_factory.` / `client_ssl_socket_factory.`
    /// stats, its secrets' updates in this pass already counted.
    pub factory: Arc<Scope<SslSocketFactory>>,
    /// Session ticket keys from their secret, when one was asked for.
    pub ticket_keys: Option<Vec<DataSource>>,
}

/// What a secret is asked for as.
#[derive(Clone, Copy)]
enum Kind {
    Certificate,
    Validation,
    TicketKeys,
}

impl Secrets {
    /// Starts a compilation: secrets read from here on are read afresh.
    pub fn begin_pass(&self) {
        *lock(&self.pass) += 1;
    }

    /// Reads `common`'s secrets, and the session ticket keys' secret if
    /// named (once per pass and file content), and merges them into a
    /// copy of it, for the context whose stats go
    /// under `owner` (`listener.<address>.` with `server`, else
    /// `cluster.<name>.`).
    pub fn resolve(
        &self,
        common: &CommonTls,
        ticket_keys: Option<&SecretSource>,
        store: &Store,
        owner: &str,
        server: bool,
    ) -> Resolved {
        let mut out = Resolved {
            common: common.clone(),
            files: common.files(),
            ready: true,
            factory: store.ssl_socket_factory(owner, server),
            ticket_keys: None,
        };
        let mut updated = 0;
        let sources = (common
            .certificate_secrets
            .iter()
            .map(|s| (s, Kind::Certificate)))
        .chain(
            common
                .validation_secret
                .iter()
                .map(|s| (s, Kind::Validation)),
        )
        .chain(ticket_keys.map(|s| (s, Kind::TicketKeys)));
        for (source, kind) in sources {
            let (good, changed, files) = self.take(source, store);
            out.files.extend(source.path.clone());
            out.files.extend(files);
            updated += u64::from(changed);
            match (kind, good.map(|g| g.secret)) {
                (Kind::Certificate, Some(Secret::Certificate(c))) => {
                    out.common.certificates.push(c)
                }
                (Kind::Validation, Some(Secret::Validation(v))) => {
                    out.common.validation = Some(merged(out.common.validation.take(), v));
                }
                (Kind::TicketKeys, Some(Secret::TicketKeys(keys))) => out.ticket_keys = Some(keys),
                // Never good, or a secret of another kind under that name.
                _ => out.ready = false,
            }
        }
        let main = store.main_row();
        out.factory
            .add(main, SslSocketFactory::ssl_context_update_by_sds, updated);
        out
    }

    /// Takes `response`, a `DiscoveryResponse` of the secret `name` from
    /// the ADS stream, for the contexts compiled from now on.
    pub fn deliver(&self, name: &str, response: Vec<u8>) {
        lock(&self.delivered).insert(name.to_string(), response);
    }

    /// The secret's last good content, whether it changed in this pass,
    /// and the files it names. A secret from ADS that has not come yet is
    /// not an update.
    fn take(
        &self,
        source: &SecretSource,
        store: &Store,
    ) -> (Option<SecretFile>, bool, Vec<PathBuf>) {
        let bytes = match &source.path {
            Some(path) => std::fs::read(path)
                .map_err(|e| SecretError::Failure(format!("cannot read {}: {e}", path.display()))),
            None => match lock(&self.delivered).get(&source.name) {
                Some(bytes) => Ok(bytes.clone()),
                None => return (None, false, Vec::new()),
            },
        };
        let (read, digest, files) = read_inlined(source, bytes);
        let pass = *lock(&self.pass);
        let mut taken = lock(&self.taken);
        let key = (source.path.clone(), source.name.clone());
        let entry = taken.entry(key).or_insert(Taken {
            digest: !digest,
            good: None,
            changed_in: 0,
        });
        if entry.digest != digest {
            entry.digest = digest;
            if count(source, read, store, &mut entry.good) {
                entry.changed_in = pass;
            }
        }
        (entry.good.clone(), entry.changed_in == pass, files)
    }
}

/// Counts one update of a secret in `sds.<name>.*`; true when it was taken.
fn count(
    source: &SecretSource,
    read: Result<SecretFile, SecretError>,
    store: &Store,
    good: &mut Option<SecretFile>,
) -> bool {
    let stats = store.sds(&source.name);
    let main = store.main_row();
    stats.inc(main, Sds::update_attempt);
    if good.is_none() {
        // Envoy's readout exists from the first attempt.
        store.set_text(format!("sds.{}.version_text", source.name), String::new());
    }
    match read {
        Ok(file) => {
            stats.inc(main, Sds::update_success);
            stats.set(
                main,
                Sds::version,
                xxhash_rust::xxh64::xxh64(file.version.as_bytes(), 0),
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            stats.set(main, Sds::update_time, now);
            store.set_text(
                format!("sds.{}.version_text", source.name),
                file.version.clone(),
            );
            *good = Some(file);
            true
        }
        Err(SecretError::Failure(e)) => {
            stats.inc(main, Sds::update_failure);
            log::warn!(
                "secret {}: update failed (the last good one stays): {e}",
                source.name
            );
            false
        }
        Err(SecretError::Rejected(e)) => {
            stats.inc(main, Sds::update_rejected);
            log::warn!(
                "secret {}: update rejected (the last good one stays): {e}",
                source.name
            );
            false
        }
    }
}

/// Decodes a secret from what was delivered (`bytes`) and reads the files
/// it names into it; with a digest of all that was read and the paths of
/// those files.
fn read_inlined(
    source: &SecretSource,
    bytes: Result<Vec<u8>, SecretError>,
) -> (Result<SecretFile, SecretError>, u64, Vec<PathBuf>) {
    let mut digest = Xxh64::new(0);
    let mut read = bytes.and_then(|bytes| {
        digest.update(&bytes);
        parse_secret(source, &bytes)
    });
    let mut files = Vec::new();
    if let Ok(file) = &mut read {
        files = secret_files(&file.secret)
            .into_iter()
            .filter_map(DataSource::path)
            .collect();
        if let Err(e) = inline_files(&mut file.secret, &mut digest) {
            read = Err(SecretError::Rejected(e));
        }
    }
    if let Err(SecretError::Failure(e) | SecretError::Rejected(e)) = &read {
        digest.update(e.as_bytes());
    }
    (read, digest.digest(), files)
}

/// Replaces each file a secret names with its content.
fn inline_files(secret: &mut Secret, digest: &mut Xxh64) -> Result<(), String> {
    let sources: Vec<&mut DataSource> = match secret {
        Secret::Certificate(c) => vec![&mut c.chain, &mut c.key],
        Secret::Validation(v) => v.trusted_ca.iter_mut().chain(v.crl.as_mut()).collect(),
        Secret::TicketKeys(keys) => keys.iter_mut().collect(),
    };
    for source in sources {
        if let DataSource::File(path) = source {
            let bytes = std::fs::read(&*path)
                .map_err(|e| format!("Invalid path: {}: {e}", path.display()))?;
            digest.update(&bytes);
            *source = DataSource::Inline(bytes);
        }
    }
    Ok(())
}

/// Whether a secret's certificates, key and CAs load: Envoy refuses an SDS
/// update its TLS context cannot be built from.
pub fn check_secret(secret: &Secret) -> Result<(), String> {
    match secret {
        Secret::Certificate(c) => {
            super::cert::load(c, &rustls::crypto::aws_lc_rs::default_provider()).map(|_| ())
        }
        Secret::Validation(v) => {
            let cas = v.trusted_ca.iter().map(super::cert::certificates);
            let crls = v
                .crl
                .iter()
                .map(|c| super::cert::crls(c).map(|_| Vec::new()));
            cas.chain(crls).try_for_each(|r| r.map(|_| ()))
        }
        Secret::TicketKeys(_) => Ok(()),
    }
}

/// `combined_validation_context`: the default context with the secret's
/// merged over it as protobuf merges messages (lists appended, fields the
/// secret sets replacing the default's).
fn merged(default: Option<Validation>, secret: Validation) -> Validation {
    let Some(mut out) = default else {
        return secret;
    };
    out.trusted_ca = secret.trusted_ca.or(out.trusted_ca);
    out.crl = secret.crl.or(out.crl);
    out.san_matchers.extend(secret.san_matchers);
    out.cert_hashes.extend(secret.cert_hashes);
    out.spki_hashes.extend(secret.spki_hashes);
    out.accept_untrusted |= secret.accept_untrusted;
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
