//! Watching xDS files as Envoy does: a file source reloads when its file is
//! replaced by a rename (written beside it, then moved over it), and, with
//! `watched_directory`, when anything is moved into that directory (how a
//! Kubernetes ConfigMap swaps its `..data` link). Writes in place are not
//! taken: a half-written file is never read.

use super::Kind;
use crate::config::FileSource;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a watch stands for: moves of one name in a directory, or of any.
enum Wanted {
    File(OsString),
    Any,
}

type Wants = Arc<Mutex<HashMap<WatchDescriptor, Vec<(Wanted, Kind)>>>>;

/// The file watcher: a thread that sends the kind of each source whose file
/// was replaced; sources can be added while it runs.
pub struct Watcher {
    watches: Watches,
    wanted: Wants,
}

impl Watcher {
    /// Starts watching `sources`.
    pub fn spawn(
        sources: &[(Kind, FileSource)],
    ) -> Result<(Watcher, crossbeam_channel::Receiver<Kind>), String> {
        let mut inotify = Inotify::init().map_err(|e| format!("xds: cannot start inotify: {e}"))?;
        let mut watcher = Watcher {
            watches: inotify.watches(),
            wanted: Wants::default(),
        };
        for (kind, source) in sources {
            watcher.add(*kind, source)?;
        }
        let wanted = watcher.wanted.clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("ringway-xds-files".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(e) => {
                            log::error!("xds: watching files failed: {e}; updates stop");
                            return;
                        }
                    };
                    let mut hits = Vec::new();
                    let wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
                    for event in events {
                        for (what, kind) in wanted.get(&event.wd).into_iter().flatten() {
                            let hit = match what {
                                Wanted::Any => true,
                                Wanted::File(name) => event.name == Some(name.as_os_str()),
                            };
                            if hit {
                                hits.push(*kind);
                            }
                        }
                    }
                    drop(wanted);
                    if hits.into_iter().any(|kind| tx.send(kind).is_err()) {
                        return;
                    }
                }
            })
            .map_err(|e| format!("xds: cannot spawn the file watcher: {e}"))?;
        Ok((watcher, rx))
    }

    /// Stops watching the source of `kind` (the directory too, once
    /// nothing else is watched in it).
    pub fn remove(&mut self, kind: Kind) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        let mut emptied = Vec::new();
        for (wd, wants) in wanted.iter_mut() {
            wants.retain(|(_, k)| *k != kind);
            if wants.is_empty() {
                emptied.push(wd.clone());
            }
        }
        for wd in emptied {
            wanted.remove(&wd);
            if let Err(e) = self.watches.remove(wd) {
                log::debug!("xds: unwatching a directory: {e}");
            }
        }
    }

    /// Watches one more source.
    pub fn add(&mut self, kind: Kind, source: &FileSource) -> Result<(), String> {
        let (dir, what) = match &source.watched_directory {
            Some(dir) => (dir.as_path(), Wanted::Any),
            None => {
                let dir = source.path.parent().filter(|d| !d.as_os_str().is_empty());
                let name = source.path.file_name().unwrap_or_default().to_os_string();
                (dir.unwrap_or(Path::new(".")), Wanted::File(name))
            }
        };
        let wd = self
            .watches
            .add(dir, WatchMask::MOVED_TO)
            .map_err(|e| format!("xds: cannot watch {}: {e}", dir.display()))?;
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        wanted.entry(wd).or_default().push((what, kind));
        Ok(())
    }
}
