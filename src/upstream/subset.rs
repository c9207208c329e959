//! Envoy's subset load balancer: a cluster with `lb_subset_config` is
//! split, per selector, into subsets of the hosts whose `envoy.lb`
//! metadata has the same values for the selector's keys; each subset is
//! balanced as a cluster of its own (priorities, health, panic). A route's
//! `metadata_match` picks the subset; a request that matches none takes
//! the selector's or the cluster's fallback. Built per snapshot on the
//! main thread; shards only look subsets up.

use super::health::HostFlags;
use super::priority::{Inputs, Plan};
use super::Endpoint;
use crate::config::{LbMetadata, SubsetConfig, SubsetFallback};
use std::collections::HashMap;

/// Where a request's picks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The subset (or default subset) plan at this index.
    Subset(usize),
    /// Any host of the cluster.
    Any,
    /// No host (`NO_FALLBACK`).
    Nothing,
}

/// How a request reached its hosts, for `lb_subsets_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Its subset (`lb_subsets_selected`).
    Selected,
    /// The cluster's fallback (`lb_subsets_fallback`, once a host is
    /// picked).
    ClusterFallback,
    /// A selector's fallback (not counted, as in Envoy).
    SelectorFallback,
}

/// A cluster's subsets.
#[derive(Debug)]
pub struct Subsets {
    /// Each selector's keys and own fallback, if it has one.
    selectors: Vec<(Vec<String>, Option<SubsetFallback>)>,
    /// (selector, values in key order) → index into `plans`.
    by_values: HashMap<(usize, Vec<String>), usize>,
    /// The subsets' plans (the default subset's last, when it has one).
    pub plans: Vec<Plan>,
    /// Where a request goes that matches no subset (the cluster's policy).
    fallback: SubsetFallback,
    /// The default subset's plan (`DEFAULT_SUBSET` with a non-empty
    /// `default_subset`).
    default: Option<usize>,
}

impl Subsets {
    /// Splits `inputs`' endpoints by `config`'s selectors; every plan's
    /// host sets are numbered from `first_set` on.
    pub fn new(config: &SubsetConfig, inputs: &Inputs, mut first_set: usize) -> Subsets {
        let mut plans = Vec::new();
        let mut by_values = HashMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (s, selector) in config.selectors.iter().enumerate() {
            // A repeated selector names the subsets of its first instance.
            if config.selectors[..s]
                .iter()
                .any(|e| e.keys == selector.keys)
            {
                continue;
            }
            for (i, e) in inputs.endpoints.iter().enumerate() {
                let Some(values) = values_of(&e.lb_metadata, &selector.keys) else {
                    continue;
                };
                let at = *by_values.entry((s, values)).or_insert_with(|| {
                    members.push(Vec::new());
                    members.len() - 1
                });
                members[at].push(i);
            }
        }
        let uses_default = config.fallback == SubsetFallback::Default
            || config
                .selectors
                .iter()
                .any(|s| s.fallback == Some(SubsetFallback::Default));
        // An empty default subset is every host, as in Envoy.
        let default = (uses_default && !config.default_subset.is_empty()).then(|| {
            let matching = inputs.endpoints.iter().enumerate();
            members.push(
                matching
                    .filter(|(_, e)| contains(&e.lb_metadata, &config.default_subset))
                    .map(|(i, _)| i)
                    .collect(),
            );
            members.len() - 1
        });
        for hosts in &members {
            let endpoints: Vec<Endpoint> =
                hosts.iter().map(|i| inputs.endpoints[*i].clone()).collect();
            let flags: Vec<HostFlags> = hosts.iter().map(|i| inputs.flags[*i]).collect();
            let plan = Plan::new(
                &Inputs {
                    endpoints: &endpoints,
                    flags: &flags,
                    ..*inputs
                },
                first_set,
            );
            first_set += plan.sets.len();
            plans.push(plan);
        }
        // Envoy keeps selectors in a tree of their sorted keys and records
        // a selector's fallback only where it adds the last node: a
        // selector whose keys begin an earlier one's keeps the cluster's.
        let selectors = config.selectors.iter().enumerate().map(|(i, s)| {
            let earlier = &config.selectors[..i];
            let shadowed = earlier.iter().any(|e| e.keys.starts_with(&s.keys));
            (s.keys.clone(), s.fallback.filter(|_| !shadowed))
        });
        Subsets {
            selectors: selectors.collect(),
            by_values,
            plans,
            fallback: config.fallback,
            default,
        }
    }

    /// How many subsets there are (`lb_subsets_active`).
    pub fn active(&self) -> usize {
        self.by_values.len()
    }

    /// Where a request with `criteria` (a route's `metadata_match`) goes,
    /// and how.
    pub fn route(&self, criteria: Option<&LbMetadata>) -> (Route, Reached) {
        let fallback = |policy: SubsetFallback| match (policy, self.default) {
            (SubsetFallback::None, _) => Route::Nothing,
            (SubsetFallback::Default, Some(plan)) => Route::Subset(plan),
            (SubsetFallback::Any | SubsetFallback::Default, _) => Route::Any,
        };
        let cluster_fallback = (fallback(self.fallback), Reached::ClusterFallback);
        let Some(criteria) = criteria.filter(|c| !c.is_empty()) else {
            return cluster_fallback;
        };
        let keys = criteria.iter().map(|(k, _)| k);
        let Some(s) = self
            .selectors
            .iter()
            .position(|(k, _)| k.iter().eq(keys.clone()))
        else {
            return cluster_fallback;
        };
        let values: Vec<String> = criteria.iter().map(|(_, v)| v.clone()).collect();
        match (self.by_values.get(&(s, values)), self.selectors[s].1) {
            (Some(plan), _) => (Route::Subset(*plan), Reached::Selected),
            (None, Some(own)) => (fallback(own), Reached::SelectorFallback),
            (None, None) => cluster_fallback,
        }
    }
}

/// The values `metadata` has for every one of `keys` (sorted), or None
/// when it lacks one.
fn values_of(metadata: &LbMetadata, keys: &[String]) -> Option<Vec<String>> {
    keys.iter()
        .map(|k| {
            metadata
                .iter()
                .find(|(mk, _)| mk == k)
                .map(|(_, v)| v.clone())
        })
        .collect()
}

/// Whether `metadata` has every key and value of `wanted`.
fn contains(metadata: &LbMetadata, wanted: &LbMetadata) -> bool {
    wanted.iter().all(|pair| metadata.contains(pair))
}
