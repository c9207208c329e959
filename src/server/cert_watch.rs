//! Certificate rotation without a restart: every file a TLS context reads
//! — SDS secret files and, beyond Envoy, every certificate, key, CA and
//! CRL file, named inline or by a secret — is checked once a second on
//! the main thread; a change that has held still for one more
//! check (so a file half-written, or a certificate swapped before its key,
//! is not taken) recompiles the contexts and publishes them. Established
//! connections keep their sessions; new handshakes use the new files.
//! Symlink swaps, as Kubernetes does them, change what the path resolves
//! to and are seen the same way.

use crate::snapshot::{ConfigSnapshot, Published};
use crate::stats::Store;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// How often the files are looked at.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it: the resolved
/// inode, size and modification time (None: it cannot be read now).
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &PathBuf) -> Stamp {
    // Follows symlinks: a swapped link changes the inode seen here.
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The files' last stamps, and whether a change waits to settle.
#[derive(Default)]
pub struct CertWatch {
    stamps: HashMap<PathBuf, Stamp>,
    settling: bool,
}

impl CertWatch {
    /// Starts from the files of the published snapshot as they are now.
    pub fn new(published: &Published) -> Self {
        let mut watch = CertWatch::default();
        watch.follow(&published.load());
        watch
    }

    /// Watches the files `snapshot` reads: a secret's update may name
    /// other files. Files already watched keep their stamps.
    fn follow(&mut self, snapshot: &ConfigSnapshot) {
        let mut stamps = HashMap::new();
        for path in snapshot.tls_files() {
            let s = self.stamps.remove(&path).unwrap_or_else(|| stamp(&path));
            stamps.insert(path, s);
        }
        self.stamps = stamps;
    }

    /// Whether there is anything to watch.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// Looks at the files; publishes recompiled contexts once a change has
    /// settled (true when it did).
    pub fn check(&mut self, published: &Published, store: &Store) -> bool {
        let mut changed = false;
        for (path, last) in self.stamps.iter_mut() {
            let now = stamp(path);
            if now != *last {
                *last = now;
                changed = true;
            }
        }
        if changed {
            // Seen changing: wait for one quiet check before reading.
            self.settling = true;
            return false;
        }
        if !self.settling {
            return false;
        }
        self.settling = false;
        let (next, errors) = published.load().with_tls_reloaded(store);
        for e in errors {
            log::warn!("TLS files changed but were not taken (the old ones stay): {e}");
        }
        log::info!("TLS files changed: contexts compiled again");
        store.set_first_cert_expiry(crate::admin::first_cert_expiry(&next));
        self.follow(&next);
        published.publish(next);
        true
    }
}
