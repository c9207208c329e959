//! A JWT provider's `remote_jwks`: the key set fetched from its URI
//! through a cluster (a call the request waits on, as Envoy's fetch
//! without `async_fetch`) and kept per shard for `cache_duration`, as
//! Envoy keeps it per worker.

use super::{Answer, Call, Context};
use crate::config::RemoteJwks;
use crate::jwt::jwks::Jwks;
use crate::router::Forward;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A provider's remote key set.
#[derive(Debug)]
pub struct RemoteKeys {
    config: RemoteJwks,
    /// How fetches are forwarded, and the cluster by position (None: no
    /// cluster of that name).
    to: Option<(Arc<Forward>, usize)>,
    /// The keys each shard holds.
    held: Vec<Mutex<Option<Held>>>,
}

/// A key set a shard holds, and until when.
type Held = (Arc<Jwks>, Instant);

impl RemoteKeys {
    /// Compiles `remote_jwks` for `shards` shards.
    pub fn compile(config: &RemoteJwks, cx: &Context, shards: usize) -> RemoteKeys {
        let to = cx
            .clusters
            .get(&config.cluster)
            .map(|&c| (Arc::new(Forward::service_call(c, config.timeout)), c));
        RemoteKeys {
            config: config.clone(),
            to,
            held: (0..shards).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The keys shard `w` holds, while they last (or in any case, for
    /// the request that fetched them: a `cache_duration` of zero holds
    /// them for it alone).
    pub fn get(&self, w: usize, fetched: bool) -> Option<Arc<Jwks>> {
        let held = self.held.get(w)?.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|(_, until)| fetched || Instant::now() < *until)
            .map(|(keys, _)| keys.clone())
    }

    /// The fetch of the key set.
    pub fn fetch(&self) -> Call {
        let config = &self.config;
        Call::new(
            self.to.clone(),
            "GET",
            &config.path,
            &config.host,
            &[],
            config.timeout,
            Vec::new(),
        )
    }

    /// Keeps for shard `w` the key set a fetch's `answer` carries; false
    /// when it carries none (a failed fetch, a status other than 200, a
    /// body that is no key set).
    pub fn keep(&self, w: usize, answer: &Answer) -> bool {
        if answer.status != 200 {
            return false;
        }
        let Ok(keys) = Jwks::parse(&answer.body) else {
            return false;
        };
        if let Some(slot) = self.held.get(w) {
            let until = Instant::now() + self.config.cache_duration;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((Arc::new(keys), until));
        }
        true
    }
}
