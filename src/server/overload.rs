//! The overload manager's fixed-heap monitor and the actions it triggers,
//! read on the main thread every `refresh_interval`. Shards see the
//! outcome through the store's [`OverloadState`] flags.

use crate::config::{Overload, OverloadAction};
use crate::stats::{Kind, OverloadState, Store, Visit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The heap monitor and its actions.
pub struct OverloadManager {
    max_heap: u64,
    actions: Vec<(OverloadAction, f64)>,
    stats: Arc<OverloadStats>,
}

/// `overload.*` stats, Envoy's names.
struct OverloadStats {
    /// The heap's pressure, in percent of `max_heap_size_bytes`.
    pressure: AtomicU64,
    failed_updates: AtomicU64,
    /// Each configured action and whether it is active.
    actions: Vec<(OverloadAction, AtomicU64)>,
    state: Arc<OverloadState>,
}

impl Visit for OverloadStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        let monitor = format!("overload.{}", crate::config::FIXED_HEAP);
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        f(
            &format!("{monitor}.pressure"),
            Kind::Gauge,
            read(&self.pressure),
        );
        f(
            &format!("{monitor}.failed_updates"),
            Kind::Counter,
            read(&self.failed_updates),
        );
        f(&format!("{monitor}.skipped_updates"), Kind::Counter, 0);
        for (action, active) in &self.actions {
            let prefix = format!("overload.{}", action.name());
            let active = read(active);
            f(&format!("{prefix}.active"), Kind::Gauge, active);
            f(
                &format!("{prefix}.scale_percent"),
                Kind::Gauge,
                active * 100,
            );
            if *action == OverloadAction::ShrinkHeap {
                let shrunk = read(&self.state.shrink_count);
                f(&format!("{prefix}.shrink_count"), Kind::Counter, shrunk);
            }
        }
    }
}

impl OverloadManager {
    /// The manager `config` asks for, registered in `store`; None without
    /// a fixed-heap monitor (nothing to read).
    pub fn new(config: &Overload, store: &Store) -> Option<OverloadManager> {
        let max_heap = config.max_heap?;
        let mut actions: Vec<(OverloadAction, AtomicU64)> = Vec::new();
        for (action, _) in &config.actions {
            if !actions.iter().any(|(a, _)| a == action) {
                actions.push((*action, AtomicU64::new(0)));
            }
        }
        let stats = Arc::new(OverloadStats {
            pressure: AtomicU64::new(0),
            failed_updates: AtomicU64::new(0),
            actions,
            state: store.overload.clone(),
        });
        store.register("overload.", stats.clone());
        let manager = OverloadManager {
            max_heap,
            actions: config.actions.clone(),
            stats,
        };
        manager.refresh();
        Some(manager)
    }

    /// Reads the heap (the process's resident memory: mimalloc keeps no
    /// cheap count of allocated bytes) and sets each action's state: an
    /// action is active while any of its triggers' thresholds is reached.
    pub fn refresh(&self) {
        let used = crate::stats::resident_bytes();
        if used == 0 {
            self.stats.failed_updates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let pressure = used as f64 / self.max_heap as f64;
        self.stats
            .pressure
            .store((pressure * 100.0) as u64, Ordering::Relaxed);
        for (action, active) in &self.stats.actions {
            let on = self
                .actions
                .iter()
                .any(|(a, threshold)| a == action && pressure >= *threshold);
            active.store(u64::from(on), Ordering::Relaxed);
            let flag = match action {
                OverloadAction::StopAcceptingRequests => &self.stats.state.stop_requests,
                OverloadAction::ShrinkHeap => &self.stats.state.shrink_heap,
            };
            flag.store(on, Ordering::Relaxed);
        }
    }
}
