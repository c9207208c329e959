//! Load-balancing pickers. State is per shard (inside a shard's snapshot
//! view), so picking takes no lock and touches no shared cache line.

use super::Endpoint;

/// Smooth weighted round robin (as nginx does it): over a cycle of
/// `sum(weights)` picks each endpoint gets exactly its weight, interleaved
/// rather than in bursts.
#[derive(Debug, Default)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// A picker for `n` endpoints, starting the cycle at `offset` so shards do
    /// not all begin with the same endpoint.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        let store = crate::stats::Store::new(1);
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let resolved = crate::upstream::Resolved {
                    addr: format!("127.0.0.1:{}", 1000 + i).parse().expect("addr"),
                    weight: *w,
                    hostname: String::new(),
                };
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
    }

    #[test]
    fn empty_set_picks_nothing() {
        let mut rr = RoundRobin::new(&[], 3);
        assert_eq!(rr.pick(&[]), None);
    }
}
