//! A histogram as a collection carries it: only its recorded bins.
//!
//! Shards record into dense HDR histograms (a record is an index and an
//! increment), 26 KiB each whatever they hold. Collections and the
//! histograms recorded off the shards (xDS update durations, one per EDS
//! cluster) keep only the bins that hold something, with the same
//! quantization, so `/stats` over 10,000 clusters does not copy 10,000
//! dense histograms and 10,000 EDS clusters do not hold 10,000 of them.

use hdrhistogram::Histogram;
use std::sync::LazyLock;

/// The quantization every histogram shares (1 µs to an hour, 2 digits).
static TEMPLATE: LazyLock<Histogram<u64>> = LazyLock::new(super::histogram::empty);

/// One recorded bin: the values it stands for and how many fell in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bin {
    low: u64,
    high: u64,
    count: u64,
}

/// Recorded bins, ordered by value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bins {
    bins: Vec<Bin>,
    total: u64,
}

impl Bins {
    /// The recorded bins of a dense histogram.
    pub fn of(h: &Histogram<u64>) -> Bins {
        let bins: Vec<Bin> = h
            .iter_recorded()
            .map(|v| {
                let high = v.value_iterated_to();
                Bin {
                    low: h.lowest_equivalent(high),
                    high,
                    count: v.count_at_value(),
                }
            })
            .collect();
        Bins {
            total: bins.iter().map(|b| b.count).sum(),
            bins,
        }
    }

    /// Records `micros` once.
    pub fn record(&mut self, micros: u64) {
        let low = TEMPLATE.lowest_equivalent(micros);
        match self.bins.binary_search_by_key(&low, |b| b.low) {
            Ok(i) => self.bins[i].count += 1,
            Err(i) => {
                let high = TEMPLATE.highest_equivalent(micros);
                self.bins.insert(
                    i,
                    Bin {
                        low,
                        high,
                        count: 1,
                    },
                );
            }
        }
        self.total += 1;
    }

    /// Adds what `other` recorded.
    pub fn add(&mut self, other: &Bins) {
        let (x, y) = (&self.bins, &other.bins);
        let mut merged = Vec::with_capacity(x.len() + y.len());
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (x.get(i), y.get(j)) {
                (Some(a), Some(b)) if a.low == b.low => {
                    (i, j) = (i + 1, j + 1);
                    Bin {
                        count: a.count + b.count,
                        ..*a
                    }
                }
                (Some(a), Some(b)) if a.low < b.low => {
                    i += 1;
                    *a
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (_, Some(b)) => {
                    j += 1;
                    *b
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.bins = merged;
        self.total += other.total;
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The mean, each value taken as the middle of its bin (as
    /// `hdrhistogram` takes it).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let sum: f64 = self
            .bins
            .iter()
            .map(|b| (b.low + (b.high - b.low).div_ceil(2)) as f64 * b.count as f64)
            .sum();
        sum / self.total as f64
    }

    /// The value at percentile `p` (0–100), as `hdrhistogram` answers it:
    /// the top of the bin the rank falls in (its bottom for 0).
    pub fn value_at_percentile(&self, p: f64) -> u64 {
        let q = (p / 100.0).min(1.0);
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for b in &self.bins {
            seen += b.count;
            if seen >= rank {
                return if q == 0.0 { b.low } else { b.high };
            }
        }
        self.bins.last().map_or(0, |b| b.high)
    }

    /// Each bin's highest value and count.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bins.iter().map(|b| (b.high, b.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same values in a dense histogram and in bins answer alike.
    #[test]
    fn bins_answer_as_the_dense_histogram() {
        let values = [1, 7, 100, 101, 250, 999, 1_000, 12_345, 12_400, 5_000_000];
        let mut dense = super::super::histogram::empty();
        let mut sparse = Bins::default();
        for v in values {
            dense.record(v).expect("in bounds");
            sparse.record(v);
        }
        assert_eq!(Bins::of(&dense), sparse);
        assert_eq!(sparse.len(), dense.len());
        assert!((sparse.mean() - dense.mean()).abs() < 1e-6);
        for p in [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0] {
            assert_eq!(
                sparse.value_at_percentile(p),
                dense.value_at_percentile(p),
                "{p}"
            );
        }
    }

    #[test]
    fn adding_merges_bins() {
        let (mut a, mut b) = (Bins::default(), Bins::default());
        for v in [5, 100, 100] {
            a.record(v);
        }
        for v in [1, 100, 7_000] {
            b.record(v);
        }
        let mut both = Bins::default();
        for v in [5, 100, 100, 1, 100, 7_000] {
            both.record(v);
        }
        a.add(&b);
        assert_eq!(a, both);
    }
}
