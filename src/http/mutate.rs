//! Applying `*_headers_to_add` / `*_headers_to_remove` of a route, its
//! virtual host and its route configuration to one message, in Envoy's
//! order: level by level from the most specific, each removing before
//! adding, so the enclosing level has the last word.

use crate::access_log::{Record, Template};
use crate::config::{AppendAction, HeaderMutations};

/// What a message's headers become: original lines to drop, lines to add.
#[derive(Debug, Default)]
pub struct Edits {
    /// Lower-case names whose original lines are dropped.
    pub dropped: Vec<String>,
    /// Lines added after the kept originals, in order.
    pub added: Vec<(String, Vec<u8>)>,
}

impl Edits {
    /// These edits followed by `later`'s, which win: lines added here
    /// that `later` drops are dropped.
    pub fn then(mut self, later: Edits) -> Edits {
        if self.added.is_empty() && self.dropped.is_empty() {
            return later;
        }
        self.added.retain(|(name, _)| later.keeps(name));
        self.added.extend(later.added);
        self.dropped.extend(later.dropped);
        self
    }

    /// Whether an original line named `name` stays.
    pub fn keeps(&self, name: &str) -> bool {
        !self.dropped.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// Removes every line named `name` (lower-case), original or added.
    pub fn remove(&mut self, name: &str) {
        self.added.retain(|(n, _)| n != name);
        self.dropped.push(name.to_string());
    }

    /// Adds a line as `action` says; `original` tells whether the message
    /// had a line named `name` (lower-case) before any edit.
    pub fn append(&mut self, name: &str, value: Vec<u8>, action: AppendAction, original: bool) {
        let original = original && self.keeps(name);
        let exists = original || self.added.iter().any(|(n, _)| n == name);
        let replace = match action {
            AppendAction::AppendIfExistsOrAdd => false,
            AppendAction::AddIfAbsent if exists => return,
            AppendAction::AddIfAbsent => false,
            AppendAction::OverwriteIfExistsOrAdd => true,
            AppendAction::OverwriteIfExists if !exists => return,
            AppendAction::OverwriteIfExists => true,
        };
        if replace {
            self.added.retain(|(n, _)| n != name);
            if original {
                self.dropped.push(name.to_string());
            }
        }
        self.added.push((name.to_string(), value));
    }
}

/// Works out the edits for a message whose original header names are
/// told by `present`; values are rendered against `record`.
pub fn plan(
    levels: &[&HeaderMutations; 3],
    present: &dyn Fn(&str) -> bool,
    record: &Record,
) -> Edits {
    plan_with(levels, present, |t, out| t.render_value(record, out))
}

/// Works out the edits of one level whose values are all literal (no
/// record to render against).
pub fn plan_literal(mutations: &HeaderMutations, present: &dyn Fn(&str) -> bool) -> Edits {
    let none = HeaderMutations::default();
    plan_with(&[mutations, &none, &none], present, |t, out| {
        out.push_str(&t.literal().unwrap_or_default())
    })
}

fn plan_with(
    levels: &[&HeaderMutations; 3],
    present: &dyn Fn(&str) -> bool,
    render: impl Fn(&Template, &mut String),
) -> Edits {
    let mut edits = Edits::default();
    if levels.iter().all(|l| l.is_empty()) {
        return edits;
    }
    let mut value = String::new();
    for level in levels {
        for name in &level.remove {
            edits.remove(name);
        }
        for add in &level.add {
            value.clear();
            render(&add.value, &mut value);
            if value.is_empty() && !add.keep_empty {
                continue;
            }
            let original = present(&add.name);
            edits.append(&add.name, value.as_bytes().to_vec(), add.action, original);
        }
    }
    edits
}
