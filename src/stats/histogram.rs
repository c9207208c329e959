//! Per-shard latency histograms (`hdrhistogram`), merged when read.
//!
//! A shard records into its own histograms with no synchronisation. The
//! admin thread asks every shard for copies over a channel and merges them;
//! a shard answers between requests from a small control task that also
//! closes the "interval" window every [`FLUSH_INTERVAL`] (Envoy's default
//! `stats_flush_interval`).

use super::bins::Bins;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an interval histogram collects before it is reported.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Largest value recorded, in microseconds (one hour).
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant figures kept: ±1%, Envoy's own histograms are no finer.
const SIGFIGS: u8 = 2;
/// How long the admin thread waits for a busy shard.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A histogram's index, the same on every shard; resolved at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramId(usize);

/// A dense histogram with the bounds and precision every one has.
pub(super) fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS).expect("constant bounds are valid")
}

/// One histogram's merged data.
pub struct Merged {
    /// Full stat name.
    pub name: String,
    /// What was recorded, if anything was.
    pub recorded: Option<Recorded>,
}

/// A histogram's values: all-time and the last closed interval.
pub struct Recorded {
    /// Every value since start, in microseconds.
    pub cumulative: Bins,
    /// The last closed interval, in microseconds.
    pub interval: Bins,
}

/// What a shard holds of one histogram: its id, cumulative and last
/// interval.
type Part = (usize, Bins, Bins);

/// What the registry asks of a shard's (or the off-shard thread's)
/// histograms.
pub enum Collect {
    /// Their copies, for `/stats`.
    Copies(flume::Sender<Vec<Part>>),
    /// Drop these histograms' data: their owner went (a removed cluster).
    Drop(Arc<[usize]>),
}

/// Histogram names and the channels to reach every shard's histograms.
pub struct Registry {
    names: Mutex<(Vec<String>, HashMap<String, usize>)>,
    /// Histograms no longer shown (their owner went; ids are never reused).
    hidden: Mutex<HashSet<usize>>,
    shards: Mutex<Vec<flume::Sender<Collect>>>,
    /// Where the main thread records (xDS update durations): a thread of
    /// its own holds those histograms, started on first use.
    off_shard: std::sync::OnceLock<flume::Sender<(HistogramId, u64)>>,
}

impl Registry {
    pub(super) fn new(shards: usize) -> Self {
        Registry {
            names: Mutex::default(),
            hidden: Mutex::default(),
            shards: Mutex::new(Vec::with_capacity(shards)),
            off_shard: std::sync::OnceLock::new(),
        }
    }

    /// Records `micros` in histogram `id` from off the shards (the main
    /// thread): a thread of its own keeps them, answering collections and
    /// closing intervals as a shard does.
    pub fn record_off_shard(&self, id: HistogramId, micros: u64) {
        let sender = self.off_shard.get_or_init(|| {
            let (records, recorded) = flume::unbounded::<(HistogramId, u64)>();
            let (collect_tx, collect_rx) = flume::unbounded();
            self.attach(collect_tx);
            let spawned = std::thread::Builder::new()
                .name("ringway-histograms".into())
                .spawn(move || off_shard(&recorded, &collect_rx));
            if let Err(e) = spawned {
                log::warn!("off-shard histograms not kept: {e}");
            }
            records
        });
        let _ = sender.send((id, micros));
    }

    /// The id of histogram `name`, created on first use.
    pub fn id(&self, name: &str) -> HistogramId {
        let mut guard = super::lock(&self.names);
        let (names, by_name) = &mut *guard;
        if let Some(&i) = by_name.get(name) {
            super::lock(&self.hidden).remove(&i);
            return HistogramId(i);
        }
        names.push(name.to_string());
        by_name.insert(name.to_string(), names.len() - 1);
        HistogramId(names.len() - 1)
    }

    /// Forgets histogram `name`, as [`Registry::forget_matching`] does.
    pub fn forget(&self, name: &str) {
        let id = super::lock(&self.names).1.get(name).copied();
        self.hide(id.into_iter().collect());
    }

    /// Stops showing every histogram whose name `owned` accepts, and has
    /// the shards drop what they recorded in them (named again, they
    /// start empty).
    pub fn forget_matching(&self, owned: impl Fn(&str) -> bool) {
        let ids: Arc<[usize]> = {
            let names = super::lock(&self.names);
            let matching = names.0.iter().enumerate().filter(|(_, n)| owned(n));
            matching.map(|(i, _)| i).collect()
        };
        self.hide(ids);
    }

    /// Hides histograms `ids` and has every holder drop their data.
    fn hide(&self, ids: Arc<[usize]>) {
        if ids.is_empty() {
            return;
        }
        super::lock(&self.hidden).extend(ids.iter().copied());
        for shard in super::lock(&self.shards).iter() {
            let _ = shard.send(Collect::Drop(ids.clone()));
        }
    }

    /// Registers a shard's control channel.
    pub fn attach(&self, shard: flume::Sender<Collect>) {
        super::lock(&self.shards).push(shard);
    }

    /// Every histogram merged across shards, sorted by name. A shard that
    /// does not answer in time (or has exited) is left out. Only what a
    /// shard recorded takes memory: a config with 10,000 clusters names
    /// 20,000 histograms, most of them never used.
    pub fn collect(&self) -> Vec<Merged> {
        let names = super::lock(&self.names).0.clone();
        let mut merged: Vec<Merged> = names
            .into_iter()
            .map(|name| Merged {
                name,
                recorded: None,
            })
            .collect();
        let shards = super::lock(&self.shards).clone();
        let replies: Vec<_> = shards
            .iter()
            .filter_map(|s| {
                let (tx, rx) = flume::bounded(1);
                s.send(Collect::Copies(tx)).ok().map(|_| rx)
            })
            .collect();
        for rx in replies {
            let Ok(parts) = rx.recv_timeout(COLLECT_TIMEOUT) else {
                continue;
            };
            for (id, cumulative, interval) in parts {
                let Some(m) = merged.get_mut(id) else {
                    continue;
                };
                match &mut m.recorded {
                    Some(r) => {
                        r.cumulative.add(&cumulative);
                        r.interval.add(&interval);
                    }
                    None => {
                        m.recorded = Some(Recorded {
                            cumulative,
                            interval,
                        })
                    }
                }
            }
        }
        let hidden = super::lock(&self.hidden);
        let mut shown: Vec<Merged> = merged
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !hidden.contains(i))
            .map(|(_, m)| m)
            .collect();
        shown.sort_by(|a, b| a.name.cmp(&b.name));
        shown
    }
}

struct Cells {
    cumulative: Histogram<u64>,
    current: Histogram<u64>,
    last: Histogram<u64>,
}

/// The histograms recorded off the shards, by id: few values each, so
/// only their recorded bins are kept.
#[derive(Default)]
struct OffShard(HashMap<usize, [Bins; 3]>);

impl OffShard {
    fn record(&mut self, id: HistogramId, micros: u64) {
        let [cumulative, current, _] = self.0.entry(id.0).or_default();
        let v = micros.clamp(1, MAX_MICROS);
        cumulative.record(v);
        current.record(v);
    }

    fn rotate(&mut self) {
        for [_, current, last] in self.0.values_mut() {
            *last = std::mem::take(current);
        }
    }

    fn copies(&self) -> Vec<Part> {
        let held = self.0.iter();
        held.map(|(&id, [cumulative, _, last])| (id, cumulative.clone(), last.clone()))
            .collect()
    }
}

/// The off-shard histograms' thread: records, answers collections and
/// closes intervals until the registry goes.
fn off_shard(records: &flume::Receiver<(HistogramId, u64)>, collects: &flume::Receiver<Collect>) {
    let held = RefCell::new(OffShard::default());
    let mut next = std::time::Instant::now() + FLUSH_INTERVAL;
    loop {
        let wait = next.saturating_duration_since(std::time::Instant::now());
        let got = flume::Selector::new()
            .recv(records, |r| {
                r.map(|(id, v)| held.borrow_mut().record(id, v)).is_ok()
            })
            .recv(collects, |c| {
                c.map(|c| match c {
                    Collect::Copies(reply) => {
                        let _ = reply.send(held.borrow().copies());
                    }
                    Collect::Drop(ids) => {
                        let mut held = held.borrow_mut();
                        for id in ids.iter() {
                            held.0.remove(id);
                        }
                    }
                })
                .is_ok()
            })
            .wait_timeout(wait);
        match got {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                held.borrow_mut().rotate();
                next += FLUSH_INTERVAL;
            }
        }
    }
}

/// One shard's histograms, indexed by [`HistogramId`]; each allocated
/// when the shard first records into it.
#[derive(Default)]
pub struct ShardHistograms {
    cells: RefCell<Vec<Option<Box<Cells>>>>,
}

impl ShardHistograms {
    /// Records `value` microseconds in histogram `id`.
    pub fn record(&self, id: HistogramId, micros: u64) {
        if cfg!(feature = "stats-off") {
            return;
        }
        let mut cells = self.cells.borrow_mut();
        if cells.len() <= id.0 {
            cells.resize_with(id.0 + 1, || None);
        }
        let c = cells[id.0].get_or_insert_with(|| {
            Box::new(Cells {
                cumulative: empty(),
                current: empty(),
                last: empty(),
            })
        });
        let v = micros.clamp(1, MAX_MICROS);
        c.cumulative.saturating_record(v);
        c.current.saturating_record(v);
    }

    /// Closes the current interval.
    fn rotate(&self) {
        for c in self.cells.borrow_mut().iter_mut().flatten() {
            std::mem::swap(&mut c.current, &mut c.last);
            c.current.reset();
        }
    }

    fn copies(&self) -> Vec<Part> {
        let cells = self.cells.borrow();
        let recorded = cells.iter().enumerate();
        recorded
            .filter_map(|(id, c)| {
                let c = c.as_ref()?;
                Some((id, Bins::of(&c.cumulative), Bins::of(&c.last)))
            })
            .collect()
    }

    /// The shard's control task: answers collection requests and closes
    /// intervals, until the shard stops.
    pub async fn serve(&self, requests: flume::Receiver<Collect>) {
        let mut next = monoio::time::Instant::now() + FLUSH_INTERVAL;
        loop {
            let request = monoio::select! {
                r = requests.recv_async() => r.ok(),
                _ = monoio::time::sleep_until(next) => {
                    self.rotate();
                    next += FLUSH_INTERVAL;
                    continue;
                }
            };
            match request {
                Some(Collect::Copies(reply)) => {
                    let _ = reply.send(self.copies());
                }
                Some(Collect::Drop(ids)) => {
                    let mut cells = self.cells.borrow_mut();
                    for &id in ids.iter() {
                        if let Some(c) = cells.get_mut(id) {
                            *c = None;
                        }
                    }
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded values of histogram `name`, as `/stats` collects them.
    fn recorded(registry: &Registry, name: &str) -> Option<u64> {
        let all = registry.collect();
        let h = all.into_iter().find(|m| m.name == name)?;
        Some(h.recorded.map_or(0, |r| r.cumulative.len()))
    }

    /// A forgotten histogram is not shown, and named again it starts
    /// empty: what was recorded in it went with its owner.
    #[test]
    fn forgotten_histograms_drop_their_data() {
        let registry = Registry::new(0);
        let id = registry.id("cluster.gone.update_duration");
        registry.record_off_shard(id, 250);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while recorded(&registry, "cluster.gone.update_duration") != Some(1) {
            assert!(std::time::Instant::now() < deadline, "never recorded");
            std::thread::sleep(Duration::from_millis(10));
        }
        registry.forget_matching(|n| n.starts_with("cluster.gone."));
        assert_eq!(recorded(&registry, "cluster.gone.update_duration"), None);
        registry.id("cluster.gone.update_duration");
        assert_eq!(recorded(&registry, "cluster.gone.update_duration"), Some(0));
    }
}
