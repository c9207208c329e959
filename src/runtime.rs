//! The layered runtime: `layered_runtime`'s static layers and its admin
//! layer, which `/runtime_modify` writes and `/runtime` shows, as Envoy's.
//! Ringway reads `envoy.reloadable_features.http_reject_path_with_fragment`,
//! whose final value is kept in a flag every connection manager reads when
//! a request target has a `#fragment`, and the keys the configuration's
//! runtime fractions name (`filter_enabled`, `filter_enforced`), each kept
//! in an atomic its filter reads per request: a change takes effect at
//! once, without a lock. A few more keys, which control planes set, are
//! accepted and shown without effect ([`inert_key`]); any other key is
//! refused.

use crate::config::{Fraction, RuntimePercent};
use serde_json::{json, Map};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A runtime value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar, as text (Envoy shows a `false` as "false").
    Text(String),
    /// A `FractionalPercent` written as a mapping in a static layer.
    Percent(Fraction),
}

impl Value {
    /// How `/runtime` shows it.
    fn shown(&self) -> String {
        match self {
            Value::Text(t) => t.clone(),
            Value::Percent(f) => format!(
                "{{\"numerator\":{},\"denominator\":\"{}\"}}",
                f.numerator,
                match f.denominator {
                    100 => "HUNDRED",
                    10_000 => "TEN_THOUSAND",
                    _ => "MILLION",
                }
            ),
        }
    }

    /// What a runtime fraction reads from it, encoded for a [`Share`]:
    /// a percent as is; an unsigned integer as a numerator over the
    /// fraction's default denominator (Envoy's reading); else nothing, and
    /// the default applies.
    fn share_code(&self) -> u64 {
        match self {
            Value::Percent(f) => {
                PERCENT | (f.denominator << 32) | f.numerator.min(u64::from(u32::MAX))
            }
            Value::Text(t) => match t.parse::<u64>() {
                Ok(n) => NUMERATOR | n.min(u64::from(u32::MAX)),
                Err(_) => 0,
            },
        }
    }
}

/// [`Share`] codes: a numerator over the default denominator, or a whole
/// percent (denominator in bits 32..62); 0 is no value.
const NUMERATOR: u64 = 1 << 63;
const PERCENT: u64 = 1 << 62;

/// One layer: its name and values; an admin layer starts empty and is
/// the one `/runtime_modify` writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    /// `name`.
    pub name: String,
    /// Its keys' values.
    pub values: BTreeMap<String, Value>,
    /// Whether it is the admin layer.
    pub admin: bool,
}

/// A `RuntimeFractionalPercent` compiled: its `default_value`, and its
/// `runtime_key`'s current value, read per request with one relaxed load.
#[derive(Debug, Clone)]
pub struct Share {
    default: Fraction,
    current: Option<Arc<AtomicU64>>,
}

impl Share {
    /// A fraction that is always `default`.
    pub fn fixed(default: Fraction) -> Share {
        Share {
            default,
            current: None,
        }
    }

    /// Whether a request drawing `random` falls in the share (Envoy's
    /// `random % denominator < numerator`).
    pub fn admits(&self, random: u64) -> bool {
        let code = self
            .current
            .as_ref()
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let (numerator, denominator) = if code & PERCENT != 0 {
            (code & u64::from(u32::MAX), (code & !PERCENT) >> 32)
        } else if code & NUMERATOR != 0 {
            (code & !NUMERATOR, self.default.denominator)
        } else {
            (self.default.numerator, self.default.denominator)
        };
        numerator > 0 && random % denominator.max(1) < numerator
    }
}

/// The runtime's layers, and what the keys Ringway reads are set to.
#[derive(Default)]
pub struct Runtime {
    layers: Mutex<Vec<Layer>>,
    /// Strip a `#fragment` rather than reject the request: the fragment
    /// key's final value is `false`.
    strip_fragment: Arc<AtomicBool>,
    /// The keys runtime fractions read, with their current [`Share`] codes.
    shares: Mutex<HashMap<String, Arc<AtomicU64>>>,
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

    /// A runtime fraction, compiled: its key (when it has one) read over
    /// its default. The key becomes one Ringway takes, in
    /// `/runtime_modify` too.
    pub fn share(&self, percent: &RuntimePercent) -> Share {
        let default = percent.default;
        let Some(key) = percent.runtime_key.as_deref().filter(|k| !k.is_empty()) else {
            return Share::fixed(default);
        };
        let current = {
            let layers = lock(&self.layers);
            let code = Self::value(&layers, key).map_or(0, Value::share_code);
            lock(&self.shares)
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(AtomicU64::new(code)))
                .clone()
        };
        Share {
            default,
            current: Some(current),
        }
    }

    /// Whether Ringway takes `key` in a layer.
    fn accepted(&self, key: &str) -> bool {
        key == FRAGMENT_KEY || inert_key(key).is_some() || lock(&self.shares).contains_key(key)
    }

    /// A key's final value: the highest layer's that has it.
    fn value<'l>(layers: &'l [Layer], key: &str) -> Option<&'l Value> {
        layers.iter().rev().find_map(|l| l.values.get(key))
    }

    fn refresh(&self) {
        let layers = lock(&self.layers);
        let strip =
            matches!(Self::value(&layers, FRAGMENT_KEY), Some(Value::Text(v)) if v == "false");
        self.strip_fragment.store(strip, Ordering::Relaxed);
        for (key, share) in lock(&self.shares).iter() {
            let code = Self::value(&layers, key).map_or(0, Value::share_code);
            share.store(code, Ordering::Relaxed);
        }
    }

    /// `/runtime`: every key with its value in each layer and its final
    /// value, and the layers' names.
    pub fn dump(&self) -> serde_json::Value {
        let layers = lock(&self.layers);
        let mut keys: Vec<&String> = layers.iter().flat_map(|l| l.values.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut entries = Map::new();
        for key in keys {
            let values: Vec<String> = layers
                .iter()
                .map(|l| l.values.get(key).map_or_else(String::new, Value::shown))
                .collect();
            let last = Self::value(&layers, key).map_or_else(String::new, Value::shown);
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
        if let Some((key, _)) = pairs.iter().find(|(k, _)| !self.accepted(k)) {
            return Err((400, format!("runtime key {key} is not one Ringway takes")));
        }
        for (key, value) in pairs {
            if value.is_empty() {
                admin.values.remove(key);
            } else {
                admin.values.insert(key.clone(), Value::Text(value.clone()));
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
