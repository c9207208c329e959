//! Tag extraction, as Envoy's tag producer does it: `stats_config.stats_tags`
//! and the default tags split a stat name into a tag-extracted name and
//! tags (`/stats/prometheus` shows them as the metric and its labels).
//!
//! Each regex extractor searches the full name; its first group is cut
//! from the name and its second (else the first) is the tag's value.
//! Extractors whose regex starts `^token\.` only see names starting with
//! that token; the others run first, in order, as Envoy orders them; of
//! several extractors with one tag name, the first that matches wins.

use crate::config::{TagSpecifier, TagValue};
use std::collections::HashMap;

/// Envoy's default tags for the stats Ringway has, in Envoy's order:
/// (tag name, regex, a substring a name must contain to match).
const DEFAULT_TAGS: [(&str, &str, &str); 9] = [
    ("envoy.response_code", r"_rq(_(\d{3}))$", "_rq_"),
    ("envoy.response_code_class", r"_rq_(\d)xx$", "_rq_"),
    ("envoy.cluster_name", r"^cluster\.((.*?)\.)", ""),
    (
        "envoy.http_conn_manager_prefix",
        r"^listener\..*?\.http\.((.*?)\.)",
        ".http.",
    ),
    ("envoy.http_conn_manager_prefix", r"^http\.((.*?)\.)", ""),
    (
        "envoy.listener_address",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
    (
        "envoy.rds_route_config",
        r"^http\.[^.]*\.rds\.((.*?)\.)\w+?$",
        ".rds.",
    ),
    ("envoy.tcp_prefix", r"^tcp\.((.*?)\.)\w+?$", ""),
    ("envoy.udp_prefix", r"^udp\.((.*?)\.)\w+?$", ""),
];

/// How one tag is found.
enum Rule {
    /// A regex search, when the name contains `hint`.
    Regex {
        regex: fancy_regex::Regex,
        hint: &'static str,
    },
    /// The same value on every stat.
    Fixed(String),
}

struct Extractor {
    name: String,
    rule: Rule,
    /// Whether another extractor has the same tag name.
    shared_name: bool,
}

/// A tag found in a name: its value and the bytes to cut.
struct Found {
    value: String,
    cut: std::ops::Range<usize>,
}

impl Extractor {
    fn find(&self, stat: &str) -> Option<Found> {
        match &self.rule {
            Rule::Fixed(value) => Some(Found {
                value: value.clone(),
                cut: 0..0,
            }),
            Rule::Regex { regex, hint } => {
                if !stat.contains(hint) {
                    return None;
                }
                let caps = regex.captures(stat).ok()??;
                let cut = caps.get(1)?;
                let value = if caps.len() > 2 {
                    caps.get(2).map_or("", |m| m.as_str())
                } else {
                    cut.as_str()
                };
                Some(Found {
                    value: value.to_string(),
                    cut: cut.range(),
                })
            }
        }
    }
}

/// `^token\.` at a regex's start: the first segment every name it can
/// match starts with.
fn prefix_token(regex: &str) -> Option<&str> {
    let rest = regex.strip_prefix('^')?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    rest[end..].starts_with(r"\.").then(|| &rest[..end])
}

/// The configured extractors.
#[derive(Default)]
pub struct TagProducer {
    /// Run on every name, first.
    general: Vec<Extractor>,
    /// Run on names whose first segment is the key.
    by_prefix: HashMap<String, Vec<Extractor>>,
}

impl TagProducer {
    /// Envoy's default tags (when `use_default_tags`), then `specifiers`.
    pub fn new(use_default_tags: bool, specifiers: &[TagSpecifier]) -> Result<Self, String> {
        let mut rules: Vec<(String, Option<String>, Rule)> = Vec::new();
        fn defaults(
            name: &str,
        ) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> + '_
        {
            DEFAULT_TAGS
                .iter()
                .filter(move |(n, _, _)| name.is_empty() || *n == name)
        }
        // A regex extractor, keyed by the name token its regex requires.
        let regex_rule = |name: &str, pattern: &str, hint: &'static str| {
            let regex = fancy_regex::Regex::new(pattern)
                .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
            let prefix = prefix_token(pattern).map(str::to_string);
            Ok::<_, String>((name.to_string(), prefix, Rule::Regex { regex, hint }))
        };
        if use_default_tags {
            for (name, pattern, hint) in defaults("") {
                rules.push(regex_rule(name, pattern, hint)?);
            }
        }
        for spec in specifiers {
            match &spec.value {
                TagValue::Fixed(value) => {
                    rules.push((spec.name.clone(), None, Rule::Fixed(value.clone())));
                }
                TagValue::Regex(pattern) => rules.push(regex_rule(&spec.name, pattern, "")?),
                TagValue::Default => {
                    let mut found = false;
                    for (name, pattern, hint) in defaults(&spec.name) {
                        rules.push(regex_rule(name, pattern, hint)?);
                        found = true;
                    }
                    if !found {
                        return Err(format!(
                            "No regex specified for tag specifier and no default regex for name: '{}'",
                            spec.name
                        ));
                    }
                }
            }
        }
        let mut producer = TagProducer::default();
        let names: Vec<String> = rules.iter().map(|(n, _, _)| n.clone()).collect();
        for (name, prefix, rule) in rules {
            let shared_name = names.iter().filter(|n| **n == name).count() > 1;
            let extractor = Extractor {
                name,
                rule,
                shared_name,
            };
            match prefix {
                Some(p) => producer.by_prefix.entry(p).or_default().push(extractor),
                None => producer.general.push(extractor),
            }
        }
        Ok(producer)
    }

    /// The tag-extracted name of `stat` and its tags, in extraction order.
    pub fn produce(&self, stat: &str) -> (String, Vec<(String, String)>) {
        let prefixed = stat
            .split_once('.')
            .and_then(|(token, _)| self.by_prefix.get(token))
            .into_iter()
            .flatten();
        let mut tags: Vec<(String, String)> = Vec::new();
        let mut cut = vec![false; stat.len()];
        for extractor in self.general.iter().chain(prefixed) {
            if extractor.shared_name && tags.iter().any(|(n, _)| *n == extractor.name) {
                continue;
            }
            if let Some(found) = extractor.find(stat) {
                cut[found.cut].fill(true);
                tags.push((extractor.name.clone(), found.value));
            }
        }
        let name = stat
            .char_indices()
            .filter(|(i, _)| !cut[*i])
            .map(|(_, c)| c)
            .collect();
        (name, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TagProducer {
        TagProducer::new(true, &[]).expect("defaults compile")
    }

    fn tags(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_tags_as_envoy_extracts_them() {
        let p = defaults();
        assert_eq!(
            p.produce("cluster.backend.upstream_rq_200"),
            (
                "cluster.upstream_rq".to_string(),
                tags(&[
                    ("envoy.response_code", "200"),
                    ("envoy.cluster_name", "backend")
                ])
            )
        );
        let (name, t) = p.produce("listener.127.0.0.1_80.http.ing.downstream_rq_2xx");
        assert_eq!(name, "listener.http.downstream_rq_xx");
        assert_eq!(
            t,
            tags(&[
                ("envoy.response_code_class", "2"),
                ("envoy.http_conn_manager_prefix", "ing"),
                ("envoy.listener_address", "127.0.0.1_80"),
            ])
        );
        let (name, t) = p.produce("listener.admin.downstream_cx_total");
        assert_eq!(
            (name.as_str(), t.len()),
            ("listener.admin.downstream_cx_total", 0)
        );
        let (name, t) = p.produce("http.ing.rds.local_route.update_attempt");
        assert_eq!(name, "http.rds.update_attempt");
        assert_eq!(
            t[1],
            (
                "envoy.rds_route_config".to_string(),
                "local_route".to_string()
            )
        );
        assert_eq!(p.produce("server.live").0, "server.live");
    }

    #[test]
    fn custom_tags_follow_defaults_or_replace_them() {
        let specs = [
            TagSpecifier {
                name: "cluster_name".into(),
                value: TagValue::Regex(r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)".into()),
            },
            TagSpecifier {
                name: "fixed".into(),
                value: TagValue::Fixed("v1".into()),
            },
            TagSpecifier {
                name: "listener_prefix".into(),
                value: TagValue::Regex(r"^listener(?=\.).*?\.http\.((.*?)\.)".into()),
            },
        ];
        let p = TagProducer::new(false, &specs).expect("compiles");
        let (name, t) = p.produce("cluster.out.ns.svc.cluster.local.upstream_rq_200");
        assert_eq!(name, "cluster.upstream_rq_200");
        assert_eq!(
            t,
            tags(&[
                ("fixed", "v1"),
                ("cluster_name", "out.ns.svc.cluster.local")
            ])
        );
        let (name, t) = p.produce("listener.1.2.3.4_80.http.in.downstream_rq_total");
        assert_eq!(name, "listener.1.2.3.4_80.http.downstream_rq_total");
        assert_eq!(t[1], ("listener_prefix".to_string(), "in".to_string()));
        let unknown = [TagSpecifier {
            name: "nothing".into(),
            value: TagValue::Default,
        }];
        assert!(TagProducer::new(true, &unknown).is_err());
    }
}
