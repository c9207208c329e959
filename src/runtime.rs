//! The layered runtime: `layered_runtime`'s static layers and its admin
//! layer, which `/runtime_modify` writes and `/runtime` shows, as Envoy's.
//! Ringway reads one key, `envoy.reloadable_features.http_reject_path_with_fragment`;
//! its final value is kept in a flag every connection manager reads when a
//! request target has a `#fragment`, so a change takes effect at once.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The one runtime key Ringway reads.
pub const FRAGMENT_KEY: &str = "envoy.reloadable_features.http_reject_path_with_fragment";

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
    /// the admin layer. Only keys Ringway reads are taken: a key it would
    /// not act on must not look set.
    pub fn modify(&self, pairs: &[(String, String)]) -> Result<(), (u16, String)> {
        let mut layers = lock(&self.layers);
        let Some(admin) = layers.iter_mut().find(|l| l.admin) else {
            return Err((503, "No admin layer specified".into()));
        };
        if let Some((key, _)) = pairs.iter().find(|(k, _)| k != FRAGMENT_KEY) {
            return Err((
                400,
                format!("runtime key {key} is not one Ringway reads (only {FRAGMENT_KEY})"),
            ));
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
