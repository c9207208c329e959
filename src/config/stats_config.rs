//! `stats_config` and `deferred_stat_options`: which stats exist, and when
//! a cluster's traffic stats appear.

use super::node::{Errors, Fields, Node};
use super::route_match::{string_matcher, StringMatcher};

/// `stats_config.stats_matcher`: which stats exist. A stat it rejects is
/// never shown, exported or carried across a hot restart, as in Envoy,
/// where it is never created.
#[derive(Debug, Clone)]
pub enum StatsMatcher {
    /// `reject_all: true`: none.
    RejectAll,
    /// `inclusion_list`: only the names a pattern matches.
    Include(Vec<StringMatcher>),
    /// `exclusion_list`: every name no pattern matches.
    Exclude(Vec<StringMatcher>),
}

impl StatsMatcher {
    /// Whether the stat with this full name exists.
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            StatsMatcher::RejectAll => false,
            StatsMatcher::Include(patterns) => patterns.iter().any(|p| p.matches(name)),
            StatsMatcher::Exclude(patterns) => !patterns.iter().any(|p| p.matches(name)),
        }
    }
}

/// One `stats_tags` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpecifier {
    /// `tag_name`.
    pub name: String,
    /// How its value is found.
    pub value: TagValue,
}

/// Where a tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagValue {
    /// `regex`: cut the first group, the value is the second (else first).
    Regex(String),
    /// `fixed_value`: the same on every stat.
    Fixed(String),
    /// Neither: Envoy's default regex for `tag_name`.
    Default,
}

/// What decides which stats exist and how they are named when exported.
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// `stats_config.stats_matcher` (none: every stat).
    pub matcher: Option<StatsMatcher>,
    /// `deferred_stat_options.enable_deferred_creation_stats`: a cluster's
    /// traffic stats (`upstream_rq_*`, `upstream_cx_*` …) exist from its
    /// first use, not from its creation.
    pub deferred: bool,
    /// `stats_config.use_all_default_tags` (default true).
    pub use_default_tags: bool,
    /// `stats_config.stats_tags`.
    pub tags: Vec<TagSpecifier>,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            matcher: None,
            deferred: false,
            use_default_tags: true,
            tags: Vec::new(),
        }
    }
}

#[rustfmt::skip]
static STATS_CONFIG: Fields = Fields {
    known: &["stats_matcher", "stats_tags", "use_all_default_tags"],
    unsupported: &["histogram_bucket_settings"],
};
#[rustfmt::skip]
static TAG_SPECIFIER: Fields = Fields {
    known: &["tag_name", "regex", "fixed_value"],
    unsupported: &[],
};
#[rustfmt::skip]
static STATS_MATCHER: Fields = Fields {
    known: &["reject_all", "inclusion_list", "exclusion_list"],
    unsupported: &[],
};
#[rustfmt::skip]
static LIST_STRING_MATCHER: Fields = Fields { known: &["patterns"], unsupported: &[] };
#[rustfmt::skip]
static DEFERRED_STAT_OPTIONS: Fields = Fields {
    known: &["enable_deferred_creation_stats"],
    unsupported: &[],
};

/// Decodes `stats_config` into `options`.
pub fn stats_config(node: &Node, errs: &mut Errors, options: &mut StatsOptions) {
    let Some(obj) = node.object(errs, &STATS_CONFIG) else {
        return;
    };
    options.matcher = obj
        .get("stats_matcher")
        .and_then(|m| stats_matcher(&m, errs));
    if let Some(u) = obj.get("use_all_default_tags") {
        options.use_default_tags = super::bootstrap::any_bool(Some(u), errs, true);
    }
    let Some(list) = obj.get("stats_tags") else {
        return;
    };
    for item in list.list(errs) {
        let Some(t) = item.object(errs, &TAG_SPECIFIER) else {
            continue;
        };
        let name = t
            .get("tag_name")
            .and_then(|n| n.str(errs))
            .unwrap_or_default();
        let regex = t
            .get("regex")
            .and_then(|r| r.str(errs))
            .filter(|r| !r.is_empty());
        let fixed = t.get("fixed_value").and_then(|f| f.str(errs));
        let value = match (regex, fixed) {
            (Some(_), Some(_)) => {
                errs.add(item.path(), "expected only one of regex, fixed_value");
                continue;
            }
            (Some(r), None) => TagValue::Regex(r.to_string()),
            (None, Some(f)) => TagValue::Fixed(f.to_string()),
            (None, None) => TagValue::Default,
        };
        options.tags.push(TagSpecifier {
            name: name.to_string(),
            value,
        });
    }
    if let Err(e) = crate::stats::TagProducer::new(options.use_default_tags, &options.tags) {
        errs.add(list.path(), e);
    }
}

fn stats_matcher(node: &Node, errs: &mut Errors) -> Option<StatsMatcher> {
    let obj = node.object(errs, &STATS_MATCHER)?;
    let reject_all = obj.get("reject_all");
    let include = obj.get("inclusion_list");
    let exclude = obj.get("exclusion_list");
    if [&reject_all, &include, &exclude]
        .iter()
        .filter(|f| f.is_some())
        .count()
        > 1
    {
        errs.add(
            node.path(),
            "expected only one of reject_all, inclusion_list, exclusion_list",
        );
        return None;
    }
    if let Some(r) = reject_all {
        return r.bool(errs)?.then_some(StatsMatcher::RejectAll);
    }
    if let Some(list) = include {
        return Some(StatsMatcher::Include(patterns(&list, errs)?));
    }
    Some(StatsMatcher::Exclude(patterns(&exclude?, errs)?))
}

/// A `ListStringMatcher`'s patterns (at least one, as Envoy requires).
fn patterns(node: &Node, errs: &mut Errors) -> Option<Vec<StringMatcher>> {
    let obj = node.object(errs, &LIST_STRING_MATCHER)?;
    let items = obj
        .get("patterns")
        .map(|p| p.list(errs))
        .unwrap_or_default();
    if items.is_empty() {
        errs.add(
            &format!("{}.patterns", node.path()),
            "value must contain at least 1 item(s)",
        );
        return None;
    }
    items.iter().map(|p| string_matcher(p, errs)).collect()
}

/// Decodes `deferred_stat_options` into `options`.
pub fn deferred_stat_options(node: &Node, errs: &mut Errors, options: &mut StatsOptions) {
    let Some(obj) = node.object(errs, &DEFERRED_STAT_OPTIONS) else {
        return;
    };
    if let Some(d) = obj.get("enable_deferred_creation_stats") {
        options.deferred = d.bool(errs).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> (StatsOptions, Errors) {
        let tree: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        let mut errs = Errors::default();
        let mut options = StatsOptions::default();
        stats_config(&Node::at(&tree, "stats_config"), &mut errs, &mut options);
        (options, errs)
    }

    #[test]
    fn lists_match_full_names() {
        let (o, errs) = decode(
            "stats_matcher: {inclusion_list: {patterns: [{prefix: cluster.a.}, {suffix: _active}, {safe_regex: {regex: '.*total.*'}}]}}",
        );
        assert!(errs.0.is_empty(), "{:?}", errs.0);
        let m = o.matcher.expect("matcher");
        assert!(m.accepts("cluster.a.upstream_rq_200"));
        assert!(m.accepts("http.x.downstream_rq_active"));
        assert!(m.accepts("server.total_connections"));
        assert!(!m.accepts("cluster.b.upstream_rq_200"));
        assert!(!m.accepts("server.live"));
    }

    #[test]
    fn one_kind_and_a_pattern_are_required() {
        let (_, errs) =
            decode("stats_matcher: {reject_all: true, exclusion_list: {patterns: [{exact: a}]}}");
        assert_eq!(errs.0.len(), 1);
        let (_, errs) = decode("stats_matcher: {inclusion_list: {patterns: []}}");
        assert_eq!(
            errs.0[0].path,
            "stats_config.stats_matcher.inclusion_list.patterns"
        );
        let (o, errs) = decode("stats_matcher: {reject_all: false}");
        assert!(errs.0.is_empty() && o.matcher.is_none());
    }
}
