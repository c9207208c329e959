//! Consistent hashing over a cluster's endpoints: Envoy's ring hash and
//! Maglev, built once per snapshot on the main thread and only read by
//! shards. Endpoints are keyed by their address text and hashed with
//! xxHash64, as Envoy keys them, so the same key reaches the same endpoint
//! on every shard and every process with the same endpoint set.

use super::Endpoint;
use xxhash_rust::xxh64::xxh64;

/// A ring of (hash, endpoint) points, each endpoint with points in
/// proportion to its weight.
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds the ring as Envoy does: with weights normalized to sum to 1,
    /// the scale gives the lightest endpoint a whole number of points and
    /// the ring at least `min_size` of them (at most `max_size`); each
    /// endpoint then takes points while the running count is below the
    /// running target, so every endpoint's keys land where Envoy's do.
    pub fn new(endpoints: &[Endpoint], min_size: u64, max_size: u64) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
        if total == 0 {
            return Ring { points: Vec::new() };
        }
        let normalized: Vec<f64> = endpoints
            .iter()
            .map(|e| f64::from(e.weight) / total as f64)
            .collect();
        let lightest = normalized.iter().copied().fold(f64::INFINITY, f64::min);
        let scale = ((lightest * min_size as f64).ceil() / lightest).min(max_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for (i, (e, weight)) in endpoints.iter().zip(&normalized).enumerate() {
            let key = e.addr.to_string();
            target += scale * weight;
            let mut n = 0u64;
            while current < target {
                points.push((xxh64(format!("{key}_{n}").as_bytes(), 0), i as u32));
                n += 1;
                current += 1.0;
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The endpoint owning `hash`: the first point at or after it, wrapping.
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(h, _)| *h < hash);
        let (_, i) = self.points.get(at).unwrap_or(&self.points[0]);
        Some(*i as usize)
    }
}

/// A Maglev lookup table: every slot names an endpoint, endpoints holding
/// slots in proportion to their weights.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Fills a table of `size` slots (a prime) by Maglev's permutations.
    pub fn new(endpoints: &[Endpoint], size: u64) -> Self {
        let max_weight = endpoints.iter().map(|e| e.weight).max().unwrap_or(0);
        if endpoints.is_empty() || max_weight == 0 || size < 2 {
            return Maglev { table: Vec::new() };
        }
        struct Entry {
            offset: u64,
            skip: u64,
            next: u64,
            share: f64,
            count: u64,
        }
        let mut entries: Vec<Entry> = endpoints
            .iter()
            .map(|e| {
                let key = e.addr.to_string();
                Entry {
                    offset: xxh64(key.as_bytes(), 0) % size,
                    skip: xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                    next: 0,
                    share: f64::from(e.weight) / f64::from(max_weight),
                    count: 0,
                }
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < size {
            for (i, entry) in entries.iter_mut().enumerate() {
                // A lighter endpoint takes a turn only while under its share.
                if (entry.count as f64) >= round as f64 * entry.share {
                    continue;
                }
                loop {
                    let slot = (entry.offset + entry.next * entry.skip) % size;
                    entry.next += 1;
                    if table[slot as usize] == u32::MAX {
                        table[slot as usize] = i as u32;
                        entry.count += 1;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    break;
                }
            }
            round += 1;
        }
        Maglev { table }
    }

    /// The endpoint owning `hash`.
    pub fn pick(&self, hash: u64) -> Option<usize> {
        let len = self.table.len() as u64;
        (len > 0).then(|| self.table[(hash % len) as usize] as usize)
    }
}

/// Combines hash-policy hashes as Envoy does: rotate the running value
/// left by one and xor, so repeated rules do not cancel out.
pub fn combine(running: Option<u64>, next: u64) -> u64 {
    running.map_or(0, |h| h.rotate_left(1)) ^ next
}

/// The hash of one value (a header, cookie, address or parameter).
pub fn hash_value(value: &[u8]) -> u64 {
    xxh64(value, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;
    use crate::upstream::Resolved;

    fn endpoints(n: usize, weight: impl Fn(usize) -> u32) -> Vec<Endpoint> {
        let store = Store::new(1);
        (0..n)
            .map(|i| {
                let addr = format!("10.0.{}.{}:80", i / 250, i % 250 + 1);
                let r = Resolved::test(&addr, weight(i));
                Endpoint::new(&store, "c", r)
            })
            .collect()
    }

    /// A table kind to build over an endpoint set.
    fn picker(maglev: bool, e: &[Endpoint]) -> Box<dyn Fn(u64) -> Option<usize>> {
        if maglev {
            let m = Maglev::new(e, 65537);
            Box::new(move |h| m.pick(h))
        } else {
            let r = Ring::new(e, 1024, 8 << 20);
            Box::new(move |h| r.pick(h))
        }
    }

    /// The share of keys that move when one of ten endpoints leaves.
    fn disruption(maglev: bool) -> f64 {
        let all = endpoints(10, |_| 1);
        let fewer: Vec<Endpoint> = all[..9].to_vec();
        let (before, after) = (picker(maglev, &all), picker(maglev, &fewer));
        let keys = 20_000;
        let moved = (0..keys)
            .filter(|k| {
                let h = hash_value(format!("user-{k}").as_bytes());
                before(h).map(|i| &all[i].addr) != after(h).map(|i| &fewer[i].addr)
            })
            .count();
        moved as f64 / f64::from(keys)
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth() {
        let (ring, maglev) = (disruption(false), disruption(true));
        // The departed endpoint held 10%; Maglev may shuffle a little more,
        // and Envoy's ring rescales every endpoint's points (103 each for
        // ten, 114 for nine), which moves some more keys.
        assert!((0.07..0.20).contains(&ring), "ring moved {ring}");
        assert!((0.07..0.15).contains(&maglev), "maglev moved {maglev}");
    }

    #[test]
    fn huge_weights_stay_within_the_maximum_ring() {
        let e = endpoints(3, |i| if i == 0 { u32::MAX } else { 1 });
        let r = Ring::new(&e, 1024, 4096);
        assert!(r.points.len() <= 4096 + 1, "{}", r.points.len());
    }

    #[test]
    fn equal_weights_get_envoys_point_counts() {
        // Envoy: scale = ceil(1/3 * 1024) * 3 = 1026, so 342 points each.
        let r = Ring::new(&endpoints(3, |_| 1), 1024, 8 << 20);
        let count = |i: u32| r.points.iter().filter(|(_, e)| *e == i).count();
        assert_eq!((count(0), count(1), count(2)), (342, 342, 342));
    }

    #[test]
    fn weights_shape_the_share() {
        let e = endpoints(2, |i| if i == 0 { 3 } else { 1 });
        let m = Maglev::new(&e, 65537);
        let r = Ring::new(&e, 1024, 8 << 20);
        let share = |pick: &dyn Fn(u64) -> Option<usize>| {
            let n = 20_000;
            let first = (0..n)
                .filter(|k| pick(hash_value(format!("k{k}").as_bytes())) == Some(0))
                .count();
            first as f64 / f64::from(n)
        };
        assert!((0.70..0.80).contains(&share(&|h| m.pick(h))));
        assert!((0.68..0.82).contains(&share(&|h| r.pick(h))));
    }
}
