//! Counters a filter keeps under the route's cluster
//! (`cluster.<name>.<scope>.<outcome>`, as ext_authz's and the rate limit
//! filter's are), each made when first counted, as Envoy makes them: a
//! cluster's scope shows only the outcomes it has had.

use crate::server::shard::Shard;
use crate::stats::{sets, Scope};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// One filter's counters under every cluster.
#[derive(Debug)]
pub struct ClusterCounters {
    /// What follows `cluster.<name>.` (ending in a dot).
    scope: String,
    /// The outcomes counted, by index.
    outcomes: &'static [&'static str],
    /// Cluster names by position.
    names: Vec<String>,
    /// The counters by cluster position and outcome, made on first use.
    counters: Vec<Vec<OnceLock<Arc<Scope<sets::Single>>>>>,
}

impl ClusterCounters {
    /// Counters `cluster.<name>.<scope><outcome>` for the clusters
    /// (positions by name).
    pub fn new(
        scope: String,
        outcomes: &'static [&'static str],
        clusters: &HashMap<String, usize>,
    ) -> ClusterCounters {
        let mut names = vec![String::new(); clusters.len()];
        for (name, &i) in clusters {
            if let Some(slot) = names.get_mut(i) {
                *slot = name.clone();
            }
        }
        let counters = names
            .iter()
            .map(|_| outcomes.iter().map(|_| OnceLock::new()).collect())
            .collect();
        ClusterCounters {
            scope,
            outcomes,
            names,
            counters,
        }
    }

    /// Counts `outcome` (an index into the outcomes) under `cluster`.
    pub fn inc(&self, shard: &Shard, cluster: usize, outcome: usize) {
        let (Some(slots), Some(name)) = (self.counters.get(cluster), self.names.get(cluster))
        else {
            return;
        };
        let (Some(slot), Some(what)) = (slots.get(outcome), self.outcomes.get(outcome)) else {
            return;
        };
        let counter = slot.get_or_init(|| {
            let scope = &self.scope;
            shard.stats.counter(format!("cluster.{name}.{scope}{what}"))
        });
        counter.inc(shard.id, sets::Single);
    }
}
