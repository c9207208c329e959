//! Applying `*_headers_to_add` / `*_headers_to_remove` of a route, its
//! virtual host and its route configuration to one message, in Envoy's
//! order: level by level from the most specific, each removing before
//! adding, so the enclosing level has the last word.

use crate::access_log::Record;
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
    /// Whether an original line named `name` stays.
    pub fn keeps(&self, name: &str) -> bool {
        !self.dropped.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// Works out the edits for a message whose original header names are
/// told by `present`; values are rendered against `record`.
pub fn plan(
    levels: &[&HeaderMutations; 3],
    present: &dyn Fn(&str) -> bool,
    record: &Record,
) -> Edits {
    let mut edits = Edits::default();
    if levels.iter().all(|l| l.is_empty()) {
        return edits;
    }
    let mut value = String::new();
    for level in levels {
        for name in &level.remove {
            edits.added.retain(|(n, _)| n != name);
            edits.dropped.push(name.clone());
        }
        for add in &level.add {
            value.clear();
            add.value.render_value(record, &mut value);
            if value.is_empty() && !add.keep_empty {
                continue;
            }
            let original = present(&add.name) && edits.keeps(&add.name);
            let exists = original || edits.added.iter().any(|(n, _)| *n == add.name);
            let replace = match add.action {
                AppendAction::AppendIfExistsOrAdd => false,
                AppendAction::AddIfAbsent if exists => continue,
                AppendAction::AddIfAbsent => false,
                AppendAction::OverwriteIfExistsOrAdd => true,
                AppendAction::OverwriteIfExists if !exists => continue,
                AppendAction::OverwriteIfExists => true,
            };
            if replace {
                edits.added.retain(|(n, _)| *n != add.name);
                if original {
                    edits.dropped.push(add.name.clone());
                }
            }
            edits
                .added
                .push((add.name.clone(), value.as_bytes().to_vec()));
        }
    }
    edits
}
