//! The `detection` section: search identifiers (maps are AND, lists are OR, lists of strings are
//! keyword searches), value modifiers applied to values, and the condition.

use crate::detect::net::Cidr;
use crate::detect::pattern::{base64, base64_offsets, utf16, SigmaString};
use crate::detect::yaml::{Located, Node, Pos, Style, Value};

use super::condition::{self, Expr};
use super::modifiers::{parse_key, CmpOp, MatchKind, ModSpec, ReFlags, TimeUnit, Transform};

/// Most values one field test may expand to (windash and base64offset multiply them).
const MAX_VALUES: usize = 10_000;

/// One value to test, after transformations.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A wildcard pattern (match-type stars already added), not yet lowercased.
    Str(SigmaString),
    /// A regular expression, with the lowercased literals one of which every match contains
    /// (`None`: no such set).
    Regex(Box<regex::Regex>, Option<Vec<String>>),
    Cidr(Cidr),
    /// A numeric comparison (`op` None: equality), optionally on a part of a date.
    Num {
        unit: Option<TimeUnit>,
        op: Option<CmpOp>,
        value: f64,
    },
    /// `null`: the field is absent or null.
    Null,
    Exists(bool),
    /// Another field's name, compared against at match time.
    FieldRef(String),
}

/// `field|modifiers: values` (`field` None: a keyword search over the whole event).
#[derive(Debug, Clone)]
pub struct FieldTest {
    pub field: Option<String>,
    pub pos: Pos,
    pub spec: ModSpec,
    pub operands: Vec<Operand>,
}

/// A search identifier: OR of alternatives, each an AND of field tests.
#[derive(Debug, Clone)]
pub struct Search {
    pub name: String,
    pub pos: Pos,
    pub alternatives: Vec<Vec<FieldTest>>,
}

#[derive(Debug, Clone)]
pub struct Detection {
    pub searches: Vec<Search>,
    pub condition: Expr,
}

/// The outcome of reading a detection section that is well-formed.
#[derive(Debug)]
pub enum Parsed {
    Ok(Detection, Vec<(Pos, String)>),
    /// Valid Sigma that Osprey cannot evaluate (placeholders, v1 aggregations, UTF-16 text).
    NotApplicable(Pos, String),
}

struct Ctx {
    warnings: Vec<(Pos, String)>,
    unsupported: Option<(Pos, String)>,
}

impl Ctx {
    fn unsupported(&mut self, pos: Pos, why: impl Into<String>) {
        if self.unsupported.is_none() {
            self.unsupported = Some((pos, why.into()));
        }
    }
}

pub fn parse(det: &Node) -> Result<Parsed, Located> {
    let map =
        det.as_map().ok_or_else(|| Located::new(det.pos, format!("detection must be a map, not {}", det.kind())))?;
    let mut ctx = Ctx { warnings: Vec::new(), unsupported: None };
    let mut searches = Vec::new();
    let mut cond_node = None;
    for (k, v) in map {
        let name = k.expect_str("a search identifier")?;
        match name {
            "condition" => cond_node = Some(v),
            "timeframe" => {
                ctx.warnings.push((k.pos, "`timeframe` is Sigma v1 and ignored; use a correlation rule".into()))
            }
            _ => {
                let alternatives = search(v, &mut ctx)?;
                searches.push(Search { name: name.to_owned(), pos: k.pos, alternatives });
            }
        }
    }
    let cond_node = cond_node.ok_or_else(|| Located::new(det.pos, "detection has no condition"))?;
    let names: Vec<String> = searches.iter().map(|s| s.name.clone()).collect();
    let cond_nodes: Vec<&Node> = match &cond_node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![cond_node],
    };
    let mut exprs = Vec::new();
    for n in cond_nodes {
        let text = n.expect_str("condition")?;
        let shift = usize::from(n.style == Style::Quoted);
        let at = |off: usize| if text.contains('\n') { n.pos } else { n.pos.shifted(off + shift) };
        let parsed = condition::parse(text).and_then(|c| c.resolve(&names));
        match parsed {
            Ok(e) => exprs.push(e),
            Err(e) if e.aggregation => {
                return Ok(Parsed::NotApplicable(
                    at(e.offset),
                    "Sigma v1 aggregation in the condition; write a correlation rule instead".into(),
                ))
            }
            Err(e) => return Err(Located::new(at(e.offset), format!("condition: {}", e.msg))),
        }
    }
    if exprs.is_empty() {
        return Err(Located::new(cond_node.pos, "empty condition list"));
    }
    let condition = if exprs.len() == 1 { exprs.remove(0) } else { Expr::Or(exprs) };
    if let Some((pos, why)) = ctx.unsupported {
        return Ok(Parsed::NotApplicable(pos, why));
    }
    Ok(Parsed::Ok(Detection { searches, condition }, ctx.warnings))
}

fn search(v: &Node, ctx: &mut Ctx) -> Result<Vec<Vec<FieldTest>>, Located> {
    match &v.value {
        Value::Map(_) => Ok(vec![map_tests(v, ctx)?]),
        Value::Seq(items) => {
            if items.is_empty() {
                return Err(Located::new(v.pos, "empty list"));
            }
            let mut alts = Vec::new();
            let mut keywords: Vec<&Node> = Vec::new();
            for it in items {
                match &it.value {
                    Value::Map(_) => alts.push(map_tests(it, ctx)?),
                    Value::Seq(_) => return Err(Located::new(it.pos, "a search list cannot contain lists")),
                    _ => keywords.push(it),
                }
            }
            if !keywords.is_empty() {
                let spec = ModSpec { kind: MatchKind::Contains, ..ModSpec::default() };
                let mut operands = Vec::new();
                for k in &keywords {
                    operands.extend(operands_of(k, &spec, ctx)?);
                }
                alts.push(vec![FieldTest { field: None, pos: keywords[0].pos, spec, operands }]);
            }
            Ok(alts)
        }
        _ => Err(Located::new(v.pos, format!("a search identifier must be a map or a list, not {}", v.kind()))),
    }
}

fn map_tests(m: &Node, ctx: &mut Ctx) -> Result<Vec<FieldTest>, Located> {
    let pairs = m.as_map().unwrap_or(&[]);
    if pairs.is_empty() {
        return Err(Located::new(m.pos, "empty map"));
    }
    let mut tests = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let key = k.scalar_text().ok_or_else(|| Located::new(k.pos, "a field name must be a string"))?;
        // Columns of modifiers count from the first character of the key, inside any quotes.
        let key_pos = if k.style == Style::Quoted { k.pos.shifted(1) } else { k.pos };
        let (field, mut spec) = parse_key(&key, key_pos)?;
        if field.is_none() && spec.kind == MatchKind::Equals && spec.re.is_none() {
            // Keywords match anywhere in a value.
            spec.kind = MatchKind::Contains;
        }
        if spec.all && v.as_seq().is_none_or(|s| s.len() < 2) {
            ctx.warnings.push((k.pos, "`all` on a single value has no effect".into()));
        }
        if spec.expand {
            ctx.unsupported(k.pos, "`expand` placeholders are not defined in Osprey");
        }
        let operands = match &v.value {
            Value::Seq(items) => {
                if items.is_empty() {
                    return Err(Located::new(v.pos, "empty value list"));
                }
                let mut out = Vec::new();
                for it in items {
                    out.extend(operands_of(it, &spec, ctx)?);
                    if out.len() > MAX_VALUES {
                        return Err(Located::new(v.pos, format!("more than {MAX_VALUES} values after modifiers")));
                    }
                }
                out
            }
            _ => operands_of(v, &spec, ctx)?,
        };
        tests.push(FieldTest { field, pos: k.pos, spec, operands });
    }
    Ok(tests)
}

/// Literals one of which every match of the expression contains, lowercased: what the
/// prefilter can look for. The best of three sets: literals every match starts with, ends with,
/// or holds somewhere inside (`(^|/)gcore\s` has neither a prefix nor a suffix set, but every
/// match holds `gcore`). `None` if there is no finite set of non-empty literals.
fn regex_literals(pattern: &str, flags: ReFlags) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    // Case-sensitively: a case-insensitive pattern's letters would become classes, and the
    // prefilter compares lowercased text with lowercased literals anyway.
    let hir = regex_syntax::ParserBuilder::new()
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .build()
        .parse(pattern)
        .ok()?;
    let mut candidates = vec![inner_literals(&hir)];
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        candidates.push(seq.literals().and_then(|lits| lits.iter().map(|l| literal_text(l.as_bytes())).collect()));
    }
    let mut best = None;
    for c in candidates {
        keep_best(&mut best, c);
    }
    best.map(|mut v| {
        v.sort();
        v.dedup();
        v
    })
}

/// Keeps `c` if its shortest literal is longer than `best`'s (longer literals are rarer).
fn keep_best(best: &mut Option<Vec<String>>, c: Option<Vec<String>>) {
    let shortest = |v: &[String]| v.iter().map(String::len).min().unwrap_or(0);
    if let Some(c) = c.filter(|c| !c.is_empty()) {
        if best.as_ref().is_none_or(|b| shortest(&c) > shortest(b)) {
            *best = Some(c);
        }
    }
}

fn literal_text(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).ok().filter(|s| !s.is_empty()).map(crate::detect::pattern::lower)
}

/// A set of literals one of which every match of `h` contains.
fn inner_literals(h: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::HirKind;
    match h.kind() {
        HirKind::Literal(l) => literal_text(&l.0).map(|s| vec![s]),
        HirKind::Capture(c) => inner_literals(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => inner_literals(&r.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(inner_literals(a)?);
            }
            Some(all)
        }
        HirKind::Concat(parts) => {
            // Any part's set will do; adjacent literals join into a longer one.
            let mut best = None;
            let mut run = Vec::new();
            for p in parts {
                if let HirKind::Literal(l) = p.kind() {
                    run.extend_from_slice(&l.0);
                    continue;
                }
                keep_best(&mut best, literal_text(&std::mem::take(&mut run)).map(|s| vec![s]));
                keep_best(&mut best, inner_literals(p));
            }
            keep_best(&mut best, literal_text(&run).map(|s| vec![s]));
            best
        }
        _ => None,
    }
}

fn number(v: &Node) -> Option<f64> {
    match &v.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

enum Piece {
    Text(SigmaString),
    Bytes(Vec<u8>),
}

fn operands_of(v: &Node, spec: &ModSpec, ctx: &mut Ctx) -> Result<Vec<Operand>, Located> {
    if let Value::Map(_) | Value::Seq(_) = v.value {
        return Err(Located::new(v.pos, format!("a value must be a scalar, not {}", v.kind())));
    }
    if spec.exists {
        let b = match &v.value {
            Value::Bool(b) => *b,
            Value::Str(s) if s.eq_ignore_ascii_case("true") => true,
            Value::Str(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(Located::new(v.pos, "`exists` takes true or false")),
        };
        return Ok(vec![Operand::Exists(b)]);
    }
    if v.is_null() {
        if spec.kind != MatchKind::Equals
            || !spec.transforms.is_empty()
            || spec.re.is_some()
            || spec.cidr
            || spec.cmp.is_some()
            || spec.fieldref
            || spec.time.is_some()
        {
            return Err(Located::new(v.pos, "null cannot be used with these modifiers"));
        }
        return Ok(vec![Operand::Null]);
    }
    if spec.cmp.is_some() || spec.time.is_some() {
        let value = number(v).ok_or_else(|| Located::new(v.pos, "a numeric comparison needs a number"))?;
        return Ok(vec![Operand::Num { unit: spec.time, op: spec.cmp, value }]);
    }
    let text = v.scalar_text().unwrap_or_default();
    if spec.cidr {
        let c = Cidr::parse(&text).ok_or_else(|| Located::new(v.pos, format!("`{text}` is not a CIDR block")))?;
        return Ok(vec![Operand::Cidr(c)]);
    }
    if spec.fieldref {
        if text.is_empty() {
            return Err(Located::new(v.pos, "`fieldref` needs a field name"));
        }
        return Ok(vec![Operand::FieldRef(text)]);
    }
    if let Some(flags) = spec.re {
        let re = regex::RegexBuilder::new(&text)
            .case_insensitive(flags.case_insensitive)
            .multi_line(flags.multi_line)
            .dot_matches_new_line(flags.dot_all)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build();
        return match re {
            Ok(r) => Ok(vec![Operand::Regex(Box::new(r), regex_literals(&text, flags))]),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("look-around") || msg.contains("backreferences") {
                    ctx.unsupported(v.pos, "the regular expression uses look-around or backreferences, which Osprey's linear-time regex engine does not support");
                    Ok(Vec::new())
                } else {
                    let first = msg.lines().last().unwrap_or("invalid").trim().to_owned();
                    Err(Located::new(v.pos, format!("invalid regular expression: {first}")))
                }
            }
        };
    }
    // Strings, with transformations in order.
    let mut pieces = vec![Piece::Text(SigmaString::parse(&text))];
    for t in &spec.transforms {
        let mut next = Vec::new();
        for p in pieces {
            match (t, p) {
                (Transform::Windash, Piece::Text(s)) => match s.windash(MAX_VALUES) {
                    Some(v) => next.extend(v.into_iter().map(Piece::Text)),
                    None => return Err(Located::new(v.pos, "`windash` would make too many variants")),
                },
                (Transform::Windash, Piece::Bytes(_)) => {
                    return Err(Located::new(v.pos, "`windash` must come before encoding modifiers"))
                }
                (enc, p) => {
                    let bytes = match p {
                        Piece::Bytes(b) => b,
                        Piece::Text(s) => s
                            .plain()
                            .ok_or_else(|| Located::new(v.pos, "wildcards cannot be combined with encoding modifiers"))?
                            .into_bytes(),
                    };
                    match enc {
                        Transform::Base64 => next.push(Piece::Text(SigmaString::literal(&base64(&bytes)))),
                        Transform::Base64Offset => {
                            next.extend(base64_offsets(&bytes).iter().map(|s| Piece::Text(SigmaString::literal(s))))
                        }
                        Transform::Utf16(kind) => next.push(Piece::Bytes(utf16(&bytes, *kind))),
                        Transform::Windash => {}
                    }
                }
            }
        }
        pieces = next;
    }
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let s = match p {
            Piece::Text(s) => s,
            Piece::Bytes(_) => {
                ctx.unsupported(v.pos, "UTF-16 values without base64 cannot match Linux (UTF-8) event text");
                continue;
            }
        };
        out.push(Operand::Str(match spec.kind {
            MatchKind::Equals => s,
            MatchKind::Contains => s.with_star_before().with_star_after(),
            MatchKind::StartsWith => s.with_star_after(),
            MatchKind::EndsWith => s.with_star_before(),
        }));
    }
    Ok(out)
}
