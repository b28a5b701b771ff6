//! Streaming evaluation of correlations over timestamped matches, with bounded state.
//!
//! State is kept per correlation and per group (the `group-by` values). Memory is bounded three
//! ways: at most [`Limits::max_groups`] groups per correlation (the least recently seen group is
//! evicted first), at most [`Limits::max_values`] remembered values or timestamps per group, and
//! groups idle for longer than the timespan are dropped as time advances.
//!
//! Conditions with only lower bounds (`gte: 10`) fire as soon as they hold over a sliding window
//! and the group starts afresh; conditions with an upper bound or `eq` (`lt: 5`) can only be decided
//! when a window closes, so those windows are tumbling: they start at a group's first match and are
//! decided by a later match of the group or by [`CorrelationState::flush`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{CompiledCorrelation, CorrelationType, TemporalCondition};
use crate::detect::alert::CorrelationHit;

/// Bounds on correlation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups kept per correlation.
    pub max_groups: usize,
    /// Timestamps (event_count) or distinct values (value_count) kept per group. An event_count
    /// threshold above it is counted in tumbling windows instead of a sliding one; a value_count
    /// threshold above it cannot be reached.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_groups: 10_000, max_values: 1_000 }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Groups evicted because a correlation reached `max_groups`.
    pub evicted_groups: u64,
    /// Values not remembered because a group reached `max_values`.
    pub dropped_values: u64,
}

#[derive(Debug)]
enum Data {
    /// event_count, sliding: the most recent timestamps (at most the number needed).
    Times(VecDeque<u64>),
    /// event_count, tumbling window.
    Count { start: u64, count: u64 },
    /// value_count: value → time last seen (sliding) or first seen (tumbling, from `start`).
    Values { start: u64, values: HashMap<String, u64> },
    /// temporal: when each referenced rule last matched.
    Seen(Vec<Option<u64>>),
    /// temporal_ordered: for step k, the latest start of a sequence that has completed steps 0..=k.
    Progress(Vec<Option<u64>>),
}

#[derive(Debug)]
struct Group {
    last: u64,
    seq: u64,
    first: u64,
    /// Bit s: source s contributed (sources beyond 128 are not tracked individually).
    contributed: u128,
    data: Data,
}

/// The state of one correlation.
#[derive(Debug, Default)]
pub(crate) struct CorrState {
    groups: HashMap<Vec<String>, Group>,
    lru: BTreeMap<(u64, u64), Vec<String>>,
    seq: u64,
}

fn windowed(def: &CompiledCorrelation) -> bool {
    matches!(def.kind, CorrelationType::EventCount | CorrelationType::ValueCount) && !def.bounds.eager()
}

/// event_count with a lower bound too high to keep every timestamp: counted per tumbling window,
/// firing as soon as the count is reached.
fn eager_count(def: &CompiledCorrelation, limits: &Limits) -> bool {
    def.kind == CorrelationType::EventCount
        && def.bounds.eager()
        && usize::try_from(def.bounds.needed()).map_or(true, |n| n > limits.max_values.max(1))
}

fn hit(def: &CompiledCorrelation, key: &[String], g: &Group, count: u64, last: u64) -> CorrelationHit {
    CorrelationHit {
        group: def.group_names.iter().cloned().zip(key.iter().cloned()).collect(),
        count,
        first_ns: g.first.min(last),
        last_ns: last,
        rules: def
            .source_keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 128 || g.contributed & (1u128 << i) != 0)
            .map(|(_, k)| k.clone())
            .collect(),
    }
}

/// Decides a closed tumbling window.
fn close(def: &CompiledCorrelation, key: &[String], g: &Group, out: &mut Vec<CorrelationHit>) {
    let (n, end) = match &g.data {
        Data::Count { count, start } => (*count, start.saturating_add(def.timespan_ns)),
        Data::Values { values, start } => (values.len() as u64, start.saturating_add(def.timespan_ns)),
        _ => return,
    };
    if def.bounds.holds(n) {
        out.push(hit(def, key, g, n, g.last.min(end)));
    }
}

impl CorrState {
    fn touch(&mut self, key: &[String], old: (u64, u64), new: (u64, u64)) {
        if old != new {
            self.lru.remove(&old);
            self.lru.insert(new, key.to_vec());
        }
    }

    fn remove(&mut self, key: &[String]) -> Option<Group> {
        let g = self.groups.remove(key)?;
        self.lru.remove(&(g.last, g.seq));
        Some(g)
    }

    /// Drops groups idle for longer than the timespan before `now` (deciding tumbling windows).
    fn expire(&mut self, def: &CompiledCorrelation, now: u64, out: &mut Vec<CorrelationHit>) {
        let horizon = now.saturating_sub(def.timespan_ns);
        while let Some((&(last, _), _)) = self.lru.first_key_value() {
            if last >= horizon {
                break;
            }
            let Some((_, key)) = self.lru.pop_first() else { break };
            if let Some(g) = self.groups.remove(&key) {
                if windowed(def) {
                    close(def, &key, &g, out);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Feeds one match of source `source` in group `key` at time `ts`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn feed(
        &mut self,
        def: &CompiledCorrelation,
        source: usize,
        key: Vec<String>,
        value: Option<String>,
        ts: u64,
        limits: &Limits,
        stats: &mut Stats,
        out: &mut Vec<CorrelationHit>,
    ) {
        self.expire(def, ts, out);
        if def.kind == CorrelationType::ValueCount && value.is_none() {
            return;
        }
        if !self.groups.contains_key(&key) {
            while self.groups.len() >= limits.max_groups.max(1) {
                let Some((_, victim)) = self.lru.pop_first() else { break };
                self.groups.remove(&victim);
                stats.evicted_groups += 1;
            }
            let n = def.sources.len();
            let data = match def.kind {
                CorrelationType::EventCount if windowed(def) || eager_count(def, limits) => {
                    Data::Count { start: ts, count: 0 }
                }
                CorrelationType::EventCount => Data::Times(VecDeque::new()),
                CorrelationType::ValueCount => Data::Values { start: ts, values: HashMap::new() },
                CorrelationType::Temporal => Data::Seen(vec![None; n]),
                CorrelationType::TemporalOrdered => Data::Progress(vec![None; n]),
            };
            self.seq += 1;
            let g = Group { last: ts, seq: self.seq, first: ts, contributed: 0, data };
            self.lru.insert((g.last, g.seq), key.clone());
            self.groups.insert(key.clone(), g);
        }
        let Some(g) = self.groups.get_mut(&key) else { return };
        let old = (g.last, g.seq);

        // A tumbling window that has closed is decided before this match opens the next one.
        let expired_window = match &g.data {
            Data::Count { start, .. } | Data::Values { start, .. } if windowed(def) || eager_count(def, limits) => {
                ts > start.saturating_add(def.timespan_ns)
            }
            _ => false,
        };
        if expired_window {
            if windowed(def) {
                close(def, &key, g, out);
            }
            g.first = ts;
            g.contributed = 0;
            match &mut g.data {
                Data::Count { start, count } => {
                    *start = ts;
                    *count = 0;
                }
                Data::Values { start, values } => {
                    *start = ts;
                    values.clear();
                }
                _ => {}
            }
        }

        if source < 128 {
            g.contributed |= 1u128 << source;
        }
        g.last = g.last.max(ts);
        let horizon = ts.saturating_sub(def.timespan_ns);
        let cap = limits.max_values.max(1);
        let mut fired: Option<u64> = None;
        match &mut g.data {
            Data::Times(times) => {
                times.push_back(ts);
                while times.front().is_some_and(|&t| t < horizon) {
                    times.pop_front();
                }
                let keep = usize::try_from(def.bounds.needed()).unwrap_or(usize::MAX).min(cap);
                while times.len() > keep {
                    times.pop_front();
                }
                g.first = times.front().copied().unwrap_or(ts);
                let n = times.len() as u64;
                if def.bounds.holds(n) {
                    fired = Some(n);
                }
            }
            Data::Count { count, .. } => {
                *count += 1;
                if !windowed(def) && def.bounds.holds(*count) {
                    fired = Some(*count);
                }
            }
            Data::Values { values, .. } => {
                let v = value.unwrap_or_default();
                if windowed(def) {
                    // Past the ceiling the condition cannot hold any more: no need to remember.
                    let ceiling = def.bounds.ceiling().map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
                    if values.contains_key(&v) || values.len() <= ceiling && values.len() < cap {
                        values.entry(v).or_insert(ts);
                    } else if values.len() >= cap {
                        stats.dropped_values += 1;
                    }
                } else {
                    values.insert(v, ts);
                    values.retain(|_, t| *t >= horizon);
                    let keep = usize::try_from(def.bounds.needed()).unwrap_or(usize::MAX).min(cap);
                    while values.len() > keep {
                        let Some(oldest) = values.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) else {
                            break;
                        };
                        values.remove(&oldest);
                    }
                    g.first = values.values().copied().min().unwrap_or(ts);
                    let n = values.len() as u64;
                    if def.bounds.holds(n) {
                        fired = Some(n);
                    }
                }
            }
            Data::Seen(seen) => {
                if let Some(s) = seen.get_mut(source) {
                    *s = Some(ts);
                }
                for s in seen.iter_mut() {
                    if s.is_some_and(|t| t < horizon) {
                        *s = None;
                    }
                }
                let n = seen.iter().filter(|s| s.is_some()).count() as u64;
                let ok = match &def.temporal {
                    TemporalCondition::All => n == seen.len() as u64,
                    TemporalCondition::Count(b) => b.holds(n),
                    TemporalCondition::Expr(e) => e.eval(&mut |i| seen.get(i).is_some_and(Option::is_some)),
                };
                if ok {
                    g.first = seen.iter().flatten().copied().min().unwrap_or(ts);
                    g.contributed = seen
                        .iter()
                        .enumerate()
                        .filter(|(i, s)| *i < 128 && s.is_some())
                        .fold(0, |acc, (i, _)| acc | (1u128 << i));
                    fired = Some(n);
                }
            }
            Data::Progress(progress) => {
                for p in progress.iter_mut() {
                    if p.is_some_and(|start| start < horizon) {
                        *p = None;
                    }
                }
                if source == 0 {
                    if let Some(p) = progress.get_mut(0) {
                        *p = Some(p.map_or(ts, |s| s.max(ts)));
                    }
                } else if let Some(Some(start)) = progress.get(source - 1).copied() {
                    if let Some(p) = progress.get_mut(source) {
                        *p = Some(p.map_or(start, |s| s.max(start)));
                    }
                }
                if let Some(Some(start)) = progress.last().copied() {
                    g.first = start;
                    fired = Some(progress.len() as u64);
                }
            }
        }
        let new = (g.last, g.seq);
        if let Some(n) = fired {
            out.push(hit(def, &key, g, n, ts));
            self.remove(&key);
            // remove() looked up the new LRU key; make sure the old one is gone too.
            self.lru.remove(&old);
        } else {
            self.touch(&key, old, new);
        }
    }

    /// Decides tumbling windows that have closed by `now` and drops idle groups.
    pub(crate) fn flush(&mut self, def: &CompiledCorrelation, now: u64, out: &mut Vec<CorrelationHit>) {
        if windowed(def) {
            let closed: Vec<Vec<String>> = self
                .groups
                .iter()
                .filter(|(_, g)| match &g.data {
                    Data::Count { start, .. } | Data::Values { start, .. } => {
                        now > start.saturating_add(def.timespan_ns)
                    }
                    _ => false,
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in closed {
                if let Some(g) = self.remove(&k) {
                    close(def, &k, &g, out);
                }
            }
        }
        self.expire(def, now, out);
    }
}
