//! A compiled, immutable set of rules, correlations and IoC lists, loaded from directories.
//!
//! Loading never fails as a whole: each broken file is reported (file, line, column, reason) and
//! the good files load. On [`RuleSet::reload`], a file that is broken now keeps running in the
//! version the previous set had loaded. The set is `Send + Sync`; hot reload swaps an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{compile_rule, CompiledRule, FieldTable};
use super::correlation::{CompiledCorrelation, CorrelationDoc, FieldSource, Source};
use super::error::{NotApplicable, RuleError, RuleWarning};
use super::eval::{Ctx, Scratch};
use super::fields::{Category, EventFields};
use super::ioc::{IocHit, IocSet};
use super::loader::{find_files, parse_file, read, FileDocs};
use super::mapping::{resolve, Target};
use super::prefilter::Prefilter;
use super::sigma::{RuleDoc, RuleMeta};
use super::yaml::Pos;

/// What happened while loading.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Rule files found.
    pub files: usize,
    pub rules: usize,
    pub correlations: usize,
    pub ioc_lists: usize,
    pub errors: Vec<RuleError>,
    pub not_applicable: Vec<NotApplicable>,
    pub warnings: Vec<RuleWarning>,
    /// Files that are broken now and still run in their previous version.
    pub kept_previous: Vec<PathBuf>,
}

impl LoadReport {
    /// No errors (not-applicable rules and warnings are fine).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// Indices into `RuleSet::rules`.
    rules: Vec<usize>,
    prefilter: Prefilter,
}

/// Rules compiled for evaluation.
#[derive(Debug, Default)]
pub struct RuleSet {
    table: FieldTable,
    rules: Vec<CompiledRule>,
    buckets: Vec<Bucket>,
    pub(crate) iocs: IocSet,
    pub(crate) correlations: Vec<CompiledCorrelation>,
    /// Rule index → (correlation, source index) it feeds.
    pub(crate) rule_feeds: Vec<Vec<(usize, usize)>>,
    /// Correlation index → (correlation, source index) it feeds.
    pub(crate) corr_feeds: Vec<Vec<(usize, usize)>>,
    pub(crate) rule_standalone: Vec<bool>,
    pub(crate) corr_standalone: Vec<bool>,
    /// The text of every file loaded, for reload fallback.
    sources: BTreeMap<PathBuf, Arc<str>>,
    paths: Vec<PathBuf>,
    /// The field table by path, for typed events ([`super::flat`]); built on first use.
    flat: std::sync::OnceLock<super::flat::Paths>,
}

enum Ref {
    Rule(usize),
    Corr(usize),
    Skipped(String),
}

impl RuleSet {
    /// Loads every rule file under `paths` (directories are searched recursively).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> (RuleSet, LoadReport) {
        Self::load_with(paths, None)
    }

    /// Loads again (after a file change or SIGHUP): a file that is broken now keeps its version
    /// from `self`; everything else is read afresh.
    pub fn reload(&self) -> (RuleSet, LoadReport) {
        Self::load_with(&self.paths, Some(self))
    }

    /// The paths this set was loaded from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Builds a set from in-memory files `(name, text)` (tests, `rules test`).
    pub fn from_sources<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> (RuleSet, LoadReport) {
        let mut report = LoadReport::default();
        let mut parsed = Vec::new();
        for (name, text) in files {
            report.files += 1;
            let path = PathBuf::from(name);
            match parse_file(&path, text) {
                Ok(docs) => parsed.push((path, Arc::<str>::from(text), docs)),
                Err(errs) => report.errors.extend(errs),
            }
        }
        (Self::build(parsed, Vec::new(), &mut report), report)
    }

    fn load_with<P: AsRef<Path>>(paths: &[P], prev: Option<&RuleSet>) -> (RuleSet, LoadReport) {
        let mut report = LoadReport::default();
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_owned()).collect();
        let files = find_files(&paths, &mut report.errors);
        report.files = files.len();
        let mut parsed = Vec::new();
        for path in files {
            let result = read(&path).map_err(|e| vec![e]).and_then(|text| {
                let docs = parse_file(&path, &text)?;
                Ok((Arc::<str>::from(text), docs))
            });
            match result {
                Ok((text, docs)) => parsed.push((path, text, docs)),
                Err(errs) => {
                    report.errors.extend(errs);
                    let old = prev.and_then(|p| p.sources.get(&path));
                    if let Some(old) = old {
                        if let Ok(docs) = parse_file(&path, old) {
                            parsed.push((path.clone(), old.clone(), docs));
                            report.kept_previous.push(path);
                        }
                    }
                }
            }
        }
        (Self::build(parsed, paths, &mut report), report)
    }

    fn build(files: Vec<(PathBuf, Arc<str>, FileDocs)>, paths: Vec<PathBuf>, report: &mut LoadReport) -> RuleSet {
        let mut set = RuleSet { paths, ..RuleSet::default() };
        let mut rule_docs: Vec<RuleDoc> = Vec::new();
        let mut corr_docs: Vec<CorrelationDoc> = Vec::new();
        let mut iocs = Vec::new();
        let mut refs: HashMap<String, Ref> = HashMap::new();
        let mut seen_ids: HashMap<String, (PathBuf, usize)> = HashMap::new();

        // Duplicate ids/names: the later document is rejected.
        let mut claim = |meta: &RuleMeta, report: &mut LoadReport| -> bool {
            for key in [meta.id.as_deref(), meta.name.as_deref()].into_iter().flatten() {
                if let Some((p, line)) = seen_ids.get(key) {
                    report.errors.push(RuleError::at(
                        &meta.path,
                        Pos::new(meta.line, 1),
                        format!("`{key}` is already used by {}:{line}", p.display()),
                    ));
                    return false;
                }
            }
            for key in [meta.id.as_deref(), meta.name.as_deref()].into_iter().flatten() {
                seen_ids.insert(key.to_owned(), (meta.path.clone(), meta.line));
            }
            true
        };

        for (path, text, docs) in files {
            set.sources.insert(path.clone(), text);
            let file = |pos: Pos| (path.clone(), pos);
            for (pos, message) in docs.warnings {
                let (path, pos) = file(pos);
                report.warnings.push(RuleWarning { path, line: pos.line, column: pos.column, message });
            }
            for s in docs.skipped {
                if !claim(&s.meta, report) {
                    continue;
                }
                for key in [s.meta.id.clone(), s.meta.name.clone()].into_iter().flatten() {
                    refs.insert(key, Ref::Skipped(s.reason.clone()));
                }
                report.not_applicable.push(NotApplicable {
                    path: s.meta.path.clone(),
                    line: s.pos.line,
                    rule_id: s.meta.id.clone(),
                    title: s.meta.title.clone(),
                    reason: s.reason,
                });
            }
            for r in docs.rules {
                if claim(&r.meta, report) {
                    for key in [r.meta.id.clone(), r.meta.name.clone()].into_iter().flatten() {
                        refs.insert(key, Ref::Rule(rule_docs.len()));
                    }
                    rule_docs.push(r);
                }
            }
            for c in docs.correlations {
                if claim(&c.meta, report) {
                    for key in [c.meta.id.clone(), c.meta.name.clone()].into_iter().flatten() {
                        refs.insert(key, Ref::Corr(corr_docs.len()));
                    }
                    corr_docs.push(c);
                }
            }
            for l in docs.iocs {
                if claim(&l.meta, report) {
                    iocs.push(l);
                }
            }
        }

        let mut warnings = Vec::new();
        for doc in rule_docs {
            let path = doc.meta.path.clone();
            let rule = compile_rule(doc, &mut set.table, &mut warnings);
            for (pos, message) in warnings.drain(..) {
                report.warnings.push(RuleWarning { path: path.clone(), line: pos.line, column: pos.column, message });
            }
            set.rules.push(rule);
        }

        set.resolve_correlations(corr_docs, &refs, report);

        // Index rules by category, with a literal prefilter per category.
        set.buckets = Category::ALL.iter().map(|_| Bucket::default()).collect();
        for (i, r) in set.rules.iter().enumerate() {
            if let Some(b) = set.buckets.get_mut(r.category.index()) {
                b.rules.push(i);
            }
        }
        for b in &mut set.buckets {
            let reqs: Vec<&[_]> =
                b.rules.iter().map(|&i| set.rules.get(i).map_or(&[][..], |r| r.required.as_slice())).collect();
            b.prefilter = Prefilter::build(&reqs);
        }
        set.iocs = IocSet::new(iocs, &mut set.table);
        report.rules = set.rules.len();
        report.correlations = set.correlations.len();
        report.ioc_lists = set.iocs.lists.len();
        set
    }

    fn resolve_correlations(
        &mut self,
        docs: Vec<CorrelationDoc>,
        refs: &HashMap<String, Ref>,
        report: &mut LoadReport,
    ) {
        // A correlation is usable if all its references resolve to usable rules or correlations;
        // iterate to a fixpoint for chains.
        let n = docs.len();
        // Per document: undecided, usable, or (where, why, merely not applicable).
        type Verdict = Option<Result<(), (Pos, String, bool)>>;
        let mut state: Vec<Verdict> = vec![None; n];
        loop {
            let mut changed = false;
            for (i, d) in docs.iter().enumerate() {
                if state[i].is_some() {
                    continue;
                }
                let mut verdict = Some(Ok(()));
                for (r, pos) in &d.rules {
                    match refs.get(r) {
                        None => {
                            verdict = Some(Err((*pos, format!("`{r}` is not the id or name of a loaded rule"), false)))
                        }
                        Some(Ref::Skipped(why)) => {
                            verdict = Some(Err((*pos, format!("references `{r}`, which does not apply: {why}"), true)))
                        }
                        Some(Ref::Rule(_)) => {}
                        Some(Ref::Corr(j)) if *j == i => {
                            verdict = Some(Err((*pos, "a correlation cannot reference itself".into(), false)))
                        }
                        Some(Ref::Corr(j)) => match &state[*j] {
                            None => {
                                if verdict.as_ref().is_some_and(Result::is_ok) {
                                    verdict = None;
                                }
                            }
                            Some(Ok(())) => {}
                            Some(Err((_, why, na))) => {
                                verdict = Some(Err((*pos, format!("references `{r}`, which is unusable: {why}"), *na)))
                            }
                        },
                    }
                    if matches!(verdict, Some(Err(_))) {
                        break;
                    }
                }
                if verdict.is_some() {
                    state[i] = verdict;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Whatever is still undecided is part of a cycle.
        let mut index_of = vec![None; n];
        let mut usable = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            match state[i].take() {
                Some(Ok(())) => {
                    index_of[i] = Some(usable.len());
                    usable.push(i);
                }
                Some(Err((pos, why, true))) => report.not_applicable.push(NotApplicable {
                    path: d.meta.path.clone(),
                    line: pos.line,
                    rule_id: d.meta.id.clone(),
                    title: d.meta.title.clone(),
                    reason: why,
                }),
                Some(Err((pos, why, false))) => report.errors.push(RuleError::at(&d.meta.path, pos, why)),
                None => report.errors.push(RuleError::at(
                    &d.meta.path,
                    d.pos,
                    "correlations reference each other in a cycle".to_owned(),
                )),
            }
        }
        self.rule_feeds = vec![Vec::new(); self.rules.len()];
        self.corr_feeds = vec![Vec::new(); usable.len()];
        let mut rule_generate = vec![None::<bool>; self.rules.len()];
        let mut corr_generate = vec![None::<bool>; usable.len()];
        for (ci, &di) in usable.iter().enumerate() {
            let d = &docs[di];
            let mut sources = Vec::new();
            let mut group = Vec::new();
            let mut value = Vec::new();
            for (si, (r, _)) in d.rules.iter().enumerate() {
                let src = match refs.get(r) {
                    Some(Ref::Rule(k)) => Source::Rule(*k),
                    Some(Ref::Corr(j)) => match index_of.get(*j).copied().flatten() {
                        Some(x) => Source::Correlation(x),
                        None => continue,
                    },
                    _ => continue,
                };
                let field_for = |name: &str, table: &mut FieldTable| -> FieldSource {
                    // An alias names the field per referenced rule.
                    let aliased = d
                        .aliases
                        .iter()
                        .find(|(a, _)| a == name)
                        .and_then(|(_, per)| per.iter().find(|(rule, _)| rule == r).map(|(_, f)| f.as_str()));
                    let fname = aliased.unwrap_or(name);
                    match src {
                        Source::Rule(k) => {
                            let cat = self.rules.get(k).map(|x| x.category);
                            let path = match resolve(fname, cat).target {
                                Target::Path(p) => p,
                                Target::Hashes(p) => p.to_owned(),
                                Target::Initiated => "network.direction".to_owned(),
                            };
                            FieldSource::Event(table.intern(&path))
                        }
                        Source::Correlation(_) => FieldSource::Upstream(name.to_owned()),
                    }
                };
                group.push(d.group_by.iter().map(|g| field_for(g, &mut self.table)).collect());
                value.push(d.value_fields.iter().map(|g| field_for(g, &mut self.table)).collect());
                match src {
                    Source::Rule(k) => {
                        if let Some(f) = self.rule_feeds.get_mut(k) {
                            f.push((ci, si));
                        }
                        if let Some(g) = rule_generate.get_mut(k) {
                            *g = Some(g.unwrap_or(false) || d.generate);
                        }
                    }
                    Source::Correlation(x) => {
                        if let Some(f) = self.corr_feeds.get_mut(x) {
                            f.push((ci, si));
                        }
                        if let Some(g) = corr_generate.get_mut(x) {
                            *g = Some(g.unwrap_or(false) || d.generate);
                        }
                    }
                }
                sources.push(src);
            }
            self.correlations.push(CompiledCorrelation {
                meta: Arc::new(d.meta.clone()),
                kind: d.kind,
                timespan_ns: d.timespan_ns,
                sources,
                source_keys: d.rules.iter().map(|(r, _)| r.clone()).collect(),
                group_names: d.group_by.clone(),
                group,
                value,
                bounds: d.bounds.clone(),
                temporal: d.temporal.clone(),
                generate: d.generate,
            });
        }
        self.rule_standalone = rule_generate.iter().map(|g| g.unwrap_or(true)).collect();
        self.corr_standalone = corr_generate.iter().map(|g| g.unwrap_or(true)).collect();
    }

    /// Detection rules, in load order (file path order, then document order).
    /// Nothing to raise: no rules, IoC entries or correlations.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.iocs.is_empty() && self.correlations.is_empty()
    }

    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn correlations(&self) -> &[CompiledCorrelation] {
        &self.correlations
    }

    pub fn fields(&self) -> &FieldTable {
        &self.table
    }

    /// The fields rules read, by path: what a typed event flattens itself to.
    pub fn flat_paths(&self) -> &super::flat::Paths {
        self.flat.get_or_init(|| super::flat::Paths::new(self.table.fields()))
    }

    /// Rules evaluated for every event of a category because they have no literal to prefilter on.
    pub fn unfiltered_rules(&self, c: Category) -> usize {
        self.buckets.get(c.index()).map_or(0, |b| b.prefilter.unfiltered())
    }

    /// Like [`RuleSet::match_event`] without the prefilter: every rule of the event's category is
    /// evaluated (tests check the prefilter never drops a match).
    #[cfg(test)]
    pub(crate) fn match_event_unfiltered(&self, ev: &dyn EventFields, scratch: &mut Scratch) -> (Vec<usize>, usize) {
        let mut ctx = Ctx::new(ev, self.table.fields(), scratch);
        let mut out = Vec::new();
        let Some(bucket) = ev.category().and_then(|c| self.buckets.get(c.index())) else { return (out, 0) };
        for &ri in &bucket.rules {
            if self.rules.get(ri).is_some_and(|r| r.matches(&mut ctx)) {
                out.push(ri);
            }
        }
        (out, bucket.rules.len())
    }

    /// How many rules the prefilter lets through for `ev` (tests).
    #[cfg(test)]
    pub(crate) fn candidate_count(&self, ev: &dyn EventFields, scratch: &mut Scratch) -> usize {
        let (mut bits, mut tmp) = (Vec::new(), super::prefilter::Bits::default());
        let mut ctx = Ctx::new(ev, self.table.fields(), scratch);
        match ev.category().and_then(|c| self.buckets.get(c.index())) {
            Some(b) => {
                b.prefilter.candidates(&mut ctx, &mut bits, &mut tmp);
                bits.iter().map(|w| w.count_ones() as usize).sum()
            }
            None => 0,
        }
    }

    /// Indices (into [`RuleSet::rules`]) of the detection rules that match `ev`, ascending, and
    /// the IoC hits. Stateless: correlations are the [`super::Detector`]'s business.
    pub fn match_event(
        &self,
        ev: &dyn EventFields,
        scratch: &mut Scratch,
        rules: &mut Vec<usize>,
        iocs: &mut Vec<IocHit>,
    ) {
        let mut bits = std::mem::take(&mut scratch.bits);
        let mut tmp = std::mem::take(&mut scratch.prefilter);
        {
            let mut ctx = Ctx::new(ev, self.table.fields(), scratch);
            if let Some(bucket) = ev.category().and_then(|c| self.buckets.get(c.index())) {
                if !bucket.rules.is_empty() {
                    bucket.prefilter.candidates(&mut ctx, &mut bits, &mut tmp);
                    for (w, word) in bits.iter().enumerate() {
                        let mut word = *word;
                        while word != 0 {
                            let b = word.trailing_zeros() as usize;
                            word &= word - 1;
                            let Some(&ri) = bucket.rules.get(w * 64 + b) else {
                                continue;
                            };
                            if self.rules.get(ri).is_some_and(|r| r.matches(&mut ctx)) {
                                rules.push(ri);
                            }
                        }
                    }
                }
            }
            self.iocs.check(&ctx, iocs);
        }
        scratch.bits = bits;
        scratch.prefilter = tmp;
    }
}
