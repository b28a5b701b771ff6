//! The stateful front of the engine: evaluates events against a [`RuleSet`], feeds matches to
//! correlations, and turns everything into [`Alert`]s. One per evaluating thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::alert::{Alert, AlertKind, CorrelationHit};
use super::correlation::engine::{CorrState, Limits, Stats};
use super::correlation::{FieldSource, Source};
use super::eval::Scratch;
use super::fields::{EventFields, FieldValue};
use super::ioc::IocHit;
use super::ruleset::RuleSet;

/// Evaluates events and keeps correlation state.
#[derive(Debug)]
pub struct Detector {
    rules: Arc<RuleSet>,
    scratch: Scratch,
    states: Vec<CorrState>,
    limits: Limits,
    stats: Stats,
    matched: Vec<usize>,
    ioc_hits: Vec<IocHit>,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn text(v: &FieldValue<'_>) -> String {
    let mut out = String::new();
    let mut first = true;
    v.for_each(|s| {
        if !first {
            out.push(',');
        }
        first = false;
        s.write_text(&mut out);
    });
    out
}

/// Where group-by values come from for one fed match.
enum Origin<'a> {
    Event(&'a dyn EventFields),
    Upstream(&'a CorrelationHit),
}

impl Origin<'_> {
    fn value(&self, rules: &RuleSet, f: &FieldSource) -> Option<String> {
        match (self, f) {
            (Origin::Event(ev), FieldSource::Event(id)) => {
                let field = rules.fields().fields().get(id.index())?;
                let v = ev.get(field);
                v.exists().then(|| text(&v))
            }
            (Origin::Upstream(hit), FieldSource::Upstream(name)) => {
                hit.group.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
            }
            _ => None,
        }
    }
}

impl Detector {
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Self::with_limits(rules, Limits::default())
    }

    pub fn with_limits(rules: Arc<RuleSet>, limits: Limits) -> Self {
        let states = rules.correlations.iter().map(|_| CorrState::default()).collect();
        Self {
            rules,
            scratch: Scratch::new(),
            states,
            limits,
            stats: Stats::default(),
            matched: Vec::new(),
            ioc_hits: Vec::new(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Correlation state counters (for metrics).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Groups currently held across all correlations.
    pub fn correlation_groups(&self) -> usize {
        self.states.iter().map(CorrState::len).sum()
    }

    /// Hot reload: switches to `rules`. Correlations whose definition did not change keep their
    /// state; the others start empty.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        let mut old: HashMap<String, CorrState> =
            self.rules.correlations.iter().map(|c| c.fingerprint()).zip(std::mem::take(&mut self.states)).collect();
        self.states = rules.correlations.iter().map(|c| old.remove(&c.fingerprint()).unwrap_or_default()).collect();
        self.rules = rules;
    }

    /// Evaluates one event, appending its alerts to `out`: rule matches (see
    /// [`Alert::standalone`]), IoC hits, and correlations that fire on it.
    pub fn evaluate(&mut self, ev: &dyn EventFields, out: &mut Vec<Alert>) {
        let rules = Arc::clone(&self.rules);
        let ts = ev.timestamp_ns().unwrap_or_else(now_ns);
        self.matched.clear();
        self.ioc_hits.clear();
        rules.match_event(ev, &mut self.scratch, &mut self.matched, &mut self.ioc_hits);
        for hit in self.ioc_hits.drain(..) {
            if let Some(list) = rules.iocs.lists.get(hit.list) {
                out.push(Alert {
                    rule: Arc::clone(&list.meta),
                    kind: AlertKind::Ioc { field: hit.field.to_owned(), value: hit.value, indicator: hit.indicator },
                    timestamp_ns: ts,
                    standalone: true,
                });
            }
        }
        let matched = std::mem::take(&mut self.matched);
        for &ri in &matched {
            let Some(rule) = rules.rules().get(ri) else { continue };
            out.push(Alert {
                rule: Arc::clone(&rule.meta),
                kind: AlertKind::Rule,
                timestamp_ns: ts,
                standalone: rules.rule_standalone.get(ri).copied().unwrap_or(true),
            });
            if let Some(feeds) = rules.rule_feeds.get(ri) {
                for &(ci, si) in feeds {
                    self.feed(&rules, ci, si, &Origin::Event(ev), ts, out);
                }
            }
        }
        self.matched = matched;
    }

    /// Feeds one match to a correlation, and any correlation alerts on down the chain.
    fn feed(&mut self, rules: &RuleSet, ci: usize, si: usize, origin: &Origin<'_>, ts: u64, out: &mut Vec<Alert>) {
        let Some(def) = rules.correlations.get(ci) else { return };
        let key: Vec<String> = def
            .group
            .get(si)
            .map(|fs| fs.iter().map(|f| origin.value(rules, f).unwrap_or_default()).collect())
            .unwrap_or_default();
        let value = def.value.get(si).and_then(|fs| {
            let vals: Vec<String> = fs.iter().filter_map(|f| origin.value(rules, f)).collect();
            (!vals.is_empty() && vals.len() == fs.len()).then(|| vals.join("\u{1f}"))
        });
        let mut hits = Vec::new();
        if let Some(state) = self.states.get_mut(ci) {
            state.feed(def, si, key, value, ts, &self.limits, &mut self.stats, &mut hits);
        }
        self.emit(rules, ci, hits, out);
    }

    fn emit(&mut self, rules: &RuleSet, ci: usize, hits: Vec<CorrelationHit>, out: &mut Vec<Alert>) {
        let Some(def) = rules.correlations.get(ci) else { return };
        for hit in hits {
            let ts = hit.last_ns;
            if let Some(feeds) = rules.corr_feeds.get(ci) {
                for &(next, si) in feeds {
                    // Chains are acyclic (checked at load), so this recursion is bounded.
                    if matches!(
                        rules.correlations.get(next).and_then(|c| c.sources.get(si)),
                        Some(Source::Correlation(_))
                    ) {
                        self.feed(rules, next, si, &Origin::Upstream(&hit), ts, out);
                    }
                }
            }
            out.push(Alert {
                rule: Arc::clone(&def.meta),
                kind: AlertKind::Correlation(hit),
                timestamp_ns: ts,
                standalone: rules.corr_standalone.get(ci).copied().unwrap_or(true),
            });
        }
    }

    /// Decides correlation windows that have closed by `now_ns` (conditions with an upper bound
    /// such as `lt`), and drops idle state. Call periodically (every second or so).
    pub fn flush(&mut self, now_ns: u64, out: &mut Vec<Alert>) {
        let rules = Arc::clone(&self.rules);
        for ci in 0..rules.correlations.len() {
            let mut hits = Vec::new();
            if let (Some(def), Some(state)) = (rules.correlations.get(ci), self.states.get_mut(ci)) {
                state.flush(def, now_ns, &mut hits);
            }
            self.emit(&rules, ci, hits, out);
        }
    }
}
