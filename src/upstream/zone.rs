//! Envoy's zone-aware routing. With `cluster_manager.local_cluster_name`,
//! a pick from priority 0 prefers the hosts in this proxy's own locality
//! as far as the upstream hosts there can carry this proxy's fleet's
//! share (the local cluster's hosts per locality), and sends the rest to
//! the localities with capacity to spare. The main thread computes the
//! routing with each snapshot, as Envoy's
//! `regenerateLocalityRoutingStructures`; shards only draw.

use super::health::HostFlags;
use super::Cluster;
use crate::config::{Locality, ZoneAware};
use crate::stats::Store;
use std::sync::Arc;

/// Which cluster is this proxy's fleet, and where this proxy is.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCluster {
    /// `cluster_manager.local_cluster_name`.
    pub name: String,
    /// `node.locality`.
    pub locality: Option<Locality>,
}

impl LocalCluster {
    /// Gives every other cluster the local cluster's hosts as they are in
    /// `clusters` now, rebuilding those that saw them otherwise.
    pub fn route(&self, clusters: &mut [Arc<Cluster>], store: &Store) {
        let Some(local) = clusters.iter().find(|c| c.name() == self.name) else {
            return;
        };
        let hosts = Arc::new(local.as_local(self.locality.clone()));
        for c in clusters.iter_mut() {
            if c.name() != self.name && c.local.as_ref() != Some(&hosts) {
                *c = Arc::new(c.with_local(store, hosts.clone()));
            }
        }
    }
}

/// The local cluster as zone routing reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalHosts {
    /// This proxy's locality (`node.locality`).
    pub locality: Option<Locality>,
    /// The locality and health of each of the local cluster's priority-0
    /// hosts.
    pub hosts: Vec<(Locality, HostFlags)>,
}

/// What computing the routing found (`cluster.<name>.lb_*`, counted once
/// per computation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Picks are zone routed.
    Routing,
    /// Fewer than two localities upstream or in the local cluster.
    TooFewLocalities,
    /// The local cluster has no host in this proxy's locality
    /// (`lb_local_cluster_not_ok`).
    LocalClusterNotOk,
    /// Fewer healthy hosts at priority 0 than `min_cluster_size`
    /// (`lb_zone_cluster_too_small`).
    TooSmall,
}

/// How one pick was routed (`cluster.<name>.lb_*`, counted per pick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// To the local locality, which can take all (`lb_zone_routing_all_directly`).
    AllDirectly,
    /// To the local locality by its share (`lb_zone_routing_sampled`).
    Sampled,
    /// To another locality (`lb_zone_routing_cross_zone`).
    CrossZone,
    /// To a random locality: none had capacity to spare
    /// (`lb_zone_routing_cross_zone` and `lb_zone_no_capacity_left`).
    NoCapacityLeft,
    /// Not zone routed: the local cluster is in panic
    /// (`lb_local_cluster_not_ok`).
    LocalClusterNotOk,
}

/// Where one pick goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// The hosts of [`Routing::localities`]' entry at this index.
    Locality(usize, Pick),
    /// The level's hosts, whatever their locality.
    Whole(Option<Pick>),
    /// No host (`fail_traffic_on_panic` with the local cluster in panic).
    Nothing(Pick),
}

/// How picks at priority 0 share out among its localities.
#[derive(Debug, Clone, PartialEq)]
enum Share {
    /// All to the local locality.
    Direct,
    /// `local` of every 10,000 to the local locality, the rest by the
    /// cumulative spare capacities of the localities.
    Residual { local: u64, spare: Vec<u64> },
}

/// Zone routing of a cluster's priority-0 hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The level's localities in Envoy's order: this proxy's first when
    /// hosts are there, then by region, zone and sub-zone.
    pub localities: Vec<Locality>,
    share: Share,
    /// `routing_enabled`, percent.
    enabled: u32,
    /// The local cluster is in panic: no pick is zone routed.
    local_panic: bool,
    fail_traffic_on_panic: bool,
}

impl Routing {
    /// The routing for priority-0 hosts `upstream` (locality, health), or
    /// why there is none. `panic_threshold` is the upstream cluster's,
    /// which Envoy also judges the local cluster by.
    pub fn new(
        upstream: &[(&Locality, HostFlags)],
        local: &LocalHosts,
        config: &ZoneAware,
        panic_threshold: f64,
    ) -> (Option<Routing>, Outcome) {
        let mut localities: Vec<Locality> = Vec::new();
        for (l, _) in upstream {
            if !localities.contains(l) {
                localities.push((*l).clone());
            }
        }
        localities.sort_by(|a, b| {
            (&a.region, &a.zone, &a.sub_zone).cmp(&(&b.region, &b.zone, &b.sub_zone))
        });
        let home = local.locality.as_ref();
        let has_local = match home.and_then(|h| localities.iter().position(|l| l == h)) {
            Some(at) => {
                let mine = localities.remove(at);
                localities.insert(0, mine);
                true
            }
            None => false,
        };
        let local_hosts: Vec<(&Locality, HostFlags)> =
            local.hosts.iter().map(|(l, f)| (l, *f)).collect();
        let mut local_localities: Vec<&Locality> = Vec::new();
        for (l, _) in &local_hosts {
            if !local_localities.contains(l) {
                local_localities.push(l);
            }
        }
        if localities.len() < 2 || local_localities.len() < 2 {
            return (None, Outcome::TooFewLocalities);
        }
        if !home.is_some_and(|h| local_localities.contains(&h)) {
            return (None, Outcome::LocalClusterNotOk);
        }
        let healthy_upstream = healthy(upstream, None);
        if healthy_upstream < config.min_cluster_size {
            return (None, Outcome::TooSmall);
        }
        // Each locality's share of the healthy hosts, in 1/10,000ths:
        // (local cluster's, upstream's).
        let healthy_local = healthy(&local_hosts, None);
        let percentages: Vec<(u64, u64)> = localities
            .iter()
            .map(|l| {
                let up = healthy(upstream, Some(l));
                let here = healthy(&local_hosts, Some(l));
                match up {
                    0 => (0, 0),
                    _ => (
                        (10_000 * here).checked_div(healthy_local).unwrap_or(0),
                        10_000 * up / healthy_upstream,
                    ),
                }
            })
            .collect();
        let (local_share, upstream_share) = percentages[0];
        let share = if has_local && upstream_share > 0 && upstream_share >= local_share {
            Share::Direct
        } else {
            let local = match has_local && local_share > 0 {
                true => upstream_share * 10_000 / local_share,
                false => 0,
            };
            let mut sum = 0;
            let spare = percentages
                .iter()
                .enumerate()
                .map(|(i, (here, up))| {
                    if !(i == 0 && has_local) {
                        sum += up.saturating_sub(*here);
                    }
                    sum
                })
                .collect();
            Share::Residual { local, spare }
        };
        let counted = local_hosts.iter().filter(|(_, f)| !f.excluded()).count();
        let available = local_hosts
            .iter()
            .filter(|(_, f)| f.healthy() || f.degraded())
            .count();
        let local_panic = match counted {
            0 => 0.0 < panic_threshold,
            _ => 100.0 * (available as f64) / (counted as f64) < panic_threshold,
        };
        let routing = Routing {
            localities,
            share,
            enabled: config.routing_enabled,
            local_panic,
            fail_traffic_on_panic: config.fail_traffic_on_panic,
        };
        (Some(routing), Outcome::Routing)
    }

    /// Where one pick goes, drawing with `random`.
    pub fn draw(&self, random: &dyn Fn() -> u64) -> Draw {
        if self.enabled < 100 && random() % 100 >= u64::from(self.enabled) {
            return Draw::Whole(None);
        }
        if self.local_panic {
            return match self.fail_traffic_on_panic {
                true => Draw::Nothing(Pick::LocalClusterNotOk),
                false => Draw::Whole(Some(Pick::LocalClusterNotOk)),
            };
        }
        match &self.share {
            Share::Direct => Draw::Locality(0, Pick::AllDirectly),
            Share::Residual { local, spare } => {
                if random() % 10_000 < *local {
                    return Draw::Locality(0, Pick::Sampled);
                }
                match spare.last().copied().unwrap_or(0) {
                    0 => {
                        let at = random() % self.localities.len() as u64;
                        Draw::Locality(at as usize, Pick::NoCapacityLeft)
                    }
                    total => {
                        let point = random() % total;
                        let at = spare.partition_point(|&c| c <= point);
                        Draw::Locality(at, Pick::CrossZone)
                    }
                }
            }
        }
    }
}

/// How many of `hosts` are healthy (in `locality`, if one is given).
fn healthy(hosts: &[(&Locality, HostFlags)], locality: Option<&Locality>) -> u64 {
    let placed = |l: &Locality| locality.is_none_or(|want| l == want);
    hosts
        .iter()
        .filter(|(l, f)| placed(l) && f.healthy())
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::health;

    fn zone(name: &str) -> Locality {
        Locality {
            zone: name.to_string(),
            ..Locality::default()
        }
    }

    /// `counts` hosts per zone, healthy or not.
    fn hosts(counts: &[(&str, usize, bool)]) -> Vec<(Locality, HostFlags)> {
        let flags = |ok: bool| HostFlags {
            active: if ok { 0 } else { health::FAILED },
            ejected: false,
        };
        counts
            .iter()
            .flat_map(|(z, n, ok)| std::iter::repeat_n((zone(z), flags(*ok)), *n))
            .collect()
    }

    fn routing(upstream: &[(&str, usize, bool)], local: &[(&str, usize, bool)]) -> Routing {
        let (routing, outcome) = built(upstream, local, 6);
        assert_eq!(outcome, Outcome::Routing);
        routing.expect("a routing")
    }

    fn built(
        upstream: &[(&str, usize, bool)],
        local: &[(&str, usize, bool)],
        min_cluster_size: u64,
    ) -> (Option<Routing>, Outcome) {
        let upstream = hosts(upstream);
        let upstream: Vec<(&Locality, HostFlags)> = upstream.iter().map(|(l, f)| (l, *f)).collect();
        let local = LocalHosts {
            locality: Some(zone("a")),
            hosts: hosts(local),
        };
        let config = ZoneAware {
            min_cluster_size,
            ..ZoneAware::default()
        };
        Routing::new(&upstream, &local, &config, 50.0)
    }

    /// Envoy's worked example: local 40/40/20, upstream 25/50/25. Zone a
    /// keeps 25/40 of its picks; the rest go to b and c by their spare
    /// capacity (10 and 5).
    #[test]
    fn residual_capacity_as_envoy_documents_it() {
        let r = routing(
            &[("a", 2, true), ("b", 4, true), ("c", 2, true)],
            &[("a", 2, true), ("b", 2, true), ("c", 1, true)],
        );
        assert_eq!(
            r.share,
            Share::Residual {
                local: 6250,
                spare: vec![0, 1000, 1500]
            }
        );
        assert_eq!(r.localities, [zone("a"), zone("b"), zone("c")]);
    }

    #[test]
    fn a_local_zone_with_enough_hosts_takes_every_pick() {
        let r = routing(
            &[("b", 2, true), ("a", 4, true)],
            &[("a", 1, true), ("b", 1, true)],
        );
        assert_eq!(r.share, Share::Direct);
        assert_eq!(r.localities[0], zone("a"));
        assert_eq!(r.draw(&|| 0), Draw::Locality(0, Pick::AllDirectly));
    }

    #[test]
    fn small_or_unplaced_fleets_are_not_zone_routed() {
        let upstream = [("a", 2, true), ("b", 3, true)];
        let two_zones = [("a", 1, true), ("b", 1, true)];
        assert_eq!(built(&upstream, &two_zones, 6).1, Outcome::TooSmall);
        assert_eq!(built(&upstream, &two_zones, 5).1, Outcome::Routing);
        let elsewhere = [("b", 1, true), ("c", 1, true)];
        assert_eq!(
            built(&upstream, &elsewhere, 5).1,
            Outcome::LocalClusterNotOk
        );
        let one_zone = [("a", 3, true)];
        assert_eq!(built(&upstream, &one_zone, 5).1, Outcome::TooFewLocalities);
        // Unhealthy local hosts still place the fleet, but do not count.
        let failed_b = [("a", 1, true), ("b", 1, false)];
        let r = built(&upstream, &failed_b, 5).0.expect("a routing");
        assert_eq!(
            r.share,
            Share::Residual {
                local: 4000,
                spare: vec![0, 6000]
            }
        );
        assert!(!r.local_panic);
    }
}
