//! Listener warming, as Envoy's listener manager does it: a listener whose
//! route configuration comes from the control plane does not serve until
//! that configuration's first update has come (or its
//! `initial_fetch_timeout` is over). Meanwhile the version it replaces, if
//! any, keeps serving.

use super::subscription::Entry;
use super::{Kind, Xds};
use crate::config;
use crate::stats::sets::ListenerManager as ListenerStat;
use crate::stats::Store;
use std::collections::BTreeMap;

/// A listener whose latest version is warming, and the version that
/// serves meanwhile (None: it serves nothing yet).
#[derive(Clone)]
pub(super) struct Warming {
    pub serving: Option<(config::Listener, Entry)>,
}

impl Xds {
    /// Whether `listener` waits for a route configuration from the control
    /// plane, the `arriving` updates counted as come.
    fn waits_for_routes(&self, listener: &config::Listener, arriving: &[Kind]) -> bool {
        listener.rds_sources().any(|(_, rds)| {
            self.rds.values().any(|r| {
                r.name == rds.name
                    && r.sub.awaited_until().is_some()
                    && !arriving.contains(&r.sub.kind)
            })
        })
    }

    /// The dynamic listeners that serve when `latest` are the accepted
    /// ones and `arriving` updates have come, and which of `latest` warm.
    pub(super) fn in_effect(
        &self,
        latest: &[config::Listener],
        arriving: &[Kind],
    ) -> (Vec<config::Listener>, BTreeMap<String, Warming>) {
        let mut serving = Vec::with_capacity(latest.len());
        let mut warming = BTreeMap::new();
        for listener in latest {
            if !self.waits_for_routes(listener, arriving) {
                serving.push(listener.clone());
                continue;
            }
            let before = match self.warming.get(&listener.name) {
                Some(w) => w.serving.clone(),
                None => self.active(&listener.name),
            };
            if let Some((l, _)) = &before {
                serving.push(l.clone());
            }
            warming.insert(listener.name.clone(), Warming { serving: before });
        }
        (serving, warming)
    }

    /// The accepted version of `name` that serves now (with its dump
    /// entry), unless it is warming.
    fn active(&self, name: &str) -> Option<(config::Listener, Entry)> {
        if self.warming.contains_key(name) {
            return None;
        }
        let lds = self.lds.as_ref()?;
        let i = lds.resources.iter().position(|l| l.name == name)?;
        Some((lds.resources[i].clone(), lds.entries[i].clone()))
    }

    /// The listeners that warmed and do not in `next`: they serve now.
    pub(super) fn warmed_now<'a>(&'a self, next: &BTreeMap<String, Warming>) -> Vec<&'a str> {
        let names = self.warming.keys().filter(|n| !next.contains_key(*n));
        names.map(String::as_str).collect()
    }

    /// Counts the listeners that begin to warm in `next` as Envoy counts
    /// them then: `listener_added`, or `listener_modified` when another
    /// version serves meanwhile.
    pub(super) fn count_warming_starts(&self, next: &BTreeMap<String, Warming>, store: &Store) {
        for (name, w) in next {
            if self.warming.contains_key(name) {
                continue;
            }
            let stat = match w.serving {
                Some(_) => ListenerStat::listener_modified,
                None => ListenerStat::listener_added,
            };
            store.listener_manager.inc(store.main_row(), stat);
        }
    }

    /// Takes `warming` as the listeners that warm now.
    pub(super) fn set_warming(&mut self, warming: BTreeMap<String, Warming>, store: &Store) {
        self.warming = warming;
        store.listener_manager.set(
            store.main_row(),
            ListenerStat::total_listeners_warming,
            self.warming.len() as u64,
        );
    }

    /// Whether a listener that warms no longer waits (its routes came or
    /// their wait timed out).
    pub(super) fn warmed(&self) -> bool {
        let Some(lds) = &self.lds else {
            return false;
        };
        let waiting = |name: &String| {
            let latest = lds.resources.iter().find(|l| &l.name == name);
            latest.is_some_and(|l| self.waits_for_routes(l, &[]))
        };
        !self.warming.keys().all(waiting)
    }
}
