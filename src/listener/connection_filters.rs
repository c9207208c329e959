//! The network filters that run on each new connection before the
//! chain's terminal one — `connection_limit` and `local_ratelimit` — each
//! with one state shared by every shard, as in Envoy.

use crate::config::ConnectionFilter;
use crate::stats::sets::{ConnectionLimit as LimitStat, LocalRateLimit as RateStat};
use crate::stats::{Scope, Store};
use crate::token_bucket::TokenBucket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A chain's connection filters, compiled.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilters(Vec<Filter>);

#[derive(Debug, Clone)]
enum Filter {
    Limit(Arc<Limit>),
    Rate(Arc<Rate>),
}

#[derive(Debug)]
struct Limit {
    max: u64,
    delay: Option<Duration>,
    active: AtomicU64,
    stats: Arc<Scope<LimitStat>>,
}

/// A `local_ratelimit` filter: the bucket every shard takes from (tokens
/// come back continuously, as in Envoy 1.40).
#[derive(Debug)]
struct Rate {
    bucket: TokenBucket,
    stats: Arc<Scope<RateStat>>,
}

/// A connection's places under its chain's connection limits, given back
/// when it closes.
pub struct Admitted {
    limits: Vec<Arc<Limit>>,
    writer: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        for limit in &self.limits {
            limit.active.fetch_sub(1, Ordering::Relaxed);
            limit.stats.dec(self.writer, LimitStat::active_connections);
        }
    }
}

impl ConnectionFilters {
    /// Compiles a chain's filters, their stats in `store`.
    pub fn compile(filters: &[ConnectionFilter], store: &Store) -> Self {
        let compiled = filters.iter().map(|f| match f {
            ConnectionFilter::ConnectionLimit {
                stat_prefix,
                max_connections,
                delay,
            } => Filter::Limit(Arc::new(Limit {
                max: *max_connections,
                delay: *delay,
                active: AtomicU64::new(0),
                stats: store.connection_limit(stat_prefix),
            })),
            ConnectionFilter::LocalRateLimit {
                stat_prefix,
                bucket,
            } => Filter::Rate(Arc::new(Rate {
                bucket: TokenBucket::new(bucket),
                stats: store.local_ratelimit(stat_prefix),
            })),
        });
        ConnectionFilters(compiled.collect())
    }

    /// Runs the filters in order on a new connection (`w`: the shard):
    /// None when one of them closes it (after a connection limit's
    /// `delay`), else its places under the limits.
    pub async fn admit(&self, w: usize) -> Option<Admitted> {
        let mut admitted = Admitted {
            limits: Vec::new(),
            writer: w,
        };
        for filter in &self.0 {
            match filter {
                Filter::Limit(limit) => {
                    let within = limit
                        .active
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            (n < limit.max).then_some(n + 1)
                        })
                        .is_ok();
                    if !within {
                        limit.stats.inc(w, LimitStat::limited_connections);
                        if let Some(delay) = limit.delay {
                            monoio::time::sleep(delay).await;
                        }
                        return None;
                    }
                    limit.stats.inc(w, LimitStat::active_connections);
                    admitted.limits.push(limit.clone());
                }
                Filter::Rate(rate) => {
                    if !rate.bucket.take().allowed {
                        rate.stats.inc(w, RateStat::rate_limited);
                        return None;
                    }
                }
            }
        }
        Some(admitted)
    }
}
