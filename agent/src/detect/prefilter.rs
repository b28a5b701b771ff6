//! The literal prefilter. For each rule the compiler derives up to three clauses, each a set of
//! (field, literal) pairs one of which must occur for the rule to match (`Image|endswith: /nc`
//! and `CommandLine|contains: [' -e ', ' -c ']` give two clauses). For each field that any clause
//! names, one Aho-Corasick automaton holds all those literals. An event is scanned once per such
//! field (ignoring ASCII case: its text as it is when all ASCII, else lowercased and shared with
//! the matchers); a rule is evaluated only if every one of its clauses was hit, or if it has no
//! clauses.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::collections::HashMap;

use super::compile::Clause;
use super::eval::Ctx;
use super::fields::FieldId;

#[derive(Debug)]
struct Scan {
    field: FieldId,
    ac: AhoCorasick,
    /// Pattern index → clauses that contain it.
    owners: Vec<Vec<u32>>,
}

/// Reusable bitsets for [`Prefilter::candidates`].
#[derive(Debug, Default)]
pub(crate) struct Bits {
    clauses: Vec<u64>,
    touched: Vec<u64>,
}

fn set(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

fn get(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn reset(bits: &mut Vec<u64>, n: usize) {
    bits.clear();
    bits.resize(n.div_ceil(64), 0);
}

/// The prefilter of one category's rules.
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    scans: Vec<Scan>,
    /// Clause id → rule (index into the bucket).
    clause_rule: Vec<u32>,
    /// Rule → its clause ids (a contiguous range).
    rule_clauses: Vec<(u32, u32)>,
    /// Rules with no clauses: always evaluated.
    always: Vec<u32>,
    /// Clauses counted as hit on every event (their automaton could not be built).
    preset: Vec<u32>,
}

impl Prefilter {
    /// `reqs[i]`: the clauses of rule `i` (empty: no requirement).
    pub fn build(reqs: &[&[Clause]]) -> Prefilter {
        // Per field: patterns, pattern index by text, owners per pattern.
        type Patterns = (Vec<String>, HashMap<String, usize>, Vec<Vec<u32>>);
        let mut per_field: HashMap<FieldId, Patterns> = HashMap::new();
        let mut pf = Prefilter::default();
        for (rule, clauses) in reqs.iter().enumerate() {
            let rule = rule as u32;
            let start = pf.clause_rule.len() as u32;
            if clauses.is_empty() {
                pf.always.push(rule);
            }
            for clause in clauses.iter() {
                let cid = pf.clause_rule.len() as u32;
                pf.clause_rule.push(rule);
                for (field, lit) in clause {
                    let (pats, index, owners) = per_field.entry(*field).or_default();
                    let p = *index.entry(lit.clone()).or_insert_with(|| {
                        pats.push(lit.clone());
                        owners.push(Vec::new());
                        pats.len() - 1
                    });
                    if owners[p].last() != Some(&cid) {
                        owners[p].push(cid);
                    }
                }
            }
            pf.rule_clauses.push((start, pf.clause_rule.len() as u32 - start));
        }
        let mut fields: Vec<_> = per_field.into_iter().collect();
        fields.sort_by_key(|(f, _)| *f);
        for (field, (pats, _, owners)) in fields {
            let kind = if pats.len() <= 2_000 { Some(AhoCorasickKind::DFA) } else { None };
            // The literals are lowercase; ASCII text is scanned as it is (Ctx::scan_texts).
            let mut b = AhoCorasick::builder();
            b.match_kind(MatchKind::Standard).kind(kind).ascii_case_insensitive(true);
            match b.build(&pats) {
                Ok(ac) => pf.scans.push(Scan { field, ac, owners }),
                // Too large to build: the clauses of this field count as always hit.
                Err(_) => pf.preset.extend(owners.into_iter().flatten()),
            }
        }
        pf
    }

    /// Sets the bit of every rule worth evaluating for this event.
    pub fn candidates(&self, ctx: &mut Ctx<'_>, out: &mut Vec<u64>, tmp: &mut Bits) {
        let n_rules = self.rule_clauses.len();
        reset(out, n_rules);
        reset(&mut tmp.clauses, self.clause_rule.len());
        reset(&mut tmp.touched, n_rules);
        for &i in &self.always {
            set(out, i as usize);
        }
        for &c in &self.preset {
            set(&mut tmp.clauses, c as usize);
            if let Some(&r) = self.clause_rule.get(c as usize) {
                set(&mut tmp.touched, r as usize);
            }
        }
        for scan in &self.scans {
            ctx.scan_texts(scan.field, |text| {
                for m in scan.ac.find_overlapping_iter(text) {
                    for &c in scan.owners.get(m.pattern().as_usize()).map_or(&[][..], Vec::as_slice) {
                        set(&mut tmp.clauses, c as usize);
                        if let Some(&r) = self.clause_rule.get(c as usize) {
                            set(&mut tmp.touched, r as usize);
                        }
                    }
                }
            });
        }
        for (w, word) in tmp.touched.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let r = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let Some(&(start, count)) = self.rule_clauses.get(r) else { continue };
                if (start..start + count).all(|c| get(&tmp.clauses, c as usize)) {
                    set(out, r);
                }
            }
        }
    }

    /// Rules that are evaluated on every event of the category.
    pub fn unfiltered(&self) -> usize {
        self.always.len()
    }
}
