//! Server-side TLS: a `DownstreamTlsContext` compiled to one rustls
//! configuration that every shard shares (so a session ticket issued on
//! one shard resumes on any other), the handshake, and its stats.

use super::cert::{self, CertInfo, Loaded};
use super::sds::Secrets;
use super::tickets::SharedKeys;
use super::verify::ClientVerifier;
use super::{count_failure, count_handshake};
use super::{provider, versions};
use crate::config::{DataSource, DownstreamTls, TlsVersion};
use crate::net::{ByteCounts, Stream, TlsStream};
use crate::stats::ssl::{Ssl, SslStats};
use crate::stats::{sets::SslSocketFactory, Scope, Store};
use rustls::server::{Accepted, ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The longest a client may take to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sessions kept for resumption by ID (TLS 1.2 clients without tickets).
const SESSION_CACHE: usize = 4096;

/// A compiled server TLS context.
#[derive(Debug)]
pub struct ServerTls {
    /// None while an SDS secret it needs has never been good: connections
    /// are closed, as Envoy does.
    config: Option<Arc<ServerConfig>>,
    factory: Arc<Scope<SslSocketFactory>>,
    /// Every file it was compiled from, to watch.
    pub files: Vec<PathBuf>,
    /// What `/certs` shows of each certificate.
    pub certificates: Vec<CertInfo>,
    /// What `/certs` shows of each trusted CA certificate.
    pub ca: Vec<CertInfo>,
    /// The context it was compiled from, to compile again when its files
    /// change.
    pub source: DownstreamTls,
}

/// Picks the certificate for a ClientHello: one whose names cover the SNI
/// and whose key the client can verify, else the first usable one.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<Loaded>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let usable = |c: &&Loaded| c.key.key.choose_scheme(schemes).is_some();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let by_name = sni.as_deref().and_then(|sni| {
            let covers = |c: &&Loaded| c.names.iter().any(|n| cert::name_matches(n, sni));
            let exact = |c: &&Loaded| c.names.iter().any(|n| n == sni);
            self.certs
                .iter()
                .filter(usable)
                .find(exact)
                .or_else(|| self.certs.iter().filter(usable).find(covers))
        });
        by_name
            .or_else(|| self.certs.iter().find(usable))
            .map(|c| c.key.clone())
    }
}

impl ServerTls {
    /// Compiles a server context, reading its SDS secrets through
    /// `secrets`; `owner` (`listener.<address>.`) names its stats. Errors
    /// name what is wrong.
    pub fn compile(
        tls: &DownstreamTls,
        secrets: &Secrets,
        store: &Store,
        owner: &str,
    ) -> Result<ServerTls, String> {
        let resolved = secrets.resolve(
            &tls.common,
            tls.ticket_keys_secret.as_ref(),
            store,
            owner,
            true,
        );
        let mut files = resolved.files;
        files.extend(tls.ticket_keys.iter().filter_map(DataSource::path));
        let factory = resolved.factory;
        if !resolved.ready {
            return Ok(ServerTls {
                config: None,
                factory,
                files,
                certificates: Vec::new(),
                ca: Vec::new(),
                source: tls.clone(),
            });
        }
        let common = &resolved.common;
        let provider = provider(&common.cipher_suites, &common.curves)?;
        let mut certs = Vec::new();
        for source in &common.certificates {
            certs.push(cert::load(source, &provider).map_err(|e| format!("{}: {e}", source.path))?);
        }
        let certificates = certs.iter().map(|c| c.info.clone()).collect();
        let verifier = ClientVerifier::new(
            common.validation.as_ref(),
            tls.require_client_certificate,
            provider.clone(),
        )?;
        let offer_client_auth = tls.require_client_certificate || common.validation.is_some();
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(
                common.min_version,
                common.max_version,
                TlsVersion::V1_3,
            ))
            .map_err(|e| format!("{}: {e}", common.params_path))?;
        let builder = if offer_client_auth {
            builder.with_client_cert_verifier(Arc::new(verifier))
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniResolver { certs }));
        config.alpn_protocols = common.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.session_storage = if tls.disable_session_cache {
            Arc::new(rustls::server::NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(SESSION_CACHE)
        };
        let ticket_keys = resolved.ticket_keys.as_ref().unwrap_or(&tls.ticket_keys);
        if !ticket_keys.is_empty() {
            let keys = ticket_keys
                .iter()
                .map(DataSource::load)
                .collect::<Result<Vec<_>, _>>()?;
            config.ticketer = Arc::new(SharedKeys::new(&keys)?);
        } else if !tls.disable_tickets {
            config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| format!("cannot make a session ticket key: {e}"))?;
        }
        Ok(ServerTls {
            config: Some(Arc::new(config)),
            factory,
            files,
            certificates,
            ca: super::verify::ca_infos(common.validation.as_ref()),
            source: tls.clone(),
        })
    }

    /// Finishes the handshake on `stream`: from the ClientHello the
    /// listener's inspector already read (`hello`), or from the start.
    /// Counts the outcome in `stats`.
    pub async fn accept(
        &self,
        stream: Stream,
        hello: Option<Accepted>,
        replay: Vec<u8>,
        stats: &SslStats,
        w: usize,
    ) -> Option<TlsStream> {
        let Some(config) = &self.config else {
            self.factory
                .inc(w, SslSocketFactory::downstream_context_secrets_not_ready);
            return None;
        };
        let counts = Rc::new(ByteCounts::default());
        let io = stream.into_poll(replay, counts);
        let handshake = async {
            match hello {
                Some(accepted) => {
                    tokio_rustls::StartHandshake::from_parts(accepted, io)
                        .into_stream(config.clone())
                        .await
                }
                None => {
                    tokio_rustls::TlsAcceptor::from(config.clone())
                        .accept(io)
                        .await
                }
            }
        };
        let done = monoio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await;
        match done {
            Ok(Ok(session)) => {
                let tls = TlsStream::new(session.into());
                tls.with_state(|state| count_handshake(state, stats, w));
                Some(tls)
            }
            Ok(Err(e)) => {
                count_failure(&e, stats, w);
                None
            }
            Err(_) => {
                stats.inc(w, Ssl::connection_error);
                None
            }
        }
    }
}
