//! Decoding `routes[].match`: path specifiers, header and query-parameter
//! matchers, and Envoy's string matchers.

use super::node::{Errors, Fields, Node, Obj};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// A regex that must match the whole input (Envoy's `safe_regex`, RE2
/// syntax; the `regex` crate implements the same guarantees).
#[derive(Clone)]
pub struct FullRegex(regex::Regex);

impl FullRegex {
    /// Compiles `pattern` anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, String> {
        compiled(&format!("^(?:{})$", re2_ascii(pattern)))
            .map(FullRegex)
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }

    /// The compiled regex (for rewrites that substitute captures).
    pub fn regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl fmt::Debug for FullRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FullRegex({:?})", self.0.as_str())
    }
}

thread_local! {
    /// The regexes compiled by the decode running on this thread, by
    /// pattern: configurations repeat a pattern across virtual hosts and
    /// routes, and clones of a compiled regex share its program.
    static COMPILED: RefCell<HashMap<String, regex::Regex>> = RefCell::default();
}

/// `pattern` compiled, or a clone of the copy this decode already compiled.
fn compiled(pattern: &str) -> Result<regex::Regex, regex::Error> {
    if let Some(regex) = COMPILED.with_borrow(|c| c.get(pattern).cloned()) {
        return Ok(regex);
    }
    let regex = regex::Regex::new(pattern)?;
    COMPILED.with_borrow_mut(|c| c.insert(pattern.to_string(), regex.clone()));
    Ok(regex)
}

/// `pattern` with RE2's meaning of `\d`, `\s`, `\w` (and their negations)
/// and `\b`/`\B`: ASCII-only in RE2, which Envoy matches with, where the
/// `regex` crate's are Unicode (`\d` would match `٣`). Outside a bracket
/// class the word boundaries become ASCII ones; the classes become nested
/// classes, which the `regex` crate accepts inside brackets too.
fn re2_ascii(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains('\\') {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str("[0-9]"),
                Some('D') => out.push_str("[^0-9]"),
                Some('s') => out.push_str(r"[\t\n\f\r ]"),
                Some('S') => out.push_str(r"[^\t\n\f\r ]"),
                Some('w') => out.push_str("[0-9A-Za-z_]"),
                Some('W') => out.push_str("[^0-9A-Za-z_]"),
                Some('b') if !in_class => out.push_str(r"(?-u:\b)"),
                Some('B') if !in_class => out.push_str(r"(?-u:\B)"),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` first in the class (after any `^`) is a literal.
                let mut rest = chars.clone().peekable();
                if rest.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                    rest.next();
                }
                if rest.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Empties this thread's compiled-regex memo when dropped: held for the
/// length of one decode.
pub(super) struct RegexMemo;

impl Drop for RegexMemo {
    fn drop(&mut self) {
        COMPILED.with_borrow_mut(HashMap::clear);
    }
}

/// The path part of `match`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`.
    Prefix(String),
    /// `path` (exact).
    Exact(String),
    /// `path_separated_prefix`: the prefix, then the end or a `/`.
    SeparatedPrefix(String),
    /// `safe_regex` against the path without its query.
    Regex(FullRegex),
}

/// `routes[].match`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The path specifier.
    pub path: PathMatch,
    /// `case_sensitive` (default true; regexes are always case sensitive).
    pub case_sensitive: bool,
    /// `headers`: all must match.
    pub headers: Vec<HeaderMatcher>,
    /// `query_parameters`: all must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// `grpc`: only gRPC requests.
    pub grpc: bool,
}

/// How a string is compared (`type.matcher.v3.StringMatcher`).
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `suffix`.
    Suffix(String),
    /// `contains`.
    Contains(String),
    /// `safe_regex`.
    Regex(FullRegex),
}

/// A string matcher with its `ignore_case`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    /// The comparison.
    pub kind: StringMatch,
    /// `ignore_case` (not for regexes).
    pub ignore_case: bool,
}

impl StringMatcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let fold = |s: &str| -> String {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match &self.kind {
            StringMatch::Regex(r) => r.is_match(value),
            StringMatch::Exact(e) if !self.ignore_case => value == e,
            StringMatch::Prefix(p) if !self.ignore_case => value.starts_with(p.as_str()),
            StringMatch::Suffix(s) if !self.ignore_case => value.ends_with(s.as_str()),
            StringMatch::Contains(c) if !self.ignore_case => value.contains(c.as_str()),
            // Patterns were lower-cased when compiled with ignore_case.
            StringMatch::Exact(e) => fold(value) == *e,
            StringMatch::Prefix(p) => fold(value).starts_with(p.as_str()),
            StringMatch::Suffix(s) => fold(value).ends_with(s.as_str()),
            StringMatch::Contains(c) => fold(value).contains(c.as_str()),
        }
    }
}

/// What a header matcher checks.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    /// `present_match` (or no specifier: presence).
    Present(bool),
    /// `exact_match` (legacy; an empty value matches any).
    Exact(String),
    /// `prefix_match` (legacy).
    Prefix(String),
    /// `suffix_match` (legacy).
    Suffix(String),
    /// `contains_match` (legacy).
    Contains(String),
    /// `safe_regex_match` (legacy).
    Regex(FullRegex),
    /// `range_match`: `[start, end)` of the value as an integer.
    Range(i64, i64),
    /// `string_match`.
    String(StringMatcher),
}

/// `match.headers[]`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-cased header name (`:method`, `:authority`, `:path` included).
    pub name: String,
    /// The check.
    pub kind: HeaderMatch,
    /// `invert_match`.
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub missing_as_empty: bool,
}

impl HeaderMatcher {
    /// Envoy's `matchHeaders`: `value` is every value of the header joined
    /// with `,`, or None when absent.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = match value {
            Some(v) => v,
            None if self.missing_as_empty => "",
            None => {
                let present = matches!(self.kind, HeaderMatch::Present(p) if p);
                let absent = matches!(self.kind, HeaderMatch::Present(p) if !p);
                return if self.invert { present } else { absent };
            }
        };
        self.matches_value(value) != self.invert
    }

    /// Envoy's RBAC reading (`rbac_match_headers_individually`, on by
    /// default): each value of the header on its own, matching when any
    /// does, then `invert_match`; no value reads as an absent header.
    pub fn matches_each<V: AsRef<str>>(&self, values: impl Iterator<Item = V>) -> bool {
        let mut values = values.peekable();
        if values.peek().is_none() {
            return self.matches(None);
        }
        values.any(|v| self.matches_value(v.as_ref())) != self.invert
    }

    /// Whether a present value matches, before `invert_match`.
    fn matches_value(&self, value: &str) -> bool {
        match &self.kind {
            HeaderMatch::Present(p) => *p,
            HeaderMatch::Exact(e) => e.is_empty() || value == e,
            HeaderMatch::Prefix(p) => value.starts_with(p.as_str()),
            HeaderMatch::Suffix(s) => value.ends_with(s.as_str()),
            HeaderMatch::Contains(c) => value.contains(c.as_str()),
            HeaderMatch::Regex(r) => r.is_match(value),
            HeaderMatch::Range(start, end) => {
                value.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
            HeaderMatch::String(m) => m.matches(value),
        }
    }
}

/// `match.query_parameters[]`.
#[derive(Debug, Clone)]
pub struct QueryParameterMatcher {
    /// Parameter name.
    pub name: String,
    /// `string_match`, or None for `present_match` (or no specifier).
    pub value: Option<StringMatcher>,
}

#[rustfmt::skip]
static ROUTE_MATCH: Fields = Fields {
    known: &[
        "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
        "query_parameters", "grpc",
    ],
    unsupported: &[
        "connect_matcher", "path_match_policy", "runtime_fraction", "tls_context",
        "dynamic_metadata", "filter_state", "cookies",
    ],
};
#[rustfmt::skip]
static SAFE_REGEX: Fields = Fields {
    known: &["regex", "google_re2"],
    unsupported: &[],
};
#[rustfmt::skip]
static HEADER_MATCHER: Fields = Fields {
    known: &[
        "name", "exact_match", "safe_regex_match", "range_match", "present_match",
        "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match",
        "treat_missing_header_as_empty",
    ],
    unsupported: &[],
};
#[rustfmt::skip]
static RANGE: Fields = Fields {
    known: &["start", "end"],
    unsupported: &[],
};
#[rustfmt::skip]
static STRING_MATCHER: Fields = Fields {
    known: &["exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"],
    unsupported: &["custom"],
};
#[rustfmt::skip]
static QUERY_PARAMETER_MATCHER: Fields = Fields {
    known: &["name", "string_match", "present_match"],
    unsupported: &[],
};
#[rustfmt::skip]
static GRPC: Fields = Fields {
    known: &[],
    unsupported: &[],
};

fn text(obj: &Obj, errs: &mut Errors, name: &str) -> Option<String> {
    obj.get(name).and_then(|n| n.str(errs).map(str::to_string))
}

fn flag(obj: &Obj, errs: &mut Errors, name: &str) -> bool {
    obj.get(name).and_then(|n| n.bool(errs)).unwrap_or(false)
}

/// Decodes a `safe_regex` (`{regex: "..."}`) into a full-match regex.
pub fn safe_regex(node: &Node, errs: &mut Errors) -> Option<FullRegex> {
    regex_with(node, errs, FullRegex::new)
}

/// Decodes a `safe_regex` as a plain (search) regex, for rewrites.
pub fn search_regex(node: &Node, errs: &mut Errors) -> Option<regex::Regex> {
    regex_with(node, errs, |p| {
        compiled(&re2_ascii(p)).map_err(|e| format!("invalid regex {p:?}: {e}"))
    })
}

fn regex_with<R>(
    node: &Node,
    errs: &mut Errors,
    build: impl Fn(&str) -> Result<R, String>,
) -> Option<R> {
    let obj = node.object(errs, &SAFE_REGEX)?;
    let pattern = obj.require(errs, "regex")?;
    let text = pattern.str(errs)?;
    match build(text) {
        Ok(r) => Some(r),
        Err(e) => {
            errs.add(pattern.path(), e);
            None
        }
    }
}

/// Decodes a `StringMatcher`.
pub fn string_matcher(node: &Node, errs: &mut Errors) -> Option<StringMatcher> {
    let obj = node.object(errs, &STRING_MATCHER)?;
    let ignore_case = flag(&obj, errs, "ignore_case");
    let fold = |s: String| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s
        }
    };
    let mut kinds = Vec::new();
    for (name, make) in [
        ("exact", StringMatch::Exact as fn(String) -> StringMatch),
        ("prefix", StringMatch::Prefix),
        ("suffix", StringMatch::Suffix),
        ("contains", StringMatch::Contains),
    ] {
        if let Some(v) = text(&obj, errs, name) {
            kinds.push(make(fold(v)));
        }
    }
    if let Some(r) = obj.get("safe_regex") {
        kinds.push(StringMatch::Regex(safe_regex(&r, errs)?));
    }
    if kinds.len() != 1 {
        errs.add(
            node.path(),
            "expected exactly one of exact, prefix, suffix, contains, safe_regex",
        );
        return None;
    }
    Some(StringMatcher {
        kind: kinds.pop()?,
        ignore_case,
    })
}

/// Decodes one `HeaderMatcher`.
pub fn header_matcher(node: Node, errs: &mut Errors) -> Option<HeaderMatcher> {
    let obj = node.object(errs, &HEADER_MATCHER)?;
    let name = obj.require(errs, "name")?.str(errs)?.to_ascii_lowercase();
    let mut kinds = Vec::new();
    for (field, make) in [
        (
            "exact_match",
            HeaderMatch::Exact as fn(String) -> HeaderMatch,
        ),
        ("prefix_match", HeaderMatch::Prefix),
        ("suffix_match", HeaderMatch::Suffix),
        ("contains_match", HeaderMatch::Contains),
    ] {
        if let Some(v) = text(&obj, errs, field) {
            kinds.push(make(v));
        }
    }
    if let Some(r) = obj.get("safe_regex_match") {
        kinds.push(HeaderMatch::Regex(safe_regex(&r, errs)?));
    }
    if let Some(r) = obj.get("range_match") {
        let ro = r.object(errs, &RANGE)?;
        let bound = |errs: &mut Errors, field: &str| -> Option<i64> {
            let n = ro.require(errs, field)?;
            match n.value() {
                serde_json::Value::Number(v) => v.as_i64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .or_else(|| {
                errs.add(n.path(), "expected a 64-bit integer");
                None
            })
        };
        kinds.push(HeaderMatch::Range(
            bound(errs, "start")?,
            bound(errs, "end")?,
        ));
    }
    if let Some(p) = obj.get("present_match") {
        kinds.push(HeaderMatch::Present(p.bool(errs)?));
    }
    if let Some(s) = obj.get("string_match") {
        kinds.push(HeaderMatch::String(string_matcher(&s, errs)?));
    }
    let kind = match kinds.len() {
        0 => HeaderMatch::Present(true),
        1 => kinds.pop()?,
        _ => {
            errs.add(obj.path(), "expected at most one header match specifier");
            return None;
        }
    };
    Some(HeaderMatcher {
        name,
        kind,
        invert: flag(&obj, errs, "invert_match"),
        missing_as_empty: flag(&obj, errs, "treat_missing_header_as_empty"),
    })
}

pub(super) fn query_parameter_matcher(
    node: Node,
    errs: &mut Errors,
) -> Option<QueryParameterMatcher> {
    let obj = node.object(errs, &QUERY_PARAMETER_MATCHER)?;
    let name = obj.require(errs, "name")?.str(errs)?.to_string();
    let value = match (obj.get("string_match"), obj.get("present_match")) {
        (Some(_), Some(_)) => {
            errs.add(obj.path(), "string_match and present_match are exclusive");
            return None;
        }
        (Some(s), None) => Some(string_matcher(&s, errs)?),
        (None, Some(p)) => {
            if p.bool(errs) == Some(false) {
                errs.add(
                    p.path(),
                    "present_match: false is not supported (Envoy rejects it too)",
                );
            }
            None
        }
        (None, None) => None,
    };
    Some(QueryParameterMatcher { name, value })
}

/// Decodes `routes[].match`.
pub fn route_match(m: &Node, errs: &mut Errors, case_sensitive: bool) -> Option<RouteMatch> {
    let mo = m.object(errs, &ROUTE_MATCH)?;
    let mut paths = Vec::new();
    if let Some(p) = text(&mo, errs, "prefix") {
        paths.push(PathMatch::Prefix(p));
    }
    if let Some(p) = text(&mo, errs, "path") {
        paths.push(PathMatch::Exact(p));
    }
    if let Some(node) = mo.get("path_separated_prefix") {
        let p = node.str(errs)?;
        if !p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#']) {
            errs.add(
                node.path(),
                format!("{p:?}: expected a path starting with '/', not ending with '/', without '?' or '#'"),
            );
            return None;
        }
        paths.push(PathMatch::SeparatedPrefix(p.to_string()));
    }
    if let Some(r) = mo.get("safe_regex") {
        paths.push(PathMatch::Regex(safe_regex(&r, errs)?));
    }
    let path = match paths.len() {
        1 => paths.pop()?,
        0 => {
            errs.add(
                m.path(),
                "expected one of prefix, path, safe_regex, path_separated_prefix",
            );
            return None;
        }
        _ => {
            errs.add(
                m.path(),
                "prefix, path, safe_regex and path_separated_prefix are mutually exclusive",
            );
            return None;
        }
    };
    let list =
        |errs: &mut Errors, field: &str| mo.get(field).map(|l| l.list(errs)).unwrap_or_default();
    let headers = list(errs, "headers")
        .into_iter()
        .filter_map(|h| header_matcher(h, errs))
        .collect();
    let query_parameters = list(errs, "query_parameters")
        .into_iter()
        .filter_map(|q| query_parameter_matcher(q, errs))
        .collect();
    let grpc = match mo.get("grpc") {
        Some(g) => {
            g.object(errs, &GRPC)?;
            true
        }
        None => false,
    };
    Some(RouteMatch {
        path,
        case_sensitive,
        headers,
        query_parameters,
        grpc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_re2() {
        let digits = FullRegex::new(r"\d+").expect("regex");
        assert!(digits.is_match("0123456789") && !digits.is_match("٣٤"));
        let word = FullRegex::new(r"[\w-]+").expect("regex");
        assert!(word.is_match("a_Z-9") && !word.is_match("é"));
        let space = FullRegex::new(r"a\sb").expect("regex");
        assert!(space.is_match("a b") && !space.is_match("a\u{a0}b"));
        let not_digit = FullRegex::new(r"[^\d]\D").expect("regex");
        assert!(not_digit.is_match("٣x") && !not_digit.is_match("1x"));
        let bounded = FullRegex::new(r".*\bid\b.*").expect("regex");
        assert!(bounded.is_match("é id é") && bounded.is_match("éidé"));
        // Escaped backslashes and literal brackets stay what they were.
        assert!(FullRegex::new(r"\\d").expect("regex").is_match(r"\d"));
        assert!(FullRegex::new(r"[]\d]+").expect("regex").is_match("]7"));
        assert_eq!(re2_ascii(r"\bx\b[\b]"), r"(?-u:\b)x(?-u:\b)[\b]");
    }

    #[test]
    fn a_decode_compiles_each_pattern_once_and_keeps_none_after() {
        {
            let _memo = RegexMemo;
            let a = FullRegex::new(r"/a/\d+").expect("regex");
            let b = FullRegex::new(r"/a/\d+").expect("regex");
            assert!(a.is_match("/a/12") && b.is_match("/a/34") && !a.is_match("/a/x"));
            assert_eq!(COMPILED.with_borrow(HashMap::len), 1);
        }
        assert_eq!(COMPILED.with_borrow(HashMap::len), 0);
    }

    fn header(kind: HeaderMatch, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: "x".into(),
            kind,
            invert,
            missing_as_empty: false,
        }
    }

    #[test]
    fn header_matching_follows_envoy() {
        let regex = FullRegex::new(r"\d{3}").expect("regex");
        let m = header(HeaderMatch::Regex(regex.clone()), false);
        assert!(m.matches(Some("123")) && !m.matches(Some("1234")));
        // Envoy's documented example: inverted, 1234 matches.
        let inv = header(HeaderMatch::Regex(regex), true);
        assert!(inv.matches(Some("1234")) && !inv.matches(Some("123")));
        // A missing header fails every matcher but present_match: false,
        // inverted or not (except inverted presence).
        assert!(!inv.matches(None));
        assert!(header(HeaderMatch::Present(false), false).matches(None));
        assert!(header(HeaderMatch::Present(true), true).matches(None));
        assert!(!header(HeaderMatch::Present(true), false).matches(None));
        let range = header(HeaderMatch::Range(-10, 10), false);
        assert!(
            range.matches(Some("-10")) && !range.matches(Some("10")) && !range.matches(Some("x"))
        );
        assert!(header(HeaderMatch::Exact(String::new()), false).matches(Some("anything")));
        let ci = StringMatcher {
            kind: StringMatch::Prefix("abc".into()),
            ignore_case: true,
        };
        assert!(ci.matches("ABCdef") && !ci.matches("xabc"));
    }
}
