//! A per-virtual-host index from path literals to routes, so a request is
//! checked only against the routes whose literal path start it has,
//! instead of every route in order.
//!
//! Each route contributes the literal its path must begin with (a prefix,
//! an exact path, a separated prefix, or the literal head of a regex) to a
//! byte trie; case-insensitive routes go to a second trie walked with the
//! path lower-cased. Walking the request path collects the route lists on
//! the way; merging them in route order and taking the first route whose
//! full match holds gives exactly Envoy's first-match answer.

use crate::config::PathMatch;

/// Route lists gathered per lookup before falling back to a full scan.
const MAX_LISTS: usize = 48;

#[derive(Debug, Default)]
struct Node {
    children: Vec<(u8, u32)>,
    routes: Vec<u32>,
}

#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    fn new() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }

    fn insert(&mut self, key: &[u8], route: u32) {
        let mut at = 0usize;
        for &b in key {
            let next = match self.nodes[at].children.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => n as usize,
                None => {
                    self.nodes.push(Node::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at].children.push((b, n as u32));
                    n
                }
            };
            at = next;
        }
        self.nodes[at].routes.push(route);
    }

    /// Pushes the route lists on `path`'s walk; false when there were more
    /// than `lists` can hold.
    fn walk<'a>(&'a self, path: &[u8], fold: bool, lists: &mut Lists<'a>) -> bool {
        let mut at = 0usize;
        let mut i = 0;
        loop {
            let node = &self.nodes[at];
            if !node.routes.is_empty() && !lists.push(&node.routes) {
                return false;
            }
            let Some(&b) = path.get(i) else {
                return true;
            };
            let b = if fold { b.to_ascii_lowercase() } else { b };
            match node.children.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => at = n as usize,
                None => return true,
            }
            i += 1;
        }
    }
}

/// A fixed set of sorted route lists, merged in route order.
struct Lists<'a> {
    lists: [&'a [u32]; MAX_LISTS],
    len: usize,
}

impl<'a> Lists<'a> {
    fn push(&mut self, list: &'a [u32]) -> bool {
        if self.len == MAX_LISTS {
            return false;
        }
        self.lists[self.len] = list;
        self.len += 1;
        true
    }

    /// Takes the smallest route index left, or None.
    fn pop_min(&mut self) -> Option<u32> {
        let (slot, value) = self.lists[..self.len]
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.first().map(|v| (i, *v)))
            .min_by_key(|(_, v)| *v)?;
        self.lists[slot] = &self.lists[slot][1..];
        Some(value)
    }
}

/// The literal a regex's matches must start with: its leading run of plain
/// characters, minus a last one a quantifier makes optional. Empty (no
/// constraint) when the pattern has an alternation anywhere.
fn regex_literal(pattern: &str) -> String {
    if pattern.contains('|') {
        return String::new();
    }
    let mut literal = String::new();
    for c in pattern.chars() {
        match c {
            '?' | '*' | '{' => {
                literal.pop();
                break;
            }
            '.' | '+' | '(' | ')' | '[' | ']' | '}' | '^' | '$' | '\\' => break,
            c => literal.push(c),
        }
    }
    literal
}

/// The index of one virtual host's routes.
#[derive(Debug)]
pub struct PathIndex {
    sensitive: Trie,
    insensitive: Trie,
}

impl PathIndex {
    /// Indexes routes by their path matchers, in route order.
    pub fn build<'m>(matchers: impl Iterator<Item = (&'m PathMatch, bool)>) -> Self {
        let mut index = PathIndex {
            sensitive: Trie::new(),
            insensitive: Trie::new(),
        };
        for (i, (path, case_sensitive)) in matchers.enumerate() {
            let (literal, sensitive) = match path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) | PathMatch::SeparatedPrefix(p) => {
                    (p.clone(), case_sensitive)
                }
                PathMatch::Regex(r) => {
                    let pattern = r.regex().as_str();
                    let inner = pattern
                        .strip_prefix("^(?:")
                        .and_then(|p| p.strip_suffix(")$"))
                        .unwrap_or("");
                    (regex_literal(inner), true)
                }
            };
            let trie = if sensitive {
                &mut index.sensitive
            } else {
                &mut index.insensitive
            };
            trie.insert(literal.as_bytes(), i as u32);
        }
        index
    }

    /// Calls `check` on candidate routes in route order until it returns
    /// true; returns that route's index. `all` is the number of routes,
    /// scanned in order if a path gathers too many lists.
    pub fn first(
        &self,
        path: &str,
        all: usize,
        mut check: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut lists = Lists {
            lists: [&[]; MAX_LISTS],
            len: 0,
        };
        let bytes = path.as_bytes();
        if !self.sensitive.walk(bytes, false, &mut lists)
            || !self.insensitive.walk(bytes, true, &mut lists)
        {
            return (0..all).find(|&i| check(i));
        }
        while let Some(i) = lists.pop_min() {
            if check(i as usize) {
                return Some(i as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_literals_are_safe() {
        assert_eq!(regex_literal(r"/user/\d+"), "/user/");
        assert_eq!(regex_literal("/ab?c"), "/a");
        assert_eq!(regex_literal("/a|/b"), "");
        assert_eq!(regex_literal("(?i)/x"), "");
        assert_eq!(regex_literal("/v1.0/x"), "/v1");
    }

    #[test]
    fn candidates_come_in_route_order() {
        let paths = [
            PathMatch::Prefix("/api/".into()),
            PathMatch::Prefix("/".into()),
            PathMatch::Prefix("/api/v1".into()),
            PathMatch::Exact("/other".into()),
        ];
        let index = PathIndex::build(paths.iter().map(|p| (p, true)));
        let mut seen = Vec::new();
        index.first("/api/v1/x", 4, |i| {
            seen.push(i);
            false
        });
        assert_eq!(seen, [0, 1, 2]);
    }
}
