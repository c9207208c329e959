//! The layered runtime: `layered_runtime`'s static layers and its admin
//! layer, which `/runtime_modify` writes and `/runtime` shows, as Envoy's.
//! Ringway reads one key, `envoy.reloadable_features.http_reject_path_with_fragment`;
//! its final value is kept in a flag every connection manager reads when a
//! request target has a `#fragment`, so a change takes effect at once.
//! A few more keys, which control planes set, are accepted and shown
//! without effect ([`inert_key`]); any other key is refused.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The one runtime key Ringway reads.
pub const FRAGMENT_KEY: &str = "envoy.reloadable_features.http_reject_path_with_fragment";

/// What an accepted runtime key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A boolean.
    Flag,
    /// An unsigned integer.
    Count,
}

/// Runtime keys accepted (and shown by `/runtime`) without effect: each
/// changes something in Envoy that Ringway does one way whatever the
/// value, or that belongs to a feature Ringway refuses wherever it is
/// configured.
pub fn inert_key(key: &str) -> Option<KeyKind> {
    match key {
        // Envoy batches load-balancer rebuilds within one host update;
        // Ringway builds each cluster's balancer once per published
        // snapshot either way.
        "envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update"
        // How the fixed_heap resource monitor measures; that monitor is
        // refused.
        | "envoy.reloadable_features.fixed_heap_use_allocated" => Some(KeyKind::Flag),
        // RE2 program-size thresholds: Ringway's regex engine has no such
        // measure (it refuses only patterns past its compiled-size limit).
        "re2.max_program_size.error_level" | "re2.max_program_size.warn_level" => {
            Some(KeyKind::Count)
        }
        // Allowances for deprecated fields, which Ringway refuses by name.
        _ if key.starts_with("envoy.deprecated_features:") => Some(KeyKind::Flag),
        _ => None,
    }
}

/// Whether Ringway takes `key` in a layer.
fn accepted(key: &str) -> bool {
    key == FRAGMENT_KEY || inert_key(key).is_some()
}

/// One layer: its name and values; an admin layer starts empty and is
/// the one `/runtime_modify` writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    /// `name`.
    pub name: String,
    /// Its keys' values, as strings (Envoy shows a `false` as "false").
    pub values: BTreeMap<String, String>,
    /// Whether it is the admin layer.
    pub admin: bool,
}

/// The runtime's layers, and the flag the fragment key sets.
#[derive(Default)]
pub struct Runtime {
    layers: Mutex<Vec<Layer>>,
    /// Strip a `#fragment` rather than reject the request: the fragment
    /// key's final value is `false`.
    strip_fragment: Arc<AtomicBool>,
}

impl Runtime {
    /// Takes `layers` (the bootstrap's), lowest first.
    pub fn configure(&self, layers: Vec<Layer>) {
        *lock(&self.layers) = layers;
        self.refresh();
    }

    /// The flag connection managers read: strip a fragment.
    pub fn strip_fragment(&self) -> Arc<AtomicBool> {
        self.strip_fragment.clone()
    }

    /// A key's final value: the highest layer's that has it.
    fn value(layers: &[Layer], key: &str) -> Option<String> {
        layers.iter().rev().find_map(|l| l.values.get(key).cloned())
    }

    fn refresh(&self) {
        let layers = lock(&self.layers);
        let strip = Self::value(&layers, FRAGMENT_KEY).is_some_and(|v| v == "false");
        self.strip_fragment.store(strip, Ordering::Relaxed);
    }

    /// `/runtime`: every key with its value in each layer and its final
    /// value, and the layers' names.
    pub fn dump(&self) -> Value {
        let layers = lock(&self.layers);
        let mut keys: Vec<&String> = layers.iter().flat_map(|l| l.values.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut entries = Map::new();
        for key in keys {
            let values: Vec<&str> = layers
                .iter()
                .map(|l| l.values.get(key).map_or("", String::as_str))
                .collect();
            let last = Self::value(&layers, key).unwrap_or_default();
            entries.insert(
                key.clone(),
                json!({"layer_values": values, "final_value": last}),
            );
        }
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        json!({"entries": entries, "layers": names})
    }

    /// `/runtime_modify`: sets (or, with an empty value, removes) keys in
    /// the admin layer. Only keys Ringway takes are: a key it knows nothing
    /// of must not look set.
    pub fn modify(&self, pairs: &[(String, String)]) -> Result<(), (u16, String)> {
        let mut layers = lock(&self.layers);
        let Some(admin) = layers.iter_mut().find(|l| l.admin) else {
            return Err((503, "No admin layer specified".into()));
        };
        if let Some((key, _)) = pairs.iter().find(|(k, _)| !accepted(k)) {
            return Err((400, format!("runtime key {key} is not one Ringway takes")));
        }
        for (key, value) in pairs {
            if value.is_empty() {
                admin.values.remove(key);
            } else {
                admin.values.insert(key.clone(), value.clone());
            }
        }
        drop(layers);
        self.refresh();
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
