//! Load-balancing pickers. Everything that depends only on the endpoint
//! set (a round-robin schedule, cumulative weights, hash tables) is built
//! once per snapshot on the main thread; a shard keeps only a position per
//! cluster, and least-request reads the endpoints' shared active-request
//! counts. Picking takes no lock, and costs O(1) or O(log n).

use super::hashing::{Maglev, Ring};
use super::Endpoint;
use crate::config::LbPolicy;
use std::sync::atomic::Ordering;

/// Longest precomputed round-robin cycle (weights reduced by their gcd);
/// longer cycles fall back to computing smooth round robin per pick.
const MAX_SCHEDULE: u64 = 1 << 16;

/// Smooth weighted round robin (as nginx does it): over a cycle of
/// `sum(weights)` picks each endpoint gets exactly its weight, interleaved
/// rather than in bursts.
#[derive(Debug, Default)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// A picker for `endpoints`, starting the cycle at `offset` so shards
    /// do not all begin with the same endpoint.
    pub fn new(endpoints: &[Endpoint], offset: usize) -> Self {
        let mut rr = RoundRobin {
            current: vec![0; endpoints.len()],
        };
        for _ in 0..offset % endpoints.len().max(1) {
            rr.pick(endpoints);
        }
        rr
    }

    /// Picks the index of the next endpoint, or None when there are none.
    pub fn pick(&mut self, endpoints: &[Endpoint]) -> Option<usize> {
        if endpoints.len() != self.current.len() || endpoints.is_empty() {
            return None;
        }
        let mut total = 0i64;
        let mut best = 0;
        for (i, ep) in endpoints.iter().enumerate() {
            let w = i64::from(ep.weight);
            self.current[i] += w;
            total += w;
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        Some(best)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One cycle of smooth weighted round robin, when it is short enough to
/// keep (weights divided by their gcd first).
fn schedule(endpoints: &[Endpoint]) -> Option<Vec<u32>> {
    let g = endpoints.iter().fold(0, |g, e| gcd(g, u64::from(e.weight)));
    if g == 0 {
        return None;
    }
    let length: u64 = endpoints.iter().map(|e| u64::from(e.weight) / g).sum();
    if length > MAX_SCHEDULE {
        return None;
    }
    let reduced: Vec<Endpoint> = endpoints
        .iter()
        .map(|e| Endpoint {
            weight: (u64::from(e.weight) / g) as u32,
            ..e.clone()
        })
        .collect();
    let mut rr = RoundRobin::new(&reduced, 0);
    (0..length)
        .map(|_| rr.pick(&reduced).map(|i| i as u32))
        .collect()
}

/// Cumulative weights, for weighted draws by binary search.
#[derive(Debug)]
pub struct Weights {
    cumulative: Vec<u64>,
}

impl Weights {
    /// The running sums of `endpoints`' weights.
    pub fn new(endpoints: &[Endpoint]) -> Self {
        let mut sum = 0;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                sum += u64::from(e.weight);
                sum
            })
            .collect();
        Weights { cumulative }
    }

    /// An endpoint drawn with probability proportional to its weight.
    pub fn draw(&self, random: u64) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let point = random % total;
        Some(self.cumulative.partition_point(|&c| c <= point))
    }

    /// Whether every endpoint has the same weight.
    fn equal(&self) -> bool {
        let first = self.cumulative.first().copied().unwrap_or(0);
        self.cumulative
            .iter()
            .enumerate()
            .all(|(i, c)| *c == first * (i as u64 + 1))
    }
}

/// A cluster's balancer, built with its endpoint set.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin: the precomputed cycle, or None to
    /// compute each pick (very long cycles).
    RoundRobin(Option<Vec<u32>>),
    /// Power of `choice_count` choices on active requests.
    LeastRequest {
        /// Candidates drawn per pick.
        choice_count: u32,
        /// `active_request_bias` (weights ÷ (active + 1)^bias).
        bias: f64,
        /// For weighted draws.
        weights: Weights,
        /// All weights are equal (plain power of two choices).
        equal: bool,
    },
    /// Weighted random.
    Random(Weights),
    /// Ring hash.
    Ring(Ring),
    /// Maglev.
    Maglev(Maglev),
}

impl Balancer {
    /// Builds the balancer of `policy` over `endpoints`.
    pub fn new(policy: &LbPolicy, endpoints: &[Endpoint]) -> Self {
        match policy {
            LbPolicy::RoundRobin => Balancer::RoundRobin(schedule(endpoints)),
            LbPolicy::Random => Balancer::Random(Weights::new(endpoints)),
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            } => {
                let weights = Weights::new(endpoints);
                Balancer::LeastRequest {
                    choice_count: *choice_count,
                    bias: *active_request_bias,
                    equal: weights.equal(),
                    weights,
                }
            }
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => Balancer::Ring(Ring::new(endpoints, *min_ring_size, *max_ring_size)),
            LbPolicy::Maglev { table_size } => {
                Balancer::Maglev(Maglev::new(endpoints, *table_size))
            }
        }
    }
}

/// Envoy's least request: with equal weights, the least loaded of
/// `choice_count` random endpoints; with unequal weights, the best of
/// `choice_count` weighted draws by weight ÷ (active + 1)^bias.
pub fn least_request(
    endpoints: &[Endpoint],
    choice_count: u32,
    bias: f64,
    weights: &Weights,
    equal: bool,
    random: &dyn Fn() -> u64,
) -> Option<usize> {
    if endpoints.is_empty() {
        return None;
    }
    let active = |i: usize| endpoints[i].active.load(Ordering::Relaxed);
    let mut best: Option<(usize, f64)> = None;
    for _ in 0..choice_count.max(1) {
        let i = if equal {
            (random() % endpoints.len() as u64) as usize
        } else {
            weights.draw(random())?
        };
        let score = if equal {
            -(active(i) as f64)
        } else {
            f64::from(endpoints[i].weight) / ((active(i) + 1) as f64).powf(bias)
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        let store = crate::stats::Store::new(1);
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let addr = format!("127.0.0.1:{}", 1000 + i);
                let resolved = crate::upstream::Resolved::test(&addr, *w);
                Endpoint::new(&store, "c", resolved)
            })
            .collect()
    }

    #[test]
    fn weights_are_exact_per_cycle_and_interleaved() {
        let e = eps(&[5, 1, 1]);
        let mut rr = RoundRobin::new(&e, 0);
        let picks: Vec<usize> = (0..7).filter_map(|_| rr.pick(&e)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        // The precomputed cycle is the same sequence, gcd-reduced.
        let cycle = schedule(&eps(&[10, 2, 2])).expect("short cycle");
        assert_eq!(cycle, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_draws_follow_cumulative_weights() {
        let w = Weights::new(&eps(&[1, 0, 3]));
        assert_eq!(w.draw(0), Some(0));
        assert_eq!(w.draw(1), Some(2));
        assert_eq!(w.draw(3), Some(2));
        assert_eq!(w.draw(4), Some(0));
        assert!(Weights::new(&eps(&[2, 2, 2])).equal());
        assert!(!w.equal());
    }

    #[test]
    fn empty_set_picks_nothing() {
        let mut rr = RoundRobin::new(&[], 3);
        assert_eq!(rr.pick(&[]), None);
        assert_eq!(Weights::new(&[]).draw(7), None);
    }
}
