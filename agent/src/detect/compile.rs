//! Parsed rules → matchers: field names resolved to [`FieldId`]s, patterns lowercased and compiled,
//! and the literals a rule cannot match without (for the prefilter).

use std::collections::HashMap;
use std::sync::Arc;

use super::eval::{Ctx, Presence};
use super::fields::{Category, Field, FieldId, FieldValue, Scalar};
use super::mapping::{resolve, Target};
use super::net::Cidr;
use super::pattern::{lower, Part, SigmaString, StrMatch};
use super::sigma::condition::Expr;
use super::sigma::detection::{FieldTest, Operand};
use super::sigma::modifiers::{CmpOp, MatchKind, TimeUnit};
use super::sigma::{RuleDoc, RuleMeta};
use super::yaml::Pos;

/// The fields one rule set uses, each with a dense id.
#[derive(Debug, Default, Clone)]
pub struct FieldTable {
    fields: Vec<Field>,
    by_name: HashMap<String, FieldId>,
}

impl FieldTable {
    pub fn intern(&mut self, name: &str) -> FieldId {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = FieldId(u32::try_from(self.fields.len()).unwrap_or(u32::MAX));
        self.fields.push(Field::new(id, name));
        self.by_name.insert(name.to_owned(), id);
        id
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn get(&self, name: &str) -> Option<FieldId> {
        self.by_name.get(name).copied()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Against the lowercased text.
    Str(StrMatch),
    /// Against the text as is (`cased`).
    Cased(StrMatch),
    /// With the literals one of which every match contains.
    Regex(Box<regex::Regex>, Option<Vec<String>>),
    Cidr(Cidr),
    Num {
        unit: Option<TimeUnit>,
        op: Option<CmpOp>,
        value: f64,
    },
    Null,
    Exists(bool),
    FieldRef {
        other: FieldId,
        kind: MatchKind,
        cased: bool,
    },
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Field(FieldId),
    Keywords,
}

/// One compiled `field|modifiers: values`.
#[derive(Debug, Clone)]
pub(crate) struct Test {
    pub subject: Subject,
    pub matchers: Vec<Matcher>,
    pub all: bool,
    pub neq: bool,
}

/// A detection rule ready to evaluate.
#[derive(Debug)]
pub struct CompiledRule {
    pub meta: Arc<RuleMeta>,
    pub category: Category,
    /// Search identifiers: OR of alternatives, each an AND of tests.
    pub(crate) searches: Vec<Vec<Vec<Test>>>,
    pub(crate) condition: Expr,
    /// The rule can only match if every clause has one of its (field, literal) pairs in the
    /// event (empty: no requirement known).
    pub(crate) required: Vec<Clause>,
}

/// A non-fatal remark from compilation.
pub type Warning = (Pos, String);

fn str_matcher(s: &SigmaString, cased: bool) -> Matcher {
    if cased {
        Matcher::Cased(StrMatch::new(s))
    } else {
        Matcher::Str(StrMatch::new(&s.lowercased()))
    }
}

/// `Hashes: SHA256=abc` → `abc` against the SHA-256; other algorithms never match.
fn hash_value(s: &SigmaString) -> Option<SigmaString> {
    let mut parts = s.parts.clone();
    let lead_star = parts.first() == Some(&Part::Star);
    let idx = usize::from(lead_star);
    if let Some(Part::Lit(l)) = parts.get_mut(idx) {
        if let Some(eq) = l.find('=') {
            let algo = &l[..eq];
            if !algo.eq_ignore_ascii_case("sha256") {
                return None;
            }
            *l = l[eq + 1..].to_owned();
            if l.is_empty() {
                parts.remove(idx);
            }
        }
    }
    Some(SigmaString { parts })
}

fn compile_test(t: &FieldTest, category: Category, table: &mut FieldTable, warnings: &mut Vec<Warning>) -> Test {
    let cased = t.spec.cased;
    let (subject, target) = match &t.field {
        None => (Subject::Keywords, None),
        Some(name) => {
            let r = resolve(name, Some(category));
            if !r.recognised {
                warnings.push((
                    t.pos,
                    format!("`{name}` is neither a Sigma field Osprey maps nor an ECS name; it is looked up as is"),
                ));
            }
            let path = match &r.target {
                Target::Path(p) => p.as_str(),
                Target::Hashes(p) => p,
                Target::Initiated => "network.direction",
            };
            (Subject::Field(table.intern(path)), Some(r.target))
        }
    };
    let mut matchers = Vec::with_capacity(t.operands.len());
    for op in &t.operands {
        let m = match op {
            Operand::Str(s) => match &target {
                Some(Target::Hashes(_)) => match hash_value(s) {
                    Some(h) => str_matcher(&h, cased),
                    None => Matcher::Never,
                },
                Some(Target::Initiated) => {
                    let v = s.plain().unwrap_or_default().to_ascii_lowercase();
                    let dirs: &[&str] = match v.as_str() {
                        "true" => &["egress", "outbound"],
                        "false" => &["ingress", "inbound"],
                        _ => &[],
                    };
                    if dirs.is_empty() {
                        warnings.push((t.pos, "`Initiated` takes true or false".into()));
                        Matcher::Never
                    } else {
                        // Expands to two values; handled below as an OR.
                        for d in &dirs[1..] {
                            matchers.push(Matcher::Str(StrMatch::Exact((*d).to_owned())));
                        }
                        Matcher::Str(StrMatch::Exact(dirs[0].to_owned()))
                    }
                }
                _ => str_matcher(s, cased),
            },
            Operand::Regex(r, lits) => Matcher::Regex(r.clone(), lits.clone()),
            Operand::Cidr(c) => Matcher::Cidr(*c),
            Operand::Num { unit, op, value } => Matcher::Num { unit: *unit, op: *op, value: *value },
            Operand::Null => Matcher::Null,
            Operand::Exists(b) => Matcher::Exists(*b),
            Operand::FieldRef(name) => {
                let path = match resolve(name, Some(category)).target {
                    Target::Path(p) => p,
                    Target::Hashes(p) => p.to_owned(),
                    Target::Initiated => "network.direction".to_owned(),
                };
                Matcher::FieldRef { other: table.intern(&path), kind: t.spec.kind, cased }
            }
        };
        matchers.push(m);
    }
    // `Initiated: true` became two values that must be ORed even under `all`.
    let all = t.spec.all && !matches!(target, Some(Target::Initiated));
    Test { subject, matchers, all, neq: t.spec.neq }
}

/// Compiles a parsed rule against the rule set's field table.
pub fn compile_rule(doc: RuleDoc, table: &mut FieldTable, warnings: &mut Vec<Warning>) -> CompiledRule {
    let searches: Vec<Vec<Vec<Test>>> = doc
        .detection
        .searches
        .iter()
        .map(|s| {
            s.alternatives
                .iter()
                .map(|alt| alt.iter().map(|t| compile_test(t, doc.category, table, warnings)).collect())
                .collect()
        })
        .collect();
    let mut rule = CompiledRule {
        meta: Arc::new(doc.meta),
        category: doc.category,
        searches,
        condition: doc.detection.condition,
        required: Vec::new(),
    };
    rule.required = required_expr(&rule.condition, &rule.searches);
    rule
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

fn text_of(s: &Scalar<'_>, buf: &mut String) {
    buf.clear();
    s.write_text(buf);
}

/// Minute/hour/... of an RFC 3339 (or `YYYY-MM-DD HH:MM`) timestamp text.
fn time_part(text: &str, unit: TimeUnit) -> Option<f64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    Some(match unit {
        TimeUnit::Year => y as f64,
        TimeUnit::Month => mo as f64,
        TimeUnit::Day => d as f64,
        TimeUnit::Hour => num(11..13)? as f64,
        TimeUnit::Minute => num(14..16)? as f64,
        TimeUnit::Week => iso_week(y, mo, d)? as f64,
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn iso_week(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let weekday = (days + 3).rem_euclid(7) + 1; // Monday = 1
    let ordinal = days - days_from_civil(y, 1, 1) + 1;
    let week = (ordinal - weekday + 10) / 7;
    let weeks_in = |yr: i64| {
        let p = |x: i64| (x + x / 4 - x / 100 + x / 400) % 7;
        if p(yr) == 4 || p(yr - 1) == 3 {
            53
        } else {
            52
        }
    };
    Some(if week < 1 {
        weeks_in(y - 1)
    } else if week > weeks_in(y) {
        1
    } else {
        week
    })
}

fn num_matches(v: &FieldValue<'_>, unit: Option<TimeUnit>, op: Option<CmpOp>, value: f64) -> bool {
    let mut buf = String::new();
    v.any(|s| {
        let x = match unit {
            None => s.as_f64(),
            Some(u) => {
                text_of(s, &mut buf);
                time_part(&buf, u)
            }
        };
        match (x, op) {
            (Some(x), Some(op)) => op.holds(x, value),
            (Some(x), None) => x == value,
            (None, _) => false,
        }
    })
}

fn ref_matches(a: &str, b: &str, kind: MatchKind) -> bool {
    match kind {
        MatchKind::Equals => a == b,
        MatchKind::Contains => a.contains(b),
        MatchKind::StartsWith => a.starts_with(b),
        MatchKind::EndsWith => a.ends_with(b),
    }
}

fn texts_of(v: &FieldValue<'_>, lowercase: bool) -> Vec<String> {
    let mut out = Vec::new();
    v.for_each(|s| {
        let t = s.to_text();
        out.push(if lowercase { lower(&t) } else { t });
    });
    out
}

fn matcher_on_field(m: &Matcher, id: FieldId, ctx: &mut Ctx<'_>) -> bool {
    match m {
        Matcher::Str(sm) => ctx.lowered(id).1.iter().any(|t| sm.is_match(t)),
        Matcher::Null => matches!(ctx.lowered(id).0, Presence::Missing | Presence::Null),
        Matcher::Exists(b) => (ctx.lowered(id).0 != Presence::Missing) == *b,
        Matcher::Never => false,
        Matcher::Cased(sm) => ctx.original(id).iter().any(|t| sm.is_match(t)),
        Matcher::Regex(re, _) => ctx.original(id).iter().any(|t| re.is_match(t)),
        Matcher::Cidr(c) => ctx.raw(id).any(|s| matches!(s, Scalar::Str(x) if c.contains_str(x))),
        Matcher::Num { unit, op, value } => num_matches(&ctx.raw(id), *unit, *op, *value),
        Matcher::FieldRef { other, kind, cased } => {
            let a = texts_of(&ctx.raw(id), !cased);
            let b = texts_of(&ctx.raw(*other), !cased);
            a.iter().any(|x| b.iter().any(|y| ref_matches(x, y, *kind)))
        }
    }
}

fn matcher_on_keywords(m: &Matcher, ctx: &mut Ctx<'_>) -> bool {
    match m {
        Matcher::Str(sm) => ctx.keyword_texts().iter().any(|t| sm.is_match(t)),
        Matcher::Cased(sm) => ctx.ev.any_string(&mut |s| sm.is_match(s)),
        Matcher::Regex(re, _) => ctx.ev.any_string(&mut |s| re.is_match(s)),
        Matcher::Cidr(c) => ctx.ev.any_string(&mut |s| c.contains_str(s)),
        _ => false,
    }
}

impl Test {
    pub(crate) fn eval(&self, ctx: &mut Ctx<'_>) -> bool {
        let one = |m: &Matcher, ctx: &mut Ctx<'_>| match self.subject {
            Subject::Field(id) => matcher_on_field(m, id, ctx),
            Subject::Keywords => matcher_on_keywords(m, ctx),
        };
        let hit = if self.all {
            self.matchers.iter().all(|m| one(m, ctx))
        } else {
            self.matchers.iter().any(|m| one(m, ctx))
        };
        hit != self.neq
    }
}

impl CompiledRule {
    pub(crate) fn matches(&self, ctx: &mut Ctx<'_>) -> bool {
        let searches = &self.searches;
        self.condition.eval(&mut |i| {
            searches.get(i).is_some_and(|alts| alts.iter().any(|tests| tests.iter().all(|t| t.eval(ctx))))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Required literals.

/// The rule cannot match unless one of these (field, lowercased literal) pairs occurs.
pub(crate) type Clause = Vec<(FieldId, String)>;

/// Most clauses kept per rule (the most selective ones).
const MAX_CLAUSES: usize = 3;

/// A clause whose shortest literal is shorter than this (`-d`, `i`, `0`) is hit by nearly every
/// event: it is dropped when a more selective clause remains, so the prefilter does not scan and
/// bookkeep it for nothing.
const WEAK_LITERAL: usize = 3;

fn literals_of(m: &Matcher) -> Option<Vec<String>> {
    let s = match m {
        Matcher::Str(StrMatch::Exact(s) | StrMatch::Prefix(s) | StrMatch::Suffix(s)) => s.clone(),
        Matcher::Str(StrMatch::Contains(f)) => String::from_utf8(f.needle().to_vec()).ok()?,
        Matcher::Str(StrMatch::Glob(g)) => g.longest_literal()?.to_owned(),
        Matcher::Cased(sm) => {
            return literals_of(&Matcher::Str(sm.clone())).map(|v| v.iter().map(|s| lower(s)).collect())
        }
        Matcher::Regex(_, lits) => return lits.clone(),
        _ => return None,
    };
    (!s.is_empty()).then(|| vec![s])
}

/// Higher is more selective: the shortest literal counts most, then fewer alternatives.
fn score(c: &Clause) -> (usize, std::cmp::Reverse<usize>) {
    (c.iter().map(|(_, l)| l.len()).min().unwrap_or(0).min(16), std::cmp::Reverse(c.len()))
}

fn normalise(mut clauses: Vec<Clause>) -> Vec<Clause> {
    for c in &mut clauses {
        c.sort();
        c.dedup();
    }
    clauses.retain(|c| !c.is_empty());
    clauses.sort_by_key(|c| std::cmp::Reverse(score(c)));
    clauses.dedup();
    clauses.truncate(MAX_CLAUSES);
    if clauses.first().is_some_and(|c| score(c).0 >= WEAK_LITERAL) {
        clauses.retain(|c| score(c).0 >= WEAK_LITERAL);
    }
    clauses
}

/// All of the parts hold: every clause of every part is required.
fn all_of(parts: impl Iterator<Item = Vec<Clause>>) -> Vec<Clause> {
    normalise(parts.flatten().collect())
}

/// One of the parts holds: one clause, the union of each part's best clause.
fn any_of(parts: impl Iterator<Item = Vec<Clause>>) -> Vec<Clause> {
    let mut union = Vec::new();
    for p in parts {
        match p.into_iter().next() {
            Some(best) => union.extend(best),
            None => return Vec::new(),
        }
    }
    normalise(vec![union])
}

fn test_clauses(t: &Test) -> Vec<Clause> {
    let Subject::Field(id) = t.subject else { return Vec::new() };
    if t.neq || t.matchers.is_empty() {
        return Vec::new();
    }
    let with = |lits: Vec<String>| lits.into_iter().map(|l| (id, l)).collect::<Clause>();
    if t.all {
        // Every value must match: each value with literals is a clause of its own.
        return normalise(t.matchers.iter().filter_map(literals_of).map(with).collect());
    }
    match t.matchers.iter().map(literals_of).collect::<Option<Vec<_>>>() {
        Some(lits) => normalise(vec![with(lits.into_iter().flatten().collect())]),
        None => Vec::new(),
    }
}

fn search_clauses(alts: &[Vec<Test>]) -> Vec<Clause> {
    any_of(alts.iter().map(|tests| all_of(tests.iter().map(test_clauses))))
}

fn required_expr(e: &Expr, searches: &[Vec<Vec<Test>>]) -> Vec<Clause> {
    let search = |i: usize| searches.get(i).map_or_else(Vec::new, |s| search_clauses(s));
    match e {
        Expr::Search(i) => {
            // A single alternative keeps all its clauses.
            match searches.get(*i) {
                Some(alts) if alts.len() == 1 => all_of(alts[0].iter().map(test_clauses)),
                _ => search(*i),
            }
        }
        Expr::Not(_) => Vec::new(),
        Expr::And(v) => all_of(v.iter().map(|x| required_expr(x, searches))),
        Expr::Or(v) => any_of(v.iter().map(|x| required_expr(x, searches))),
        Expr::AtLeast(_, ids) => any_of(ids.iter().map(|&i| search(i))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks() {
        assert_eq!(iso_week(2024, 1, 1), Some(1));
        assert_eq!(iso_week(2021, 1, 3), Some(53));
        assert_eq!(iso_week(2020, 12, 31), Some(53));
        assert_eq!(iso_week(2019, 12, 30), Some(1));
        assert_eq!(iso_week(2023, 6, 15), Some(24));
    }

    #[test]
    fn time_parts() {
        let t = "2023-11-14T22:13:20.000001000Z";
        assert_eq!(time_part(t, TimeUnit::Year), Some(2023.0));
        assert_eq!(time_part(t, TimeUnit::Month), Some(11.0));
        assert_eq!(time_part(t, TimeUnit::Day), Some(14.0));
        assert_eq!(time_part(t, TimeUnit::Hour), Some(22.0));
        assert_eq!(time_part(t, TimeUnit::Minute), Some(13.0));
        assert_eq!(time_part("garbage", TimeUnit::Hour), None);
    }

    #[test]
    fn hashes_values() {
        let h = |s: &str| hash_value(&SigmaString::parse(s)).map(|x| x.plain().unwrap_or_else(|| format!("{x:?}")));
        assert_eq!(h("SHA256=ABC"), Some("ABC".into()));
        assert_eq!(h("sha256=abc"), Some("abc".into()));
        assert_eq!(h("MD5=abc"), None);
        assert_eq!(h("abc"), Some("abc".into()));
    }
}
