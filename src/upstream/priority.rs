//! Envoy's priority levels and locality weights: which hosts one pick
//! draws from. With each snapshot the main thread groups a cluster's
//! endpoints by priority, gives every level its share of the load from
//! its healthy and degraded hosts (times the overprovisioning factor),
//! spills what a level cannot carry to the next, decides which levels
//! are in panic, and with `locality_weighted_lb_config` splits a level's
//! share across its localities; with a local cluster, priority 0's
//! share goes by zone (see [`super::zone`]). A shard draws a percentage
//! (and a locality), then balances over the chosen host set.

use super::health::HostFlags;
use super::lb::Balancer;
use super::zone::{self, Draw, LocalHosts, Routing};
use super::Endpoint;
use crate::config::{EndpointPolicy, LbPolicy, Locality, ZoneAware};

/// A set of hosts one pick balances over, with its balancer.
#[derive(Debug)]
pub struct HostSet {
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The balancer over them.
    pub balancer: Balancer,
}

/// Where one share of the load goes.
#[derive(Debug)]
enum Target {
    /// One host set.
    Set(usize),
    /// Host sets per locality, drawn by their cumulative effective weights.
    Localities {
        sets: Vec<usize>,
        cumulative: Vec<u64>,
    },
    /// Zone routing over host sets per locality (in the routing's order),
    /// or the level's whole host set when a pick is not zone routed.
    Zones(Box<Zones>),
}

/// A share routed by zone.
#[derive(Debug)]
struct Zones {
    whole: usize,
    sets: Vec<usize>,
    routing: Routing,
}

/// One share of the load: the picks whose draw (1–100) is at most `upto`.
#[derive(Debug)]
struct Share {
    upto: u32,
    target: Target,
    panic: bool,
}

/// A cluster's (or subset's) host sets and how the load is split among
/// them.
#[derive(Debug)]
pub struct Plan {
    /// The host sets some share of the load goes to.
    pub sets: Vec<HostSet>,
    /// The cluster-wide number of its first host set (a cluster's plans
    /// number their sets one after another, for the shards' positions).
    pub first_set: usize,
    shares: Vec<Share>,
    /// What computing zone routing found, when there is a local cluster.
    pub zone: Option<zone::Outcome>,
    /// `fail_traffic_on_panic`: a pick in panic finds no host.
    fail_on_panic: bool,
}

/// The host set a pick draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Its index in [`Plan::sets`]; None when the pick must find no host.
    pub set: Option<usize>,
    /// Its priority level is in panic: it holds every host of the level.
    pub panic: bool,
    /// How zone routing routed it, when it did.
    pub zone: Option<zone::Pick>,
}

/// What the plan is built from.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The cluster's endpoints.
    pub endpoints: &'a [Endpoint],
    /// Their health, index for index.
    pub flags: &'a [HostFlags],
    /// The assignment's `policy`.
    pub policy: EndpointPolicy,
    /// `healthy_panic_threshold`, percent.
    pub panic_threshold: f64,
    /// `common_lb_config.locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    /// The balancer each host set gets.
    pub lb_policy: &'a LbPolicy,
    /// Zone routing's settings and the local cluster, when there is one.
    pub zone: Option<(&'a ZoneAware, &'a LocalHosts)>,
}

/// Which hosts of a level a host set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    All,
    Healthy,
    Degraded,
}

/// One priority level's hosts (indices into the endpoints).
struct Level {
    hosts: Vec<usize>,
    /// Healthy and degraded availability, percent (0–100).
    healthy: u32,
    degraded: u32,
    panic: bool,
}

impl Plan {
    /// Splits the load as Envoy's `LoadBalancerBase` does; its host sets
    /// are numbered from `first_set` on.
    pub fn new(inputs: &Inputs, first_set: usize) -> Plan {
        let mut levels = levels(inputs);
        let healthy: Vec<u32> = levels.iter().map(|l| l.healthy).collect();
        let degraded: Vec<u32> = levels.iter().map(|l| l.degraded).collect();
        let normalized = (healthy.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);
        let mut healthy_load = vec![0; levels.len()];
        let mut degraded_load = vec![0; levels.len()];
        if normalized > 0 {
            let (first_healthy, left) = distribute(&mut healthy_load, &healthy, 100, normalized);
            let (first_degraded, left) =
                distribute(&mut degraded_load, &degraded, left, normalized);
            // Rounding leftovers go to the first available level.
            match (first_healthy, first_degraded) {
                (Some(p), _) => healthy_load[p] += left,
                (None, Some(p)) => degraded_load[p] += left,
                (None, None) => {}
            }
        }
        let threshold = inputs.panic_threshold.min(100.0);
        if threshold == 0.0 && normalized == 0 {
            healthy_load[0] = 100;
        } else {
            for level in &mut levels {
                level.panic = normalized < 100 && in_panic(level, inputs.flags, threshold);
            }
            if levels.iter().all(|l| l.panic) {
                // Total panic: load by host count, whatever their health.
                let total: usize = levels.iter().map(|l| l.hosts.len()).sum();
                degraded_load.iter_mut().for_each(|d| *d = 0);
                let mut left = 100;
                for (load, level) in healthy_load.iter_mut().zip(&levels) {
                    *load = (100 * level.hosts.len()).checked_div(total).unwrap_or(0) as u32;
                    left -= *load;
                }
                let first = levels.iter().position(|l| !l.hosts.is_empty()).unwrap_or(0);
                healthy_load[first] += left;
            }
        }
        // Envoy routes by zone with the balancers that are not hashing
        // ones, unless localities are weighted.
        let zoned = inputs
            .zone
            .filter(|_| !inputs.locality_weighted && !inputs.lb_policy.is_hashing());
        let routing = zoned.map(|(config, local)| {
            let level = &levels[0];
            let endpoints = inputs.endpoints;
            let hosts: Vec<(&Locality, HostFlags)> = level
                .hosts
                .iter()
                .map(|i| (&endpoints[*i].locality, inputs.flags[*i]))
                .collect();
            Routing::new(&hosts, local, config, threshold)
        });
        let mut builder = Builder {
            inputs,
            routing: routing.as_ref().and_then(|(r, _)| r.as_ref()),
            keys: Vec::new(),
            sets: Vec::new(),
        };
        let mut shares = Vec::new();
        let mut upto = 0;
        let loads = [
            (Kind::Healthy, &healthy_load),
            (Kind::Degraded, &degraded_load),
        ];
        for (kind, load) in loads {
            for (p, level) in levels.iter().enumerate() {
                if load[p] == 0 {
                    continue;
                }
                upto += load[p];
                let kind = if level.panic { Kind::All } else { kind };
                shares.push(Share {
                    upto,
                    target: builder.target(p, level, kind),
                    panic: level.panic,
                });
            }
        }
        Plan {
            sets: builder.sets,
            first_set,
            shares,
            zone: routing.as_ref().map(|(_, outcome)| *outcome),
            fail_on_panic: zoned.is_some_and(|(z, _)| z.fail_traffic_on_panic),
        }
    }

    /// The host set a pick draws from: by `hash` (a hashing balancer's
    /// key, as Envoy chooses priorities by it), else at random.
    pub fn choose(&self, hash: Option<u64>, random: &dyn Fn() -> u64) -> Option<Choice> {
        let share = match self.shares.as_slice() {
            [one] => one,
            shares => {
                let draw = (hash.unwrap_or_else(random) % 100) as u32 + 1;
                shares.iter().find(|s| draw <= s.upto)?
            }
        };
        let (set, zone) = match &share.target {
            Target::Set(set) => (Some(*set), None),
            Target::Localities { sets, cumulative } => {
                let total = *cumulative.last()?;
                let point = random() % total;
                (
                    sets.get(cumulative.partition_point(|&c| c <= point))
                        .copied(),
                    None,
                )
            }
            Target::Zones(zones) => match zones.routing.draw(random) {
                Draw::Locality(at, pick) => (zones.sets.get(at).copied(), Some(pick)),
                Draw::Whole(pick) => (Some(zones.whole), pick),
                Draw::Nothing(pick) => (None, Some(pick)),
            },
        };
        Some(Choice {
            set: set.filter(|_| !(share.panic && self.fail_on_panic)),
            panic: share.panic,
            zone,
        })
    }
}

/// The endpoints grouped by priority (at least one level), with their
/// availabilities.
fn levels(inputs: &Inputs) -> Vec<Level> {
    let count = inputs
        .endpoints
        .iter()
        .map(|e| e.priority as usize + 1)
        .max()
        .unwrap_or(1);
    let mut levels: Vec<Level> = (0..count)
        .map(|_| Level {
            hosts: Vec::new(),
            healthy: 0,
            degraded: 0,
            panic: false,
        })
        .collect();
    for (i, e) in inputs.endpoints.iter().enumerate() {
        levels[e.priority as usize].hosts.push(i);
    }
    let factor = u64::from(inputs.policy.overprovisioning_factor);
    for level in &mut levels {
        let weight = |i: &usize| match inputs.policy.weighted_priority_health {
            true => u64::from(inputs.endpoints[*i].weight),
            false => 1,
        };
        let sum = |pick: fn(HostFlags) -> bool| -> u64 {
            level
                .hosts
                .iter()
                .filter(|i| pick(inputs.flags[**i]))
                .map(weight)
                .sum()
        };
        let total = level.hosts.iter().map(weight).sum::<u64>() - sum(HostFlags::excluded);
        let availability =
            |share: u64| (factor * share).checked_div(total).unwrap_or(0).min(100) as u32;
        level.healthy = availability(sum(HostFlags::healthy));
        level.degraded = availability(sum(HostFlags::degraded));
    }
    levels
}

/// Assigns as much of `total` as each level's availability allows, in
/// priority order; returns the first available level and what is left.
fn distribute(
    load: &mut [u32],
    availability: &[u32],
    mut total: u32,
    normalized: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (p, (load, available)) in load.iter_mut().zip(availability).enumerate() {
        if first.is_none() && *available > 0 {
            first = Some(p);
        }
        *load = total.min(available * 100 / normalized);
        total -= *load;
    }
    (first, total)
}

/// Whether a level's healthy and degraded hosts (plain shares, without
/// the overprovisioning factor) are under the panic threshold.
fn in_panic(level: &Level, flags: &[HostFlags], threshold: f64) -> bool {
    let count =
        |pick: fn(HostFlags) -> bool| level.hosts.iter().filter(|i| pick(flags[**i])).count();
    let counted = level.hosts.len() - count(HostFlags::excluded);
    let percent = |n: usize| match counted {
        0 => 0.0,
        _ => 100.0 * n as f64 / counted as f64,
    };
    percent(count(HostFlags::healthy)) + percent(count(HostFlags::degraded)) < threshold
}

/// Builds each host set once, however many shares use it.
struct Builder<'a> {
    inputs: &'a Inputs<'a>,
    /// Priority 0's zone routing, if any.
    routing: Option<&'a Routing>,
    keys: Vec<(usize, Kind, Option<Locality>)>,
    sets: Vec<HostSet>,
}

impl Builder<'_> {
    /// Where a share of `kind` hosts at level `p` goes.
    fn target(&mut self, p: usize, level: &Level, kind: Kind) -> Target {
        if let Some(routing) = self.routing.filter(|_| p == 0 && kind != Kind::All) {
            let whole = self.set(p, level, kind, None);
            let sets = routing
                .localities
                .iter()
                .map(|l| self.set(p, level, kind, Some(l.clone())))
                .collect();
            return Target::Zones(Box::new(Zones {
                whole,
                sets,
                routing: routing.clone(),
            }));
        }
        if self.inputs.locality_weighted && kind != Kind::All {
            if let Some(target) = self.localities(p, level, kind) {
                return target;
            }
        }
        Target::Set(self.set(p, level, kind, None))
    }

    /// The level's localities weighted by `load_balancing_weight` times
    /// their availability (overprovisioned, at most 1), or None when
    /// every locality weighs nothing.
    fn localities(&mut self, p: usize, level: &Level, kind: Kind) -> Option<Target> {
        let endpoints = self.inputs.endpoints;
        let mut localities: Vec<&Locality> = Vec::new();
        for i in &level.hosts {
            if !localities.contains(&&endpoints[*i].locality) {
                localities.push(&endpoints[*i].locality);
            }
        }
        let factor = f64::from(self.inputs.policy.overprovisioning_factor) / 100.0;
        let (mut sets, mut cumulative, mut sum) = (Vec::new(), Vec::new(), 0u64);
        for locality in localities {
            let hosts: Vec<usize> = level
                .hosts
                .iter()
                .copied()
                .filter(|i| endpoints[*i].locality == *locality)
                .collect();
            let eligible = hosts
                .iter()
                .filter(|i| matches(kind, self.inputs.flags[**i]))
                .count();
            let ratio = (factor * eligible as f64 / hosts.len() as f64).min(1.0);
            let weight = f64::from(endpoints[hosts[0]].locality_weight) * ratio;
            // Effective weights in millionths, for integer draws.
            let weight = (weight * 1e6) as u64;
            if weight == 0 {
                continue;
            }
            sum += weight;
            sets.push(self.set(p, level, kind, Some(locality.clone())));
            cumulative.push(sum);
        }
        (sum > 0).then_some(Target::Localities { sets, cumulative })
    }

    /// The host set of `kind` hosts at level `p` (in `locality`, if any).
    fn set(&mut self, p: usize, level: &Level, kind: Kind, locality: Option<Locality>) -> usize {
        let key = (p, kind, locality);
        if let Some(at) = self.keys.iter().position(|k| *k == key) {
            return at;
        }
        let endpoints: Vec<Endpoint> = level
            .hosts
            .iter()
            .map(|i| (&self.inputs.endpoints[*i], self.inputs.flags[*i]))
            .filter(|(e, f)| matches(kind, *f) && key.2.as_ref().is_none_or(|l| e.locality == *l))
            .map(|(e, _)| e.clone())
            .collect();
        self.sets.push(HostSet {
            balancer: Balancer::new(self.inputs.lb_policy, &endpoints),
            endpoints,
        });
        self.keys.push(key);
        self.sets.len() - 1
    }
}

/// Whether a host with `flags` belongs in a set of `kind` hosts.
fn matches(kind: Kind, flags: HostFlags) -> bool {
    match kind {
        Kind::All => true,
        Kind::Healthy => flags.healthy(),
        Kind::Degraded => flags.degraded(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{health, Resolved};
    use std::cell::Cell;

    /// Endpoints at `(priority, zone, locality weight)`, all in one cluster.
    fn endpoints(places: &[(u32, &str, u32)]) -> Vec<Endpoint> {
        let store = crate::stats::Store::new(1);
        places
            .iter()
            .enumerate()
            .map(|(i, (priority, zone, weight))| {
                let mut r = Resolved::test(&format!("10.0.{}.{}:80", i / 200, i % 200 + 1), 1);
                r.priority = *priority;
                r.locality.zone = zone.to_string();
                r.locality_weight = *weight;
                Endpoint::new(&store, "c", r)
            })
            .collect()
    }

    fn flags(healthy: &[bool]) -> Vec<HostFlags> {
        let active = |ok: &bool| if *ok { 0 } else { health::FAILED };
        healthy
            .iter()
            .map(|ok| HostFlags {
                active: active(ok),
                ejected: false,
            })
            .collect()
    }

    fn plan(endpoints: &[Endpoint], flags: &[HostFlags], locality_weighted: bool) -> Plan {
        let inputs = Inputs {
            endpoints,
            flags,
            policy: EndpointPolicy::default(),
            panic_threshold: 50.0,
            locality_weighted,
            lb_policy: &LbPolicy::RoundRobin,
            zone: None,
        };
        Plan::new(&inputs, 0)
    }

    /// Picks per priority over the draws 1..=100.
    fn load_by_priority(plan: &Plan) -> Vec<usize> {
        let mut load = Vec::new();
        let never = || unreachable!("a single locality needs no draw");
        for hash in 0..100 {
            let choice = plan.choose(Some(hash), &never).expect("a set");
            let p = plan.sets[choice.set.expect("a host set")].endpoints[0].priority as usize;
            load.resize(load.len().max(p + 1), 0);
            load[p] += 1;
        }
        load
    }

    /// Envoy's documented spill-over: P0 carries its healthy share times
    /// 1.4, P1 the rest.
    #[test]
    fn load_spills_to_the_next_priority() {
        for (healthy_of_100, expected) in [(100, vec![100]), (72, vec![100]), (71, vec![99, 1])]
            .into_iter()
            .chain([(50, vec![70, 30]), (25, vec![35, 65]), (0, vec![0, 100])])
        {
            let mut places = vec![(0, "a", 0); 100];
            places.extend([(1, "a", 0); 10]);
            let eps = endpoints(&places);
            let mut ok = vec![false; 100];
            ok[..healthy_of_100].fill(true);
            ok.extend([true; 10]);
            let mut load = load_by_priority(&plan(&eps, &flags(&ok), false));
            load.resize(2, 0);
            let mut expected = expected;
            expected.resize(2, 0);
            assert_eq!(load, expected, "{healthy_of_100}% of P0 healthy");
        }
    }

    #[test]
    fn a_level_under_the_threshold_alone_is_in_panic() {
        let eps = endpoints(&[(0, "a", 0); 3]);
        let panicked = plan(&eps, &flags(&[true, false, false]), false);
        let choice = panicked.choose(None, &|| 7).expect("a set");
        assert!(choice.panic);
        assert_eq!(
            panicked.sets[choice.set.expect("a host set")]
                .endpoints
                .len(),
            3
        );
        // Three of six is not under 50%: only the healthy serve.
        let eps = endpoints(&[(0, "a", 0); 6]);
        let plan = plan(
            &eps,
            &flags(&[true, true, true, false, false, false]),
            false,
        );
        let choice = plan.choose(None, &|| 7).expect("a set");
        assert!(!choice.panic);
        assert_eq!(
            plan.sets[choice.set.expect("a host set")].endpoints.len(),
            3
        );
    }

    #[test]
    fn localities_share_by_weight_times_availability() {
        let eps = endpoints(&[(0, "a", 1), (0, "b", 3), (0, "b", 3), (0, "c", 0)]);
        let share_of_b = |healthy: &[bool]| {
            let plan = plan(&eps, &flags(healthy), true);
            let next = Cell::new(0u64);
            let random = || {
                next.set(next.get() + 7_919);
                next.get()
            };
            let picks = 10_000;
            let b = (0..picks)
                .filter(|_| {
                    let choice = plan.choose(None, &random).expect("a set");
                    plan.sets[choice.set.expect("a host set")].endpoints[0]
                        .locality
                        .zone
                        == "b"
                })
                .count();
            b as f64 / picks as f64
        };
        assert!((share_of_b(&[true; 4]) - 0.75).abs() < 0.02);
        // One of b's two hosts failed: 3 × min(1, 1.4 × ½) = 2.1 against 1.
        let share = share_of_b(&[true, true, false, true]);
        assert!((share - 2.1 / 3.1).abs() < 0.02, "{share}");
    }
}
