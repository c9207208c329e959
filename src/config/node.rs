//! Path-aware walking of a parsed configuration tree.
//!
//! Every decode step knows the YAML path of the value it looks at, so an error
//! reads `static_resources.clusters[0].connect_timeout: expected a duration`.
//! Errors are collected rather than returned early, so `--mode validate`
//! reports all of them in one run.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// One configuration problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted YAML path, e.g. `static_resources.listeners[0].name`.
    pub path: String,
    /// What was wrong and what was expected.
    pub message: String,
    /// What was probably meant (a known field close to an unknown one).
    pub suggestion: Option<String>,
}

impl ConfigError {
    /// The error as a JSON record: `path`, `message`, `suggestion`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "path": self.path,
            "message": self.message,
            "suggestion": self.suggestion,
        })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", &self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough
/// to be a likely typo (at most a third of the name's length, and 1 for
/// short names).
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance between two strings, by bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The errors found while decoding one configuration.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    /// Records an error at `path`.
    pub fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
            suggestion: None,
        });
    }

    /// Records an error at `path` with what was probably meant.
    pub fn suggest(&mut self, path: &str, message: impl Into<String>, suggestion: Option<&str>) {
        self.0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
            suggestion: suggestion.map(str::to_string),
        });
    }
}

/// A value in the configuration tree together with its path.
#[derive(Clone)]
pub struct Node<'a> {
    value: &'a Value,
    path: String,
}

/// Lists the fields one configuration message accepts.
pub struct Fields {
    /// Fields Ringway implements.
    pub known: &'static [&'static str],
    /// Fields Envoy defines that Ringway does not implement yet.
    pub unsupported: &'static [&'static str],
}

/// A configuration object whose fields have been checked against [`Fields`].
pub struct Obj<'a> {
    entries: Vec<(Cow<'a, str>, &'a Value)>,
    path: String,
}

/// Converts a protobuf JSON camelCase name (`portValue`) to its field name
/// (`port_value`); a name already in snake case is borrowed, not copied.
fn snake_case(key: &str) -> Cow<'_, str> {
    if !key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl<'a> Node<'a> {
    /// Wraps the tree's root.
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The path of this value.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw value.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// Wraps `value` as if it sat at `path` (a resource from an xDS file
    /// or stream reports its errors under its own path).
    pub fn at(value: &'a Value, path: impl Into<String>) -> Self {
        Node {
            value,
            path: path.into(),
        }
    }

    /// A digest of this value's content: equal for equal configuration,
    /// so an update can tell what it changed. Fields in `skip` are left out.
    pub fn fingerprint(&self, skip: &[&str]) -> u64 {
        let mut digest = xxhash_rust::xxh64::Xxh64::new(0);
        match self.value {
            Value::Object(map) => {
                for (key, value) in map.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                    digest.update(key.as_bytes());
                    digest.update(value.to_string().as_bytes());
                }
            }
            other => digest.update(other.to_string().as_bytes()),
        }
        digest.digest()
    }

    fn mismatch(&self, errs: &mut Errors, expected: &str) {
        errs.add(
            &self.path,
            format!("expected {expected}, found {}", kind(self.value)),
        );
    }

    /// Checks that this value is a mapping whose keys are all in `fields`.
    ///
    /// Envoy fields that Ringway does not implement are reported as
    /// "not supported yet"; anything else as an unknown field.
    pub fn object(&self, errs: &mut Errors, fields: &Fields) -> Option<Obj<'a>> {
        let map: &'a Map<String, Value> = match self.value {
            Value::Object(map) => map,
            _ => {
                self.mismatch(errs, "a mapping");
                return None;
            }
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            let name = snake_case(key);
            if fields.known.contains(&name.as_ref()) {
                entries.push((name, value));
            } else if fields.unsupported.contains(&name.as_ref()) {
                errs.add(&join(&self.path, &name), "not supported yet");
            } else {
                let all = fields.known.iter().chain(fields.unsupported).copied();
                let suggestion = closest(&name, all);
                errs.suggest(&join(&self.path, &name), "unknown field", suggestion);
            }
        }
        Some(Obj {
            entries,
            path: self.path.clone(),
        })
    }

    /// The entry `name` of a mapping value, if present (fields unchecked).
    pub fn entry(&self, name: &str) -> Option<Node<'a>> {
        match self.value {
            Value::Object(map) => map.get(name).map(|value| Node {
                value,
                path: join(&self.path, name),
            }),
            _ => None,
        }
    }

    /// Decodes a string.
    pub fn str(&self, errs: &mut Errors) -> Option<&'a str> {
        match self.value {
            Value::String(s) => Some(s),
            _ => {
                self.mismatch(errs, "a string");
                None
            }
        }
    }

    /// Decodes a boolean.
    pub fn bool(&self, errs: &mut Errors) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.mismatch(errs, "a boolean");
                None
            }
        }
    }

    /// Decodes an unsigned integer no larger than `max` (proto JSON also allows a string).
    pub fn uint(&self, errs: &mut Errors, max: u64) -> Option<u64> {
        let n = match self.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => parse_uint(s),
            _ => None,
        };
        match n {
            Some(n) if n <= max => Some(n),
            _ => {
                errs.add(
                    &self.path,
                    format!("expected an integer from 0 to {max}, found {}", self.value),
                );
                None
            }
        }
    }

    /// Decodes a `google.protobuf.Duration`: `"1.5s"` or `{seconds, nanos}`.
    pub fn duration(&self, errs: &mut Errors) -> Option<Duration> {
        let parsed = match self.value {
            Value::String(s) => parse_duration(s),
            Value::Object(map) => {
                let secs = map.get("seconds").map_or(Some(0), |v| match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                });
                let nanos = map
                    .get("nanos")
                    .map_or(Some(0), |v| v.as_u64().filter(|n| *n < 1_000_000_000));
                let only_known = map.keys().all(|k| k == "seconds" || k == "nanos");
                match (secs, nanos, only_known) {
                    (Some(s), Some(n), true) => Some(Duration::new(s, n as u32)),
                    _ => None,
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            errs.add(
                &self.path,
                format!(
                    "expected a duration such as \"2s\" or \"0.25s\", found {}",
                    self.value
                ),
            );
        }
        parsed
    }

    /// Decodes one of the given enum names (proto JSON also allows the number).
    pub fn enumeration(&self, errs: &mut Errors, names: &[&'static str]) -> Option<&'static str> {
        let found = match self.value {
            // Envoy accepts enum names in any case (`codec_type: auto`).
            Value::String(s) => names.iter().find(|n| n.eq_ignore_ascii_case(s)).copied(),
            Value::Number(n) => n.as_u64().and_then(|i| names.get(i as usize).copied()),
            _ => None,
        };
        if found.is_none() {
            let upper = self.value.as_str().map(str::to_ascii_uppercase);
            let near = upper.and_then(|u| closest(&u, names.iter().copied()));
            errs.suggest(
                &self.path,
                format!("expected one of {}, found {}", names.join(", "), self.value),
                near,
            );
        }
        found
    }

    /// Decodes a list, giving each element its indexed path.
    pub fn list(&self, errs: &mut Errors) -> Vec<Node<'a>> {
        match self.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect(),
            _ => {
                self.mismatch(errs, "a list");
                Vec::new()
            }
        }
    }
}

/// Builds a child path.
/// An unsigned integer written as text. YAML leaves `0644` and `0x1f`
/// as strings; Envoy's YAML reader (yaml-cpp) reads a leading `0` as octal
/// and `0x` as hex, so they are read the same way here (`mode: 0666` is
/// the usual way to write a pipe's permissions).
fn parse_uint(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    match text.strip_prefix('0') {
        Some(octal) if !octal.is_empty() => u64::from_str_radix(octal, 8).ok(),
        _ => text.parse().ok(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl<'a> Obj<'a> {
    /// The object's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field `name`, if set (a null value counts as unset, as in proto JSON).
    pub fn get(&self, name: &str) -> Option<Node<'a>> {
        self.entries
            .iter()
            .find(|(k, v)| k == name && !v.is_null())
            .map(|(k, v)| Node {
                path: join(&self.path, k),
                value: v,
            })
    }

    /// The field `name`, recording an error when it is missing.
    pub fn require(&self, errs: &mut Errors, name: &str) -> Option<Node<'a>> {
        let child = self.get(name);
        if child.is_none() {
            errs.add(&join(&self.path, name), "required field is missing");
        }
        child
    }

    /// A required string field that must not be empty (`stat_prefix`); an
    /// empty one is reported and still returned, so the rest of the
    /// message is checked too.
    pub fn non_empty_str(&self, errs: &mut Errors, name: &str) -> Option<String> {
        let node = self.require(errs, name)?;
        let text = node.str(errs)?;
        if text.is_empty() {
            errs.add(node.path(), format!("expected a non-empty {name}"));
        }
        Some(text.to_string())
    }
}

/// Parses Envoy's duration strings: `2s`, `0.25s`, `1.5s`, also `100ms`-free proto form.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let secs = text.strip_suffix('s')?;
    if secs.is_empty() || secs.starts_with('-') || secs.starts_with('+') {
        return None;
    }
    let (whole, frac) = match secs.split_once('.') {
        Some((w, f)) => (w, f),
        None => (secs, ""),
    };
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() && !frac.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    Some(Duration::new(whole, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["route_config", "stat_prefix", "server_name"];
        assert_eq!(closest("stat_prefx", names), Some("stat_prefix"));
        assert_eq!(closest("route_configs", names), Some("route_config"));
        assert_eq!(closest("tracing", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn integers_as_yaml_cpp_reads_them() {
        assert_eq!(parse_uint("0666"), Some(0o666));
        assert_eq!(parse_uint("0x1f"), Some(31));
        assert_eq!(parse_uint("0"), Some(0));
        assert_eq!(parse_uint("8080"), Some(8080));
        assert_eq!(parse_uint("09"), None);
    }

    #[test]
    fn durations_in_envoy_forms() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.25s"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1.0000000001s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn camel_case_keys_map_to_field_names() {
        assert_eq!(snake_case("portValue"), "port_value");
        assert_eq!(snake_case("port_value"), "port_value");
        assert_eq!(snake_case("@type"), "@type");
    }
}
