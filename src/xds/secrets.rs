//! SDS from a control plane: the secrets TLS contexts name with
//! `sds_config: {ads: {}}` are asked on the ADS stream, those with an
//! `api_config_source` each on a stream of its own; an update is checked as a secret file
//! would be (a bad one is NACKed and changes nothing), then handed to the
//! snapshot's `Secrets` and the TLS contexts are compiled again, as a
//! rotated secret file makes them.

use super::grpc::Response;
use super::streams::Subject;
use super::subscription::Waiting;
use super::Xds;
use crate::config::{self, AdsConfig, SecretSource};
use crate::snapshot::ConfigSnapshot;
use crate::stats::sets::Sds;
use crate::stats::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// A secret asked of the control plane.
pub(super) struct SecretSub {
    pub wait: Waiting,
    /// The last good update: its version, when it came and the secret.
    pub accepted: Option<(String, SystemTime, Value)>,
    /// Its stream of its own (`api_config_source`); None: ADS.
    pub api: Option<AdsConfig>,
}

impl SecretSub {
    /// When the start stops waiting for its first update (None: not
    /// waiting), Envoy's default `initial_fetch_timeout` after it was asked.
    fn awaited_until(&self) -> Option<Instant> {
        let w = &self.wait;
        (!w.timed_out && !w.answered).then(|| w.since + config::INITIAL_FETCH_TIMEOUT)
    }
}

impl Xds {
    /// The secrets the static and accepted listeners and clusters read
    /// from a control plane, by name, each with its stream of its own
    /// (None: ADS).
    fn control_plane_secrets(&self) -> BTreeMap<String, Option<AdsConfig>> {
        let listeners = self.accepted_listeners();
        let sources = listeners
            .flat_map(|l| l.secret_sources().collect::<Vec<_>>())
            .chain(self.accepted_clusters().flat_map(|c| c.secret_sources()));
        sources
            .filter(|s| s.path.is_none())
            .map(|s| (s.name.clone(), s.api.clone()))
            .collect()
    }

    /// Subscribes to the secrets now named and drops the others; returns
    /// the names asked on the ADS stream. Envoy counts an update attempt
    /// when a subscription starts.
    pub(super) fn sync_secrets(&mut self, store: &Store) -> Vec<String> {
        let wanted = self.control_plane_secrets();
        self.sds.retain(|name, _| wanted.contains_key(name));
        for (name, api) in &wanted {
            if !self.sds.contains_key(name) {
                store.sds(name).inc(store.main_row(), Sds::update_attempt);
                let wait = Waiting {
                    asked: true,
                    ..Waiting::new()
                };
                let sub = SecretSub {
                    wait,
                    accepted: None,
                    api: api.clone(),
                };
                self.sds.insert(name.clone(), sub);
            }
        }
        let ads = wanted.into_iter().filter(|(_, api)| api.is_none());
        ads.map(|(name, _)| name).collect()
    }

    /// The secrets whose first update is awaited, with when the wait ends.
    pub(super) fn awaited_secrets(&self) -> Vec<Instant> {
        self.sds
            .values()
            .filter_map(SecretSub::awaited_until)
            .collect()
    }

    /// Gives up waiting for the secrets whose time is over.
    pub(super) fn time_out_secrets(&mut self, store: &Store) {
        let now = Instant::now();
        for (name, sub) in &mut self.sds {
            if sub.awaited_until().is_some_and(|t| t <= now) {
                log::warn!("SDS {name}: initial fetch timed out");
                store
                    .sds(name)
                    .inc(store.main_row(), Sds::init_fetch_timeout);
                sub.wait.timed_out = true;
            }
        }
    }

    /// The secrets taken, as `/config_dump`'s `dynamic_active_secrets`
    /// lists them: private keys and other sensitive fields redacted.
    pub(super) fn secrets_dump(&self) -> Vec<Value> {
        let taken = self.sds.iter().filter_map(|(name, sub)| {
            let (version, at, secret) = sub.accepted.as_ref()?;
            let mut secret = secret.clone();
            redact(&mut secret);
            Some(json!({
                "name": name,
                "version_info": version,
                "last_updated": crate::admin::rfc3339(*at),
                "secret": secret,
            }))
        });
        taken.collect()
    }

    /// Counts a lost stream as a failed update of every secret asked on
    /// it: the one named, or (None) those on the ADS stream.
    pub(super) fn secrets_lost_stream(&self, only: Option<&str>, store: &Store) {
        let on_stream = self.sds.iter().filter(|(name, sub)| match only {
            Some(n) => *name == n,
            None => sub.api.is_none(),
        });
        for (name, _) in on_stream {
            let stats = store.sds(name);
            stats.inc(store.main_row(), Sds::update_attempt);
            stats.inc(store.main_row(), Sds::update_failure);
        }
    }

    /// Takes a response of secrets: each one asked for is checked, and if
    /// all are good they go to the snapshot's secrets and the TLS contexts
    /// are compiled again (the snapshot to publish). Secrets nobody asked
    /// for (on this stream: `only` the one its subscription serves, or
    /// ADS's) are ignored.
    pub(super) fn take_secrets(
        &mut self,
        response: &Response,
        current: &ConfigSnapshot,
        store: &Store,
        only: Option<&Subject>,
    ) -> Result<Option<ConfigSnapshot>, String> {
        let resources = response.resources.as_ref()?;
        let mut delivered = Vec::new();
        for resource in resources {
            let Some(name) = resource["name"].as_str() else {
                return Err("a secret without a name".into());
            };
            let mine = match (only, self.sds.get(name)) {
                (_, None) => false,
                (None, Some(sub)) => sub.api.is_none(),
                (Some(subject), Some(_)) => *subject == Subject::Secret(name.to_string()),
            };
            if !mine {
                continue;
            }
            let tree = json!({"version_info": response.version, "resources": [resource]});
            let bytes = tree.to_string().into_bytes();
            let source = SecretSource {
                name: name.to_string(),
                path: None,
                api: None,
                yaml_path: String::new(),
            };
            let checked = config::parse_secret(&source, &bytes)
                .map_err(|(config::SecretError::Failure(e) | config::SecretError::Rejected(e))| e)
                .and_then(|file| crate::tls::check_secret(&file.secret));
            if let Err(e) = checked {
                let stats = store.sds(name);
                stats.inc(store.main_row(), Sds::update_attempt);
                stats.inc(store.main_row(), Sds::update_rejected);
                return Err(format!("secret {name}: {e}"));
            }
            delivered.push((name.to_string(), bytes, resource));
        }
        if delivered.is_empty() {
            return Ok(None);
        }
        let at = SystemTime::now();
        for (name, bytes, resource) in delivered {
            current.secrets.deliver(&name, bytes);
            if let Some(sub) = self.sds.get_mut(&name) {
                sub.wait.answered = true;
                sub.accepted = Some((response.version.clone(), at, resource.clone()));
            }
        }
        self.publish_dump();
        let (next, errors) = current.with_tls_reloaded(store);
        for e in errors {
            log::warn!("secrets from the control plane were not taken: {e}");
        }
        Ok(Some(next))
    }
}

/// Replaces what a secret must not show (Envoy's `sensitive` fields: a
/// private key, its password, session ticket keys, a generic secret) with
/// `[redacted]`, as Envoy's `/config_dump` does.
fn redact(value: &mut Value) {
    let Value::Object(map) = value else {
        if let Value::Array(list) = value {
            list.iter_mut().for_each(redact);
        }
        return;
    };
    for (key, field) in map.iter_mut() {
        match key.as_str() {
            "private_key" | "password" | "secret" => hide(field),
            "keys" => {
                if let Value::Array(keys) = field {
                    keys.iter_mut().for_each(hide);
                }
            }
            _ => redact(field),
        }
    }
}

/// A data source's inline content replaced by `[redacted]`.
fn hide(source: &mut Value) {
    if let Value::Object(map) = source {
        for (key, v) in map.iter_mut() {
            if key.starts_with("inline_") {
                *v = Value::String("[redacted]".into());
            }
        }
    }
}
