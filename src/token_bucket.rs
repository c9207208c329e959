//! A token bucket every shard takes from without a lock: one atomic word
//! holds the instant at which the bucket was (or will be) empty, and a
//! token is taken by moving that instant one token's worth of time later
//! with a compare-and-swap. Tokens accrue continuously (`tokens_per_fill`
//! per `fill_interval`, as Envoy's atomic bucket), up to `max_tokens`, and
//! the count is exact: no fill is lost to a race between shards.

use crate::config::TokenBucket as Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time is kept in sixteenths of a nanosecond: fine enough that a token's
/// cost is exact to within 1/32 ns, with room for 36 years of uptime.
const TICKS_PER_NS: u128 = 16;

/// A shared token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    /// When the bucket was created (the clock's zero).
    start: Instant,
    /// Ticks one token takes to accrue (at least 1).
    cost: u64,
    /// Ticks a full bucket takes to accrue.
    capacity: u64,
    /// `max_tokens`.
    max_tokens: u64,
    /// The instant, in ticks after `start` plus `capacity`, at which the
    /// bucket is empty: tokens now are (now − empty) ÷ cost, at most
    /// `max_tokens`.
    empty_at: AtomicU64,
}

/// What taking a token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether a token was taken.
    pub allowed: bool,
    /// Whole tokens left after it.
    pub remaining: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(config: &Config) -> TokenBucket {
        let interval = config.fill_interval.as_nanos() * TICKS_PER_NS;
        let cost = (interval / u128::from(config.tokens_per_fill.max(1))).max(1);
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        TokenBucket {
            start: Instant::now(),
            cost,
            capacity: cost.saturating_mul(config.max_tokens),
            max_tokens: config.max_tokens,
            empty_at: AtomicU64::new(0),
        }
    }

    /// `max_tokens`.
    pub fn max_tokens(&self) -> u64 {
        self.max_tokens
    }

    /// How long one token takes to accrue.
    pub fn token_interval(&self) -> Duration {
        Duration::from_nanos(self.cost / TICKS_PER_NS as u64)
    }

    /// The clock, in ticks, offset so that a bucket starts full.
    fn now(&self) -> u64 {
        let ticks = self.start.elapsed().as_nanos() * TICKS_PER_NS;
        u64::try_from(ticks)
            .unwrap_or(u64::MAX)
            .saturating_add(self.capacity)
    }

    /// Takes one token if there is one.
    pub fn take(&self) -> Taken {
        let now = self.now();
        let floor = now.saturating_sub(self.capacity);
        let mut empty_at = self.empty_at.load(Ordering::Relaxed);
        loop {
            // A bucket cannot hold more than max_tokens: time before
            // `floor` accrued nothing.
            let next = empty_at.max(floor).saturating_add(self.cost);
            if next > now {
                return Taken {
                    allowed: false,
                    remaining: 0,
                };
            }
            match self.empty_at.compare_exchange_weak(
                empty_at,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Taken {
                        allowed: true,
                        remaining: (now - next) / self.cost,
                    }
                }
                Err(current) => empty_at = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bucket(max_tokens: u64, tokens_per_fill: u64, fill_interval: Duration) -> TokenBucket {
        TokenBucket::new(&Config {
            max_tokens,
            tokens_per_fill,
            fill_interval,
        })
    }

    #[test]
    fn starts_full_and_counts_down() {
        let b = bucket(3, 1, Duration::from_secs(3600));
        let taken: Vec<Taken> = (0..4).map(|_| b.take()).collect();
        let remaining: Vec<u64> = taken.iter().map(|t| t.remaining).collect();
        let allowed: Vec<bool> = taken.iter().map(|t| t.allowed).collect();
        assert_eq!(allowed, [true, true, true, false]);
        assert_eq!(remaining, [2, 1, 0, 0]);
    }

    #[test]
    fn an_empty_bucket_refuses_everything() {
        let b = bucket(0, 1, Duration::from_millis(50));
        assert!(!b.take().allowed);
    }

    #[test]
    fn tokens_accrue_continuously() {
        // 5 tokens a second: one every 200ms.
        let b = bucket(1, 5, Duration::from_secs(1));
        assert!(b.take().allowed);
        assert!(!b.take().allowed);
        std::thread::sleep(Duration::from_millis(210));
        assert!(b.take().allowed);
        assert!(!b.take().allowed);
    }

    #[test]
    fn threads_racing_take_exactly_the_tokens_there_are() {
        let b = Arc::new(bucket(10_000, 1, Duration::from_secs(3600)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..5_000).filter(|_| b.take().allowed).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(total, 10_000);
    }
}
