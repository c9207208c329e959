//! A subscription's state: the resources it accepted (decoded, and as
//! delivered with the version that brought each) and its last refused
//! update.

use super::Kind;
use crate::admin::rfc3339;
use crate::config::{self, ConfigSource};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Instant, SystemTime};

/// A refused update.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    /// `version_info` of the update.
    pub version: String,
    /// When it came.
    pub at: SystemTime,
    /// Why it was refused.
    pub error: String,
    /// Its resources as delivered (those that could be read).
    pub raw: Vec<Value>,
}

/// An accepted resource as `/config_dump` shows it.
#[derive(Clone)]
pub(super) struct Entry {
    /// As delivered.
    raw: Value,
    /// The version that last added or replaced it, and when. As in Envoy,
    /// a listener changed in place (only its filter chains) keeps both.
    version: String,
    at: SystemTime,
}

impl Entry {
    pub(super) fn dump(&self) -> Value {
        json!({"resource": self.raw, "version_info": self.version, "last_updated": rfc3339(self.at)})
    }
}

/// A resource type's decoded form, as an update compares it.
pub(super) trait Resource: Clone {
    fn name(&self) -> &str;
    /// Whether `self`, replacing `old`, keeps `old`'s version in the dump.
    fn keeps_version_of(&self, old: &Self) -> bool;
}

impl Resource for config::Listener {
    fn name(&self) -> &str {
        &self.name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.shell == old.shell
    }
}

impl Resource for config::RouteConfiguration {
    fn name(&self) -> &str {
        &self.name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.fingerprint == old.fingerprint
    }
}

impl Resource for config::Assignment {
    fn name(&self) -> &str {
        &self.cluster_name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.fingerprint == old.fingerprint
    }
}

impl Resource for config::Cluster {
    fn name(&self) -> &str {
        &self.name
    }

    fn keeps_version_of(&self, old: &Self) -> bool {
        self.fingerprint == old.fingerprint
    }
}

/// A subscription's first update: waited for from `since` (up to the
/// source's `initial_fetch_timeout`) until one came.
pub(super) struct Waiting {
    pub since: Instant,
    /// Whether the first update did not come in time.
    pub timed_out: bool,
    /// Whether an update (taken or refused) has come.
    pub answered: bool,
    /// Whether it was asked of the control plane (which Envoy counts as
    /// an update attempt).
    pub asked: bool,
}

impl Waiting {
    /// Nothing asked, nothing come yet; the wait counts from now.
    pub fn new() -> Self {
        Waiting {
            since: Instant::now(),
            timed_out: false,
            answered: false,
            asked: false,
        }
    }
}

/// One subscription: its source, what it last accepted and rejected.
pub(super) struct Subscription<T> {
    pub kind: Kind,
    pub source: ConfigSource,
    /// Where its first update stands.
    pub wait: Waiting,
    /// The accepted resources, decoded.
    pub resources: Vec<T>,
    /// The same, as `/config_dump` shows them.
    pub entries: Vec<Entry>,
    /// The version of the last update that changed anything (Envoy's
    /// `version_info` of the dump), and when.
    accepted: Option<(String, SystemTime)>,
    /// The last refused update.
    pub rejected: Option<Outcome>,
}

impl<T: Resource> Subscription<T> {
    pub fn new(kind: Kind, source: ConfigSource) -> Self {
        Subscription {
            kind,
            source,
            wait: Waiting::new(),
            resources: Vec::new(),
            entries: Vec::new(),
            accepted: None,
            rejected: None,
        }
    }

    /// When the start stops waiting for its first update: never for a
    /// file (read at once) or once answered; None waits for ever.
    pub fn awaited_until(&self) -> Option<Option<Instant>> {
        let initial_fetch_timeout = self.source.initial_fetch_timeout()?;
        let w = &self.wait;
        if w.timed_out || w.answered {
            return None;
        }
        Some((!initial_fetch_timeout.is_zero()).then(|| w.since + initial_fetch_timeout))
    }

    /// Takes an accepted update: its resources decoded and as delivered.
    pub fn accept(&mut self, resources: Vec<T>, raw: Vec<Value>, version: &str, at: SystemTime) {
        let mut entries = Vec::with_capacity(resources.len());
        let mut changed = resources.len() != self.resources.len();
        let positions: HashMap<&str, usize> = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name(), i))
            .collect();
        for (resource, raw) in resources.iter().zip(raw) {
            let before = positions.get(resource.name()).copied();
            let kept = before.filter(|&i| resource.keeps_version_of(&self.resources[i]));
            changed |= before.is_none_or(|i| raw != self.entries[i].raw);
            entries.push(match kept {
                Some(i) => Entry {
                    raw,
                    version: self.entries[i].version.clone(),
                    at: self.entries[i].at,
                },
                None => Entry {
                    raw,
                    version: version.to_string(),
                    at,
                },
            });
        }
        if changed || self.accepted.is_none() {
            self.accepted = Some((version.to_string(), at));
        }
        self.resources = resources;
        self.entries = entries;
    }

    /// The accepted resources as they were delivered.
    pub fn delivered(&self) -> Vec<Value> {
        self.entries.iter().map(|e| e.raw.clone()).collect()
    }

    /// This subscription's part of `/config_dump`.
    pub fn dump(&self) -> Value {
        let resources: Vec<Value> = self.entries.iter().map(Entry::dump).collect();
        let mut dump = json!({
            "version_info": self.accepted.as_ref().map_or("", |(v, _)| v.as_str()),
            "resources": resources,
        });
        if let Some(r) = &self.rejected {
            // Beyond Envoy: the last refused update, so an operator sees
            // it without reading logs.
            dump["last_rejected"] = json!({
                "version_info": r.version,
                "last_update_attempt": rfc3339(r.at),
                "details": r.error,
                "resources": r.raw,
            });
        }
        dump
    }
}
